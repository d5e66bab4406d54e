"""`DetectDashboard`: choose an image, set thresholds, find sources, inspect them.

No science here: the dashboard calls `vanotebook.detect.detect`,
`vanotebook.io.parse_image` and `vanotebook.sky.demo_sky` only, and reads the
catalogue's columns (the classifier's ``class``, ``p_<class>`` and ``score``,
`vanotebook.classify`). Detection runs in a worker thread (which hands the
tiles to the Dask cluster when ``tile`` is set), so the Panel event loop is
never blocked; a progress indicator shows while it runs, and Cancel stops it
(taking its tiles off the cluster). The image is drawn
with a percentile stretch and the fitted ellipses (FWHM) on top, one fixed
colour per class (`class_colours`; artefacts grey) and dashed where the
probability that the source is real (``score``) is below one half. The
``classes`` filter hides the unchosen classes from the image and the table
(the downloads always hold every source). The table is linked to the image:
selecting a row zooms onto that source, tapping an ellipse selects its row.
"""

from __future__ import annotations

import io
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import panel as pn
import param

from ..classify import CLASSES
from ..detect import DetectionResult, detect
from ._image import ImageView
from ._page import CANCELLED, Run

__all__ = ["DetectDashboard", "class_colours"]

_TABLE_COLUMNS = ("id", "class", "p_class", "score", "x", "y", "ra", "dec", "peak", "flux",
                  "snr", "major", "minor", "pa", "cls", "flags")
#: Column titles of the table (units are added from the catalogue's columns).
_TITLES = {"p_class": "P(class)", "score": "P(real)", "cls": "size class", "ra": "RA",
           "dec": "Dec", "snr": "S/N"}
_TOOLTIPS = {"class": "Most probable morphological class (vanotebook.classify)",
             "p_class": "The classifier's probability of that class",
             "score": "Calibrated probability that the source is real (not an artefact)",
             "cls": "Point / compact / extended by the fitted size against the beam",
             "snr": "Peak signal-to-noise ratio"}
_DEMO = "demo survey"
_GIVEN = "given image"
#: Ellipses of sources whose probability of being real is below this are dashed.
_REAL = 0.5

# One fixed colour per class, from bokeh's Category10; its orange is left to the outlines
# of the segmented extended regions, its grey to the artefacts (the spurious classes).
_CATEGORY10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf")
_GREY = _CATEGORY10[7]
_REGION_COLOUR = _CATEGORY10[1]
_CLASS_COLOURS = {"point": _CATEGORY10[0], "compact": _CATEGORY10[9],
                  "extended": _CATEGORY10[2], "fr2": _CATEGORY10[3], "fr1": _CATEGORY10[4],
                  "bent": _CATEGORY10[6], "artefact": _GREY}
_SPARE = (_CATEGORY10[8], _CATEGORY10[5], "#aec7e8", "#98df8a", "#ff9896", "#c5b0d5",
          "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5")  # then Category20's light shades
_UNCLASSIFIED = "unclassified"


def class_colours(classes=CLASSES, spurious=("artefact",)) -> dict[str, str]:
    """The colour of each class on the image: fixed for `vanotebook.classify.CLASSES`.

    A model with its own class map gets the spare colours in the order of its
    classes; its spurious classes (``meta["classifier"]["spurious"]``) are grey.
    """
    out, spare = {}, iter(_SPARE * (1 + len(classes) // len(_SPARE)))
    for c in classes:
        out[c] = _GREY if c in spurious else _CLASS_COLOURS.get(c) or next(spare)
    return out


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
    classes = param.ListSelector(default=list(CLASSES), objects=list(CLASSES),
                                 label="Classes shown",
                                 doc="Classes shown on the image and in the table (the "
                                 "downloads hold every source)")
    run_detection = param.Action(lambda self: self.run(), label="Run detection")

    def __init__(self, image: Any = None, *, sky: Any = None, client=None, archive: Any = None,
                 **params: Any):
        from bokeh.models.widgets.tables import NumberFormatter

        from ._archive import ArchivePicker

        super().__init__(**params)
        self.picker = ArchivePicker(archive)
        self._sky, self._client = sky, client
        self._image: Any = None
        self._pool = ThreadPoolExecutor(max_workers=1)
        self.future: Future | None = None
        self._run: Run | None = None  # the current run (`_page.Run`)
        self.fraction = 0.0  # of the current run, from `detect`'s progress callback
        self._progress = pn.indicators.Progress(value=-1, active=False, visible=False,
                                                width=250, label="detect-progress")
        self._upload = pn.widgets.FileInput(accept=".fits,.fit,.fts,.fits.gz", multiple=False,
                                            label="Upload FITS")
        # an empty file reaches Panel as value None with its filename: watch both at once
        self._upload.param.watch(
            lambda *_events: self._upload.filename and self.upload(
                self._upload.value if self._upload.value is not None else b"",
                self._upload.filename), ["value", "filename"])
        self._rows = np.zeros(0, int)  # the catalogue rows shown, in table/glyph order
        self._keys: dict[str, Any] = {}  # class -> its LegendItem
        self.legend = None
        probability = NumberFormatter(format="0.000")
        self.table = pn.widgets.Tabulator(self._table_frame(), label="detect-table",
                                          css_classes=["detect-table"], disabled=True,
                                          selectable=1, pagination="remote", page_size=20,
                                          height=420, sizing_mode="stretch_width",
                                          titles=self._table_titles(),
                                          header_tooltips=dict(_TOOLTIPS),
                                          formatters={"p_class": probability,
                                                      "score": probability})
        self.table.param.watch(self._table_selected, "selection")
        self.class_filter = pn.widgets.MultiChoice.from_param(
            self.param.classes, name="Classes shown", css_classes=["detect-classes"],
            sizing_mode="stretch_width")
        self._image_pane = pn.pane.Bokeh(name="detect-image", css_classes=["detect-image"])
        self._hist_pane = pn.pane.Bokeh(name="detect-histograms")
        self.figure = None
        self.view = ImageView()  # level of detail, colour map, sky read-out
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
        if data is None:
            return False
        from astropy.io import fits

        name = filename or "upload.fits"
        if len(data) == 0:
            self.status = f"Upload of {name!r} failed: the file is empty"
            return False
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
    def _work(self, run: Run, image: Any, settings: dict[str, Any]) -> DetectionResult:
        try:
            return detect(image, client=run.connect(),
                          progress=lambda fraction: self._advance(run, fraction), **settings)
        finally:
            run.close()

    def _advance(self, run: Run, fraction: float) -> None:
        """`detect`'s progress callback (a worker thread): the bar shows the stage reached;
        a cancel stops the run here."""
        run.check()
        value = round(100 * fraction)
        self.fraction = fraction

        def show():
            self._progress.value = value

        run.report(show)

    def settings(self) -> dict[str, Any]:
        """The keyword arguments a run passes to `detect`."""
        return {"seed_threshold": self.seed_threshold, "merge_threshold": self.merge_threshold,
                "min_pixels": self.min_pixels, "box": self.box, "extended": self.extended,
                "tile": self.tile or None}

    def run(self, *, sync: bool = False) -> Future | None:
        """Run detection with the current settings (in a worker thread unless ``sync``).

        Returns the future of the run (already done when ``sync``), or None
        when a run is under way or no image can be had (see `status`).
        `cancel` stops it.
        """
        from ..cluster import get_client

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
        # the page that asked: the run's results are drawn on its loop (at once when sync);
        # only a tiled run goes to the cluster
        run = self._run = Run(get_client(self._client) if settings["tile"] else None)
        if sync:
            run.doc = None
            future: Future = Future()
            try:
                future.set_result(self._work(run, image, settings))
            except Exception as exc:
                future.set_exception(exc)
            run.report(lambda: self._done(future), last=True)
        else:
            future = self._pool.submit(self._work, run, image, settings)
            future.add_done_callback(lambda f: run.report(lambda: self._done(f), last=True))
        self.future = future
        return future

    def cancel(self) -> None:
        """Stop the current detection: its tiles leave the cluster, the last result stays."""
        if self._run is not None:
            self._run.cancel(self._cancelled)

    def _cancelled(self) -> None:
        self.running, self.status = False, CANCELLED
        self._progress.visible, self._progress.active = False, False

    def _done(self, future: Future) -> None:
        try:
            result = future.result()
        except Exception as exc:  # shown to the user, not raised in the UI thread
            self.result, self.n_sources, self.selected = None, 0, None
            self.status = f"error: {exc}"
        else:
            self.selected = None
            self.result, self.n_sources = result, len(result.catalogue)
            self._offer_classes()
            n_real = int(np.sum(np.asarray(result.catalogue["score"]) > _REAL)) if len(
                result.catalogue) else 0
            self.status = (f"{self.n_sources} compact sources ({n_real} with P(real) > "
                           f"{_REAL:g}), {len(result.extended)} extended")
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

    # ---------------------------------------------------------------- classes
    def _classifier(self) -> tuple[list[str], list[str]]:
        """The class map and spurious classes of the last result's classifier."""
        meta = {}
        if self.result is not None:
            meta = self.result.catalogue.meta.get("classifier") or {}
        return (list(meta.get("classes", CLASSES)),
                list(meta.get("spurious", ["artefact"] if "classes" not in meta else [])))

    def _offer_classes(self) -> None:
        """Offer the result's classes in the filter (all chosen when the class map changes)."""
        names, _ = self._classifier()
        if self.result is not None and len(self.result.catalogue) and \
                "class" not in self.result.catalogue.colnames:
            names = [*names, _UNCLASSIFIED]
        if list(self.param.classes.objects) != names:
            self.param.classes.objects = names
            self.classes = list(names)

    def colours(self) -> dict[str, str]:
        """The colour of each class (`class_colours` of the result's class map)."""
        names, spurious = self._classifier()
        return {**class_colours(names, spurious), _UNCLASSIFIED: "black"}

    def source_classes(self) -> tuple[np.ndarray, np.ndarray]:
        """Each catalogue row's class and the probability of that class (read from its columns)."""
        cat = self.result.catalogue if self.result is not None else None
        if cat is None or not len(cat):
            return np.zeros(0, dtype="U1"), np.zeros(0)
        if "class" not in cat.colnames:  # detect(classify=False): nothing to read
            return np.full(len(cat), _UNCLASSIFIED), np.full(len(cat), np.nan)
        cls = np.asarray(cat["class"]).astype(str)
        prob = np.full(len(cat), np.nan)
        for c in np.unique(cls):
            if f"p_{c}" in cat.colnames:
                rows = cls == c
                prob[rows] = np.asarray(cat[f"p_{c}"], float)[rows]
        return cls, prob

    def shown_rows(self) -> np.ndarray:
        """The catalogue rows whose class is chosen in ``classes``, in catalogue order."""
        cls, _ = self.source_classes()
        return np.flatnonzero(np.isin(cls, list(self.classes)))

    # ---------------------------------------------------------------- views
    def _table_frame(self):
        import pandas as pd

        if self.result is None or not len(self.result.catalogue):
            return pd.DataFrame({c: [] for c in _TABLE_COLUMNS})
        cat = self.result.catalogue
        cls, prob = self.source_classes()
        rows = self._rows
        cols = {}
        for c in _TABLE_COLUMNS:
            if c == "class":
                cols[c] = cls[rows]
            elif c == "p_class":
                cols[c] = prob[rows]
            elif c in cat.colnames:
                v = cat[c]
                cols[c] = np.asarray(getattr(v, "value", v))[rows]
        return pd.DataFrame(cols)

    def _table_titles(self) -> dict[str, str]:
        """Column titles: a label, and the unit in brackets where the column has one."""
        cat = self.result.catalogue if self.result is not None else None
        titles = {}
        for c in _TABLE_COLUMNS:
            unit = getattr(cat[c], "unit", None) if cat is not None and c in cat.colnames \
                else None
            label = _TITLES.get(c, c)
            titles[c] = f"{label} [{unit:generic}]" if unit is not None and str(unit) else label
        return titles

    def ellipse_data(self) -> dict[str, np.ndarray]:
        """What the ellipse glyphs show, for every catalogue row.

        Pixel centres, FWHM axes, angles, ``score`` (the probability that the
        source is real), ``id``, ``class``, ``p_class`` (the probability of
        that class), ``colour`` (the class's, `class_colours`) and ``dash``
        (dashed where ``score`` is below one half). The glyphs show the rows
        of `shown_rows`.
        """
        if self.result is None or not len(self.result.catalogue):
            z = np.zeros(0)
            return {"x": z, "y": z, "width": z, "height": z, "angle": z, "score": z,
                    "id": np.zeros(0, int), "class": np.zeros(0, dtype="U1"), "p_class": z,
                    "colour": np.zeros(0, dtype="U1"), "dash": np.zeros(0, dtype="U1")}
        cat = self.result.catalogue
        wcs = None
        if self.result.header is not None and "ra" in cat.colnames and len(cat) and \
                np.isfinite(np.asarray(cat["ra"].value, float)).any():
            from astropy.wcs import WCS

            wcs = WCS(self.result.header).celestial
        data = _pixel_ellipses(cat, wcs)
        data["score"] = np.asarray(cat["score"], float)
        data["id"] = np.asarray(cat["id"])
        data["class"], data["p_class"] = self.source_classes()
        colours = self.colours()
        data["colour"] = np.array([colours.get(c, "black") for c in data["class"]])
        data["dash"] = np.where(data["score"] < _REAL, "dashed", "solid")
        return data

    def _glyph_data(self) -> dict[str, np.ndarray]:
        """`ellipse_data` of the shown rows, with their catalogue ``row``."""
        data = {k: v[self._rows] for k, v in self.ellipse_data().items()}
        data["row"] = self._rows
        return data

    def _show_sources(self) -> None:
        """Give the glyphs and the table the chosen classes' rows (keeping a shown selection)."""
        keep = self.selected
        self._rows = self.shown_rows()
        if self._ellipses is not None:
            self._ellipses.data_source.data = self._glyph_data()
            for name in self._keys:
                self._show_key(name)
        where = np.flatnonzero(self._rows == keep) if keep is not None else []
        self._fill_table([int(where[0])] if len(where) else [])
        self._highlight()

    def _show_key(self, name: str) -> None:
        """A class's entry of the key: faded and marked "(hidden)" when filtered away."""
        from bokeh.core.properties import value

        item, shown = self._keys[name], name in self.classes
        item.label = value(name if shown else f"{name} (hidden)")  # a text, not a column
        item.renderers[0].glyph.line_alpha = 1.0 if shown else 0.25

    @param.depends("classes", watch=True)
    def _classes_changed(self) -> None:
        self._show_sources()

    def _redraw(self) -> None:
        """Rebuild the image figure, the histograms and the table for the current state."""
        from bokeh.models import ColumnDataSource, Legend, LegendItem, TapTool

        try:
            data, wcs = self._pixels_and_wcs(self.image())
        except (ValueError, OSError, IndexError):  # no usable image yet: draw an empty frame
            data, wcs = None, None
        fig = self.view.figure(data, wcs, title=self._title(), name="detect-image",
                               tools="pan,wheel_zoom,box_zoom,reset,save,tap")
        self._mapper = self.view.mapper
        if data is not None:
            ny, nx = data.shape
            self._full = (-0.5, nx - 0.5, -0.5, ny - 0.5)
            self._shown = self.view.shown
            self._set_stretch()  # the stretch of the whole image, kept at every zoom
        self._rows = self.shown_rows()
        src = ColumnDataSource(self._glyph_data())
        # the selected source (a row clicked, an ellipse tapped) is drawn thick, the others
        # faded
        self._ellipses = fig.ellipse(x="x", y="y", width="width", height="height",
                                     angle="angle", source=src, fill_alpha=0.0, line_width=2,
                                     line_color={"field": "colour"},
                                     line_dash={"field": "dash"}, selection_line_width=4,
                                     nonselection_line_alpha=0.35, name="detect-ellipses")
        # the key: a line per class (one point off the plot: a renderer without data has no
        # entry), so every class keeps its entry and colour whatever is shown; then the
        # dashed outline of low-P(real) sources and the segmented extended regions
        self._keys = {}
        items = []
        names, _ = self._classifier()
        colours = self.colours()
        if self.result is not None and len(self.result.catalogue) and \
                "class" not in self.result.catalogue.colnames:
            names = [_UNCLASSIFIED]
        for name in names:
            key = fig.line(x=[np.nan], y=[np.nan], line_width=3, line_color=colours[name])
            self._keys[name] = LegendItem(label=name, renderers=[key])
            self._show_key(name)
            items.append(self._keys[name])
        dashed = fig.line(x=[np.nan], y=[np.nan], line_width=2, line_color="black",
                          line_dash="dashed")
        items.append(LegendItem(label=f"P(real) < {_REAL:g}", renderers=[dashed]))
        if self.result is not None and len(self.result.extended):
            ext = self.result.extended
            regions = fig.patches(xs=[list(map(float, c)) for c in ext["contour_x"]],
                                  ys=[list(map(float, c)) for c in ext["contour_y"]],
                                  fill_alpha=0.0, line_color=_REGION_COLOUR,
                                  line_dash="dashed", line_width=2)
            items.append(LegendItem(label="extended region", renderers=[regions]))
        self.legend = Legend(items=items, title="class", name="detect-legend",
                             label_text_font_size="9pt")
        fig.add_layout(self.legend, "right")
        fig.select_one(TapTool).renderers = [self._ellipses]
        src.selected.on_change("indices", self._ellipse_tapped)
        self.figure = fig
        self._image_pane.object = fig
        self._hist_pane.object = self._histograms()
        self._fill_table([])

    def save_to_archive(self, archive: Any) -> str:
        """Add the catalogue of the last run to ``archive`` under a new name; what was saved."""
        from ._help import archive_name

        name = archive_name(archive, f"detections_{self._title()}")
        cat = archive.add_catalogue(name, self.result.catalogue,
                                    description=f"detections on {self._title()}")
        return f"catalogue {name!r} ({cat.n_rows} sources)"

    def _fill_table(self, selection: list[int]) -> None:
        """The table's rows and titles changed in one update, then its selection.

        Separate updates (rows, then titles, which rebuild the columns in the
        browser) could leave a remotely paginated table blank until paged.
        """
        self.table.param.update(value=self._table_frame(), titles=self._table_titles())
        self.table.selection = selection

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
        if new:  # the glyphs and the table show the same rows in the same order
            self.table.selection = [int(new[0])]

    def _table_selected(self, event) -> None:
        ok = event.new and 0 <= event.new[0] < len(self._rows)
        self.selected = int(self._rows[event.new[0]]) if ok else None

    def _highlight(self) -> None:
        """Select the selected source's ellipse (drawn highlighted), or none."""
        if self._ellipses is None:
            return
        where = np.flatnonzero(self._rows == self.selected) if self.selected is not None \
            else []
        self._ellipses.data_source.selected.indices = [int(k) for k in where[:1]]

    @param.depends("selected", watch=True)
    def _zoom(self) -> None:
        """Zoom the image onto the selected source (or back out) and highlight it."""
        self._highlight()
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
        self.view.show_window(float(x0), float(x1), float(y0), float(y1))

    def __panel__(self):
        from ._help import with_help

        return with_help(self, self._layout())

    def _layout(self):
        from ._help import archive_save, result_download, run_controls, status_pane

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
            archive_save(self, self.save_to_archive, ready=lambda: self.result is not None),
        )
        side = pn.Column("### Image", image, "### Thresholds", settings,
                         run_controls(self, run), self._progress,
                         status_pane(self),
                         pn.widgets.RangeSlider.from_param(self.param.stretch),
                         "### Show", self.class_filter,
                         "### Download (every source)", downloads, width=320)
        use = pn.widgets.Button(label="Use the picked archive image")
        use.on_click(lambda _event: self.use_archive_image())
        picker = pn.Card(pn.Column(self.picker, use), title="Archive: pick an image by region "
                         "and band", collapsed=True, width=560)
        shown = pn.Column(self._image_pane, self.view, self._hist_pane)
        return pn.Column(picker, pn.Row(side, shown, self.table))
