"""Numerical kernels of the image HiPS writer: no Dask, written once against the array API.

A HiPS tile of order ``k`` and width ``w`` is the ``w x w`` block of HEALPix
pixels of order ``k + log2(w)`` inside the order-``k`` pixel ``index``
(NESTED). In the tile array as a FITS reader returns it, row ``r`` and column
``c`` hold the pixel whose position inside the order-``k`` pixel is
``dx = (w - r - 0.5) / w`` and ``dy = (c + 0.5) / w`` (``astropy_healpix``
offsets) -- the layout of Hipsgen and ``reproject.hips``; PNG tiles hold the
same rows upside down. `tile_offsets` gives those offsets, `subpixel_index`
the NESTED index of each tile pixel within its tile.

Resampling pays the exact transform (HEALPix -> sky -> input pixel, with
astropy) only at a coarse grid of nodes per tile; `sample_tiles` interpolates
the node coordinates to every tile pixel and samples the input there with
reproject's edge rule (bilinear or nearest), all in array-API calls, so the
same code runs on numpy, CuPy and ``array_api_strict``. `numba_sample_tiles`
is the fused CPU fast path (tested equal). `downsample2` is the NaN-aware 2x2
mean that makes every lower order, and `to_uint8` the PNG stretch.
"""

from __future__ import annotations

import math

import numpy as np

from .._optional import namespace as get_namespace
from ._kernels import map_coordinates

__all__ = [
    "STRETCHES",
    "downsample2",
    "node_positions",
    "numba_sample_tiles",
    "sample_tiles",
    "subpixel_index",
    "tile_offsets",
    "to_uint8",
]

STRETCHES = ("linear", "sqrt", "log", "asinh")


# ----------------------------------------------------------------------------- layout
def tile_offsets(rows, cols, width: int) -> tuple[np.ndarray, np.ndarray]:
    """HEALPix offsets ``(dx, dy)`` inside a tile of the tile positions ``rows, cols``.

    Positions are tile-pixel coordinates (row 0 is the first row of the FITS array);
    fractional positions give points between pixel centres.
    """
    rows = np.asarray(rows, dtype=float)
    cols = np.asarray(cols, dtype=float)
    return (width - rows - 0.5) / width, (cols + 0.5) / width


def node_positions(width: int, n: int) -> np.ndarray:
    """``n`` node positions evenly spaced from the first to the last pixel centre of a tile."""
    return np.arange(n, dtype=float) * ((width - 1) / (n - 1))


def _spread_bits(v: np.ndarray) -> np.ndarray:
    out = np.zeros_like(v)
    for bit in range(32):
        out |= ((v >> bit) & 1) << (2 * bit)
    return out


def subpixel_index(width: int) -> np.ndarray:
    """The NESTED index, within its tile, of every pixel of a ``width``-wide tile.

    Pixel ``[r, c]`` of tile ``index`` at order ``k`` is HEALPix pixel
    ``index * width**2 + subpixel_index(width)[r, c]`` at order ``k + log2(width)``.
    """
    r, c = np.mgrid[0:width, 0:width].astype(np.int64)
    ix = width - 1 - r  # along dx: the even bits
    iy = c  # along dy: the odd bits
    return _spread_bits(ix) | (_spread_bits(iy) << 1)


# ----------------------------------------------------------------------------- sampling
def _axis_weights(xp, width: int, n: int, like):
    step = (width - 1) / (n - 1)
    t = xp.arange(width, dtype=xp.float64) / step
    i = xp.clip(xp.astype(xp.floor(t), xp.int64), 0, n - 2)
    f = t - xp.astype(i, xp.float64)
    return i, f


def upsample_tiles(nodes, width: int):
    """Interpolate ``(T, n, n)`` node values bilinearly to ``(T, width, width)`` (array API)."""
    xp = get_namespace(nodes)
    n = nodes.shape[1]
    i, f = _axis_weights(xp, width, n, nodes)
    rows = (xp.take(nodes, i, axis=1) * (1.0 - f)[None, :, None]
            + xp.take(nodes, i + 1, axis=1) * f[None, :, None])
    return (xp.take(rows, i, axis=2) * (1.0 - f)[None, None, :]
            + xp.take(rows, i + 1, axis=2) * f[None, None, :])


def sample_tiles(data, nodes_x, nodes_y, *, width: int, origin: tuple[int, int] = (0, 0),
                 shape: tuple[int, int] | None = None, interpolation: str = "bilinear"):
    """Resample an image onto HiPS tiles (array API).

    Parameters
    ----------
    data : array, shape (h, w)
        The part of the input image starting at input pixel ``origin = (y0, x0)``;
        it must hold every pixel the tiles need (one pixel beyond their extent).
    nodes_x, nodes_y : array, shape (T, n, n), float64
        Input-pixel coordinates (0-based, of the whole image) of each tile's nodes,
        at tile positions `node_positions` ``(width, n)`` along rows and columns.
    width : int
        Tile width in pixels.
    shape : (ny, nx), optional
        Shape of the whole input image (reproject's edge rule is applied to it);
        ``data.shape`` by default.
    interpolation : {"bilinear", "nearest"}

    Returns
    -------
    array, shape (T, width, width), float32
        NaN where the input gives nothing.
    """
    xp = get_namespace(data, nodes_x, nodes_y)
    ny, nx = shape if shape is not None else data.shape
    y0, x0 = origin
    x = upsample_tiles(nodes_x, width)
    y = upsample_tiles(nodes_y, width)
    inside = (x >= -0.5) & (x <= nx - 0.5) & (y >= -0.5) & (y <= ny - 0.5)
    inside = inside & ~(xp.isnan(x) | xp.isnan(y))
    x = xp.clip(xp.where(inside, x, 0.0), 0.0, float(nx - 1)) - float(x0)
    y = xp.clip(xp.where(inside, y, 0.0), 0.0, float(ny - 1)) - float(y0)
    h, w = data.shape
    x = xp.clip(x, 0.0, float(w - 1))  # outside pixels only (their value is discarded)
    y = xp.clip(y, 0.0, float(h - 1))
    if data.dtype != xp.float32:
        data = xp.astype(data, xp.float32)
    values = map_coordinates(data, x, y, order=1 if interpolation == "bilinear" else 0)
    return xp.where(inside, values, xp.asarray(xp.nan, dtype=values.dtype))


def numba_sample_tiles(data, nodes_x, nodes_y, *, width: int, origin: tuple[int, int] = (0, 0),
                       shape: tuple[int, int] | None = None, interpolation: str = "bilinear",
                       out=None):
    """`sample_tiles` fused in one compiled pass (numpy only; needs numba)."""
    ny, nx = shape if shape is not None else data.shape
    data = np.ascontiguousarray(data, dtype=np.float32)
    nodes_x = np.ascontiguousarray(nodes_x, dtype=np.float64)
    nodes_y = np.ascontiguousarray(nodes_y, dtype=np.float64)
    if out is None:
        out = np.empty((nodes_x.shape[0], width, width), np.float32)
    from ._fused import hips_sample_tiles

    hips_sample_tiles(data, origin[0], origin[1], ny, nx, nodes_x, nodes_y, width,
                      1 if interpolation == "bilinear" else 0, out)
    return out


# ----------------------------------------------------------------------------- pyramid and PNG
def downsample2(tiles):
    """NaN-aware 2x2 mean over the last two axes (array API): ``(..., w, w) -> (..., w/2, w/2)``.

    A parent pixel is the mean of its finite children, NaN when none is finite.
    """
    xp = get_namespace(tiles)
    *lead, h, w = tiles.shape
    a = xp.reshape(tiles, (*lead, h // 2, 2, w // 2, 2))
    finite = ~xp.isnan(a)
    zero = xp.asarray(0.0, dtype=tiles.dtype)
    total = xp.sum(xp.sum(xp.where(finite, a, zero), axis=-1), axis=-2)
    count = xp.sum(xp.sum(xp.astype(finite, tiles.dtype), axis=-1), axis=-2)
    safe = xp.where(count > 0, count, xp.asarray(1.0, dtype=tiles.dtype))
    return xp.where(count > 0, total / safe, xp.asarray(xp.nan, dtype=tiles.dtype))


def to_uint8(tile, cut: tuple[float, float], stretch: str = "linear"):
    """Map values to 1..255 through ``cut = (low, high)`` and ``stretch``; NaN -> 0.

    Zero is the transparent grey of the PNG tiles (their ``tRNS`` chunk).
    """
    xp = get_namespace(tile)
    lo, hi = float(cut[0]), float(cut[1])
    t = (xp.astype(tile, xp.float32) - lo) / (hi - lo if hi > lo else 1.0)
    finite = ~xp.isnan(t)
    t = xp.clip(xp.where(finite, t, 0.0), 0.0, 1.0)
    if stretch == "sqrt":
        t = xp.sqrt(t)
    elif stretch == "log":
        t = xp.log(1.0 + 1000.0 * t) / math.log(1001.0)
    elif stretch == "asinh":
        t = xp.asinh(10.0 * t) / math.asinh(10.0)
    v = xp.astype(xp.round(t * 254.0) + 1.0, xp.uint8)
    return xp.where(finite, v, xp.asarray(0, dtype=xp.uint8))
