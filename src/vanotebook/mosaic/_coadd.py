"""Combining resampled tiles on one window of the output grid (array API, no Dask).

`combine_window` resamples every tile that touches a window and combines
them with ``mean`` (weighted), ``sum`` (weighted), ``median``, ``first``,
``last`` or ``count``. It returns the mosaic, the summed weight and the
number of contributing tiles of that window, and is what every Dask block
of `vanotebook.mosaic.mosaic` runs.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import is_numpy_namespace

from ._kernels import fused_resample, nanmedian, numba_kernels, reproject_window

__all__ = ["COMBINES", "combine_window", "namespace_for"]

COMBINES = ("mean", "median", "sum", "first", "last", "count")


def namespace_for(device: str):
    """The array namespace of a device: numpy on "cpu", CuPy on "gpu"."""
    if device == "gpu":  # pragma: no cover - needs a GPU
        import cupy

        return cupy
    return np


def combine_window(tiles, window: tuple[int, int, int, int], *, combine: str = "mean",
                   method: str = "bilinear", xp=np, centre=(0.0, 0.0),
                   dtype=None) -> tuple:
    """Resample and combine the tiles that touch ``window = (y0, y1, x0, x1)``.

    Returns
    -------
    mosaic, weight, coverage : arrays of the window's shape in namespace ``xp``
        ``mosaic`` is NaN where no tile contributes.
    """
    y0, y1, x0, x1 = window
    shape = (y1 - y0, x1 - x0)
    dtype = dtype or xp.float32
    if is_numpy_namespace(xp) and fused_path(combine, method, "cpu", tiles):
        out = _combine_fused(tiles, window, combine=combine, method=method, centre=centre)
        return xp.astype(out[0], dtype), xp.astype(out[1], dtype), out[2]
    acc = xp.zeros(shape, dtype=xp.float64)
    wsum = xp.zeros(shape, dtype=xp.float64)
    count = xp.zeros(shape, dtype=xp.float64)
    pick = xp.full(shape, xp.nan, dtype=xp.float64)
    stack = []
    zero = xp.asarray(0.0, dtype=xp.float64)
    for tile in tiles:
        res = reproject_window(tile, window, method=method, xp=xp, centre=centre)
        if res is None:
            continue
        (by0, by1, bx0, bx1), values, weight = res
        sl = (slice(by0 - y0, by1 - y0), slice(bx0 - x0, bx1 - x0))
        values = xp.astype(values, xp.float64)
        weight = xp.astype(weight, xp.float64)
        good = (weight > 0) & ~xp.isnan(values)
        count[sl] = count[sl] + xp.astype(good, xp.float64)
        if combine in ("mean", "sum"):
            acc[sl] = acc[sl] + xp.where(good, values * weight, zero)
            wsum[sl] = wsum[sl] + xp.where(good, weight, zero)
        else:
            wsum[sl] = wsum[sl] + xp.where(good, weight, zero)
            if combine == "first":
                pick[sl] = xp.where(xp.isnan(pick[sl]) & good, values, pick[sl])
            elif combine == "last":
                pick[sl] = xp.where(good, values, pick[sl])
            elif combine == "median":
                full = xp.full(shape, xp.nan, dtype=xp.float64)
                full[sl] = xp.where(good, values, xp.asarray(xp.nan, dtype=xp.float64))
                stack.append(full)
    nan = xp.asarray(xp.nan, dtype=xp.float64)
    covered = wsum > 0
    if combine == "mean":
        out = xp.where(covered, acc / xp.where(covered, wsum, xp.asarray(1.0, dtype=xp.float64)),
                       nan)
    elif combine == "sum":
        out = xp.where(covered, acc, nan)
    elif combine == "count":
        out = xp.where(count > 0, count, nan)
    elif combine == "median":
        out = nanmedian(xp.stack(stack)) if stack else xp.full(shape, xp.nan, dtype=xp.float64)
    else:
        out = pick
    return xp.astype(out, dtype), xp.astype(wsum, dtype), count


def _combine_fused(tiles, window, *, combine, method, centre, out=None) -> np.ndarray:
    """`combine_window` on numpy through the fused numba kernel: one pass per tile, summed
    straight into the ``(3, h, w)`` float32 result (mosaic, weight, coverage).

    With ``out`` (a whole ``(3, ny, nx)`` mosaic array, C-contiguous) the window is
    filled in place there and its view returned: the kernel always sees C arrays.
    """
    y0, y1, x0, x1 = window
    shape = (y1 - y0, x1 - x0)
    weighted = combine in ("mean", "sum", "count")
    if out is None:
        full, oy, ox = np.empty((3, *shape), np.float32), y0, x0
    else:
        full, oy, ox = out, 0, 0
    view = full[:, y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    view[0] = 0.0 if weighted else np.nan
    view[1:] = 0.0
    mode = 0 if weighted else (1 if combine == "first" else 2)
    for tile in tiles:
        box = _intersect(window, tile.bbox)
        if box is None:
            continue
        by0, by1, bx0, bx1 = box
        fused_resample(tile, np.arange(by0, by1), np.arange(bx0, bx1), method=method,
                       centre=centre, mode=mode, out=full, at=(by0 - oy, bx0 - ox))
    out = view
    with np.errstate(invalid="ignore", divide="ignore"):
        if combine == "mean":
            np.divide(out[0], out[1], out=out[0])
        elif combine == "sum":
            out[0][out[1] == 0] = np.nan
        elif combine == "count":
            np.copyto(out[0], out[2])
            out[0][out[2] == 0] = np.nan
    return out


def _intersect(a, b):
    y0, y1 = max(a[0], b[0]), min(a[1], b[1])
    x0, x1 = max(a[2], b[2]), min(a[3], b[3])
    return None if y0 >= y1 or x0 >= x1 else (y0, y1, x0, x1)


def fused_path(combine: str, method: str, device: str, tiles) -> bool:
    """Whether blocks run through the fused numba kernel: numpy, not median or drizzle,
    and a mosaic large enough to pay numba's load (`TilePlan.fused`)."""
    return (device != "gpu" and combine != "median" and method != "flux-conserving"
            and all(t.fused for t in tiles) and numba_kernels() is not None)


def combine_block(window, tiles, combine: str, method: str, device: str, centre) -> np.ndarray:
    """One output block as a host ``(3, h, w)`` float32 array: mosaic, weight, coverage."""
    xp = namespace_for(device)
    if fused_path(combine, method, device, tiles):
        return _combine_fused(tiles, window, combine=combine, method=method, centre=centre)
    m, w, c = combine_window(tiles, window, combine=combine, method=method, xp=xp,
                             centre=centre)
    out = xp.stack([xp.astype(m, xp.float32), xp.astype(w, xp.float32),
                    xp.astype(c, xp.float32)])
    return out.get() if hasattr(out, "get") else np.asarray(out)

