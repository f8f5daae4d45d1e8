"""Forewarn's Airflow pages as a plain FastAPI app (no Airflow server; the login is tested in
test_airflow_ui.py): friendly before the first nightly run, and the KPI chart over the days."""

from __future__ import annotations

import io
import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from forewarn.settings import Settings

ROOT = Path(__file__).parents[2]


@pytest.fixture
def pages(tmp_path):
    sys.path.insert(0, str(ROOT / "plugins"))
    try:
        from forewarn_ui import create_app
    finally:
        sys.path.remove(str(ROOT / "plugins"))
    return TestClient(create_app(Settings().with_home(tmp_path), protect=False)), tmp_path


@pytest.mark.parametrize("path", ["/at-risk", "/model-card", "/kpis", "/data-docs/index.html"])
def test_a_page_before_the_first_run_explains_itself(pages, path):
    """They answered raw {"detail": ...} JSON before the first run (issue 18)."""
    client, home = pages
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "forewarn_nightly" in answer.text and "make demo" in answer.text
    assert str(home) in answer.text


def test_the_kpi_page_plots_every_day_there_is(pages):
    from PIL import Image

    client, home = pages
    first = date(2026, 1, 20)
    for k in range(5):
        day = first + timedelta(days=k)
        folder = home / "nightly" / "kpis" / f"date={day}"
        folder.mkdir(parents=True)
        pd.DataFrame(
            [
                {
                    "date": day,
                    "channel": "all",
                    "csat": 80.0 + k,
                    "nps": -10.0 + k,
                    "fcr": 70.0,
                    "ces": 60.0,
                    "avg_resolution_hours": 5.5,
                    "tickets_resolved": 12.0,
                    "active_customers": 300.0,
                    "churn_rate": 0.3,
                    "retention_rate": 99.7,
                    "new_customer_rate": 0.0,
                }
            ]
        ).to_parquet(folder / "kpis.parquet")
    page = client.get("/kpis")
    assert page.status_code == 200
    assert "5 days" in page.text and "2026-01-20 to 2026-01-24" in page.text
    assert "points from -100 to 100" in page.text
    png = client.get("/kpis.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size[0] > 800


def test_the_kpi_axes_have_units_and_span_only_the_days_there_are():
    sys.path.insert(0, str(ROOT / "plugins"))
    try:
        import forewarn_ui
    finally:
        sys.path.remove(str(ROOT / "plugins"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(
        {"date": [date(2026, 2, 3)], "channel": ["all"], "csat": [81.0], "nps": [12.0]}
    )
    shown = []
    real_close = plt.close

    def keep(fig):  # type: ignore[no-untyped-def]
        shown.append(fig)
        real_close(fig)

    plt.close = keep
    try:
        forewarn_ui.plot_kpis(frame)
    finally:
        plt.close = real_close
    axes = [ax for ax in shown[0].axes if ax.get_visible()]
    assert [ax.get_ylabel() for ax in axes] == ["% satisfied (4-5 of 5)", "points (-100 to 100)"]
    assert axes[1].get_ylim() == (-100, 100)
    low, high = axes[0].get_xlim()
    assert high - low <= 3, "one day is not drawn on a years-long axis"
