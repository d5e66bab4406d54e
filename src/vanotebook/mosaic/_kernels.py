"""Numerical kernels of the mosaicking service: no Dask, written once against the array API.

The same functions run on numpy, CuPy and ``array_api_strict`` arrays
(``array_api_compat.get_namespace``). What the standard lacks comes through
one shim per need:

* `map_coordinates` (bilinear / nearest sampling): ``scipy.ndimage`` for
  numpy, ``cupyx.scipy.ndimage`` for CuPy, and a pure array-API gather for any
  other namespace (the one the tests compare against the fast paths);
* `scatter_add` (the flux-conserving drizzle): ``numpy.bincount`` /
  ``cupy.bincount``, else a round trip through numpy via DLPack.

The coordinate transformation, which dominates reprojection cost, is paid
only on a coarse grid of nodes (`coarse_nodes`, in numpy with astropy) and
interpolated bilinearly to every pixel (`upsample_nodes`, array API), within
a tolerance `choose_step` measures at the cell centres.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import is_cupy_namespace, is_numpy_namespace

from .._optional import HAS_NUMBA, to_numpy
from .._optional import namespace as get_namespace

__all__ = [
    "bilinear",
    "choose_step",
    "coarse_nodes",
    "has_distortion",
    "input_box",
    "interp_index",
    "interp_matrix",
    "map_coordinates",
    "nearest",
    "pixel_to_pixel",
    "pixel_to_world",
    "sample",
    "scatter_add",
    "upsample_nodes",
    "world_to_pixel",
]


# ----------------------------------------------------------------------------- transforms
def has_distortion(wcs) -> bool:
    """Whether a WCS carries distortions outside wcslib's own transform (SIP, lookup tables).

    TPV and the other polynomial projections live in wcslib's ``PV`` cards and are part
    of ``wcs_pix2world`` already; SIP (``A_p_q``...) and the paper-IV lookup tables
    (``CPDIS``/``D2IMDIS``) are applied only by the ``all_*`` transforms.
    """
    return bool(getattr(wcs, "sip", None) is not None or getattr(wcs, "cpdis1", None) is not None
                or getattr(wcs, "cpdis2", None) is not None
                or getattr(wcs, "det2im1", None) is not None
                or getattr(wcs, "det2im2", None) is not None)


def pixel_to_world(wcs, x, y) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates (deg) of 0-based pixels ``x, y``, with every distortion applied."""
    if has_distortion(wcs):
        return wcs.all_pix2world(x, y, 0)
    return wcs.wcs_pix2world(x, y, 0)


def world_to_pixel(wcs, lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixels of world coordinates (deg), inverting every distortion.

    A distorted WCS is inverted iteratively (``all_world2pix``) to 1e-8 pixel. Where
    the iteration diverges or stalls (far outside the image, where a SIP polynomial
    folds) the pixel is NaN, as it is beyond a projection's horizon: such positions
    are off the image, never placed at a wrong pixel.
    """
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    with np.errstate(invalid="ignore"):
        if not has_distortion(wcs):
            return wcs.wcs_world2pix(lon, lat, 0)
        from astropy.wcs import NoConvergence

        shape = np.broadcast(lon, lat).shape
        world = np.stack([np.broadcast_to(lon, shape).ravel(),
                          np.broadcast_to(lat, shape).ravel()], axis=1)
        finite = np.isfinite(world).all(axis=1)
        pix = np.full(world.shape, np.nan)
        if finite.any():
            try:
                pix[finite] = wcs.all_world2pix(world[finite], 0, tolerance=1e-8, maxiter=60,
                                                adaptive=False, detect_divergence=True)
            except NoConvergence as exc:
                best = np.array(exc.best_solution, dtype=float)
                for bad in (exc.divergent, exc.slow_conv):
                    if bad is not None:
                        best[np.asarray(bad, dtype=int)] = np.nan
                pix[finite] = best
        return pix[:, 0].reshape(shape), pix[:, 1].reshape(shape)


def pixel_to_pixel(wcs_from, wcs_to, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (0-based) in ``wcs_to`` of pixels ``x, y`` of ``wcs_from``.

    Both are celestial WCS; their frames may differ (ICRS, FK5 and FK4 with their
    equinoxes, Galactic...: astropy's frame transforms). Distortions (SIP, lookup
    tables, TPV) of either are applied (`pixel_to_world`, `world_to_pixel`).
    """
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import wcs_to_celestial_frame

    lon, lat = pixel_to_world(wcs_from, x, y)
    f_from, f_to = wcs_to_celestial_frame(wcs_from), wcs_to_celestial_frame(wcs_to)
    if not f_from.is_equivalent_frame(f_to):
        with np.errstate(invalid="ignore"):
            c = SkyCoord(lon, lat, unit="deg", frame=f_from).transform_to(f_to)
        lon, lat = c.spherical.lon.deg, c.spherical.lat.deg
    return world_to_pixel(wcs_to, lon, lat)


def coarse_nodes(wcs_from, wcs_to, kx: np.ndarray, ky: np.ndarray,
                 step: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact transform at the nodes ``(ky*step, kx*step)`` of ``wcs_from``'s pixel grid.

    Returns two ``(len(ky), len(kx))`` float64 arrays of ``wcs_to`` pixel coordinates.
    """
    gx, gy = np.meshgrid(np.asarray(kx, float) * step, np.asarray(ky, float) * step)
    x, y = pixel_to_pixel(wcs_from, wcs_to, gx, gy)
    return np.asarray(x, float), np.asarray(y, float)


def interp_matrix(positions, k0: int, n_nodes: int, step: int) -> np.ndarray:
    """Linear-interpolation weights from nodes ``k0..k0+n_nodes-1`` to pixel ``positions``.

    Node ``k`` sits at pixel ``k*step``; the result has shape ``(len(positions), n_nodes)``.
    Positions outside the nodes are extrapolated from the nearest cell.
    """
    p = np.asarray(positions, dtype=float)
    t = p / step - k0
    i = np.clip(np.floor(t).astype(int), 0, max(n_nodes - 2, 0))
    f = t - i
    w = np.zeros((p.size, n_nodes))
    rows = np.arange(p.size)
    w[rows, i] = 1.0 - f
    if n_nodes > 1:
        w[rows, i + 1] += f
    return w


def interp_index(positions, k0: int, n_nodes: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Left node index and fraction of each pixel position (the sparse form of `interp_matrix`)."""
    p = np.asarray(positions, dtype=float)
    t = p / step - k0
    i = np.clip(np.floor(t).astype(np.int64), 0, max(n_nodes - 2, 0))
    return i, t - i


def upsample_nodes(nodes, wy, wx):
    """Interpolate a coarse node grid to full resolution (array API).

    ``wy`` and ``wx`` are either dense weight matrices (`interp_matrix`:
    ``wy @ nodes @ wx.T``) or ``(index, fraction)`` pairs (`interp_index`),
    the separable gather form, which costs a few operations per pixel.
    """
    xp = get_namespace(nodes)
    if not isinstance(wy, tuple):
        return xp.matmul(xp.matmul(wy, nodes), xp.permute_dims(wx, (1, 0)))
    (iy, fy), (ix, fx) = wy, wx
    n = nodes.shape[0]
    j = xp.clip(iy + 1, 0, n - 1)
    rows = (xp.take(nodes, iy, axis=0) * (1.0 - fy)[:, None]
            + xp.take(nodes, j, axis=0) * fy[:, None])
    m = nodes.shape[1]
    k = xp.clip(ix + 1, 0, m - 1)
    return xp.take(rows, ix, axis=1) * (1.0 - fx)[None, :] + xp.take(rows, k, axis=1) * fx[None, :]


def _pairs(positions, k0, n_nodes, step, xp):
    i, f = interp_index(positions, k0, n_nodes, step)
    return as_namespace(i, xp), as_namespace(f, xp)


def choose_step(wcs_from, wcs_to, bbox: tuple[int, int, int, int], *, tolerance: float,
                start: int = 64, minimum: int = 1) -> tuple[int, float]:
    """The largest node spacing whose interpolated transform is within ``tolerance``.

    The error is measured where bilinear interpolation is worst, at the
    centres of the coarse cells, against the exact transform, over the
    output box ``bbox = (y0, y1, x0, x1)``. Where no spacing of 2 or more meets
    it (the seams of HEALPix's HPX, the boundary of an all-sky AIT map, a lookup
    table's kinks), the step is 1: every pixel is a node, and the transform is
    exact at every pixel (error 0).

    Returns
    -------
    step : int
        Node spacing in output pixels (a power of two, at least ``minimum``).
    error : float
        The largest error at the output pixels, in ``wcs_to`` pixels.
    """
    if minimum <= 1 and start <= 1:
        return 1, 0.0
    y0, y1, x0, x1 = bbox
    step = start
    while True:
        kx = np.arange(x0 // step, -(-(x1 - 1) // step) + 1)
        ky = np.arange(y0 // step, -(-(y1 - 1) // step) + 1)
        nx, ny = coarse_nodes(wcs_from, wcs_to, kx, ky, step)
        # cell centres: exact vs bilinear (mean of the four corners is bilinear at the centre)
        cx = (kx[:-1] + 0.5) if kx.size > 1 else kx.astype(float)
        cy = (ky[:-1] + 0.5) if ky.size > 1 else ky.astype(float)
        ex, ey = coarse_nodes(wcs_from, wcs_to, cx, cy, step)
        if kx.size > 1 and ky.size > 1:
            ix = 0.25 * (nx[:-1, :-1] + nx[1:, :-1] + nx[:-1, 1:] + nx[1:, 1:])
            iy = 0.25 * (ny[:-1, :-1] + ny[1:, :-1] + ny[:-1, 1:] + ny[1:, 1:])
            err = np.hypot(ix - ex, iy - ey)
            error = float(np.nanmax(err)) if np.isfinite(err).any() else math.inf
        else:
            error = 0.0
        if error <= tolerance or step <= minimum:
            return step, error
        step //= 2
        if step == 1:
            return 1, 0.0


# ----------------------------------------------------------------------------- sampling
def _clip_coords(xp, x, y, shape):
    """Reproject's edge rule: coordinates in the outer half of border pixels go to their centre.

    Returns the clipped coordinates and the mask of coordinates inside the image.
    """
    ny, nx = shape
    inside = (x >= -0.5) & (x <= nx - 0.5) & (y >= -0.5) & (y <= ny - 0.5)
    inside = inside & ~(xp.isnan(x) | xp.isnan(y))
    x = xp.clip(xp.where(inside, x, 0.0), 0.0, float(nx - 1))
    y = xp.clip(xp.where(inside, y, 0.0), 0.0, float(ny - 1))
    return x, y, inside


def bilinear(data, x, y):
    """Bilinear sampling of ``data`` at (already clipped) ``x, y``: pure array API.

    A NaN among the four neighbours with non-zero weight makes the result NaN,
    as scipy's ``map_coordinates(order=1)`` does.
    """
    xp = get_namespace(data, x, y)
    ny, nx = data.shape
    flat = xp.reshape(data, (-1,))
    ix = xp.clip(xp.astype(xp.floor(x), xp.int64), 0, max(nx - 2, 0))
    iy = xp.clip(xp.astype(xp.floor(y), xp.int64), 0, max(ny - 2, 0))
    fx = x - xp.astype(ix, x.dtype)
    fy = y - xp.astype(iy, y.dtype)
    jx = xp.clip(ix + 1, 0, nx - 1)
    jy = xp.clip(iy + 1, 0, ny - 1)
    shape = x.shape

    def at(iy_, ix_):
        idx = xp.reshape(iy_ * nx + ix_, (-1,))
        return xp.reshape(xp.take(flat, idx), shape)

    dt = data.dtype
    fx = xp.astype(fx, dt)
    fy = xp.astype(fy, dt)
    one = xp.asarray(1.0, dtype=dt)
    terms = ((at(iy, ix), (one - fx) * (one - fy)), (at(iy, jx), fx * (one - fy)),
             (at(jy, ix), (one - fx) * fy), (at(jy, jx), fx * fy))
    out = xp.zeros(shape, dtype=dt)
    for value, weight in terms:
        # a zero weight must not let a NaN neighbour in (scipy skips zero-weight taps)
        out = out + xp.where(weight != 0, value * weight, xp.asarray(0.0, dtype=dt))
        out = xp.where((weight != 0) & xp.isnan(value), xp.asarray(xp.nan, dtype=dt), out)
    return out


def nearest(data, x, y):
    """Nearest-pixel sampling of ``data`` at (already clipped) ``x, y``: pure array API."""
    xp = get_namespace(data, x, y)
    ny, nx = data.shape
    # round half away from zero is irrelevant here; scipy rounds half up for order=0
    ix = xp.clip(xp.astype(xp.floor(x + 0.5), xp.int64), 0, nx - 1)
    iy = xp.clip(xp.astype(xp.floor(y + 0.5), xp.int64), 0, ny - 1)
    idx = xp.reshape(iy * nx + ix, (-1,))
    return xp.reshape(xp.take(xp.reshape(data, (-1,)), idx), x.shape)


def map_coordinates(data, x, y, *, order: int):
    """The ndimage shim: scipy for numpy, cupyx for CuPy, the array-API gather otherwise."""
    xp = get_namespace(data)
    if is_numpy_namespace(xp) or is_cupy_namespace(xp):
        if is_numpy_namespace(xp):
            from scipy import ndimage
        else:  # pragma: no cover - needs a GPU
            from cupyx.scipy import ndimage
        coords = xp.stack([xp.reshape(y, (-1,)), xp.reshape(x, (-1,))])
        out = ndimage.map_coordinates(data, coords, order=order, mode="nearest",
                                      prefilter=False)
        return xp.reshape(out, x.shape)
    return bilinear(data, x, y) if order == 1 else nearest(data, x, y)


def sample(data, x, y, *, method: str = "bilinear", gather: bool = False, shape=None,
           offset: tuple[int, int] = (0, 0)):
    """Sample ``data`` at input-pixel coordinates ``x, y`` (0-based) with reproject's edge rule.

    Returns ``(values, inside)``: values are NaN outside the image. ``gather``
    takes the array-API gather (`bilinear`, `nearest`) on numpy too, instead of
    scipy's ``map_coordinates`` (whose import, ~0.3 s, a small mosaic's first
    call would otherwise pay). ``data`` may be the region at ``offset`` (y, x)
    of an image of ``shape`` (`_input_region`) that holds every pixel the
    coordinates inside the image touch: the same values as the whole image.
    """
    xp = get_namespace(data, x)
    x, y, inside = _clip_coords(xp, x, y, data.shape if shape is None else shape)
    if offset != (0, 0):  # exact: an integer off a coordinate of at least its size
        x, y = x - float(offset[1]), y - float(offset[0])
    order = 1 if method == "bilinear" else 0
    if gather:
        values = bilinear(data, x, y) if order == 1 else nearest(data, x, y)
    else:
        values = map_coordinates(data, x, y, order=order)
    nan = xp.asarray(xp.nan, dtype=values.dtype)
    return xp.where(inside, values, nan), inside


# ----------------------------------------------------------------------------- drizzle
def scatter_add(index, values, length: int):
    """``out[index[i]] += values[i]`` into a zero vector of ``length``: the bincount shim."""
    xp = get_namespace(index, values)
    if is_numpy_namespace(xp) or is_cupy_namespace(xp):
        return xp.bincount(index, weights=values, minlength=length)[:length]
    np_index = np.from_dlpack(index)
    np_values = np.from_dlpack(values)
    out = np.bincount(np_index, weights=np_values, minlength=length)[:length]
    return xp.asarray(out, dtype=values.dtype)


def drizzle(data, ox, oy, shape: tuple[int, int], sub_area):
    """Forward-map sub-pixel fluxes into output bins (flux-conserving, point drizzle).

    Parameters
    ----------
    data : array (m, n)
        Surface brightness at each input sub-pixel.
    ox, oy : arrays (m, n)
        Output pixel coordinates (relative to the output window) of each sub-pixel centre.
    shape : (ny, nx)
        Output window shape.
    sub_area : array (m, n) or scalar
        Solid angle of each sub-pixel, in output-pixel units.

    Returns
    -------
    flux, area : arrays (ny, nx)
        Sum of brightness x area, and of area, landing in each output pixel.
    """
    xp = get_namespace(data, ox)
    ny, nx = shape
    ix = xp.astype(xp.floor(ox + 0.5), xp.int64)
    iy = xp.astype(xp.floor(oy + 0.5), xp.int64)
    good = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & ~xp.isnan(data)
    good = good & ~(xp.isnan(ox) | xp.isnan(oy))
    area = xp.zeros(data.shape, dtype=xp.float64) + sub_area
    idx = xp.reshape(xp.where(good, iy * nx + ix, 0), (-1,))
    zero = xp.asarray(0.0, dtype=xp.float64)
    flux_v = xp.reshape(xp.where(good, xp.astype(data, xp.float64) * area, zero), (-1,))
    area_v = xp.reshape(xp.where(good, area, zero), (-1,))
    flux = xp.reshape(scatter_add(idx, flux_v, ny * nx), shape)
    area_out = xp.reshape(scatter_add(idx, area_v, ny * nx), shape)
    return flux, area_out


def as_namespace(array: Any, xp):
    """``array`` in namespace ``xp`` (numpy in, numpy/CuPy/strict out)."""
    if is_numpy_namespace(xp):
        return np.asarray(array)
    return xp.asarray(array)


def nanmedian(stack):
    """Median over axis 0 ignoring NaN: numpy/CuPy's own, else through numpy."""
    xp = get_namespace(stack)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels give NaN
        if is_numpy_namespace(xp) or is_cupy_namespace(xp):
            return xp.nanmedian(stack, axis=0)
        return xp.asarray(np.nanmedian(to_numpy(stack), axis=0))


def _intersect(a, b):
    y0, y1 = max(a[0], b[0]), min(a[1], b[1])
    x0, x1 = max(a[2], b[2]), min(a[3], b[3])
    if y0 >= y1 or x0 >= x1:
        return None
    return y0, y1, x0, x1


def inverse_map(tile, ys, xs, xp):
    """Input-pixel coordinates of output pixels ``ys x xs`` (1-D positions) of one tile."""
    ny, nx = tile.nodes_x.shape
    wy = _pairs(ys, tile.ky0, ny, tile.step, xp)
    wx = _pairs(xs, tile.kx0, nx, tile.step, xp)
    return (upsample_nodes(as_namespace(tile.nodes_x, xp), wy, wx),
            upsample_nodes(as_namespace(tile.nodes_y, xp), wy, wx))


def background_model(tile, ys, xs, xp, centre):
    """The tile's fitted background ``a + b (x - xc) + c (y - yc)`` on output pixels."""
    a, b, c = tile.plane
    yc, xc = centre
    dx = as_namespace(np.asarray(xs, float) - xc, xp)
    dy = as_namespace(np.asarray(ys, float) - yc, xp)
    return a + b * dx[None, :] + c * dy[:, None]


def reproject_window(tile, window, *, method: str, xp, centre, oversample: int = 2,
                     ys=None, xs=None):
    """One tile resampled onto part of the output grid.

    Parameters
    ----------
    tile : TilePlan
        The tile with its coarse transform nodes, weight, unit scale and background plane.
    window : (y0, y1, x0, x1)
        Output-pixel box.
    method : {"bilinear", "nearest", "flux-conserving"}
    xp : namespace
    centre : (yc, xc)
        Where background planes are referenced.
    ys, xs : 1-D arrays, optional
        Sample these output rows/columns instead of the whole box (background fitting).

    Returns
    -------
    None when the tile misses the window, else ``(box, values, weight)`` with
    ``box`` the covered part of ``window`` (or the sampled positions).
    """
    if ys is None:
        box = _intersect(window, tile.bbox)
        if box is None:
            return None
        y0, y1, x0, x1 = box
        ys, xs = np.arange(y0, y1), np.arange(x0, x1)
    else:
        box = window
    if (method != "flux-conserving" and is_numpy_namespace(xp) and tile.fused
            and numba_kernels() is not None):
        values, weight = fused_resample(tile, ys, xs, method=method, centre=centre)
        return box, values, weight
    if method == "flux-conserving":
        values, weight = exact_window(tile, ys, xs)
        values, weight = as_namespace(values, xp), as_namespace(weight, xp)
    else:
        # the part of the input these pixels touch (a lazy input is read there only, and
        # a worker may hold that region alone); sampled as the whole image would be
        region, oy, ox = _input_region(tile, ys, xs)
        at = {"shape": tile.data.shape, "offset": (oy, ox)}
        data = as_namespace(region, xp)
        X, Y = inverse_map(tile, ys, xs, xp)
        gather = not tile.fused  # a small mosaic: numpy only, nothing more to import
        values, inside = sample(data, X, Y, method=method, gather=gather, **at)
        good = inside & ~xp.isnan(values)
        weight = xp.astype(good, values.dtype)
        if getattr(tile.weight_map, "ndim", 0) == 2:
            wmap = tile.weight_map[oy:oy + region.shape[0], ox:ox + region.shape[1]]
            wmap, _ = sample(as_namespace(wmap, xp), X, Y, method=method, gather=gather, **at)
            weight = weight * xp.where(good, wmap, xp.asarray(0.0, dtype=wmap.dtype))
    values = values * tile.scale
    if any(tile.plane):
        values = values - xp.astype(background_model(tile, ys, xs, xp, centre), values.dtype)
    weight = weight * tile.weight
    return box, values, weight


class LazySource:
    """Base of lazy 2-D inputs read region by region (``shape``, ``dtype``, ``[y0:y1, x0:x1]``)."""

    shape: tuple[int, int]
    dtype: Any
    ndim = 2


def _input_region(tile, ys, xs):
    """The part of a tile's input the output rows ``ys`` x columns ``xs`` can touch.

    In-memory inputs are used whole; lazy ones (`LazySource`) are read only over the
    box the coarse nodes covering ``ys x xs`` map to, plus a one-pixel margin.
    """
    data = tile.data
    if not isinstance(data, LazySource):
        return data, 0, 0
    y0, y1, x0, x1 = input_box(tile, ys, xs)
    return data[y0:y1, x0:x1], y0, x0


def input_box(tile, ys, xs) -> tuple[int, int, int, int]:
    """The input-pixel box ``(y0, y1, x0, x1)`` that output rows ``ys`` x columns ``xs``
    of ``tile`` can sample: where their coarse nodes map, plus a one-pixel margin."""
    ny, nx = tile.data.shape
    nny, nnx = tile.nodes_x.shape
    i0 = min(max(int(np.floor(np.min(ys) / tile.step)) - tile.ky0, 0), nny - 1)
    i1 = min(max(int(np.floor(np.max(ys) / tile.step)) - tile.ky0 + 2, 1), nny)
    j0 = min(max(int(np.floor(np.min(xs) / tile.step)) - tile.kx0, 0), nnx - 1)
    j1 = min(max(int(np.floor(np.max(xs) / tile.step)) - tile.kx0 + 2, 1), nnx)
    sx = tile.nodes_x[i0:i1, j0:j1]
    sy = tile.nodes_y[i0:i1, j0:j1]
    x0 = min(max(int(np.floor(np.nanmin(sx))) - 1, 0), nx - 1)
    x1 = min(max(int(np.ceil(np.nanmax(sx))) + 2, x0 + 1), nx)
    y0 = min(max(int(np.floor(np.nanmin(sy))) - 1, 0), ny - 1)
    y1 = min(max(int(np.ceil(np.nanmax(sy))) + 2, y0 + 1), ny)
    return y0, y1, x0, x1


def fused_resample(tile, ys, xs, *, method: str, centre, mode: int = -1, out=None,
                   at: tuple[int, int] = (0, 0)):
    """`reproject_window`'s numpy fast path: the numba kernel, float32 out.

    Returns ``(values, weight)``; or, given ``out`` (a float32 ``(3, h, w)`` mosaic,
    weight and coverage) and ``mode`` (0 weighted sum, 1 first, 2 last), adds the
    samples to ``out`` at offset ``at`` in the same pass and returns placeholders.
    """
    k = numba_kernels()
    ys = np.asarray(ys, dtype=np.float64)
    xs = np.asarray(xs, dtype=np.float64)
    data, oy, ox = _input_region(tile, ys, xs)
    if data.dtype != np.float32 and data.dtype != np.float64:
        data = data.astype(np.float32)
    ny, nx = tile.data.shape
    use_wmap = getattr(tile.weight_map, "ndim", 0) == 2
    if use_wmap:
        wmap = np.asarray(tile.weight_map, dtype=np.float32)[oy:oy + data.shape[0],
                                                              ox:ox + data.shape[1]]
    else:
        wmap = np.zeros((1, 1), np.float32)
    if out is None:
        values = np.empty((ys.size, xs.size), np.float32)
        weight = np.empty((ys.size, xs.size), np.float32)
        out = np.empty((3, 1, 1), np.float32)
    else:
        values = weight = np.empty((1, 1), np.float32)
    k["resample"](data, oy, ox, ny, nx, wmap, use_wmap, tile.nodes_x, tile.nodes_y,
                  tile.ky0, tile.kx0, float(tile.step), ys, xs, 1 if method == "bilinear" else 0,
                  float(tile.scale), float(tile.weight), np.asarray(tile.plane, np.float64),
                  np.asarray(centre, np.float64), values, weight, mode, out, at[0], at[1])
    return values, weight


def exact_window(tile, ys, xs, margin: int = 3):
    """Flux-conserving resampling of one tile onto the output box ``ys x xs``: the exact
    spherical-polygon overlap of every input pixel with every output pixel
    (``reproject_exact``'s algorithm, run on the part of the input the box touches).

    NaN input pixels carry no area; a weight map weights every input pixel's area.
    Returns ``(values, weight)``: the (weighted) mean surface brightness over the covered
    part of each output pixel, and the covered (weighted) area in output pixels, so
    ``sum(values * weight) * output pixel area`` is the input's flux. Only the input
    region the box samples is read (`input_box`, a lazy `FitsSource` reads no more).
    """
    from reproject import reproject_exact

    ys = np.asarray(ys)
    xs = np.asarray(xs)
    shape = (ys.size, xs.size)
    nan = np.full(shape, np.nan, np.float32)
    zero = np.zeros(shape, np.float32)
    ny, nx = tile.data.shape
    iy0, iy1, ix0, ix1 = input_box(tile, ys, xs)
    iy0, ix0 = max(iy0 - margin, 0), max(ix0 - margin, 0)
    iy1, ix1 = min(iy1 + margin, ny), min(ix1 + margin, nx)
    if iy0 >= iy1 or ix0 >= ix1:
        return nan, zero
    data = np.asarray(tile.data[iy0:iy1, ix0:ix1], dtype=np.float64)
    valid = np.isfinite(data)
    if not valid.any():
        return nan, zero
    y0, x0 = int(ys[0]), int(xs[0])
    out_wcs = tile.grid_wcs[y0:y0 + shape[0], x0:x0 + shape[1]]
    in_wcs = tile.wcs[iy0:iy1, ix0:ix1]
    has_map = getattr(tile.weight_map, "ndim", 0) == 2
    if valid.all() and not has_map:  # one plane: the overlap-weighted mean is the answer
        res, footprint = reproject_exact((data, in_wcs), out_wcs, shape_out=shape)
        area = np.nan_to_num(footprint)
        values = np.where(area > 0, res, np.nan)
        return values.astype(np.float32), area.astype(np.float32)
    w = valid.astype(np.float64)
    if has_map:
        wmap = np.asarray(tile.weight_map[iy0:iy1, ix0:ix1], dtype=np.float64)
        w = np.where(np.isfinite(wmap) & (wmap > 0), wmap, 0.0) * w
    stack = np.stack([np.where(valid, data, 0.0) * w, w])
    res, footprint = reproject_exact((stack, in_wcs), out_wcs, shape_out=shape)
    footprint = footprint[1]  # the same for both planes
    with np.errstate(invalid="ignore", divide="ignore"):
        area = np.nan_to_num(res[1]) * np.nan_to_num(footprint)  # weighted covered area
        values = np.where(area > 0, res[0] / res[1], np.nan)
    return values.astype(np.float32), area.astype(np.float32)


# ----------------------------------------------------------------------------- fused CPU path
#: Output pixels from which a mosaic's numpy blocks take the fused numba kernel. Smaller
#: mosaics (decided once, for the whole grid, in `_plan.plan_tiles`) take the array-API
#: path: there it costs tens of ms, less than the ~1 s a fresh process pays once to
#: import numba and load the compiled kernel (the first call of a small mosaic, #20)
FUSED_PIXELS = 1 << 19


def numba_kernels():
    """The fused CPU kernels of `_fused` (``resample``), or None without numba.

    Imported on first use, so that building a mosaic's task graph does not import numba.
    """
    if not HAS_NUMBA:
        return None
    from ._fused import KERNELS

    return KERNELS
