"""Image ingest: what the archive records about each image, and its footprint.

For every image (HDU) the archive keeps the path and sha256 of its file, the
survey, band and wavelength, epoch (``MJD-OBS`` or ``DATE-OBS``), brightness
unit, beam, pixel scale, frame, size, and a footprint: a MOC of HEALPix cells.
A cube also gets its spectral coverage: the number of channels, the spectral
CTYPE, and the velocity (km/s, in the axis's Doppler convention, radio for
frequency axes) and wavelength ranges its channels span, edges included.

The footprint is conservative -- it holds every cell that any part of any
pixel touches. The pixel grid, edges included, is sampled at a spacing ``s``
of at most half a cell of the footprint order; every point of the image is
then within ``s / sqrt(2)`` of a sample, hence inside a sampled cell or one of
its neighbours, and the MOC of the samples' cells is grown by one ring of
neighbours. A query that tests regions against this MOC never misses an
image that overlaps them (it may list one that only comes within a cell).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np

from .._errors import VanotebookInputError
from ..healpix import pixel_resolution
from ..io import Image, parse_image
from ..spectral import spectral_coverage
from ._index import INDEX_ORDER

__all__ = ["FOOTPRINT_MAX_ORDER", "SPECTRAL_COLUMNS", "ImageRecord", "footprint_moc",
           "image_record", "load_images", "spectral_values"]

#: What the index records of a cube's spectral axis (NULL for 2-D images), with types.
SPECTRAL_COLUMNS = {"naxis3": int, "spectral_ctype": str, "spectral_convention": str,
                    "velocity_min_kms": float, "velocity_max_kms": float,
                    "wavelength_min_m": float, "wavelength_max_m": float}

FOOTPRINT_MAX_ORDER = 12
"""Finest footprint order (cells about 52 arcsec wide)."""
_MAX_SAMPLES = 400
_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz")


@dataclass
class ImageRecord:
    """What the index stores about one image (see `_index` for the columns)."""

    values: dict[str, Any]
    cells: np.ndarray
    image: Image | None = None  # kept for in-memory images that the archive stores


def footprint_moc(image: Image):
    """The image's conservative footprint as a `mocpy.MOC`, and its order."""
    from astropy.coordinates import Latitude, Longitude
    from mocpy import MOC

    wcs = image.celestial
    ny, nx = image.shape[-2], image.shape[-1]
    scale = float(image.pixel_scale.to_value(u.deg))
    extent = max(nx, ny) * scale
    want = 2 * max(scale, extent / _MAX_SAMPLES)
    order = INDEX_ORDER
    while order < FOOTPRINT_MAX_ORDER and pixel_resolution(order + 1).value >= want:
        order += 1
    step = max(pixel_resolution(order).value / 2 / scale, 0.25)  # pixels between samples
    xs = np.linspace(-0.5, nx - 0.5, int(np.ceil(nx / step)) + 1)
    ys = np.linspace(-0.5, ny - 0.5, int(np.ceil(ny / step)) + 1)
    gx, gy = np.meshgrid(xs, ys)
    sky = wcs.pixel_to_world(gx.ravel(), gy.ravel()).icrs
    ra, dec = sky.ra.deg, sky.dec.deg
    ok = np.isfinite(ra) & np.isfinite(dec)
    if not ok.any():
        raise VanotebookInputError("images", "an image whose pixels map to the sky",
                                   "a WCS with no valid sky position")
    moc = MOC.from_lonlat(lon=Longitude(ra[ok] * u.deg), lat=Latitude(dec[ok] * u.deg),
                          max_norder=order)
    moc = moc.add_neighbours()
    return moc, order, sky[ok]


def _header_value(header, *keys):
    for key in keys:
        value = header.get(key)
        if value not in (None, ""):
            return value
    return None


def _epoch(header) -> tuple[float | None, str | None]:
    from astropy.time import Time

    date = _header_value(header, "DATE-OBS", "DATE_OBS")
    mjd = _header_value(header, "MJD-OBS", "MJD_OBS", "MJD-AVG")
    if mjd is not None:
        try:
            return float(mjd), str(date) if date else None
        except (TypeError, ValueError):
            pass
    if date:
        try:
            return float(Time(str(date), scale="utc").mjd), str(date)
        except ValueError:
            return None, str(date)
    return None, None


def _wavelength(header) -> float | None:
    w = _header_value(header, "WAVELEN", "WAVELENG", "WAVELNTH", "LAMBDA")
    if w is not None:
        try:
            return float(w)  # metres, as the demo and most radio/IR headers write it
        except (TypeError, ValueError):
            return None
    f = _header_value(header, "FREQ", "RESTFRQ", "RESTFREQ", "OBSFREQ", "CRVAL3"
                      if str(header.get("CTYPE3", "")).startswith("FREQ") else "_NONE_")
    if f is not None:
        try:
            return float((float(f) * u.Hz).to_value(u.m, equivalencies=u.spectral()))
        except (TypeError, ValueError, ZeroDivisionError):
            return None
    return None


def spectral_values(image: Image) -> dict[str, Any]:
    """The `SPECTRAL_COLUMNS` of an image: its spectral coverage, or all None."""
    out: dict[str, Any] = dict.fromkeys(SPECTRAL_COLUMNS)
    wcs = image.wcs
    spec = int(wcs.wcs.spec) if wcs.naxis >= 3 else -1
    ndim = len(image.shape)
    if spec < 0 or spec >= ndim:
        return out
    n = int(image.shape[ndim - 1 - spec])
    try:
        cov = spectral_coverage(wcs, n, argument="images")
    except (ValueError, TypeError):  # an unreadable spectral axis: indexed as an image
        return out
    if cov is None:
        return out
    out.update(naxis3=n, spectral_ctype=cov.ctype, spectral_convention=cov.convention)
    if cov.velocity is not None:
        out["velocity_min_kms"], out["velocity_max_kms"] = cov.velocity
    if cov.wavelength is not None:
        out["wavelength_min_m"], out["wavelength_max_m"] = cov.wavelength
    return out


def image_record(image: Image, *, path: str, sha256: str, hdu: int, stored: bool,
                 survey: str | None, band: str | None, argument: str) -> ImageRecord:
    """Everything the index records about one parsed image."""
    if not image.wcs.has_celestial:
        raise VanotebookInputError(argument, "an image with a celestial WCS", path or image)
    header = image.header
    moc, order, sky = footprint_moc(image)
    from astropy.coordinates import SkyCoord

    ny, nx = image.shape[-2], image.shape[-1]
    centre = image.celestial.pixel_to_world((nx - 1) / 2, (ny - 1) / 2).icrs
    radius = float(np.max(centre.separation(SkyCoord(sky)).deg)) if sky.size else 0.0
    epoch, date = _epoch(header)
    beam = image.beam
    values = {
        "sha256": sha256, "hdu": int(hdu), "path": path, "stored": bool(stored),
        "survey": survey or _header_value(header, "SURVEY", "OBS_COLL", "TELESCOP"),
        "telescope": _header_value(header, "TELESCOP"),
        "band": band or _header_value(header, "FILTER", "BAND", "BANDNAME"),
        "wavelength_m": _wavelength(header),
        "epoch_mjd": epoch, "date_obs": date,
        "unit": None if image.unit is None else image.unit.to_string(),
        "beam_major_arcsec": None if beam is None else float(beam.major.to_value(u.arcsec)),
        "beam_minor_arcsec": None if beam is None else float(beam.minor.to_value(u.arcsec)),
        "beam_pa_deg": None if beam is None else float(beam.pa.to_value(u.deg)),
        "pixel_scale_arcsec": float(image.pixel_scale.to_value(u.arcsec)),
        "frame": image.frame, "naxis1": int(nx), "naxis2": int(ny),
        "ra_center": float(centre.ra.deg), "dec_center": float(centre.dec.deg),
        "radius_deg": radius, "footprint_order": int(order),
        "footprint": moc.to_string(format="ascii"),
        "area_deg2": float(moc.sky_fraction * 41252.96124941927),
        **spectral_values(image),
    }
    coarse = moc.degrade_to_order(INDEX_ORDER)
    shift = 2 * (29 - INDEX_ORDER)
    rng = np.asarray(coarse.to_depth29_ranges, np.int64).reshape(-1, 2)
    cells = np.unique(np.concatenate([np.arange(a >> shift, ((b - 1) >> shift) + 1)
                                      for a, b in rng]))
    return ImageRecord(values, cells)


#: Extension names of planes that accompany an image rather than being one: mosaic
#: weight and coverage maps, HST drizzle weight/context, error and mask planes.
ANCILLARY_HDUS = frozenset({"WEIGHT", "WEIGHTS", "COVERAGE", "WHT", "CTX", "CON", "ERR",
                            "ERROR", "SIGMA", "RMS", "NOISE", "VAR", "VARIANCE", "MASK",
                            "FLAGS", "DQ", "EXPOSURE", "EXPMAP"})


def _expand(images: Any) -> list[Any]:
    """Paths, globs, folders and image objects, flattened into a list."""
    import glob

    from astropy.io import fits

    pair = isinstance(images, tuple) and len(images) == 2 and (
        type(images[1]).__name__ in ("WCS", "Header"))
    many = isinstance(images, list | tuple) and not pair and not isinstance(images, fits.HDUList)
    items = list(images) if many else [images]
    out: list[Any] = []
    for item in items:
        if isinstance(item, str | os.PathLike):
            text = str(item)
            if Path(text).is_dir():
                out.extend(sorted(p for p in Path(text).rglob("*")
                                  if p.name.lower().endswith(_FITS_SUFFIXES)))
            elif any(ch in text for ch in "*?["):
                found = sorted(Path(p) for p in glob.glob(text, recursive=True))
                if not found:
                    raise VanotebookInputError("images", "a pattern matching FITS files", text)
                out.extend(found)
            else:
                out.append(Path(text))
        else:
            out.append(item)
    if not out:
        raise VanotebookInputError("images", "at least one image", images)
    return out


def _sky_hdus(hdul, argument: str, where: Any, unit: Any) -> list[tuple[int, Image]]:
    """The images of a FITS file: its HDUs with 2+ axes and a celestial WCS.

    Ancillary planes (`ANCILLARY_HDUS`: weight, coverage, error, mask) and
    HDUs without celestial axes (spectra, tables stored as images) are
    passed over; a file with no sky image at all is refused.
    """
    from ..io import sky_wcs

    hdul.verify("silentfix")
    found = []
    for k, h in enumerate(hdul):
        if not h.is_image or h.header.get("NAXIS", 0) < 2 or h.data is None:
            continue
        if str(h.header.get("EXTNAME", "")).strip().upper() in ANCILLARY_HDUS:
            continue
        try:
            celestial = sky_wcs(h.header, hdul).has_celestial
        except Exception:  # an unreadable WCS is no sky image
            celestial = False
        if celestial:
            found.append((k, parse_image(hdul, hdu=k, unit=unit, argument=argument)))
    if not found:
        raise VanotebookInputError(argument, "a FITS file with an image HDU with celestial WCS",
                                   str(where))
    return found


def load_images(images: Any, *, unit: Any = None) -> list[tuple[Path | None, int, Image, str]]:
    """Parse every input: ``(path or None, hdu, Image, argument name)`` for each sky image.

    ``unit`` overrides every image's ``BUNIT``.
    """
    from astropy.io import fits

    out = []
    for i, item in enumerate(_expand(images)):
        argument = f"images[{i}]"
        if isinstance(item, Path):
            if not item.is_file():
                raise VanotebookInputError(argument, "an existing FITS file", str(item))
            try:
                with fits.open(item, memmap=False) as hdul:
                    out.extend((item, k, im, argument)
                               for k, im in _sky_hdus(hdul, argument, item, unit))
            except OSError as exc:
                raise VanotebookInputError(argument, "a FITS file", str(item)) from exc
        elif isinstance(item, fits.HDUList):
            out.extend((None, 0, im, argument) for _k, im in _sky_hdus(item, argument, item, unit))
        else:
            out.append((None, 0, parse_image(item, unit=unit, argument=argument), argument))
    return out
