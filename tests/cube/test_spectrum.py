"""spectrum over archive regions (cone, polygon, astropy-regions, MOC), its noise, and lines."""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from vanotebook.cube import channel_maps, find_lines, moments, spectrum

KMS = u.km / u.s


def _inside_cone(hdu, center: SkyCoord, radius):
    wcs = WCS(hdu.header).celestial
    ny, nx = hdu.data.shape[-2:]
    yy, xx = np.mgrid[0:ny, 0:nx]
    return wcs.pixel_to_world(xx, yy).separation(center) <= radius


def test_cone_spectrum_is_the_mean_of_the_pixels_inside(M):
    hdu = M.hdu("vrad", rotate=20.0)
    wcs = WCS(hdu.header).celestial
    c = wcs.pixel_to_world(8.3, 11.6)
    radius = 9 * u.arcsec
    inside = _inside_cone(hdu, c, radius)
    assert 40 < inside.sum() < 100
    sp = spectrum(hdu, (c.ra.deg, c.dec.deg, radius))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.nanmean(hdu.data.astype(float)[:, inside], axis=1)
    np.testing.assert_allclose(sp["flux"].value, ref, rtol=1e-6)
    assert sp["flux"].unit == u.K and sp["velocity"].unit == KMS
    cube = hdu.data.astype(float)
    np.testing.assert_array_equal(sp["npix"], np.isfinite(cube[:, inside]).sum(axis=1))
    total = spectrum(hdu, (c, radius), how="sum")
    np.testing.assert_allclose(total["flux"].value, np.nansum(cube[:, inside], axis=1),
                               rtol=1e-6)


def test_region_forms_agree(M):
    from regions import CircleSkyRegion, PolygonSkyRegion

    hdu = M.hdu("vrad")
    wcs = WCS(hdu.header).celestial
    c = wcs.pixel_to_world(10.0, 12.0)
    cone = spectrum(hdu, (c, 8 * u.arcsec))
    reg = spectrum(hdu, CircleSkyRegion(c, 8 * u.arcsec))
    np.testing.assert_allclose(reg["flux"].value, cone["flux"].value)
    corners = wcs.pixel_to_world([4.5, 14.5, 14.5, 4.5], [6.5, 6.5, 16.5, 16.5])
    poly = spectrum(hdu, PolygonSkyRegion(corners))
    ref = np.nanmean(hdu.data.astype(float)[:, 7:17, 5:15], axis=(1, 2))
    np.testing.assert_allclose(poly["flux"].value, ref, rtol=1e-6)
    verts = np.column_stack([corners.ra.deg, corners.dec.deg])
    np.testing.assert_allclose(spectrum(hdu, verts)["flux"].value, ref, rtol=1e-6)


def test_noise_per_channel_matches_the_scatter(M):
    rng = np.random.default_rng(3)
    hdu = M.hdu("vrad", ny=60, nx=60, nv=400, nan=False)
    sigma = np.linspace(0.05, 0.2, 400)  # noise rising across the band
    hdu.data = (sigma[:, None, None] * rng.standard_normal(hdu.data.shape)).astype(np.float32)
    del hdu.header["BMAJ"], hdu.header["BMIN"], hdu.header["BPA"]  # independent pixels
    wcs = WCS(hdu.header).celestial
    c = wcs.pixel_to_world(30, 30)
    sp = spectrum(hdu, (c, 20 * u.arcsec))
    np.testing.assert_allclose(sp["channel_noise"].value, sigma, rtol=0.12)
    z = sp["flux"].value / sp["noise"].value  # the spectrum in units of its own noise
    assert 0.9 < np.std(z) < 1.1


def test_find_lines_finds_the_injected_line(M):
    hdu = M.hdu("vrad", nan=False)
    wcs = WCS(hdu.header).celestial
    sp = spectrum(hdu, (wcs.pixel_to_world(10, 12), 6 * u.arcsec))
    lines = find_lines(sp, nsigma=5)
    assert len(lines) == 1
    truth = M.truth_velocity(24, 20)[12, 10]
    assert abs(lines["v_peak"][0].to_value(KMS) - truth) <= 0.5
    assert lines["vmin"][0] < truth * KMS < lines["vmax"][0]
    assert lines["snr"][0] > 5  # the line fills every pixel here, so the MAD noise is high
    empty = find_lines(sp[:10], nsigma=5)  # noise only
    assert len(empty) == 0 and "v_peak" in empty.colnames


def test_channel_maps_sum_to_moment0(M):
    hdu = M.hdu("vrad")
    maps = channel_maps(hdu, 8)
    assert maps["channel_map"].shape == (8, 24, 20)
    total = np.nansum(maps["channel_map"].values, axis=0)
    m0 = moments(hdu, (0,))["moment0"].values
    good = np.isfinite(m0)
    np.testing.assert_allclose(total[good], m0[good], rtol=1e-9, atol=1e-12)
    assert np.all(np.diff(maps["velocity"].values) > 0)
    by_width = channel_maps(hdu, width=5 * KMS, velocity=(-10 * KMS, 9.5 * KMS))
    assert by_width["channel_map"].shape[0] == 4
    with pytest.raises(ValueError, match="n"):
        channel_maps(hdu, 1000)


def test_find_lines_needs_min_channels():
    from astropy.table import QTable

    flux = np.zeros(40)
    flux[5] = 10.0  # a one-channel spike
    flux[20:24] = [4.0, 8.0, 9.0, 4.0]  # a four-channel line
    sp = QTable({"velocity": np.arange(40.0) * KMS, "flux": flux * u.K,
                 "noise": np.ones(40) * u.K})
    lines = find_lines(sp, nsigma=3, min_channels=2)
    assert len(lines) == 1 and lines["n_channels"][0] == 4
    assert lines["v_peak"][0] == 22 * KMS and lines["integral"][0] == 25 * u.K * KMS
    assert len(find_lines(sp, nsigma=3, min_channels=1)) == 2


def test_spectral_copy_gives_the_same_spectra_reading_few_chunks(M, tmp_path):
    from vanotebook.cube import parse_cube, spectral_copy

    hdu = M.hdu("freq", stokes=True)
    store = spectral_copy(hdu, tmp_path / "cube.zarr", side=8)
    copy = parse_cube(str(store))
    assert copy.data.chunks[0] == (hdu.data.shape[1],)  # every channel in each chunk
    np.testing.assert_allclose(copy.velocity, parse_cube(hdu).velocity, atol=1e-6)
    c = WCS(hdu.header).celestial.pixel_to_world(10, 12)
    np.testing.assert_allclose(spectrum(str(store), (c, 5 * u.arcsec))["flux"].value,
                               spectrum(hdu, (c, 5 * u.arcsec))["flux"].value, rtol=1e-12)
    np.testing.assert_allclose(moments(str(store))["moment1"].values,
                               moments(hdu)["moment1"].values, equal_nan=True)
    with pytest.raises(ValueError, match="path"):
        spectral_copy(hdu, store)
