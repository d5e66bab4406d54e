"""'Save to my archive' on a dashboard's result (issue 13, item 11)."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import panel as pn
import pytest
from astropy.table import QTable

from vanotebook.archive import personal_archive
from vanotebook.dashboards import (
    DetectDashboard,
    MosaicDashboard,
    SEDDashboard,
    SOMDashboard,
    XmatchDashboard,
)


def _save_button(layout) -> tuple[pn.widgets.Button, pn.pane.Str]:
    row = next(r for r in layout.select(pn.Row)
               if any(getattr(o, "label", "") == "Save to my archive" for o in r.objects))
    return row.objects[0], row.objects[1]


@pytest.fixture
def my_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("VANOTEBOOK_ARCHIVE", str(tmp_path / "mine"))
    return tmp_path / "mine"


def test_detections_are_saved_to_my_archive_under_a_new_name(sky, my_archive):
    """The catalogue goes into the user's own archive (rows and positions as detected);
    a second save makes a second catalogue, never replacing the first; the message
    names the catalogue, not a server path. Disabled before a result. Mutation: the
    name not made unique (the second save then fails) fails it."""
    dash = DetectDashboard(sky=sky)
    button, said = _save_button(dash._layout())
    assert button.disabled
    assert dash.run(sync=True).exception() is None
    assert not button.disabled
    button.clicks += 1
    assert said.object.startswith("saved catalogue 'detections_radio_tile_0'"), said.object
    assert str(my_archive) not in said.object
    button.clicks += 1
    assert "detections_radio_tile_0_2" in said.object, said.object
    arc = personal_archive()
    names = sorted(str(n) for n in arc.catalogues()["name"])
    assert names == ["detections_radio_tile_0", "detections_radio_tile_0_2"]
    got = arc.catalogue(names[0]).to_dask().compute()
    cat = dash.result.catalogue
    assert len(got) == len(cat)
    np.testing.assert_allclose(np.sort(np.asarray(got["ra"], float)),
                               np.sort(cat["ra"].to_value("deg")), rtol=0, atol=1e-9)


def test_mosaic_is_saved_to_my_archive(sky, my_archive):
    dash = MosaicDashboard(sky, source="radio")
    button, said = _save_button(dash._layout())
    assert button.disabled
    dash.start().result(timeout=300)
    assert dash.result is not None, dash.status
    button.clicks += 1
    ny, nx = dash.result["mosaic"].shape
    assert said.object == f"saved the {ny} x {nx} mosaic of radio in your archive"
    images = personal_archive().images()
    assert len(images) == 1
    button.clicks += 1  # the same image again: kept once
    assert "(already there)" in said.object and len(personal_archive().images()) == 1


def _saved_twice(dash, layout, run, base: str, what: str) -> tuple[list[str], str]:
    """Save button disabled before ``run()`` and while running; two saves, two names
    (``base``, ``base_2``), each message naming its catalogue, never a path.
    Returns the names in the archive and the last message."""
    button, said = _save_button(layout)
    assert button.disabled
    run()
    assert not button.disabled, dash.status
    dash.running = True
    assert button.disabled
    dash.running = False
    assert not button.disabled
    button.clicks += 1
    assert said.object.startswith(f"saved catalogue {base!r} ("), said.object
    assert said.object.endswith(f" {what}) in your archive"), said.object
    button.clicks += 1
    assert said.object.startswith(f"saved catalogue '{base}_2' ("), said.object
    arc = personal_archive()
    assert str(arc.path) not in said.object and "/" not in said.object
    names = sorted(str(n) for n in arc.catalogues()["name"])
    assert names == [base, f"{base}_2"]
    return names, said.object


def _read_back(name: str, by: list[str]):
    """The rows of catalogue ``name`` of the personal archive, in ``by`` order, and its units."""
    cat = personal_archive().catalogue(name)
    return cat.to_dask().compute().sort_values(by).reset_index(drop=True), cat.units


def test_crossmatch_pairs_are_saved_to_my_archive(my_archive):
    """Every pair, with both sides' columns, its separation and probability (units kept),
    goes into the user's archive; a second save makes a second catalogue; the
    description says how the match was made. Mutations: the name not made unique (the
    second save fails), the probability column dropped, the separation's unit dropped
    each fail it."""
    dash = XmatchDashboard(demo_rows=1500, radius_arcsec=1.5)
    names, said = _saved_twice(dash, dash._layout(),
                               lambda: dash.start().result(timeout=120),
                               "xmatch_demo_pair", "pairs")
    pairs = dash.result
    assert f"({len(pairs)} pairs)" in said and len(pairs) > 300
    keys = ["source_id_left", "source_id_right"]
    order = np.lexsort([np.asarray(pairs[k]) for k in reversed(keys)])
    for name in names:
        got, units = _read_back(name, keys)
        assert list(got.columns) == pairs.colnames
        for col in pairs.colnames:
            np.testing.assert_array_equal(np.asarray(got[col]),
                                          np.asarray(pairs[col])[order], err_msg=col)
        assert units["separation"] == "arcsec" and units["ra_left"] == "deg"
    row = personal_archive().catalogues()[0]
    assert "radius_arcsec=1.5" in row["description"], row["description"]
    assert "vanotebook.xmatch.crossmatch" in row["description"]


def test_no_pairs_nothing_to_save(my_archive):
    from astropy.table import Table

    dash = XmatchDashboard(Table({"ra": [1.0], "dec": [2.0]}),
                           Table({"ra": [50.0], "dec": [-2.0]}))
    button, _ = _save_button(dash._layout())
    dash.start().result(timeout=60)
    assert dash.result is not None and len(dash.result) == 0
    assert button.disabled


def test_som_spectra_table_is_saved_to_my_archive(my_archive, tmp_path):
    """Each spectrum of a table with positions goes in with its best-matching unit, grid
    position, distance to the unit's prototype and the unit's label, beside its own
    columns (units kept). Mutations: the name not made unique, the BMUs not put back in
    input order, the unit label dropped each fail it."""
    from vanotebook.sky import make_spectra

    s = make_spectra(600, seed=2)
    table = s.to_table()
    rng = np.random.default_rng(5)
    table["ra"] = rng.uniform(150.0, 151.0, len(table)) * u.deg
    table["dec"] = rng.uniform(2.0, 3.0, len(table)) * u.deg
    path = tmp_path / "spectra.ecsv"
    table.write(path)
    dash = SOMDashboard(source="table", table_path=str(path), columns="flux", rows=4, cols=5,
                        n_epochs=3, radius0=2.0, seed=1)
    names, said = _saved_twice(dash, dash._layout(), lambda: dash.train_map(blocking=True),
                               "som_spectra_4x5", "spectra")
    assert "(600 spectra)" in said
    som = dash.som
    bmu = som.bmu(s.flux)  # the public API's answer
    protos = som.prototypes.reshape(som.n_units, -1)
    distance = np.linalg.norm(s.flux.astype(np.float64) - protos[bmu], axis=1)
    for name in names:
        got, units = _read_back(name, ["input_row"])
        np.testing.assert_array_equal(got["input_row"], np.arange(600))
        np.testing.assert_array_equal(got["source_id"], table["source_id"])
        np.testing.assert_array_equal(got["ra"], table["ra"].value)
        np.testing.assert_array_equal(got["label"].astype(str), table["label"])
        np.testing.assert_array_equal(got["bmu"], bmu)
        np.testing.assert_array_equal(got["bmu_row"] * 5 + got["bmu_col"], bmu)
        np.testing.assert_allclose(got["bmu_distance"], distance, rtol=1e-4)
        np.testing.assert_array_equal(got["unit_label"].astype(str),
                                      som.labels.labels.ravel()[bmu])
        assert units["teff"] == "K" and "flux" not in got.columns
    assert "vanotebook.som.fit" in personal_archive().catalogues()[0]["description"]


def test_som_demo_spectra_have_no_positions_so_are_not_saved(my_archive):
    """The archive keeps catalogues by sky position; the demo spectra have none: the save
    says so (and what to do), and nothing is written, no fake positions."""
    dash = SOMDashboard(n_spectra=200, rows=2, cols=2, n_epochs=1)
    button, said = _save_button(dash._layout())
    dash.train_map(blocking=True)
    button.clicks += 1
    assert said.object.startswith("error: not saved: the archive keeps catalogues by sky "
                                  "position"), said.object
    assert "GUASOM" in said.object
    assert len(personal_archive().catalogues()) == 0


def _seds(n: int = 12, seed: int = 0) -> QTable:
    """Greybody SEDs of ``n`` sources in the Hi-GAL bands (one upper limit)."""
    from vanotebook.sky._higal import HIGAL_BANDS, greybody_flux

    rng = np.random.default_rng(seed)
    waves = {k: v.wavelength for k, v in HIGAL_BANDS.items()}
    flux = greybody_flux(rng.uniform(12, 30, n) * u.K, 10 ** rng.uniform(1, 2, n) * u.Msun,
                         np.full(n, 2.0), u.Quantity(list(waves.values())),
                         distance=2 * u.kpc).to_value(u.Jy)
    table = QTable({"ra": rng.uniform(0, 1, n) * u.deg, "dec": rng.uniform(0, 1, n) * u.deg})
    for j, band in enumerate(waves):
        table[f"flux_{band}"] = flux[:, j] * (1 + 0.05 * rng.standard_normal(n)) * u.Jy
        table[f"flux_err_{band}"] = 0.05 * flux[:, j] * u.Jy
        table[f"upper_{band}"] = np.zeros(n, bool)
    table["upper_pacs70"][0] = True
    table.meta = {"bands": list(waves),
                  "wavelength_um": {k: float(v.value) for k, v in waves.items()}}
    return table


def test_sed_fits_are_saved_to_my_archive(my_archive):
    """Per source: its position and photometry, then the fit (temperature, mass, beta,
    luminosity, their errors, distance, quality), units kept, the covariance as six
    columns. Mutations: the name not made unique, the covariance columns dropped, the
    units stripped each fail it."""
    seds = _seds()
    dash = SEDDashboard(seds, distance=2 * u.kpc)
    names, said = _saved_twice(dash, dash._layout(), lambda: dash.start().result(timeout=120),
                               "greybody_thin", "sources")
    assert "(12 sources)" in said
    fit = dash.fit
    for name in names:
        got, units = _read_back(name, ["sed_row"])
        np.testing.assert_array_equal(got["sed_row"], np.arange(12))
        np.testing.assert_array_equal(got["ra"], seds["ra"].value)
        np.testing.assert_array_equal(got["flux_spire250"], seds["flux_spire250"].value)
        for col in fit.colnames:
            if col != "covariance":
                np.testing.assert_array_equal(got[col], np.asarray(getattr(
                    fit[col], "value", fit[col])), err_msg=col)
        cov = np.asarray(fit["covariance"])
        np.testing.assert_array_equal(got["cov_lnT_lnM"], cov[:, 0, 1])
        np.testing.assert_array_equal(got["cov_beta_beta"], cov[:, 2, 2])
        assert (units["temperature"], units["mass"], units["luminosity"],
                units["temperature_err"]) == ("K", "solMass", "solLum", "K")
    assert "vanotebook.sed.fit_greybody" in personal_archive().catalogues()[0]["description"]

