"""Array-API kernels of the cube service: moments, PV sampling, spectra, noise.

Every function takes arrays of one namespace (numpy, CuPy, array-api-strict)
and uses only the standard through `array_api_compat`; none knows of Dask.
Blocks are ``(v, y, x)`` with the whole spectral axis (moments) or a run of
whole planes (PV slices, spectra).
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace

__all__ = ["MOMENTS", "binned_sum", "mad_noise", "moment_maps", "pv_gather",
           "region_sums"]

#: Moment maps by name, with the CASA ``moments=`` number of each (CASA's moment 2 is
#: the dispersion, ``linewidth_sigma`` here; ``moment2`` is spectral-cube's variance).
MOMENTS = {
    "mean": -1, "moment0": 0, "moment1": 1, "moment2": 2, "median": 3, "std": 5,
    "rms": 6, "abs_mean_deviation": 7, "peak": 8, "velocity_of_peak": 9, "min": 10,
    "velocity_of_min": 11, "linewidth_sigma": None, "linewidth_fwhm": None,
}
_SIGMA_TO_FWHM = math.sqrt(8.0 * math.log(2.0))


def _median(xp, x, valid, n):
    """Median along axis 0 of ``x`` where ``valid`` (``n`` valid per column); NaN if none."""
    big = xp.where(valid, x, xp.full_like(x, math.inf))
    s = xp.sort(big, axis=0)
    lo = xp.clip((n - 1) // 2, 0, None)
    hi = xp.clip(n // 2, 0, None)
    a = xp.take_along_axis(s, xp.reshape(lo, (1, -1)), axis=0)[0, ...]
    b = xp.take_along_axis(s, xp.reshape(hi, (1, -1)), axis=0)[0, ...]
    return xp.where(n > 0, 0.5 * (a + b), xp.full_like(a, math.nan))


def mad_noise(x):
    """Robust noise of each spectrum of a ``(v, npix)`` block: 1.4826 x MAD (NaNs ignored)."""
    xp = array_namespace(x)
    valid = xp.isfinite(x)
    n = xp.sum(xp.astype(valid, xp.int64), axis=0)
    med = _median(xp, x, valid, n)
    dev = xp.abs(x - med[None, :])
    return 1.4826 * _median(xp, dev, valid, n)


def moment_maps(block, velocity, width, names: tuple[str, ...], *, threshold: Any = None,
                auto_sigma: float | None = None, mask=None):
    """The moment maps ``names`` of a ``(v, y, x)`` block, stacked as ``(len(names), y, x)``.

    Parameters
    ----------
    block : array
        Brightness, any float dtype; sums are taken in float64.
    velocity, width : array
        Channel centres and absolute widths (km/s), shape ``(v,)``, float64.
    names : tuple of str
        Keys of `MOMENTS`.
    threshold : float, optional
        Only voxels above it count.
    auto_sigma : float, optional
        Only voxels above ``auto_sigma`` times each spectrum's MAD noise count,
        and their neighbouring channels.
    mask : array of bool, optional
        ``(v, y, x)``: voxels that count.

    Notes
    -----
    Follows spectral-cube's definitions: ``moment0 = sum(I dv)``,
    ``moment1 = sum(I v dv) / sum(I dv)``, ``moment2 = sum(I (v - m1)^2 dv) / sum(I dv)``
    over the valid voxels; a spectrum with none gives NaN.
    """
    xp = array_namespace(block)
    nv, ny, nx = block.shape
    x = xp.reshape(block, (nv, ny * nx))
    f64 = xp.float64
    valid = xp.isfinite(x)
    if mask is not None:
        valid = valid & xp.reshape(mask, (nv, ny * nx))
    if threshold is not None:
        valid = valid & (x > threshold)
    if auto_sigma is not None:
        sigma = mad_noise(x)
        hot = valid & (x > auto_sigma * sigma[None, :])
        grown = hot
        if nv > 1:
            pad = xp.zeros((1, ny * nx), dtype=xp.bool)
            grown = grown | xp.concat([hot[1:, ...], pad], axis=0) | \
                xp.concat([pad, hot[:-1, ...]], axis=0)
        valid = valid & grown
    # one float64 copy, zero where not counted (NaNs, masked); sums in float64
    w = xp.astype(xp.where(valid, x, xp.zeros_like(x)), f64)
    v0 = velocity[0]
    vr = velocity - v0
    anyv = xp.any(valid, axis=0)
    nan = xp.full((ny * nx,), math.nan, dtype=f64)
    out: dict[str, Any] = {}
    need = set(names)
    if need & {"moment0", "moment1", "moment2", "linewidth_sigma", "linewidth_fwhm"}:
        coef = xp.stack([width, width * vr, width * vr * vr])  # (3, v)
        s = coef @ w  # (3, npix): one pass through BLAS
        _moments012(xp, s, anyv, v0, out)
    if need & {"mean", "std", "rms", "abs_mean_deviation"}:
        n = xp.sum(xp.astype(valid, f64), axis=0)
        nsafe = xp.where(n > 0, n, nan)
        mean = xp.sum(w, axis=0) / nsafe
        out["mean"] = mean
        d = xp.where(valid, w - mean[None, :], xp.zeros_like(w))
        n1 = xp.where(n > 1, n - 1, nan)
        out["std"] = xp.sqrt(xp.sum(d * d, axis=0) / n1)
        out["rms"] = xp.sqrt(xp.sum(w * w, axis=0) / nsafe)
        out["abs_mean_deviation"] = xp.sum(xp.abs(d), axis=0) / nsafe
    if need & {"peak", "velocity_of_peak"}:
        hi = xp.where(valid, w, xp.full_like(w, -math.inf))
        k = xp.argmax(hi, axis=0)
        out["peak"] = xp.where(anyv, xp.max(hi, axis=0), nan)
        out["velocity_of_peak"] = xp.where(anyv, xp.take(velocity, k), nan)
    if need & {"min", "velocity_of_min"}:
        lo = xp.where(valid, w, xp.full_like(w, math.inf))
        k = xp.argmin(lo, axis=0)
        out["min"] = xp.where(anyv, xp.min(lo, axis=0), nan)
        out["velocity_of_min"] = xp.where(anyv, xp.take(velocity, k), nan)
    if "median" in need:
        n = xp.sum(xp.astype(valid, xp.int64), axis=0)
        out["median"] = _median(xp, w, valid, n)
    maps = [xp.reshape(out[name], (ny, nx)) for name in names]
    return xp.stack(maps)


def _moments012(xp, s, anyv, v0, out: dict) -> None:
    """Moments 0-2 and the line widths from the sums ``s = (I dv, I v' dv, I v'^2 dv)``."""
    s0 = s[0, ...]
    nan = xp.full(s0.shape, math.nan, dtype=s0.dtype)
    safe = xp.where(s0 != 0, s0, nan)
    m1r = s[1, ...] / safe
    m2 = s[2, ...] / safe - m1r * m1r
    out["moment0"] = xp.where(anyv, s0, nan)
    out["moment1"] = m1r + v0
    out["moment2"] = m2
    sig = xp.sqrt(xp.where(m2 >= 0, m2, nan))
    out["linewidth_sigma"] = sig
    out["linewidth_fwhm"] = sig * _SIGMA_TO_FWHM


def moments_from_sums(s, count, v0: float, names: tuple[str, ...], shape: tuple[int, int]):
    """The maps ``names`` (a subset of moments 0-2 and widths) from precomputed sums."""
    xp = array_namespace(s)
    out: dict[str, Any] = {}
    _moments012(xp, s, count > 0, v0, out)
    return xp.stack([xp.reshape(out[name], shape) for name in names])


def binned_sum(block, width, starts: tuple[int, ...], stops: tuple[int, ...]):
    """Integrated intensity ``sum(I dv)`` of each channel range ``[start, stop)``.

    ``(len(starts), y, x)`` float64; NaN where a range holds no finite voxel.
    """
    xp = array_namespace(block)
    xd = xp.astype(block, xp.float64)
    valid = xp.isfinite(xd)
    w = xp.where(valid, xd, xp.zeros_like(xd)) * width[:, None, None]
    maps = []
    for a, b in zip(starts, stops, strict=True):
        s = xp.sum(w[a:b, ...], axis=0)
        anyv = xp.any(valid[a:b, ...], axis=0)
        maps.append(xp.where(anyv, s, xp.full_like(s, math.nan)))
    return xp.stack(maps)


def pv_gather(block, index, weight, *, interpolate: bool = False):
    """Weighted sums of pixels per PV column: ``(v, n_offset)``.

    Parameters
    ----------
    block : array
        ``(v, npix)`` planes flattened (the pixels a path can touch).
    index : array of int
        ``(n_offset, m)`` indices into the flattened pixels (padding: any index).
    weight : array
        ``(n_offset, m)`` weights (0 for padding).
    interpolate : bool
        False: the area-weighted mean of the finite pixels (pvextractor's
        polygon rule; a column with none is NaN). True: interpolation weights
        summing to 1 (pvextractor's line rule, as ``map_coordinates`` on the
        NaN-zeroed cube): NaN pixels count as 0, and a column is NaN when its NaN
        pixels carry half the weight or more.
    """
    xp = array_namespace(block)
    nv = block.shape[0]
    no, m = index.shape
    vals = xp.take(xp.astype(block, xp.float64), xp.reshape(index, (-1,)), axis=1)
    vals = xp.reshape(vals, (nv, no, m))
    finite = xp.isfinite(vals)
    zeroed = xp.where(finite, vals, xp.zeros_like(vals))
    nan = xp.full((nv, no), math.nan, dtype=xp.float64)
    if interpolate:
        num = xp.sum(zeroed * weight[None, ...], axis=2)
        bad = xp.sum(xp.where(finite, xp.zeros_like(vals), xp.ones_like(vals))
                     * weight[None, ...], axis=2)
        return xp.where(bad >= 0.5, nan, num)
    good = finite & (weight[None, ...] > 0)
    wv = xp.where(good, weight[None, ...], xp.zeros_like(vals))
    num = xp.sum(zeroed * wv, axis=2)
    den = xp.sum(wv, axis=2)
    return xp.where(den > 0, num / xp.where(den > 0, den, xp.ones_like(den)), nan)


def region_sums(block, inside):
    """Sum and count of finite pixels inside a region, per channel: ``(2, v)``.

    ``block`` is ``(v, y, x)``; ``inside`` a ``(y, x)`` bool array.
    """
    xp = array_namespace(block)
    nv = block.shape[0]
    xd = xp.reshape(xp.astype(block, xp.float64), (nv, -1))
    m = xp.reshape(inside, (1, -1)) & xp.isfinite(xd)
    s = xp.sum(xp.where(m, xd, xp.zeros_like(xd)), axis=1)
    n = xp.sum(xp.astype(m, xp.float64), axis=1)
    return xp.stack([s, n])
