"""moments against spectral-cube's SpectralCube.moment on the same FITS cubes, and the truth."""

from __future__ import annotations

import os
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from vanotebook.cube import from_fits, moments, to_fits

KMS = u.km / u.s
SC_DATA = os.path.join(os.path.dirname(__import__("spectral_cube").__file__), "tests", "data")


def _sc(hdu_or_path, convention="radio"):
    from spectral_cube import SpectralCube

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cube = SpectralCube.read(hdu_or_path)
        return cube.with_spectral_unit(KMS, velocity_convention=convention)


def _sc_moment(cube, order):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cube.moment(order=order, axis=0)


def _compare(ds, cube, orders=(0, 1, 2), rtol=1e-6, atol=1e-9):
    for k in orders:
        ref = _sc_moment(cube, k)
        ours = ds[f"moment{k}"]
        assert u.Unit(ours.attrs["unit"]) == ref.unit, (k, ours.attrs["unit"], ref.unit)
        np.testing.assert_allclose(ours.values, ref.value, rtol=rtol, atol=atol,
                                   equal_nan=True, err_msg=f"moment{k}")


@pytest.mark.parametrize("kind,rotate,stokes", [("vrad", 0.0, False), ("freq", 0.0, False),
                                                ("vrad", 30.0, False), ("vrad", 0.0, True),
                                                ("freq", 25.0, True)])
def test_moments_equal_spectral_cube(M, kind, rotate, stokes, tmp_path):
    hdu = M.hdu(kind, rotate=rotate, stokes=stokes)
    path = tmp_path / "cube.fits"
    hdu.writeto(path)
    ds = moments(str(path))  # read lazily
    _compare(ds, _sc(str(path)))
    assert ds["moment0"].attrs["unit"] == "K km / s"
    assert u.Unit(ds["moment2"].attrs["unit"]) == KMS**2
    # the maps carry the sky WCS of the cube and the provenance cards
    header = fits.Header.fromstring(ds["moment1"].attrs["header"])
    assert WCS(header).naxis == 2 and u.Unit(header["BUNIT"]) == KMS
    assert header["PROVACT"] == "vanotebook.cube.moments"
    np.testing.assert_allclose(WCS(header).wcs.get_pc(), WCS(hdu.header).celestial.wcs.get_pc())


def test_moments_on_a_velocity_slab_equal_spectral_slab(M, tmp_path):
    hdu = M.hdu("freq")
    cube = _sc(hdu)
    lo, hi = -4.0 * KMS, 12.5 * KMS  # channel centres
    ds = moments(hdu, velocity=(lo, hi))
    _compare(ds, cube.spectral_slab(lo, hi))
    assert ds.attrs["velocity"] == pytest.approx([-4.0, 12.5])


def test_optical_and_relativistic_conventions(M, tmp_path):
    hdu = M.hdu("freq", nan=False)
    for conv in ("optical", "relativistic"):
        ds = moments(hdu, (1, 2), convention=conv)
        cube = _sc(hdu, conv)
        # spectral-cube weights by its constant |CDELT| at the reference channel; we by each
        # channel's own width; the weights differ by < 1e-4 across the band
        _compare(ds, cube, orders=(1,), rtol=2e-4)
        _compare(ds, cube, orders=(2,), rtol=2e-4, atol=5e-3)
        # and the velocities themselves are the convention's
        v = cube.spectral_axis.to_value(KMS)
        np.testing.assert_allclose(ds["moment1"].values[5, 5],
                                   _sc_moment(cube, 1).value[5, 5], rtol=2e-4)
        assert abs(v[0] - v[-1]) > 0


def test_spectral_cube_test_data_example_cube(M):
    path = os.path.join(SC_DATA, "example_cube.fits")  # 4-D, VRAD in m/s, degenerate 4th axis
    ds = moments(path)
    _compare(ds, _sc(path), rtol=1e-5, atol=1e-8)


def test_moment1_recovers_the_injected_velocity_field(M):
    hdu = M.hdu("vrad", nv=120, ny=16, nx=30, nan=False)
    truth = M.truth_velocity(16, 30)
    masked = moments(hdu, (1,), mask=0.1 * u.K)  # noise channels far from the line bias m1
    err = masked["moment1"].values - truth
    assert np.max(np.abs(err)) < 0.25 and abs(np.mean(err)) < 0.02  # noise, no bias
    hdu = M.hdu("vrad", nv=120, ny=16, nx=30, nan=False, noise=1e-4)
    ds = moments(hdu, (0, 1, 2, "peak", "velocity_of_peak", "linewidth_sigma"))
    np.testing.assert_allclose(ds["moment1"].values, truth, atol=0.01)
    np.testing.assert_allclose(ds["velocity_of_peak"].values, truth, atol=0.51)
    np.testing.assert_allclose(ds["linewidth_sigma"].values, M.SIGMA, rtol=0.03)
    amp = ds["peak"].values
    np.testing.assert_allclose(ds["moment0"].values, amp * M.SIGMA * np.sqrt(2 * np.pi),
                               rtol=0.05)


def test_casa_moments_by_number_and_name(M):
    hdu = M.hdu("vrad")
    ds = moments(hdu, (-1, 3, 5, 6, 7, 8, 9, 10, 11))
    data = hdu.data.astype(float)
    v = M.velocities(data.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(ds["mean"].values, np.nanmean(data, 0), rtol=1e-9,
                                   equal_nan=True)
        np.testing.assert_allclose(ds["median"].values, np.nanmedian(data, 0), rtol=1e-9,
                                   equal_nan=True)
        np.testing.assert_allclose(ds["std"].values, np.nanstd(data, 0, ddof=1), rtol=1e-9,
                                   equal_nan=True)
        np.testing.assert_allclose(ds["rms"].values, np.sqrt(np.nanmean(data**2, 0)),
                                   rtol=1e-9, equal_nan=True)
        np.testing.assert_allclose(ds["peak"].values, np.nanmax(data, 0), equal_nan=True)
        np.testing.assert_allclose(ds["min"].values, np.nanmin(data, 0), equal_nan=True)
        np.testing.assert_allclose(ds["abs_mean_deviation"].values,
                                   np.nanmean(np.abs(data - np.nanmean(data, 0)), 0),
                                   rtol=1e-9, equal_nan=True)
    good = np.isfinite(data).any(axis=0)
    np.testing.assert_array_equal(ds["velocity_of_peak"].values[good],
                                  v[np.nanargmax(data[:, good], axis=0)])
    assert ds["peak"].attrs["unit"] == "K" and ds["velocity_of_min"].attrs["unit"] == "km / s"


def test_threshold_and_auto_masks_equal_spectral_cube_masked(M):
    hdu = M.hdu("vrad")
    cube = _sc(hdu)
    ds = moments(hdu, mask=0.1 * u.K)
    _compare(ds, cube.with_mask(cube > 0.1 * u.K))
    auto = moments(hdu, (0, 1), mask="auto")
    # the auto mask drops the noise: moment 1 is the line's centre even far from the peak
    truth = M.truth_velocity(24, 20)
    np.testing.assert_allclose(auto["moment1"].values[1:], truth[1:], atol=0.2)


def test_fits_round_trip(M, tmp_path):
    ds = moments(M.hdu("vrad"), (0, 1), output=tmp_path / "m.fits")
    back = from_fits(tmp_path / "m.fits")
    np.testing.assert_allclose(back["moment1"].values, ds["moment1"].values, rtol=1e-6,
                               equal_nan=True)
    assert back.attrs["provenance"]["activity"] == "vanotebook.cube.moments"
    with fits.open(tmp_path / "m.fits") as hdul:
        assert hdul[0].header["PROVACT"] == "vanotebook.cube.moments"
    assert len(to_fits(ds)) == 3


def test_rerun_remakes_the_same_bytes(M, tmp_path):
    from vanotebook.provenance import rerun, sha256_file

    path = tmp_path / "cube.fits"
    M.hdu("freq").writeto(path)
    moments(str(path), (0, 1), velocity=(-5 * KMS, 10 * KMS), mask="auto",
            output=tmp_path / "a.fits")
    rerun(tmp_path / "a.fits", tmp_path / "b.fits")
    assert sha256_file(tmp_path / "a.fits") == sha256_file(tmp_path / "b.fits")


def test_mosaic_cube_dataset_is_a_cube(M, sky):
    from vanotebook.mosaic import mosaic_cube

    tile = sky.images("radio")[0][0]
    h = tile.header.copy()
    nv = 20
    v = -10 + 1.0 * np.arange(nv)
    data = tile.data[None] * np.exp(-0.5 * ((v[:, None, None] - 2.0) / 3.0) ** 2)
    h["NAXIS"], h["NAXIS3"] = 3, nv
    h["CTYPE3"], h["CUNIT3"], h["CRVAL3"], h["CDELT3"], h["CRPIX3"] = "VRAD", "km/s", -10.0, \
        1.0, 1.0
    ds = mosaic_cube([fits.PrimaryHDU(data.astype(np.float32), h)],
                     velocity=(-10 * KMS, 9 * KMS))
    mom = moments(ds, (0, 1))
    ref = moments((ds["mosaic"].values, WCS(fits.Header.fromstring(ds.attrs["header"]))),
                  (0, 1))
    np.testing.assert_allclose(mom["moment1"].values, ref["moment1"].values, equal_nan=True)
    bright = mom["moment0"].values > 0.5 * np.nanmax(mom["moment0"].values)
    p = np.exp(-0.5 * ((v - 2.0) / 3.0) ** 2)
    np.testing.assert_allclose(mom["moment1"].values[bright], np.sum(v * p) / np.sum(p),
                               atol=1e-3)


def test_spectral_axis_first_in_fits_order_equals_spectral_cube(M):
    hdu = M.hdu("vrad")
    h = hdu.header
    # FITS axes (VRAD, RA, DEC): numpy (dec, ra, v)
    data = np.ascontiguousarray(np.transpose(hdu.data, (1, 2, 0)))
    swapped = fits.Header()
    for new, old in ((1, 3), (2, 1), (3, 2)):
        for key in ("CTYPE", "CUNIT", "CRVAL", "CDELT", "CRPIX"):
            swapped[f"{key}{new}"] = h[f"{key}{old}"]
    for key in ("BUNIT", "SPECSYS"):
        swapped[key] = h[key]
    other = fits.PrimaryHDU(data, swapped)
    ds = moments(other)
    np.testing.assert_allclose(ds["moment1"].values, moments(hdu)["moment1"].values,
                               equal_nan=True)
    _compare(ds, _sc(other))
