"""The cube kernels give the same answers on array-api-strict as on numpy."""

from __future__ import annotations

import array_api_strict as xps
import numpy as np

from vanotebook.cube import _kernels as K
from vanotebook.cube._geometry import line_weights, polygon_weights

NAMES = tuple(K.MOMENTS)


def _block(M):
    return M.line_cube(M.velocities(60), 12, 10)


def test_moment_kernels_on_array_api_strict_match_numpy(M):
    block = _block(M)
    v = M.velocities(60)
    dv = np.full(60, 0.5)
    mask = block > -0.01
    for kwargs in ({}, {"threshold": 0.05}, {"auto_sigma": 3.0}):
        ref = K.moment_maps(block, v, dv, NAMES, **kwargs)
        got = K.moment_maps(xps.asarray(block), xps.asarray(v), xps.asarray(dv), NAMES,
                            **kwargs)
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-9, equal_nan=True)
    ref = K.moment_maps(block, v, dv, NAMES, mask=mask)
    got = K.moment_maps(xps.asarray(block), xps.asarray(v), xps.asarray(dv), NAMES,
                        mask=xps.asarray(mask))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-9, equal_nan=True)
    assert ref.shape == (len(NAMES), 12, 10)


def test_pv_spectrum_and_noise_kernels_on_array_api_strict(M):
    block = _block(M)
    nv = block.shape[0]
    flat = np.concatenate([block.reshape(nv, -1), np.full((nv, 1), np.nan, np.float32)], 1)
    x = np.array([0.5, 3.3, 8.9])
    y = np.array([1.2, 6.0, 10.5])
    for index, weight, interp in (
            (*line_weights(x, y, (12, 10), 1), True),
            (*polygon_weights(np.array([1.0, 8.0]), np.array([2.0, 9.0]), 1.0, 3.0, (12, 10)),
             False)):
        index = np.where(index >= 0, index, flat.shape[1] - 1)
        ref = K.pv_gather(flat, index, weight, interpolate=interp)
        got = K.pv_gather(xps.asarray(flat), xps.asarray(index), xps.asarray(weight),
                          interpolate=interp)
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-12, equal_nan=True)
    inside = np.zeros((12, 10), bool)
    inside[3:7, 2:5] = True
    np.testing.assert_allclose(np.asarray(K.region_sums(xps.asarray(block),
                                                        xps.asarray(inside))),
                               K.region_sums(block, inside), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(K.mad_noise(xps.asarray(flat[:, :-1].T))),
                               K.mad_noise(flat[:, :-1].T), rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(K.binned_sum(xps.asarray(block), xps.asarray(np.full(nv, 0.5)), (0, 20),
                                (20, 60))),
        K.binned_sum(block, np.full(nv, 0.5), (0, 20), (20, 60)), rtol=1e-12, equal_nan=True)


def test_median_and_noise_ignore_nans():
    x = np.array([[1.0, np.nan, 3.0], [2.0, np.nan, np.nan], [10.0, np.nan, 5.0],
                  [np.nan, np.nan, 4.0]])
    n = np.isfinite(x).sum(axis=0)
    med = K._median(np, x, np.isfinite(x), n)
    np.testing.assert_allclose(med, [2.0, np.nan, 4.0], equal_nan=True)
    rng = np.random.default_rng(0)
    noise = K.mad_noise(rng.normal(0, 2.0, (20_000, 3)))
    np.testing.assert_allclose(noise, 2.0, rtol=0.03)


def test_fused_pass_equals_the_array_kernel(M):
    from vanotebook._optional import HAS_NUMBA
    from vanotebook.cube._fused import fused_sums

    if not HAS_NUMBA:
        return
    block = _block(M)[:, 1:, :]  # a strided view, NaNs included
    v = M.velocities(60)
    dv = np.full(60, 0.5)
    names = ("moment0", "moment1", "moment2", "linewidth_fwhm")
    for threshold in (None, 0.05):
        sums, count = fused_sums(block, v - v[0], dv, threshold)
        got = K.moments_from_sums(sums, count, float(v[0]), names, block.shape[1:])
        ref = K.moment_maps(block, v, dv, names, threshold=threshold)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12, equal_nan=True)
