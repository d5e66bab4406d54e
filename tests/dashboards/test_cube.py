"""CubeDashboard state: moments, the cursor and its cuts, channels, a drawn PV line, the 3-D view.

Every number the dashboard shows is checked against the public API (or the
cube's own pixels) on the demo cubes; a Chromium test that it draws lives in
tests/dashboards/test_cube_browser.py.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
import panel as pn

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
