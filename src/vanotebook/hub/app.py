"""The dashboards app: every service's dashboard in one tabbed page, plus cluster status.

Run behind the hub as a managed service (``python -m vanotebook.hub.app --port P
--prefix /services/dashboards``), or alone on a laptop. Tabs appear for the
services that are installed, then the Sky tab (Aladin Lite on the demo sky's HiPS,
written once per user, with *View on the sky* from the Mosaic and Detect tabs);
the app itself holds no science.
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
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

#: The Sky tab's two lines of help: what it shows, what to try first.
SKY_HELP = ("**Sky**: the demo sky's survey images and published catalogues as HiPS in "
            "Aladin Lite, served from this gateway, with your detections drawn on top. "
            "Try: pick an image and a catalogue HiPS and zoom in, or press *View on the sky* "
            "under a mosaic or a detection.")
#: Where each user's HiPS are kept (the demo sky's are written there once); any HiPS
#: folder put there is offered too.
HIPS_FOLDER = Path("~/.cache/vanotebook/hips")
_HIPS_LOCK = threading.Lock()  # one writer of the demo HiPS per process


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


def _demo_hips(sky: Any, folder: Path, *, client=None) -> dict[str, dict[str, str]]:
    """The demo sky's HiPS in ``folder``, written the first time: per survey, an image
    HiPS of its mosaic and a catalogue HiPS of what it publishes.

    Returns ``{"image": {survey: folder}, "catalogue": {survey: folder}}``.
    """
    from ..archive import write_catalogue_hips
    from ..mosaic import mosaic, to_hips
    from ..sky import SURVEYS, survey_catalogue
    from ..sky._demo import SKY_VERSION

    ra, dec = sky.center
    root = Path(folder).expanduser() / (f"demo-{sky.seed}-{sky.size:g}deg-{ra:.4f}{dec:+.4f}"
                                        f"-v{SKY_VERSION}")
    out: dict[str, dict[str, str]] = {"image": {}, "catalogue": {}}
    with _HIPS_LOCK:
        for key, survey in SURVEYS.items():
            image, cat = root / f"{key}-image", root / f"{key}-catalogue"
            if not (image / "properties").is_file():
                done = mosaic(sky.observe(key).tiles, client=client)
                to_hips(done, image, tile_width=256, formats=("png",), client=client,
                        title=f"{survey.name} (demo mosaic)", overwrite=True)
            if not (cat / "properties").is_file():
                write_catalogue_hips(survey_catalogue(sky.observe(key)), cat, order_by="flux",
                                     descending=True, name=f"{survey.name}: catalogue (demo)",
                                     client=client, overwrite=True)
            out["image"][key], out["catalogue"][key] = str(image), str(cat)
    return out


def _own_name(base: str) -> str:
    """``base_<user>``: a default product name no other user shares (archive name rules)."""
    import getpass
    import re

    user = os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
    return f"{base}_{re.sub(r'[^A-Za-z0-9_]', '_', user)}"[:64]


_NO_MOSAIC = "No mosaic yet: run one first"
_NO_DETECTIONS = "No detections yet: run a detection first"


class Workflow(pn.viewable.Viewer):
    """The linked workflow: mosaic -> detect on the mosaic -> cross-match -> SOM.

    Each dashboard stays usable on its own; when one finishes, the next one is
    offered its output with a button, and *View on the sky* shows it in the Sky
    tab (`sky_viewer`, a `HiPSViewer`). Only wiring lives here.

    Parameters
    ----------
    client : distributed.Client, optional
        Where the services run.
    sky : DemoSky, optional
        The demo sky (default ``demo_sky(0)``).
    archive : path, optional
        Where detections are published (default: the shared archive).
    hips_folder : path, optional
        The user's HiPS, offered in the Sky tab; the demo sky's are written
        there once (default `HIPS_FOLDER`).
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

    def __init__(self, client=None, *, sky=None, archive=None,
                 hips_folder: str | os.PathLike | None = None, **params):
        params.setdefault("publish_name", _own_name("detections"))
        super().__init__(**params)
        from ..sky import demo_sky

        self.sky = sky if sky is not None else demo_sky(0)
        self.client = client
        self._archive = archive
        self.hips_folder = Path(hips_folder if hips_folder is not None else HIPS_FOLDER
                                ).expanduser()
        self.sky_viewer = dashboards.HiPSViewer(help_text=SKY_HELP)
        self._demo: dict[str, dict[str, str]] = {}  # the demo HiPS by survey, once written
        self._wanted: str | None = None  # the survey to show once they are
        self._sky_future: Future | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sky-hips")
        self._tabs: list[tuple[pn.Tabs, list[str]]] = []  # every view made, with its titles
        self.dashboards: dict[str, Any] = {}
        for title, name in TABS:
            try:
                cls = getattr(dashboards, name)
            except (ImportError, AttributeError):
                continue
            if name in ("SOMDashboard", "XmatchDashboard", "SEDDashboard", "CubeDashboard"):
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
        self.view_mosaic_on_sky = pn.widgets.Button(label="View on the sky", disabled=True,
                                                    description=_NO_MOSAIC)
        self.view_detections_on_sky = pn.widgets.Button(label="View on the sky", disabled=True,
                                                        description=_NO_DETECTIONS)
        self.view_mosaic_on_sky.on_click(lambda _event: self.view_on_sky("Mosaic"))
        self.view_detections_on_sky.on_click(lambda _event: self.view_on_sky("Detect"))
        if "Mosaic" in self.dashboards:
            self.dashboards["Mosaic"].param.watch(self._mosaic_done, "result")
        if "Detect" in self.dashboards:
            self.dashboards["Detect"].param.watch(self._detect_done, "result")

    def _mosaic_done(self, event) -> None:
        self.detect_on_mosaic.disabled = event.new is None or "Detect" not in self.dashboards
        self.view_mosaic_on_sky.param.update(
            disabled=event.new is None,
            description=_NO_MOSAIC if event.new is None else "Centre the Sky tab on the mosaic")

    def _detect_done(self, event) -> None:
        self.match_detections.disabled = event.new is None or "Cross-match" not in \
            self.dashboards
        self.publish_detections_button.disabled = event.new is None
        self.view_detections_on_sky.param.update(
            disabled=event.new is None,
            description=_NO_DETECTIONS if event.new is None else
            "Centre the Sky tab on the detections and draw them")

    # ---------------------------------------------------------------- the Sky tab
    def prepare_sky(self, *, sync: bool = False) -> Future:
        """Write the demo sky's HiPS (once per user, in ``hips_folder``) and offer every
        HiPS found there in the Sky tab.

        The work runs in a thread, so the page stays live; the Sky tab starts it
        when first opened.

        Parameters
        ----------
        sync : bool
            Wait for it (and raise its error).

        Returns
        -------
        concurrent.futures.Future
            The work's future (the same one for every call).
        """
        if self._sky_future is None:
            from ..archive import find_hips
            from ..dashboards._page import on_page, page

            doc, viewer = page(), self.sky_viewer
            viewer.status = "Writing the demo sky's HiPS (once per user: under a minute)..."

            def work() -> None:
                try:
                    demo = _demo_hips(self.sky, self.hips_folder, client=self.client)
                    found = find_hips(self.hips_folder)
                except Exception as exc:
                    message = f"error: cannot write the demo HiPS: {exc}"
                    on_page(doc, lambda: setattr(viewer, "status", message))
                    raise
                on_page(doc, lambda: self._offer_hips(demo, found))

            self._sky_future = self._pool.submit(work)
        if sync:
            self._sky_future.result()
        return self._sky_future

    def _offer_hips(self, demo: dict[str, dict[str, str]], found: dict[str, dict[str, str]]
                    ) -> None:
        self._demo = demo
        viewer = self.sky_viewer
        viewer.param.update(image_choices=found["image"], catalogue_choices=found["catalogue"])
        if self._wanted or not (viewer.image_hips or viewer.catalogue_hips):
            viewer.param.update(self._layers(self._wanted or next(iter(demo["image"]))))

    def _layers(self, survey: str | None) -> dict[str, str]:
        """The demo image and catalogue HiPS of ``survey`` (none until they are written)."""
        if survey not in self._demo.get("image", {}):
            return {}
        return {"image_hips": self._demo["image"][survey],
                "catalogue_hips": self._demo["catalogue"][survey]}

    def _survey_of(self, what: str) -> str | None:
        """The demo survey that the mosaic or the detections come from, if one does."""
        mosaic, detect = self.dashboards.get("Mosaic"), self.dashboards.get("Detect")
        if what == "Detect" and detect is not None:
            if detect.source == detect.param.source.default:  # a demo survey's tile
                return detect.survey
            if detect.image_name != "mosaic":  # an uploaded or archive image
                return None
        return getattr(mosaic, "source", None)  # a survey, or "archive"/"upload" (none)

    def view_on_sky(self, what: str) -> None:
        """Centre the Sky tab on the last mosaic or detections, draw the detections, open it.

        The view is centred on the mosaic's centre (the detections' mean
        position) and its field of view holds the whole mosaic (every
        detection); the demo survey it comes from is shown under them.

        Parameters
        ----------
        what : {"Mosaic", "Detect"}
            The tab whose result is shown.
        """
        from astropy.table import Table

        from ..io import parse_image

        viewer = self.sky_viewer
        mosaic = self.dashboards["Mosaic"].result if "Mosaic" in self.dashboards else None
        found = self.dashboards["Detect"].result if "Detect" in self.dashboards else None
        cat = found.catalogue if found is not None else None
        regions = None
        if cat is not None and len(cat):
            ra, dec = cat["ra"].to_value("deg"), cat["dec"].to_value("deg")
            regions = Table({"id": cat["id"], "ra": ra, "dec": dec, "major": cat["major"],
                             "minor": cat["minor"], "pa": cat["pa"]})
        try:
            if what == "Mosaic":
                if mosaic is None:
                    viewer.status = f"error: {_NO_MOSAIC}"
                    return
                image = parse_image(mosaic["mosaic"])
                ny, nx = image.shape[-2:]
                wcs = image.celestial
                centre = wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2)
                corners = wcs.calc_footprint(axes=(nx, ny))
                viewer.centre_on(corners[:, 0], corners[:, 1],
                                 centre=(float(centre[0]), float(centre[1])), regions=regions,
                                 **self._layers(self._survey_of("Mosaic")))
            elif regions is None:
                viewer.status = (f"error: {_NO_DETECTIONS}" if found is None else
                                 "error: no detections with sky positions to show")
                return
            else:
                viewer.centre_on(regions["ra"], regions["dec"], regions=regions,
                                 **self._layers(self._survey_of("Detect")))
        except ValueError as exc:  # e.g. positions with no mean direction: said, not raised
            viewer.status = f"error: {exc}"
            return
        self._wanted = self._survey_of(what)
        self.prepare_sky()
        for tabs, titles in self._tabs:
            tabs.active = titles.index("Sky")

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
                                  f"{self.publish_name!r} in the shared archive")
                return arc.catalogue(self.publish_name)
            if self.publish_to_vo:
                self.published = ("error: publishing to the VO needs the gateway's "
                                  "publishing service and VANOTEBOOK_DACHS_URL")
                return None
            if self._archive is None:
                from ..sky import demo_archive

                arc, where = demo_archive(), "the demo archive"
            else:
                arc, where = Archive(self._archive), "the shared archive"
            cat = arc.add_catalogue(self.publish_name, result.catalogue, overwrite=True,
                                    description="detections published from the gateway")
        except Exception as exc:  # shown to the user, not raised in the UI
            self.published = f"error: {exc}"
            return None
        # the archive by name, never its path on the server (#13 item 9)
        self.published = f"published {cat.n_rows} sources as {self.publish_name!r} in {where}"
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
            if title == "Mosaic":
                extra = [pn.Row(self.view_mosaic_on_sky)]
            elif title == "Detect":
                row = [self.detect_on_mosaic, self.view_detections_on_sky,
                       self.publish_detections_button,
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
        tabs.append(("Sky", self.sky_viewer))
        if os.environ.get("VANOTEBOOK_UWS_URL"):  # the gateway's job service, as this user
            tabs.append(("Jobs", dashboards.JobsDashboard()))
        tabs.append(("Cluster", ClusterStatus(self.client, dashboard_url=self.dask_dashboard)))
        # dynamic=False: with lazily rendered tabs, Panel 1.9 left a tab blank when it was
        # opened after another one had been shown
        view = pn.Tabs(*tabs, sizing_mode="stretch_width")
        titles = [title for title, _ in tabs]
        self._tabs.append((view, titles))

        def opened(event) -> None:  # the demo HiPS are written when the Sky tab is first seen
            if titles[event.new] == "Sky":
                self.prepare_sky()

        view.param.watch(opened, "active")
        return view


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
        # the table's JavaScript with every page: Panel loads an extension first asked for
        # while a page is made with that page only, and a second page (another tab or
        # browser of the same user) then drew nothing
        pn.extension("tabulator")
        return pn.Column("# vanotebook", build_app(client, dask_dashboard=dask_link),
                         sizing_mode="stretch_width")

    where: dict[str, Any] = ({"unix_socket": args.unix_socket} if args.unix_socket
                             else {"port": args.port, "address": args.address})
    prefix = args.prefix.rstrip("/")
    # results are downloaded as files from a private folder, never through the websocket;
    # a lost connection says so on the page
    from ..dashboards import _files

    downloads = _files.serve_folder(prefix)
    pn.config.disconnect_notification = "Connection to the server lost: reload the page."
    pn.serve({"": page} if not args.prefix else page, prefix=prefix,
             websocket_origin="*", show=False, title="vanotebook",
             static_dirs={_files.ROUTE: str(downloads)}, **where)


if __name__ == "__main__":  # pragma: no cover
    main()
