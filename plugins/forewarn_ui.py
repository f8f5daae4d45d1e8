"""Forewarn pages inside the Airflow UI: the latest at-risk list, model card, KPIs and the
Great Expectations Data Docs. A FastAPI app mounted by ``forewarn_plugin.py``; every page
needs a logged-in Airflow user (the plugin's endpoints are not protected by Airflow itself).

The login is an app-wide dependency, which FastAPI applies to routes only: a mount (the Data
Docs were ``StaticFiles``) and FastAPI's own docs pages bypassed it (issue 13). So the Data Docs
are a route that hands over to ``StaticFiles``, and the docs pages are off.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from forewarn.settings import Settings


def _user_required():  # type: ignore[no-untyped-def]
    from airflow.api_fastapi.core_api.security import get_user

    return Depends(get_user)


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font:14px system-ui;margin:1.2rem}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _gate(manifest: dict) -> str:
    gate = manifest.get("gate") or {}
    if "passed" not in gate:
        return "not judged"
    return ("passed: " if gate["passed"] else "failed: ") + str(gate.get("reason", ""))[:200]


class NotYet(Exception):
    """A page whose data the nightly has not written yet."""

    def __init__(self, title: str, folder: Path) -> None:
        super().__init__(title)
        self.title, self.folder = title, folder


def _not_yet(title: str, folder: Path) -> HTMLResponse:
    """A page, not raw ``{"detail": ...}`` JSON, before the first nightly run (issue 18)."""
    response = _page(
        title,
        "<p>Nothing here yet: the <b>forewarn_nightly</b> DAG writes this page's data when it "
        "first runs.</p><ul><li>Run it from Airflow: <i>Dags</i> &gt; <b>forewarn_nightly</b> "
        "&gt; <i>Trigger</i>, for a day the lake has data for;</li><li>or fill this home with "
        "the demo, which runs the DAG itself: <code>make demo</code>.</li></ul>"
        f"<p>Looked in <code>{html.escape(str(folder))}</code>.</p>",
    )
    response.status_code = 404
    return response


def _latest(folder: Path, pattern: str, title: str) -> Path:
    found = sorted(folder.glob(pattern))
    if not found:
        raise NotYet(title, folder)
    return found[-1]


def create_app(settings: Settings | None = None, protect: bool = True) -> FastAPI:
    settings = settings or Settings()
    nightly, registry = settings.home / "nightly", settings.home / "models" / "churn"
    app = FastAPI(
        title="Forewarn in Airflow",
        dependencies=[_user_required()] if protect else [],
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(NotYet)
    async def not_yet(request: Request, exc: NotYet) -> HTMLResponse:
        return _not_yet(exc.title, exc.folder)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        links = "".join(
            f"<li><a href='{href}'>{name}</a></li>"
            for href, name in (
                ("at-risk", "At-risk list"),
                ("model-card", "Churn model card"),
                ("kpis", "Service KPIs"),
                ("data-docs/index.html", "Data quality (Data Docs)"),
            )
        )
        return _page("Forewarn", f"<ul>{links}</ul>")

    @app.get("/at-risk", response_class=HTMLResponse)
    def at_risk() -> HTMLResponse:
        path = _latest(nightly / "lists", "at-risk-*.csv", "At-risk list")
        table = pd.read_csv(path).to_html(index=False, escape=True)
        return _page(f"At-risk list {path.stem.removeprefix('at-risk-')}", table)

    @app.get("/model-card", response_class=HTMLResponse)
    def model_card(version: str | None = None) -> HTMLResponse:
        """The registry's versions (stage, ROC AUC, gate) and one version's model card: the
        one asked for, else the champion, else the newest."""
        from markdown_it import MarkdownIt

        from forewarn.registry import Registry, RegistryError, check_version

        versions = Registry(registry).versions()
        if not versions:
            raise NotYet("Churn model card", registry)
        if version is not None:
            try:
                check_version(version)
            except RegistryError as exc:
                raise HTTPException(404, str(exc)) from None
        champion = next((m["version"] for m in versions if m["stage"] == "champion"), None)
        shown = version or champion or versions[-1]["version"]
        card_path = registry / shown / "card.md"
        if shown not in {m["version"] for m in versions} or not card_path.is_file():
            raise HTTPException(404, f"no model card for version {shown}")
        rows = "".join(
            f"<tr><td><a href='model-card?version={html.escape(m['version'])}'>"
            f"{html.escape(m['version'])}</a></td><td>{html.escape(m['stage'])}</td>"
            f"<td>{m.get('metrics', {}).get('roc_auc', float('nan')):.4f}</td>"
            f"<td>{html.escape(_gate(m))}</td>"
            f"<td>{html.escape(str(m.get('published_at', ''))[:19])}</td></tr>"
            for m in reversed(versions)
        )
        # The card is our own Markdown, rendered with raw HTML off (escaped, never run).
        card = (
            MarkdownIt("commonmark", {"html": False}).enable("table").render(card_path.read_text())
        )
        card = card.replace(
            'src="card.png"', f'src="model-card/{html.escape(shown)}.png" width="100%"'
        )
        body = (
            f"<p>Champion in service: {html.escape(champion or 'none')}.</p>"
            "<table><tr><th>version</th><th>stage</th><th>ROC AUC</th><th>gate</th>"
            f"<th>published</th></tr>{rows}</table><hr>{card}"
        )
        return _page(f"Churn model card {shown}", body)

    @app.get("/model-card/{version}.png")
    def model_card_png(version: str) -> FileResponse:
        path = (registry / version / "card.png").resolve()
        if registry.resolve() not in path.parents or not path.exists():
            raise HTTPException(404, "no such model card")
        return FileResponse(path)

    def kpi_frame() -> pd.DataFrame:
        files = sorted((nightly / "kpis").glob("date=*/kpis.parquet"))
        if not files:
            raise NotYet("Service KPIs", nightly / "kpis")
        frame = pd.concat([pd.read_parquet(f) for f in files])
        return frame[frame["channel"] == "all"].sort_values("date")

    @app.get("/kpis", response_class=HTMLResponse)
    def kpis() -> HTMLResponse:
        overall = kpi_frame()
        shown = [k for k, _, _ in KPI_PLOTS if k in overall.columns]
        table = overall[["date", *shown]].round(2)
        days = len(overall)
        return _page(
            "Service KPIs",
            f"<p>{days} day{'s' if days != 1 else ''} computed by the nightly "
            f"({overall['date'].min()} to {overall['date'].max()}), all channels. Definitions: "
            "CSAT, FCR and CES are shares of answers or tickets in %; NPS is % promoters minus "
            "% detractors, in points from -100 to 100; resolution time in hours.</p>"
            "<p><img src='kpis.png' width='100%' alt='each KPI per day'></p>"
            + table.to_html(index=False, escape=True, na_rep="-"),
        )

    @app.get("/kpis.png")
    def kpis_png() -> Response:
        return Response(plot_kpis(kpi_frame()), media_type="image/png")

    docs = nightly / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"
    docs.mkdir(parents=True, exist_ok=True)
    data_docs = StaticFiles(directory=str(docs), html=True)

    @app.get("/data-docs/{path:path}")
    async def data_docs_file(path: str, request: Request) -> Response:
        if not (docs / "index.html").exists():
            raise NotYet("Data quality (Data Docs)", docs)
        # StaticFiles keeps its checks (no path outside the folder, index.html for folders).
        return await data_docs.get_response(path, request.scope)

    return app


#: Each KPI on its own axes: (column, title, unit). Shares and NPS do not share a scale.
KPI_PLOTS = (
    ("csat", "CSAT", "% satisfied (4-5 of 5)"),
    ("nps", "NPS", "points (-100 to 100)"),
    ("fcr", "First-contact resolution", "% of resolved tickets"),
    ("ces", "Customer effort (CES)", "% agreeing it was easy"),
    ("avg_resolution_hours", "Average resolution time", "hours"),
    ("churn_rate", "Churn rate", "% of active customers"),
)


def plot_kpis(overall: pd.DataFrame) -> bytes:
    """One small chart per KPI over the days that exist, each with its own unit; the dates
    axis spans those days only (one day was a lone point on a 2024-2028 axis, issue 18)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    plots = [p for p in KPI_PLOTS if p[0] in overall.columns]
    dates = pd.to_datetime(overall["date"])
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True)
    for ax, (column, title, unit) in zip(axes.flat, plots, strict=False):
        ax.plot(dates, overall[column], marker="o", ms=3, lw=1.2)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit, fontsize=8)
        if column == "nps":
            ax.set_ylim(-100, 100)
            ax.axhline(0, color="#999", lw=0.6)
        elif column == "churn_rate" or unit == "hours":
            ax.set_ylim(bottom=0)  # small values: their own scale, from zero
        elif unit.startswith("%"):
            ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(plots) :]:
        ax.set_visible(False)
    first, last = dates.min(), dates.max()
    pad = pd.Timedelta(days=1)
    every = max(1, ((last - first).days + 2) // 6)  # whole days, at most about six ticks
    for ax in axes.flat:
        ax.set_xlim(first - pad, last + pad)
        ax.xaxis.set_major_locator(mdates.DayLocator(interval=every))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
        ax.tick_params(labelsize=8)
    fig.suptitle("Service KPIs per day (all channels)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()
