"""Spectral-line cubes of the demo sky, with their truth: the moment maps they must give.

Two cubes cover the demo field in Galactic coordinates:

* ``co``: a CO(1-0)-like survey cube in radio velocity (VRAD): molecular
  clouds, each a 2-D Gaussian with its own line width and a linear velocity
  gradient across it, whose systemic velocities follow a flat Galactic
  rotation curve projected on the line of sight.
* ``hi``: an HI-like cube in frequency (FREQ about the 21-cm rest frequency):
  an inclined disk with an exponential surface brightness, a rising-then-flat
  rotation curve ``V(R) = V_flat tanh(R / R_t)`` and a constant dispersion.

Every line is a Gaussian in velocity, so the noise-free moments are exact:
``moment0 = sum A_i s_i sqrt(2 pi)``, ``moment1`` the ``A_i s_i``-weighted
mean of the centres, ``moment2`` the weighted mean of ``s_i^2 + v_i^2``
minus ``moment1^2`` (the band holds every line to beyond 5 sigma). Seeded:
the same seed gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from ._model import DEFAULT_CENTER

__all__ = ["CUBES", "DemoCube", "co_cube", "demo_cubes", "hi_cube"]

C_KMS = 299_792.458
HI_REST = 1_420_405_751.768  # Hz
CO_REST = 115_271_201_800.0  # Hz
V_FLAT = 220.0  # km/s, the Galaxy's flat rotation speed
R_SUN = 8.2  # kpc


@dataclass(frozen=True)
class DemoCube:
    """A demo cube and its truth.

    Attributes
    ----------
    name : str
    hdu : astropy.io.fits.PrimaryHDU
        The cube with noise (float32, ``(v, y, x)``) and its header.
    truth : dict of str to numpy.ndarray
        Noise-free ``moment0`` (K km/s), ``moment1`` (km/s), ``moment2``
        (km^2/s^2) and ``peak`` (K) maps, ``(y, x)``.
    noise : float
        The Gaussian noise per voxel, K.
    description : str
    """

    name: str
    hdu: fits.PrimaryHDU
    truth: dict[str, np.ndarray]
    noise: float
    description: str

    def truth_hdul(self) -> fits.HDUList:
        """The truth maps as FITS, one HDU each, on the cube's sky grid."""
        from astropy.wcs import WCS

        header = WCS(self.hdu.header).celestial.to_header()
        units = {"moment0": "K km s-1", "moment1": "km s-1", "moment2": "km2 s-2",
                 "peak": "K"}
        hdus = []
        for i, (key, data) in enumerate(self.truth.items()):
            h = header.copy()
            h["BUNIT"], h["EXTNAME"] = units[key], key.upper()
            cls = fits.PrimaryHDU if i == 0 else fits.ImageHDU
            hdus.append(cls(data.astype(np.float32), h))
        return fits.HDUList(hdus)


def _header(center, size: float, shape, spectral: dict) -> fits.Header:
    nv, ny, nx = shape
    gal = SkyCoord(*center, unit="deg").galactic
    h = fits.Header()
    h["NAXIS"], h["NAXIS1"], h["NAXIS2"], h["NAXIS3"] = 3, nx, ny, nv
    h["CTYPE1"], h["CTYPE2"] = "GLON-TAN", "GLAT-TAN"
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    h["CRVAL1"], h["CRVAL2"] = float(gal.l.deg), float(gal.b.deg)
    h["CRPIX1"], h["CRPIX2"] = (nx + 1) / 2, (ny + 1) / 2
    h["CDELT1"], h["CDELT2"] = -size / nx, size / ny
    for key, value in spectral.items():
        h[key] = value
    h["BUNIT"] = "K"
    h["SPECSYS"] = "LSRK"
    beam = 2.5 * size / nx
    h["BMAJ"], h["BMIN"], h["BPA"] = beam, beam, 0.0
    return h


def _gaussian_lines(v: np.ndarray, comps: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                    ny: int, nx: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Sum of Gaussian lines ``(amplitude, centre, sigma)`` maps; cube and exact moments."""
    cube = np.zeros((v.size, ny, nx), np.float32)
    s0 = np.zeros((ny, nx))
    s1 = np.zeros((ny, nx))
    s2 = np.zeros((ny, nx))
    flat = cube.reshape(v.size, ny * nx)
    for amp, vc, sig in comps:
        on = np.flatnonzero(amp.ravel() > 0)  # only where the component shines
        for part in np.array_split(on, max(1, on.size // 4096)):
            a, c, s_ = amp.ravel()[part], vc.ravel()[part], sig.ravel()[part]
            flat[:, part] += (a * np.exp(-0.5 * ((v[:, None] - c) / s_) ** 2)).astype(
                np.float32)
        w = amp * sig * np.sqrt(2 * np.pi)
        s0 += w
        s1 += w * vc
        s2 += w * (sig**2 + vc**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = np.where(s0 > 0, s1 / s0, np.nan)
        m2 = np.where(s0 > 0, s2 / s0 - m1**2, np.nan)
    peak = cube.max(axis=0).astype(float)
    return cube, {"moment0": s0, "moment1": m1, "moment2": m2, "peak": peak}


def _rotation_velocity(glon: np.ndarray) -> np.ndarray:
    """Line-of-sight velocity of a flat rotation curve at the tangent point (km/s)."""
    return V_FLAT * (1.0 - np.abs(np.sin(np.radians(glon)))) * np.sign(np.sin(np.radians(glon)))


def co_cube(seed: int = 0, *, center=DEFAULT_CENTER, size: float = 1.0, n_clouds: int = 12,
            shape: tuple[int, int, int] = (128, 96, 96), noise: float = 0.08) -> DemoCube:
    """The CO-like cube: clouds with velocity gradients on a Galactic rotation curve.

    Parameters
    ----------
    seed : int
    center : (float, float)
        ICRS field centre, degrees.
    size : float
        Side of the field, degrees.
    n_clouds : int
    shape : (nv, ny, nx)
    noise : float
        Gaussian noise per voxel, K.

    Returns
    -------
    DemoCube
    """
    rng = np.random.default_rng(seed)
    nv, ny, nx = shape
    gal = SkyCoord(*center, unit="deg").galactic
    v_sys = float(_rotation_velocity(np.array(gal.l.wrap_at("180d").deg)))
    dv = 0.5
    v0 = v_sys - dv * nv / 2
    v = v0 + dv * np.arange(nv)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    glon = gal.l.wrap_at("180d").deg - (xx - (nx - 1) / 2) * size / nx
    v_rot = _rotation_velocity(glon)
    comps = []
    for _ in range(n_clouds):
        cx, cy = rng.uniform(0.1, 0.9) * nx, rng.uniform(0.1, 0.9) * ny
        r = rng.uniform(0.04, 0.1) * nx
        amp0 = rng.uniform(1.5, 6.0)
        sig = rng.uniform(1.0, 3.5)  # km/s, the cloud's line width
        gx, gy = rng.normal(0, 0.08, 2)  # km/s per pixel: the cloud's velocity gradient
        offset = rng.normal(0, 4.0)  # km/s from the rotation curve (cloud-cloud dispersion)
        amp = amp0 * np.exp(-0.5 * ((xx - cx) ** 2 + (yy - cy) ** 2) / r**2)
        amp = np.where(amp > 1e-3 * amp0, amp, 0.0)
        vc = v_rot[int(cy) % ny, int(cx) % nx] + offset + gx * (xx - cx) + gy * (yy - cy)
        comps.append((amp, vc, np.full_like(amp, sig)))
    cube, truth = _gaussian_lines(v, comps, ny, nx)
    cube += rng.normal(0, noise, cube.shape).astype(np.float32)
    header = _header(center, size, shape, {
        "CTYPE3": "VRAD", "CUNIT3": "km/s", "CRVAL3": float(v0), "CDELT3": dv, "CRPIX3": 1.0,
        "RESTFRQ": CO_REST})
    header["LINE"], header["OBJECT"] = "CO(1-0)", "vanotebook demo"
    return DemoCube("co", fits.PrimaryHDU(cube, header), truth, noise,
                    f"CO(1-0)-like cube: {n_clouds} clouds with velocity gradients on a flat "
                    "rotation curve, radio velocity axis")


def hi_cube(seed: int = 0, *, center=DEFAULT_CENTER, size: float = 1.0,
            shape: tuple[int, int, int] = (96, 64, 64), noise: float = 0.2,
            v_flat: float = 150.0, r_turn: float = 0.08, inclination: float = 60.0,
            position_angle: float = 30.0, dispersion: float = 9.0) -> DemoCube:
    """The HI-like cube: an inclined rotating disk, on a frequency axis.

    Parameters
    ----------
    seed : int
    center, size, shape, noise
        As in `co_cube` (noise in K).
    v_flat : float
        Flat rotation speed, km/s.
    r_turn : float
        Turn-over radius of ``V(R) = v_flat tanh(R / r_turn)``, degrees.
    inclination, position_angle : float
        Of the disk, degrees (position angle of the receding major axis from +y).
    dispersion : float
        Line width (sigma), km/s.

    Returns
    -------
    DemoCube
    """
    rng = np.random.default_rng(seed)
    nv, ny, nx = shape
    pix = size / nx
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    x = (xx - (nx - 1) / 2) * pix
    y = (yy - (ny - 1) / 2) * pix
    pa, inc = np.radians(position_angle), np.radians(inclination)
    major = x * np.sin(pa) + y * np.cos(pa)
    minor = -x * np.cos(pa) + y * np.sin(pa)
    radius = np.hypot(major, minor / np.cos(inc))
    cos_theta = np.where(radius > 0, major / np.where(radius > 0, radius, 1), 0.0)
    v_sys = 40.0
    v_los = v_sys + v_flat * np.tanh(radius / r_turn) * np.sin(inc) * cos_theta
    amp = 20.0 * np.exp(-radius / (0.18 * size))
    amp = np.where(radius < 0.45 * size, amp, 0.0)
    channel = 4.0  # km/s
    v_lo = v_sys - channel * nv / 2
    cube, truth = _gaussian_lines(v_sys - channel * nv / 2 + channel * np.arange(nv),
                                  [(amp, v_los, np.full_like(amp, dispersion))], ny, nx)
    cube += rng.normal(0, noise, cube.shape).astype(np.float32)
    # the same channels on a frequency axis: radio velocity is linear in frequency
    f0 = HI_REST * (1 - v_lo / C_KMS)
    df = -HI_REST * channel / C_KMS
    header = _header(center, size, shape, {
        "CTYPE3": "FREQ", "CUNIT3": "Hz", "CRVAL3": f0, "CDELT3": df, "CRPIX3": 1.0,
        "RESTFRQ": HI_REST})
    header["LINE"], header["OBJECT"] = "HI", "vanotebook demo"
    return DemoCube("hi", fits.PrimaryHDU(cube, header), truth, noise,
                    "HI-like cube: an inclined disk with a tanh rotation curve, frequency axis "
                    "about the 21-cm rest frequency")


CUBES = {"co": co_cube, "hi": hi_cube}


def demo_cubes(seed: int = 0, *, center=DEFAULT_CENTER, size: float = 1.0
               ) -> dict[str, DemoCube]:
    """Both demo cubes over the demo field, seeded (each from its own derived seed)."""
    seeds = np.random.SeedSequence([seed, 7]).generate_state(len(CUBES))
    return {name: make(int(s), center=center, size=size)
            for (name, make), s in zip(CUBES.items(), seeds, strict=True)}
