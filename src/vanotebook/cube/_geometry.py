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


def _clip(poly: list[tuple[float, float]], axis: int, value: float, keep_below: bool):
    out = []
    n = len(poly)
    for i in range(n):
        p, q = poly[i], poly[(i + 1) % n]
        pin = p[axis] <= value if keep_below else p[axis] >= value
        qin = q[axis] <= value if keep_below else q[axis] >= value
        if pin:
            out.append(p)
        if pin != qin:
            t = (value - p[axis]) / (q[axis] - p[axis])
            out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return out


def _area(poly) -> float:
    if len(poly) < 3:
        return 0.0
    a = 0.0
    for i in range(len(poly)):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % len(poly)]
        a += x1 * y2 - x2 * y1
    return abs(a) / 2.0


def _overlap(xmin: float, xmax: float, ymin: float, ymax: float, poly) -> float:
    """Area of a convex polygon inside the square ``[xmin, xmax] x [ymin, ymax]``."""
    for axis, value, below in ((0, xmin, False), (0, xmax, True), (1, ymin, False),
                               (1, ymax, True)):
        poly = _clip(poly, axis, value, below)
        if not poly:
            return 0.0
    return _area(poly)


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
    rows = []
    for i in range(len(xs) - 1):
        xb, yb = xs[i], ys[i]
        xe, ye = xb + ux[i] * spacing, yb + uy[i] * spacing
        poly = [(xb - uy[i] * h, yb + ux[i] * h), (xe - uy[i] * h, ye + ux[i] * h),
                (xe + uy[i] * h, ye - ux[i] * h), (xb + uy[i] * h, yb - ux[i] * h)]
        px = [p[0] for p in poly]
        py = [p[1] for p in poly]
        x0 = max(round(min(px)) - 1, 0)
        x1 = min(round(max(px)) + 2, nx)
        y0 = max(round(min(py)) - 1, 0)
        y1 = min(round(max(py)) + 2, ny)
        row = []
        for xp in range(x0, x1):
            for yp in range(y0, y1):
                a = _overlap(xp - 0.5, xp + 0.5, yp - 0.5, yp + 0.5, poly)
                if a > 0:
                    row.append((yp * nx + xp, a))
        rows.append(row)
    m = max(1, max((len(r) for r in rows), default=1))
    index = np.zeros((len(rows), m), np.int64)
    weight = np.zeros((len(rows), m), float)
    for i, row in enumerate(rows):
        for j, (k, a) in enumerate(row):
            index[i, j], weight[i, j] = k, a
    return index, weight
