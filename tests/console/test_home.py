"""One home (issue 18, item 2): the stack's state file, ``forewarn status`` and ``forewarn
stop``, stale entries from killed stacks, and a second demo that refuses or restarts."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from click.testing import CliRunner

from console import home as stack
from console.cli import main
from forewarn.settings import Settings


def _sleeper() -> subprocess.Popen:
    """A stand-in for a stack process: its own process group, as the stack starts them."""
    return subprocess.Popen(["sleep", "300"], start_new_session=True)


def test_status_names_what_runs_where(tmp_path):
    proc, web = _sleeper(), _sleeper()
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    port = listening.getsockname()[1]
    try:
        stack.record(tmp_path, "kafka", pid=proc.pid, bootstrap=f"127.0.0.1:{port}", log="k.log")
        stack.record(
            tmp_path,
            "outreach",
            pid=web.pid,
            url="http://127.0.0.1:1",
            health="http://127.0.0.1:1/",
        )
        result = CliRunner().invoke(main, ["--home", str(tmp_path), "status"])
        assert result.exit_code == 0, result.output
        assert f"kafka     running pid {proc.pid}" in result.output
        assert f"127.0.0.1:{port}" in result.output and "k.log" in result.output
        # Alive but not answering where it said it would: starting, or stuck.
        assert f"outreach  silent  pid {web.pid}" in result.output
    finally:
        listening.close()
        for p in (proc, web):
            p.kill()
            p.wait()


def test_every_command_finds_the_running_broker(tmp_path):
    """`kafka status` said "not running" while the demo's broker ran on another port."""
    proc = _sleeper()
    try:
        stack.record(tmp_path, "kafka", pid=proc.pid, bootstrap="127.0.0.1:19999")
        seen = {}

        @main.command("_probe_settings", hidden=True)
        def probe(**_):  # type: ignore[no-untyped-def]
            seen["settings"] = __import__("click").get_current_context().obj

        try:
            result = CliRunner().invoke(main, ["--home", str(tmp_path), "_probe_settings"])
        finally:
            main.commands.pop("_probe_settings")
        assert result.exit_code == 0, result.output
        assert seen["settings"].kafka_bootstrap == "127.0.0.1:19999"
    finally:
        proc.kill()
        proc.wait()


def test_stop_stops_every_recorded_part_and_forgets_it(tmp_path):
    worker, web = _sleeper(), _sleeper()
    stack.record(tmp_path, "worker", pid=worker.pid)
    stack.record(tmp_path, "outreach", pid=web.pid, url="http://127.0.0.1:1")
    result = CliRunner().invoke(main, ["--home", str(tmp_path), "stop"])
    assert result.exit_code == 0, result.output
    assert worker.wait(10) is not None and web.wait(10) is not None
    assert "stopped outreach, worker" in result.output
    assert not stack.state_path(tmp_path).exists()
    again = CliRunner().invoke(main, ["--home", str(tmp_path), "stop"])
    assert "nothing was running" in again.output


def test_stop_stops_a_process_that_does_not_lead_its_group(tmp_path):
    """`make outreach` in a terminal shares the shell's process group."""
    proc = subprocess.Popen(["sleep", "300"])  # our group, not its own
    try:
        stack.record(tmp_path, "outreach", pid=proc.pid, url="http://127.0.0.1:1")
        result = CliRunner().invoke(main, ["--home", str(tmp_path), "stop"])
        assert result.exit_code == 0 and proc.wait(10) is not None
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_killed_stack_leaves_a_stale_state_that_is_named_and_forgotten(tmp_path):
    proc = _sleeper()
    stack.record(tmp_path, "worker", pid=proc.pid)
    proc.kill()
    proc.wait()
    assert stack.stale(tmp_path) == ["worker"] and stack.running(tmp_path) == {}
    result = CliRunner().invoke(main, ["--home", str(tmp_path), "status"])
    assert result.exit_code == 1 and "GONE" in result.output and "forewarn stop" in result.output
    stack.refuse_if_running(tmp_path, "a demo")  # a dead stack does not block a new one
    assert stack.clean_stale(tmp_path) == ["worker"]
    assert stack.read(tmp_path) == {}


def test_a_reused_pid_is_not_our_process(tmp_path):
    """After a crash the pid may belong to another program: the start time tells them apart."""
    proc = _sleeper()
    try:
        stack.record(tmp_path, "worker", pid=proc.pid)
        state = stack.read(tmp_path)
        state["worker"]["started"] = "1"
        stack.state_path(tmp_path).write_text(json.dumps(state))
        assert stack.running(tmp_path) == {}
    finally:
        proc.kill()
        proc.wait()


def test_a_half_written_state_file_is_no_stack(tmp_path):
    stack.state_path(tmp_path).write_text('{"kafka": {"pid": 12')
    assert stack.read(tmp_path) == {}
    result = CliRunner().invoke(main, ["--home", str(tmp_path), "status"])
    assert result.exit_code == 1 and "nothing runs" in result.output


def test_restart_stops_the_running_stack_first(tmp_path):
    from console.demo import DemoError, run_demo

    proc = _sleeper()
    stack.record(tmp_path, "worker", pid=proc.pid)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        with pytest.raises(DemoError, match="in use"):
            run_demo(
                Settings().with_home(tmp_path),
                customers=10,
                days=1,
                seed=1,
                keep_running=False,
                fresh=True,
                outreach_port=busy.getsockname()[1],
                restart=True,
            )
        assert proc.wait(10) is not None, "--restart stopped the running worker"
        assert stack.read(tmp_path) == {}
    finally:
        busy.close()
        if proc.poll() is None:
            proc.kill()
