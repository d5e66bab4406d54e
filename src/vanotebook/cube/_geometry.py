"""PV paths in pixels: sample points and polygons along a polyline, and their pixel weights.

The sampling is pvextractor's (``Path.sample_points`` / ``sample_polygons``):
points every ``spacing`` pixels along the broken line, stopping short of the
end; a path with a width becomes one rectangle per step, and a pixel counts
with the area it shares with the rectangle. The weights are computed once, in
numpy, and the kernels then gather pixels with them (`_kernels.pv_gather`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["line_weights", "polygon_weights", "sample_edges"]


def sample_edges(x: np.ndarray, y: np.ndarray, spacing: float):
    """Distances, x and y of the step edges along the polyline (pvextractor's rule)."""
    dd = np.hypot(np.diff(x), np.diff(y))
    d = np.hstack([0.0, np.cumsum(dd)])
    n = int(np.floor(d[-1] / spacing))
    if n == 0:
        return None
    ds = np.linspace(0.0, n * spacing, n + 1)
    return ds, np.interp(ds, d, x), np.interp(ds, d, y), d, dd


def line_weights(x: np.ndarray, y: np.ndarray, shape: tuple[int, int], order: int):
    """``(index, weight)`` of each sample point for nearest (0) or bilinear (1) sampling.

    Indices are into the flattened ``(ny, nx)`` plane. A neighbour outside the
    plane gets index -1 (the caller turns it into NaN); nearest samples outside
    the plane get weight 0.
    """
    ny, nx = shape
    if order == 0:
        xi, yi = np.round(x).astype(np.int64), np.round(y).astype(np.int64)
        ok = (xi >= 0) & (yi >= 0) & (xi < nx) & (yi < ny)
        idx = np.where(ok, yi * nx + xi, 0)[:, None]
        return idx, ok.astype(float)[:, None]
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    idx, wts = [], []
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        xx, yy = x0 + dx, y0 + dy
        w = (fx if dx else 1 - fx) * (fy if dy else 1 - fy)
        inside = (xx >= 0) & (yy >= 0) & (xx < nx) & (yy < ny)
        idx.append(np.where(inside, yy * nx + xx, -1))
        wts.append(w)
    return np.stack(idx, axis=1), np.stack(wts, axis=1)


def _clip_all(poly: np.ndarray, n: np.ndarray, axis: int, value: np.ndarray, below: bool):
    """Clip many convex polygons against one half-plane each (Sutherland-Hodgman, vectorised).

    ``poly`` is ``(K, M, 2)`` with ``n[k]`` vertices in use; ``value`` is ``(K,)``.
    Returns ``(poly, n)`` with at most ``M + 1`` vertices.
    """
    k, m, _ = poly.shape
    idx = np.arange(m)[None, :]
    valid = idx < n[:, None]
    nxt = np.where(idx + 1 < n[:, None], idx + 1, 0)
    q = np.take_along_axis(poly, nxt[..., None], axis=1)
    pa, qa = poly[..., axis], q[..., axis]
    lim = value[:, None]
    pin = pa <= lim if below else pa >= lim
    qin = qa <= lim if below else qa >= lim
    keep = valid & pin
    cross = valid & (pin != qin)
    denom = np.where(cross, qa - pa, 1.0)
    t = np.where(cross, (lim - pa) / denom, 0.0)
    inter = poly + t[..., None] * (q - poly)
    counts = keep.astype(np.int64) + cross
    start = np.cumsum(counts, axis=1) - counts
    out = np.zeros((k, m + 1, 2))
    rows = np.broadcast_to(np.arange(k)[:, None], (k, m))
    out[rows[keep], start[keep]] = poly[keep]
    second = start + keep
    out[rows[cross], second[cross]] = inter[cross]
    return out, counts.sum(axis=1)


def _areas(poly: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Shoelace areas of ``(K, M, 2)`` polygons with ``n`` vertices each (0 below 3)."""
    m = poly.shape[1]
    idx = np.arange(m)[None, :]
    nxt = np.where(idx + 1 < n[:, None], idx + 1, 0)
    q = np.take_along_axis(poly, nxt[..., None], axis=1)
    cross = poly[..., 0] * q[..., 1] - q[..., 0] * poly[..., 1]
    a = 0.5 * np.abs(np.sum(np.where(idx < n[:, None], cross, 0.0), axis=1))
    return np.where(n >= 3, a, 0.0)


def polygon_weights(x: np.ndarray, y: np.ndarray, spacing: float, width: float,
                    shape: tuple[int, int]):
    """``(index, weight)`` of the pixels each step rectangle overlaps, by shared area."""
    ny, nx = shape
    ds, xs, ys, d, dd = sample_edges(x, y, spacing)
    ux, uy = np.diff(x) / dd, np.diff(y) / dd
    interval = np.searchsorted(d, ds) - 1
    interval[0] = 0
    ux, uy = ux[interval], uy[interval]
    h = 0.5 * width
    nstep = len(xs) - 1
    xb, yb = xs[:-1], ys[:-1]
    xe, ye = xb + ux[:-1] * spacing, yb + uy[:-1] * spacing
    ux, uy = ux[:-1], uy[:-1]
    quads = np.stack([np.stack([xb - uy * h, yb + ux * h], -1),
                      np.stack([xe - uy * h, ye + ux * h], -1),
                      np.stack([xe + uy * h, ye - ux * h], -1),
                      np.stack([xb + uy * h, yb - ux * h], -1)], axis=1)  # (nstep, 4, 2)
    owner, px, py = [], [], []
    for i in range(nstep):  # candidate pixels: the quad's box plus a margin, as pvextractor
        qx, qy = quads[i, :, 0], quads[i, :, 1]
        x0, x1 = max(round(qx.min()) - 1, 0), min(round(qx.max()) + 2, nx)
        y0, y1 = max(round(qy.min()) - 1, 0), min(round(qy.max()) + 2, ny)
        gx, gy = np.meshgrid(np.arange(x0, x1), np.arange(y0, y1), indexing="ij")
        owner.append(np.full(gx.size, i))
        px.append(gx.ravel())
        py.append(gy.ravel())
    owner, px, py = np.concatenate(owner), np.concatenate(px), np.concatenate(py)
    poly = quads[owner]
    n = np.full(owner.size, 4)
    for axis, offset, below in ((0, -0.5, False), (0, 0.5, True), (1, -0.5, False),
                                (1, 0.5, True)):
        centre = px if axis == 0 else py
        poly, n = _clip_all(poly, n, axis, centre + offset, below)
    area = _areas(poly, n)
    hit = area > 0
    owner, flat, area = owner[hit], (py * nx + px)[hit], area[hit]
    m = max(1, int(np.bincount(owner, minlength=nstep).max(initial=1)))
    index = np.zeros((nstep, m), np.int64)
    weight = np.zeros((nstep, m), float)
    order = np.argsort(owner, kind="stable")
    owner, flat, area = owner[order], flat[order], area[order]
    first = np.searchsorted(owner, np.arange(nstep))
    slot = np.arange(owner.size) - first[owner]
    index[owner, slot] = flat
    weight[owner, slot] = area
    return index, weight
