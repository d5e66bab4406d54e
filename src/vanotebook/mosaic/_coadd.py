"""Combining resampled tiles on one window of the output grid (array API, no Dask).

`combine_window` resamples every tile that touches a window and combines
them with ``mean`` (weighted), ``sum`` (weighted), ``median``, ``first``,
``last`` or ``count``. It returns the mosaic, the summed weight and the
number of contributing tiles of that window, and is what every Dask block
of `vanotebook.mosaic.mosaic` runs.
"""

from __future__ import annotations

import numpy as np

from ._kernels import nanmedian, reproject_window

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


def combine_block(window, tiles, combine: str, method: str, device: str, centre) -> np.ndarray:
    """One output block as a host ``(3, h, w)`` float32 array: mosaic, weight, coverage."""
    xp = namespace_for(device)
    m, w, c = combine_window(tiles, window, combine=combine, method=method, xp=xp,
                             centre=centre)
    out = xp.stack([xp.astype(m, xp.float32), xp.astype(w, xp.float32),
                    xp.astype(c, xp.float32)])
    return out.get() if hasattr(out, "get") else np.asarray(out)

