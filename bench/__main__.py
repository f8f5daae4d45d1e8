"""``python -m bench [--quick] [--only NAME,...]``: run the benchmarks, print a table, write
``var/bench/results.json``. ``make bench`` runs it in the benchmark environment (the streams
environment plus ``lifetimes``); the nightly benchmark runs in the Airflow environment.

Every result compares Forewarn with a baseline measured in the same run; ``--quick`` runs
everything on small inputs (the test suite checks that it works and writes well-formed results).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import ROOT, MissingData, Result, machine

NAMES = ("clv", "stream", "device_step", "nightly", "detection")
AIRFLOW_PYTHON = ROOT / ".venv" / "airflow" / "bin" / "python"


def run_nightly(quick: bool, customers: str = "") -> list[Result]:
    """The nightly benchmark needs Great Expectations: run it in the Airflow environment."""
    args = [str(AIRFLOW_PYTHON), "-m", "bench.nightly", *(["--quick"] if quick else [])]
    args += ["--customers", customers] if customers else []
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"nightly benchmark failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return [Result(**r) for r in json.loads(done.stdout.strip().splitlines()[-1])]


def table(results: list[Result]) -> str:
    lines = [
        "| benchmark | ours | baseline | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        ours = ", ".join(
            f"{k} {v:,}" if isinstance(v, int | float) else f"{k} {v}" for k, v in r.figures.items()
        )
        base = ", ".join(f"{k} {v:,}" for k, v in r.baseline.items())
        lines.append(
            f"| {r.name} | {ours} | {r.baseline_name}: {base} | {r.ratio} ({r.ratio_of}) "
            f"| {r.goal} | {'yes' if r.goal_met else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small inputs, one run each")
    parser.add_argument("--only", default=",".join(NAMES), help=f"comma-separated: {NAMES}")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "results.json")
    parser.add_argument(
        "--nightly-customers",
        default="",
        help="the nightly's two sizes (default 100000,1000000; --quick: 2000,10000)",
    )
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(chosen) - set(NAMES)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; choose from {NAMES}")
    results: list[Result] = []
    started = time.monotonic()
    errors: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name in chosen:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            if name == "clv":
                from bench import clv

                results.append(clv.run(quick=args.quick))
            elif name == "stream":
                from bench import stream

                results.extend(stream.run(quick=args.quick))
            elif name == "device_step":
                from bench import device_step

                results.extend(device_step.run(quick=args.quick))
            elif name == "detection":
                from bench import detection

                results.extend(detection.run(quick=args.quick))
            else:
                results.extend(run_nightly(args.quick, args.nightly_customers))
        except MissingData as exc:  # a clone without ../shared: said, not a failure
            skipped[name] = str(exc)
            print(f"bench: {name} skipped: {exc}", file=sys.stderr, flush=True)
        except Exception as exc:  # one benchmark failing must not lose the others' figures
            errors[name] = f"{type(exc).__name__}: {exc}"[-3000:]
            print(f"bench: {name} FAILED: {errors[name]}", file=sys.stderr, flush=True)
        print(f"bench: {name} done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    report = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "seconds": round(time.monotonic() - started),
        "machine": machine(),
        "results": [r.as_dict() for r in results],
        "errors": errors,
        "skipped": skipped,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=float))
    args.out.with_suffix(".md").write_text(table(results) + "\n")
    print(table(results))
    print(f"\nwritten to {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
