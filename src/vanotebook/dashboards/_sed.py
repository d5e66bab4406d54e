"""`SEDDashboard`: fit greybodies to a table of SEDs, pick a source, look at its SED.

No science here: the dashboard calls `vanotebook.sed.fit_greybody`,
`vanotebook.sed.sed_arrays` and `vanotebook.sed.greybody_sed` only (and, for the
demo, `vanotebook.sky._higal.higal_field` with `homogenise`, `detect` and
`build_seds`). The fit runs in a worker thread (which hands partitions to the
Dask cluster for large tables), so the Panel event loop is never blocked;
Cancel stops it and takes its partitions off the cluster. A
source picked in the table, on the map or on the T-M / L-M diagrams shows its SED (detections
with error bars, upper limits as down-pointing triangles) with the fitted curve
and its 16-84% band; the fit table downloads as ECSV or goes into the user's
archive as a catalogue.
"""

from __future__ import annotations

import io
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import astropy.units as u
import numpy as np
import panel as pn
import param

from ..sed import MODELS, fit_greybody, greybody_sed, sed_arrays
from ._page import CANCELLED, Run

if TYPE_CHECKING:
    from astropy.table import QTable

__all__ = ["SEDDashboard"]

_CURVE = np.geomspace(30.0, 2000.0, 120) * u.um
_TABLE_COLUMNS = ("temperature", "temperature_err", "mass", "mass_err", "beta", "luminosity",
                  "chi2_red", "n_bands", "flags")
#: The fit's parameters, in the order of its ``covariance`` (`fit_greybody`).
_COVARIANCE_OF = ("lnT", "lnM", "beta")


def _demo_seds():
    """The Hi-GAL-like demo field through homogenise -> detect -> build_seds."""
    from ..detect import detect
    from ..mosaic import homogenise
    from ..sed import build_seds
    from ..sky._higal import higal_field

    field = higal_field(0)
    ds = homogenise(field.images, pixel_scale=6 * u.arcsec, method="flux-conserving")
    det = detect(ds["spire250"], extended=False, classify=False)
    seds = build_seds(det, images=ds, wavelengths=field.wavelengths, calibration=0.05)
    return seds, field.distance, ds["spire250"]


class SEDDashboard(pn.viewable.Viewer):
    """Greybody fits of many SEDs, one source at a time or all together.

    Parameters
    ----------
    seds : QTable, optional
        A `vanotebook.sed.build_seds` table; None builds the Hi-GAL-like demo field's
        on the first fit.
    distance : Quantity, optional
        Distance of the sources (one, or one per row); sets ``distance_pc``.
    client : distributed.Client, optional
        The cluster the fits run on (default: the current client, else in-process).
    image : optional
        A map to pick sources on (anything `vanotebook.io.parse_image` takes, e.g.
        one band of the homogenised set); the demo uses its 250 um map.
    """

    distance_pc = param.Number(default=2000.0, bounds=(1e-3, 1e9), doc="Distance [pc]")
    model = param.Selector(default="thin", objects=list(MODELS))
    size_arcsec = param.Number(default=20.0, bounds=(1e-3, 3600),
                               doc="Source diameter for the thick model [arcsec]")
    free_beta = param.Boolean(default=True, doc="Fit beta (else fixed at `beta`)")
    beta = param.Number(default=2.0, bounds=(0.0, 4.0))
    picked = param.Integer(default=0, bounds=(0, None), doc="The source shown")
    n_sources = param.Integer(default=0)
    status = param.String(default="ready")
    running = param.Boolean(default=False)
    run = param.Action(lambda self: self.start(), label="Fit greybodies")

    def __init__(self, seds: Any = None, *, distance: u.Quantity | None = None, client=None,
                 image: Any = None, **params):
        super().__init__(**params)
        self._seds, self._client = seds, client
        self._image = image
        self._distance = distance
        if distance is not None and np.ndim(distance) == 0:
            self.distance_pc = float(distance.to_value(u.pc))
        if seds is not None:
            self.n_sources = len(seds)
        self._pool = ThreadPoolExecutor(max_workers=1)
        self.fit = None
        self.future: Future | None = None
        self._run: Run | None = None  # the current fit (`_page.Run`)
        self.table = pn.widgets.Tabulator(None, pagination="remote", page_size=15, height=380,
                                          selectable=1, disabled=True)
        self.table.param.watch(self._selected, "selection")
        self._figs: dict[str, Any] = {}

    # -- work ------------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        dist = self._distance if (self._distance is not None and np.ndim(self._distance)) \
            else self.distance_pc * u.pc
        opts: dict[str, Any] = {"distance": dist, "model": self.model,
                                "beta": None if self.free_beta else self.beta,
                                "client": self._client}
        if self.model == "thick":
            opts["size"] = self.size_arcsec * u.arcsec
        return opts

    def start(self) -> Future | None:
        """Fit every source in a worker thread; returns the future (None when a fit is
        under way). `cancel` stops it."""
        if self.running:
            return None
        self._run = Run(self._client)
        self.running, self.status = True, "fitting..."
        self.future = self._pool.submit(self._work, self._run)
        return self.future

    def cancel(self) -> None:
        """Stop the current fit: its partitions leave the cluster, the last fit stays."""
        if self._run is not None:
            self._run.cancel(self._cancelled)

    def _cancelled(self) -> None:
        self.running, self.status = False, CANCELLED

    def _fitted(self, run: Run, done: int, total: int) -> None:
        """`fit_greybody`'s progress callback (worker thread); a cancel stops the fit here."""
        run.check()
        run.report(lambda: setattr(self, "status", f"fitting... {done}/{total} partitions"))

    def _work(self, run: Run):
        try:
            seds, opts = self._seds, self._options()
            opts["client"] = run.connect()  # the run's own client on the fits' cluster
            if seds is None:
                run.report(lambda: setattr(self, "status", "building the demo SEDs "
                                           "(homogenise, detect, photometry)..."))
                seds, distance, image = _demo_seds()
                run.check()
                opts["distance"] = distance

                def built() -> None:
                    self._seds, self._distance, self._image = seds, distance, image
                    self.distance_pc = float(distance.to_value(u.pc))
                    self.n_sources = len(seds)

                run.report(built)
            flux, err, wl, up = sed_arrays(seds)
            fit = fit_greybody(flux, err, wl, upper_limit=up, **opts,
                               progress=lambda done, total: self._fitted(run, done, total))
        except Exception as exc:  # shown in the dashboard, not raised into the event loop
            message = f"error: {exc}"

            def failed() -> None:
                self.fit = None
                self.param.update(status=message, running=False)

            run.report(failed, last=True)
            raise
        finally:
            run.close()
        good = np.isfinite(fit["temperature"].value)
        message = f"fitted {int(good.sum())} of {len(fit)} sources"

        def done() -> None:
            self.fit, self.status = fit, message
            self._refresh()
            self.running = False

        run.report(done, last=True)
        return fit

    # -- data for the views ------------------------------------------------------------
    @property
    def seds(self):
        """The SED table (None until given or built)."""
        return self._seds

    def sed_data(self, index: int | None = None) -> dict[str, np.ndarray]:
        """One source's photometry and fitted curve [um, Jy], for the SED plot."""
        i = self.picked if index is None else index
        flux, err, wl, up = sed_arrays(self._seds)
        out = {"wavelength": wl.to_value(u.um), "flux": flux[i].to_value(u.Jy),
               "error": err[i].to_value(u.Jy), "upper": up[i]}
        if self.fit is not None:
            model, lo, hi = greybody_sed(self.fit[i:i + 1], _CURVE, n_samples=200)
            out.update({"curve_wavelength": _CURVE.to_value(u.um),
                        "curve": model[0].to_value(u.Jy), "curve_lo": lo[0].to_value(u.Jy),
                        "curve_hi": hi[0].to_value(u.Jy)})
        return out

    def diagram_data(self) -> dict[str, np.ndarray]:
        """Temperature [K], mass [Msun] and luminosity [Lsun] of every source."""
        if self.fit is None:
            z = np.zeros(0)
            return {"temperature": z, "mass": z, "luminosity": z, "index": z.astype(int)}
        return {"temperature": self.fit["temperature"].to_value(u.K),
                "mass": self.fit["mass"].to_value(u.Msun),
                "luminosity": self.fit["luminosity"].to_value(u.Lsun),
                "index": np.arange(len(self.fit))}

    def map_data(self) -> dict[str, Any] | None:
        """The pick map (a percentile-stretched array) and the sources' pixel positions."""
        if self._image is None or self._seds is None:
            return None
        from astropy.coordinates import SkyCoord

        from ..io import parse_image

        im = parse_image(self._image)
        data = np.asarray(im.data, np.float64)
        lo, hi = np.nanpercentile(data, [1, 99.5])
        x, y = im.wcs.celestial.world_to_pixel(SkyCoord(self._seds["ra"], self._seds["dec"]))
        return {"image": np.clip(np.nan_to_num(data, nan=lo), lo, hi),
                "x": np.asarray(x, np.float64), "y": np.asarray(y, np.float64)}

    def download(self) -> io.BytesIO:
        """The fit table as ECSV bytes (for a `pn.widgets.FileDownload`)."""
        from astropy.table import QTable

        if self.fit is None:
            return io.BytesIO(b"")
        t = QTable(self.fit, copy=True)
        t.meta = {k: v for k, v in t.meta.items() if k in ("model", "kappa0_m2_kg", "nu0_hz",
                                                            "wavelength_um", "flags")}
        if self._seds is not None:
            for c in ("ra", "dec"):
                if c in self._seds.colnames:
                    t[c] = self._seds[c]
        text = io.StringIO()
        t.write(text, format="ascii.ecsv")
        return io.BytesIO(text.getvalue().encode())

    def fit_catalogue(self) -> QTable:
        """The fit as a catalogue, one row per source, every column with its unit.

        Returns
        -------
        astropy.table.QTable
            The SED table's own 1-D columns (positions, identifiers, photometry,
            upper-limit flags), ``sed_row`` (the source's row in it), then every
            column of the fit (temperature, mass, beta, luminosity and their
            errors, distance, chi2_red, n_bands, n_upper, flags, ...), with the
            covariance of (ln T, ln M, beta) as the six ``cov_<a>_<b>`` columns.
            An SED-table column of a name the fit uses (e.g. a detection's
            ``flags``) is kept as ``<name>_source``.
        """
        from astropy.table import QTable

        if self.fit is None:
            msg = "fit the SEDs before asking for the fit table"
            raise RuntimeError(msg)
        out = QTable()
        for name in self._seds.colnames:
            col = self._seds[name]
            if getattr(col, "ndim", 0) == 1 and getattr(col, "dtype", np.dtype(object)
                                                        ).kind in "biufUS":
                out[name] = col
        ours = QTable({"sed_row": np.arange(len(self.fit), dtype=np.int64)})
        for name in self.fit.colnames:
            if name != "covariance":
                ours[name] = self.fit[name]
        cov = np.asarray(self.fit["covariance"], np.float64)
        for i, a in enumerate(_COVARIANCE_OF):
            for j in range(i, len(_COVARIANCE_OF)):
                ours[f"cov_{a}_{_COVARIANCE_OF[j]}"] = cov[:, i, j]
        for name in ours.colnames:
            if name in out.colnames:
                out.rename_column(name, f"{name}_source")
            out[name] = ours[name]
        return out

    def save_to_archive(self, archive: Any) -> str:
        """Add `fit_catalogue` to ``archive`` under a new name; what was saved.

        Placed at the sources' ``ra``/``dec`` (an SED table without them is
        refused with a message). The description gives the model, its dust
        opacity, the meaning of the ``flags`` bits and how the fit was made (its
        provenance); the archive records the saving itself.
        """
        from ._help import archive_name, made_by

        if not {"ra", "dec"} <= set(self._seds.colnames):
            msg = ("the archive keeps catalogues by sky position, and the SED table has no "
                   "ra/dec columns: download the fits as ECSV instead")
            raise ValueError(msg)
        meta = self.fit.meta
        name = archive_name(archive, f"greybody_{meta.get('model', 'fit')}")
        flags = ", ".join(f"{k}={v}" for k, v in meta.get("flags", {}).items())
        cat = archive.add_catalogue(
            name, self.fit_catalogue(),
            description=(f"greybody fits of {len(self.fit)} SEDs: {meta.get('model')} model, "
                         f"kappa0 {meta.get('kappa0_m2_kg', float('nan')):.4g} m2/kg at "
                         f"nu0 {meta.get('nu0_hz', float('nan')):.4g} Hz, covariance of "
                         f"(ln T, ln M, beta); flags bits: {flags}; "
                         f"{made_by(meta.get('provenance'))}"))
        return f"catalogue {name!r} ({cat.n_rows} sources)"

    # -- views -----------------------------------------------------------------------
    def _selected(self, event) -> None:
        if event.new:
            self.picked = int(event.new[0])

    @param.depends("picked", watch=True)
    def _refresh_sed(self) -> None:
        if "sed" in self._figs and self._seds is not None:
            self._update_sed()

    def _refresh(self) -> None:
        import pandas as pd

        cols = [c for c in _TABLE_COLUMNS if c in self.fit.colnames]
        self.table.value = pd.DataFrame({c: np.asarray(getattr(self.fit[c], "value",
                                                               self.fit[c])) for c in cols})
        if self._figs:
            self._figs["diagram_source"].data = self.diagram_data()
            self._update_sed()

    def _update_sed(self) -> None:
        d = self.sed_data()
        det = ~d["upper"] & np.isfinite(d["flux"])
        lim = d["upper"] & np.isfinite(d["flux"])
        self._figs["det"].data = {"x": d["wavelength"][det], "y": d["flux"][det],
                                  "lo": d["flux"][det] - d["error"][det],
                                  "hi": d["flux"][det] + d["error"][det]}
        self._figs["lim"].data = {"x": d["wavelength"][lim], "y": d["flux"][lim]}
        if "curve" in d:
            self._figs["curve"].data = {"x": d["curve_wavelength"], "y": d["curve"],
                                        "lo": d["curve_lo"], "hi": d["curve_hi"]}

    def figures(self) -> dict[str, Any]:
        """The Bokeh figures: ``sed``, ``tm`` (T-M), ``lm`` (L-M) and ``map`` (with an image)."""
        if "sed" in self._figs:
            return self._figs
        from bokeh.models import ColumnDataSource, TapTool, Whisker
        from bokeh.plotting import figure

        sed = figure(height=320, width=420, x_axis_type="log", y_axis_type="log",
                     title="SED", x_axis_label="wavelength [um]", y_axis_label="S_nu [Jy]")
        det = ColumnDataSource({"x": [], "y": [], "lo": [], "hi": []})
        lim = ColumnDataSource({"x": [], "y": []})
        curve = ColumnDataSource({"x": [], "y": [], "lo": [], "hi": []})
        sed.varea("x", "lo", "hi", source=curve, fill_alpha=0.25)
        sed.line("x", "y", source=curve, line_width=2)
        sed.scatter("x", "y", source=det, size=7)
        sed.add_layout(Whisker(source=det, base="x", lower="lo", upper="hi"))
        sed.scatter("x", "y", source=lim, marker="inverted_triangle", size=9, color="grey")
        diag = ColumnDataSource(self.diagram_data())
        tm = figure(height=320, width=360, x_axis_type="log", title="T - M",
                    x_axis_label="mass [Msun]", y_axis_label="T [K]", tools="tap,pan,wheel_zoom")
        tm.scatter("mass", "temperature", source=diag, size=6)
        lm = figure(height=320, width=360, x_axis_type="log", y_axis_type="log", title="L - M",
                    x_axis_label="mass [Msun]", y_axis_label="L [Lsun]",
                    tools="tap,pan,wheel_zoom")
        lm.scatter("mass", "luminosity", source=diag, size=6)
        for f in (tm, lm):
            f.select_one(TapTool)
        diag.selected.on_change("indices", lambda attr, old, new: self._tapped(new))
        self._figs = {"sed": sed, "tm": tm, "lm": lm, "det": det, "lim": lim, "curve": curve,
                      "diagram_source": diag}
        md = self.map_data()
        if md is not None:
            ny, nx = md["image"].shape
            sky = figure(height=320, width=320, title="map (tap a source)",
                         x_range=(0, nx), y_range=(0, ny), tools="tap,pan,wheel_zoom,reset",
                         match_aspect=True)
            sky.image(image=[md["image"]], x=0, y=0, dw=nx, dh=ny, palette="Inferno256")
            pos = ColumnDataSource({"x": md["x"] + 0.5, "y": md["y"] + 0.5,
                                    "index": np.arange(len(md["x"]))})
            sky.scatter("x", "y", source=pos, size=10, fill_alpha=0, line_color="cyan")
            pos.selected.on_change("indices", lambda attr, old, new: self._tapped(new))
            self._figs.update({"map": sky, "map_source": pos})
        if self._seds is not None:
            self._update_sed()
        return self._figs

    def _tapped(self, indices) -> None:
        if indices:
            self.picked = int(indices[0])

    def __panel__(self):
        from ._help import with_help

        return with_help(self, self._layout())

    def _layout(self):
        from ._help import (
            archive_save,
            number_input,
            result_download,
            run_controls,
            status_pane,
        )

        figs = self.figures()
        controls = pn.Column(
            pn.pane.Markdown("**Greybody fits** (thin or thick; upper limits censored)"),
            number_input(self, "distance_pc"),
            pn.widgets.Select.from_param(self.param.model),
            number_input(self, "size_arcsec"),
            pn.widgets.Checkbox.from_param(self.param.free_beta),
            pn.widgets.FloatSlider.from_param(self.param.beta),
            run_controls(self, pn.widgets.Button.from_param(self.param.run, color="primary")),
            pn.indicators.LoadingSpinner(value=self.param.running, width=30, height=30),
            status_pane(self),
            pn.widgets.IntInput.from_param(self.param.picked),
            result_download(self, self.download, "greybody_fits.ecsv",
                            "Download fits (ECSV)", ready=lambda: self.fit is not None),
            archive_save(self, self.save_to_archive, ready=lambda: self.fit is not None),
            width=300)
        top = [controls, pn.pane.Bokeh(figs["sed"])]
        if "map" in figs:
            top.append(pn.pane.Bokeh(figs["map"]))
        return pn.Column(pn.Row(*top),
                         pn.Row(pn.pane.Bokeh(figs["tm"]), pn.pane.Bokeh(figs["lm"])),
                         self.table)
