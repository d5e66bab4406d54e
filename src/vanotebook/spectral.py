"""Spectral axes: channel world values to velocities in a Doppler convention, and coverage.

Shared by the cube service (every channel's velocity and width) and the
archive (each cube's velocity and wavelength coverage, for queries).
Conversions between conventions go through ``r = nu / nu0``, so a velocity
axis changes convention without a rest frequency; frequency, wavelength,
wavenumber and energy axes need one (``RESTFRQ`` or ``RESTWAV``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np

from ._errors import VanotebookInputError, check_choice

__all__ = [
    "AXIS_CONVENTION",
    "CONVENTIONS",
    "C_KMS",
    "SpectralCoverage",
    "frequency_ratio",
    "rest_frequency",
    "spectral_coverage",
    "velocity_from_ratio",
]

CONVENTIONS = ("radio", "optical", "relativistic")
C_KMS = 299_792.458
#: The Doppler convention a velocity-like CTYPE carries.
AXIS_CONVENTION = {"VRAD": "radio", "VOPT": "optical", "FELO": "optical", "ZOPT": "optical",
                   "VELO": "relativistic", "BETA": "relativistic"}


def frequency_ratio(native: np.ndarray, head: str, rest_hz: float | None,
                    restwav: float | None, argument: str, ctype: str) -> np.ndarray:
    """``r = nu / nu0`` of spectral world values in SI units (Hz, m, m/s, 1/m, J).

    ``head`` is the first four letters of the CTYPE; frequency-like axes need
    ``rest_hz`` (or ``restwav`` for wavelength), else a named error.
    """
    c = C_KMS * 1e3
    if head in ("VRAD",):
        return 1.0 - native / c
    if head in ("VOPT", "FELO"):
        return 1.0 / (1.0 + native / c)
    if head == "ZOPT":
        return 1.0 / (1.0 + native)
    if head in ("VELO", "BETA"):
        b = native / c if head == "VELO" else native
        return np.sqrt((1.0 - b) / (1.0 + b))
    if head in ("FREQ", "WAVE", "WAVN", "ENER"):
        if not rest_hz:
            if head == "WAVE" and restwav:
                rest_hz = c / restwav
            else:
                raise VanotebookInputError(
                    argument, "a frequency or wavelength axis with a rest frequency (RESTFRQ "
                    "in the header, or rest=...)", f"a {ctype} axis with no rest frequency")
        if head == "FREQ":
            return native / rest_hz
        if head == "WAVE":
            return (c / native) / rest_hz
        if head == "WAVN":
            return native * c / rest_hz
        return (native / 6.62607015e-34) / rest_hz
    raise VanotebookInputError(argument, "a spectral axis in velocity, frequency or wavelength",
                               f"a {ctype} axis")


def velocity_from_ratio(r: np.ndarray, convention: str) -> np.ndarray:
    """Velocity in km/s of ``r = nu / nu0`` in the ``convention``."""
    if convention == "radio":
        return C_KMS * (1.0 - r)
    if convention == "optical":
        return C_KMS * (1.0 / r - 1.0)
    return C_KMS * (1.0 - r**2) / (1.0 + r**2)


def rest_frequency(wcs: Any, rest: Any = None) -> tuple[float | None, float | None]:
    """``(rest frequency in Hz, rest wavelength in m)`` of a spectral WCS (None: absent).

    ``rest`` (a frequency or wavelength Quantity) overrides the header's
    ``RESTFRQ``; a bad one is refused by name.
    """
    if rest is not None:
        try:
            rest_hz = float(u.Quantity(rest).to_value(u.Hz, equivalencies=u.spectral()))
        except (TypeError, ValueError, u.UnitsError) as exc:
            raise VanotebookInputError("rest", "a rest frequency or wavelength Quantity",
                                       rest) from exc
    else:
        rest_hz = float(wcs.wcs.restfrq) or None
    return rest_hz, float(wcs.wcs.restwav) or None


@dataclass(frozen=True)
class SpectralCoverage:
    """What a spectral axis covers, from the outer edges of its first and last channels.

    ``velocity`` is ``(min, max)`` in km/s in ``convention`` (None where the axis
    has no rest frequency to turn it into velocity); ``wavelength`` is
    ``(min, max)`` in metres (None for a velocity axis without a rest frequency).
    """

    ctype: str
    n_channels: int
    convention: str
    velocity: tuple[float, float] | None
    wavelength: tuple[float, float] | None


def _native_si(wcs1: Any, pixels: np.ndarray) -> np.ndarray:
    """World values of a 1-axis spectral WCS at ``pixels`` (0-based), in SI units."""
    values = np.asarray(wcs1.all_pix2world(pixels, 0)[0], float)
    unit = str(wcs1.wcs.cunit[0]) or None
    if unit:  # astropy's WCS normally hands back SI already; be sure of it
        q = u.Quantity(values, unit)
        si = q.si
        values = np.asarray(si.value, float)
    return values


def spectral_coverage(wcs: Any, n_channels: int, *, convention: str | None = None,
                      rest: Any = None, argument: str = "cube") -> SpectralCoverage | None:
    """The velocity and wavelength range of a WCS's spectral axis, or None if it has none.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        The cube's WCS (any number of axes; its spectral one is found).
    n_channels : int
        The length of the spectral axis.
    convention : {"radio", "optical", "relativistic"}, optional
        By default that of a velocity axis, radio for frequency and wavelength.
    rest : Quantity, optional
        Rest frequency or wavelength, overriding ``RESTFRQ``/``RESTWAV``.
    argument : str
        Name used in error messages.
    """
    if convention is not None:
        check_choice("convention", convention, CONVENTIONS)
    spec = int(wcs.wcs.spec)
    if spec < 0 or n_channels < 1:
        return None
    wcs1 = wcs.sub([spec + 1])
    ctype = str(wcs1.wcs.ctype[0])
    head = ctype[:4].upper()
    edges = _native_si(wcs1, np.array([-0.5, n_channels - 0.5]))
    rest_hz, restwav = rest_frequency(wcs1, rest)
    if rest_hz is None and restwav:
        rest_hz = C_KMS * 1e3 / restwav
    own = AXIS_CONVENTION.get(head)
    conv = convention or own or "radio"
    velocity = wavelength = None
    try:
        r = frequency_ratio(edges, head, rest_hz, restwav, argument, ctype)
    except VanotebookInputError:
        r = None  # a frequency axis without a rest frequency: no velocities
    if own is not None and own == conv and head in ("VRAD", "VOPT", "VELO"):
        v = edges / 1e3
        velocity = (float(v.min()), float(v.max()))
    elif r is not None:
        v = velocity_from_ratio(r, conv)
        velocity = (float(v.min()), float(v.max()))
    if head == "FREQ":
        w = C_KMS * 1e3 / edges
    elif head == "WAVE":
        w = edges
    elif head == "WAVN":
        w = 1.0 / edges
    elif head == "ENER":
        w = 6.62607015e-34 * C_KMS * 1e3 / edges
    elif r is not None and rest_hz:
        w = C_KMS * 1e3 / (r * rest_hz)
    else:
        w = None
    if w is not None:
        wavelength = (float(np.min(w)), float(np.max(w)))
    return SpectralCoverage(ctype, int(n_channels), conv, velocity, wavelength)
