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


def _latest(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if not found:
        raise HTTPException(404, f"nothing yet under {folder}: run the forewarn_nightly DAG")
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
        path = _latest(nightly / "lists", "at-risk-*.csv")
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
            raise HTTPException(404, f"nothing yet under {registry}: run the forewarn_nightly DAG")
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

    @app.get("/kpis", response_class=HTMLResponse)
    def kpis() -> HTMLResponse:
        files = sorted((nightly / "kpis").glob("date=*/kpis.parquet"))
        if not files:
            raise HTTPException(404, "no KPIs yet: run the forewarn_nightly DAG")
        frame = pd.concat([pd.read_parquet(f) for f in files])
        overall = frame[frame["channel"] == "all"].round(2)
        return _page(
            "Service KPIs",
            "<p><img src='kpis.png' width='100%'></p>" + overall.to_html(index=False, escape=True),
        )

    @app.get("/kpis.png")
    def kpis_png() -> Response:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        files = sorted((nightly / "kpis").glob("date=*/kpis.parquet"))
        frame = pd.concat([pd.read_parquet(f) for f in files]) if files else pd.DataFrame()
        fig, ax = plt.subplots(figsize=(10, 3.5))
        if len(frame):
            overall = frame[frame["channel"] == "all"].sort_values("date")
            for kpi in ("csat", "nps", "fcr", "ces"):
                ax.plot(overall["date"], overall[kpi], marker="o", label=kpi.upper())
        ax.set(title="Service KPIs per day (all channels)", ylabel="%")
        ax.legend(loc="lower left")
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=90)
        plt.close(fig)
        return Response(buffer.getvalue(), media_type="image/png")

    docs = nightly / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"
    docs.mkdir(parents=True, exist_ok=True)
    data_docs = StaticFiles(directory=str(docs), html=True)

    @app.get("/data-docs/{path:path}")
    async def data_docs_file(path: str, request: Request) -> Response:
        # StaticFiles keeps its checks (no path outside the folder, index.html for folders).
        return await data_docs.get_response(path, request.scope)

    return app
