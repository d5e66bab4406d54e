"""DetectDashboard state: set params, run detection, check what it shows against the truth."""

from __future__ import annotations

import io

import astropy.units as u
import numpy as np
import panel as pn
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import QTable
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from vanotebook._errors import VanotebookInputError
from vanotebook.dashboards import DetectDashboard
from vanotebook.detect import detect


@pytest.fixture(scope="module")
def ran(sky):
    """A dashboard that has run on the demo radio tile 0."""
    dash = DetectDashboard(sky=sky)
    future = dash.run(sync=True)
    assert future.done() and future.exception() is None
    return dash


def _elongated(angle_deg: float, n: int = 96) -> np.ndarray:
    """An elongated Gaussian (sigma 5 x 2 px) at ``angle_deg`` from +x, plus unit noise."""
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    th = np.radians(angle_deg)
    dx, dy = xx - n / 2, yy - n / 2
    a = dx * np.cos(th) + dy * np.sin(th)
    b = -dx * np.sin(th) + dy * np.cos(th)
    img = 60 * np.exp(-0.5 * (a**2 / 25 + b**2 / 4))
    return (img + np.random.default_rng(1).normal(0, 1, (n, n))).astype(np.float32)


def test_run_shows_one_ellipse_and_one_row_per_source(ran, sky):
    cat = ran.result.catalogue
    assert not ran.running and ran.n_sources == len(cat) > 10
    assert "compact sources" in ran.status
    glyphs = ran._ellipses.data_source.data
    assert len(glyphs["x"]) == len(cat) == len(ran.table.value)
    np.testing.assert_allclose(glyphs["x"], cat["x"].value)
    np.testing.assert_allclose(ran.table.value["flux"], cat["flux"].value)
    # the result is the public API's answer on the same tile
    ref = detect(sky.images("radio")[0])
    assert len(ref.catalogue) == len(cat)
    # the reliable ellipses sit on true sources (truth from the synthetic sky): within 3 px
    # of a compact one, or within the extent of a radio galaxy, filament or ring (its lobes,
    # knots and arcs are detected away from its centre)
    truth = sky.observe("radio").truth
    wcs = WCS(sky.images("radio")[0][0].header)
    tx, ty = wcs.celestial.world_to_pixel(SkyCoord(truth["ra"], truth["dec"], unit="deg"))
    pix = float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600)  # arcsec
    size = {k: np.nan_to_num(u.Quantity(truth[k]).to_value(u.arcsec))
            for k in ("major", "length", "radius")}
    extent = np.maximum.reduce([size["major"], size["length"], 2 * size["radius"]])
    reach = np.maximum(3.0, 0.5 * extent / pix + 1.0)
    good = glyphs["score"] > 0.5
    d = np.hypot(glyphs["x"][good, None] - tx[None], glyphs["y"][good, None] - ty[None])
    assert good.sum() > 10 and np.mean((d < reach[None]).any(axis=1)) > 0.9


def test_selected_row_zooms_onto_that_source(ran):
    cat = ran.result.catalogue
    full = (ran.figure.x_range.end - ran.figure.x_range.start)
    for i in (0, len(cat) // 2, len(cat) - 1):
        ran.table.selection = [i]
        assert ran.selected == i
        x, y = cat["x"][i].value, cat["y"][i].value
        xr, yr = ran.figure.x_range, ran.figure.y_range
        assert xr.start < x < xr.end and yr.start < y < yr.end
        assert xr.end - xr.start < full / 5
        # the ellipse itself fits in the view
        half = ran.ellipse_data()["width"][i] / 2
        assert xr.start < x - half and x + half < xr.end
        # and highlighted: its ellipse, and only it, is selected (drawn thick)
        src = ran._ellipses.data_source
        assert src.selected.indices == [list(src.data["row"]).index(i)]
    ran.table.selection = []
    assert ran.selected is None and ran._ellipses.data_source.selected.indices == []
    assert ran.figure.x_range.end - ran.figure.x_range.start == pytest.approx(full)


def test_tapping_an_ellipse_selects_its_row(ran):
    src = ran._ellipses.data_source
    ran._ellipse_tapped("indices", [], [2])
    assert ran.table.selection == [2] and ran.selected == 2
    assert src.data["id"][2] == ran.table.value["id"][2]
    ran.table.selection = []


def test_downloads_are_valid_ecsv_and_ds9(ran):
    from regions import Regions

    text = ran.catalogue_ecsv().getvalue().decode()
    back = QTable.read(text, format="ascii.ecsv")
    cat = ran.result.catalogue
    np.testing.assert_array_equal(back["id"], cat["id"])
    assert back["flux"].unit == cat["flux"].unit
    np.testing.assert_allclose(back["ra"].value, cat["ra"].value)
    assert back.meta["provenance"]["activity"] == cat.meta["provenance"]["activity"]
    regs = Regions.parse(ran.regions_ds9().getvalue().decode(), format="ds9")
    assert len(regs) == len(cat) + len(ran.result.extended)
    assert regs[0].center.ra.deg == pytest.approx(cat["ra"][0].to_value(u.deg))


def test_histograms_count_every_source(ran):
    flux_fig, snr_fig = ran._hist_pane.object.children
    for fig, col in ((flux_fig, "flux"), (snr_fig, "snr")):
        v = np.asarray(ran.result.catalogue[col].value, float)
        counts = fig.renderers[0].data_source.data["top"]
        assert counts.sum() == np.sum(np.isfinite(v) & (v > 0))


def test_ellipse_orientation_follows_the_source():
    """An injected elongated source: the drawn ellipse has its angle and axis ratio."""
    for angle in (30.0, 120.0):
        img = _elongated(angle)
        header = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 48,
                              "CRPIX2": 48, "CRVAL1": 150.0, "CRVAL2": 2.0,
                              "CDELT1": -1 / 3600, "CDELT2": 1 / 3600})
        for image in (img, (img, WCS(header))):
            dash = DetectDashboard(image)
            dash.extended = False
            dash.run(sync=True)
            assert dash.n_sources == 1, dash.status
            e = dash.ellipse_data()
            diff = (np.degrees(e["angle"][0]) - angle + 90) % 180 - 90
            assert abs(diff) < 3
            assert e["width"][0] / e["height"][0] == pytest.approx(2.5, rel=0.1)
            assert e["width"][0] == pytest.approx(5 * 2.3548, rel=0.1)  # FWHM of sigma 5


def test_set_image_takes_every_parse_image_form(image_form, sky):
    form, value, data, _ = image_form
    dash = DetectDashboard(sky=sky)
    dash.set_image(value, name=form)
    assert dash.source == "given image" and dash.image_name == form
    pixels, wcs = dash._pixels_and_wcs(dash.image())
    np.testing.assert_array_equal(pixels, data)
    assert wcs is not None and dash.figure.title.text == form


def test_set_image_rejects_what_parse_image_rejects():
    dash = DetectDashboard()
    with pytest.raises(VanotebookInputError, match="image"):
        dash.set_image("not-a-file.fits")
    with pytest.raises(VanotebookInputError, match="image"):
        dash.set_image(np.zeros(5))


def test_upload_good_and_bad_fits(sky):
    dash = DetectDashboard(sky=sky)
    assert not dash.upload(b"this is not FITS", "notes.fits")
    assert "notes.fits" in dash.status and "not a FITS file" in dash.status
    assert dash.source == "demo survey" and dash.result is None
    assert not dash.upload(fits.PrimaryHDU().header.tostring().encode(), "empty.fits")
    assert "empty.fits" in dash.status and "no HDU holds a 2-D" in dash.status
    buf = io.BytesIO()
    sky.images("radio")[1].writeto(buf)
    assert dash.upload(buf.getvalue(), "tile1.fits")
    assert dash.source == "given image" and dash.image_name == "tile1.fits"
    # an empty file, as the browser's FileInput reaches Panel (value None, a filename):
    # found in Chromium through the hub, where it gave no message
    dash._upload.param.update(value=None, filename="empty.fits")
    assert dash.status == "Upload of 'empty.fits' failed: the file is empty"
    assert dash.image_name == "tile1.fits"  # nothing replaced
    dash.run(sync=True)
    assert dash.n_sources == len(detect(sky.images("radio")[1]).catalogue) > 0


def test_errors_are_shown_not_raised(sky):
    dash = DetectDashboard(sky=sky, seed_threshold=2.0, merge_threshold=3.0)
    future = dash.run(sync=True)
    assert isinstance(future.exception(), VanotebookInputError)
    assert dash.status.startswith("error: merge_threshold") and dash.result is None
    assert not dash.running and dash.n_sources == 0
    dash.merge_threshold, dash.tile_index = 2.0, 99
    assert dash.run() is None and "tile_index" in dash.status
    dash2 = DetectDashboard()
    dash2.source = "given image"
    assert dash2.run() is None and "no image given" in dash2.status


def test_background_run_and_panel(sky):
    dash = DetectDashboard(sky=sky, survey="fir250", tile_index=1, seed_threshold=6.0)
    button = dash.__panel__()
    assert isinstance(button, pn.Column)
    run_buttons = [w for w in button.select(pn.widgets.Button) if w.name == "Run detection"]
    assert len(run_buttons) == 1
    tables = button.select(pn.widgets.Tabulator)
    assert [t.css_classes for t in tables if t is not dash.picker.table] == [["detect-table"]]
    assert "detect-image" in dash._image_pane.css_classes and dash.figure.name == "detect-image"
    future = dash.run()  # what the button does: a worker thread
    future.result(timeout=120)
    for _ in range(100):  # the done callback runs just after the future resolves
        if not dash.running:
            break
        import time

        time.sleep(0.05)
    ref = detect(sky.images("fir250")[1], seed_threshold=6.0)
    assert dash.n_sources == len(ref.catalogue) and not dash.running
    # changing the image clears the result
    dash.tile_index = 0
    assert dash.result is None and dash.n_sources == 0 and len(dash.table.value) == 0


def test_run_shows_detect_progress(sky):
    """The bar follows `detect`'s stages (it was a spinner only): increasing values
    up to 100, and `detect` itself reports fractions in order ending at 1."""
    dash = DetectDashboard(sky=sky, extended=False)
    seen = []

    def watch(event):
        seen.append(event.new)

    dash._progress.param.watch(watch, "value")
    assert dash.run(sync=True).exception() is None
    assert seen[0] == 0 and seen[-1] == 100 and seen == sorted(seen) and len(seen) >= 4
    assert dash.fraction == 1.0 and not dash._progress.visible
    fractions = []
    detect(sky.images("radio")[0], extended=False, classify=False, progress=fractions.append)
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    with pytest.raises(VanotebookInputError, match="progress"):
        detect(np.ones((16, 16), np.float32), progress="yes")


def _shown_ids(dash) -> tuple[np.ndarray, np.ndarray]:
    """The ids on the image (the ellipse glyphs) and in the table."""
    return (np.asarray(dash._ellipses.data_source.data["id"]),
            np.asarray(dash.table.value["id"]))


def _label(item) -> str:
    """A legend item's text: a value (a plain string would name a column of its source)."""
    assert item.label.value is not None
    return item.label.value


def test_table_shows_class_and_its_probability(ran):
    """Each row: the classifier's class, the probability of that class, and P(real)."""
    from vanotebook.classify import CLASSES

    cat = ran.result.catalogue
    table = ran.table.value
    assert {"class", "p_class", "score"} <= set(table.columns)
    assert list(table["id"]) == list(cat["id"])
    assert list(table["class"]) == [str(c) for c in cat["class"]]
    assert set(table["class"]) <= set(CLASSES) and len(set(table["class"])) > 1
    # p_class is the probability of the row's own class, read from its p_<class> column
    own = [float(cat[f"p_{c}"][i]) for i, c in enumerate(cat["class"])]
    np.testing.assert_allclose(table["p_class"], own)
    probs = np.stack([np.asarray(cat[f"p_{c}"], float) for c in CLASSES], axis=1)
    np.testing.assert_allclose(table["p_class"], probs.max(axis=1))  # the most probable
    np.testing.assert_allclose(table["score"], np.asarray(cat["score"], float))
    # labels: the real probability is named as such, and units come from the catalogue
    titles = ran.table.titles
    assert titles["score"] == "P(real)" and titles["p_class"] == "P(class)"
    assert titles["class"] == "class" and titles["cls"] == "size class"
    assert titles["flux"] == f"flux [{cat['flux'].unit:generic}]" == "flux [Jy]"
    assert titles["ra"] == "RA [deg]" and titles["major"] == "major [arcsec]"
    assert "real" in ran.table.header_tooltips["score"]


def test_ellipses_are_coloured_by_class(ran):
    """One fixed colour per class (Category10, artefacts grey), with a key; no score colours."""
    from bokeh.core.property.vectorization import Field
    from bokeh.models import ColorBar
    from bokeh.palettes import Category10_10

    from vanotebook.classify import CLASSES
    from vanotebook.dashboards._detect import class_colours

    palette = class_colours()
    assert set(palette) == set(CLASSES)
    assert len(set(palette.values())) == len(CLASSES)  # one colour each
    assert set(palette.values()) <= set(Category10_10)
    assert palette["artefact"] == "#7f7f7f"  # Category10's grey
    glyph = ran._ellipses.glyph
    assert glyph.line_color == Field("colour") and glyph.line_dash == Field("dash")
    assert not ran.figure.select({"type": ColorBar})  # the score colour bar is gone
    data = ran._ellipses.data_source.data
    cat = ran.result.catalogue
    rows = [list(cat["id"]).index(i) for i in data["id"]]
    assert len(rows) == len(cat)
    classes = [str(cat["class"][r]) for r in rows]
    assert list(data["colour"]) == [palette[c] for c in classes]
    assert len(set(data["colour"])) == len(set(classes)) > 1
    # low-P(real) sources keep a mark of their own: a dashed outline
    score = np.asarray(cat["score"], float)[rows]
    assert list(data["dash"]) == ["dashed" if s < 0.5 else "solid" for s in score]
    # the key: every class with its colour, then the dashed outline
    key = {_label(item): item.renderers[0].glyph.line_color for item in ran.legend.items}
    assert {c: key[c] for c in CLASSES} == palette
    # each entry's renderer has data, or the browser draws no sample beside its label
    assert all(len(item.renderers[0].data_source.data["x"]) == 1
               for item in ran.legend.items if _label(item) in CLASSES)
    assert "P(real) < 0.5" in key
    # a model with its own class map: spare colours, its spurious classes grey
    own = class_colours(("star", "galaxy", "point", "junk"), spurious=("junk",))
    assert own["point"] == palette["point"] and own["junk"] == palette["artefact"]
    assert len(set(own.values())) == 4


def test_class_filter_hides_exactly_those_rows(ran):
    """Deselecting classes removes exactly their rows from the glyphs and the table."""
    from collections import Counter

    from vanotebook.classify import CLASSES

    cat = ran.result.catalogue
    cls = np.asarray(cat["class"]).astype(str)
    ids = np.asarray(cat["id"])
    assert list(ran.class_filter.options) == list(CLASSES)
    assert list(ran.class_filter.value) == list(CLASSES) == list(ran.classes)  # all at first
    counts = Counter(cls)
    hidden = {counts.most_common(1)[0][0]} | ({"artefact"} & set(cls))
    kept = ~np.isin(cls, list(hidden))
    assert 0 < kept.sum() < len(cat)
    colours = dict(zip(ran._ellipses.data_source.data["id"],
                       ran._ellipses.data_source.data["colour"], strict=True))
    # a source that stays shown stays selected while other classes are hidden
    stay = int(np.flatnonzero(kept)[-1])
    ran.table.selection = [stay]
    try:
        ran.class_filter.value = [c for c in CLASSES if c not in hidden]  # the widget
        assert set(ran.classes) == set(CLASSES) - hidden
        glyph_ids, table_ids = _shown_ids(ran)
        np.testing.assert_array_equal(glyph_ids, ids[kept])
        np.testing.assert_array_equal(table_ids, ids[kept])
        assert not hidden & set(ran.table.value["class"])
        assert not hidden & set(ran._ellipses.data_source.data["class"])
        for i, c in zip(glyph_ids, ran._ellipses.data_source.data["colour"], strict=True):
            assert colours[i] == c  # a class keeps its colour whatever else is shown
        assert ran.selected == stay and ids[stay] == table_ids[ran.table.selection[0]]
        # the key keeps every class and says which are hidden
        labels = [_label(item) for item in ran.legend.items][:len(CLASSES)]
        assert labels == [c + " (hidden)" * (c in hidden) for c in CLASSES]
        # table and image stay linked through the shown rows
        j = len(table_ids) - 1
        ran.table.selection = [j]
        row = int(np.flatnonzero(ids == table_ids[j])[0])
        assert ran.selected == row
        xr = ran.figure.x_range
        assert xr.start < cat["x"][row].value < xr.end
        ran._ellipse_tapped("indices", [], [0])
        assert ran.table.selection == [0] and ran.selected == int(np.flatnonzero(kept)[0])
        # the downloads hold every source
        back = QTable.read(ran.catalogue_ecsv().getvalue().decode(), format="ascii.ecsv")
        assert len(back) == len(cat)
        # nothing chosen, nothing shown
        ran.classes = []
        assert all(len(v) == 0 for v in _shown_ids(ran))
    finally:
        ran.classes = list(CLASSES)
        ran.table.selection = []
    glyph_ids, table_ids = _shown_ids(ran)
    np.testing.assert_array_equal(glyph_ids, ids)
    np.testing.assert_array_equal(table_ids, ids)


def test_class_filter_is_in_the_layout_and_survives_a_run(sky):
    from vanotebook.classify import CLASSES

    dash = DetectDashboard(sky=sky, extended=False)
    layout = dash.__panel__()
    assert [w for w in layout.select(pn.widgets.MultiChoice) if w.name == "Classes shown"]
    dash.classes = ["point"]
    dash.run(sync=True)
    assert dash.classes == ["point"] and list(dash.param.classes.objects) == list(CLASSES)
    cls = np.asarray(dash.result.catalogue["class"]).astype(str)
    assert 0 < len(dash.table.value) == np.sum(cls == "point") < len(cls)
    assert set(dash._ellipses.data_source.data["class"]) == {"point"}


def test_a_large_image_is_sent_at_screen_resolution_and_zooms_to_full_resolution():
    """Level of detail (issue 13, item 1: a 1939^2 image pushed whole closed the websocket):
    the browser gets at most 1024 pixels a side, whatever the image; a zoom, by the
    user (Bokeh's RangesUpdate) or by a row click, sends the pixels in view at full
    resolution, exactly the image's values. Mutations: the strided view kept at every
    zoom, or the window off by its origin, each fails it."""
    from bokeh.events import RangesUpdate

    rng = np.random.default_rng(0)
    img = rng.normal(size=(4096, 4096)).astype(np.float32)
    dash = DetectDashboard(image=img)
    src = dash.view.source
    shown = src.data["image"][0]
    assert max(shown.shape) <= 1024 and src.data["step"][0] == 4
    assert src.data["dw"][0] == 4096 and src.data["dh"][0] == 4096
    np.testing.assert_array_equal(shown, img[::4, ::4])
    # the user zooms onto a 200 x 100 pixel box: its pixels (and half a view around) arrive
    dash.figure._trigger_event(RangesUpdate(dash.figure, x0=1000.0, x1=1200.0, y0=2000.0,
                                            y1=2100.0))
    d = src.data
    x0, y0, step = int(d["x"][0] + 0.5), int(d["y"][0] + 0.5), d["step"][0]
    win = d["image"][0]
    assert step == 1 and x0 <= 1000 and y0 <= 2000
    assert x0 + win.shape[1] >= 1200 and y0 + win.shape[0] >= 2100
    np.testing.assert_array_equal(win, img[y0:y0 + win.shape[0], x0:x0 + win.shape[1]])
    # back out: the whole image at screen resolution again
    dash.figure._trigger_event(RangesUpdate(dash.figure, x0=-0.5, x1=4095.5, y0=-0.5,
                                            y1=4095.5))
    assert max(src.data["image"][0].shape) <= 1024


def test_a_row_click_sends_the_full_resolution_pixels_around_its_source():
    """On a 2048^2 image (shown at step 2), clicking a source's row zooms onto it and
    sends the pixels around it at step 1. Mutation: `_zoom` without `show_window`."""
    n = 2048
    img = np.random.default_rng(2).normal(size=(n, n)).astype(np.float32)
    yy, xx = np.mgrid[0:64, 0:64]
    for x, y in ((300, 1700), (1500, 400), (1000, 1000)):
        img[y - 32:y + 32, x - 32:x + 32] += 80 * np.exp(
            -((xx - 32) ** 2 + (yy - 32) ** 2) / (2 * 1.5**2))
    dash = DetectDashboard(image=img)
    assert dash.view.source.data["step"][0] == 2
    assert dash.run(sync=True).exception() is None
    cat = dash.result.catalogue
    i = int(np.argmax(cat["snr"]))
    dash.table.selection = [list(dash._rows).index(i)]
    d = dash.view.source.data
    x0, y0 = d["x"][0] + 0.5, d["y"][0] + 0.5
    win = d["image"][0]
    assert d["step"][0] == 1
    x, y = cat["x"][i].value, cat["y"][i].value
    assert x0 <= x < x0 + win.shape[1] and y0 <= y < y0 + win.shape[0]
