"""CubeDashboard state: moments, the cursor and its cuts, channels, a drawn PV line, the 3-D view.

Every number the dashboard shows is checked against the public API (or the
cube's own pixels) on the demo cubes; a Chromium test that it draws lives in
tests/dashboards/test_cube_browser.py.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
import panel as pn
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from vanotebook.cube import moments, parse_cube, pv_slice
from vanotebook.dashboards._cube import CubeDashboard
from vanotebook.sky._cubes import demo_cubes


def test_moments_spectrum_cuts_and_pv_follow_the_public_api():
    dash = CubeDashboard(demo="co", mask_sigma=4.0)
    assert dash.status == "ready" and not dash.running
    dash.run(dash)  # what the "Compute moments" button does
    dash.future.result(timeout=300)
    assert not dash.running and "maps" in dash.status and dash.percent == 100
    cube = demo_cubes(0)["co"]
    ref = moments(cube.hdu, ("moment0", "moment1"), mask=4.0 * cube.noise * u.K)
    np.testing.assert_allclose(dash.maps["moment1"].values, ref["moment1"].values,
                               equal_nan=True)
    # what the map figure shows is the chosen map
    dash.moment = "moment1"
    shown = dash.figures()["map"].renderers[0].data_source.data["image"][0]
    np.testing.assert_allclose(shown, ref["moment1"].values, equal_nan=True)
    assert "km / s" in dash.figures()["map"].title.text
    # a tap on the brightest cloud moves the cursor: its spectrum has a line there
    y, x = np.unravel_index(np.nanargmax(cube.truth["peak"]), cube.truth["peak"].shape)
    dash.tap_map(float(x), float(y))
    assert dash.cursor == (float(x), float(y)) and dash.n_lines >= 1
    v_truth = cube.truth["moment1"][y, x]
    assert np.any(np.abs(dash.lines["v_peak"].to_value(u.km / u.s) - v_truth) < 3.0)
    # RA-v and Dec-v are the cube's row and column through the cursor
    data = parse_cube(cube.hdu).data
    np.testing.assert_array_equal(dash.ra_v, data[:, y, :])
    np.testing.assert_array_equal(dash.dec_v, data[:, :, x])
    shown = dash.figures()["ra_v"].renderers[0].data_source.data["image"][0]
    v = dash.cube.velocity
    np.testing.assert_array_equal(shown, data[:, y, :] if v[0] < v[-1] else data[::-1, y, :])
    assert dash._spans["ra_v_pos"].location == x and dash._spans["dec_v_pos"].location == y
    # a tap outside the map moves nothing
    dash.tap_map(-40.0, 3.0)
    assert dash.cursor == (float(x), float(y))
    # a tap on the spectrum at the truth's velocity picks that channel in every view
    dash.tap_velocity(v_truth)
    k = int(np.argmin(np.abs(dash.cube.velocity - v_truth)))
    assert dash.channel == k
    for key in ("spectrum", "ra_v", "dec_v", "pv"):
        assert dash._spans[key].location == dash.cube.velocity[k]
    # a line drawn with the poly-draw tool is the PV path, equal to pv_slice's
    dash._src["pv_line"].data = {"xs": [[5.0, 80.0]], "ys": [[5.0, 60.0]]}
    assert dash.pv_line == [(5.0, 5.0), (80.0, 60.0)]
    dash.pv_width = 3.0
    np.testing.assert_allclose(dash.pv.values,
                               pv_slice(cube.hdu, [(5.0, 5.0), (80.0, 60.0)], width=3.0).values,
                               equal_nan=True)
    # the continuum is the demo sky's 250 um map on the cube's grid: the same sky
    cont = dash.continuum["mosaic"].values
    assert cont.shape == dash.maps["moment0"].shape and np.isfinite(cont).mean() > 0.9
    layout = dash.__panel__()
    assert isinstance(layout, pn.Column) and isinstance(layout[1], pn.Row)


def test_the_volume_is_the_cube_strided_in_x_y_v_order():
    dash = CubeDashboard(demo="co")
    vol = dash.volume_array()
    data = np.nan_to_num(np.asarray(parse_cube(demo_cubes(0)["co"].hdu).data), nan=0.0)
    nv, ny, nx = data.shape
    assert max(vol.shape) <= 96
    step = [int(np.ceil(n / 96)) for n in (nv, ny, nx)]
    np.testing.assert_array_equal(vol, data[::step[0], ::step[1], ::step[2]].transpose(2, 1, 0))
    assert dash._volume is None  # sent to the browser only when asked for
    dash.show_volume = True
    assert dash._volume.object.shape == vol.shape and dash._volume_box[0] is dash._volume


def test_switching_demo_cube_and_errors_shown():
    dash = CubeDashboard(demo="co")
    dash.demo = "hi"
    assert dash.cube.wcs.wcs.ctype[2].startswith("FREQ") and dash.maps is None
    dash.show_volume = True
    assert dash._volume.object.shape[2] <= 96
    dash.pv_line = [(1.0, 1.0), (1.2, 1.2)]  # shorter than a step: shown, not raised
    assert "PV" in dash.status


# -- the images are ImageViews: level of detail, read-out in each image's own frame ----------

@pytest.fixture(scope="module")
def big():
    """A 1300 x 1100 x 6 ICRS cube (wider than the 1024 px the browser may get), its
    velocity axis decreasing (drawn flipped), with its moments computed by the dashboard."""
    nv, ny, nx = 6, 1100, 1300
    w = WCS(naxis=3)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN", "VRAD"]
    w.wcs.cunit = ["deg", "deg", "km/s"]
    w.wcs.crval = [150.0, 2.2, 30.0]
    w.wcs.crpix = [600.0, 500.0, 1.0]
    w.wcs.cdelt = [-1 / 3600, 1.5 / 3600, -2.0]  # not square on the sky: x and y differ
    header = w.to_header()
    header["BUNIT"] = "K"
    yy, xx = np.mgrid[0:ny, 0:nx]
    rng = np.random.default_rng(1)
    data = (rng.normal(size=(nv, ny, nx)) + 0.01 * xx + 0.02 * yy).astype(np.float32)
    hdu = fits.PrimaryHDU(data, header)
    dash = CubeDashboard(hdu, mask_sigma=0.0)
    dash.start().result(timeout=300)
    assert dash.maps is not None, dash.status
    return dash, hdu


def test_a_large_moment_map_is_sent_strided_and_a_zoom_sends_full_resolution(big):
    """Level of detail (issue 13): the moment map of a 1300 x 1100 cube reaches the browser
    at step 2; a zoom (Bokeh's RangesUpdate) sends the pixels in view at step 1, exactly the
    map's values, and the continuum beside it (sharing its ranges) follows; another moment
    keeps the zoom. Mutations: the strided view kept at every zoom; the continuum not told;
    `update` resetting the view."""
    from bokeh.events import RangesUpdate

    dash, _ = big
    fig, view = dash.figures()["map"], dash.views["map"]
    m0 = dash.maps["moment0"].values
    d = view.source.data
    assert d["step"][0] == 2 and max(d["image"][0].shape) <= 1024
    assert d["dw"][0] == 1300 and d["dh"][0] == 1100
    np.testing.assert_array_equal(d["image"][0], m0[::2, ::2].astype(np.float32))
    assert dash.views["continuum"].source.data["step"][0] == 2
    fig._trigger_event(RangesUpdate(fig, x0=700.0, x1=800.0, y0=300.0, y1=380.0))
    for key in ("map", "continuum"):
        d = dash.views[key].source.data
        x0, y0, win = int(d["x"][0] + 0.5), int(d["y"][0] + 0.5), d["image"][0]
        assert d["step"][0] == 1 and x0 <= 700 and y0 <= 300
        assert x0 + win.shape[1] >= 800 and y0 + win.shape[0] >= 380
    d = view.source.data
    np.testing.assert_array_equal(d["image"][0], m0[y0:y0 + win.shape[0],
                                                    x0:x0 + win.shape[1]].astype(np.float32))
    dash.moment = "moment1"  # another map: the same pixels in view, its values
    d = view.source.data
    assert d["step"][0] == 1 and int(d["x"][0] + 0.5) == x0
    m1 = dash.maps["moment1"].values
    np.testing.assert_array_equal(d["image"][0], m1[y0:y0 + win.shape[0],
                                                    x0:x0 + win.shape[1]].astype(np.float32))
    fig._trigger_event(RangesUpdate(fig, x0=-0.5, x1=1299.5, y0=-0.5, y1=1099.5))
    assert view.source.data["step"][0] == 2
    dash.moment = "moment0"
    # a cut of 6 channels by 1300 pixels keeps all its channels (a step per axis), drawn with
    # velocity upwards although the cube's decreases
    d = dash.views["ra_v"].source.data
    assert d["step_x"][0] == 2 and d["step_y"][0] == 1
    y = round(dash.cursor[1])
    np.testing.assert_array_equal(d["image"][0], dash.cube.data[::-1, y, ::2])


def test_the_map_reads_out_ra_dec_from_the_moment_maps_wcs(big):
    """The read-out under the cursor on the moment map: the pixel's value with the
    moment's unit and its RA/Dec, astropy's `pixel_to_world` of the map's own WCS.
    Mutation: the read-out with the pixel axes swapped fails it."""
    from bokeh.events import MouseMove

    dash, _ = big
    fig = dash.figures()["map"]
    var = dash.maps["moment0"]
    w = WCS(fits.Header.fromstring(var.attrs["header"])).celestial
    for x, y in ((1000.3, 200.0), (120.0, 900.6)):
        fig._trigger_event(MouseMove(fig, x=x, y=y))
        text = dash.views["map"].readout
        sky = w.pixel_to_world(x, y)
        assert f"({sky.ra.deg:.5f}°, {sky.dec.deg:+.5f}°; ICRS)" in text, text
        assert sky.ra.to_string(u.hourangle, sep="hms", precision=2) in text
        value = var.values[int(np.floor(y + 0.5)), int(np.floor(x + 0.5))]
        assert f"value {value:.4g} {var.attrs['unit']}" in text
    assert "K km / s" in text
    fig._trigger_event(MouseMove(fig, x=-40.0, y=3.0))  # off the map: nothing
    assert dash.views["map"].readout == ""


def test_the_pv_slice_reads_out_offset_and_velocity_from_its_own_wcs(big):
    """The PV view is drawn in arcsec and km/s (velocity upwards); the read-out at the
    point drawn for PV pixel ``(i, j)`` gives that pixel's value and the offset and velocity
    of the PV slice's own WCS there (no RA/Dec). The RA-v cut reads out the cube's WCS
    through the cursor's row. Mutations: the figure's axes taken as pixels, or the read-out
    with its pixel axes swapped, each fails it."""
    from bokeh.events import MouseMove

    dash, hdu = big
    dash.pv_line = [(100.0, 100.0), (1200.0, 900.0)]
    pv = dash.pv
    fig, view = dash.figures()["pv"], dash.views["pv"]
    assert pv.shape[1] > 1024 and view.source.data["step_x"][0] == 2
    w = WCS(fits.Header.fromstring(pv.attrs["header"]))
    for i, j in ((700, 1), (33, 4)):
        x = float(pv["offset"].values[i]) * 3600  # the figure's coordinates of pixel (i, j)
        y = float(pv["velocity"].values[j])
        fig._trigger_event(MouseMove(fig, x=x, y=y))
        text = view.readout
        offset, velocity = w.pixel_to_world(i, j)
        assert f"offset {offset.to_value(u.arcsec):.4g}″" in text, text
        assert f"velocity {velocity.to_value(u.km / u.s):.6g} km/s" in text, text
        assert f"value {pv.values[j, i]:.4g} K" in text, text
        assert "RA" not in text
    # RA-v: pixel (i, channel j) of the cut is the cube's pixel (i, cursor y, j)
    fig, view = dash.figures()["ra_v"], dash.views["ra_v"]
    y = round(dash.cursor[1])
    i, j = 900, 4
    fig._trigger_event(MouseMove(fig, x=float(i), y=float(dash.cube.velocity[j])))
    sky, spec = WCS(hdu.header).pixel_to_world(i, y, j)
    text = view.readout
    assert f"RA {sky.ra.deg:.5f}°  Dec {sky.dec.deg:.5f}°" in text, text
    assert f"velocity {spec.to_value(u.km / u.s):.6g} km/s" in text, text
    assert f"value {hdu.data[j, y, i]:.4g} K" in text, text
