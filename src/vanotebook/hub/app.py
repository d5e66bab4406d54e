"""The dashboards app: every service's dashboard in one tabbed page, plus cluster status.

Run behind the hub as a managed service (``python -m vanotebook.hub.app --port P
--prefix /services/dashboards``), or alone on a laptop. Tabs appear for the
services that are installed; the app itself holds no science.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import panel as pn
import param

from .. import dashboards
from ..cluster import SCHEDULER_ENV, cluster_summary, connect

__all__ = ["ClusterStatus", "Workflow", "build_app", "main"]

TABS = (
    ("Mosaic", "MosaicDashboard"),
    ("Detect", "DetectDashboard"),
    ("Cross-match", "XmatchDashboard"),
    ("SOM", "SOMDashboard"),
    ("SEDs", "SEDDashboard"),
    ("Cubes", "CubeDashboard"),
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


def _own_name(base: str) -> str:
    """``base_<user>``: a default product name no other user shares (archive name rules)."""
    import getpass
    import re

    user = os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
    return f"{base}_{re.sub(r'[^A-Za-z0-9_]', '_', user)}"[:64]


class Workflow(pn.viewable.Viewer):
    """The linked workflow: mosaic -> detect on the mosaic -> cross-match -> SOM.

    Each dashboard stays usable on its own; when one finishes, the next one is
    offered its output with a button. Only wiring lives here.
    """

    catalogue_survey = param.Selector(default="ir24", objects=["radio", "ir24", "fir250"],
                                      doc="Survey whose published catalogue the detections "
                                          "are matched with")
    dask_dashboard = param.String(default="", doc="Link to the Dask dashboard")
    publish_name = param.String(default="detections",  # made the user's own in __init__
                                doc="Name of the detections in the shared archive")
    published = param.String(default="", doc="What the last publish did")
    publish_to_vo = param.Boolean(default=False, doc="Publish to the gateway's VO server "
                                  "(TAP and cone search) instead of the shared archive")

    def __init__(self, client=None, *, sky=None, archive=None, **params):
        params.setdefault("publish_name", _own_name("detections"))
        super().__init__(**params)
        from ..sky import demo_sky

        self.sky = sky if sky is not None else demo_sky(0)
        self.client = client
        self._archive = archive
        self.dashboards: dict[str, Any] = {}
        for title, name in TABS:
            try:
                cls = getattr(dashboards, name)
            except (ImportError, AttributeError):
                continue
            if name == "SOMDashboard":
                self.dashboards[title] = cls()
            elif name in ("XmatchDashboard", "SEDDashboard", "CubeDashboard"):
                self.dashboards[title] = cls(client=client)
            else:
                self.dashboards[title] = cls(sky=self.sky, client=client)
        self.detect_on_mosaic = pn.widgets.Button(label="Detect sources on the mosaic",
                                                  disabled=True, color="primary")
        self.match_detections = pn.widgets.Button(label="Cross-match the detections",
                                                  disabled=True, color="primary")
        self.publish_detections_button = pn.widgets.Button(
            label="Publish the detections to the shared archive", disabled=True)
        self.publish_detections_button.on_click(lambda _event: self.publish_detections())
        self.detect_on_mosaic.on_click(self.offer_mosaic)
        self.match_detections.on_click(self.offer_detections)
        if "Mosaic" in self.dashboards:
            self.dashboards["Mosaic"].param.watch(self._mosaic_done, "result")
        if "Detect" in self.dashboards:
            self.dashboards["Detect"].param.watch(self._detect_done, "result")

    def _mosaic_done(self, event) -> None:
        self.detect_on_mosaic.disabled = event.new is None or "Detect" not in self.dashboards

    def _detect_done(self, event) -> None:
        self.match_detections.disabled = event.new is None or "Cross-match" not in \
            self.dashboards
        self.publish_detections_button.disabled = event.new is None

    def publish_detections(self):
        """Add the last detection catalogue to the shared archive, for every user to query.

        With ``publish_to_vo`` (on a gateway with a DaCHS server) the
        catalogue goes to the VO instead, through the publishing service.

        Returns
        -------
        vanotebook.archive.Catalogue, dict or None
            The published catalogue (the service's answer for the VO; None,
            with the reason in ``published``, when there is nothing to publish
            or the archive refuses it).
        """
        from ..archive import Archive, shared_archive

        result = self.dashboards["Detect"].result if "Detect" in self.dashboards else None
        if result is None:
            self.published = "error: nothing to publish yet: run a detection first"
            return None
        try:
            if self._archive is None and os.environ.get("VANOTEBOOK_PUBLISH_URL"):
                # on the gateway the shared archive is written by its publishing service
                # only (it records who published each name); this user cannot write it
                from ._publish import publish_catalogue

                done = publish_catalogue(result.catalogue, self.publish_name, overwrite=True,
                                         vo=self.publish_to_vo,
                                         description="detections published from the gateway")
                if self.publish_to_vo:
                    self.published = (f"published {done['rows']} sources to the VO as "
                                      f"{done['table']} (TAP {done['tap_url']})")
                    return done
                arc = shared_archive()
                self.published = (f"published {done['rows']} sources as "
                                  f"{self.publish_name!r} in {arc.path}")
                return arc.catalogue(self.publish_name)
            if self.publish_to_vo:
                self.published = ("error: publishing to the VO needs the gateway's "
                                  "publishing service and VANOTEBOOK_DACHS_URL")
                return None
            if self._archive is None:
                from ..sky import demo_archive

                arc = demo_archive()
            else:
                arc = Archive(self._archive)
            cat = arc.add_catalogue(self.publish_name, result.catalogue, overwrite=True,
                                    description="detections published from the gateway")
        except Exception as exc:  # shown to the user, not raised in the UI
            self.published = f"error: {exc}"
            return None
        self.published = f"published {cat.n_rows} sources as {self.publish_name!r} in {arc.path}"
        return cat

    def offer_mosaic(self, *_events) -> None:
        """Give the last mosaic to the detection dashboard."""
        result = self.dashboards["Mosaic"].result
        if result is not None:
            self.dashboards["Detect"].set_image(result["mosaic"], name="mosaic")

    def offer_detections(self, *_events) -> None:
        """Give the last detections, and a survey's published catalogue, to the cross-match."""
        from astropy.table import Table

        from ..sky import survey_catalogue

        result = self.dashboards["Detect"].result
        if result is None:
            return
        cat = result.catalogue
        left = Table({"id": cat["id"], "ra": cat["ra"].to_value("deg"),
                      "dec": cat["dec"].to_value("deg"),
                      "ra_error": cat["ra_err"].to_value("arcsec"),
                      "dec_error": cat["dec_err"].to_value("arcsec"),
                      "flux": cat["flux"].value, "snr": cat["snr"]})
        right = survey_catalogue(self.sky.observe(self.catalogue_survey))
        self.dashboards["Cross-match"].upload(left=left, right=right)

    def __panel__(self):
        tabs = []
        for title, dash in self.dashboards.items():
            extra = []
            if title == "Detect":
                row = [self.detect_on_mosaic, self.publish_detections_button,
                       pn.widgets.TextInput.from_param(self.param.publish_name)]
                if os.environ.get("VANOTEBOOK_DACHS_URL") and \
                        os.environ.get("VANOTEBOOK_PUBLISH_URL"):
                    row.append(pn.widgets.Checkbox.from_param(self.param.publish_to_vo,
                                                              name="to the VO"))
                extra = [pn.Row(*row, pn.pane.Str(self.param.published))]
            elif title == "Cross-match":
                extra = [pn.Row(self.match_detections,
                                pn.widgets.Select.from_param(self.param.catalogue_survey))]
            tabs.append((title, pn.Column(*extra, dash)))
        if os.environ.get("VANOTEBOOK_UWS_URL"):  # the gateway's job service, as this user
            tabs.append(("Jobs", dashboards.JobsDashboard()))
        tabs.append(("Cluster", ClusterStatus(self.client, dashboard_url=self.dask_dashboard)))
        # dynamic=False: with lazily rendered tabs, Panel 1.9 left a tab blank when it was
        # opened after another one had been shown
        return pn.Tabs(*tabs, sizing_mode="stretch_width")


def build_app(client=None, *, dask_dashboard: str = "", sky=None) -> pn.viewable.Viewable:
    """The tabbed app: one tab per installed service dashboard, linked, then the cluster."""
    return Workflow(client, sky=sky, dask_dashboard=dask_dashboard).__panel__()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the app (blocking): on a TCP port of ``--address``, or on ``--unix-socket``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=5006)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--unix-socket", default=None,
                        help="listen on this unix socket instead of a TCP port")
    args = parser.parse_args(argv)
    client = connect() if os.environ.get(SCHEDULER_ENV) else None
    gateway = os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or os.environ.get("VANOTEBOOK_GATEWAY")
    dask_link = "/services/dask/status" if gateway else ""

    def page():  # a plain layout: templates fetch web fonts, and the gateway may be offline
        return pn.Column("# vanotebook", build_app(client, dask_dashboard=dask_link),
                         sizing_mode="stretch_width")

    where: dict[str, Any] = ({"unix_socket": args.unix_socket} if args.unix_socket
                             else {"port": args.port, "address": args.address})
    pn.serve({"": page} if not args.prefix else page, prefix=args.prefix.rstrip("/"),
             websocket_origin="*", show=False, title="vanotebook", **where)


if __name__ == "__main__":  # pragma: no cover
    main()
