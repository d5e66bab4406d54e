"""Beams and surface-brightness units.

Radio maps come in Jy/beam, infrared ones in MJy/sr, some products in
Jy/pixel. Converting between them needs the beam's solid angle (or the
pixel's), which is part of an image's metadata; `Beam` carries it and
`convert_brightness` does the conversion through Jy/sr.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import astropy.units as u
import numpy as np

from ._errors import VanotebookInputError

__all__ = ["FWHM_TO_SIGMA", "Beam", "convert_brightness", "parse_unit"]

FWHM_TO_SIGMA = 1.0 / math.sqrt(8.0 * math.log(2.0))
_JY_SR = u.Jy / u.sr


@dataclass(frozen=True)
class Beam:
    """An elliptical Gaussian beam (or PSF).

    Parameters
    ----------
    major, minor : Quantity
        Full widths at half maximum (angles).
    pa : Quantity
        Position angle of the major axis, east of north.
    """

    major: u.Quantity
    minor: u.Quantity
    pa: u.Quantity = 0 * u.deg

    def __post_init__(self) -> None:
        for name in ("major", "minor", "pa"):
            value = getattr(self, name)
            if not isinstance(value, u.Quantity) or value.unit.physical_type != "angle":
                raise VanotebookInputError(name, "an angle Quantity", value)
        if not (0 < self.minor.to_value(u.deg) <= self.major.to_value(u.deg) * (1 + 1e-9)):
            raise VanotebookInputError("minor", f"0 < minor <= major ({self.major})", self.minor)

    @classmethod
    def circular(cls, fwhm: u.Quantity) -> Beam:
        """A round beam of the given FWHM."""
        return cls(fwhm, fwhm, 0 * u.deg)

    @classmethod
    def from_header(cls, header) -> Beam | None:
        """The beam of a FITS header (degrees), or None when it has none.

        Reads ``BMAJ``/``BMIN``/``BPA``, else the last AIPS ``HISTORY`` card
        that records the CLEAN beam (``AIPS CLEAN BMAJ= ... BMIN= ... BPA=``).
        ``BMAJ = BMIN = 0`` is AIPS's "no beam" and counts as absent; any
        other non-positive or non-numeric value is refused.
        """
        bmaj, bmin = header.get("BMAJ"), header.get("BMIN")
        if bmaj is not None and bmin is not None:
            try:
                bmaj, bmin, bpa = float(bmaj), float(bmin), float(header.get("BPA", 0.0))
            except (TypeError, ValueError) as exc:
                raise VanotebookInputError("BMAJ/BMIN/BPA", "numbers (degrees)",
                                           (bmaj, bmin, header.get("BPA"))) from exc
            if bmaj == 0 and bmin == 0:
                return _history_beam(header)
            if not (bmin > 0 and bmaj > 0 and math.isfinite(bmaj) and math.isfinite(bmin)):
                raise VanotebookInputError("BMAJ/BMIN", "positive beam FWHMs in degrees",
                                           f"BMAJ={bmaj}, BMIN={bmin}")
            if bmin > bmaj:  # some writers swap them; the beam is the same ellipse
                bmaj, bmin, bpa = bmin, bmaj, bpa + 90.0
            return cls(bmaj * u.deg, bmin * u.deg, (bpa % 180.0) * u.deg)
        return _history_beam(header)

    def header_cards(self) -> dict[str, tuple[float, str]]:
        """``BMAJ``/``BMIN``/``BPA`` cards, in degrees."""
        return {
            "BMAJ": (self.major.to_value(u.deg), "[deg] beam major axis FWHM"),
            "BMIN": (self.minor.to_value(u.deg), "[deg] beam minor axis FWHM"),
            "BPA": (self.pa.to_value(u.deg), "[deg] beam position angle, east of north"),
        }

    @property
    def sr(self) -> u.Quantity:
        """Solid angle, ``pi / (4 ln 2) * major * minor``."""
        return (math.pi / (4 * math.log(2)) * self.major * self.minor).to(u.sr)

    def covariance(self) -> np.ndarray:
        """The 2x2 covariance in (east, north) degrees^2 of the Gaussian."""
        smaj = self.major.to_value(u.deg) * FWHM_TO_SIGMA
        smin = self.minor.to_value(u.deg) * FWHM_TO_SIGMA
        t = self.pa.to_value(u.rad)
        # major axis direction: east of north -> (east, north) = (sin t, cos t)
        rot = np.array([[math.sin(t), math.cos(t)], [math.cos(t), -math.sin(t)]])
        return rot @ np.diag([smaj**2, smin**2]) @ rot.T

    @classmethod
    def from_covariance(cls, cov: np.ndarray) -> Beam:
        """The beam with a given (east, north) covariance in degrees^2."""
        vals, vecs = np.linalg.eigh(np.asarray(cov, dtype=float))
        vals = np.clip(vals, 0, None)
        east, north = vecs[:, 1]
        pa = math.degrees(math.atan2(east, north)) % 180.0
        major = math.sqrt(vals[1]) / FWHM_TO_SIGMA
        minor = math.sqrt(vals[0]) / FWHM_TO_SIGMA
        return cls(major * u.deg, minor * u.deg, pa * u.deg)

    def convolve(self, other: Beam) -> Beam:
        """This beam convolved with another (covariances add)."""
        return Beam.from_covariance(self.covariance() + other.covariance())

    def deconvolve(self, other: Beam) -> Beam:
        """The beam that, convolved with ``other``, gives this one."""
        cov = self.covariance() - other.covariance()
        if np.linalg.eigvalsh(cov).min() <= 0:
            raise VanotebookInputError("other", f"a beam smaller than {self}", other)
        return Beam.from_covariance(cov)

    def __str__(self) -> str:
        return (f"Beam({self.major.to(u.arcsec):.2f} x {self.minor.to(u.arcsec):.2f}, "
                f"PA {self.pa.to(u.deg):.1f})")


#: BUNIT spellings seen in real headers that astropy does not read, and what they mean.
UNIT_ALIASES: dict[str, str] = {
    "ELECTRONS/S": "electron/s", "ELECTRONS/SEC": "electron/s", "ELECTRONS": "electron",
    "E-/S": "electron/s", "COUNTS": "ct", "COUNTS/S": "ct/s", "COUNTS/SEC": "ct/s",
    "ADU": "adu", "ADU/S": "adu/s", "KELVIN": "K", "K (TB)": "K", "DN/SEC": "DN/s",
    "DATA NUMBER": "DN",
}


_NUMBER = r"([-+]?\d*\.?\d+(?:[EeDd][-+]?\d+)?)"
_AIPS_BEAM = re.compile(rf"BMAJ\s*=\s*{_NUMBER}\s+BMIN\s*=\s*{_NUMBER}\s+BPA\s*=\s*{_NUMBER}")


def _history_beam(header) -> Beam | None:
    """The CLEAN beam AIPS writes in HISTORY cards (the last one), or None."""
    found = None
    for card in header.get("HISTORY", []) if "HISTORY" in header else []:
        match = _AIPS_BEAM.search(str(card))
        if match:
            found = match
    if found is None:
        return None
    bmaj, bmin, bpa = (float(g.replace("D", "E").replace("d", "e")) for g in found.groups())
    if bmaj <= 0 or bmin <= 0:
        return None
    if bmin > bmaj:
        bmaj, bmin, bpa = bmin, bmaj, bpa + 90.0
    return Beam(bmaj * u.deg, bmin * u.deg, (bpa % 180.0) * u.deg)


def parse_unit(unit: str | u.UnitBase | None, argument: str = "unit") -> u.UnitBase | None:
    """An astropy unit from a ``BUNIT``-style string (case-tolerant), a unit, or None.

    Reads the FITS and generic astropy spellings, upper-case radio forms
    (``JY/BEAM``) and the common non-standard ones of `UNIT_ALIASES`
    (``ELECTRONS/S``, ``counts``, ``ADU``, ``KELVIN``). Anything else is
    refused: pass the unit explicitly (every reader takes ``unit=``).
    """
    if unit is None or isinstance(unit, u.UnitBase):
        return unit
    if isinstance(unit, u.Quantity) and unit.value == 1:
        return unit.unit
    if not isinstance(unit, str):
        raise VanotebookInputError(argument, "a unit string or astropy unit", unit)
    text = unit.strip()
    if not text:
        return None
    text = UNIT_ALIASES.get(text.upper(), text)
    for fmt in ("fits", None):
        try:
            return u.Unit(text, format=fmt)
        except ValueError:
            continue
    fixed = (text.replace("JY", "Jy").replace("BEAM", "beam").replace("PIXEL", "pix")
             .replace("SR", "sr").replace("MJy", "MJy"))
    try:
        return u.Unit(fixed)
    except ValueError as exc:
        raise VanotebookInputError(
            argument, "a unit astropy understands (or give unit= explicitly)", unit) from exc


def fits_string(unit: u.UnitBase | None) -> str:
    """The ``BUNIT`` text for a unit: the FITS form when the standard has one.

    Units the FITS standard lacks (``DN``, ``electron``) are written in
    astropy's generic form, which `parse_unit` reads back to the same unit.
    """
    if unit is None:
        return ""
    try:
        return unit.to_string("fits")
    except ValueError:
        return unit.to_string()


def _per_sr(unit: u.UnitBase, beam: Beam | None, pixel_area: u.Quantity | None,
            argument: str) -> float:
    """Factor that turns values in ``unit`` into Jy/sr."""
    if unit.is_equivalent(_JY_SR):
        return unit.to(_JY_SR)
    if unit.is_equivalent(u.Jy / u.beam):
        if beam is None:
            raise VanotebookInputError("beam", f"a Beam to convert {unit}", beam)
        return unit.to(u.Jy / u.beam) / beam.sr.to_value(u.sr)
    if unit.is_equivalent(u.Jy / u.pix):
        if pixel_area is None:
            raise VanotebookInputError("pixel_area", f"a solid angle to convert {unit}",
                                       pixel_area)
        return unit.to(u.Jy / u.pix) / pixel_area.to_value(u.sr)
    raise VanotebookInputError(argument, "a surface brightness unit (Jy/sr, Jy/beam, Jy/pix)",
                               unit)


def convert_brightness(
    data,
    from_unit: str | u.UnitBase,
    to_unit: str | u.UnitBase,
    *,
    beam: Beam | None = None,
    pixel_area: u.Quantity | None = None,
):
    """Convert surface brightness between Jy/beam, MJy/sr, Jy/pixel and kin.

    Parameters
    ----------
    data : array-like
        Values in ``from_unit`` (numpy, dask or CuPy; multiplied by a scalar).
    from_unit, to_unit : str or Unit
    beam : Beam, optional
        Needed when either unit is per beam.
    pixel_area : Quantity, optional
        Pixel solid angle, needed when either unit is per pixel.

    Returns
    -------
    array-like
        ``data`` in ``to_unit``.
    """
    f_in = _per_sr(parse_unit(from_unit, "from_unit"), beam, pixel_area, "from_unit")
    f_out = _per_sr(parse_unit(to_unit, "to_unit"), beam, pixel_area, "to_unit")
    return data * (float(f_in) / float(f_out))
