"""Pure numerical kernels of the cross-match, written once against the array API.

Positions become unit vectors; neighbours are found by chord distance on a
kd-tree (`scipy.spatial.cKDTree`, CPU only: the tree search is the one step
with no array-API form). Everything after the search -- separations,
tangent-plane offsets, proper-motion propagation -- runs on whatever array
library the inputs come from (numpy, CuPy, array-api-strict). No Dask here.
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace

__all__ = [
    "angle_to_chord",
    "chord_to_angle",
    "nearest_candidates",
    "propagate",
    "separation",
    "tangent_offsets",
    "unit_vectors",
]

_DEG = math.pi / 180.0
_MAS = _DEG / 3600.0 / 1000.0


def unit_vectors(ra, dec):
    """Unit vectors, shape ``(n, 3)``, of positions in degrees."""
    xp = array_namespace(ra, dec)
    a, d = ra * _DEG, dec * _DEG
    cd = xp.cos(d)
    return xp.stack([cd * xp.cos(a), cd * xp.sin(a), xp.sin(d)], axis=-1)


def radec(v):
    """Positions in degrees (ra in [0, 360)) of vectors of shape ``(n, 3)``."""
    xp = array_namespace(v)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    ra = xp.atan2(y, x) / _DEG
    ra = xp.where(ra < 0, ra + 360.0, ra)
    ra = xp.where(ra >= 360.0, ra - 360.0, ra)
    return ra, xp.atan2(z, xp.sqrt(x * x + y * y)) / _DEG


def _frame(v):
    """Unit east and north vectors at ``v`` (shape ``(n, 3)``); at a pole east is +y."""
    xp = array_namespace(v)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    h = xp.sqrt(x * x + y * y)
    pole = h == 0
    hs = xp.where(pole, 1.0, h)
    ex = xp.where(pole, 0.0, -y / hs)
    ey = xp.where(pole, 1.0, x / hs)
    east = xp.stack([ex, ey, xp.zeros_like(h)], axis=-1)
    north = xp.stack([-z * x / hs, -z * y / hs, h], axis=-1)
    north = xp.where(pole[:, None], xp.stack([-z, xp.zeros_like(z), xp.zeros_like(z)], axis=-1),
                     north)
    return east, north


def propagate(ra, dec, pmra, pmdec, dt):
    """Move positions along great circles by proper motions.

    Parameters
    ----------
    ra, dec : array
        Degrees.
    pmra, pmdec : array
        mas/yr; ``pmra`` includes the cos(dec) factor (Gaia convention).
    dt : array or float
        Years to move by (target epoch minus catalogue epoch).

    Returns
    -------
    ra, dec : array
        Degrees.
    """
    xp = array_namespace(ra, dec, pmra, pmdec)
    p = unit_vectors(ra, dec)
    east, north = _frame(p)
    dt = xp.asarray(dt, dtype=p.dtype)
    step = (pmra * _MAS * dt)[:, None] * east + (pmdec * _MAS * dt)[:, None] * north
    arc = xp.sqrt(xp.sum(step * step, axis=-1))
    safe = xp.where(arc == 0, 1.0, arc)
    sinc = xp.where(arc == 0, 1.0, xp.sin(safe) / safe)
    q = p * xp.cos(arc)[:, None] + step * sinc[:, None]
    return radec(q)


def separation(a, b):
    """Great-circle angle in radians between unit vectors ``a`` and ``b`` (same shape).

    ``atan2(|a x b|, a . b)`` is accurate at every angle, like astropy's
    Vincenty formula.
    """
    xp = array_namespace(a, b)
    cx = a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1]
    cy = a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2]
    cz = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    dot = xp.sum(a * b, axis=-1)
    return xp.atan2(xp.sqrt(cx * cx + cy * cy + cz * cz), dot)


def tangent_offsets(a, b):
    """Offsets (east, north) in radians of ``b`` in the gnomonic plane at ``a``."""
    xp = array_namespace(a, b)
    east, north = _frame(a)
    dot = xp.sum(a * b, axis=-1)
    return xp.sum(b * east, axis=-1) / dot, xp.sum(b * north, axis=-1) / dot


def angle_to_chord(angle_rad: float) -> float:
    """Chord length on the unit sphere of an angle in radians (as astropy computes it)."""
    return float(2.0 * np.sin(0.5 * angle_rad))


def chord_to_angle(chord):
    """Angle in radians of a chord length on the unit sphere."""
    xp = array_namespace(chord)
    return 2.0 * xp.asin(xp.clip(chord * 0.5, 0.0, 1.0))


def nearest_candidates(tree, query: np.ndarray, chord: float, k: int, *, workers: int = -1):
    """The up-to-``k`` nearest tree points within ``chord`` of each query vector (CPU).

    Queries are visited in HEALPix-like spatial order (sorted along a
    coarse grid) for cache locality, then put back in input order.

    Returns
    -------
    dist, idx : ndarray, shape ``(n, k)``
        Chord distances (inf where none) and tree indices (``tree.n`` where none).
    """
    n = query.shape[0]
    if n == 0 or tree.n == 0:
        return np.full((n, k), np.inf), np.full((n, k), tree.n, dtype=np.intp)
    order = _spatial_order(query)
    bound = np.nextafter(chord, np.inf)  # inclusive, as query_ball_point
    d, i = tree.query(query[order], k=k, distance_upper_bound=bound, workers=workers)
    d, i = d.reshape(n, k), i.reshape(n, k)
    dist, idx = np.empty_like(d), np.empty_like(i)
    dist[order], idx[order] = d, i
    return dist, idx


def _spatial_order(v: np.ndarray) -> np.ndarray:
    """A permutation that puts nearby vectors together (Morton order on a 2**10 cube grid)."""
    cells = np.clip(((v + 1.0) * 512.0).astype(np.int64), 0, 1023)
    key = np.zeros(v.shape[0], np.int64)
    for bit in range(10):
        for axis in range(3):
            key |= ((cells[:, axis] >> bit) & 1) << (3 * bit + axis)
    return np.argsort(key, kind="stable")
