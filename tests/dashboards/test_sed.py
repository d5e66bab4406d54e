"""SEDDashboard state: set params, trigger the fit, pick sources, download."""

from __future__ import annotations

import contextlib

import astropy.units as u
import numpy as np
import panel as pn
import pytest
from astropy.table import QTable, Table

from vanotebook.dashboards._sed import SEDDashboard
from vanotebook.sed import fit_greybody, sed_arrays
from vanotebook.sky._higal import HIGAL_BANDS, greybody_flux


def _seds(n=40, seed=0):
    rng = np.random.default_rng(seed)
    t, m, b = rng.uniform(12, 30, n), 10 ** rng.uniform(1, 2, n), np.full(n, 2.0)
    waves = {k: v.wavelength for k, v in HIGAL_BANDS.items()}
    s = greybody_flux(t * u.K, m * u.Msun, b, u.Quantity(list(waves.values())),
                      distance=2 * u.kpc).to_value(u.Jy)
    table = QTable({"ra": rng.uniform(0, 1, n) * u.deg, "dec": rng.uniform(0, 1, n) * u.deg})
    err = 0.05 * s
    obs = s + err * rng.standard_normal(s.shape)
    for j, k in enumerate(waves):
        table[f"flux_{k}"] = obs[:, j] * u.Jy
        table[f"flux_err_{k}"] = err[:, j] * u.Jy
        table[f"upper_{k}"] = np.zeros(n, bool)
    table["upper_pacs70"][0] = True  # one upper limit
    table.meta = {"bands": list(waves), "wavelength_um": {k: float(v.value)
                                                          for k, v in waves.items()}}
    return table, t


def test_fit_calls_the_public_api_and_updates_state():
    seds, _ = _seds()
    dash = SEDDashboard(seds, distance=2 * u.kpc, free_beta=False, beta=2.0)
    assert dash.status == "ready" and dash.n_sources == 40
    dash.run(dash)  # what the button does
    dash.future.result(timeout=120)
    assert not dash.running and dash.status.startswith("fitted 40")
    flux, err, wl, up = sed_arrays(seds)
    ref = fit_greybody(flux, err, wl, distance=2 * u.kpc, beta=2.0, upper_limit=up)
    np.testing.assert_allclose(dash.fit["temperature"].value, ref["temperature"].value)
    diag = dash.diagram_data()
    np.testing.assert_allclose(diag["mass"], ref["mass"].value)
    assert len(dash.table.value) == 40


def test_picking_a_source_shows_its_sed_and_curve():
    seds, _ = _seds()
    dash = SEDDashboard(seds, distance=2 * u.kpc)
    dash.__panel__()
    dash.start().result(timeout=120)
    figs = dash.figures()
    dash.picked = 0
    d = dash.sed_data()
    assert d["upper"][0] and not d["upper"][1:].any()
    assert len(figs["lim"].data["x"]) == 1 and len(figs["det"].data["x"]) == 4
    assert np.all(np.asarray(figs["curve"].data["lo"]) <= np.asarray(figs["curve"].data["hi"]))
    dash.table.selection = [5]
    np.testing.assert_allclose(dash.sed_data()["flux"], sed_arrays(seds)[0][5].value)
    assert dash.picked == 5
    dash._tapped([7])
    assert dash.picked == 7
    np.testing.assert_allclose(figs["det"].data["y"], sed_arrays(seds)[0][7].value)


def test_download_and_layout():
    seds, _ = _seds(10)
    dash = SEDDashboard(seds, distance=2 * u.kpc)
    assert dash.download().getvalue() == b""
    dash.start().result(timeout=120)
    back = Table.read(dash.download().getvalue().decode(), format="ascii.ecsv")
    np.testing.assert_allclose(back["temperature"], dash.fit["temperature"].value)
    assert "ra" in back.colnames
    layout = dash.__panel__()
    assert isinstance(layout, pn.Column) and list(layout.select(pn.widgets.Tabulator))
    assert list(layout.select(pn.widgets.FileDownload))


def test_errors_are_shown_not_raised():
    seds, _ = _seds(5)
    dash = SEDDashboard(seds, distance=2 * u.kpc, model="thick", size_arcsec=20.0)
    dash._options = lambda: {"distance": 2000.0}  # a distance without units
    dash.start()
    with contextlib.suppress(Exception):
        dash.future.result(timeout=60)
    assert dash.status.startswith("error: distance") and dash.fit is None and not dash.running


def test_pick_on_the_map():
    from vanotebook.sky._higal import higal_field

    field = higal_field(0, n_sources=6)
    dash = SEDDashboard(field.truth[["ra", "dec"]], distance=2 * u.kpc,
                        image=field.images["spire250"])
    seds, _ = _seds(6)
    seds["ra"], seds["dec"] = field.truth["ra"], field.truth["dec"]
    dash._seds = seds
    figs = dash.figures()
    md = dash.map_data()
    x, y = field.images["spire250"].header["NAXIS1"], field.images["spire250"].header["NAXIS2"]
    assert md["image"].shape == (y, x)
    assert np.all((md["x"] > 0) & (md["x"] < x) & (md["y"] > 0) & (md["y"] < y))
    dash._tapped([3])  # what a tap on the fourth marker does
    assert dash.picked == 3
    np.testing.assert_allclose(figs["det"].data["y"], sed_arrays(seds)[0][3].value)
    assert "map" in figs and len(figs["map_source"].data["x"]) == 6


@pytest.mark.slow
def test_demo_builds_its_seds_on_the_first_fit():
    dash = SEDDashboard()
    dash.start().result(timeout=300)
    assert dash.status == "fitted 25 of 25 sources" and dash.distance_pc == 2000.0
    assert "map" in dash.figures()
