"""pv_slice against pvextractor's extract_pv_slice on the same cubes, paths and widths."""

from __future__ import annotations

import contextlib
import io
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from vanotebook.cube import pv_slice

KMS = u.km / u.s


def _pvextractor(hdu, path, width=None, order=3, spacing=1.0):
    from pvextractor import Path, extract_pv_slice

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return extract_pv_slice(hdu, Path(path, width=width), order=order, spacing=spacing)


PATHS = [[(2.0, 3.0), (17.5, 20.0)], [(1.0, 12.0), (9.0, 4.0), (18.2, 14.7)]]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("width,order", [(None, 3), (None, 1), (None, 0), (1, 3), (3, 3),
                                         (4.5, 3)])
def test_pv_equals_pvextractor(M, path, width, order):
    hdu = M.hdu("vrad")
    ref = _pvextractor(hdu, path, width=width, order=order)
    pv = pv_slice(hdu, path, width=width, order=order)
    assert pv.dims == ("v", "offset") and pv.shape == ref.data.shape
    np.testing.assert_allclose(pv.values, ref.data, rtol=1e-6, atol=1e-7, equal_nan=True)
    header = fits.Header.fromstring(pv.attrs["header"])
    assert header["CTYPE1"] == "OFFSET" and header["CTYPE2"] == "VRAD"
    assert header["CDELT1"] == pytest.approx(ref.header["CDELT1"], rel=1e-9)
    assert u.Unit(header["CUNIT2"]) == KMS
    np.testing.assert_allclose(pv["velocity"].values, M.velocities(hdu.data.shape[0]))


def test_pv_on_frequency_rotated_and_stokes_cubes(M):
    path = PATHS[1]
    for kind, rotate, stokes in (("freq", 0.0, False), ("vrad", 35.0, False),
                                 ("freq", 20.0, True)):
        hdu = M.hdu(kind, rotate=rotate, stokes=stokes)
        ref = _pvextractor(hdu, path, width=2)
        pv = pv_slice(hdu, path, width=2)
        np.testing.assert_allclose(pv.values, ref.data, rtol=1e-6, atol=1e-7, equal_nan=True)
        np.testing.assert_allclose(pv["velocity"].values, M.velocities(pv.shape[0]),
                                   atol=1e-6)


def test_pv_sky_path_width_as_angle_and_velocity_range(M):
    hdu = M.hdu("vrad")
    wcs = WCS(hdu.header).celestial
    sky = wcs.pixel_to_world([2.0, 17.5], [3.0, 20.0])
    ref = _pvextractor(hdu, SkyCoord(sky), width=6 * u.arcsec)
    pv = pv_slice(hdu, sky, width=6 * u.arcsec)
    np.testing.assert_allclose(pv.values, ref.data, rtol=1e-6, atol=1e-7, equal_nan=True)
    part = pv_slice(hdu, sky, width=6 * u.arcsec, velocity=(-5 * KMS, 10 * KMS))
    keep = (M.velocities(hdu.data.shape[0]) >= -5) & (M.velocities(hdu.data.shape[0]) <= 10)
    np.testing.assert_allclose(part.values, ref.data[keep], rtol=1e-6, atol=1e-7)


def test_pv_peak_follows_the_velocity_gradient(M):
    hdu = M.hdu("vrad", nan=False)
    ny, nx = hdu.data.shape[1:]
    pv = pv_slice(hdu, [(0.0, 12.0), (nx - 1.0, 12.0)], width=1)
    v = pv["velocity"].values
    peak_v = v[np.nanargmax(pv.values, axis=0)]
    truth = M.truth_velocity(ny, nx)[12, :][: peak_v.size] + 0.5 * M.GRAD  # step centres
    assert np.max(np.abs(peak_v - truth)) <= 0.5 + 1e-9  # within one channel
