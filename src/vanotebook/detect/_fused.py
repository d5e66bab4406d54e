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

__all__ = ["HAVE_FUSED", "local_spline", "render_gaussians", "snr_pass"]

HAVE_FUSED = HAS_NUMBA


def second_derivative_matrix(n_cells: int, box: int) -> np.ndarray:
    """``K`` (n, n): second derivatives of the natural spline through the cell values, ``K @ y``.

    Fewer than 4 cells give 0 (linear interpolation, as `spline_weights` does).
    """
    K = np.zeros((n_cells, n_cells))
    if n_cells < 4:
        return K
    m = n_cells - 2
    T = np.diag(np.full(m, 4.0)) + np.diag(np.ones(m - 1), 1) + np.diag(np.ones(m - 1), -1)
    D2 = np.zeros((m, n_cells))
    for j in range(m):
        D2[j, j:j + 3] = (1.0, -2.0, 1.0)
    K[1:-1] = np.linalg.solve(T, 6.0 / box**2 * D2)
    return K


def local_spline(n_cells: int, box: int, n: int):
    """Per pixel: interval ``i`` and weights ``(A, B, C, D)`` of the natural cubic spline.

    ``S(p) = A y_i + B y_{i+1} + C M_i + D M_{i+1}`` with ``M = K @ y``; pixels
    beyond the outer cell centres take the end values (as `spline_weights`).
    """
    centres = box * (np.arange(n_cells) + 0.5) - 0.5
    if n_cells == 1:
        z = np.zeros(n)
        return np.zeros(n, np.int64), np.ones(n), z, z, z
    pix = np.clip(np.arange(n, dtype=float), centres[0], centres[-1])
    i = np.minimum(np.floor((pix - centres[0]) / box).astype(np.int64), n_cells - 2)
    t = (pix - centres[i]) / box
    h2 = box * box / 6.0
    return i, 1.0 - t, t, h2 * ((1 - t) ** 3 - (1 - t)), h2 * (t**3 - t)


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

    _NB.update(snr=_snr_kernel, snr_maps=_snr_maps_kernel, render=_render_kernel)


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
