"""Every command either works or explains (issue 18, item 4): bad input gives one line on
stderr naming the problem and the fix, exit code 2, and never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from console import home as stack
from console.cli import main

CUSTOMER_CSV = "time,customer,event,amount,csat\n2026-01-05T10:00,C1,order,20.5,\n"
DEVICE_CSV = "time,device,temperature\n2026-01-05T10:00,D1,40.1\n2026-01-05T11:00,D1,40.3\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "customers.csv").write_text(CUSTOMER_CSV)
    (tmp_path / "devices.csv").write_text(DEVICE_CSV)
    (tmp_path / "wrong.csv").write_text("id,when,what\n1,2026-01-05,x\n")
    (tmp_path / "garbage.txt").write_text("not a cdnow file at all\n")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "bad-map.yaml").write_text("fields:\n  order: id\n")
    (tmp_path / "broken-home" / "outreach.db").mkdir(parents=True)  # a folder, not a database
    return tmp_path


def _busy_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


def _replay(detector, path, *extra):
    return [
        "replay",
        "--detector",
        detector,
        "--input",
        str(path),
        "--time-column",
        "time",
        "--entity-column",
        extra[0] if extra else "customer",
        "--output",
        str(Path(path).parent / "alerts.csv"),
    ]


CASES = {
    "clv fit on a folder": lambda f: ["clv", "fit", "--input", str(f / "folder")],
    "clv fit, a CSV with other headers": lambda f: ["clv", "fit", "--input", str(f / "wrong.csv")],
    "clv fit, not CDNOW text": lambda f: ["clv", "fit", "--input", str(f / "garbage.txt")],
    "clv fit, summary without x t_x T": lambda f: [
        "clv",
        "fit",
        "--format",
        "summary",
        "--input",
        str(f / "wrong.csv"),
    ],
    "clv fit, a missing file": lambda f: ["clv", "fit", "--input", str(f / "nope.csv")],
    "import-customers on a folder": lambda f: [
        "outreach",
        "import-customers",
        str(f / "folder"),
    ],
    "import-customers with other headers": lambda f: [
        "outreach",
        "import-customers",
        str(f / "wrong.csv"),
    ],
    "replay, device detector on a customer history": lambda f: _replay(
        "device", f / "customers.csv"
    ),
    "replay, customer detector on device readings": lambda f: _replay(
        "customer", f / "devices.csv", "device"
    ),
    "replay on a folder": lambda f: _replay("device", f / "folder"),
    "replay, a column that is not there": lambda f: _replay("device", f / "devices.csv", "serial"),
    "simulate, no customers": lambda f: ["simulate", "--customers", "0", "--to", "none"],
    "simulate, a start that is not a date": lambda f: [
        "simulate",
        "--start",
        "yesterday",
        "--to",
        "none",
    ],
    "simulate, a file for --out": lambda f: [
        "simulate",
        "--customers",
        "3",
        "--days",
        "2",
        "--to",
        "none",
        "--out",
        str(f / "a-file"),
    ],
    "a file as --home": lambda f: ["--home", str(f / "a-file"), "status"],
    "a Kafka address without a port": lambda f: ["--bootstrap", "localhost", "kafka", "status"],
    "topics on a broker that is not there": lambda f: [
        "--bootstrap",
        "127.0.0.1:1",
        "topics",
    ],
    "token without a name": lambda f: ["outreach", "token", "--role", "retention"],
    "token with an unknown role": lambda f: [
        "outreach",
        "token",
        "--role",
        "boss",
        "--name",
        "x",
    ],
    "revoke with a folder as token file": lambda f: [
        "outreach",
        "token",
        "revoke",
        "--token-file",
        str(f / "folder"),
    ],
    "serve on port 0": lambda f: ["outreach", "serve", "--port", "0"],
    "demo with too little history for the nightly": lambda f: ["demo", "--history-days", "10"],
    "demo with no customers": lambda f: ["demo", "--customers", "0"],
    "an unknown command": lambda f: ["frobnicate"],
    "migrate to a revision that does not exist": lambda f: [
        "outreach",
        "migrate",
        "--revision",
        "nonsense",
    ],
    "churn fit, a label column that is not there": lambda f: [
        "churn",
        "fit",
        "--table",
        str(f / "wrong.csv"),
        "--id",
        "id",
        "--label",
        "churned",
        "--quiet",
    ],
    "models show, a version that does not exist": lambda f: ["models", "show", "2020-01-01"],
    "models list, a model name with a path in it": lambda f: ["models", "--model", "../x", "list"],
    "models promote, a version that does not exist": lambda f: ["models", "promote", "nope"],
    "models rollback with no earlier champion": lambda f: ["models", "rollback"],
    "evaluate, labels with other headers": lambda f: [
        "evaluate",
        "--input",
        str(f / "devices.csv"),
        "--labels",
        str(f / "wrong.csv"),
        "--output",
        str(f / "eval"),
    ],
    "import, a mapping that names no contract field": lambda f: [
        "import",
        "orders",
        str(f / "wrong.csv"),
        "--map",
        str(f / "bad-map.yaml"),
    ],
    "import, a file that is not there": lambda f: [
        "import",
        "customers",
        str(f / "nope.csv"),
        "--map",
        str(f / "bad-map.yaml"),
    ],
    "escalate with a database that cannot open": lambda f: [
        "--home",
        str(f / "broken-home"),
        "outreach",
        "escalate",
    ],
}
#: Commands that take no input a user could get wrong (the busy-port test covers kafka start,
#: outreach serve and airflow).
NO_INPUT = {
    "kafka fetch",
    "kafka stop",
    "outreach background",
    "status",
    "stop",
    "worker",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_with_exit_code_2(case, files):
    args = CASES[case](files)
    if args[0] != "--home":
        args = ["--home", str(files / "home"), *args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("forewarn"), result.stderr


def _command_path(args: list[str]) -> str:
    import click

    names, group = [], main
    args = list(args)
    while args and args[0] in ("--home", "--bootstrap"):
        args = args[2:]
    while args and isinstance(group, click.Group) and args[0] in group.commands:
        names.append(args[0])
        group = group.commands[args.pop(0)]
    return " ".join(names)


def test_every_command_has_a_bad_input_case(tmp_path):
    """A new command gets a case here (or a reason in NO_INPUT)."""
    import click

    def leaves(group: click.Group, prefix: str = "") -> set[str]:
        found = set()
        for name, command in group.commands.items():
            if getattr(command, "hidden", False):
                continue
            path = f"{prefix}{name}"
            if isinstance(command, click.Group):
                found |= leaves(command, path + " ")
                if command.invoke_without_command:
                    found.add(path)
            else:
                found.add(path)
        return found

    covered = {_command_path(case(tmp_path)) for case in CASES.values()}
    covered |= {"kafka start", "outreach serve", "airflow", "demo"}  # the busy-port tests
    covered |= {"models list"}  # its only input is the group's --model, a case above
    assert leaves(main) - covered - NO_INPUT == set()


def test_the_wrong_detector_is_named_with_the_fix(files):
    result = CliRunner().invoke(main, _replay("device", files / "customers.csv"))
    assert "looks like a customer history" in result.stderr
    assert "--detector customer" in result.stderr
    assert not (files / "alerts.csv").exists(), "no alerts from the wrong detector"


def test_a_busy_port_is_explained(tmp_path):
    sock, port = _busy_port()
    try:
        for args in (
            ["--bootstrap", f"127.0.0.1:{port}", "kafka", "start"],
            ["outreach", "serve", "--port", str(port)],
            ["airflow", "--port", str(port)],
        ):
            result = CliRunner().invoke(main, ["--home", str(tmp_path), *args])
            assert result.exit_code == 2, (args, result.output)
            assert f"port {port} is in use" in result.stderr, result.stderr
    finally:
        sock.close()


def test_a_second_demo_refuses_while_a_stack_runs(tmp_path):
    """It used to wipe the running demo's folder from under its worker (issue 18)."""
    (tmp_path / "lake").mkdir()
    stack.record(tmp_path, "worker", pid=os.getpid(), metrics="http://127.0.0.1:1/metrics")
    result = CliRunner().invoke(main, ["--home", str(tmp_path), "demo"])
    assert result.exit_code == 2
    assert "already runs" in result.stderr and "forewarn" in result.stderr
    assert "stop" in result.stderr and "--restart" in result.stderr
    assert (tmp_path / "lake").exists(), "nothing deleted under a running process"


def test_no_traceback_in_a_real_process(files):
    """The same through the installed entry point, as a user meets it."""
    done = subprocess.run(
        [sys.executable, "-m", "console.cli", "clv", "fit", "--input", str(files / "folder")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().endswith("(see `forewarn clv fit --help`)"), done.stderr


def test_our_own_broker_on_the_port_is_named(kafka_broker, tmp_path):
    """`kafka start` said "in use by another program" about the demo's own broker."""
    result = CliRunner().invoke(
        main, ["--home", str(tmp_path), "--bootstrap", kafka_broker.bootstrap, "kafka", "start"]
    )
    assert result.exit_code == 2, result.output
    assert "taken by another Forewarn broker" in result.stderr
    assert str(kafka_broker.home) in result.stderr and "--home" in result.stderr
