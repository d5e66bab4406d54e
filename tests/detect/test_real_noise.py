"""Detection on images as they come from real pipelines: blank (NaN) borders from a rotated
regridding, beam-correlated noise, non-conformal (CAR) projections, resolved sources
without a beam. Each test compares with injected truth."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS
from scipy import ndimage

from vanotebook.detect import detect
from vanotebook.detect._extended import segment_map
from vanotebook.units import FWHM_TO_SIGMA


def _tan(n, rot_deg=0.0, scale_arcsec=2.0):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 20.0]
    w.wcs.crpix = [(n + 1) / 2] * 2
    t = np.radians(rot_deg)
    s = scale_arcsec / 3600
    w.wcs.cd = s * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    return w


def correlated_noise(rng, shape, fwhm):
    """Unit-rms noise whose correlation function is a Gaussian of ``fwhm`` pixels (a beam):
    white noise smoothed by a Gaussian of ``fwhm / sqrt 2``."""
    img = rng.normal(0, 1, shape)
    if fwhm:
        img = ndimage.gaussian_filter(img, fwhm * FWHM_TO_SIGMA / np.sqrt(2), mode="wrap")
        img /= img.std()
    return img


def rotated_tile(img, rot_deg=30.0, grow=1.25):
    """``img`` regridded (bilinear, as a mosaic tile) onto a grid rotated by ``rot_deg`` and
    ``grow`` times wider: the corners outside the input are NaN."""
    from reproject import reproject_interp

    n = img.shape[0]
    m = int(n * grow)
    out, _ = reproject_interp((img, _tan(n)), _tan(m, rot_deg), shape_out=(m, m),
                              order="bilinear")
    return out.astype(np.float32)


@pytest.mark.parametrize("noise_fwhm", [0.0, 3.0], ids=["white", "beam"])
def test_nan_border_makes_no_extended_sources(noise_fwhm):
    """Pure noise regridded onto a rotated grid (about 44% NaN): no extended source, and
    the smoothed map's peaks as frequent per valid pixel as without the border. (Its noise
    estimated with NaN taken as 0 gave up to 5 "sources" of S/N 12-18 per tile.)"""
    psf_sigma = 3.0 * FWHM_TO_SIGMA
    dens = {}
    for border in (False, True):
        counts, valid = 0, 0
        for seed in range(2):
            img = correlated_noise(np.random.default_rng(seed), (480, 480), noise_fwhm)
            img = rotated_tile(img) if border else img.astype(np.float32)
            finite = np.isfinite(img)
            if border:
                assert 0.35 < 1 - finite.mean() < 0.55
            res = detect(img, psf_fwhm=3.0, classify=False)
            assert len(res.extended) == 0, np.asarray(res.extended["snr"])
            rms = np.where(finite, res.rms, 0).astype(np.float32)
            out = segment_map(res.residual, rms, psf_sigma=psf_sigma, threshold=3.0,
                              min_area=0.3)
            counts += 0 if out is None else int(out[0].max())
            if out is not None:
                z = out[1]
                assert np.nanmax(z[finite]) < 7.0  # a few sigma, as pure noise gives
            if border and noise_fwhm:
                # the smoothed S/N map's noise is the same next to the blank corners (the
                # smoothing averages fewer pixels there: without a correction, 0.88 of it)
                near = finite & ~ndimage.binary_erosion(finite, iterations=2)
                inner = ndimage.binary_erosion(finite, iterations=20)
                assert 0.93 < z[near].std() / z[inner].std() < 1.1
            valid += int(finite.sum())
        dens[border] = counts / valid
    assert 0.6 < dens[True] / dens[False] < 1.6, dens
