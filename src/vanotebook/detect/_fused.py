"""Fused CPU kernels (numba) for the whole-image passes of the detection pipeline.

The array-API path makes many full-size passes: interpolate the background
and noise grids to full resolution (two dense matrix products), subtract,
divide, threshold, render the model, subtract again. On numpy, with numba,
these are fused:

* `snr_pass` interpolates both grids with the *local* form of the natural
  cubic spline (value and second derivative at the two neighbouring cell
  centres: 4 taps per pixel instead of a dense row of weights) and writes the
  background, noise, background-subtracted image, S/N map and the
  merge-threshold mask in one pass over the image;
* `render_gaussians` draws the fitted components into a float32 model image.

The tests compare both with the array-API kernels (`background_maps`,
`gaussian_image`).
"""

from __future__ import annotations

import math

import numpy as np

from .._optional import HAS_NUMBA
from ._background import local_spline, second_derivative_matrix

__all__ = ["HAVE_FUSED", "box_slices", "gaussian_smooth", "keep_near", "label_boxes",
           "local_peaks",
           "local_spline", "render_gaussians", "snr_pass", "snr_ratio", "zscore_masks"]

HAVE_FUSED = HAS_NUMBA


def _expand_x(grid: np.ndarray, box: int, nx: int):
    """Rows of ``grid`` interpolated along x to every column, and their y second derivatives."""
    ix, a, b, c, d = local_spline(grid.shape[1], box, nx)
    gx = np.hstack([grid, grid[:, -1:]]) if grid.shape[1] == 1 else grid
    Kx = second_derivative_matrix(grid.shape[1], box)
    Mx = gx[:, : grid.shape[1]] @ Kx.T if grid.shape[1] >= 4 else np.zeros_like(gx)
    rows = (a * gx[:, ix] + b * gx[:, ix + 1] + c * Mx[:, np.minimum(ix, Mx.shape[1] - 1)]
            + d * Mx[:, np.minimum(ix + 1, Mx.shape[1] - 1)])
    Ky = second_derivative_matrix(grid.shape[0], box)
    if grid.shape[0] == 1:
        rows = np.vstack([rows, rows])
        Ky = np.zeros((2, 2))
    return np.ascontiguousarray(rows), np.ascontiguousarray(Ky @ rows)


def _nb() -> dict:
    """The compiled kernels (`._fused_kernels`), imported on first use."""
    from ._fused_kernels import KERNELS

    return KERNELS


#: Pixels from which an image's whole-image passes take the compiled kernels. Smaller
#: images take the numpy/scipy path: there it costs tens of ms, less than the ~1 s
#: that a fresh process pays once to import numba and load the kernels (#20)
FUSED_PIXELS = 1 << 19


def fused_for(shape) -> bool:
    """Whether an image of ``shape`` takes the compiled passes (numba installed, at least
    `FUSED_PIXELS` pixels); the choice depends on the size only, so the same image
    always takes the same path."""
    return HAVE_FUSED and math.prod(shape) >= FUSED_PIXELS


def snr_pass(data: np.ndarray, *, merge: float, grids=None, box: int = 64, maps=None):
    """Background, rms, subtracted image, S/N map and ``S/N >= merge`` mask in one pass.

    Either ``grids=(bkg_grid, rms_grid)`` (cell statistics, interpolated here by
    the natural cubic spline of `spline_weights`) or ``maps=(bkg, rms)`` (full
    float32 maps). Returns ``(bkg, rms, sub, snr, above)``; with ``maps`` the
    given maps are returned as they are.
    """
    data = np.ascontiguousarray(data, dtype=np.float32)
    ny, nx = data.shape
    sub = np.empty((ny, nx), np.float32)
    snr = np.empty((ny, nx), np.float32)
    above = np.empty((ny, nx), np.bool_)
    merge32 = np.float32(merge)
    if maps is not None:
        bkg, rms = (np.ascontiguousarray(m, dtype=np.float32) for m in maps)
        _nb()["snr_maps"](data, bkg, rms, merge32, sub, snr, above)
        return bkg, rms, sub, snr, above
    bkg_g, rms_g = (np.nan_to_num(np.asarray(g, float), nan=0.0) for g in grids)
    rb, mb = _expand_x(bkg_g, box, nx)
    rr, mr = _expand_x(rms_g, box, nx)
    iy, ay, by, cy, dy = local_spline(bkg_g.shape[0], box, ny)
    bkg = np.empty((ny, nx), np.float32)
    rms = np.empty((ny, nx), np.float32)
    _nb()["snr"](data, rb, mb, rr, mr, iy, ay, by, cy, dy, merge32, bkg, rms, sub, snr, above)
    return bkg, rms, sub, snr, above


def render_gaussians(shape, params) -> np.ndarray:
    """Float32 image of the components ``(A, x0, y0, a, b, c)`` (rows of ``params``)."""
    out = np.zeros(shape, np.float32)
    p = np.ascontiguousarray(np.asarray(params, dtype=np.float64).reshape(-1, 6))
    _nb()["render"](out, p)
    return out


def snr_ratio(residual: np.ndarray, rms: np.ndarray) -> np.ndarray:
    """Float32 ``residual / rms``, 0 where the residual is not finite or the noise is not > 0."""
    residual = np.ascontiguousarray(residual, dtype=np.float32)
    out = np.empty(residual.shape, np.float32)
    _nb()["ratio"](residual, np.ascontiguousarray(rms, dtype=np.float32), out)
    return out


def zscore_masks(s: np.ndarray, med: float, noise: float, threshold: float, grow: float):
    """In place ``s <- (s - med) / noise``; returns the masks ``s >= threshold``, ``s >= grow``."""
    seeds = np.empty(s.shape, np.bool_)
    grown = np.empty(s.shape, np.bool_)
    _nb()["zscore"](s, np.float32(med), np.float32(noise), np.float32(threshold),
                  np.float32(grow), seeds, grown)
    return seeds, grown


def local_peaks(z: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: int) -> np.ndarray:
    """Whether each pixel ``(ys[k], xs[k])`` is the maximum of its ``size`` x ``size`` window.

    The window is clipped at the edges, which is what ``maximum_filter(mode="nearest")``
    gives; ``z == maximum_filter(z, size)`` evaluated only at the candidate pixels.
    """
    out = np.empty(ys.shape[0], np.bool_)
    _nb()["peaks"](z, np.ascontiguousarray(ys, np.int64), np.ascontiguousarray(xs, np.int64),
                 int(size) // 2, out)
    return out


def gaussian_smooth(x: np.ndarray, sigma: float, *, truncate: float = 4.0) -> np.ndarray:
    """Float32 Gaussian smoothing with edges repeated: ``scipy.ndimage.gaussian_filter``'s
    ``mode="nearest"`` with the same kernel (``truncate`` sigmas), summed in float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    r = int(truncate * float(sigma) + 0.5)
    t = np.arange(-r, r + 1, dtype=float)
    w = np.exp(-0.5 * (t / sigma) ** 2)
    w = (w / w.sum()).astype(np.float32)
    tmp = np.empty_like(x)
    out = np.empty_like(x)
    _nb()["smooth"](x, w, tmp, out)
    return out


def label_boxes(labels: np.ndarray, n: int) -> np.ndarray:
    """Bounding boxes of labels ``1..n`` in one compiled pass: row ``k`` of the (n + 1, 4)
    result is ``(y_min, y_max, x_min, x_max)`` of label ``k`` (-1 if absent), as
    ``scipy.ndimage.find_objects`` gives them as slices (`box_slices`)."""
    box = np.full((n + 1, 4), -1, np.int64)
    _nb()["boxes"](np.ascontiguousarray(labels), int(n), box)
    return box


def box_slices(box: np.ndarray, k: int):
    """The ``(slice_y, slice_x)`` of row ``k`` of `label_boxes`, None if the label is absent."""
    b = box[k]
    if b[0] < 0:
        return None
    return slice(int(b[0]), int(b[1]) + 1), slice(int(b[2]), int(b[3]) + 1)


def keep_near(grown: np.ndarray, seeds: np.ndarray, reach: int) -> None:
    """In place: ``grown &= `` (a ``seeds`` pixel within ``reach`` pixels, Chebyshev distance).

    The binary dilation of ``seeds`` by a (2 reach + 1) square, as two running
    scans per axis instead of a maximum filter.
    """
    _nb()["near"](np.ascontiguousarray(seeds), int(reach), grown)
