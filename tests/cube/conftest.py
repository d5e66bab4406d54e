"""Small FITS cubes for the cube tests: a Gaussian line whose centre drifts across the sky.

The helpers are reached through the ``M`` fixture (this module).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
from astropy.io import fits

with warnings.catch_warnings():  # the peers import astropy names deprecated since 7.x
    warnings.simplefilter("ignore")
    import pvextractor  # noqa: F401
    import spectral_cube  # noqa: F401

V0, SIGMA = 5.0, 3.0  # km/s: line centre at the reference pixel, line width
GRAD = 0.4  # km/s per pixel in x: the injected velocity field
REST = 230.538e9  # Hz, CO(2-1)
C = 299_792.458


def truth_velocity(ny: int, nx: int) -> np.ndarray:
    """The injected line centre of every pixel (km/s)."""
    return V0 + GRAD * (np.arange(nx)[None, :] - nx / 2) + 0.0 * np.arange(ny)[:, None]


def line_cube(v: np.ndarray, ny: int = 24, nx: int = 20, *, noise: float = 0.02,
              seed: int = 0, nan: bool = True) -> np.ndarray:
    """``(v, y, x)`` float32: amplitude-varying Gaussians around the truth velocity."""
    rng = np.random.default_rng(seed)
    vc = truth_velocity(ny, nx)
    yy, xx = np.mgrid[0:ny, 0:nx]
    amp = 1.0 + 0.5 * np.exp(-((xx - nx / 3) ** 2 + (yy - ny / 2) ** 2) / 40.0)
    data = amp[None] * np.exp(-0.5 * ((v[:, None, None] - vc[None]) / SIGMA) ** 2)
    data = data + rng.normal(0, noise, data.shape)
    data = data.astype(np.float32)
    if nan:
        data[:, 0, 0] = np.nan  # an all-NaN spectrum
        data[3, 5, 7] = np.nan  # one blank voxel
    return data


def header(nv: int, ny: int, nx: int, *, kind: str = "vrad", rotate: float = 0.0,
           stokes: bool = False) -> fits.Header:
    h = fits.Header()
    h["NAXIS"] = 4 if stokes else 3
    h["NAXIS1"], h["NAXIS2"], h["NAXIS3"] = nx, ny, nv
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 83.8, -5.4
    h["CRPIX1"], h["CRPIX2"] = nx / 2 + 0.5, ny / 2 + 0.5
    h["CDELT1"], h["CDELT2"] = -2.0 / 3600, 2.0 / 3600
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    if rotate:
        c, s = np.cos(np.radians(rotate)), np.sin(np.radians(rotate))
        h["PC1_1"], h["PC1_2"], h["PC2_1"], h["PC2_2"] = c, -s, s, c
    h["BUNIT"] = "K"
    h["SPECSYS"] = "LSRK"
    h["BMAJ"], h["BMIN"], h["BPA"] = 4.0 / 3600, 4.0 / 3600, 0.0
    if kind == "vrad":
        h["CTYPE3"], h["CUNIT3"] = "VRAD", "km/s"
        h["CRVAL3"], h["CDELT3"], h["CRPIX3"] = -20.0, 0.5, 1.0
    elif kind == "freq":  # the same channels as VRAD, written in frequency
        h["CTYPE3"], h["CUNIT3"] = "FREQ", "Hz"
        h["CRVAL3"] = REST * (1 + 20.0 / C)
        h["CDELT3"] = -REST * 0.5 / C
        h["CRPIX3"] = 1.0
        h["RESTFRQ"] = REST
    if stokes:
        h["NAXIS4"] = 1
        h["CTYPE4"], h["CRVAL4"], h["CDELT4"], h["CRPIX4"] = "STOKES", 1.0, 1.0, 1.0
    return h


def velocities(nv: int) -> np.ndarray:
    return -20.0 + 0.5 * np.arange(nv)


def hdu(kind: str = "vrad", *, nv: int = 80, ny: int = 24, nx: int = 20, rotate: float = 0.0,
        stokes: bool = False, seed: int = 0, nan: bool = True, noise: float = 0.02
        ) -> fits.PrimaryHDU:
    data = line_cube(velocities(nv), ny, nx, seed=seed, nan=nan, noise=noise)
    if stokes:
        data = data[None]
    return fits.PrimaryHDU(data, header(nv, ny, nx, kind=kind, rotate=rotate, stokes=stokes))


@pytest.fixture(scope="session")
def M():
    """This module: the cube makers and the injected truth."""
    return sys.modules[__name__]
