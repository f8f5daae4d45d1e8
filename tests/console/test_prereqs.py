"""A missing prerequisite gets one clear line naming the fix, not a stack trace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "console" / "prereqs.py"


def test_all_present_here():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_missing_java_and_maven_are_named(tmp_path):
    # An empty PATH hides java and mvn from the check (the interpreter is called directly).
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env={"PATH": str(tmp_path)}
    )
    assert done.returncode == 1
    assert "Java 17+ is required" in done.stderr
    assert "Maven is required" in done.stderr
    assert "Traceback" not in done.stderr
