"""Epochs as the archive compares them: MJD, whatever form they come in.

A query's epoch range is ``(start, end)`` as astropy `~astropy.time.Time`,
ISO strings or MJD numbers (either may be None). A catalogue's epoch is a
number or a column: Julian years (``2016.0``, unit ``yr``) or MJD (unit
``d``); without a unit, values between 1000 and 3000 are years and values
between 10,000 and 100,000 are MJD, and anything else is refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import VanotebookInputError

_QUERY = "(start, end) as Time, ISO strings or MJD"


def to_mjd(value: Any) -> float | None:
    """One query bound as MJD (None stays None)."""
    if value is None:
        return None
    from astropy.time import Time

    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return float(value)
    try:
        return float(Time(value).mjd)
    except (ValueError, TypeError) as exc:
        raise VanotebookInputError("epoch", _QUERY, value) from exc


def epoch_range(epoch: Any) -> tuple[float | None, float | None]:
    """``(start, end)`` of a query as MJD."""
    if isinstance(epoch, tuple | list) and len(epoch) == 2:
        return to_mjd(epoch[0]), to_mjd(epoch[1])
    raise VanotebookInputError("epoch", _QUERY, epoch)


def values_to_mjd(values: Any, unit: str | None, *, argument: str = "epoch") -> np.ndarray:
    """Catalogue epochs (years or MJD, see the module notes) as MJD."""
    import astropy.units as u

    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if unit:
        try:
            unit_ = u.Unit(unit)
            days = unit_.to(u.d)
        except (ValueError, u.UnitConversionError) as exc:
            raise VanotebookInputError(argument, "an epoch unit (yr or d)", unit) from exc
        if days < 365:  # d, h, s: a date as MJD in that unit
            return values * days
        return _jyear_mjd(values * days / 365.25)
    if not finite.size:
        return values
    if finite.min() > 1000 and finite.max() < 3000:
        return _jyear_mjd(values)
    if finite.min() > 10_000 and finite.max() < 100_000:
        return values
    raise VanotebookInputError(
        argument, "epochs in Julian years (1000-3000) or MJD (10,000-100,000), or a unit",
        f"values from {finite.min():g} to {finite.max():g} without a unit")


def _jyear_mjd(years: np.ndarray) -> np.ndarray:
    """Julian years (2016.0) as MJD; NaN stays NaN."""
    return np.where(np.isfinite(years), 51544.5 + (years - 2000.0) * 365.25, np.nan)
