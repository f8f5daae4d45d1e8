"""Run a Great Expectations 1.x suite (JSON beside this file) on a DataFrame, from a plain task.

The GX Airflow provider cannot be installed with Airflow 3.3 (it pins structlog < 25.5), so
the nightly DAG calls :func:`validate` in an ordinary task. Suites are JSON reviewed like code;
``${name}`` values in them are filled from ``params`` (for example the day's expected volume).
Results are kept in a file Data Context under ``project_dir`` and Data Docs are rebuilt there;
a failed suite raises :class:`DataQualityError` naming every failed expectation.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

SUITES = Path(__file__).parent
# Task logs show INFO: GX's registry chatter at import ("Skipping registering function ...", a
# dozen lines per task) buried the one line that matters. Set before GX is imported.
logging.getLogger("great_expectations").setLevel(logging.WARNING)
#: Where the Data Docs are served in the Airflow UI (plugins/forewarn_ui.py): a file:// link in a
#: task log opens nothing in a browser talking to a server (issue 18).
DATA_DOCS_PAGE = "/forewarn/data-docs/index.html"


class DataQualityError(RuntimeError):
    """A suite failed: the message lists what, so the task log says why."""


@dataclass(frozen=True)
class ValidationReport:
    suite: str
    success: bool
    evaluated: int
    failures: list[str]
    docs_url: str


def load_suite(name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The suite's JSON with ``${...}`` placeholders filled; an unfilled one is an error."""
    text = (SUITES / f"{name}.json").read_text()
    params = params or {}

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in params:
            raise KeyError(f"suite {name} needs parameter {key!r}; pass it in params")
        return json.dumps(params[key])

    return json.loads(re.sub(r'"\$\{(\w+)\}"', fill, text))


def validate(
    frame: pd.DataFrame,
    suite_name: str,
    project_dir: Path,
    params: dict[str, Any] | None = None,
    raise_on_failure: bool = True,
) -> ValidationReport:
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    spec = load_suite(suite_name, params)
    with _exclusive(Path(project_dir)):
        return _validate(
            gx, ExpectationConfiguration, frame, suite_name, spec, project_dir, raise_on_failure
        )


@contextlib.contextmanager
def _exclusive(project_dir: Path) -> Iterator[None]:
    """One validation at a time per GX project: concurrent runs (a backfill) otherwise race
    on the stored suites ("ExpectationSuite ... has changed since it has last been saved")."""
    project_dir.mkdir(parents=True, exist_ok=True)
    with (project_dir / ".forewarn.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _validate(
    gx: Any,
    ExpectationConfiguration: Any,
    frame: pd.DataFrame,
    suite_name: str,
    spec: dict[str, Any],
    project_dir: Path,
    raise_on_failure: bool,
) -> ValidationReport:
    # Its tqdm bars went to stderr, which Airflow logged at ERROR.
    context = gx.get_context(mode="file", project_root_dir=str(project_dir))
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_or_update_pandas("forewarn")
    try:
        asset = source.get_asset(suite_name)
    except LookupError:
        asset = source.add_dataframe_asset(suite_name)
    try:
        batch = asset.get_batch_definition("whole")
    except KeyError:
        batch = asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add_or_update(
        gx.ExpectationSuite(
            name=spec["name"],
            expectations=[
                ExpectationConfiguration(**e).to_domain_obj() for e in spec["expectations"]
            ],
        )
    )
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=suite_name,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format={"result_format": "SUMMARY"},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    failures = []
    evaluated = 0
    for run in result.run_results.values():
        for r in run.results:
            evaluated += 1
            if not r.success:
                cfg = r.expectation_config
                args = ", ".join(
                    f"{k}={v}" for k, v in cfg.kwargs.items() if k not in ("column_set", "batch_id")
                )
                seen = r.result.get("unexpected_count", r.result.get("observed_value"))
                failures.append(f"{cfg.type}({args}): {seen}")
    docs = context.get_docs_sites_urls()
    report = ValidationReport(
        suite_name, bool(result.success), evaluated, failures, docs[0]["site_url"] if docs else ""
    )
    if raise_on_failure and not report.success:
        raise DataQualityError(
            f"suite {suite_name} failed {len(failures)} of {evaluated} "
            f"expectations: {'; '.join(failures)}. Data Docs: {DATA_DOCS_PAGE} in the Airflow "
            f"UI (Forewarn > Data quality), files in {Path(project_dir)}"
        )
    return report
