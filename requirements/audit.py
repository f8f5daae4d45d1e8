"""Audit both locked environments with pip-audit; `make audit` runs it, `make test` too.

A known vulnerability fails the run unless it is listed in ``audit-exceptions.txt`` with the
reason it does not apply. pip-audit asks PyPI's JSON API for advisories; where that API cannot be
reached (this project's build machines reach only PyPI's package index), every package comes
back "not found" and nothing was audited: that is reported loudly as NOT AUDITED, and fails only
with ``FOREWARN_AUDIT_STRICT=1``, so an offline machine can still run the suite.

Usage: python requirements/audit.py PIP_AUDIT_BINARY OUT_DIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
LOCKS = ("streams", "airflow")


def exceptions() -> dict[str, str]:
    """Vulnerability id -> why it does not apply, from audit-exceptions.txt."""
    out = {}
    for raw in (HERE / "audit-exceptions.txt").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            vuln, _, reason = line.partition(" ")
            if not reason.strip():
                raise SystemExit(f"audit-exceptions.txt: {vuln} needs a reason")
            out[vuln] = reason.strip()
    return out


def audit(pip_audit: str, lock: Path, ignored: dict[str, str]) -> dict:
    args = [pip_audit, "--no-deps", "--disable-pip", "-r", str(lock), "-f", "json"]
    args += ["--progress-spinner", "off"]
    for vuln in ignored:
        args += ["--ignore-vuln", vuln]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"pip-audit failed on {lock.name}:\n{done.stderr}") from None
    deps = report["dependencies"]
    return {
        "lock": lock.name,
        "packages": len(deps),
        "unaudited": sorted(d["name"] for d in deps if "skip_reason" in d),
        "findings": [
            {"package": d["name"], "version": d["version"], "id": v["id"], "fix": v["fix_versions"]}
            for d in deps
            for v in d.get("vulns", [])
        ],
    }


def main(pip_audit: str, out_dir: str) -> int:
    ignored = exceptions()
    strict = os.environ.get("FOREWARN_AUDIT_STRICT") == "1"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    status = 0
    for name in LOCKS:
        result = audit(pip_audit, HERE / f"{name}.lock", ignored)
        result["exceptions"] = ignored
        (Path(out_dir) / f"{name}.json").write_text(json.dumps(result, indent=1))
        for f in result["findings"]:
            print(f"audit {name}: {f['package']} {f['version']} {f['id']} (fix: {f['fix']})")
            status = 1
        if result["unaudited"]:
            n, total = len(result["unaudited"]), result["packages"]
            print(
                f"audit {name}: NOT AUDITED: {n} of {total} packages got no advisory data "
                "(PyPI's JSON API unreachable from here?); run `make audit` where it is"
            )
            status = status or int(strict)
        else:
            print(
                f"audit {name}: {result['packages']} packages, {len(result['findings'])} findings"
            )
    return status


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
