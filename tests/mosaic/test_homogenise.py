"""Homogenised surveys give each source its true flux; cutouts; errors."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from vanotebook import VanotebookInputError
from vanotebook.mosaic import cutout, cutouts, homogenise
from vanotebook.units import Beam

SURVEYS = ("radio", "ir24", "fir250")


@pytest.fixture(scope="module")
def homog(sky):
    return homogenise({k: sky.images(k) for k in SURVEYS}, pixel_scale=4 * u.arcsec,
                      unit="Jy/pix", frame="icrs")


def _isolated_points(sky, radius_arcsec=90.0):
    src = sky.model.sources
    c = SkyCoord(src["ra"], src["dec"], unit="deg")
    _idx, sep, _ = c.match_to_catalog_sky(c, nthneighbor=2)
    ok = (np.asarray(src["kind"]) == "point") & (sep.arcsec > radius_arcsec)
    for k in SURVEYS:
        ok &= np.asarray(sky.observe(k).truth["n_tiles"]) > 0
    return np.flatnonzero(ok)


def test_aperture_fluxes_match_truth(sky, homog):
    header = fits.Header.fromstring(homog.attrs["header"])
    w = WCS(header).celestial
    beam = Beam.from_header(header)
    fwhm_pix = beam.major.to_value(u.deg) / abs(w.wcs.cdelt[1])
    rows = _isolated_points(sky)
    src = sky.model.sources
    x, y = w.wcs_world2pix(src["ra"][rows], src["dec"][rows], 0)
    yy, xx = np.mgrid[-30:31, -30:31]
    r = np.hypot(xx, yy)
    aper, annulus = r <= 1.5 * fwhm_pix, (r > 3 * fwhm_pix) & (r < 5 * fwhm_pix)
    checked = 0
    for k in SURVEYS:
        img = homog[k].values
        truth = np.asarray(sky.observe(k).truth["flux"])[rows]
        ratios, weights = [], []
        for xi, yi, f in zip(x, y, truth, strict=True):
            ix, iy = round(xi), round(yi)
            stamp = img[iy - 30:iy + 31, ix - 30:ix + 31]
            if stamp.shape != r.shape or not np.isfinite(stamp).all():
                continue
            flux = stamp[aper].sum() - np.median(stamp[annulus]) * aper.sum()
            ratios.append(flux / f)
            weights.append(f)
        ratios = np.array(ratios)
        order = np.argsort(weights)[::-1]
        bright = order[:8]  # the faint ones are noise-dominated after smoothing to 18"
        # 1.5 FWHM holds 99.8% of a Gaussian's flux
        assert np.median(ratios[bright]) == pytest.approx(0.998, abs=0.05), k
        np.testing.assert_allclose(ratios[order[:3]], 0.998, atol=0.06, err_msg=k)
        checked += 1
    assert checked == 3


def test_common_beam_and_unit(homog):
    header = fits.Header.fromstring(homog.attrs["header"])
    assert header["BMAJ"] * 3600 == pytest.approx(18.0)
    assert u.Unit(homog.attrs["unit"]) == u.Jy / u.pix
    assert homog.attrs["kernels"]["fir250"] is None
    assert set(homog.data_vars) == set(SURVEYS)
    assert homog.attrs["provenance"]["vanotebook"]["activity"] == "vanotebook.mosaic.homogenise"


def test_resolution_smaller_than_a_beam_fails(sky):
    with pytest.raises(VanotebookInputError, match="resolution"):
        homogenise({"fir250": sky.images("fir250")[:1]}, resolution=Beam.circular(5 * u.arcsec))


def test_no_beam_fails(sky):
    hdu = sky.images("ir24")[0][0].copy()
    for key in ("BMAJ", "BMIN", "BPA"):
        del hdu.header[key]
    with pytest.raises(VanotebookInputError, match="beam"):
        homogenise({"ir24": [hdu]})


def test_cutout_and_batch(sky, homog):
    src = sky.model.sources
    rows = _isolated_points(sky)
    faintest = np.min([np.asarray(sky.observe(k).truth["flux"])[rows] for k in SURVEYS], axis=0)
    rows = rows[np.argsort(faintest)[::-1][:3]]
    images = {k: sky.images(k) for k in SURVEYS}
    one = cutout(images, (float(src["ra"][rows[0]]), float(src["dec"][rows[0]])),
                 2 * u.arcmin, pixel_scale=4 * u.arcsec, unit="Jy/pix")
    assert set(one.data_vars) == set(SURVEYS)
    # the centre pixel of the cutout holds the source: brightest within the stamp centre
    for k in SURVEYS:
        stamp = one[k].values
        c = stamp.shape[0] // 2
        assert np.nanargmax(stamp) in {np.ravel_multi_index((c + dy, c + dx), stamp.shape)
                                       for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    table = Table({"ra": [float(src["ra"][i]) for i in rows] + [10.0],
                   "dec": [float(src["dec"][i]) for i in rows] + [10.0]})
    many = cutouts(images, table, 2 * u.arcmin, pixel_scale=4 * u.arcsec, unit="Jy/pix")
    assert len(many) == 4 and many[-1] is None
    np.testing.assert_allclose(many[0]["radio"].values, one["radio"].values, equal_nan=True)
