"""The mosaic's fused CPU kernels (numba), imported on first use.

The array-API path in `_kernels` makes ~20 full-size passes per tile (upsample,
clip, gather, where...). Here numba fuses them into one pass per output pixel:
the coarse transform is interpolated, the input sampled with the same edge and
NaN rules as `_kernels.sample`, the unit scale and background plane applied,
and the result accumulated, all without the GIL, so Dask's threads run blocks
truly in parallel. Kept out of `_kernels` so that building a task graph (in a
notebook kernel, say) does not import numba; the kernels compile once into
numba's on-disk cache. The tests compare them with the array-API path on
array_api_strict arrays.
"""

from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(nogil=True, cache=True, error_model="numpy")
# helpers are inlined: a call passing arrays would cost reference counting per pixel
inline = numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")


@jit
def _interp_axis(pos, k0, n, step):
    m = pos.size
    idx = np.empty(m, np.int64)
    frac = np.empty(m, np.float64)
    hi = max(n - 2, 0)
    for j in range(m):
        t = pos[j] / step - k0
        i = int(np.floor(t))
        i = min(max(i, 0), hi)
        idx[j] = i
        frac[j] = t - i
    return idx, frac

@inline
def _tap(data, iy, ix, w, acc_nan):
    # one bilinear tap; a zero weight never lets a NaN neighbour in
    if w == 0.0:
        return 0.0, acc_nan
    v = data[iy, ix]
    if np.isnan(v):
        return 0.0, True
    return w * v, acc_nan

@inline
def _emit(mode, r, j, v, w, values, weight, out, y0, x0):
    """Store one resampled pixel (mode -1), or add it to ``out`` (mosaic, weight,
    coverage): mode 0 weighted sum, 1 first, 2 last."""
    if mode < 0:
        if w > 0.0 and not np.isnan(v):
            values[r, j] = v
            weight[r, j] = w
        else:
            values[r, j] = np.nan
            weight[r, j] = 0.0
        return
    if not (w > 0.0) or np.isnan(v):
        return
    yy, xx = y0 + r, x0 + j
    out[2, yy, xx] += 1.0
    out[1, yy, xx] += w
    if mode == 0:
        out[0, yy, xx] += v * w
    elif mode == 1:
        if np.isnan(out[0, yy, xx]):
            out[0, yy, xx] = v
    else:
        out[0, yy, xx] = v

@jit
def resample(data, oy, ox, full_ny, full_nx, wmap, use_wmap, nodes_x, nodes_y, ky0, kx0,
             step, ys, xs, order, scale, tweight, plane, centre, values, weight,
             mode, out, y0, x0):
    """Sample one tile at output rows ``ys`` x columns ``xs``.

    ``data`` is the part of the input starting at input pixel ``(oy, ox)`` of an
    image of shape ``(full_ny, full_nx)``. With ``mode`` -1 the samples go to
    ``values`` (NaN where the tile gives nothing) and ``weight`` (0 there);
    otherwise they are added to ``out[:, y0 + r, x0 + j]`` (see `_emit`).
    """
    nny, nnx = nodes_x.shape
    iyn, fyn = _interp_axis(ys, ky0, nny, step)
    ixn, fxn = _interp_axis(xs, kx0, nnx, step)
    rowx = np.empty(nnx, np.float64)
    rowy = np.empty(nnx, np.float64)
    a, b, c = plane[0], plane[1], plane[2]
    yc, xc = centre[0], centre[1]
    hi_x, hi_y = full_nx - 0.5, full_ny - 0.5
    mx, my = max(full_nx - 2, 0), max(full_ny - 2, 0)
    for r in range(ys.size):
        i, f = iyn[r], fyn[r]
        i2 = min(i + 1, nny - 1)
        for k in range(nnx):
            rowx[k] = nodes_x[i, k] * (1.0 - f) + nodes_x[i2, k] * f
            rowy[k] = nodes_y[i, k] * (1.0 - f) + nodes_y[i2, k] * f
        bg_row = a + c * (ys[r] - yc)
        for j in range(xs.size):
            k, g = ixn[j], fxn[j]
            k2 = min(k + 1, nnx - 1)
            x = rowx[k] * (1.0 - g) + rowx[k2] * g
            y = rowy[k] * (1.0 - g) + rowy[k2] * g
            v = np.nan
            wv = 0.0
            if x >= -0.5 and x <= hi_x and y >= -0.5 and y <= hi_y:
                x = min(max(x, 0.0), full_nx - 1.0)
                y = min(max(y, 0.0), full_ny - 1.0)
                if order == 1:
                    ix = min(max(int(np.floor(x)), 0), mx)
                    iy = min(max(int(np.floor(y)), 0), my)
                    fx, fy = x - ix, y - iy
                    jx, jy = min(ix + 1, full_nx - 1), min(iy + 1, full_ny - 1)
                    ix, jx, iy, jy = ix - ox, jx - ox, iy - oy, jy - oy
                    w00, w01 = (1.0 - fx) * (1.0 - fy), fx * (1.0 - fy)
                    w10, w11 = (1.0 - fx) * fy, fx * fy
                    if fx > 0.0 and fy > 0.0:  # all four taps count: NaN propagates
                        v = (w00 * data[iy, ix] + w01 * data[iy, jx]
                             + w10 * data[jy, ix] + w11 * data[jy, jx])
                    else:  # a zero-weight tap must not let a NaN neighbour in
                        bad = False
                        v = 0.0
                        t, bad = _tap(data, iy, ix, w00, bad)
                        v += t
                        t, bad = _tap(data, iy, jx, w01, bad)
                        v += t
                        t, bad = _tap(data, jy, ix, w10, bad)
                        v += t
                        t, bad = _tap(data, jy, jx, w11, bad)
                        v += t
                        if bad:
                            v = np.nan
                    wv = 1.0
                    if use_wmap:
                        wv = 0.0
                        w_bad = False
                        t, w_bad = _tap(wmap, iy, ix, w00, w_bad)
                        wv += t
                        t, w_bad = _tap(wmap, iy, jx, w01, w_bad)
                        wv += t
                        t, w_bad = _tap(wmap, jy, ix, w10, w_bad)
                        wv += t
                        t, w_bad = _tap(wmap, jy, jx, w11, w_bad)
                        wv += t
                        if w_bad:
                            wv = np.nan
                else:
                    ix = min(max(int(np.floor(x + 0.5)), 0), full_nx - 1) - ox
                    iy = min(max(int(np.floor(y + 0.5)), 0), full_ny - 1) - oy
                    v = data[iy, ix]
                    wv = wmap[iy, ix] if use_wmap else 1.0
                v = v * scale - (bg_row + b * (xs[j] - xc))
                wv = wv * tweight
            _emit(mode, r, j, v, wv, values, weight, out, y0, x0)

KERNELS = {"resample": resample}


# ----------------------------------------------------------------------------- HiPS tiles
# `_hips_kernels.sample_tiles` fused in one pass (see `_hips_kernels.numba_sample_tiles`).
@numba.njit(nogil=True, cache=True, error_model="numpy")
def hips_sample_tiles(data, y0, x0, ny, nx, nodes_x, nodes_y, width, order, out):
    ntile, n, _ = nodes_x.shape
    h, w = data.shape
    step = (width - 1) / (n - 1)
    idx = np.empty(width, np.int64)
    frac = np.empty(width, np.float64)
    for p in range(width):
        t = p / step
        i = min(max(int(np.floor(t)), 0), n - 2)
        idx[p] = i
        frac[p] = t - i
    for k in range(ntile):
        for r in range(width):
            i = idx[r]
            fr = frac[r]
            for c in range(width):
                j = idx[c]
                fc = frac[c]
                a = (1.0 - fr) * (1.0 - fc)
                b = (1.0 - fr) * fc
                cc = fr * (1.0 - fc)
                d = fr * fc
                x = (a * nodes_x[k, i, j] + b * nodes_x[k, i, j + 1]
                     + cc * nodes_x[k, i + 1, j] + d * nodes_x[k, i + 1, j + 1])
                y = (a * nodes_y[k, i, j] + b * nodes_y[k, i, j + 1]
                     + cc * nodes_y[k, i + 1, j] + d * nodes_y[k, i + 1, j + 1])
                if not (x >= -0.5 and x <= nx - 0.5 and y >= -0.5 and y <= ny - 0.5):
                    out[k, r, c] = np.nan
                    continue
                x = min(max(x, 0.0), nx - 1.0) - x0
                y = min(max(y, 0.0), ny - 1.0) - y0
                x = min(max(x, 0.0), w - 1.0)
                y = min(max(y, 0.0), h - 1.0)
                if order == 0:
                    ix = min(int(np.floor(x + 0.5)), w - 1)
                    iy = min(int(np.floor(y + 0.5)), h - 1)
                    out[k, r, c] = data[iy, ix]
                    continue
                ix = min(int(np.floor(x)), max(w - 2, 0))
                iy = min(int(np.floor(y)), max(h - 2, 0))
                fx = x - ix
                fy = y - iy
                jx = min(ix + 1, w - 1)
                jy = min(iy + 1, h - 1)
                acc = 0.0
                bad = False
                for yy, xx, wt in ((iy, ix, (1.0 - fx) * (1.0 - fy)), (iy, jx, fx * (1.0 - fy)),
                                   (jy, ix, (1.0 - fx) * fy), (jy, jx, fx * fy)):
                    if wt != 0.0:
                        v = data[yy, xx]
                        if np.isnan(v):
                            bad = True
                        else:
                            acc += wt * v
                out[k, r, c] = np.nan if bad else acc
