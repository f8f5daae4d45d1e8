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
import json
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
    def model_card() -> HTMLResponse:
        champion = (
            json.loads((registry / "champion.json").read_text())
            if (registry / "champion.json").exists()
            else None
        )
        meta_path = _latest(registry, "*/metadata.json")
        meta = json.loads(meta_path.read_text())
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td>"
            + "".join(
                f"<td>{(m or {}).get(k, float('nan')):.4f}</td>"
                for k in ("roc_auc", "pr_auc", "brier", "lift_top_decile")
            )
            + "</tr>"
            for name, m in (
                ("challenger", meta["challenger"]),
                ("champion", meta["champion"]),
                ("baseline (DummyClassifier)", meta["baseline"]),
            )
        )
        body = (
            f"<p>Version {html.escape(meta['version'])}; promoted: {meta['promoted']} "
            f"({html.escape(meta['reason'])}). Champion in service: "
            f"{html.escape(champion['version']) if champion else 'none'}.</p>"
            "<table><tr><th>model</th><th>ROC AUC</th><th>PR AUC</th><th>Brier</th>"
            f"<th>lift top 10%</th></tr>{rows}</table>"
            f"<p><img src='model-card/{html.escape(meta['version'])}.png' width='100%'></p>"
        )
        return _page("Churn model card", body)

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
