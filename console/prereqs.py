"""Check the prerequisites a user must install before ``make`` can do the rest.

Runs with the system Python and the standard library only (no environment exists yet), and
prints one clear line per missing piece with the fix, instead of a stack trace later on.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

MIN_PYTHON = (3, 11)
MIN_JAVA = 17


def _java_major() -> int | None:
    if shutil.which("java") is None:
        return None
    out = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    # Java 8 and older report "1.8.0".
    return int(match.group(2)) if major == 1 and match.group(2) else major


def problems(need_java: bool = True) -> list[str]:
    """Return one human-readable line per missing prerequisite (empty when all is well)."""
    found: list[str] = []
    if sys.version_info < MIN_PYTHON:
        found.append(
            f"Python {'.'.join(map(str, MIN_PYTHON))}+ is required, found "
            f"{sys.version.split()[0]}: install it and run make with PYTHON=/path/to/python3.11"
        )
    if need_java:
        major = _java_major()
        if major is None:
            found.append(
                "Java 17+ is required for the local Kafka broker: install OpenJDK 17 "
                "(Debian: apt-get install openjdk-17-jre-headless)"
            )
        elif major < MIN_JAVA:
            found.append(
                f"Java {MIN_JAVA}+ is required for Kafka 4, found Java {major}: "
                "install OpenJDK 17 and put it first on PATH"
            )
        if shutil.which("mvn") is None:
            found.append(
                "Maven is required to fetch the Kafka broker jars from Maven Central: "
                "install it (Debian: apt-get install maven)"
            )
    return found


def main() -> int:
    need_java = "--no-java" not in sys.argv
    found = problems(need_java=need_java)
    for line in found:
        print(f"forewarn: missing prerequisite: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
