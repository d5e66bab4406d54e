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
    # the reliable ellipses sit on true sources (truth from the synthetic sky)
    truth = sky.observe("radio").truth
    wcs = WCS(sky.images("radio")[0][0].header)
    tx, ty = wcs.celestial.world_to_pixel(SkyCoord(truth["ra"], truth["dec"], unit="deg"))
    good = glyphs["score"] > 0.5
    d = np.hypot(glyphs["x"][good, None] - tx[None], glyphs["y"][good, None] - ty[None])
    assert np.mean(d.min(axis=1) < 3.0) > 0.9


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
    ran.table.selection = []
    assert ran.selected is None
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
