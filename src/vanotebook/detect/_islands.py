"""Islands: connected pixels above the merge threshold that hold a seed pixel.

Flood fill is `ndimage.label` (scipy on the CPU, `cupyx.scipy.ndimage` on a
GPU, picked by `ndimage_for`); everything else is array-API code.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace

__all__ = ["find_islands", "local_peaks", "ndimage_for"]


def ndimage_for(x):
    """The ``ndimage`` module that works on ``x``: cupyx for CuPy arrays, else scipy."""
    if type(x).__module__.startswith("cupy"):
        import cupyx.scipy.ndimage as ndi  # pragma: no cover - needs a GPU

        return ndi
    from scipy import ndimage as ndi

    return ndi


def _host(x):
    if hasattr(x, "get"):
        return x.get()
    return np.asarray(x) if isinstance(x, np.ndarray) else np.from_dlpack(x)


def find_islands(snr, *, seed: float = 5.0, merge: float = 2.6, min_pixels: int = 5):
    """Label the islands of a signal-to-noise map.

    Parameters
    ----------
    snr : array (array-API)
        ``(data - background) / rms``; NaN pixels belong to no island.
    seed, merge : float
        An island is the 8-connected region above ``merge`` around at least
        one pixel above ``seed``.
    min_pixels : int
        Smaller islands are dropped.

    Returns
    -------
    labels : numpy int32 array
        0 outside islands, 1..n inside, numbered in raster order of their first pixel.
    n : int
    """
    xp = array_namespace(snr)
    above = xp.where(xp.isnan(snr), xp.asarray(False), snr >= merge)
    host_above = _host(above) if not isinstance(above, np.ndarray) else above
    ndi = ndimage_for(host_above)
    labels, n = ndi.label(host_above, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros(host_above.shape, np.int32), 0
    host_snr = snr if isinstance(snr, np.ndarray) else _host(snr)
    # work on the island pixels only (a small fraction of the image)
    idx = np.flatnonzero(labels)
    lab = labels.ravel()[idx]
    with np.errstate(invalid="ignore"):
        seeded = lab[host_snr.ravel()[idx] >= seed]  # kept if any pixel reaches the seed
    has_seed = np.bincount(seeded, minlength=n + 1) > 0
    count = np.bincount(lab, minlength=n + 1)
    keep = has_seed & (count >= min_pixels)
    keep[0] = False
    new = np.zeros(n + 1, np.int32)
    new[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    out = np.zeros(labels.shape, np.int32)
    out.ravel()[idx] = new[lab]
    return out, int(keep.sum())


def local_peaks(snr, labels, *, size: int = 3, threshold: float = 5.0):
    """Local maxima of ``snr`` inside islands, at or above ``threshold``.

    Returns
    -------
    (y, x, label) : numpy int arrays, sorted by island then by decreasing S/N.
    """
    snr = snr if isinstance(snr, np.ndarray) else _host(snr)
    filled = np.nan_to_num(snr, nan=-np.inf)
    with np.errstate(invalid="ignore"):
        y, x = np.nonzero((filled >= threshold) & (labels > 0))
    # a candidate is a peak if no pixel of its size x size neighbourhood is larger
    # (same as maximum_filter with -inf outside the image, on candidates only)
    h = size // 2
    ny, nx = filled.shape
    v = filled[y, x]
    is_max = np.ones(y.size, bool)
    for dy in range(-h, size - h):
        yy = y + dy
        oky = (yy >= 0) & (yy < ny)
        yy = np.clip(yy, 0, ny - 1)
        for dx in range(-h, size - h):
            if dy == 0 and dx == 0:
                continue
            xx = x + dx
            ok = oky & (xx >= 0) & (xx < nx)
            xx = np.clip(xx, 0, nx - 1)
            is_max &= ~ok | (filled[yy, xx] <= v)
    y, x = y[is_max], x[is_max]
    lab = labels[y, x]
    order = np.lexsort((-filled[y, x], lab))
    return y[order], x[order], lab[order]
