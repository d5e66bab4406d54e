"""Synthetic test images with injected point sources (and artefacts) and their truth.

Used to train the reliability classifier, by the tests and by the benchmark.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.table import Table

from .._random import as_generator
from ..units import FWHM_TO_SIGMA

__all__ = ["injected_image"]


def injected_image(shape=(512, 512), n: int = 100, *, fwhm: float = 3.0,
                   snr_range=(2.0, 200.0), sigma: float = 1.0, background: float = 10.0,
                   gradient: float = 5.0, artefacts: bool = False, seed=0,
                   min_separation: float = 0.0):
    """An image of Gaussian point sources on a smooth background, with its truth.

    Parameters
    ----------
    shape : (ny, nx)
    n : int
        Number of sources; peak S/N log-uniform in ``snr_range``.
    fwhm : float
        PSF FWHM in pixels.
    sigma : float
        White noise rms.
    background, gradient : float
        Constant level and amplitude of a smooth sinusoidal variation.
    artefacts : bool
        Add sidelobe-like rings and stripes around the brightest sources
        (as calibration errors in radio maps make them).
    min_separation : float
        Minimum distance between sources, in pixels.

    Returns
    -------
    (image float32, truth Table with x, y, peak, flux (pixel sum), snr)
    """
    rng = as_generator(seed)
    ny, nx = shape
    s = fwhm * FWHM_TO_SIGMA
    xs, ys = [], []
    tries = 0
    while len(xs) < n and tries < 50 * n:
        tries += 1
        x, y = rng.uniform(3, nx - 4), rng.uniform(3, ny - 4)
        if min_separation > 0 and xs:
            d2 = (np.asarray(xs) - x) ** 2 + (np.asarray(ys) - y) ** 2
            if d2.min() < min_separation**2:
                continue
        xs.append(x)
        ys.append(y)
    x, y = np.asarray(xs), np.asarray(ys)
    snr = np.exp(rng.uniform(math.log(snr_range[0]), math.log(snr_range[1]), x.size))
    peak = snr * sigma
    img = np.zeros(shape, np.float64)
    r = int(6 * s) + 2
    for xi, yi, pi in zip(x, y, peak, strict=True):
        x0, x1 = max(0, int(xi) - r), min(nx, int(xi) + r + 2)
        y0, y1 = max(0, int(yi) - r), min(ny, int(yi) + r + 2)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        img[y0:y1, x0:x1] += pi * np.exp(-0.5 * ((xx - xi) ** 2 + (yy - yi) ** 2) / s**2)
    if artefacts:
        img += _artefacts(rng, x, y, peak, s, shape)
    yy, xx = np.mgrid[0:ny, 0:nx]
    img += background + gradient * np.sin(2 * np.pi * xx / (1.3 * nx)) * np.cos(
        2 * np.pi * yy / (1.7 * ny))
    img += rng.normal(0.0, sigma, shape)
    truth = Table({"x": x, "y": y, "peak": peak, "flux": 2 * np.pi * s * s * peak, "snr": snr})
    return img.astype(np.float32), truth


def _artefacts(rng, x, y, peak, s, shape):
    """Rings (sidelobes) and radial stripes around the sources brighter than 50 sigma."""
    ny, nx = shape
    out = np.zeros(shape)
    for xi, yi, pi in zip(x, y, peak, strict=True):
        if pi < 50:
            continue
        r = int(14 * s) + 4
        x0, x1 = max(0, int(xi) - r), min(nx, int(xi) + r + 2)
        y0, y1 = max(0, int(yi) - r), min(ny, int(yi) + r + 2)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        rr = np.hypot(xx - xi, yy - yi)
        phi = np.arctan2(yy - yi, xx - xi)
        ring_r = rng.uniform(5, 10) * s
        amp = rng.uniform(0.04, 0.1) * pi
        ring = amp * np.exp(-0.5 * (rr - ring_r) ** 2 / (0.8 * s) ** 2)
        ring *= 0.6 + 0.4 * np.cos(rng.integers(2, 6) * phi + rng.uniform(0, 6.3))
        theta = rng.uniform(0, np.pi)
        stripe = 0.5 * amp * np.exp(-0.5 * ((xx - xi) * np.sin(theta) - (yy - yi) * np.cos(theta))
                                    ** 2 / s**2) * np.cos(rr / (2 * s)) * (rr > 3 * s)
        out[y0:y1, x0:x1] += ring + stripe
    return out
