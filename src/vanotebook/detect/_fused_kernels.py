"""The numba kernels behind `._fused`, compiled at module level (so numba's on-disk
cache keeps them) and imported only when a fused pass runs: importing the
detection, or detecting on a small image, does not import numba."""

import math

import numba
import numpy as np

__all__ = ["KERNELS"]

_ROWS = 64  # rows per parallel block of the smoothing (each block has its own buffers)

_jit = numba.njit(nogil=True, cache=True, error_model="numpy")
# the whole-image passes run their rows on every core (each row's arithmetic is its own,
# so the bytes do not depend on the thread count)
_pjit = numba.njit(nogil=True, cache=True, error_model="numpy", parallel=True)

@_jit
def _snr_pixel(data, bv, rv, merge, y, x, sub, snr, above):
    # one pixel of the S/N maps, given its background and rms
    nan = np.float32(np.nan)
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

@_pjit
def _snr_kernel(data, rb, mb, rr, mr, iy, ay, by, cy, dy, merge, bkg, rms, sub, snr, above):
    ny, nx = data.shape
    for y in numba.prange(ny):
        i = iy[y]
        a, b, c, d = ay[y], by[y], cy[y], dy[y]
        for x in range(nx):
            bv = np.float32(a * rb[i, x] + b * rb[i + 1, x] + c * mb[i, x]
                            + d * mb[i + 1, x])
            rv = np.float32(a * rr[i, x] + b * rr[i + 1, x] + c * mr[i, x]
                            + d * mr[i + 1, x])
            bkg[y, x] = bv
            rms[y, x] = rv
            _snr_pixel(data, bv, rv, merge, y, x, sub, snr, above)

@_pjit
def _snr_maps_kernel(data, bkg, rms, merge, sub, snr, above):
    ny, nx = data.shape
    for y in numba.prange(ny):
        for x in range(nx):
            _snr_pixel(data, bkg[y, x], rms[y, x], merge, y, x, sub, snr, above)

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

@_pjit
def _smooth_kernel(src, w, tmp, out):
    ny, nx = src.shape
    r = (w.shape[0] - 1) // 2
    blocks = (ny + _ROWS - 1) // _ROWS
    for blk in numba.prange(blocks):  # along x, edges repeated ("nearest")
        buf = np.empty(nx + 2 * r, np.float32)
        acc = np.empty(nx, np.float32)
        for y in range(blk * _ROWS, min((blk + 1) * _ROWS, ny)):
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
    for blk in numba.prange(blocks):  # along y: whole rows at a time
        acc = np.empty(nx, np.float32)
        for y in range(blk * _ROWS, min((blk + 1) * _ROWS, ny)):
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

KERNELS = {"near": _near_kernel, "snr": _snr_kernel, "snr_maps": _snr_maps_kernel,
           "render": _render_kernel, "ratio": _ratio_kernel, "zscore": _zscore_kernel,
           "peaks": _peaks_kernel, "smooth": _smooth_kernel, "boxes": _boxes_kernel}
