"""`CubeDashboard`: moment maps of a spectral cube, the spectrum under the cursor, a PV line.

No science here: the dashboard calls `vanotebook.cube.moments`,
`vanotebook.cube.spectrum`, `vanotebook.cube.pv_slice` and
`vanotebook.cube.find_lines` only, on a cube given or one of the demo sky's
line cubes (`vanotebook.sky._cubes`). The moments run in a worker thread (on
the Dask cluster when there is a client), so the Panel event loop is never
blocked; the spectrum and the PV slice follow the cursor and the drawn line.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import astropy.units as u
import numpy as np
import panel as pn
import param

from ..cube import find_lines, moments, parse_cube, pv_slice, spectrum

__all__ = ["CubeDashboard"]

_MAPS = ("moment0", "moment1", "moment2", "peak", "velocity_of_peak", "linewidth_sigma")


class CubeDashboard(pn.viewable.Viewer):
    """Explore a spectral cube: moment maps, a spectrum at the cursor, a PV slice.

    Parameters
    ----------
    cube : optional
        Anything `vanotebook.cube.parse_cube` takes; None uses the demo cube
        named by ``demo``.
    client : distributed.Client, optional
        Where the moments run (default: the current client, else in-process).
    """

    demo = param.Selector(default="co", objects=["co", "hi"], doc="Demo line cube")
    moment = param.Selector(default="moment0", objects=list(_MAPS), doc="Map shown")
    mask_sigma = param.Number(default=4.0, bounds=(0.0, 50.0),
                              doc="Voxels above this many noise sigmas count (0: all)")
    cursor = param.Tuple(default=(0.0, 0.0), length=2, doc="Pixel (x, y) of the spectrum")
    radius_pixels = param.Number(default=1.5, bounds=(0.5, 50.0),
                                 doc="Radius of the spectrum's cone, pixels")
    pv_line = param.List(default=[], doc="PV path: pixel vertices [(x, y), ...]")
    pv_width = param.Number(default=1.0, bounds=(0.0, 50.0), doc="PV width, pixels (0: a line)")
    status = param.String(default="ready")
    running = param.Boolean(default=False)
    n_lines = param.Integer(default=0, doc="Lines found in the spectrum at the cursor")
    run = param.Action(lambda self: self.start(), label="Compute moments")

    def __init__(self, cube: Any = None, *, client=None, **params):
        super().__init__(**params)
        self._given = cube
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=1)
        self.future: Future | None = None
        self.maps = None
        self.spectrum_table = None
        self.lines = None
        self.pv = None
        self._noise = None
        self._load()
        self._map_pane = pn.pane.Matplotlib(None, dpi=96, tight=True)
        self._spec_pane = pn.pane.Matplotlib(None, dpi=96, tight=True)
        self._pv_pane = pn.pane.Matplotlib(None, dpi=96, tight=True)

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
        _, ny, nx = self.cube.shape
        self.cursor = ((nx - 1) / 2, (ny - 1) / 2)
        self.pv_line = [(0.0, (ny - 1) / 2), (nx - 1.0, (ny - 1) / 2)]
        self.maps = None

    @param.depends("demo", watch=True)
    def _demo_changed(self) -> None:
        if self._given is None:
            self._load()
            self.status = f"demo cube {self.demo}: press Compute"

    def _mask(self):
        if self.mask_sigma <= 0:
            return None
        if self._noise is None:
            return "auto"
        return self.mask_sigma * self._noise * (self.cube.unit or u.dimensionless_unscaled)

    def start(self) -> Future:
        """Compute the moment maps in a worker thread; returns its future."""
        self.running = True
        self.status = "computing moments..."
        self.future = self._pool.submit(self._run)
        return self.future

    def _run(self):
        try:
            self.maps = moments(self.cube, _MAPS, mask=self._mask(), client=self._client)
            self.update_spectrum()
            self.update_pv()
            self.status = (f"{len(_MAPS)} maps of a {'x'.join(map(str, self.cube.shape[::-1]))} "
                           f"cube; {self.n_lines} line(s) at the cursor")
        except Exception as exc:  # shown, not raised: the UI stays up
            self.status = f"error: {exc}"
            raise
        finally:
            self.running = False
        self._refresh()
        return self.maps

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

    @param.depends("moment", watch=True)
    def _refresh(self) -> None:
        if hasattr(self, "_map_pane"):
            self._map_pane.object = self.map_figure()
            self._spec_pane.object = self.spectrum_figure()
            self._pv_pane.object = self.pv_figure()

    # -- figures ---------------------------------------------------------------
    def map_figure(self):
        """The chosen moment map with the cursor and the PV line."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4.5, 4))
        ax = fig.add_subplot(projection=self.cube.celestial)
        if self.maps is not None:
            var = self.maps[self.moment]
            im = ax.imshow(var.values, origin="lower", cmap="viridis")
            fig.colorbar(im, ax=ax, label=f"{self.moment} [{var.attrs['unit']}]")
        xs, ys = zip(*self.pv_line, strict=True) if self.pv_line else ((), ())
        ax.plot(xs, ys, color="white", lw=1)
        ax.plot([self.cursor[0]], [self.cursor[1]], "r+", ms=12)
        return fig

    def spectrum_figure(self):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4.5, 2.5))
        ax = fig.add_subplot()
        t = self.spectrum_table
        if t is not None:
            v = t["velocity"].to_value(u.km / u.s)
            ax.step(v, t["flux"].value, where="mid", color="k", lw=1)
            ax.fill_between(v, -t["noise"].value, t["noise"].value, color="0.8", step="mid")
            for row in self.lines or []:
                ax.axvspan(row["vmin"].value, row["vmax"].value, color="orange", alpha=0.3)
            ax.set_xlabel("velocity [km/s]")
            ax.set_ylabel(f"[{t['flux'].unit}]")
        return fig

    def pv_figure(self):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4.5, 3))
        ax = fig.add_subplot()
        if self.pv is not None:
            off = self.pv["offset"].values * 3600
            v = self.pv["velocity"].values
            ax.imshow(self.pv.values, origin="lower", aspect="auto", cmap="magma",
                      extent=(off[0], off[-1] if off.size > 1 else 1.0, v.min(), v.max()))
            ax.set_xlabel("offset [arcsec]")
            ax.set_ylabel("velocity [km/s]")
        return fig

    def __panel__(self):
        controls = pn.Column(
            pn.widgets.Select.from_param(self.param.demo, disabled=self._given is not None),
            pn.widgets.Select.from_param(self.param.moment),
            pn.widgets.FloatSlider.from_param(self.param.mask_sigma),
            pn.widgets.FloatSlider.from_param(self.param.radius_pixels),
            pn.widgets.FloatSlider.from_param(self.param.pv_width),
            pn.widgets.Button.from_param(self.param.run),
            pn.indicators.LoadingSpinner.from_param(self.param.running, width=24, height=24,
                                                    name=""),
            pn.widgets.StaticText.from_param(self.param.status), width=260)
        return pn.Row(controls, pn.Column(self._map_pane, self._spec_pane), self._pv_pane)
