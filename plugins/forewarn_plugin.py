"""Registers Forewarn's pages in the Airflow 3 UI (navigation entries under "Forewarn")."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from forewarn_ui import create_app


class ForewarnPlugin(AirflowPlugin):
    name = "forewarn"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/forewarn", "name": "Forewarn"}]
    external_views = [
        {
            "name": name,
            "href": f"forewarn/{path}",
            "destination": "nav",
            "category": "Forewarn",
            "url_route": f"forewarn-{slug}",
        }
        for name, path, slug in (
            ("At-risk list", "at-risk", "at-risk"),
            ("Churn model card", "model-card", "model-card"),
            ("Service KPIs", "kpis", "kpis"),
            ("Data quality", "data-docs/index.html", "data-quality"),
        )
    ]
