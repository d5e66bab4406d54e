"""Pure numerical kernels of the cross-match, written once against the array API.

Positions become unit vectors; neighbours are found by chord distance, on the
CPU (the search is the one step with no array-API form): `pairs_within` does a
sort-merge join on a 3-D grid of cells one chord wide, compiled by numba for
large inputs (where numba is installed), else in vectorised numpy. Both give
the same pairs, ordered by left row then distance. Everything after the
search -- separations, tangent-plane offsets, proper-motion propagation --
runs on whatever array library the inputs come from (numpy, CuPy,
array-api-strict). No Dask here.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from .._optional import namespace

__all__ = [
    "angle_to_chord",
    "chord_to_angle",
    "pairs_within",
    "propagate",
    "separation",
    "tangent_offsets",
    "unit_vectors",
]

_DEG = math.pi / 180.0
_MAS = _DEG / 3600.0 / 1000.0


def unit_vectors(ra, dec):
    """Unit vectors, shape ``(n, 3)``, of positions in degrees."""
    xp = namespace(ra, dec)
    a, d = ra * _DEG, dec * _DEG
    cd = xp.cos(d)
    return xp.stack([cd * xp.cos(a), cd * xp.sin(a), xp.sin(d)], axis=-1)


def radec(v):
    """Positions in degrees (ra in [0, 360)) of vectors of shape ``(n, 3)``."""
    xp = namespace(v)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    ra = xp.atan2(y, x) / _DEG
    ra = xp.where(ra < 0, ra + 360.0, ra)
    ra = xp.where(ra >= 360.0, ra - 360.0, ra)
    return ra, xp.atan2(z, xp.sqrt(x * x + y * y)) / _DEG


def _frame(v):
    """Unit east and north vectors at ``v`` (shape ``(n, 3)``); at a pole east is +y."""
    xp = namespace(v)
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
    xp = namespace(ra, dec, pmra, pmdec)
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
    xp = namespace(a, b)
    cx = a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1]
    cy = a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2]
    cz = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    dot = xp.sum(a * b, axis=-1)
    return xp.atan2(xp.sqrt(cx * cx + cy * cy + cz * cz), dot)


def tangent_offsets(a, b):
    """Offsets (east, north) in radians of ``b`` in the gnomonic plane at ``a``."""
    xp = namespace(a, b)
    x, y, z = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    h = xp.sqrt(x * x + y * y)
    pole = h == 0
    hs = xp.where(pole, 1.0, h)
    dot = x * bx + y * by + z * bz
    # east = (-y, x, 0) / h, north = (-z x, -z y, h^2) / h; at a pole east = +y, north = -z x^
    east = xp.where(pole, by, (x * by - y * bx) / hs)
    north = xp.where(pole, -z * bx, (h * h * bz - z * (x * bx + y * by)) / hs)
    return east / dot, north / dot


def angle_to_chord(angle_rad: float) -> float:
    """Chord length on the unit sphere of an angle in radians (as astropy computes it)."""
    return float(2.0 * np.sin(0.5 * angle_rad))


def chord_to_angle(chord):
    """Angle in radians of a chord length on the unit sphere."""
    xp = namespace(chord)
    return 2.0 * xp.asin(xp.clip(chord * 0.5, 0.0, 1.0))


# ----------------------------------------------------------------------------- pair search
SEARCH_ENGINES = ("auto", "grid", "numpy")
#: Rows (left plus right) above which "auto" takes the numba grid. Below it the numpy
#: join (~40 ms at 2 x 7.5e4 rows here) costs far less than numba's one-time ~0.9 s in
#: a fresh process; above it the compiled join's warm speed wins for repeated matches
GRID_ROWS = 150_000
_GRID_MAX_CELLS = 2_000_000  # cells per axis; (n_cells + 2) ** 3 must fit in int64
_NUMPY_STEP = 1 << 22  # candidate pairs held at once by the numpy join
_NUMBA_LOCK = threading.Lock()  # numba's default (workqueue) layer refuses concurrent calls
_JIT: dict | None = None


def pairs_within(lra, ldec, rra, rdec, chord: float, *, engine: str = "auto"):
    """Every (left, right) pair of positions closer than ``chord`` on the unit sphere (CPU).

    Both engines do the same sort-merge join on a 3-D grid of cells one chord
    wide: each left vector meets the right vectors of its 27 neighbouring
    cells, and the pairs are exactly those with a squared chord (computed in
    one order, in float64) of at most ``chord ** 2``.

    Parameters
    ----------
    lra, ldec, rra, rdec : ndarray
        Positions in degrees (finite).
    chord : float
        Largest chord length (`angle_to_chord` of the radius), inclusive.
    engine : {"auto", "grid", "numpy"}
        "grid": the join compiled by numba, in parallel (needs numba);
        "numpy": the join in vectorised numpy, in bounded steps; "auto": the
        grid for more than `GRID_ROWS` rows in all (where numba is installed),
        else numpy. The grid is faster warm, but the first use of numba in a
        process costs about 0.9 s (its import and its compiled kernels'
        loading), more than numpy takes on that many rows. The choice depends
        on the sizes only, so the same inputs always take the same path (and
        give the same bytes).

    Returns
    -------
    li, ri : ndarray of int64
        Pair indices, sorted by ``li`` and, within a left row, by distance
        (ties by right index).
    lxyz, rxyz : ndarray, shape ``(n, 3)``
        The unit vectors of all left and right positions (float64).
    d2 : ndarray
        The squared chord of each pair, as the search computed it (float64):
        ``chord_to_angle(sqrt(d2))`` is its separation, without a second pass
        over the pairs' vectors.
    """
    from .._optional import HAS_NUMBA

    if engine == "auto":
        engine = "grid" if HAS_NUMBA and np.size(lra) + np.size(rra) > GRID_ROWS else "numpy"
    if engine == "grid":
        return _pairs_grid(lra, ldec, rra, rdec, chord)
    lxyz = np.asarray(unit_vectors(np.asarray(lra, np.float64), np.asarray(ldec, np.float64)))
    rxyz = np.asarray(unit_vectors(np.asarray(rra, np.float64), np.asarray(rdec, np.float64)))
    li, ri, d2 = _pairs_numpy(lxyz, rxyz, chord)
    return li, ri, lxyz, rxyz, d2


def _grid(chord: float) -> tuple[float, int]:
    """Cell size (at least one chord, so a pair lies in neighbouring cells) and cells per axis."""
    cell = max(chord * (1.0 + 1e-9), 2.0 / _GRID_MAX_CELLS)
    return cell, int(2.0 / cell) + 3


def _cell_keys(xyz: np.ndarray, cell: float, n: int) -> np.ndarray:
    """The grid cell of each unit vector as one int64 key, (x, y, z) indices 1..n-2."""
    ix = ((xyz + 1.0) / cell).astype(np.int64) + 1
    return (ix[:, 0] * n + ix[:, 1]) * n + ix[:, 2]


def _pairs_numpy(lxyz: np.ndarray, rxyz: np.ndarray, chord: float):
    nl, nr = len(lxyz), len(rxyz)
    if nl == 0 or nr == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    cell, n = _grid(chord)
    lkey, rkey = _cell_keys(lxyz, cell, n), _cell_keys(rxyz, cell, n)
    lorder = np.argsort(lkey, kind="stable")  # sorted needles: searches 4x faster
    rorder = np.argsort(rkey, kind="stable")
    lks, rks = lkey[lorder], rkey[rorder]
    # for each of the 9 neighbouring (x, y) columns, the 3 z-cells around a left
    # vector are one contiguous range of sorted right keys: [lo, hi) per (row, column)
    shifts = [(dx * n + dy) * n for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    lo = np.stack([np.searchsorted(rks, lks + s - 1, "left") for s in shifts], axis=1)
    hi = np.stack([np.searchsorted(rks, lks + s + 1, "right") for s in shifts], axis=1)
    counts = hi - lo
    per_row = counts.sum(axis=1)
    ends = np.cumsum(per_row)
    chord2 = chord * chord
    lis, ris, d2s = [], [], []
    a = 0
    while a < nl:  # sorted left rows [a, b): at most _NUMPY_STEP candidates (or one row)
        done = int(ends[a - 1]) if a else 0
        b = max(a + 1, int(np.searchsorted(ends, done + _NUMPY_STEP, "right")))
        c, s = counts[a:b].ravel(), lo[a:b].ravel()
        first = np.cumsum(c) - c
        pos = np.repeat(s - first, c) + np.arange(int(c.sum()))
        li = np.repeat(lorder[a:b], per_row[a:b])
        ri = rorder[pos]
        ex = lxyz[li, 0] - rxyz[ri, 0]
        ey = lxyz[li, 1] - rxyz[ri, 1]
        ez = lxyz[li, 2] - rxyz[ri, 2]
        d2 = ex * ex + ey * ey + ez * ez
        near = d2 <= chord2
        lis.append(li[near])
        ris.append(ri[near])
        d2s.append(d2[near])
        a = b
    li, ri, d2 = np.concatenate(lis), np.concatenate(ris), np.concatenate(d2s)
    order = np.lexsort((ri, d2, li))
    return li[order].astype(np.int64), ri[order].astype(np.int64), d2[order]


def _jit():
    """Compile (once, cached on disk) the numba kernels of the grid search."""
    global _JIT
    with _NUMBA_LOCK:
        if _JIT is None:
            _JIT = _compile()
    return _JIT


def _compile() -> dict:
    import numba
    from numba import prange

    opts = {"parallel": True, "cache": True, "nogil": True, "fastmath": False}

    @numba.njit(**opts)
    def vectors_keys(ra, dec, cell, n, xyz, key):  # pragma: no cover - compiled
        for i in prange(ra.size):
            a = ra[i] * _DEG
            d = dec[i] * _DEG
            cd = math.cos(d)
            x = cd * math.cos(a)
            y = cd * math.sin(a)
            z = math.sin(d)
            xyz[i, 0] = x
            xyz[i, 1] = y
            xyz[i, 2] = z
            ix = np.int64((x + 1.0) / cell) + 1
            iy = np.int64((y + 1.0) / cell) + 1
            iz = np.int64((z + 1.0) / cell) + 1
            key[i] = (ix * n + iy) * n + iz

    @numba.njit(**opts)
    def take3(xyz, order, out):  # pragma: no cover - compiled
        for i in prange(order.size):
            j = order[i]
            out[i, 0] = xyz[j, 0]
            out[i, 1] = xyz[j, 1]
            out[i, 2] = xyz[j, 2]

    @numba.njit(**opts)
    def bucket_argsort(key, kmin, shift, nb, counts, order, keys):  # pragma: no cover
        # a counting sort on the high bits of key - kmin (nb buckets), then each
        # bucket by the whole key in parallel (insertion sort while short); fills
        # the order and the sorted keys (all three arrays come from numpy: its large
        # allocations fault in huge pages, numba's in 4 kB ones, ~4 us each here)
        counts[:] = 0
        for i in range(key.size):
            counts[((key[i] - kmin) >> shift) + 1] += 1
        for b in range(nb):
            counts[b + 1] += counts[b]
        fill = counts[:-1].copy()
        for i in range(key.size):
            b = (key[i] - kmin) >> shift
            order[fill[b]] = i
            keys[fill[b]] = key[i]
            fill[b] += 1
        for b in prange(nb):
            lo, hi = counts[b], counts[b + 1]
            if hi - lo > 48:
                o = np.argsort(keys[lo:hi])
                order[lo:hi] = order[lo:hi][o]
                keys[lo:hi] = keys[lo:hi][o]
                continue
            for j in range(lo + 1, hi):
                o, k = order[j], keys[j]
                m = j - 1
                while m >= lo and keys[m] > k:
                    order[m + 1] = order[m]
                    keys[m + 1] = keys[m]
                    m -= 1
                order[m + 1] = o
                keys[m + 1] = k

    @numba.njit(**opts)
    def join(lkey, lxyz, rkey, rxyz, n, chord2, starts, todo, room, counts, rows, out_r,
             out_d, found):  # pragma: no cover - compiled
        # lkey/rkey sorted; for each of the 9 neighbouring (x, y) columns, the 3
        # z-cells around a left row are one contiguous key range of rkey, and
        # its start only moves forward as lkey grows: a merge, no search.
        # Chunk todo[t] of sorted left rows writes its pairs (row, right, d2) in
        # rows/out_r/out_d[room[t]:room[t + 1]] while they fit, and counts them all
        # (per row in counts, per chunk in found): a chunk that overflows is redone.
        m = rkey.size
        for t in prange(todo.size):
            c = todo[t]
            s0, s1 = starts[c], starts[c + 1]
            at, end = room[t], room[t + 1]
            for i in range(s0, s1):
                counts[i] = 0
            if s0 == s1:
                found[t] = 0
                continue
            for dx in range(-1, 2):
                for dy in range(-1, 2):
                    shift = (dx * n + dy) * n
                    p = np.searchsorted(rkey, lkey[s0] + shift - 1)
                    for i in range(s0, s1):
                        lo = lkey[i] + shift - 1
                        hi = lo + 2
                        while p < m and rkey[p] < lo:
                            p += 1
                        q = p
                        x, y, z = lxyz[i, 0], lxyz[i, 1], lxyz[i, 2]
                        while q < m and rkey[q] <= hi:
                            ex = x - rxyz[q, 0]
                            ey = y - rxyz[q, 1]
                            ez = z - rxyz[q, 2]
                            d2 = ex * ex + ey * ey + ez * ez
                            if d2 <= chord2:
                                if at < end:
                                    rows[at] = i
                                    out_r[at] = q
                                    out_d[at] = d2
                                at += 1
                                counts[i] += 1
                            q += 1
            found[t] = at - room[t]

    @numba.njit(**opts)
    def place(todo, begin, found, rows, buf_r, buf_d, starts, lorder, rorder, offsets_orig,
              out_r, out_d):  # pragma: no cover - compiled
        # move each chunk's pairs to their left row's place in input order
        for t in prange(todo.size):
            c = todo[t]
            s0, s1 = starts[c], starts[c + 1]
            fill = np.empty(s1 - s0, np.int64)
            for i in range(s0, s1):
                fill[i - s0] = offsets_orig[lorder[i]]
            for j in range(begin[t], begin[t] + found[t]):
                k = rows[j] - s0
                out_r[fill[k]] = rorder[buf_r[j]]
                out_d[fill[k]] = buf_d[j]
                fill[k] += 1

    @numba.njit(**opts)
    def sort_segments(offsets_orig, out_r, out_d):  # pragma: no cover - compiled
        # insertion sort of each left row's (short) candidate list by (distance, right index)
        for i in prange(offsets_orig.size - 1):
            a, b = offsets_orig[i], offsets_orig[i + 1]
            for j in range(a + 1, b):
                d, r = out_d[j], out_r[j]
                k = j - 1
                while k >= a and (out_d[k] > d or (out_d[k] == d and out_r[k] > r)):
                    out_d[k + 1] = out_d[k]
                    out_r[k + 1] = out_r[k]
                    k -= 1
                out_d[k + 1] = d
                out_r[k + 1] = r

    return {"vectors_keys": vectors_keys, "take3": take3, "bucket_argsort": bucket_argsort,
            "join": join, "place": place, "sort_segments": sort_segments}


def _bucket_args(key: np.ndarray) -> tuple[int, int, int]:
    """(smallest key, shift, buckets) for `bucket_argsort`: about one bucket per 4 keys."""
    kmin, kmax = int(key.min()), int(key.max())
    target = max(1, min(key.size // 4, 1 << 22)).bit_length()
    shift = max(0, (kmax - kmin).bit_length() - target)
    return kmin, shift, ((kmax - kmin) >> shift) + 1


def _pairs_grid(lra, ldec, rra, rdec, chord):
    f = _jit()
    lra, ldec = np.ascontiguousarray(lra, np.float64), np.ascontiguousarray(ldec, np.float64)
    rra, rdec = np.ascontiguousarray(rra, np.float64), np.ascontiguousarray(rdec, np.float64)
    nl, nr = lra.size, rra.size
    cell, n = _grid(chord)
    chord2 = chord * chord
    lxyz, rxyz = np.empty((nl, 3)), np.empty((nr, 3))
    lkey, rkey = np.empty(nl, np.int64), np.empty(nr, np.int64)
    with _NUMBA_LOCK:
        f["vectors_keys"](lra, ldec, cell, n, lxyz, lkey)
        f["vectors_keys"](rra, rdec, cell, n, rxyz, rkey)
    if nl == 0 or nr == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), lxyz, rxyz, np.zeros(0)
    lorder, lks, rorder, rks = (np.empty(m, np.int64) for m in (nl, nl, nr, nr))
    lxs, rxs = np.empty((nl, 3)), np.empty((nr, 3))
    with _NUMBA_LOCK:
        for key, order, keys, xyz, xs in ((lkey, lorder, lks, lxyz, lxs),
                                          (rkey, rorder, rks, rxyz, rxs)):
            kmin, shift, nb = _bucket_args(key)
            f["bucket_argsort"](key, kmin, shift, nb, np.empty(nb + 1, np.int64), order, keys)
            f["take3"](xyz, order, xs)
    chunks = min(nl, 256)
    starts = np.linspace(0, nl, chunks + 1).astype(np.int64)
    # room for two pairs per left row (and 16 per chunk) at first; chunks with more
    # pairs are joined again into room of their exact size
    todo = np.arange(chunks, dtype=np.int64)
    room = 2 * starts + 16 * np.arange(chunks + 1)
    counts = np.empty(nl, np.int64)
    passes = []
    while todo.size:
        size = int(room[-1])
        rows, buf_r, buf_d = np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size)
        found = np.empty(todo.size, np.int64)
        with _NUMBA_LOCK:
            f["join"](lks, lxs, rks, rxs, n, chord2, starts, todo, room, counts, rows, buf_r,
                      buf_d, found)
        fits = found <= np.diff(room)
        passes.append((todo[fits], room[:-1][fits], found[fits], rows, buf_r, buf_d))
        todo = todo[~fits]
        room = np.concatenate([[0], np.cumsum(found[~fits])])
    counts_orig = np.empty(nl, np.int64)
    counts_orig[lorder] = counts
    offsets_orig = np.zeros(nl + 1, np.int64)
    np.cumsum(counts_orig, out=offsets_orig[1:])
    total = int(offsets_orig[-1])
    out_r, out_d = np.empty(total, np.int64), np.empty(total, np.float64)
    with _NUMBA_LOCK:
        for done, begin, found, rows, buf_r, buf_d in passes:
            f["place"](done, begin, found, rows, buf_r, buf_d, starts, lorder, rorder,
                       offsets_orig, out_r, out_d)
        f["sort_segments"](offsets_orig, out_r, out_d)
    li = np.repeat(np.arange(nl, dtype=np.int64), counts_orig)
    return li, out_r, lxyz, rxyz, out_d
