"""Background matching the way Montage does it (mDiff, mFitplane, mBgModel).

For every pair of overlapping tiles, both are resampled onto the output
grid in their overlap and the difference is fitted, with sigma clipping,
by an offset or a plane in output-pixel coordinates (`fit_overlaps`). A
global weighted least-squares problem then gives each tile the correction
that best explains all differences (`solve_corrections`); its minimum-norm
solution fixes the free common constant at zero mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._optional import to_numpy
from ._kernels import reproject_window

__all__ = ["OverlapFit", "fit_overlaps", "solve_corrections"]

MODELS = ("offset", "plane")


@dataclass(frozen=True)
class OverlapFit:
    """The fitted difference ``tile i - tile j`` over their overlap."""

    i: int
    j: int
    coeffs: tuple[float, ...]
    n: int
    rms: float


def _intersect(a, b):
    y0, y1 = max(a[0], b[0]), min(a[1], b[1])
    x0, x1 = max(a[2], b[2]), min(a[3], b[3])
    return None if y0 >= y1 or x0 >= x1 else (y0, y1, x0, x1)


def clipped_fit(diff: np.ndarray, dx: np.ndarray, dy: np.ndarray, *, model: str,
                nsigma: float = 3.0, iterations: int = 6) -> tuple[np.ndarray, int, float]:
    """Sigma-clipped least-squares fit of an offset or plane; returns (coeffs, n kept, rms)."""
    design = None if model == "offset" else np.stack([np.ones(diff.size), dx, dy], axis=1)
    npar = 1 if model == "offset" else 3
    keep = np.ones(diff.size, bool)
    coeffs = np.zeros(npar)
    for _ in range(iterations):
        if model == "offset":  # the least-squares offset is the mean: no lstsq needed
            coeffs = np.array([diff[keep].mean()])
            resid = diff - coeffs[0]
        else:
            coeffs, *_ = np.linalg.lstsq(design[keep], diff[keep], rcond=None)
            resid = diff - design @ coeffs
        # the clipping threshold only needs the MAD to ~1%: a regular subsample of the
        # kept residuals gives it at a fraction of the cost (the fit itself uses them all)
        kept = resid[keep]
        kept = kept[::max(1, kept.size // 25_000)].astype(np.float32)
        sigma = 1.4826 * float(np.median(np.abs(kept - np.median(kept))))
        new = np.abs(resid) < nsigma * max(sigma, 1e-30)
        if new.sum() < npar + 2 or np.array_equal(new, keep):
            break
        keep = new
    rms = float(np.std(resid[keep])) if keep.any() else math.inf
    return coeffs, int(keep.sum()), rms


def _fit_pair(ti, tj, *, centre, model, xp, max_points, min_points) -> OverlapFit | None:
    box = _intersect(ti.bbox, tj.bbox)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    stride = max(1, math.ceil(math.sqrt((y1 - y0) * (x1 - x0) / max_points)))
    ys, xs = np.arange(y0, y1, stride), np.arange(x0, x1, stride)
    ri = reproject_window(ti, box, method="bilinear", xp=xp, centre=centre, ys=ys, xs=xs)
    rj = reproject_window(tj, box, method="bilinear", xp=xp, centre=centre, ys=ys, xs=xs)
    vi, vj = to_numpy(ri[1]), to_numpy(rj[1])
    good = np.isfinite(vi) & np.isfinite(vj) & (to_numpy(ri[2]) > 0) & (to_numpy(rj[2]) > 0)
    if good.sum() < min_points:
        return None
    gx, gy = np.meshgrid(xs - centre[1], ys - centre[0])
    coeffs, n, rms = clipped_fit((vi - vj)[good].astype(float), gx[good], gy[good], model=model)
    return OverlapFit(ti.index, tj.index, tuple(map(float, coeffs)), n, rms)


def fit_overlaps(tiles, *, centre: tuple[float, float], model: str = "offset", xp=np,
                 max_points: int = 400_000, min_points: int = 50,
                 threads: int | None = None) -> list[OverlapFit]:
    """Fit the difference of every overlapping pair of tiles (on the output grid).

    Only each pair's overlap box is resampled (on a regular subsample of at most
    ``max_points`` pixels). The pairs run on ``threads`` threads (default: the
    CPU count, at most 4); the numpy resampling kernel releases the GIL.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    pairs = [(tiles[a], tiles[b]) for a in range(len(tiles)) for b in range(a + 1, len(tiles))
             if _intersect(tiles[a].bbox, tiles[b].bbox) is not None]
    kwargs = {"centre": centre, "model": model, "xp": xp, "max_points": max_points,
              "min_points": min_points}
    threads = threads or min(4, os.cpu_count() or 1)
    if threads == 1 or len(pairs) < 2:
        results = [_fit_pair(ti, tj, **kwargs) for ti, tj in pairs]
    else:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda p: _fit_pair(*p, **kwargs), pairs))
    return [f for f in results if f is not None]


def solve_corrections(indices: list[int], fits: list[OverlapFit], *,
                      model: str = "offset") -> dict[int, tuple[float, float, float]]:
    """Per-tile background ``(a, b, c)`` from the pairwise fits by global least squares.

    Each pair ``(i, j)`` asks ``p_i - p_j = d_ij`` with weight ``sqrt(n)/rms``;
    the minimum-norm solution sets the mean correction of each connected set to zero.
    """
    npar = 1 if model == "offset" else 3
    out = dict.fromkeys(indices, (0.0, 0.0, 0.0))
    if not fits:
        return out
    pos = {i: k for k, i in enumerate(indices)}
    rows, rhs = [], []
    for f in fits:
        w = math.sqrt(f.n) / max(f.rms, 1e-30)
        row = np.zeros(len(indices))
        row[pos[f.i]], row[pos[f.j]] = w, -w
        rows.append(row)
        rhs.append(w * np.asarray(f.coeffs[:npar]))
    a = np.array(rows)
    # rescale so the weights only matter relative to each other
    scale = np.abs(a).max()
    sol, *_ = np.linalg.lstsq(a / scale, np.array(rhs) / scale, rcond=None)
    for i, k in pos.items():
        p = np.zeros(3)
        p[:npar] = sol[k]
        out[i] = (float(p[0]), float(p[1]), float(p[2]))
    return out
