"""A small seeded far-infrared field like Hi-GAL's, with greybody sources of known truth.

Five bands like Herschel's PACS and SPIRE in Hi-GAL (70, 160, 250, 350 and 500
um; beams 5.8-36 arcsec; maps in MJy/sr; Galactic TAN projection) observe a
patch of the Galactic plane: a smooth cirrus-like background, correlated noise
and compact (unresolved) sources whose flux densities follow optically thin
greybodies, ``S_nu = M kappa_nu B_nu(T) / d^2`` with
``kappa_nu = 0.1 cm^2/g (nu / 1 THz)^beta``, of known temperature, emissivity
index and mass at a known distance. The maps and the truth table let the whole
chain (homogenise -> detect -> build SEDs -> fit greybodies) be checked.

These bands are *not* part of `SURVEYS` (the demo archive stays as it is);
`higal_field` makes them on demand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.modeling.physical_models import BlackBody
from astropy.table import QTable
from astropy.wcs import WCS
from scipy.ndimage import gaussian_filter

from .._errors import VanotebookInputError, check_positive
from .._random import child_generators
from ..units import FWHM_TO_SIGMA, Beam

__all__ = ["HIGAL_BANDS", "HigalBand", "HigalField", "greybody_flux", "higal_field"]

KAPPA0 = 0.1 * u.cm**2 / u.g
NU0 = 1 * u.THz


@dataclass(frozen=True)
class HigalBand:
    """One far-infrared band: wavelength, beam FWHM, map pixel and 1-sigma map noise."""

    name: str
    wavelength: u.Quantity
    beam: u.Quantity
    pixel: u.Quantity
    rms: u.Quantity  # MJy/sr, per pixel, at the band's own resolution


#: Hi-GAL-like bands (beams and pixels of the PACS/SPIRE parallel-mode maps)
HIGAL_BANDS: dict[str, HigalBand] = {b.name: b for b in (
    HigalBand("pacs70", 70 * u.um, 5.8 * u.arcsec, 3.2 * u.arcsec, 6.0 * u.MJy / u.sr),
    HigalBand("pacs160", 160 * u.um, 11.5 * u.arcsec, 4.5 * u.arcsec, 6.0 * u.MJy / u.sr),
    HigalBand("spire250", 250 * u.um, 18.0 * u.arcsec, 6.0 * u.arcsec, 2.5 * u.MJy / u.sr),
    HigalBand("spire350", 350 * u.um, 25.0 * u.arcsec, 8.0 * u.arcsec, 1.2 * u.MJy / u.sr),
    HigalBand("spire500", 500 * u.um, 36.0 * u.arcsec, 11.5 * u.arcsec, 0.6 * u.MJy / u.sr),
)}


def greybody_flux(temperature: u.Quantity, mass: u.Quantity, beta, wavelength: u.Quantity, *,
                  distance: u.Quantity) -> u.Quantity:
    """Optically thin greybody flux densities [Jy], shape (n_sources, n_bands).

    Written with astropy's `BlackBody`, independently of `vanotebook.sed`'s kernels.
    """
    t = np.atleast_1d(temperature.to(u.K))[:, None]
    m = np.atleast_1d(mass.to(u.kg))[:, None]
    b = np.atleast_1d(np.asarray(beta, np.float64))[:, None]
    nu = np.atleast_1d(wavelength.to(u.Hz, equivalencies=u.spectral()))[None, :]
    bnu = BlackBody(temperature=t, scale=1.0 * u.Jy / u.sr)(nu) * u.sr
    kappa = KAPPA0 * (nu / NU0).to_value(u.one) ** b
    return (m * kappa * bnu / distance**2).to(u.Jy)


@dataclass
class HigalField:
    """What `higal_field` returns.

    Attributes
    ----------
    images : dict of str to astropy.io.fits.PrimaryHDU
        One map per band (MJy/sr, ``BMAJ``/``BMIN``, Galactic TAN), ready for
        `vanotebook.mosaic.homogenise` or `writeto`.
    truth : astropy.table.QTable
        One row per source: ``id``, ``ra``, ``dec``, ``glon``, ``glat`` [deg],
        ``temperature`` [K], ``mass`` [Msun], ``beta``, and ``flux_<band>`` [Jy].
    wavelengths : dict of str to Quantity
    distance : Quantity
    bands : dict of str to HigalBand
    """

    images: dict[str, fits.PrimaryHDU]
    truth: QTable
    wavelengths: dict[str, u.Quantity]
    distance: u.Quantity
    bands: dict[str, HigalBand] = field(default_factory=lambda: dict(HIGAL_BANDS))

    def arrays(self) -> dict[str, tuple[np.ndarray, WCS]]:
        """The maps as ``{band: (array, WCS)}``."""
        return {n: (h.data, WCS(h.header)) for n, h in self.images.items()}


def _positions(rng, n: int, half: float, min_sep: float) -> np.ndarray:
    """Up to ``n`` positions (deg offsets) in the square, at least ``min_sep`` apart."""
    out: list[tuple[float, float]] = []
    tries = 0
    while len(out) < n and tries < 200 * n:
        tries += 1
        p = rng.uniform(-half, half, 2)
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= min_sep**2 for q in out):
            out.append((float(p[0]), float(p[1])))
    return np.array(out).reshape(-1, 2)


def higal_field(
    seed: int = 0,
    *,
    n_sources: int = 25,
    distance: u.Quantity = 2 * u.kpc,
    size: u.Quantity = 0.3 * u.deg,
    centre: tuple[float, float] = (30.0, 0.0),
    temperature: tuple[float, float] = (12.0, 30.0),
    log_mass: tuple[float, float] = (0.8, 2.0),
    beta: float | tuple[float, float] = (1.7, 2.2),
    background: bool = True,
) -> HigalField:
    """A seeded Hi-GAL-like field: five maps and the greybody truth of its sources.

    Parameters
    ----------
    seed : int
        Same seed, same maps and truth.
    n_sources : int
        Compact sources, placed at least 75 arcsec (2 coarsest beams) apart and 2.5
        arcmin from the edges.
    distance : Quantity
        Distance of every source.
    size : Quantity
        Side of the square field.
    centre : (float, float)
        Galactic longitude and latitude of the centre [deg].
    temperature : (float, float)
        Range of the uniform temperatures [K].
    log_mass : (float, float)
        Range of the uniform ``log10(M / Msun)``.
    beta : float or (float, float)
        One emissivity index, or the range of uniform ones.
    background : bool
        Add a smooth cirrus-like background (a gradient and large-scale structure).

    Returns
    -------
    HigalField
    """
    check_positive("n_sources", n_sources, integer=True)
    for name, q in (("distance", distance), ("size", size)):
        if not isinstance(q, u.Quantity):
            raise VanotebookInputError(name, "a Quantity", q)
    rng_pos, rng_par, rng_noise, rng_bkg = child_generators(seed, 4)
    side = float(size.to_value(u.deg))
    off = _positions(rng_pos, n_sources, side / 2 - 2.5 / 60, 75 / 3600)
    n = len(off)
    l0, b0 = centre
    glat = b0 + off[:, 1]
    glon = l0 + off[:, 0] / math.cos(math.radians(b0))
    temp = rng_par.uniform(*temperature, n)
    mass = 10 ** rng_par.uniform(*log_mass, n)
    bet = (np.full(n, float(beta)) if np.isscalar(beta) else rng_par.uniform(*beta, n))
    waves = {k: b.wavelength for k, b in HIGAL_BANDS.items()}
    flux = greybody_flux(temp * u.K, mass * u.Msun, bet, u.Quantity(list(waves.values())),
                         distance=distance).to_value(u.Jy)
    gal = SkyCoord(glon * u.deg, glat * u.deg, frame="galactic")
    icrs = gal.icrs
    truth = QTable()
    truth["id"] = np.arange(n)
    truth["ra"] = icrs.ra.to(u.deg)
    truth["dec"] = icrs.dec.to(u.deg)
    truth["glon"] = glon * u.deg
    truth["glat"] = glat * u.deg
    truth["temperature"] = temp * u.K
    truth["mass"] = mass * u.Msun
    truth["beta"] = bet
    for j, k in enumerate(HIGAL_BANDS):
        truth[f"flux_{k}"] = flux[:, j] * u.Jy
    truth.meta.update({"distance_pc": float(distance.to_value(u.pc)), "seed": seed,
                       "kappa0_cm2_g": 0.1, "nu0_thz": 1.0, "model": "thin"})
    noise_rngs = child_generators(rng_noise, len(HIGAL_BANDS))
    # one background sky (a gradient plus structure on ~3 arcmin) seen in every band with a
    # cold-dust-like spectrum
    bk_grid = rng_bkg.standard_normal((64, 64))
    bk_grid = gaussian_filter(bk_grid, 10.0)
    bk_grid /= bk_grid.std()
    images = {}
    for (k, band), rng_b in zip(HIGAL_BANDS.items(), noise_rngs, strict=True):
        pix = float(band.pixel.to_value(u.deg))
        npix = math.ceil(side / pix)
        w = WCS(naxis=2)
        w.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
        w.wcs.crval = [l0, b0]
        w.wcs.crpix = [(npix + 1) / 2, (npix + 1) / 2]
        w.wcs.cdelt = [-pix, pix]
        w.wcs.cunit = ["deg", "deg"]
        beam = Beam.circular(band.beam)
        sig = float(band.beam.to_value(u.deg)) * FWHM_TO_SIGMA / pix  # pixels
        x, y = w.world_to_pixel(gal)
        yy, xx = np.mgrid[0:npix, 0:npix]
        img = np.zeros((npix, npix))
        omega = beam.sr.to_value(u.sr)
        peak = flux[:, list(HIGAL_BANDS).index(k)] / omega / 1e6  # MJy/sr
        half = math.ceil(5 * sig)
        for xi, yi, pk in zip(x, y, peak, strict=True):
            x0, y0 = round(float(xi)), round(float(yi))
            sl = (slice(max(0, y0 - half), y0 + half + 1), slice(max(0, x0 - half),
                                                                 x0 + half + 1))
            img[sl] += pk * np.exp(-((xx[sl] - xi) ** 2 + (yy[sl] - yi) ** 2) / (2 * sig**2))
        # noise correlated over half a beam, scaled to the band's per-pixel rms
        white = rng_b.standard_normal((npix, npix))
        corr = gaussian_filter(white, sig / 2) if sig / 2 > 0.3 else white
        img += corr / corr.std() * band.rms.to_value(u.MJy / u.sr)
        if background:
            gy = np.linspace(0, bk_grid.shape[0] - 1, npix)
            from scipy.ndimage import map_coordinates

            sky = map_coordinates(bk_grid, np.meshgrid(gy, gy, indexing="ij"), order=1)
            nu_ratio = (250 * u.um / band.wavelength).to_value(u.one)
            # ~ 18 K dust, 40 MJy/sr at 250 um (a quiet stretch of the plane)
            level = 40.0 * 17.2 * nu_ratio ** 5 / np.expm1(2.9 * nu_ratio)
            img += level * (1.0 + 0.15 * sky + 0.2 * (xx / npix))
        hdr = w.to_header()
        hdr["BUNIT"] = "MJy/sr"
        for key, card in beam.header_cards().items():
            hdr[key] = card
        hdr["TELESCOP"] = "Herschel-like (synthetic)"
        hdr["WAVELEN"] = (float(band.wavelength.to_value(u.um)), "[um]")
        hdr["BAND"] = k
        images[k] = fits.PrimaryHDU(img.astype(np.float32), hdr)
    return HigalField(images=images, truth=truth, wavelengths=waves, distance=distance)
