"""MosaicDashboard state: set params, trigger the run, check what it shows against the science."""

from __future__ import annotations

import io

import dask
import numpy as np
import panel as pn
import pytest
from astropy.io import fits

from vanotebook.dashboards import MosaicDashboard
from vanotebook.mosaic import from_fits, mosaic


@pytest.fixture(scope="module")
def radio_run(sky):
    dash = MosaicDashboard(sky, source="radio")
    assert dash.status == "ready" and not dash.running and dash.result is None
    dash.run(dash)  # what the "Run mosaic" button does
    dash.future.result(timeout=300)
    return dash


def test_run_matches_the_public_api(radio_run, sky):
    dash = radio_run
    assert not dash.running and dash.result is not None, dash.status
    tiles = sky.images("radio")
    ref = mosaic(tiles)
    np.testing.assert_array_equal(dash.result["mosaic"].values, ref["mosaic"].values)
    # what is drawn is the mosaic itself
    np.testing.assert_array_equal(dash.display_array(), dash.result["mosaic"].values)
    # one footprint per tile, each inside the mosaic
    boxes = dash.footprints()
    assert len(boxes) == len(tiles) == len(dash.result.attrs["tiles"])
    ny, nx = dash.result["mosaic"].shape
    for y0, y1, x0, x1 in boxes:
        assert 0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx
    assert f"{len(tiles)} tiles" in dash.status
    assert dash.result.attrs["background"]  # matched by default
    layout = dash.__panel__()
    assert isinstance(layout, pn.Column) and list(layout.select(pn.widgets.Tabulator))


def test_figure_reads_sky_positions_and_draws_footprints(radio_run):
    """The mosaic is an interactive image (`ImageView`: zoom, pan, level of detail):
    the read-out under the cursor gives the pixel's value and its RA/Dec from the
    mosaic's WCS (astropy's answer); the colour bar is labelled in data units at the
    stretch limits; one footprint box per tile, hidden on request."""
    from astropy.io import fits
    from astropy.wcs import WCS
    from bokeh.events import MouseMove

    dash = radio_run
    fig = dash.figure()
    data = dash.result["mosaic"].values
    ny, nx = data.shape
    x, y = nx / 3, ny / 4
    fig._trigger_event(MouseMove(fig, x=x, y=y))
    text = dash.view.readout
    w = WCS(fits.Header.fromstring(dash.result.attrs["header"])).celestial
    sky = w.pixel_to_world(x, y)
    assert f"{sky.ra.deg:.5f}°, {sky.dec.deg:+.5f}°; ICRS" in text, text
    assert f"value {data[int(np.floor(y + 0.5)), int(np.floor(x + 0.5))]:.4g}" in text
    lo, hi = dash.display_limits()
    labels = fig.right[-1].major_label_overrides
    assert labels[0.0] == f"{lo:.3g}" and labels[1.0] == f"{hi:.3g}"
    quads = dash._footprints.data_source.data
    assert len(quads["left"]) == len(dash.result.attrs["footprints"])
    assert dash._footprints.visible
    dash.show_footprints = False
    assert not dash._footprints.visible
    dash.show_footprints = True
    assert max(dash.view.shown.shape) <= 1024
    dash.view.palette = "Viridis256"  # the colour-map choice reaches the figure
    assert dash.view.mapper.palette[0] == "#440154"
    dash.view.palette = "Magma256"


def test_stretch_and_limits_change_only_the_display(radio_run):
    dash = radio_run
    before = dash.result["mosaic"].values.copy()
    data = dash.display_array()
    finite = np.isfinite(data)
    dash.percentiles = (5.0, 95.0)
    lo, hi = dash.display_limits()
    np.testing.assert_allclose((lo, hi), np.nanpercentile(data, (5.0, 95.0)))
    shown = {}
    for stretch in ("linear", "log", "sqrt", "asinh"):
        dash.stretch = stretch
        shown[stretch] = dash.display_image()
        assert np.nanmin(shown[stretch]) >= 0 and np.nanmax(shown[stretch]) <= 1
    lin = shown["linear"][finite]
    expect = np.clip((data[finite] - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(lin, expect, atol=1e-6)
    np.testing.assert_allclose(shown["sqrt"][finite], np.sqrt(expect), atol=2e-5)
    assert not np.allclose(shown["log"][finite], lin)
    np.testing.assert_array_equal(dash.result["mosaic"].values, before)
    np.testing.assert_array_equal(dash.display_array(), before)
    dash.stretch, dash.percentiles = "linear", (1.0, 99.5)


def test_fits_download_round_trips(radio_run):
    dash = radio_run
    back = from_fits(fits.open(io.BytesIO(dash.download().getvalue())))
    np.testing.assert_array_equal(back["mosaic"].values, dash.result["mosaic"].values)
    np.testing.assert_array_equal(back["coverage"].values, dash.result["coverage"].values)
    assert back.attrs["unit"] == fits.Header.fromstring(dash.result.attrs["header"])["BUNIT"]
    assert back.attrs["provenance"]


def test_grid_and_options_reach_the_service(sky):
    dash = MosaicDashboard(sky, source="fir250", grid="pixel scale", pixel_scale_arcsec=12.0,
                           background="none", combine="median", method="nearest")
    dash.start().result(timeout=300)
    ds = dash.result
    assert ds is not None, dash.status
    header = fits.Header.fromstring(ds.attrs["header"])
    assert abs(header["CDELT2"] * 3600 - 12.0) < 1e-6
    assert ds.attrs["background"] == {}
    ref = mosaic(sky.images("fir250"), wcs=header, combine="median", method="nearest",
                 match_background=False)
    np.testing.assert_array_equal(ds["mosaic"].values, ref["mosaic"].values)
    dash.figure()
    assert "(Galactic)" in dash.view.read(10.0, 10.0)  # a Galactic survey


def test_upload_fits_files(sky):
    tiles = sky.images("fir250")
    blobs = []
    for t in tiles:
        buf = io.BytesIO()
        t.writeto(buf)
        blobs.append(buf.getvalue())
    dash = MosaicDashboard(sky)
    assert dash.upload(blobs, [f"t{i}.fits" for i in range(len(blobs))])
    assert dash.source == "upload" and "uploaded 4" in dash.status
    dash.start().result(timeout=300)
    np.testing.assert_array_equal(dash.result["mosaic"].values, mosaic(tiles)["mosaic"].values)


def test_bad_upload_gives_a_readable_status(sky):
    dash = MosaicDashboard(sky)
    assert not dash.upload([b"this is not a FITS file"], ["notes.txt"])
    assert dash.status.startswith("error") and "'notes.txt'" in dash.status
    assert dash.source == "radio"  # nothing kept
    no_wcs = io.BytesIO()
    fits.PrimaryHDU(np.ones((20, 20), np.float32)).writeto(no_wcs)
    assert not dash.upload(no_wcs.getvalue(), "plain.fits")
    assert "'plain.fits'" in dash.status and "error" in dash.status


def test_run_errors_are_shown_not_raised(sky):
    dash = MosaicDashboard(sky, source="upload")  # nothing uploaded yet
    assert dash.start().result(timeout=60) is None
    assert dash.status.startswith("error") and "upload" in dash.status
    assert dash.result is None and not dash.running


def test_progress_bar_follows_the_blocks(sky):
    """The progress bar is fed by mosaic's per-block hook: it climbs to 100 during a run."""
    dash = MosaicDashboard(sky, source="radio", background="none")
    seen: list[int] = []
    dash.param.watch(lambda e: seen.append(e.new), "percent")
    with dask.config.set({"vanotebook.image-chunk": 128}):  # several blocks
        dash.start().result(timeout=300)
    assert dash.result is not None, dash.status
    assert len(seen) > 2 and 0 < seen[0] < 100 and seen[-1] == 100 and seen == sorted(seen)
    bar = list(dash.__panel__().select(pn.indicators.Progress))
    assert bar and bar[0].value == 100 and bar[0].max == 100
