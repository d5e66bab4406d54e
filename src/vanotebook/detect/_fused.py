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


_NB: dict = {}

if HAS_NUMBA:  # module-level, so numba's on-disk cache keeps the compiled kernels
    import numba

    _jit = numba.njit(nogil=True, cache=True, error_model="numpy")

    @_jit
    def _snr_kernel(data, rb, mb, rr, mr, iy, ay, by, cy, dy, merge, bkg, rms, sub, snr, above):
        ny, nx = data.shape
        nan = np.float32(np.nan)
        for y in range(ny):
            i = iy[y]
            a, b, c, d = ay[y], by[y], cy[y], dy[y]
            for x in range(nx):
                bv = np.float32(a * rb[i, x] + b * rb[i + 1, x] + c * mb[i, x]
                                + d * mb[i + 1, x])
                rv = np.float32(a * rr[i, x] + b * rr[i + 1, x] + c * mr[i, x]
                                + d * mr[i + 1, x])
                bkg[y, x] = bv
                rms[y, x] = rv
                v = data[y, x]
                if np.isfinite(v):
                    s = np.float32(v - bv)
                    sub[y, x] = s
                    if rv > 0:
                        q = np.float32(s / rv)
                        snr[y, x] = q
                        above[y, x] = q >= merge
                    else:
                        snr[y, x] = nan
                        above[y, x] = False
                else:
                    sub[y, x] = nan
                    snr[y, x] = nan
                    above[y, x] = False

    @_jit
    def _snr_maps_kernel(data, bkg, rms, merge, sub, snr, above):
        ny, nx = data.shape
        nan = np.float32(np.nan)
        for y in range(ny):
            for x in range(nx):
                v = data[y, x]
                rv = rms[y, x]
                if np.isfinite(v):
                    s = np.float32(v - bkg[y, x])
                    sub[y, x] = s
                    if rv > 0:
                        q = np.float32(s / rv)
                        snr[y, x] = q
                        above[y, x] = q >= merge
                    else:
                        snr[y, x] = nan
                        above[y, x] = False
                else:
                    sub[y, x] = nan
                    snr[y, x] = nan
                    above[y, x] = False

    @_jit
    def _render_kernel(out, params):
        ny, nx = out.shape
        for k in range(params.shape[0]):
            amp, x0, y0 = params[k, 0], params[k, 1], params[k, 2]
            a, b, c = params[k, 3], params[k, 4], params[k, 5]
            det = a * c - b * b
            if not (np.isfinite(det) and det > 0 and amp != 0):
                continue
            sx, sy = math.sqrt(c / det), math.sqrt(a / det)
            rx, ry = int(5 * sx) + 2, int(5 * sy) + 2
            x0i, y0i = round(x0), round(y0)
            xa, xb = max(0, x0i - rx), min(nx, x0i + rx + 1)
            ya, yb = max(0, y0i - ry), min(ny, y0i + ry + 1)
            for yy in range(ya, yb):
                dy = yy - y0
                for xx in range(xa, xb):
                    dx = xx - x0
                    out[yy, xx] += amp * math.exp(-0.5 * (a * dx * dx + 2 * b * dx * dy
                                                          + c * dy * dy))

    @_jit
    def _ratio_kernel(residual, rms, out):
        ny, nx = residual.shape
        for y in range(ny):
            for x in range(nx):
                v = residual[y, x]
                r = rms[y, x]
                out[y, x] = v / r if (np.isfinite(v) and r > 0) else np.float32(0.0)

    @_jit
    def _zscore_kernel(s, med, noise, threshold, grow, seeds, grown):
        ny, nx = s.shape
        for y in range(ny):
            for x in range(nx):
                z = np.float32((s[y, x] - med) / noise)
                s[y, x] = z
                seeds[y, x] = z >= threshold
                grown[y, x] = z >= grow

    @_jit
    def _peaks_kernel(z, ys, xs, half, out):
        ny, nx = z.shape
        for k in range(ys.shape[0]):
            y, x = ys[k], xs[k]
            v = z[y, x]
            ok = True
            for yy in range(max(0, y - half), min(ny, y + half + 1)):
                for xx in range(max(0, x - half), min(nx, x + half + 1)):
                    if z[yy, xx] > v:
                        ok = False
                        break
                if not ok:
                    break
            out[k] = ok

    @_jit
    def _smooth_kernel(src, w, tmp, out):
        ny, nx = src.shape
        r = (w.shape[0] - 1) // 2
        buf = np.empty(nx + 2 * r, np.float32)
        acc = np.empty(nx, np.float32)
        for y in range(ny):  # along x, edges repeated ("nearest")
            for x in range(nx):
                buf[x + r] = src[y, x]
            for x in range(r):
                buf[x] = src[y, 0]
                buf[nx + r + x] = src[y, nx - 1]
            acc[:] = 0
            for k in range(w.shape[0]):
                wk = w[k]
                for x in range(nx):
                    acc[x] += wk * buf[x + k]
            for x in range(nx):
                tmp[y, x] = acc[x]
        for y in range(ny):  # along y: whole rows at a time
            acc[:] = 0
            for k in range(w.shape[0]):
                yy = min(max(y + k - r, 0), ny - 1)
                wk = w[k]
                for x in range(nx):
                    acc[x] += wk * tmp[yy, x]
            for x in range(nx):
                out[y, x] = acc[x]

    @_jit
    def _boxes_kernel(labels, n, box):
        ny, nx = labels.shape
        for y in range(ny):
            for x in range(nx):
                v = labels[y, x]
                if v > 0 and v <= n:
                    if box[v, 0] < 0:
                        box[v, 0] = y
                        box[v, 1] = y
                        box[v, 2] = x
                        box[v, 3] = x
                    else:
                        box[v, 1] = y
                        if x < box[v, 2]:
                            box[v, 2] = x
                        if x > box[v, 3]:
                            box[v, 3] = x

    @_jit
    def _near_kernel(seeds, reach, grown):
        ny, nx = seeds.shape
        big = ny + nx + reach + 1
        near = np.zeros((ny, nx), np.bool_)
        for y in range(ny):  # along x: a seed within ``reach`` columns
            last = -big
            for x in range(nx):
                if seeds[y, x]:
                    last = x
                near[y, x] = x - last <= reach
            nxt = big
            for x in range(nx - 1, -1, -1):
                if seeds[y, x]:
                    nxt = x
                if nxt - x <= reach:
                    near[y, x] = True
        last_y = np.full(nx, -big, np.int64)  # along y, whole rows at a time
        hit = np.zeros((ny, nx), np.bool_)
        for y in range(ny):
            for x in range(nx):
                if near[y, x]:
                    last_y[x] = y
                hit[y, x] = y - last_y[x] <= reach
        next_y = np.full(nx, big, np.int64)
        for y in range(ny - 1, -1, -1):
            for x in range(nx):
                if near[y, x]:
                    next_y[x] = y
                grown[y, x] = grown[y, x] and (hit[y, x] or next_y[x] - y <= reach)

    _NB.update(near=_near_kernel, snr=_snr_kernel, snr_maps=_snr_maps_kernel, render=_render_kernel,
               ratio=_ratio_kernel, zscore=_zscore_kernel, peaks=_peaks_kernel,
               smooth=_smooth_kernel, boxes=_boxes_kernel)


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
        _NB["snr_maps"](data, bkg, rms, merge32, sub, snr, above)
        return bkg, rms, sub, snr, above
    bkg_g, rms_g = (np.nan_to_num(np.asarray(g, float), nan=0.0) for g in grids)
    rb, mb = _expand_x(bkg_g, box, nx)
    rr, mr = _expand_x(rms_g, box, nx)
    iy, ay, by, cy, dy = local_spline(bkg_g.shape[0], box, ny)
    bkg = np.empty((ny, nx), np.float32)
    rms = np.empty((ny, nx), np.float32)
    _NB["snr"](data, rb, mb, rr, mr, iy, ay, by, cy, dy, merge32, bkg, rms, sub, snr, above)
    return bkg, rms, sub, snr, above


def render_gaussians(shape, params) -> np.ndarray:
    """Float32 image of the components ``(A, x0, y0, a, b, c)`` (rows of ``params``)."""
    out = np.zeros(shape, np.float32)
    p = np.ascontiguousarray(np.asarray(params, dtype=np.float64).reshape(-1, 6))
    _NB["render"](out, p)
    return out


def snr_ratio(residual: np.ndarray, rms: np.ndarray) -> np.ndarray:
    """Float32 ``residual / rms``, 0 where the residual is not finite or the noise is not > 0."""
    residual = np.ascontiguousarray(residual, dtype=np.float32)
    out = np.empty(residual.shape, np.float32)
    _NB["ratio"](residual, np.ascontiguousarray(rms, dtype=np.float32), out)
    return out


def zscore_masks(s: np.ndarray, med: float, noise: float, threshold: float, grow: float):
    """In place ``s <- (s - med) / noise``; returns the masks ``s >= threshold``, ``s >= grow``."""
    seeds = np.empty(s.shape, np.bool_)
    grown = np.empty(s.shape, np.bool_)
    _NB["zscore"](s, np.float32(med), np.float32(noise), np.float32(threshold),
                  np.float32(grow), seeds, grown)
    return seeds, grown


def local_peaks(z: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: int) -> np.ndarray:
    """Whether each pixel ``(ys[k], xs[k])`` is the maximum of its ``size`` x ``size`` window.

    The window is clipped at the edges, which is what ``maximum_filter(mode="nearest")``
    gives; ``z == maximum_filter(z, size)`` evaluated only at the candidate pixels.
    """
    out = np.empty(ys.shape[0], np.bool_)
    _NB["peaks"](z, np.ascontiguousarray(ys, np.int64), np.ascontiguousarray(xs, np.int64),
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
    _NB["smooth"](x, w, tmp, out)
    return out


def label_boxes(labels: np.ndarray, n: int) -> np.ndarray:
    """Bounding boxes of labels ``1..n`` in one compiled pass: row ``k`` of the (n + 1, 4)
    result is ``(y_min, y_max, x_min, x_max)`` of label ``k`` (-1 if absent), as
    ``scipy.ndimage.find_objects`` gives them as slices (`box_slices`)."""
    box = np.full((n + 1, 4), -1, np.int64)
    _NB["boxes"](np.ascontiguousarray(labels), int(n), box)
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
    _NB["near"](np.ascontiguousarray(seeds), int(reach), grown)
