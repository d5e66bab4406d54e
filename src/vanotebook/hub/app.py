"""The dashboards app: every service's dashboard in one tabbed page, plus cluster status.

Run behind the hub as a managed service (``python -m vanotebook.hub.app --port P
--prefix /services/dashboards``), or alone on a laptop. Tabs appear for the
services that are installed; the app itself holds no science.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import panel as pn
import param

from .. import dashboards
from ..cluster import SCHEDULER_ENV, cluster_summary, connect

__all__ = ["ClusterStatus", "build_app", "main"]

TABS = (
    ("Mosaic", "MosaicDashboard"),
    ("Detect", "DetectDashboard"),
    ("Cross-match", "XmatchDashboard"),
    ("SOM", "SOMDashboard"),
)


class ClusterStatus(pn.viewable.Viewer):
    """Workers, GPUs and memory of the shared cluster, with a link to Dask's dashboard."""

    dashboard_url = param.String(default="", doc="Link to the Dask dashboard")
    summary = param.Dict(default={}, doc="The last `cluster_summary`")

    def __init__(self, client=None, **params):
        super().__init__(**params)
        self._client = client
        self.refresh()

    def refresh(self, *_events) -> None:
        """Read the cluster's state again."""
        self.summary = cluster_summary(self._client)

    @param.depends("summary", "dashboard_url")
    def _view(self):
        s = self.summary
        rows = "".join(
            f"<tr><td>{w['name']}</td><td>{w['threads']}</td>"
            f"<td>{w['memory_used'] / 2**30:.2f} / {w['memory_limit'] / 2**30:.1f} GiB</td>"
            f"<td>{w['gpus']}</td></tr>" for w in s.get("workers", []))
        link = self.dashboard_url or s.get("dashboard") or ""
        html = (f"<p>Scheduler <code>{s.get('address')}</code>: {s.get('n_workers', 0)} "
                f"workers, {s.get('threads', 0)} threads, {s.get('gpus', 0)} GPUs. "
                f"<a href='{link}' target='_blank'>Dask dashboard</a></p>"
                f"<table class='workers'><tr><th>worker</th><th>threads</th><th>memory</th>"
                f"<th>GPUs</th></tr>{rows}</table>")
        return pn.pane.HTML(html, sizing_mode="stretch_width")

    def __panel__(self):
        button = pn.widgets.Button(label="Refresh", color="primary")
        button.on_click(self.refresh)
        return pn.Column("## Cluster", button, self._view)


def build_app(client=None, *, dask_dashboard: str = "") -> pn.Tabs:
    """The tabbed app: one tab per installed service dashboard, then the cluster."""
    tabs = []
    for title, name in TABS:
        try:
            cls = getattr(dashboards, name)
        except (ImportError, AttributeError):
            continue
        tabs.append((title, cls()))
    tabs.append(("Cluster", ClusterStatus(client, dashboard_url=dask_dashboard)))
    return pn.Tabs(*tabs, dynamic=True, sizing_mode="stretch_width")


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the app (blocking)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=5006)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--address", default="127.0.0.1")
    args = parser.parse_args(argv)
    client = connect() if os.environ.get(SCHEDULER_ENV) else None
    dask_link = "/services/dask/status" if os.environ.get("JUPYTERHUB_SERVICE_PREFIX") else ""

    def page():  # a plain layout: templates fetch web fonts, and the gateway may be offline
        return pn.Column("# vanotebook", build_app(client, dask_dashboard=dask_link),
                         sizing_mode="stretch_width")

    pn.serve({"": page} if not args.prefix else page, port=args.port, address=args.address,
             prefix=args.prefix, websocket_origin="*", show=False, title="vanotebook")


if __name__ == "__main__":  # pragma: no cover
    main()
