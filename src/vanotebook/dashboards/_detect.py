"""`DetectDashboard`: choose an image, set thresholds, find sources, inspect them.

No science here: the dashboard calls `vanotebook.detect.detect`,
`vanotebook.io.parse_image` and `vanotebook.sky.demo_sky` only. Detection runs
in a worker thread (which hands the tiles to the Dask cluster when ``tile`` is
set), so the Panel event loop is never blocked; a progress indicator shows
while it runs. The image is drawn with a percentile stretch and the fitted
ellipses (FWHM, coloured by reliability score) on top; the table is linked to
it: selecting a row zooms onto that source, tapping an ellipse selects its row.
"""

from __future__ import annotations

import io
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import panel as pn
import param

from ..detect import DetectionResult, detect

__all__ = ["DetectDashboard"]

_MAX_DISPLAY = 2048  # longest side of the displayed (strided) image, in pixels
_TABLE_COLUMNS = ("id", "x", "y", "ra", "dec", "peak", "flux", "snr", "major", "minor", "pa",
                  "score", "cls", "flags")
_DEMO = "demo survey"
_GIVEN = "given image"


def _pixel_ellipses(cat, wcs) -> dict[str, np.ndarray]:
    """Centres, FWHM axes (pixels) and angles (rad from +x) of the catalogue's ellipses.

    Display geometry only: the sky ellipse (``major``, ``minor``, ``pa`` east
    of north) is turned into a covariance and taken back to pixels through the
    WCS's local pixel-scale matrix (``east = -x`` without a WCS).
    """
    n = len(cat)
    if n == 0:
        z = np.zeros(0)
        return {"x": z, "y": z, "width": z, "height": z, "angle": z}
    if wcs is not None:
        m = np.asarray(wcs.celestial.pixel_scale_matrix, float) * 3600.0  # arcsec / pix
        maj, mnr = cat["major"].to_value("arcsec"), cat["minor"].to_value("arcsec")
    else:
        m = np.array([[-1.0, 0.0], [0.0, 1.0]])
        maj, mnr = np.asarray(cat["major"].value, float), np.asarray(cat["minor"].value, float)
    pa = np.radians(np.asarray(cat["pa"].to_value("deg"), float))
    d = np.stack([np.sin(pa), np.cos(pa)], axis=1)  # major axis, (east, north)
    e = np.stack([np.cos(pa), -np.sin(pa)], axis=1)  # minor axis
    cov = (maj[:, None, None] ** 2 * d[:, :, None] * d[:, None, :]
           + mnr[:, None, None] ** 2 * e[:, :, None] * e[:, None, :])
    minv = np.linalg.inv(m)
    pix = np.einsum("ij,njk,lk->nil", minv, np.nan_to_num(cov), minv)
    vals, vecs = np.linalg.eigh(pix)  # ascending
    vals = np.clip(vals, 0, None)
    angle = np.arctan2(vecs[:, 1, 1], vecs[:, 0, 1])
    return {"x": np.asarray(cat["x"].value, float), "y": np.asarray(cat["y"].value, float),
            "width": np.sqrt(vals[:, 1]), "height": np.sqrt(vals[:, 0]), "angle": angle}


#: Seed thresholds below this many sigma are run, with a warning that noise peaks dominate.
_USUAL_SEED = 3.0


class DetectDashboard(pn.viewable.Viewer):
    """Find compact and extended sources in an image and look at them.

    Parameters
    ----------
    image : optional
        Anything `vanotebook.io.parse_image` accepts (or a bare 2-D array);
        without one, a demo survey tile is used.
    sky : vanotebook.sky.DemoSky, optional
        The demo sky to take tiles from (default ``demo_sky(0)``).
    client : distributed.Client, optional
        Where tiled runs go (see `vanotebook.detect.detect`).
    archive : Archive or path, optional
        Where ``picker`` (an `ArchivePicker`) finds images by region and band
        (default: the shared archive); `use_archive_image` takes the picked one.
    """

    source = param.Selector(default=_DEMO, objects=[_DEMO, _GIVEN],
                            doc="Where the image comes from")
    survey = param.Selector(default="radio", objects=["radio", "ir24", "fir250"])
    tile_index = param.Integer(default=0, bounds=(0, None), doc="Demo survey tile")
    seed_threshold = param.Number(default=5.0, bounds=(0.1, 1000), doc="Seed threshold [sigma]")
    merge_threshold = param.Number(default=2.6, bounds=(0.1, 1000),
                                   doc="Merge threshold [sigma]")
    min_pixels = param.Integer(default=5, bounds=(1, None))
    box = param.Integer(default=64, bounds=(4, None), doc="Background box [pix]")
    extended = param.Boolean(default=True, doc="Segment extended sources")
    tile = param.Integer(default=0, bounds=(0, None),
                         doc="Tile side for a Dask run (0: one piece)")
    stretch = param.Range(default=(1.0, 99.5), bounds=(0.0, 100.0),
                          doc="Colour stretch percentiles")
    status = param.String(default="Choose an image and thresholds, then Run detection.")
    running = param.Boolean(default=False)
    image_name = param.String(default="", doc="Name of the given image")
    result = param.ClassSelector(class_=DetectionResult, default=None, allow_None=True,
                                 doc="The last DetectionResult")
    n_sources = param.Integer(default=0, doc="Compact sources in the last result")
    selected = param.Integer(default=None, allow_None=True, doc="Selected catalogue row")
    run_detection = param.Action(lambda self: self.run(), label="Run detection")

    def __init__(self, image: Any = None, *, sky: Any = None, client=None, archive: Any = None,
                 **params: Any):
        from ._archive import ArchivePicker

        super().__init__(**params)
        self.picker = ArchivePicker(archive)
        self._sky, self._client = sky, client
        self._image: Any = None
        self._pool = ThreadPoolExecutor(max_workers=1)
        self.future: Future | None = None
        self.fraction = 0.0  # of the current run, from `detect`'s progress callback
        self._progress = pn.indicators.Progress(value=-1, active=False, visible=False,
                                                width=250, label="detect-progress")
        self._upload = pn.widgets.FileInput(accept=".fits,.fit,.fts,.fits.gz", multiple=False,
                                            label="Upload FITS")
        self._upload.param.watch(lambda event: self.upload(event.new, self._upload.filename),
                                 "value")
        self.table = pn.widgets.Tabulator(self._table_frame(), label="detect-table",
                                          css_classes=["detect-table"], disabled=True,
                                          selectable=1, pagination="remote", page_size=20,
                                          height=420, sizing_mode="stretch_width")
        self.table.param.watch(self._table_selected, "selection")
        self._image_pane = pn.pane.Bokeh(name="detect-image", css_classes=["detect-image"])
        self._hist_pane = pn.pane.Bokeh(name="detect-histograms")
        self.figure = None
        self._ellipses = None
        if image is not None:
            self.set_image(image)
        self._redraw()

    # ---------------------------------------------------------------- inputs
    def sky(self):
        """The demo sky (made on first use)."""
        if self._sky is None:
            from ..sky import demo_sky

            self._sky = demo_sky(0)
        return self._sky

    def set_image(self, image: Any, name: str = "image") -> None:
        """Use this image: anything `vanotebook.io.parse_image` takes, or a 2-D array.

        Raises `vanotebook.VanotebookInputError` (naming ``image``) for
        anything else; e.g. the mosaic service's output can be passed as is.
        """
        if isinstance(image, np.ndarray) and image.ndim == 2:
            parsed = image
        else:
            from ..io import parse_image

            parsed = parse_image(image)
        self._image, self.image_name = parsed, name
        self.result, self.n_sources, self.selected = None, 0, None
        if self.source != _GIVEN:
            self.source = _GIVEN  # triggers a redraw
        else:
            self._redraw()
        self.status = f"Image {name!r} ready; Run detection."

    def upload(self, data: bytes | None, filename: str | None = None) -> bool:
        """Use an uploaded FITS file (bytes); a bad file leaves a readable status, not an error.

        Returns True when the upload was accepted.
        """
        if not data:
            return False
        from astropy.io import fits

        name = filename or "upload.fits"
        try:
            if data[:2] == b"\x1f\x8b":
                import gzip

                data = gzip.decompress(data)
            if not data.startswith(b"SIMPLE  ="):
                msg = (f"not a FITS file (it should start with 'SIMPLE  =', "
                       f"starts with {data[:16]!r})")
                raise ValueError(msg)
            hdul = fits.HDUList.fromstring(data)
            hdu = next((h for h in hdul if h.data is not None and getattr(h.data, "ndim", 0)
                        >= 2 and np.issubdtype(h.data.dtype, np.number)), None)
            if hdu is None:
                msg = "no HDU holds a 2-D numeric image"
                raise ValueError(msg)
            self.set_image(fits.HDUList([fits.PrimaryHDU(hdu.data, hdu.header)]), name)
        except Exception as exc:  # shown to the user, never raised into the event loop
            self.status = f"Upload of {name!r} failed: {exc}"
            return False
        return True

    def use_archive_image(self) -> bool:
        """Use the image picked in ``picker`` (its first selected row, else the first found).

        Returns True when an image was taken; otherwise ``status`` says why.
        """
        try:
            paths = self.picker.selected_paths()
            if not paths:
                msg = "no archive image in the chosen region and band"
                raise ValueError(msg)
            self.set_image(str(paths[0]), name=paths[0].name)
        except Exception as exc:  # shown to the user, never raised into the event loop
            self.status = f"Archive image not used: {exc}"
            return False
        return True

    def image(self) -> Any:
        """The image that a run will use (demo tile or the given one)."""
        if self.source == _GIVEN:
            if self._image is None:
                msg = "no image given: use set_image() or upload a FITS file"
                raise ValueError(msg)
            return self._image
        tiles = self.sky().images(self.survey)
        if not 0 <= self.tile_index < len(tiles):
            msg = f"tile_index: expected 0..{len(tiles) - 1}, got {self.tile_index}"
            raise ValueError(msg)
        return tiles[self.tile_index]

    def _pixels_and_wcs(self, image: Any) -> tuple[np.ndarray, Any]:
        if isinstance(image, np.ndarray):
            return image, None
        from ..io import parse_image

        img = parse_image(image)
        return img.to_numpy(plane=True), img.wcs.celestial

    # ---------------------------------------------------------------- work
    def _work(self, image: Any, settings: dict[str, Any]) -> DetectionResult:
        return detect(image, client=self._client, progress=self._advance, **settings)

    def _advance(self, fraction: float) -> None:
        """`detect`'s progress callback (a worker thread): the bar shows the stage reached."""
        value = round(100 * fraction)
        self.fraction = fraction

        def show():
            self._progress.value = value

        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.execute(show)  # served: on the document's event loop
        else:
            show()

    def settings(self) -> dict[str, Any]:
        """The keyword arguments a run passes to `detect`."""
        return {"seed_threshold": self.seed_threshold, "merge_threshold": self.merge_threshold,
                "min_pixels": self.min_pixels, "box": self.box, "extended": self.extended,
                "tile": self.tile or None}

    def run(self, *, sync: bool = False) -> Future | None:
        """Run detection with the current settings (in a worker thread unless ``sync``).

        Returns the future of the run (already done when ``sync``), or None
        when a run is under way or no image can be had (see `status`).
        """
        if self.running:
            return None
        try:
            image = self.image()
        except Exception as exc:
            self.status = f"error: {exc}"
            return None
        self.running, self.status = True, "detecting..."
        self.fraction = 0.0
        self._progress.value = 0
        self._progress.visible, self._progress.active = True, True
        settings = self.settings()
        if sync:
            future: Future = Future()
            try:
                future.set_result(self._work(image, settings))
            except Exception as exc:
                future.set_exception(exc)
            self._done(future)
        else:
            future = self._pool.submit(self._work, image, settings)
            future.add_done_callback(lambda f: pn.state.execute(lambda: self._done(f)))
        self.future = future
        return future

    def _done(self, future: Future) -> None:
        try:
            result = future.result()
        except Exception as exc:  # shown to the user, not raised in the UI thread
            self.result, self.n_sources, self.selected = None, 0, None
            self.status = f"error: {exc}"
        else:
            self.selected = None
            self.result, self.n_sources = result, len(result.catalogue)
            n_real = int(np.sum(np.asarray(result.catalogue["score"]) > 0.5)) if len(
                result.catalogue) else 0
            self.status = (f"{self.n_sources} compact sources ({n_real} with score > 0.5), "
                           f"{len(result.extended)} extended")
            if self.seed_threshold < _USUAL_SEED:
                self.status += (f"; warning: a seed threshold of {self.seed_threshold:g} sigma "
                                f"takes noise peaks for sources (a Gaussian noise map has a "
                                f"peak above 3 sigma in about every 300 pixels): "
                                f"{_USUAL_SEED:g}-5 sigma is usual")
        finally:
            self.running = False
            self._progress.visible, self._progress.active = False, False
            self._redraw()

    # ---------------------------------------------------------------- downloads
    def catalogue_ecsv(self) -> io.BytesIO:
        """The catalogue (with its provenance in the metadata) as ECSV bytes."""
        if self.result is None:
            return io.BytesIO(b"")
        buf = io.StringIO()
        self.result.catalogue.write(buf, format="ascii.ecsv")
        return io.BytesIO(buf.getvalue().encode())

    def regions_ds9(self) -> io.BytesIO:
        """The DS9 regions (ellipses and extended-source polygons) as bytes."""
        if self.result is None:
            return io.BytesIO(b"")
        return io.BytesIO(self.result.regions.serialize(format="ds9").encode())

    # ---------------------------------------------------------------- views
    def _table_frame(self):
        import pandas as pd

        if self.result is None or not len(self.result.catalogue):
            return pd.DataFrame({c: [] for c in _TABLE_COLUMNS})
        cat = self.result.catalogue
        cols = {}
        for c in _TABLE_COLUMNS:
            if c in cat.colnames:
                v = cat[c]
                cols[c] = np.asarray(getattr(v, "value", v))
        return pd.DataFrame(cols)

    def ellipse_data(self) -> dict[str, np.ndarray]:
        """What the ellipse glyphs show: pixel centres, FWHM axes, angles, score, id."""
        if self.result is None:
            z = np.zeros(0)
            return {"x": z, "y": z, "width": z, "height": z, "angle": z, "score": z, "id": z}
        cat = self.result.catalogue
        wcs = None
        if self.result.header is not None and "ra" in cat.colnames and len(cat) and \
                np.isfinite(np.asarray(cat["ra"].value, float)).any():
            from astropy.wcs import WCS

            wcs = WCS(self.result.header).celestial
        data = _pixel_ellipses(cat, wcs)
        data["score"] = np.asarray(cat["score"], float) if len(cat) else np.zeros(0)
        data["id"] = np.asarray(cat["id"]) if len(cat) else np.zeros(0, int)
        return data

    def _redraw(self) -> None:
        """Rebuild the image figure, the histograms and the table for the current state."""
        from bokeh.models import ColorBar, ColumnDataSource, LinearColorMapper, TapTool
        from bokeh.plotting import figure

        try:
            data, _ = self._pixels_and_wcs(self.image())
        except (ValueError, OSError, IndexError):  # no usable image yet: draw an empty frame
            data = None
        fig = figure(name="detect-image", width=560, height=520, match_aspect=True,
                     tools="pan,wheel_zoom,box_zoom,reset,save,tap", title=self._title(),
                     x_axis_label="x [pix]", y_axis_label="y [pix]")
        self._mapper = LinearColorMapper(palette="Greys256")
        if data is not None:
            ny, nx = data.shape
            step = max(1, int(np.ceil(max(ny, nx) / _MAX_DISPLAY)))
            shown = np.asarray(data[::step, ::step], dtype=np.float32)
            self._shown = shown
            self._set_stretch()
            fig.image(image=[shown], x=-0.5, y=-0.5, dw=nx, dh=ny, color_mapper=self._mapper)
            fig.x_range.start, fig.x_range.end = -0.5, nx - 0.5
            fig.y_range.start, fig.y_range.end = -0.5, ny - 0.5
            self._full = (-0.5, nx - 0.5, -0.5, ny - 0.5)
        score_map = LinearColorMapper(palette="Turbo256", low=0.0, high=1.0, nan_color="magenta")
        src = ColumnDataSource(self.ellipse_data())
        self._ellipses = fig.ellipse(x="x", y="y", width="width", height="height",
                                     angle="angle", source=src, fill_alpha=0.0, line_width=2,
                                     line_color={"field": "score", "transform": score_map})
        fig.add_layout(ColorBar(color_mapper=score_map, title="score", width=10), "right")
        if self.result is not None and len(self.result.extended):
            ext = self.result.extended
            fig.patches(xs=[list(map(float, c)) for c in ext["contour_x"]],
                        ys=[list(map(float, c)) for c in ext["contour_y"]], fill_alpha=0.0,
                        line_color="orange", line_dash="dashed", line_width=2)
        fig.select_one(TapTool).renderers = [self._ellipses]
        src.selected.on_change("indices", self._ellipse_tapped)
        self.figure = fig
        self._image_pane.object = fig
        self._hist_pane.object = self._histograms()
        self.table.value = self._table_frame()
        self.table.selection = []

    def _title(self) -> str:
        if self.source == _GIVEN:
            return self.image_name or "image"
        return f"{self.survey} tile {self.tile_index}"

    def _set_stretch(self) -> None:
        shown = getattr(self, "_shown", None)
        if shown is None or not np.isfinite(shown).any():
            return
        lo, hi = np.nanpercentile(shown, list(self.stretch))
        self._mapper.low, self._mapper.high = float(lo), float(max(hi, lo + 1e-12))

    @param.depends("stretch", watch=True)
    def _stretch_changed(self) -> None:
        self._set_stretch()

    @param.depends("source", "survey", "tile_index", watch=True)
    def _image_changed(self) -> None:
        self.result, self.n_sources, self.selected = None, 0, None
        self._redraw()

    def _histograms(self):
        from bokeh.layouts import row
        from bokeh.plotting import figure

        figs = []
        cat = self.result.catalogue if self.result is not None else None
        for col in ("flux", "snr"):
            unit = ""
            if cat is not None and col in cat.colnames:
                unit = str(getattr(cat[col], "unit", "") or "")
            fig = figure(height=220, width=300, title=f"{col}" + (f" [{unit}]" if unit else ""),
                         x_axis_label=f"log10 {col}", y_axis_label="sources",
                         name=f"detect-hist-{col}")
            if cat is not None and len(cat):
                v = np.asarray(getattr(cat[col], "value", cat[col]), float)
                v = v[np.isfinite(v) & (v > 0)]
                if v.size:
                    h, e = np.histogram(np.log10(v), bins=min(30, max(5, v.size // 3)))
                    fig.quad(top=h, bottom=0, left=e[:-1], right=e[1:], color="steelblue")
            figs.append(fig)
        return row(*figs)

    def _ellipse_tapped(self, attr, old, new) -> None:
        if new:
            self.table.selection = [int(new[0])]

    def _table_selected(self, event) -> None:
        self.selected = int(event.new[0]) if event.new else None

    @param.depends("selected", watch=True)
    def _zoom(self) -> None:
        """Zoom the image onto the selected source (or back out)."""
        if self.figure is None or not hasattr(self, "_full"):
            return
        x0, x1, y0, y1 = self._full
        if self.selected is not None and self.result is not None and \
                0 <= self.selected < self.n_sources:
            d = self.ellipse_data()
            i = self.selected
            half = max(10.0, 3.0 * float(np.nan_to_num(d["width"][i], nan=5.0)))
            x0, x1 = d["x"][i] - half, d["x"][i] + half
            y0, y1 = d["y"][i] - half, d["y"][i] + half
        self.figure.x_range.start, self.figure.x_range.end = float(x0), float(x1)
        self.figure.y_range.start, self.figure.y_range.end = float(y0), float(y1)

    def __panel__(self):
        from ._help import with_help

        return with_help(self, self._layout())

    def _layout(self):
        from ._help import result_download, status_pane

        image = pn.Column(
            pn.widgets.Select.from_param(self.param.source),
            pn.widgets.Select.from_param(self.param.survey),
            pn.widgets.IntInput.from_param(self.param.tile_index),
            self._upload,
        )
        settings = pn.Param(self, parameters=["seed_threshold", "merge_threshold",
                                              "min_pixels", "box", "extended", "tile"],
                            show_name=False)
        run = pn.widgets.Button.from_param(self.param.run_detection, label="Run detection",
                                           color="primary")
        downloads = pn.Column(
            result_download(self, self.catalogue_ecsv, "catalogue.ecsv",
                            "Download catalogue (ECSV)", ready=lambda: self.result is not None),
            result_download(self, self.regions_ds9, "sources.reg", "Download DS9 regions",
                            ready=lambda: self.result is not None),
        )
        side = pn.Column("### Image", image, "### Thresholds", settings, run, self._progress,
                         status_pane(self),
                         pn.widgets.RangeSlider.from_param(self.param.stretch),
                         "### Download", downloads, width=320)
        use = pn.widgets.Button(label="Use the picked archive image")
        use.on_click(lambda _event: self.use_archive_image())
        picker = pn.Card(pn.Column(self.picker, use), title="Archive: pick an image by region "
                         "and band", collapsed=True, width=560)
        return pn.Column(picker, pn.Row(side, pn.Column(self._image_pane, self._hist_pane),
                                        self.table))
