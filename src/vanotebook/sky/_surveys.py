"""Named surveys that observe a `SkyModel`, the way real ones differ.

Each survey has its own celestial frame, projection, pixel scale, beam or
PSF, noise (correlated on the beam scale), flux unit and epoch, and comes as
overlapping tiles each with its own background offset. `observe` renders the
tiles exactly (Gaussian components convolved analytically with the beam) and
returns their truth.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS
from scipy.signal import fftconvolve

from .._errors import VanotebookInputError
from .._random import SeedLike, child_generators
from ..units import Beam
from ._geometry import from_tangent, to_tangent
from ._model import SkyModel

__all__ = ["SURVEYS", "Observation", "Survey", "observe"]

_DEG2_TO_SR = (math.pi / 180.0) ** 2


@dataclass(frozen=True)
class Survey:
    """How one survey observes the sky.

    Attributes
    ----------
    key : str
        Short name used in file names (``radio``, ``ir24``, ``fir250``).
    name, telescope, instrument, band : str
        Header metadata (``SURVEY``, ``TELESCOP``, ``INSTRUME``, ``FILTER``).
    wavelength_m : float
        Effective wavelength in metres.
    frame : {"icrs", "galactic"}
    projection : str
        FITS projection code (``SIN``, ``TAN``, ``CAR``).
    pixel_scale : float
        Pixel side in arcsec.
    beam : Beam
        Beam (radio) or PSF (infrared).
    noise : float
        Noise rms in ``unit``, correlated on the beam scale.
    unit : str
        ``Jy/beam`` or ``MJy/sr``.
    date : str
        Observation date (ISO), written as ``DATE-OBS``.
    tiles : int
        Tiles per side (``tiles x tiles`` overlapping tiles).
    overlap : float
        Fraction of a tile's side shared with its neighbour.
    offset_rms : float
        Rms of the per-tile background offsets, in ``unit``.
    """

    key: str
    name: str
    telescope: str
    instrument: str
    band: str
    wavelength_m: float
    frame: str
    projection: str
    pixel_scale: float
    beam: Beam
    noise: float
    unit: str
    date: str
    tiles: int = 2
    overlap: float = 0.2
    offset_rms: float = 0.0

    @property
    def lon_lat(self) -> tuple[str, str]:
        return ("RA", "DEC") if self.frame == "icrs" else ("GLON", "GLAT")


SURVEYS: dict[str, Survey] = {
    s.key: s
    for s in (
        Survey("radio", "SYN-RADIO 1.4 GHz continuum survey", "SYN-VLA", "SYN-CORR", "L",
               0.2141, "icrs", "SIN", 4.0, Beam(15 * u.arcsec, 10 * u.arcsec, 30 * u.deg),
               2.0e-4, "Jy/beam", "2019-03-10", offset_rms=4.0e-4),
        Survey("ir24", "SYN-MIPSGAL 24 um survey", "SYN-SPITZER", "SYN-MIPS", "24um",
               24.0e-6, "galactic", "CAR", 2.5, Beam.circular(6 * u.arcsec),
               0.3, "MJy/sr", "2005-06-01", offset_rms=2.0),
        Survey("fir250", "SYN-HIGAL 250 um survey", "SYN-HERSCHEL", "SYN-SPIRE", "250um",
               250.0e-6, "galactic", "TAN", 6.0, Beam.circular(18 * u.arcsec),
               0.15, "MJy/sr", "2010-09-01", offset_rms=3.0),
    )
}


@dataclass(frozen=True)
class Observation:
    """One survey's view of a sky model.

    Attributes
    ----------
    survey : Survey
    tiles : list of astropy.io.fits.HDUList
        The overlapping tiles, FITS with complete headers.
    truth : astropy.table.Table
        Per source: ``kind``, ``morph`` (its class as this survey sees it:
        ``point``; a Gaussian is ``compact`` when its intrinsic FWHM is under
        2.5 beams, else ``extended``; rings and filaments ``extended``; radio
        galaxies ``fr2``, ``fr1`` or ``bent``), ``flux`` (Jy at the survey
        wavelength), ``peak`` (the beam-convolved peak in the survey unit;
        points and Gaussians), ``major_obs``/``minor_obs``/``pa_obs``
        (beam-convolved FWHM, arcsec, and PA east of ICRS north),
        ``lon``/``lat`` in the survey frame, ``n_tiles`` (tiles holding it
        away from their edges) and ``in_survey``.
    offsets : astropy.table.Table
        ``tile``, ``file`` and ``offset`` (survey unit) of every tile.
    model : SkyModel or None
        The sky model observed (for `source_at`).
    """

    survey: Survey
    tiles: list[fits.HDUList]
    truth: Table
    offsets: Table
    model: SkyModel | None = field(default=None, repr=False, compare=False)

    def source_at(self, ra, dec, *, min_snr: float = 3.0) -> Table:
        """The true source behind each position: the one that is brightest there.

        For every position the beam-convolved brightness of every source of
        the sky model (the sum over its components, diffuse emission left out)
        is worked out, and the brightest source is the one the position
        belongs to; where none reaches ``min_snr`` times the survey noise the
        position holds no source (a noise peak or an artefact). This matches a
        detection on a lobe or a knot of a radio galaxy, or on a piece of a
        ring, to its source, which a nearest-centre match would not.

        Parameters
        ----------
        ra, dec : array-like or Quantity
            ICRS positions (degrees when plain numbers).
        min_snr : float
            Least brightness, in noise rms, for a position to belong to a source.

        Returns
        -------
        astropy.table.Table
            One row per position: ``source_id`` (-1 where none), ``kind`` and
            ``morph`` (``artefact`` where none; see ``truth``) and ``snr``
            (the source's brightness there over the noise).
        """
        if self.model is None:
            raise VanotebookInputError("observation", "an Observation made by observe()", self)
        ra, dec = (np.atleast_1d(v.to_value(u.deg) if isinstance(v, u.Quantity)
                                 else np.asarray(v, float)) for v in (ra, dec))
        if ra.shape != dec.shape or ra.ndim != 1:
            raise VanotebookInputError("ra/dec", "two 1-d arrays of the same length",
                                       (ra.shape, dec.shape))
        model, survey = self.model, self.survey
        ra0, dec0 = model.center
        comp = model.components
        x, y = to_tangent(ra, dec, ra0, dec0)
        lon0, lat0 = (float(v[0]) for v in _frame_coords(np.array([ra0]), np.array([dec0]),
                                                         survey.frame))
        north = _north_angle(lon0, lat0, survey.frame)
        bcov = Beam(survey.beam.major, survey.beam.minor,
                    survey.beam.pa + north * u.deg).covariance()
        cxx, cxy, cyy = (comp["cxx"] + bcov[0, 0], comp["cxy"] + bcov[0, 1],
                         comp["cyy"] + bcov[1, 1])
        det = cxx * cyy - cxy * cxy
        flux = model.flux(survey.wavelength_m)[comp["source"]] * comp["frac"]
        amp = flux / (2 * math.pi * np.sqrt(det)) * _to_unit_factor(survey) / survey.noise
        n_src = len(model.sources)
        best = np.full(len(ra), -1, np.int64)
        snr = np.zeros(len(ra))
        for start in range(0, len(ra), 256):
            sl = slice(start, start + 256)
            dx = x[sl, None] - comp["x"][None, :]
            dy = y[sl, None] - comp["y"][None, :]
            q = (cyy * dx * dx - 2 * cxy * dx * dy + cxx * dy * dy) / det
            bright = amp * np.exp(-0.5 * np.minimum(q, 200.0))
            m = bright.shape[0]
            where = (np.arange(m)[:, None] * n_src + comp["source"][None, :]).ravel()
            per_source = np.bincount(where, bright.ravel(), m * n_src).reshape(m, n_src)
            best[sl] = per_source.argmax(axis=1)
            snr[sl] = per_source.max(axis=1)
        none = snr < min_snr
        best[none] = -1
        index = np.where(none, 0, best)
        morph = np.asarray(self.truth["morph"])[index].astype("U12")
        kind = np.asarray(self.truth["kind"])[index].astype("U12")
        morph[none] = "artefact"
        kind[none] = "none"
        return Table({"source_id": best, "kind": kind, "morph": morph, "snr": snr})


def _frame_coords(ra, dec, frame: str) -> tuple[np.ndarray, np.ndarray]:
    c = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
    if frame == "icrs":
        return np.asarray(ra, float), np.asarray(dec, float)
    g = c.transform_to(frame)
    return g.spherical.lon.deg, g.spherical.lat.deg


def _icrs_coords(lon, lat, frame: str) -> tuple[np.ndarray, np.ndarray]:
    if frame == "icrs":
        return lon, lat
    c = SkyCoord(lon * u.deg, lat * u.deg, frame=frame).icrs
    return c.ra.deg, c.dec.deg


def _north_angle(lon: float, lat: float, frame: str) -> float:
    """PA (deg, east of ICRS north) of the survey frame's north at a point."""
    if frame == "icrs":
        return 0.0
    here = SkyCoord(lon * u.deg, lat * u.deg, frame=frame)
    north = SkyCoord(lon * u.deg, (lat + 1.0 / 60) * u.deg, frame=frame)
    return here.icrs.position_angle(north.icrs).deg


def _tile_wcs(survey: Survey, lon: float, lat: float, npix: int) -> WCS:
    w = WCS(naxis=2)
    lon_name, lat_name = survey.lon_lat
    w.wcs.ctype = [f"{lon_name:-<4}-{survey.projection}", f"{lat_name:-<4}-{survey.projection}"]
    scale = survey.pixel_scale / 3600.0
    w.wcs.cdelt = [-scale, scale]
    w.wcs.cunit = ["deg", "deg"]
    centre = (npix + 1) / 2.0
    if survey.projection == "CAR":
        # plate carree tiles cut from an all-sky grid: the reference on the equator
        w.wcs.crval = [lon, 0.0]
        w.wcs.crpix = [centre, centre - lat / scale]
    else:
        w.wcs.crval = [lon, lat]
        w.wcs.crpix = [centre, centre]
    if survey.frame == "icrs":
        w.wcs.radesys = "ICRS"
    return w


def _noise_kernel(beam: Beam, pixel_scale_deg: float, north_pa: float) -> np.ndarray:
    """Pixel-space Gaussian kernel of the beam, normalised so sum(k^2) = 1."""
    cov = Beam(beam.major, beam.minor, beam.pa).covariance() / pixel_scale_deg**2
    jac = np.diag([-1.0, 1.0])  # (east, north) -> (x, y) for CDELT1 < 0
    cov = jac @ cov @ jac.T
    half = math.ceil(4 * math.sqrt(np.linalg.eigvalsh(cov).max())) + 1
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    inv = np.linalg.inv(cov)
    k = np.exp(-0.5 * (inv[0, 0] * xx * xx + 2 * inv[0, 1] * xx * yy + inv[1, 1] * yy * yy))
    return k / math.sqrt((k * k).sum())


def _to_unit_factor(survey: Survey) -> float:
    """Multiply Jy/deg^2 by this to get the survey unit."""
    jy_sr = 1.0 / _DEG2_TO_SR
    if survey.unit == "MJy/sr":
        return jy_sr / 1e6
    return jy_sr * survey.beam.sr.to_value(u.sr)


def observe(model: SkyModel, survey: Survey | str, *, seed: SeedLike = 0) -> Observation:
    """Render a survey's tiles of a sky model, with their truth.

    Parameters
    ----------
    model : SkyModel
    survey : Survey or str
        A `Survey` or the key of one of `SURVEYS`.
    seed : int, SeedSequence or Generator
        Seeds the noise and the tile offsets (per tile, so tiles are independent).

    Returns
    -------
    Observation
    """
    if isinstance(survey, str):
        if survey not in SURVEYS:
            raise VanotebookInputError("survey", f"one of {tuple(SURVEYS)}", survey)
        survey = SURVEYS[survey]
    if not isinstance(survey, Survey):
        raise VanotebookInputError("survey", "a Survey or a survey key", survey)
    ra0, dec0 = model.center
    lon0, lat0 = (float(v[0]) for v in _frame_coords(np.array([ra0]), np.array([dec0]),
                                                     survey.frame))
    north = _north_angle(lon0, lat0, survey.frame)
    # cover the model's square field even when the frame is rotated against ICRS
    t = math.radians(north)
    side = model.size * (abs(math.cos(t)) + abs(math.sin(t)))
    n = survey.tiles
    tile_side = side / (n - (n - 1) * survey.overlap)
    step = tile_side * (1 - survey.overlap)
    scale = survey.pixel_scale / 3600.0
    npix = math.ceil(tile_side / scale)
    beam_icrs = Beam(survey.beam.major, survey.beam.minor, survey.beam.pa + north * u.deg)
    bcov = beam_icrs.covariance()
    to_unit = _to_unit_factor(survey)
    diffuse_unit = 1e6 * _DEG2_TO_SR * to_unit  # MJy/sr -> survey unit
    kernel = _noise_kernel(survey.beam, scale, north)

    comp = model.components
    c_ra, c_dec = from_tangent(comp["x"], comp["y"], ra0, dec0)
    c_lon, c_lat = _frame_coords(c_ra, c_dec, survey.frame)
    s_lon, s_lat = _frame_coords(np.asarray(model.sources["ra"]),
                                 np.asarray(model.sources["dec"]), survey.frame)
    flux = model.flux(survey.wavelength_m)
    comp_flux = flux[comp["source"]] * comp["frac"]
    cxx, cxy, cyy = comp["cxx"] + bcov[0, 0], comp["cxy"] + bcov[0, 1], comp["cyy"] + bcov[1, 1]
    det = cxx * cyy - cxy * cxy
    reach = 5.0 * np.sqrt(np.maximum(cxx, cyy)) / scale + 2

    rngs = child_generators(seed, n * n, key=zlib.crc32(survey.key.encode()))
    tiles, offsets = [], []
    n_tiles_src = np.zeros(len(model.sources), int)
    margin = 2 * survey.beam.major.to_value(u.deg) / scale
    for j in range(n):
        for i in range(n):
            k = j * n + i
            rng = rngs[k]
            lat = lat0 + (j - (n - 1) / 2) * step
            lon = lon0 + (i - (n - 1) / 2) * step / math.cos(math.radians(lat))
            wcs = _tile_wcs(survey, lon % 360.0, lat, npix)
            yy, xx = np.mgrid[0:npix, 0:npix]
            plon, plat = wcs.pixel_to_world_values(xx, yy)
            pra, pdec = _icrs_coords(plon, plat, survey.frame)
            X, Y = to_tangent(pra, pdec, ra0, dec0)
            image = np.zeros((npix, npix))
            px, py = wcs.world_to_pixel_values(c_lon, c_lat)
            for c in np.flatnonzero((px > -reach) & (px < npix - 1 + reach)
                                    & (py > -reach) & (py < npix - 1 + reach)):
                r = int(reach[c])
                x0, x1 = max(0, int(px[c]) - r), min(npix, int(px[c]) + r + 2)
                y0, y1 = max(0, int(py[c]) - r), min(npix, int(py[c]) + r + 2)
                dx = X[y0:y1, x0:x1] - comp["x"][c]
                dy = Y[y0:y1, x0:x1] - comp["y"][c]
                q = (cyy[c] * dx * dx - 2 * cxy[c] * dx * dy + cxx[c] * dy * dy) / det[c]
                image[y0:y1, x0:x1] += comp_flux[c] / (2 * math.pi * math.sqrt(det[c])) \
                    * np.exp(-0.5 * q)
            image *= to_unit
            image += model.diffuse_brightness(X, Y, survey.wavelength_m, bcov) * diffuse_unit
            noise = fftconvolve(rng.standard_normal((npix, npix)), kernel, mode="same")
            offset = float(rng.normal(0.0, survey.offset_rms))
            image += survey.noise * noise + offset
            sx, sy = wcs.world_to_pixel_values(s_lon, s_lat)
            n_tiles_src += ((sx >= margin) & (sx <= npix - 1 - margin)
                            & (sy >= margin) & (sy <= npix - 1 - margin))
            tiles.append(_tile_hdul(image.astype(np.float32), wcs, survey, k, lon, lat))
            offsets.append((k, f"{survey.key}_tile{k}.fits", offset, lon % 360.0, lat))
    truth = _truth(model, survey, flux, bcov, to_unit, s_lon, s_lat, n_tiles_src)
    off = Table(rows=offsets, names=("tile", "file", "offset", "lon", "lat"))
    off["offset"].unit = survey.unit
    off.meta.update({"survey": survey.key, "unit": survey.unit})
    return Observation(survey, tiles, truth, off, model)


def _tile_hdul(data: np.ndarray, wcs: WCS, survey: Survey, k: int, lon: float,
               lat: float) -> fits.HDUList:
    header = fits.Header()
    header["BUNIT"] = (survey.unit, "brightness unit")
    header.update(wcs.to_header())
    for key, card in survey.beam.header_cards().items():
        header[key] = card
    header["TELESCOP"] = survey.telescope
    header["INSTRUME"] = survey.instrument
    header["SURVEY"] = survey.name
    header["FILTER"] = (survey.band, "band")
    header["WAVELEN"] = (survey.wavelength_m, "[m] effective wavelength")
    if survey.unit == "Jy/beam":
        header["FREQ"] = (2.99792458e8 / survey.wavelength_m, "[Hz] observing frequency")
    header["DATE-OBS"] = (survey.date, "observation date")
    header["MJD-OBS"] = (Time(survey.date).mjd, "observation date (MJD)")
    header["OBJECT"] = f"{survey.key} tile {k}"
    header["TILE"] = (k, "tile number")
    header["ORIGIN"] = "vanotebook.sky synthetic sky"
    header["NOISE"] = (survey.noise, "nominal noise rms in BUNIT")
    return fits.HDUList([fits.PrimaryHDU(data, header)])


def _truth(model: SkyModel, survey: Survey, flux, bcov, to_unit, lon, lat, n_tiles) -> Table:
    src = model.sources
    beam = math.sqrt(survey.beam.major.to_value(u.arcsec) * survey.beam.minor.to_value(u.arcsec))
    morph = np.asarray(src["morph"]).astype("U8")
    small = (np.asarray(src["kind"]) == "gaussian") & (np.asarray(src["major"]) < 2.5 * beam)
    morph[small] = "compact"
    truth = Table({"source_id": src["source_id"], "kind": src["kind"], "morph": morph,
                   "extended": src["extended"], "ra": src["ra"], "dec": src["dec"],
                   "lon": lon * u.deg, "lat": lat * u.deg, "flux": flux * u.Jy})
    peak = np.full(len(src), np.nan)
    shape = np.full((len(src), 3), np.nan)
    comp = model.components
    single = np.bincount(comp["source"], minlength=len(src)) == 1
    first = np.searchsorted(comp["source"], np.arange(len(src)))
    for s in np.flatnonzero(single):
        c = first[s]
        cov = np.array([[comp["cxx"][c], comp["cxy"][c]], [comp["cxy"][c], comp["cyy"][c]]]) + bcov
        peak[s] = flux[s] / (2 * math.pi * math.sqrt(np.linalg.det(cov))) * to_unit
        b = Beam.from_covariance(cov)
        shape[s] = b.major.to_value(u.arcsec), b.minor.to_value(u.arcsec), b.pa.to_value(u.deg)
    truth["peak"] = peak * u.Unit(survey.unit)
    truth["major_obs"] = shape[:, 0] * u.arcsec
    truth["minor_obs"] = shape[:, 1] * u.arcsec
    truth["pa_obs"] = shape[:, 2] * u.deg
    for name in ("major", "minor", "pa", "radius", "length"):
        truth[name] = src[name]
    truth["n_tiles"] = n_tiles
    truth["in_survey"] = n_tiles > 0
    truth.meta.update({"survey": survey.key, "unit": survey.unit,
                       "wavelength_m": survey.wavelength_m})
    return truth
