"""The demo sky's line cubes give the moment maps of their truth."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest

from vanotebook.cube import moments, parse_cube, pv_slice
from vanotebook.sky._cubes import co_cube, demo_cubes


@pytest.fixture(scope="module")
def cubes():
    return demo_cubes(0)


@pytest.mark.parametrize("name", ["co", "hi"])
def test_moments_recover_the_truth(cubes, name):
    c = cubes[name]
    ds = moments(c.hdu, (0, 1, 2, "peak"), mask=4 * c.noise * u.K)
    m0 = c.truth["moment0"]
    bright = m0 > 0.3 * np.nanmax(m0)
    assert bright.sum() > 100
    dv = float(np.median(parse_cube(c.hdu).width))
    err1 = np.abs(ds["moment1"].values - c.truth["moment1"])[bright]
    assert np.median(err1) < 0.1 * dv and np.max(err1) < 1.0 * dv
    np.testing.assert_allclose(np.median(ds["moment0"].values[bright] / m0[bright]), 1.0,
                               atol=0.05)
    sigma = np.sqrt(ds["moment2"].values[bright])
    np.testing.assert_allclose(np.median(sigma / np.sqrt(c.truth["moment2"][bright])), 1.0,
                               atol=0.1)


def test_the_hi_disk_rotates(cubes):
    c = cubes["hi"]
    assert parse_cube(c.hdu).wcs.wcs.ctype[2].startswith("FREQ")
    ny, nx = c.truth["moment1"].shape
    row = ny // 2
    pv = pv_slice(c.hdu, [(0.0, row), (nx - 1.0, row)], width=1)
    v_peak = pv["velocity"].values[np.nanargmax(np.nan_to_num(pv.values, nan=-1), axis=0)]
    truth = 0.5 * (c.truth["moment1"][row, :-1] + c.truth["moment1"][row, 1:])
    bright = 0.5 * (c.truth["peak"][row, :-1] + c.truth["peak"][row, 1:]) > 20 * c.noise
    assert bright.sum() > 20
    assert np.max(np.abs(v_peak - truth[: v_peak.size])[bright[: v_peak.size]]) <= 2 * 4.0
    assert np.ptp(truth[bright]) > 50  # a rotation curve: one side recedes, one approaches


def test_seeded():
    a, b, c = co_cube(3), co_cube(3), co_cube(4)
    assert np.array_equal(a.hdu.data, b.hdu.data)
    assert not np.array_equal(a.hdu.data, c.hdu.data)
    assert len(a.truth_hdul()) == 4


def test_demo_data_writes_the_cubes_and_their_truth(tmp_path):
    from astropy.io import fits

    from vanotebook.sky import write_demo_data

    out = tmp_path / "demo"
    write_demo_data(out, seed=2, size=0.3, surveys=["radio"], n_catalogue=500, n_spectra=200,
                    archive=False)
    for name in ("co", "hi"):
        ds = moments(str(out / "cubes" / f"{name}.fits"), (1,))
        with fits.open(out / "truth" / f"{name}_moments.fits") as hdul:
            truth = hdul["MOMENT1"].data
            peak = hdul["PEAK"].data
        assert ds["moment1"].shape == truth.shape
        bright = peak > 0.5 * np.nanmax(peak)
        dv = float(np.median(parse_cube(str(out / "cubes" / f"{name}.fits")).width))
        assert np.median(np.abs(ds["moment1"].values - truth)[bright]) < dv
