"""Fail environment set-up loudly when the resolver picked something we did not test.

``python -m console.envcheck streams|airflow`` is run by ``make`` right after an environment is
synced. A single resolver run for Faust and Airflow together silently falls back to a 2023
faust-streaming; this check turns such a fall-back into an error instead of a confusing bug.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

# (distribution, minimum major.minor, maximum major exclusive)
REQUIRED: dict[str, list[tuple[str, tuple[int, int], int]]] = {
    "streams": [("faust-streaming", (0, 15), 1), ("aiokafka", (0, 14), 1)],
    "airflow": [
        ("apache-airflow", (3, 3), 4),
        ("great-expectations", (1, 0), 2),
        ("scikit-learn", (1, 5), 2),
    ],
}


def _major_minor(text: str) -> tuple[int, int]:
    parts = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in text.split(".")[:2]]
    return parts[0], parts[1] if len(parts) > 1 else 0


def check(env: str) -> list[str]:
    """Return the problems found for environment ``env`` (empty when it is as locked)."""
    errors = []
    for dist, minimum, below_major in REQUIRED[env]:
        try:
            found = version(dist)
        except PackageNotFoundError:
            errors.append(f"{dist} is not installed in the {env} environment")
            continue
        got = _major_minor(found)
        if not (minimum <= got and got[0] < below_major):
            errors.append(
                f"{dist} {found} in the {env} environment, expected >= "
                f"{'.'.join(map(str, minimum))} and < {below_major}: recreate it with "
                f"'rm -rf .venv/{env} && make envs'"
            )
    return errors


def main() -> int:
    env = sys.argv[1] if len(sys.argv) > 1 else "streams"
    errors = check(env)
    for line in errors:
        print(f"forewarn: {line}", file=sys.stderr)
    if not errors:
        print(
            f"forewarn: {env} environment ok: "
            + ", ".join(f"{d} {version(d)}" for d, _, _ in REQUIRED[env])
        )
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
