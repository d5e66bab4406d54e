"""XmatchDashboard state: set params, trigger the match, check what it shows."""

from __future__ import annotations

import contextlib

import astropy.units as u
import numpy as np
import panel as pn
from astropy.table import Table

from vanotebook.dashboards import XmatchDashboard
from vanotebook.xmatch import crossmatch


def test_run_matches_the_public_api_and_updates_state():
    dash = XmatchDashboard(demo_rows=2000, radius_arcsec=1.5)
    assert dash.status == "ready" and not dash.running
    dash.run(dash)  # what the "Match" button does
    dash.future.result(timeout=120)
    assert not dash.running
    left, right = dash.catalogues()
    ref = crossmatch(left, right, radius=1.5 * u.arcsec)
    assert dash.n_pairs == len(ref) > 500
    assert "pairs" in dash.status
    sky = dash.sky_data()
    assert sky["matched"].sum() == len(ref)
    data = dash.download().getvalue()
    back = Table.read(data.decode(), format="ascii.ecsv")
    np.testing.assert_array_equal(back["source_id_right"], ref["source_id_right"])
    assert isinstance(dash.__panel__(), pn.Row)


def test_changing_how_and_radius():
    dash = XmatchDashboard(demo_rows=2000, radius_arcsec=3.0, how="all")
    dash.start().result(timeout=120)
    n_all = dash.n_pairs
    dash.how = "nearest"
    dash.start().result(timeout=120)
    assert n_all >= dash.n_pairs > 0


def test_errors_are_shown_not_raised():
    left = Table({"ra": [1.0], "dec": [2.0]})
    dash = XmatchDashboard(left, Table({"x": [1.0]}))
    dash.start()
    with contextlib.suppress(Exception):
        dash.future.result(timeout=60)
    assert dash.status.startswith("error") and dash.result is None and not dash.running
