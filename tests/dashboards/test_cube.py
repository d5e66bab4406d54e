"""CubeDashboard state: compute moments, move the cursor, draw a PV line, check what it shows."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import panel as pn

from vanotebook.cube import moments, pv_slice
from vanotebook.dashboards._cube import CubeDashboard
from vanotebook.sky._cubes import demo_cubes


def test_moments_spectrum_and_pv_follow_the_public_api():
    dash = CubeDashboard(demo="co", mask_sigma=4.0)
    assert dash.status == "ready" and not dash.running
    dash.run(dash)  # what the "Compute moments" button does
    dash.future.result(timeout=300)
    assert not dash.running and "maps" in dash.status
    cube = demo_cubes(0)["co"]
    ref = moments(cube.hdu, ("moment0", "moment1"), mask=4.0 * cube.noise * u.K)
    np.testing.assert_allclose(dash.maps["moment1"].values, ref["moment1"].values,
                               equal_nan=True)
    # the cursor moves to the brightest cloud: its spectrum has a line there
    y, x = np.unravel_index(np.nanargmax(cube.truth["peak"]), cube.truth["peak"].shape)
    dash.cursor = (float(x), float(y))
    assert dash.n_lines >= 1
    v_truth = cube.truth["moment1"][y, x]
    assert np.any(np.abs(dash.lines["v_peak"].to_value(u.km / u.s) - v_truth) < 3.0)
    # a new PV line is a new slice, equal to pv_slice's
    dash.pv_line = [(5.0, 5.0), (80.0, 60.0)]
    dash.pv_width = 3.0
    np.testing.assert_allclose(dash.pv.values,
                               pv_slice(cube.hdu, [(5.0, 5.0), (80.0, 60.0)], width=3.0).values,
                               equal_nan=True)
    dash.moment = "peak"
    layout = dash.__panel__()
    assert isinstance(layout, pn.Row)
    assert dash._map_pane.object is not None and dash._pv_pane.object is not None


def test_switching_demo_cube_and_errors_shown():
    dash = CubeDashboard(demo="co")
    dash.demo = "hi"
    assert dash.cube.wcs.wcs.ctype[2].startswith("FREQ") and dash.maps is None
    dash.pv_line = [(1.0, 1.0), (1.2, 1.2)]  # shorter than a step: shown, not raised
    assert "PV" in dash.status
