"""Gnomonic (tangent-plane) coordinates about a field centre, in degrees.

The sky model lives in the tangent plane of its centre (x east, y north);
these two vectorised functions go between that plane and ICRS positions.
"""

from __future__ import annotations

import numpy as np

__all__ = ["from_tangent", "to_tangent"]


def to_tangent(ra, dec, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """ICRS (deg) to gnomonic offsets (x east, y north; deg) about ``(ra0, dec0)``."""
    a, d = np.radians(ra), np.radians(dec)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cos_c = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    x = np.cos(d) * np.sin(a - a0) / cos_c
    y = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cos_c
    return np.degrees(x), np.degrees(y)


def from_tangent(x, y, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic offsets (deg) about ``(ra0, dec0)`` back to ICRS (deg)."""
    x, y = np.radians(x), np.radians(y)
    d0 = np.radians(dec0)
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.arcsin(np.cos(c) * np.sin(d0) + np.where(rho > 0, y * np.sin(c) * np.cos(d0)
                                                         / np.where(rho > 0, rho, 1), 0))
    ra = np.radians(ra0) + np.arctan2(x * np.sin(c),
                                      rho * np.cos(d0) * np.cos(c) - y * np.sin(d0) * np.sin(c))
    return np.degrees(ra) % 360.0, np.degrees(dec)
