"""`MosaicDashboard`: choose tiles, set the grid and options, mosaic on the cluster, inspect.

No science here: the dashboard calls `vanotebook.mosaic.mosaic`,
`vanotebook.mosaic.optimal_grid`, `vanotebook.mosaic.to_fits` and
`vanotebook.io.parse_image` only. The mosaic runs in a worker thread (which
submits to the Dask cluster given as ``client=``, or the default one), so the
Panel event loop is never blocked; a progress bar and a status line show
while it runs, and Cancel stops it and takes its tasks off the cluster. The
image is drawn on WCS axes (RA/Dec or l/b tick labels,
through astropy's WCSAxes) with a colour stretch and percentile limits, and the
tiles' footprints on top. ``result`` (the mosaic Dataset) is a param, so
another dashboard can take it, e.g. ``DetectDashboard.set_image(dash.result["mosaic"])``.
"""

from __future__ import annotations

import io
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import panel as pn
import param

from ..mosaic import METHODS, mosaic, optimal_grid, to_fits
from ._image import ImageView
from ._page import CANCELLED, Run

__all__ = ["MosaicDashboard"]

SURVEYS = ("radio", "ir24", "fir250")
_UPLOAD = "upload"
_ARCHIVE = "archive"
COMBINES = ("mean", "median", "sum", "first", "last", "count")
BACKGROUNDS = ("offset", "plane", "none")
GRIDS = ("optimal", "pixel scale")
STRETCHES = ("linear", "log", "sqrt", "asinh")
_MAX_DISPLAY = 2048  # largest side drawn; larger mosaics are shown strided


class MosaicDashboard(pn.viewable.Viewer):
    """Mosaic survey tiles and look at the result.

    Parameters
    ----------
    sky : DemoSky, optional
        Where the demo surveys come from (default: ``vanotebook.sky.demo_sky()``,
        made on first use).
    client : distributed.Client, optional
        Run the mosaic on this cluster (default: the current client, else threads).
    archive : Archive or path, optional
        The archive of the "archive" source (default: the shared archive);
        ``picker`` (an `ArchivePicker`) chooses its images by region and band.
    """

    source = param.Selector(default="radio", objects=[*SURVEYS, _ARCHIVE, _UPLOAD],
                            doc="A demo survey, the images picked from the archive, "
                            "or the uploaded FITS files")
    grid = param.Selector(default="optimal", objects=list(GRIDS),
                          doc="The optimal grid at the finest input scale, or at a given scale")
    pixel_scale_arcsec = param.Number(default=6.0, bounds=(0.01, 3600),
                                      doc="Pixel side [arcsec] when grid is 'pixel scale'")
    combine = param.Selector(default="mean", objects=list(COMBINES))
    background = param.Selector(default="offset", objects=list(BACKGROUNDS),
                                doc="Background matching: per-tile offset, plane, or none")
    method = param.Selector(default="bilinear", objects=list(METHODS))
    stretch = param.Selector(default="linear", objects=list(STRETCHES))
    percentiles = param.Range(default=(1.0, 99.5), bounds=(0.0, 100.0),
                              doc="Colour limits as percentiles of the finite pixels")
    show_footprints = param.Boolean(default=True)
    status = param.String(default="ready")
    running = param.Boolean(default=False)
    percent = param.Integer(default=0, bounds=(0, 100),
                            doc="Output blocks done in the current run, in percent")
    elapsed = param.Number(default=0.0, doc="Seconds the last run took")
    result = param.Parameter(default=None, doc="The mosaic Dataset of the last run")
    run = param.Action(lambda self: self.start(), label="Run mosaic")
    _shown_source = param.String(default="", precedence=-1,
                                 doc="The source of the mosaic shown (not the one selected)")

    def __init__(self, sky: Any = None, *, client=None, archive: Any = None, **params):
        from ._archive import ArchivePicker

        super().__init__(**params)
        self._sky, self._client = sky, client
        self.picker = ArchivePicker(archive)
        self._pool = ThreadPoolExecutor(max_workers=1)
        self.view = ImageView(palette="Magma256")  # level of detail, colour map, read-out
        self._run_source = self.source
        self._uploads: list[Any] = []
        self._upload_names: list[str] = []
        self.future: Future | None = None
        self._run: Run | None = None  # the current mosaic (`_page.Run`)
        self._file_input = pn.widgets.FileInput(accept=".fits,.fit,.fts,.fits.gz",
                                                multiple=True)
        self._file_input.param.watch(self._on_upload, "value")

    # ---------------------------------------------------------------- inputs
    def _demo_sky(self):
        if self._sky is None:
            from ..sky import demo_sky

            self._sky = demo_sky()
        return self._sky

    def images(self) -> list:
        """The input tiles of the current ``source`` (HDULists)."""
        if self.source == _UPLOAD:
            return list(self._uploads)
        if self.source == _ARCHIVE:
            return [str(path) for path in self.picker.selected_paths()]
        return list(self._demo_sky().images(self.source))

    def upload(self, files: bytes | list[bytes], names: str | list[str] | None = None) -> bool:
        """Use these uploaded FITS files (bytes) as the input; returns whether all were read.

        A file that is not FITS or has no usable celestial image is reported in
        ``status`` (naming the file) and nothing is kept from this upload.
        """
        from astropy.io import fits

        from ..io import parse_image

        files = [files] if isinstance(files, bytes | bytearray) else list(files or [])
        names = [names] if isinstance(names, str) else list(names or [])
        names += [f"file {i}" for i in range(len(names), len(files))]
        if not files:
            self.status = "error: upload: expected one or more FITS files, got none"
            return False
        hduls = []
        for data, name in zip(files, names, strict=True):
            try:
                hdul = fits.HDUList([h.copy() for h in fits.open(io.BytesIO(data))])
                parse_image(hdul)
            except Exception as exc:  # shown to the user
                self.status = f"error: upload {name!r} is not a usable FITS image ({exc})"
                return False
            hduls.append(hdul)
        self._uploads, self._upload_names = hduls, names
        self.status = f"uploaded {len(hduls)} file(s): {', '.join(names)}"
        if self.source != _UPLOAD:
            self.source = _UPLOAD
        return True

    def _on_upload(self, event) -> None:
        if event.new:
            self.upload(event.new, self._file_input.filename)

    # ---------------------------------------------------------------- actions
    def options(self) -> dict[str, Any]:
        """The keyword arguments a run passes to `vanotebook.mosaic.mosaic` (bar ``wcs``,
        ``client`` and ``progress``, which are the run's)."""
        return {"combine": self.combine, "method": self.method,
                "match_background": False if self.background == "none" else self.background}

    def _on_progress(self, run: Run, fraction: float) -> None:
        """`mosaic`'s progress hook: the fraction of output blocks done (worker thread);
        a cancel stops the run here."""
        run.check()
        run.report(lambda: setattr(self, "percent", round(100 * fraction)))

    def _work(self, run: Run):
        from ..io import parse_image

        tiles = self.images()
        if not tiles:
            from .._errors import VanotebookInputError

            if self.source == _ARCHIVE:
                raise VanotebookInputError("archive", "images in the chosen region and band",
                                           "none found")
            raise VanotebookInputError("upload", "one or more FITS files", "none uploaded")
        wcs: Any = "optimal"
        if self.grid == "pixel scale":
            wcs = optimal_grid([parse_image(t) for t in tiles],
                               pixel_scale=self.pixel_scale_arcsec / 3600.0)
        message = f"mosaicking {len(tiles)} tiles ({self.source})..."
        run.report(lambda: setattr(self, "status", message))
        return mosaic(tiles, wcs=wcs, client=run.connect(),
                      progress=lambda fraction: self._on_progress(run, fraction),
                      **self.options())

    def start(self) -> Future | None:
        """Start the mosaic in a worker thread; returns its future (the Dataset, None on
        error or when a run is under way). `cancel` stops it.

        The state (``result``, ``status``, ``running``) is updated before the
        future completes (outside a server), so ``start().result()`` is a
        synchronous run.
        """
        from ..cluster import get_client

        if self.running:
            return None
        self._run = Run(get_client(self._client))
        self._run_source = self.source
        self.running, self.status, self.percent = True, "preparing...", 0
        self.future = self._pool.submit(self._mosaic, self._run)
        return self.future

    def cancel(self) -> None:
        """Stop the current mosaic: its tasks leave the cluster, the last result stays."""
        if self._run is not None:
            self._run.cancel(self._cancelled)

    def _cancelled(self) -> None:
        self.running, self.status = False, CANCELLED

    def _mosaic(self, run: Run):
        t0 = time.perf_counter()
        try:
            ds = self._work(run)
        except Exception as exc:  # shown to the user, not raised in the UI thread
            message = f"error: {exc}"
            run.report(lambda: self.param.update(status=message, running=False), last=True)
            return None
        finally:
            run.close()
        elapsed = time.perf_counter() - t0
        ny, nx = ds["mosaic"].shape
        message = (f"{len(ds.attrs.get('footprints', []))} tiles -> {ny} x {nx} px "
                   f"in {elapsed:.1f} s")

        source = self._run_source

        def done() -> None:
            self.param.update(elapsed=elapsed, _shown_source=source, result=ds,
                              status=message, running=False)

        run.report(done, last=True)
        return ds

    def download(self) -> io.BytesIO:
        """The result as FITS bytes (`vanotebook.mosaic.to_fits`, with provenance)."""
        buf = io.BytesIO()
        if self.result is not None:
            to_fits(self.result).writeto(buf)
        buf.seek(0)
        return buf

    def save_to_archive(self, archive: Any) -> str:
        """Add the last mosaic (FITS, with its provenance) to ``archive``; what was saved."""
        ny, nx = self.result["mosaic"].shape
        added = archive.add_images(to_fits(self.result), survey=self._shown_source)
        again = "" if bool(added["added"][0]) else " (already there)"
        return f"the {ny} x {nx} mosaic of {self._shown_source}{again}"

    # ---------------------------------------------------------------- views
    def _stride(self) -> int:
        shape = self.result["mosaic"].shape
        return max(1, int(np.ceil(max(shape) / _MAX_DISPLAY)))

    def display_array(self) -> np.ndarray | None:
        """The mosaic values drawn (strided when a side exceeds 2048 pixels)."""
        if self.result is None:
            return None
        s = self._stride()
        return np.asarray(self.result["mosaic"][::s, ::s].values)

    def display_limits(self) -> tuple[float, float]:
        """The colour limits: the ``percentiles`` of the finite displayed pixels."""
        data = self.display_array()
        if data is None or not np.isfinite(data).any():
            return 0.0, 1.0
        lo, hi = np.nanpercentile(data, self.percentiles)
        return float(lo), float(hi) if hi > lo else float(lo) + 1.0

    def normalisation(self):
        """The astropy `ImageNormalize` for the stretch and limits (display only)."""
        from astropy.visualization import (
            AsinhStretch,
            ImageNormalize,
            LinearStretch,
            LogStretch,
            SqrtStretch,
        )

        stretch = {"linear": LinearStretch(), "log": LogStretch(), "sqrt": SqrtStretch(),
                   "asinh": AsinhStretch()}[self.stretch]
        vmin, vmax = self.display_limits()
        return ImageNormalize(vmin=vmin, vmax=vmax, stretch=stretch, clip=True)

    def display_image(self) -> np.ndarray | None:
        """The displayed pixels after stretch, in [0, 1] (NaN where no coverage)."""
        data = self.display_array()
        if data is None:
            return None
        out = np.asarray(self.normalisation()(data).filled(np.nan), float)
        out[~np.isfinite(data)] = np.nan
        return out

    def wcs(self):
        """The mosaic's celestial WCS (of the displayed, strided, array)."""
        from astropy.io import fits
        from astropy.wcs import WCS

        if self.result is None:
            return None
        w = WCS(fits.Header.fromstring(self.result.attrs["header"])).celestial
        s = self._stride()
        return w if s == 1 else w.slice((slice(None, None, s), slice(None, None, s)))

    def footprints(self) -> list[tuple[float, float, float, float]]:
        """Every tile's box on the displayed array, ``(y0, y1, x0, x1)`` in display pixels."""
        if self.result is None:
            return []
        s = self._stride()
        return [tuple(v / s for v in box) for box in self.result.attrs.get("footprints", [])]

    def figure(self):
        """The Bokeh figure: the stretched mosaic (`ImageView`: level of detail, sky
        read-out), its colour bar in data units, the tiles' footprints on top."""
        from bokeh.models import FixedTicker

        if self.result is None:
            fig = self.view.figure(None, title="No mosaic yet: press 'Run mosaic'",
                                   name="mosaic-image")
            self._footprints = None
            return fig
        from astropy.io import fits
        from astropy.wcs import WCS

        norm = self.normalisation()
        unit = self.result.attrs.get("unit", "") or "value"
        fig = self.view.figure(
            np.asarray(self.result["mosaic"].values),
            WCS(fits.Header.fromstring(self.result.attrs["header"])).celestial,
            title=f"{self._shown_source}: {self.stretch} stretch, "
                  f"{self.percentiles[0]:g}-{self.percentiles[1]:g} %",
            name="mosaic-image", transform=lambda a: np.asarray(norm(a).filled(np.nan)),
            colour_bar=unit)
        self.view.set_limits(0.0, 1.0)
        bar = fig.right[-1]  # ticks at stretched positions, labelled in data units
        ticks = np.linspace(0.0, 1.0, 5)
        bar.ticker = FixedTicker(ticks=list(ticks))
        bar.major_label_overrides = {float(t): f"{float(v):.3g}"
                                     for t, v in zip(ticks, norm.inverse(ticks), strict=True)}
        boxes = self.result.attrs.get("footprints", [])
        self._footprints = fig.quad(
            left=[x0 - 0.5 for _, _, x0, _ in boxes], right=[x1 - 0.5 for _, _, _, x1 in boxes],
            bottom=[y0 - 0.5 for y0, _, _, _ in boxes], top=[y1 - 0.5 for _, y1, _, _ in boxes],
            fill_alpha=0.0, line_color="cyan", line_alpha=0.8, name="mosaic-footprints",
            visible=self.show_footprints)
        return fig

    @param.depends("result", "stretch", "percentiles")
    def _image(self):
        return pn.Column(pn.pane.Bokeh(self.figure()), self.view)

    @param.depends("show_footprints", watch=True)
    def _footprints_shown(self) -> None:
        if getattr(self, "_footprints", None) is not None:
            self._footprints.visible = self.show_footprints

    @param.depends("result")
    def _details(self):
        if self.result is None:
            return pn.pane.Markdown("")
        bg = self.result.attrs.get("background", {})
        rows = "\n".join(f"| {k} | {v[0]:.4g} |" for k, v in bg.items())
        prov = self.result.attrs.get("provenance", {})
        record = prov.get("vanotebook", {}) if isinstance(prov, dict) else {}
        text = (f"**Background corrections** ({self.result.attrs.get('unit', '')})\n\n"
                f"| tile | offset |\n|---|---|\n{rows}\n\n"
                f"transform error: {self.result.attrs.get('transform_error', 0):.2g} px")
        if record:
            text += (f"\n\nprovenance: `{record.get('activity', '')}`, "
                     f"{len(record.get('inputs', []))} inputs")
        return pn.pane.Markdown(text)

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

        controls = pn.Column(
            pn.widgets.RadioButtonGroup.from_param(self.param.source),
            self._file_input,
            pn.widgets.Select.from_param(self.param.grid),
            number_input(self, "pixel_scale_arcsec"),
            pn.widgets.Select.from_param(self.param.combine),
            pn.widgets.Select.from_param(self.param.background),
            pn.widgets.Select.from_param(self.param.method),
            run_controls(self, pn.widgets.Button.from_param(self.param.run, color="primary")),
            pn.indicators.Progress(active=self.param.running, value=self.param.percent,
                                   max=100, width=200),
            status_pane(self),
            pn.widgets.RadioButtonGroup.from_param(self.param.stretch),
            pn.widgets.RangeSlider.from_param(self.param.percentiles, step=0.5),
            pn.widgets.Checkbox.from_param(self.param.show_footprints),
            result_download(self, self.download, "mosaic.fits", "Download mosaic (FITS)",
                            ready=lambda: self.result is not None),
            archive_save(self, self.save_to_archive, ready=lambda: self.result is not None),
            width=320,
        )
        picker = pn.Card(self.picker, title="Archive: pick images by region and band",
                         collapsed=True, width=560)
        return pn.Column(picker, pn.Row(controls, self._image, self._details))
