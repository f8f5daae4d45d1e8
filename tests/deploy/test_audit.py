"""requirements/audit.py: findings fail, listed exceptions pass, no data is NOT AUDITED.

pip-audit's advisory source (PyPI's JSON API) cannot be reached from this machine, so these
tests stand a small script in for the pip-audit binary that prints pip-audit's JSON format;
the real binary runs in `make audit` (part of `make test`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _fake_pip_audit(tmp_path: Path, deps: list[dict]) -> Path:
    script = tmp_path / "pip-audit"
    report = json.dumps({"dependencies": deps, "fixes": []})
    script.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "ignored = [sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == '--ignore-vuln']\n"
        f"report = {report!r}\n"
        "import json\nr = json.loads(report)\n"
        "for d in r['dependencies']:\n"
        "    d['vulns'] = [v for v in d.get('vulns', []) if v['id'] not in ignored]\n"
        "print(json.dumps(r))\n"
    )
    script.chmod(0o755)
    return script


def _run(tmp_path: Path, deps: list[dict], env: dict | None = None):
    script = _fake_pip_audit(tmp_path, deps)
    return subprocess.run(
        [sys.executable, str(ROOT / "requirements/audit.py"), str(script), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


VULN = {"id": "GHSA-xxxx-0000", "fix_versions": ["2.0"], "description": "bad"}


def test_a_finding_fails_the_audit(tmp_path):
    done = _run(tmp_path, [{"name": "requests", "version": "1.0", "vulns": [VULN]}])
    assert done.returncode == 1
    assert "requests 1.0 GHSA-xxxx-0000" in done.stdout
    report = json.loads((tmp_path / "out/streams.json").read_text())
    assert report["findings"][0]["id"] == "GHSA-xxxx-0000"


def test_a_clean_audit_passes(tmp_path):
    done = _run(tmp_path, [{"name": "requests", "version": "2.0", "vulns": []}])
    assert done.returncode == 0, done.stdout
    assert "1 packages, 0 findings" in done.stdout


@pytest.mark.parametrize("strict, code", [("", 0), ("1", 1)])
def test_no_advisory_data_is_reported_as_not_audited(tmp_path, strict, code):
    deps = [{"name": "requests", "skip_reason": "Dependency not found on PyPI"}]
    done = _run(tmp_path, deps, {"FOREWARN_AUDIT_STRICT": strict})
    assert "NOT AUDITED: 1 of 1" in done.stdout
    assert done.returncode == code


def test_every_listed_exception_has_a_reason():
    for line in (ROOT / "requirements/audit-exceptions.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert len(line.split(maxsplit=1)) == 2, line
