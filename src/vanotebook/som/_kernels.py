"""Pure numerical kernels of the batch SOM, written once against the array API.

Nothing here knows about Dask. This is the reference path; numpy rows with
numba installed take the fused CPU equal in `._fast` (tested against this one).
The same functions run on numpy, CuPy and ``array_api_strict`` arrays
(``array_api_compat.array_namespace`` picks the namespace). Two things the
standard lacks come through small shims that pick the fast native route for
numpy / CuPy and a portable one otherwise:

* `segment_sum` — per-neuron sums of the rows that chose it (scipy /
  cupyx sparse one-hot product; a dense one-hot GEMM elsewhere);
* `_mask_best` — knock each row's best unit out to find the second best
  (in-place fancy assignment; `where` elsewhere).

The distance trick
------------------
Squared distances are ``||x||² - 2 x·w + ||w||²``. `prepare` centres the data
on a fixed vector (distances do not change, but float32 cancellation does)
and appends a column of ones; `prepare_prototypes` turns prototypes ``W``
into the ``(D + 1, K)`` matrix ``[-2 Wᵀ; ||w||²]``. One GEMM then gives
``score = ||w||² - 2 x·w`` for every row and unit, the best-matching unit is
the row's ``argmin`` and its squared distance is ``||x||² + min score``. The
appended ones column also makes the one-hot product return the hit counts as
its last column, so the batch numerator and denominator come from one call.
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import is_cupy_namespace, is_numpy_namespace

from .._optional import namespace as array_namespace

__all__ = [
    "adjacency",
    "chunk_rows",
    "epoch_stats",
    "grid_coordinates",
    "grid_distances",
    "neighbourhood",
    "prepare",
    "prepare_prototypes",
    "radius_at",
    "scores",
    "segment_sum",
    "update_prototypes",
]

_HEX_DY = math.sqrt(3.0) / 2.0
# Grid distance below which two units count as neighbours: the 8 around a unit
# on a rectangular grid (diagonal sqrt 2), the 6 at distance 1 on a hexagonal one.
_ADJACENT = {"rectangular": 1.5, "hexagonal": 1.01}


# ----------------------------------------------------------------------------- the grid
def grid_coordinates(rows: int, cols: int, topology: str) -> np.ndarray:
    """Planar ``(x, y)`` position of every unit, shape ``(rows * cols, 2)``, row-major.

    Unit ``k`` sits at row ``k // cols``, column ``k % cols``. On a hexagonal grid
    odd rows shift right by half a unit and rows are ``sqrt(3)/2`` apart, so all
    six neighbours are at distance 1.
    """
    r, c = np.divmod(np.arange(rows * cols), cols)
    if topology == "hexagonal":
        return np.column_stack([c + 0.5 * (r % 2), r * _HEX_DY]).astype(np.float64)
    return np.column_stack([c, r]).astype(np.float64)


def grid_distances(rows: int, cols: int, topology: str, periodic: bool) -> np.ndarray:
    """Euclidean distance between every pair of units on the map, shape ``(K, K)``.

    A periodic (toroidal) map takes the shortest way round: the minimum over
    the eight shifted copies of the grid (``cols`` across, ``rows`` rows down).
    """
    xy = grid_coordinates(rows, cols, topology)
    delta = xy[:, None, :] - xy[None, :, :]
    if not periodic:
        return np.sqrt((delta**2).sum(-1))
    width = float(cols)
    height = rows * (_HEX_DY if topology == "hexagonal" else 1.0)
    best = None
    for sx in (-width, 0.0, width):
        for sy in (-height, 0.0, height):
            d = (delta[..., 0] + sx) ** 2 + (delta[..., 1] + sy) ** 2
            best = d if best is None else np.minimum(best, d)
    return np.sqrt(best)


def adjacency(distances: np.ndarray, topology: str) -> np.ndarray:
    """Boolean ``(K, K)``: units that are grid neighbours (or the same unit)."""
    return distances < _ADJACENT[topology]


def radius_at(epoch: int | float, radius0: float, radius_decay: float) -> float:
    """Neighbourhood radius in epoch ``t`` (from 0): ``radius0 * exp(-t / radius_decay)``."""
    return float(radius0) * math.exp(-float(epoch) / float(radius_decay))


def neighbourhood(distances, radius: float, kind: str):
    """Neighbourhood weights ``h(d)`` for grid distances ``d`` and a radius.

    ``gaussian``: ``exp(-d² / (2 radius²))`` everywhere (no cut-off);
    ``bubble``: 1 where ``d <= radius``, else 0.
    """
    xp = array_namespace(distances)
    if kind == "bubble":
        return xp.astype(distances <= radius, distances.dtype)
    return xp.exp(-(distances * distances) / (2.0 * radius * radius))


# ----------------------------------------------------------------------------- per rows
def chunk_rows(n_units: int, budget: int = 1 << 20) -> int:
    """Rows per inner chunk so that one ``rows × K`` float32 score block stays ~4 MB."""
    return max(256, budget // max(n_units, 1))


def prepare(x, centre):
    """Centred data with a ones column, and squared row norms.

    Parameters
    ----------
    x : array, shape (n, D)
    centre : array, shape (D,)
        Any fixed vector (the training mean); distances do not depend on it.

    Returns
    -------
    xa : array, shape (n, D + 1), float32
        ``[x - centre, 1]``.
    norms : array, shape (n,), float32
        ``||x - centre||²``.
    """
    xp = array_namespace(x, centre)
    xc = xp.astype(x, xp.float32) - xp.astype(centre, xp.float32)
    norms = xp.sum(xc * xc, axis=1)
    ones = xp.ones((xc.shape[0], 1), dtype=xp.float32)
    return xp.concat([xc, ones], axis=1), norms


def prepare_prototypes(w):
    """``[-2 Wᵀ; ||w||²]``, shape ``(D + 1, K)`` float32, for centred prototypes ``w``."""
    xp = array_namespace(w)
    w = xp.astype(w, xp.float32)
    return xp.concat([-2.0 * w.T, xp.sum(w * w, axis=1)[None, :]], axis=0)


def scores(xa, wa):
    """``||w||² - 2 x·w`` for every row of prepared ``xa`` and unit, shape ``(n, K)``."""
    return xa @ wa


def _mask_best(s, best):
    """``s`` with each row's ``best`` column set to +inf (may modify ``s``)."""
    xp = array_namespace(s)
    if is_numpy_namespace(xp) or is_cupy_namespace(xp):
        s[xp.arange(s.shape[0]), best] = xp.inf
        return s
    cols = xp.arange(s.shape[1], dtype=best.dtype)
    return xp.where(cols[None, :] == best[:, None], xp.inf, s)


#: rows times units up to which numpy rows take the dense one-hot product (at most 16 MB,
#: the size of the score block beside it) rather than scipy's sparse one, whose import
#: (~0.2 s) would be most of a small map's first fit in a fresh process
_DENSE_ONEHOT = 1 << 22


def segment_sum(best, xa, n_units: int):
    """Per-unit sums of the rows of ``xa`` that chose each unit, shape ``(K, D + 1)``.

    With prepared data (last column ones) the last column is the hit count.
    """
    xp = array_namespace(xa)
    n = xa.shape[0]
    if is_numpy_namespace(xp) and n * n_units > _DENSE_ONEHOT:
        from scipy.sparse import csr_matrix

        onehot = csr_matrix(
            (np.ones(n, np.float32), (np.asarray(best), np.arange(n))), shape=(n_units, n)
        )
        return np.asarray(onehot @ xa)
    if is_cupy_namespace(xp):
        from cupyx.scipy.sparse import csr_matrix as cu_csr

        onehot = cu_csr(
            (xp.ones(n, dtype=xp.float32), (best, xp.arange(n))), shape=(n_units, n)
        )
        return onehot @ xa
    units = xp.arange(n_units, dtype=best.dtype)
    onehot = xp.astype(units[:, None] == best[None, :], xa.dtype)
    return onehot @ xa


def epoch_stats(xa, norms, wa, adjacent=None, *, sums: bool = True, chunk: int | None = None):
    """What one pass over some rows contributes to a batch-SOM epoch.

    Parameters
    ----------
    xa, norms : arrays
        Prepared rows and their squared norms (`prepare`).
    wa : array, shape (D + 1, K)
        Prepared prototypes (`prepare_prototypes`).
    adjacent : array of bool, shape (K, K), optional
        Grid adjacency; when given, the topographic error count is returned.
    sums : bool
        Whether to return the per-unit sums (False for metrics only).
    chunk : int, optional
        Rows per inner chunk (default `chunk_rows`), bounding the ``rows × K``
        score block in memory.

    Returns
    -------
    dict
        ``sums`` (K, D + 1) float64 numpy-namespace array of the input's
        namespace (numerator columns then hit counts) when asked;
        ``sq_error`` sum of squared distances to the BMU, ``error`` sum of
        distances, ``topo`` count of rows whose two best units are not
        adjacent (None without ``adjacent``), ``n`` rows.
    """
    xp = array_namespace(xa, wa)
    n, k = xa.shape[0], wa.shape[1]
    step = chunk or chunk_rows(k)
    total = xp.zeros((k, xa.shape[1]), dtype=xp.float64) if sums else None
    sq_error = error = 0.0
    topo = 0 if adjacent is not None else None
    for start in range(0, n, step):
        stop = min(start + step, n)
        s = scores(xa[start:stop, :], wa)
        best = xp.argmin(s, axis=1)
        smin = _row_pick(s, best)
        d2 = xp.clip(norms[start:stop] + smin, 0.0, None)
        sq_error += float(xp.sum(xp.astype(d2, xp.float64)))
        error += float(xp.sum(xp.astype(xp.sqrt(d2), xp.float64)))
        if adjacent is not None:
            second = xp.argmin(_mask_best(s, best), axis=1)
            ok = _pair_lookup(adjacent, best, second)
            topo += int(xp.sum(xp.astype(~ok, xp.int64)))
        if sums:
            total = total + xp.astype(segment_sum(best, xa[start:stop, :], k), xp.float64)
    return {"sums": total, "sq_error": sq_error, "error": error, "topo": topo, "n": n}


def _pair_lookup(table, i, j):
    """``table[i, j]`` element-wise for index arrays ``i``, ``j`` (flat `take`)."""
    xp = array_namespace(table)
    k = table.shape[1]
    flat = xp.reshape(table, (-1,))
    return xp.take(flat, xp.astype(i, xp.int64) * k + xp.astype(j, xp.int64))


def _row_pick(s, cols):
    """``s[i, cols[i]]`` for every row (a gather, cheaper than a second reduction)."""
    xp = array_namespace(s)
    rows = xp.arange(s.shape[0], dtype=xp.int64)
    flat = xp.reshape(s, (-1,))
    return xp.take(flat, rows * s.shape[1] + xp.astype(cols, xp.int64))


def best_units(xa, norms, wa, *, chunk: int | None = None):
    """Best-matching unit and squared distance of every prepared row."""
    xp = array_namespace(xa, wa)
    n, k = xa.shape[0], wa.shape[1]
    step = chunk or chunk_rows(k)
    best, dist = [], []
    for start in range(0, n, step):
        stop = min(start + step, n)
        s = scores(xa[start:stop, :], wa)
        b = xp.argmin(s, axis=1)
        best.append(b)
        dist.append(xp.clip(norms[start:stop] + _row_pick(s, b), 0.0, None))
    if not best:
        return xp.zeros((0,), dtype=xp.int64), xp.zeros((0,), dtype=xp.float32)
    return xp.concat(best), xp.concat(dist)


def two_best_units(xa, wa, *, chunk: int | None = None):
    """Best and second-best unit of every prepared row."""
    xp = array_namespace(xa, wa)
    n, k = xa.shape[0], wa.shape[1]
    step = chunk or chunk_rows(k)
    first, second = [], []
    for start in range(0, n, step):
        stop = min(start + step, n)
        s = scores(xa[start:stop, :], wa)
        b = xp.argmin(s, axis=1)
        first.append(b)
        second.append(xp.argmin(_mask_best(s, b), axis=1))
    return xp.concat(first), xp.concat(second)


def update_prototypes(w, sums, h):
    """Batch update: ``w_j = Σ_k h_jk S_k / Σ_k h_jk n_k``; units with no weight keep ``w_j``.

    ``sums`` is the reduced ``(K, D + 1)`` numerator/count array, ``h`` the
    ``(K, K)`` neighbourhood weights; all in float64.
    """
    xp = array_namespace(w, sums, h)
    numerator = h @ sums[:, :-1]
    denominator = h @ sums[:, -1]
    safe = denominator > 0
    new = numerator / xp.where(safe, denominator, 1.0)[:, None]
    return xp.where(safe[:, None], new, xp.astype(w, xp.float64))
