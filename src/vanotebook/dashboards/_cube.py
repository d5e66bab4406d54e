"""`CubeDashboard`: moment maps beside the continuum, spectra, PV cuts and a 3-D view of a cube.

No science here: the dashboard calls `vanotebook.cube.moments`,
`vanotebook.cube.spectrum`, `vanotebook.cube.pv_slice`,
`vanotebook.cube.find_lines` and `vanotebook.mosaic` (the continuum on the
cube's grid) only, on a cube given or one of the demo sky's line cubes. The
moments run in a worker thread (on the Dask cluster when there is a client),
so the Panel event loop is never blocked; Cancel stops them and takes their
blocks off the cluster.

What is linked: a tap on the moment map (or the continuum) moves the cursor;
the spectrum under it, the RA-v view (the row through the cursor) and the
Dec-v view (the column through it) follow. A tap on the spectrum or on either
position-velocity view picks a channel, marked in all three. The PV line is
drawn on the map with Bokeh's poly-draw tool (or set as ``pv_line``). The
3-D view is Panel's VTK volume pane; its vtk.js is served by Panel itself,
never from a CDN.

Every image (the moment map, the continuum, RA-v, Dec-v and the PV slice) is
an `ImageView`: the browser gets at most 1024 pixels a side, re-sent at finer
steps on zoom; a colour-map choice and a colour bar in the image's unit; and a
read-out under the figure in the image's own frame: the map's and the
continuum's RA/Dec (or l/b) from their WCS, the PV slice's offset and velocity
from its WCS, the cuts' sky position and spectral coordinate from the cube's
WCS through the cursor. The map and the continuum keep square pixels and share
one view.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import astropy.units as u
import numpy as np
import panel as pn
import param

from ..cube import find_lines, moments, parse_cube, pv_slice, spectrum
from ._image import ImageView
from ._page import CANCELLED, Run

__all__ = ["CubeDashboard"]

_MAPS = ("moment0", "moment1", "moment2", "peak", "velocity_of_peak", "linewidth_sigma")
_VIEWS = ("map", "continuum", "ra_v", "dec_v", "pv")  # the images, each an ImageView
_VOLUME_SIDE = 96  # the 3-D view gets at most this many voxels a side (a strided view)


def _finite_range(values: np.ndarray) -> tuple[float, float]:
    ok = np.asarray(values)[np.isfinite(values)]
    if ok.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(ok, [1, 99.5]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


class CubeDashboard(pn.viewable.Viewer):
    """Explore a spectral cube: moment maps and continuum, spectra, PV cuts, a 3-D view.

    Parameters
    ----------
    cube : optional
        Anything `vanotebook.cube.parse_cube` takes; None uses the demo cube
        named by ``demo``.
    continuum : optional
        Images (anything `vanotebook.mosaic` takes) shown beside the moment
        map, mosaicked onto the cube's sky grid; with the demo cubes, the demo
        sky's 250 um tiles. None with a given cube: no continuum panel.
    client : distributed.Client, optional
        Where the moments run (default: the current client, else in-process).
    """

    demo = param.Selector(default="co", objects=["co", "hi"], doc="Demo line cube")
    moment = param.Selector(default="moment0", objects=list(_MAPS), doc="Map shown")
    mask_sigma = param.Number(default=4.0, bounds=(0.0, 50.0),
                              doc="Voxels above this many noise sigmas count (0: all)")
    cursor = param.Tuple(default=(0.0, 0.0), length=2, doc="Pixel (x, y) of the spectrum")
    channel = param.Integer(default=0, bounds=(0, None), doc="Channel marked in the views")
    radius_pixels = param.Number(default=1.5, bounds=(0.5, 50.0),
                                 doc="Radius of the spectrum's cone, pixels")
    pv_line = param.List(default=[], doc="PV path: pixel vertices [(x, y), ...]")
    pv_width = param.Number(default=1.0, bounds=(0.0, 50.0), doc="PV width, pixels (0: a line)")
    status = param.String(default="ready")
    running = param.Boolean(default=False)
    percent = param.Integer(default=0, bounds=(0, 100), doc="Moment blocks done, percent")
    n_lines = param.Integer(default=0, doc="Lines found in the spectrum at the cursor")
    show_volume = param.Boolean(default=False, label="3-D view (drag to rotate)",
                                doc="Show the cube as a volume in the browser")
    run = param.Action(lambda self: self.start(), label="Compute moments")

    def __init__(self, cube: Any = None, *, continuum: Any = None, client=None, **params):
        super().__init__(**params)
        self._given = cube
        self._continuum_given = continuum
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=1)
        self.future: Future | None = None
        self._run: Run | None = None  # the current moments run (`_page.Run`)
        self.maps = None
        self.continuum = None
        self.spectrum_table = None
        self.lines = None
        self.pv = None
        self.ra_v = None
        self.dec_v = None
        self._noise = None
        self._figs: dict[str, Any] = {}
        self._src: dict[str, Any] = {}
        self._build_figures()
        self._load()
        # vtk.js is loaded with the page (Panel serves it) though the volume is made later
        pn.extension("vtk")
        self._volume: pn.pane.VTKVolume | None = None  # made when first shown
        self._volume_box = pn.Column(sizing_mode="fixed", width=440)

    # -- state ---------------------------------------------------------------
    def _load(self) -> None:
        if self._given is not None:
            self.cube = parse_cube(self._given)
            self._noise = None
        else:
            from ..sky._cubes import demo_cubes

            demo = demo_cubes(0)[self.demo]
            self.cube = parse_cube(demo.hdu)
            self._noise = demo.noise
        nv, ny, nx = self.cube.shape
        self.maps = self.continuum = None
        self.param.channel.bounds = (0, nv - 1)
        with param.parameterized.discard_events(self):
            self.channel = nv // 2
            self.cursor = ((nx - 1) / 2, (ny - 1) / 2)
            self.pv_line = [(0.0, (ny - 1) / 2), (nx - 1.0, (ny - 1) / 2)]
        self.update_spectrum()
        self.update_cuts()
        self.update_pv()
        self._push_pv_line()

    @param.depends("demo", watch=True)
    def _demo_changed(self) -> None:
        if self._given is None:
            self._load()
            if self._volume is not None:
                self._volume.object = self.volume_array()
                self._volume.spacing = self._volume_spacing()
            self.status = f"demo cube {self.demo}: press Compute"

    def _mask(self):
        if self.mask_sigma <= 0:
            return None
        if self._noise is None:
            return "auto"
        return self.mask_sigma * self._noise * (self.cube.unit or u.dimensionless_unscaled)

    def start(self) -> Future | None:
        """Compute the moment maps (and the continuum) in a worker thread; returns its future
        (None when a run is under way). `cancel` stops it."""
        from ..cluster import get_client

        if self.running:
            return None
        self.running = True
        self.status = "computing moments..."
        self._run = Run(get_client(self._client))  # its page: the figures change on its loop
        self.future = self._pool.submit(self._moments, self._run)
        return self.future

    def cancel(self) -> None:
        """Stop the current moments run: its blocks leave the cluster, the last maps stay."""
        if self._run is not None:
            self._run.cancel(self._cancelled)

    def _cancelled(self) -> None:
        self.running, self.status = False, CANCELLED

    def _on_progress(self, run: Run, fraction: float) -> None:
        """The moments' (and the continuum's) progress hook; a cancel stops the run here."""
        run.check()
        run.report(lambda: setattr(self, "percent", int(100 * fraction)))

    def _moments(self, run: Run):
        try:
            run.report(lambda: setattr(self, "percent", 0))
            maps = moments(self.cube, _MAPS, mask=self._mask(), client=run.connect(),
                           progress=lambda fraction: self._on_progress(run, fraction))
            continuum = self._continuum(run)
        except Exception as exc:  # shown, not raised: the UI stays up
            message = f"error: {exc}"
            run.report(lambda: self.param.update(status=message, running=False), last=True)
            raise
        finally:
            run.close()

        def done() -> None:
            self.maps, self.continuum = maps, continuum
            self.running = False
            self.status = (f"{len(_MAPS)} maps of a "
                           f"{'x'.join(map(str, self.cube.shape[::-1]))} cube; "
                           f"{self.n_lines} line(s) at the cursor")
            self._refresh()

        run.report(done, last=True)
        return maps

    def _continuum(self, run: Run):
        """The continuum on the cube's sky grid (`vanotebook.mosaic`), or None."""
        images = self._continuum_given
        if images is None and self._given is None:
            from ..sky import demo_sky

            images = demo_sky(0).images("fir250")
        if images is None:
            return None
        import vanotebook

        run.report(lambda: setattr(self, "status", "computing moments... and the continuum "
                                   "on the cube's grid"))
        _, ny, nx = self.cube.shape
        return vanotebook.mosaic(images, wcs=self.cube.celestial, shape=(ny, nx), client=None,
                                 progress=lambda _fraction: run.check())

    @param.depends("cursor", "radius_pixels", watch=True)
    def update_spectrum(self) -> None:
        """The mean spectrum in a small cone at the cursor, and its lines."""
        x, y = self.cursor
        c = self.cube.celestial.pixel_to_world(x, y)
        from astropy.wcs.utils import proj_plane_pixel_scales

        scale = float(np.sqrt(np.prod(proj_plane_pixel_scales(self.cube.celestial))))
        try:
            self.spectrum_table = spectrum(self.cube, (c, self.radius_pixels * scale * u.deg),
                                           client=self._client)
        except ValueError as exc:
            self.status = f"spectrum: {exc}"
            return
        self.lines = find_lines(self.spectrum_table, nsigma=5)
        self.n_lines = len(self.lines)
        self._refresh()

    @param.depends("cursor", watch=True)
    def update_cuts(self) -> None:
        """RA-v and Dec-v: the cube's row and column through the cursor, ``(v, x)``/``(v, y)``."""
        _, ny, nx = self.cube.shape
        x, y = (int(np.clip(round(c), 0, n - 1)) for c, n in zip(self.cursor, (nx, ny),
                                                                 strict=True))
        row, col = self.cube.data[:, y, :], self.cube.data[:, :, x]
        if hasattr(row, "compute"):  # a lazy cube: one row and one column are read
            import dask

            row, col = dask.compute(row, col)
        self.ra_v, self.dec_v = np.asarray(row, float), np.asarray(col, float)
        self._refresh()

    @param.depends("pv_line", "pv_width", watch=True)
    def update_pv(self) -> None:
        """The PV slice along the drawn line."""
        if len(self.pv_line) < 2:
            return
        try:
            self.pv = pv_slice(self.cube, self.pv_line,
                               width=self.pv_width if self.pv_width > 0 else None,
                               client=self._client)
        except ValueError as exc:
            self.status = f"PV: {exc}"
            return
        self._refresh()

    @param.depends("channel", watch=True)
    def _channel_changed(self) -> None:
        self._refresh()

    # -- interaction (Bokeh events; also callable from Python) ----------------
    def tap_map(self, x: float, y: float) -> None:
        """A tap on the map or the continuum at pixel ``(x, y)``: move the cursor there."""
        _, ny, nx = self.cube.shape
        if -0.5 <= x <= nx - 0.5 and -0.5 <= y <= ny - 0.5:
            self.cursor = (float(x), float(y))

    def tap_velocity(self, velocity: float) -> None:
        """A tap on the spectrum or a cut at ``velocity`` (km/s): pick the nearest channel."""
        self.channel = int(np.argmin(np.abs(self.cube.velocity - float(velocity))))

    def _drawn(self, _attr, _old, new) -> None:
        xs, ys = new.get("xs", []), new.get("ys", [])
        if xs and len(xs[-1]) >= 2:
            line = [(float(a), float(b)) for a, b in zip(xs[-1], ys[-1], strict=True)]
            if line != [tuple(p) for p in self.pv_line]:
                self.pv_line = line

    def _push_pv_line(self) -> None:
        if self.pv_line and "pv_line" in self._src:
            xs, ys = zip(*self.pv_line, strict=True)
            self._src["pv_line"].data = {"xs": [list(xs)], "ys": [list(ys)]}

    # -- figures ---------------------------------------------------------------
    def _build_figures(self) -> None:
        """Five `ImageView` figures (the map, the continuum, RA-v, Dec-v, the PV slice:
        level of detail, read-out in each image's own frame, colour map and bar) and the
        spectrum; the images themselves arrive with `_refresh`."""
        from bokeh.events import RangesUpdate, Tap
        from bokeh.models import ColumnDataSource, PolyDrawTool, Span
        from bokeh.plotting import figure

        src = self._src
        src["cursor"] = ColumnDataSource({"x": [0.0], "y": [0.0]})
        src["pv_line"] = ColumnDataSource({"xs": [], "ys": []})
        src["spectrum"] = ColumnDataSource({"v": [], "flux": [], "lo": [], "hi": []})
        src["lines"] = ColumnDataSource({"left": [], "right": []})
        self.views = {k: ImageView(palette="Viridis256" if k in ("map", "continuum")
                                   else "Magma256") for k in _VIEWS}
        self._spans: dict[str, Any] = {}
        self._pushed: dict[str, tuple] = {}
        blank = np.full((1, 1), np.nan)

        tools = "pan,wheel_zoom,box_zoom,reset,tap"
        fmap = self.views["map"].figure(blank, title="moment0", name="cube-map", width=380,
                                        height=340, tools=tools, colour_bar=" ",
                                        labels=("x [pixel]", "y [pixel]"))
        lines = fmap.multi_line(xs="xs", ys="ys", source=src["pv_line"], line_color="white",
                                line_width=2)
        fmap.add_tools(PolyDrawTool(renderers=[lines], num_objects=1))
        fmap.scatter(x="x", y="y", source=src["cursor"], marker="cross", size=16,
                     color="red", line_width=2)
        fcont = self.views["continuum"].figure(blank, title="continuum",
                                               name="cube-continuum", width=380, height=340,
                                               tools=tools, colour_bar=" ",
                                               labels=("x [pixel]", "y [pixel]"))
        fcont.x_range, fcont.y_range = fmap.x_range, fmap.y_range  # one sky, one view
        fcont.scatter(x="x", y="y", source=src["cursor"], marker="cross", size=16, color="red",
                      line_width=2)
        # the browser tells only the figure zoomed; the other gets the same pixels in view
        fmap.on_event(RangesUpdate, lambda e: self.views["continuum"].show_range(
            e.x0, e.x1, e.y0, e.y1))
        fcont.on_event(RangesUpdate, lambda e: self.views["map"].show_range(
            e.x0, e.x1, e.y0, e.y1))
        for fig in (fmap, fcont):
            fig.on_event(Tap, lambda e: self.tap_map(e.x, e.y))
        src["pv_line"].on_change("data", self._drawn)

        fspec = figure(title="spectrum at the cursor", width=380, height=240, tools=tools,
                       x_axis_label="velocity [km/s]", name="cube-spectrum")
        fspec.varea(x="v", y1="lo", y2="hi", source=src["spectrum"], color="lightgrey")
        fspec.vstrip(x0="left", x1="right", source=src["lines"], color="orange", alpha=0.3)
        fspec.step(x="v", y="flux", source=src["spectrum"], mode="center", color="black")
        self._spans["spectrum"] = Span(location=0.0, dimension="height", line_color="red")
        fspec.add_layout(self._spans["spectrum"])
        fspec.on_event(Tap, lambda e: self.tap_velocity(e.x))

        figs = {"map": fmap, "continuum": fcont, "spectrum": fspec}
        for key, title, xlabel in (("ra_v", "RA-v (the cursor's row)", "x [pixel]"),
                                   ("dec_v", "Dec-v (the cursor's column)", "y [pixel]"),
                                   ("pv", "PV along the drawn line", "offset [arcsec]")):
            f = self.views[key].figure(blank, title=title, name=f"cube-{key}", width=380,
                                       height=240, tools=tools, colour_bar=" ",
                                       labels=(xlabel, "velocity [km/s]"), square=False)
            span = Span(location=0.0, dimension="width", line_color="cyan", line_dash="dashed")
            f.add_layout(span)
            self._spans[key] = span
            if key != "pv":
                self._spans[f"{key}_pos"] = Span(location=0.0, dimension="height",
                                                 line_color="red")
                f.add_layout(self._spans[f"{key}_pos"])
            f.on_event(Tap, lambda e: self.tap_velocity(e.y))
            figs[key] = f
        self._figs = figs

    def _show(self, key: str, token: tuple, values: Any, wcs: Any = None, *, unit: str = "",
              axes: Any = None, title: str | None = None) -> None:
        """Put ``values`` into view ``key`` (unless ``token``, the objects it was made
        from, is what that view shows already): its colour limits and bar, its title."""
        old = self._pushed.get(key)
        if old is not None and len(old) == len(token) and all(
                a is b or (isinstance(a, str) and a == b) for a, b in zip(old, token,
                                                                          strict=True)):
            return
        self._pushed[key] = token
        values = np.asarray(values)
        if not np.issubdtype(values.dtype, np.floating):
            values = values.astype(float)
        view = self.views[key]
        view.update(values, wcs, unit=unit, axes=axes, colour_bar=unit or " ")
        view.set_limits(*_finite_range(values))
        if title is not None:
            self._figs[key].title.text = title

    def _velocity_axis(self, v: np.ndarray) -> tuple[float, float]:
        """A linear velocity axis ``(v of channel 0, step)`` for the PV-like views."""
        v = np.asarray(v, float)
        if v.size > 1:
            return float(v[0]), float(v[1] - v[0])
        return float(v[0]), float(self.cube.width[0]) if self.cube.width.size else 1.0

    def _pv_image(self, key: str, values) -> None:
        """A ``(v, position)`` image: the PV slice (offsets in arcsec, read out from its
        own WCS) or a cut (pixels, read out from the cube's WCS through the cursor)."""
        if values is None:
            return
        from astropy.wcs.wcsapi import SlicedLowLevelWCS

        unit = "" if self.cube.unit is None else self.cube.unit.to_string()
        if key == "pv":
            from astropy.io import fits
            from astropy.wcs import WCS

            v = np.asarray(values["velocity"].values, float)
            pos = np.asarray(values["offset"].values, float) * 3600
            dp = float(pos[1] - pos[0]) if pos.size > 1 else 1.0
            wcs = WCS(fits.Header.fromstring(values.attrs["header"]))
            wcs = wcs if wcs.naxis == 2 else None  # a velocity axis that is not linear
            axes = ((float(pos[0]), dp), self._velocity_axis(v))
            self._show(key, (values,), values.values, wcs, unit=values.attrs.get("unit", unit),
                       axes=axes)
            return
        _, ny, nx = self.cube.shape
        x, y = (int(np.clip(round(c), 0, n - 1)) for c, n in zip(self.cursor, (nx, ny),
                                                                 strict=True))
        # the cube's WCS through the cursor's row (RA-v) or column (Dec-v), numpy order
        cut = (slice(None), y, slice(None)) if key == "ra_v" else (slice(None), slice(None), x)
        axes = ((0.0, 1.0), self._velocity_axis(self.cube.velocity))
        self._show(key, (values,), values, SlicedLowLevelWCS(self.cube.wcs, cut), unit=unit,
                   axes=axes)

    @param.depends("moment", watch=True)
    def _refresh(self) -> None:
        """Push the current state into the figures (on the document's loop when served);
        an image is sent again only when it changed."""
        if not self._figs:
            return
        from astropy.io import fits
        from astropy.wcs import WCS

        _, ny, nx = self.cube.shape
        if self.maps is not None:
            var = self.maps[self.moment]
            unit = var.attrs.get("unit", "")
            self._show("map", (self.maps, self.moment), var.values,
                       WCS(fits.Header.fromstring(var.attrs["header"])).celestial, unit=unit,
                       title=f"{self.moment} [{unit}]")
        else:
            self._show("map", (self.cube,), np.full((ny, nx), np.nan), self.cube.celestial,
                       title="press Compute moments")
        if self.continuum is not None:
            mosaic = self.continuum["mosaic"]
            unit = self.continuum.attrs.get("unit", "") or mosaic.attrs.get("unit", "")
            self._show("continuum", (self.continuum,), mosaic.values,
                       WCS(fits.Header.fromstring(self.continuum.attrs["header"])).celestial,
                       unit=unit, title=f"continuum [{unit}]")
        else:
            self._show("continuum", (self.cube,), np.full((ny, nx), np.nan),
                       self.cube.celestial, title="continuum")
        self._src["cursor"].data = {"x": [self.cursor[0]], "y": [self.cursor[1]]}
        t = self.spectrum_table
        if t is not None:
            v = t["velocity"].to_value(u.km / u.s)
            f, n = t["flux"].value, t["noise"].value
            self._src["spectrum"].data = {"v": v, "flux": f, "lo": -n, "hi": n}
            self._figs["spectrum"].yaxis.axis_label = f"[{t['flux'].unit}]"
            lines = self.lines if self.lines is not None else []
            self._src["lines"].data = {
                "left": [float(r["vmin"].to_value(u.km / u.s)) for r in lines],
                "right": [float(r["vmax"].to_value(u.km / u.s)) for r in lines]}
        v_chan = float(self.cube.velocity[min(self.channel, len(self.cube.velocity) - 1)])
        for key in ("spectrum", "ra_v", "dec_v", "pv"):
            self._spans[key].location = v_chan
        self._spans["ra_v_pos"].location = float(self.cursor[0])
        self._spans["dec_v_pos"].location = float(self.cursor[1])
        self._pv_image("ra_v", self.ra_v)
        self._pv_image("dec_v", self.dec_v)
        self._pv_image("pv", self.pv)

    def figures(self) -> dict[str, Any]:
        """The Bokeh figures by name: map, continuum, spectrum, ra_v, dec_v, pv."""
        return dict(self._figs)

    # -- the 3-D view ------------------------------------------------------------
    def volume_array(self) -> np.ndarray:
        """The cube for the 3-D view: ``(x, y, v)`` order, strided to at most 96 a side,
        NaN as 0 (vtk.js has no blanks)."""
        nv, ny, nx = self.cube.shape
        step = [max(1, int(np.ceil(n / _VOLUME_SIDE))) for n in (nv, ny, nx)]
        data = self.cube.data[::step[0], ::step[1], ::step[2]]
        data = np.asarray(data.compute() if hasattr(data, "compute") else data, np.float32)
        return np.ascontiguousarray(np.nan_to_num(data, nan=0.0).transpose(2, 1, 0))

    @param.depends("show_volume", watch=True)
    def _show_volume(self) -> None:
        """Put the 3-D view on the page when asked (vtk.js fails to lay out in a hidden tab,
        and the volume is sent to the browser only for those who look at it)."""
        if self.show_volume and self._volume is None:
            self._volume = pn.pane.VTKVolume(self.volume_array(), height=380, width=420,
                                             spacing=self._volume_spacing(),
                                             css_classes=["cube-volume"])
        self._volume_box[:] = [self._volume] if self.show_volume else []

    def _volume_spacing(self) -> tuple[float, float, float]:
        _, ny, nx = self.cube.shape
        shape = self.volume_array().shape  # the velocity axis drawn as long as the sky's
        return (nx / shape[0], ny / shape[1], max(nx, ny) / shape[2])

    def __panel__(self):
        from ._help import with_help

        return with_help(self, self._layout())

    def _view_block(self, key: str) -> pn.Column:
        """An image figure, its colour-map choice and its read-out (wrapped to its width)."""
        view = self.views[key]
        return pn.Column(
            pn.pane.Bokeh(self._figs[key]),
            pn.widgets.Select.from_param(view.param.palette, width=140, margin=(0, 10)),
            pn.pane.Str(view.param.readout, width=380, margin=(0, 10),
                        css_classes=["vn-readout", f"cube-{key}-readout"],
                        stylesheets=["pre { white-space: pre-wrap; font-size: 11px; }"]))

    def _layout(self):
        from ._help import run_controls, status_pane

        controls = pn.Column(
            pn.widgets.Select.from_param(self.param.demo, disabled=self._given is not None),
            pn.widgets.Select.from_param(self.param.moment),
            pn.widgets.FloatSlider.from_param(self.param.mask_sigma),
            pn.widgets.FloatSlider.from_param(self.param.radius_pixels),
            pn.widgets.FloatSlider.from_param(self.param.pv_width),
            pn.widgets.IntSlider.from_param(self.param.channel),
            run_controls(self, pn.widgets.Button.from_param(self.param.run, color="primary")),
            pn.indicators.Progress(value=self.param.percent, max=100, active=self.param.running,
                                   width=240, css_classes=["cube-progress"]),
            status_pane(self), width=280)
        f = self._figs
        views = pn.Column(
            pn.Row(self._view_block("map"), self._view_block("continuum")),
            pn.Row(pn.pane.Bokeh(f["spectrum"]), self._view_block("pv")),
            pn.Row(self._view_block("ra_v"), self._view_block("dec_v")),
            pn.Column(pn.widgets.Toggle.from_param(self.param.show_volume, width=200),
                      self._volume_box))
        return pn.Row(controls, views)
