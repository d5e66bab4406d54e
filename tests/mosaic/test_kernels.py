"""The array-API kernels on array_api_strict against the numpy/scipy path."""

from __future__ import annotations

import array_api_strict as xps
import numpy as np
import pytest
from astropy.wcs import WCS

from vanotebook.mosaic._coadd import combine_window
from vanotebook.mosaic._core import prepare_images
from vanotebook.mosaic._kernels import choose_step, coarse_nodes, pixel_to_pixel, sample
from vanotebook.mosaic._plan import plan_tiles, resolve_grid


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_sample_strict_equals_scipy(method):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(40, 50)).astype(np.float32)
    x = rng.uniform(-1, 51, size=(30, 20))
    y = rng.uniform(-1, 41, size=(30, 20))
    ref, inside = sample(data, x, y, method=method)
    got, inside_s = sample(xps.asarray(data), xps.asarray(x), xps.asarray(y), method=method)
    np.testing.assert_array_equal(np.asarray(inside_s), inside)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert np.isnan(ref[~inside]).all()
    # the numpy gather of small mosaics (no scipy import) gives scipy's values, NaN
    # neighbours included
    data[10:12, 20:23] = np.nan
    ref, inside = sample(data, x, y, method=method)
    got, inside_g = sample(data, x, y, method=method, gather=True)
    np.testing.assert_array_equal(inside_g, inside)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6, equal_nan=True)


def test_coarse_transform_within_measured_tolerance():
    a = WCS(naxis=2)
    a.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    a.wcs.crval, a.wcs.crpix, a.wcs.cdelt = [30, 40], [100, 100], [-1e-3, 1e-3]
    b = WCS(naxis=2)
    b.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    b.wcs.crval, b.wcs.crpix, b.wcs.cdelt = [137.5, -20.2], [300, 300], [-7e-4, 7e-4]
    bbox = (0, 400, 0, 300)
    step, error = choose_step(a, b, bbox, tolerance=1e-3)
    assert error <= 1e-3
    # check against the exact transform at random pixels
    from vanotebook.mosaic._kernels import interp_matrix, upsample_nodes

    kx = np.arange(-1, 300 // step + 2)
    ky = np.arange(-1, 400 // step + 2)
    nx, ny = coarse_nodes(a, b, kx, ky, step)
    ys, xs = np.arange(0, 400, 7), np.arange(0, 300, 5)
    wy, wx = interp_matrix(ys, -1, ky.size, step), interp_matrix(xs, -1, kx.size, step)
    gx, gy = np.meshgrid(xs, ys)
    ex, ey = pixel_to_pixel(a, b, gx, gy)
    err = np.hypot(upsample_nodes(nx, wy, wx) - ex, upsample_nodes(ny, wy, wx) - ey)
    assert err.max() <= 1.5 * error + 1e-9


@pytest.mark.parametrize("method", ["bilinear", "nearest", "flux-conserving"])
@pytest.mark.parametrize("combine", ["mean", "median", "first"])
def test_combine_window_strict_equals_numpy(sky, method, combine):
    images = prepare_images(sky.images("radio"))
    grid = resolve_grid(images, "optimal")
    tiles = plan_tiles(images, grid, tolerance=1e-4, method=method)
    window = (380, 520, 390, 530)  # where all four tiles overlap
    ref = combine_window(tiles, window, combine=combine, method=method, xp=np)
    got = combine_window(tiles, window, combine=combine, method=method, xp=xps)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(np.asarray(g), r, rtol=2e-5, atol=1e-7, equal_nan=True)
    assert np.asarray(ref[2]).max() == 4


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize("combine", ["mean", "sum", "last", "count"])
def test_fused_numpy_path_equals_strict_with_planes_and_weight_maps(sky, method, combine):
    """The numba-fused numpy path (scale, background plane, weight map) vs the array API."""
    images = prepare_images(sky.images("radio"))
    grid = resolve_grid(images, "optimal")
    rng = np.random.default_rng(3)
    weights = [rng.uniform(0.5, 2.0, im.shape).astype(np.float32) if k % 2 else 1.5
               for k, im in enumerate(images)]
    tiles = plan_tiles(images, grid, tolerance=1e-4, method=method, weights=weights,
                       scales=[1.0, 2.0, 0.5, 1.0][:len(images)])
    assert all(t.fused for t in tiles)  # a grid of FUSED_PIXELS or more: the numba kernel
    for k, t in enumerate(tiles):
        t.plane = (0.1 * k, 1e-4 * k, -2e-4 * k)
    window = (300, 560, 350, 600)
    centre = (400.0, 410.0)
    ref = combine_window(tiles, window, combine=combine, method=method, xp=xps, centre=centre)
    got = combine_window(tiles, window, combine=combine, method=method, xp=np, centre=centre)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(g, np.asarray(r), rtol=2e-5, atol=1e-6, equal_nan=True)


def test_a_small_mosaic_reads_regions_and_equals_the_in_memory_one(tmp_path):
    """A mosaic under `FUSED_PIXELS` takes the numpy path; its FITS inputs are read
    region by region there too (a worker may be sent a tile's region alone), with the
    same bytes as the whole arrays in memory. Mutation: the region sampled without its
    offset fails."""
    from astropy.io import fits

    from vanotebook.mosaic import mosaic
    from vanotebook.mosaic._kernels import FUSED_PIXELS

    hdus, paths = [], []
    for i in range(2):
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [150.0 + 0.03 * i, 2.0 + 0.01 * i]
        w.wcs.crpix = [100.5, 90.5]
        w.wcs.cdelt = [-1 / 3600, 1 / 3600]
        data = np.random.default_rng(i).normal(size=(180, 200)).astype(np.float32)
        hdus.append(fits.PrimaryHDU(data, w.to_header()))
        paths.append(tmp_path / f"t{i}.fits")
        hdus[-1].writeto(paths[-1])
    # written to a file, the mosaic leaves its FITS inputs on disk (read by region)
    mosaic([str(p) for p in paths], output=tmp_path / "m.fits")
    in_memory = mosaic(hdus)
    assert in_memory["mosaic"].size < FUSED_PIXELS
    with fits.open(tmp_path / "m.fits") as hdul:
        np.testing.assert_array_equal(hdul[0].data, in_memory["mosaic"].values)
        np.testing.assert_array_equal(hdul["WEIGHT"].data, in_memory["weight"].values)
    assert np.isfinite(in_memory["mosaic"].values).mean() > 0.5
