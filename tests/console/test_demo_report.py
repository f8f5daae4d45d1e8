"""The demo's report (issue 18, items 1 and 5): Markdown, JSON and an HTML page that opens with
a diagram of what ran and the counts that flowed, and a one-screen terminal summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from console.demo_report import summary_lines, write_report

SAMPLE = Path(__file__).with_name("demo_report_sample.json")


@pytest.fixture
def report():
    return json.loads(SAMPLE.read_text())


def test_three_reports_and_their_pictures(report, tmp_path):
    paths = write_report(report, tmp_path)
    assert {p.name for p in paths.values()} == {"report.json", "report.md", "report.html"}
    assert json.loads(paths["json"].read_text())["events_produced"] == 295_976
    assert (tmp_path / "lead_times.png").stat().st_size > 0
    md = paths["md"].read_text()
    for heading in (
        "## The nightly DAG in Airflow, day 2026-02-03",
        "## Churn model on the holdout",
        "## Lifetime value tiers",
        "## Top of the at-risk list",
        "## The day's service KPIs",
        "## The stream against naive baselines",
    ):
        assert heading in md
    assert "| DummyClassifier | 0.500 |" in md, "the model next to the dummy"
    assert "promoted (no champion yet" in md
    assert "data-quality gate: passed" in md


def test_the_html_page_opens_with_what_ran_and_what_flowed(report, tmp_path):
    page = write_report(report, tmp_path)["html"].read_text()
    diagram = page.index("<svg")
    assert diagram < page.index("<h2>"), "the diagram comes first"
    svg = page[diagram : page.index("</svg>")]
    for part in (
        "Kafka broker",
        "Faust worker",
        "Airflow nightly",
        "Outreach service",
        "Event lake",
        "Outreach store",
    ):
        assert part in svg
    for count in ("295,976 streamed", "592,607 backfilled", "295,976 archived", "25 at-risk tasks"):
        assert count in svg
    assert "model 2026-02-03" in svg and "promoted, loaded" in svg
    assert "<img src='lead_times.png'" in page


def test_the_terminal_summary_fits_one_screen(report):
    lines = summary_lines(report)
    assert len(lines) <= 15 and all(len(line) <= 120 for line in lines), lines
    text = "\n".join(lines)
    assert "gate passed" in text and "promoted" in text and "25 customers" in text


def test_without_a_champion_the_worker_is_said_to_keep_its_points_score(report, tmp_path):
    no_model = {**report["nightly"]["model"], "promoted": False, "champion": None}
    no_model.pop("loaded_by_worker", None)
    changed = {**report, "nightly": {**report["nightly"], "model": no_model}}
    text = write_report(changed, tmp_path)["md"].read_text()
    assert "the running worker keeps its points score (no champion yet)" in text
    assert "keeps the champion in service" not in text
