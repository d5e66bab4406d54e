"""One pass over a block for moments 0-2 on the CPU (numba), the array kernels' twin.

The array-API `_kernels.moment_maps` makes an isfinite mask, a zero-filled
float64 copy and a matrix product: four passes over memory and a copy twice
the block's size. Here every voxel is read once, channel by channel (the
pixels of a channel are contiguous), into float64 sums per pixel. The sums
are those of the array kernel, in another order (equal to ~1e-15). Used for
numpy blocks when numba is installed and only moments 0-2 (and the line
widths) are asked, with no mask or a threshold.
"""

from __future__ import annotations

import threading

import numpy as np

from .._optional import HAS_NUMBA

__all__ = ["FUSED", "fused_sums"]

#: Maps the fused pass can make.
FUSED = frozenset({"moment0", "moment1", "moment2", "linewidth_sigma", "linewidth_fwhm"})
_LOCK = threading.Lock()
_JIT = None


def _compile():
    import numba

    @numba.njit(cache=True, nogil=True, fastmath=False)
    def sums(block, vr, dv, threshold, use_threshold):  # pragma: no cover - compiled
        nv, ny, nx = block.shape
        out = np.zeros((3, ny * nx), np.float64)
        count = np.zeros(ny * nx, np.int64)
        for k in range(nv):
            a = dv[k]
            b = dv[k] * vr[k]
            c = b * vr[k]
            for i in range(ny):
                for j in range(nx):
                    x = block[k, i, j]
                    if np.isfinite(x) and (not use_threshold or x > threshold):
                        p = i * nx + j
                        xd = np.float64(x)
                        out[0, p] += xd * a
                        out[1, p] += xd * b
                        out[2, p] += xd * c
                        count[p] += 1
        return out, count

    return sums


def fused_sums(block: np.ndarray, vr: np.ndarray, dv: np.ndarray, threshold: float | None):
    """``(sums (3, y*x), count (y*x,))`` of a ``(v, y, x)`` numpy block (any strides)."""
    global _JIT
    with _LOCK:
        if _JIT is None:
            _JIT = _compile()
    use = threshold is not None
    return _JIT(block, vr, dv, float(threshold) if use else 0.0, use)


def available(block, names, mask, auto_sigma) -> bool:
    """Whether the fused pass applies to this block and request."""
    return (HAS_NUMBA and isinstance(block, np.ndarray) and mask is None
            and auto_sigma is None and set(names) <= FUSED
            and block.dtype in (np.float32, np.float64))
