"""`to_hips`: an image (or a mosaic) as a HiPS 1.0 folder, made on Dask blocks.

The plan, made in the driver from the WCS alone (no pixels read):

1. the deepest order ``k`` from the pixel scale (as Hipsgen: the coarsest order
   whose tile pixels are no larger than the image's), unless given;
2. the order-``k`` tiles that can overlap the image (HEALPix cells of image
   points sampled finer than a tile, plus their neighbours), each with its
   coarse grid of transform nodes (`_hips_kernels`), kept where the nodes
   touch the image;
3. groups of tiles sharing an ancestor ``g`` orders up, about ``chunks`` tile
   pixels wide; each group is one Dask task that reads only the input box
   its nodes need (a dask array slice, a FITS section, or a view).

A group task resamples its tiles, writes them (FITS, PNG; each file atomically),
builds the orders ``k-1 .. k-g`` inside the group by NaN-aware 2x2 means, and
returns its root tile halved; small tasks combine those up to order 0. The
driver then writes ``Norder3/Allsky.{fits,png}``, ``Moc.fits`` (mocpy, from
the tiles' valid pixels), ``properties`` and ``provenance.json``. Everything is
written in a temporary folder beside ``out`` that replaces it only when
complete (`vanotebook.io.atomic_dir`).

Workers of another account (the gateway's) cannot write into the caller's
folder, nor read a FITS file there: then the group tasks return their tiles,
written by the driver as each group comes back, each group's input box is read
by the driver and sent with its task, and the few tiles above the groups are
made by the driver (`_run_here`). The tiles are the same.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from .. import cluster
from .._errors import VanotebookInputError, check_choice
from ..io import Image, atomic_dir, atomic_path, parse_image
from ..provenance import record
from ..units import fits_string
from ._hips_kernels import (
    STRETCHES,
    downsample2,
    node_positions,
    numba_sample_tiles,
    sample_tiles,
    subpixel_index,
    tile_offsets,
    to_uint8,
)
from ._kernels import LazySource, pixel_to_world, world_to_pixel

__all__ = ["FORMATS", "FRAMES", "INTERPOLATIONS", "Hips", "choose_order", "to_hips"]

ACTIVITY = "vanotebook.mosaic.to_hips"
FORMATS = ("fits", "png")
INTERPOLATIONS = ("bilinear", "nearest")
FRAMES = {"icrs": "equatorial", "galactic": "galactic", "ecliptic": "ecliptic"}
ALLSKY_ORDER = 3
MOC_DEPTH = 3
"""The MOC is made at order ``k + MOC_DEPTH`` (``k`` the deepest tile order)."""
TOLERANCE = 5e-5
"""Largest error, in input pixels, of the interpolated transform (measured)."""
GROUP_PREFIX = "mosaic-block-hips-"  # counted by `_dask.Tracker` as blocks
_MAX_NODES = 129
_LOCK = threading.Lock()
_ACTIVE: dict[str, int] = {}  # folder -> tasks writing into it (in this process)
_CANCELLED: set[str] = set()  # folders whose run failed: their tasks stop writing


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True)
class Hips:
    """A HiPS written by `to_hips`.

    Attributes
    ----------
    path : pathlib.Path
        The HiPS folder (``properties``, ``NorderK/DirD/NpixN.*``, ``Norder3/Allsky.*``,
        ``Moc.fits``, ``provenance.json``).
    order : int
        The deepest order (``hips_order``).
    tile_width : int
    frame : str
        ``"icrs"``, ``"galactic"`` or ``"ecliptic"``.
    formats : tuple of str
    tiles : dict
        Number of tiles written per order.
    cut : (float, float)
        The pixel cut of the PNG tiles (``hips_pixel_cut``).
    data_range : (float, float)
        Smallest and largest tile value (``hips_data_range``).
    properties : dict
        The ``properties`` file, as strings.
    moc : mocpy.MOC
        The sky coverage (``Moc.fits``).
    provenance : dict
        How it was made (also in ``provenance.json`` and the ``vanotebook_*`` properties).
    """

    path: Path
    order: int
    tile_width: int
    frame: str
    formats: tuple[str, ...]
    tiles: dict[int, int]
    cut: tuple[float, float]
    data_range: tuple[float, float]
    properties: dict[str, str] = field(repr=False)
    moc: Any = field(repr=False)
    provenance: dict = field(repr=False)

    @property
    def n_tiles(self) -> int:
        """Tiles written over all orders (per format)."""
        return sum(self.tiles.values())

    def tile_path(self, order: int, index: int, fmt: str = "fits") -> Path:
        """Path of the tile ``index`` of ``order`` (it may not exist where the image is not)."""
        return self.path / _tile_name(order, index, fmt)


def _tile_name(order: int, index: int, fmt: str) -> str:
    return f"Norder{order}/Dir{(index // 10000) * 10000}/Npix{index}.{fmt}"


# ----------------------------------------------------------------------------- orders
def _tile_side_deg(order: int) -> float:
    return math.degrees(math.sqrt(4 * math.pi / (12 * 4**order)))


def choose_order(pixel_scale_deg: float, tile_width: int) -> int:
    """The deepest order for an image of ``pixel_scale_deg``: as Hipsgen, the coarsest
    order whose tile pixels are no larger than the image pixels (at least 3)."""
    ratio = _tile_side_deg(0) / tile_width / pixel_scale_deg
    order = math.ceil(math.log2(ratio) - 1e-9) if ratio > 1 else 0
    return int(min(max(order, ALLSKY_ORDER), _max_order(tile_width)))


def _max_order(tile_width: int) -> int:
    return 29 - round(math.log2(tile_width))


# ----------------------------------------------------------------------------- input
def _as_image(image: Any) -> tuple[Image, Any]:
    """``(Image, provenance input)``; FITS paths stay on disk (read block by block)."""
    from ..provenance import sha256_file

    if type(image).__name__ == "Dataset" and hasattr(image, "data_vars"):
        names = ["mosaic"] if "mosaic" in image.data_vars else list(image.data_vars)
        if not names:
            raise VanotebookInputError("image", "a Dataset with a data variable", image)
        var = image[names[0]]
        if "header" not in var.attrs and "header" in image.attrs:
            var = var.copy()
            var.attrs["header"] = image.attrs["header"]
        prov = image.attrs.get("provenance") or {}
        digest = (prov.get("vanotebook", {}) or {}).get("digest") if isinstance(prov, dict) \
            else None
        im = parse_image(var, argument="image")
        return im, {"path": "<mosaic Dataset>", "sha256": digest or _data_digest(im.data)}
    if isinstance(image, str | os.PathLike) and Path(image).is_file() and \
            str(image).lower().endswith((".fits", ".fit", ".fts")):
        from ._core import _lazy_item

        item = _lazy_item(image, "image")
        im = parse_image(item, argument="image")
        return im, {"path": os.path.abspath(image), "sha256": sha256_file(image)}
    im = parse_image(image, argument="image")
    return im, {"path": f"<{type(image).__name__}>", "sha256": _data_digest(im.data)}


def _data_digest(data) -> str:
    import hashlib

    if hasattr(data, "dask") or isinstance(data, LazySource):
        from dask.base import tokenize

        return "dask:" + tokenize(data)
    if hasattr(data, "get") and not isinstance(data, np.ndarray):
        data = data.get()
    return hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()


def _plane(data, argument: str = "image"):
    """The 2-D pixels (leading length-1 axes dropped), left lazy."""
    if data.ndim > 2:
        if any(n != 1 for n in data.shape[:-2]):
            raise VanotebookInputError(argument, "a 2-D image (or one plane)",
                                       f"an image of shape {tuple(data.shape)}")
        if not isinstance(data, LazySource):
            data = data[(0,) * (data.ndim - 2)]
    return data


# ----------------------------------------------------------------------------- geometry
def _frame_object(frame: str):
    from astropy.coordinates import ICRS, BarycentricTrueEcliptic, Galactic

    return {"icrs": ICRS(), "galactic": Galactic(), "ecliptic": BarycentricTrueEcliptic()}[frame]


class _Geometry:
    """Transforms between the HiPS frame (HEALPix) and the input's pixels."""

    def __init__(self, wcs, shape: tuple[int, int], frame: str):
        from astropy.wcs.utils import wcs_to_celestial_frame

        self.wcs = wcs
        self.shape = shape
        self.frame = _frame_object(frame)
        self.in_frame = wcs_to_celestial_frame(wcs)
        self.same = self.in_frame.is_equivalent_frame(self.frame)

    def to_pixel(self, lon, lat):
        """Input pixel ``(x, y)`` of HiPS-frame ``lon, lat`` (deg)."""
        if not self.same:
            from astropy.coordinates import SkyCoord

            c = SkyCoord(lon, lat, unit="deg", frame=self.frame).transform_to(self.in_frame)
            lon, lat = c.spherical.lon.deg, c.spherical.lat.deg
        # every distortion (SIP, lookup tables) inverted; NaN where the inverse diverges
        x, y = world_to_pixel(self.wcs, np.asarray(lon, float), np.asarray(lat, float))
        return np.asarray(x, float), np.asarray(y, float)

    def to_sky(self, x, y):
        """HiPS-frame ``lon, lat`` (deg) of input pixels."""
        with np.errstate(invalid="ignore"):
            lon, lat = pixel_to_world(self.wcs, np.asarray(x, float), np.asarray(y, float))
        if not self.same:
            from astropy.coordinates import SkyCoord

            ok = np.isfinite(lon) & np.isfinite(lat)
            lon, lat = np.where(ok, lon, 0.0), np.where(ok, lat, 0.0)
            c = SkyCoord(lon, lat, unit="deg", frame=self.in_frame).transform_to(self.frame)
            lon = np.where(ok, c.spherical.lon.deg, np.nan)
            lat = np.where(ok, c.spherical.lat.deg, np.nan)
        return lon, lat

    def nodes(self, tiles: np.ndarray, order: int, width: int, rows, cols):
        """Input pixel coordinates of tile positions ``rows x cols`` of each tile:
        two ``(T, len(rows), len(cols))`` arrays."""
        import astropy.units as u
        from astropy_healpix import core as hp

        dx, dy = tile_offsets(np.asarray(rows)[:, None], np.asarray(cols)[None, :], width)
        shape = (len(tiles), len(rows), len(cols))
        index = np.broadcast_to(np.asarray(tiles, np.int64)[:, None, None], shape)
        lon, lat = hp.healpix_to_lonlat(index, 2**order, dx=np.broadcast_to(dx, shape),
                                        dy=np.broadcast_to(dy, shape), order="nested")
        return self.to_pixel(lon.to_value(u.deg), lat.to_value(u.deg))


def _candidate_tiles(geo: _Geometry, order: int, pixel_scale_deg: float) -> np.ndarray:
    """Order-``order`` tiles that may overlap the image (a superset)."""
    import astropy.units as u
    from astropy_healpix import core as hp

    ny, nx = geo.shape
    side_px = _tile_side_deg(order) / pixel_scale_deg
    stride = max(1.0, min(side_px / 3.0, max(nx, ny)))
    xs = np.unique(np.concatenate([np.arange(-0.5, nx - 0.5, stride), [nx - 0.5]]))
    ys = np.unique(np.concatenate([np.arange(-0.5, ny - 0.5, stride), [ny - 0.5]]))
    gx, gy = np.meshgrid(xs, ys)
    lon, lat = geo.to_sky(gx.ravel(), gy.ravel())
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        raise VanotebookInputError("image", "an image whose pixels map to the sky",
                                   "a WCS with no valid sky positions")
    cells = np.unique(hp.lonlat_to_healpix(lon[ok] * u.deg, lat[ok] * u.deg, 2**order,
                                           order="nested"))
    near = hp.neighbours(cells, 2**order, order="nested").ravel()
    return np.unique(np.concatenate([cells, near[near >= 0]]))


def _choose_nodes(geo: _Geometry, tiles: np.ndarray, order: int, width: int
                  ) -> tuple[int, float]:
    """Nodes per tile side whose bilinear transform is within `TOLERANCE` (measured)."""
    sample = tiles if tiles.size <= 64 else tiles[np.linspace(0, tiles.size - 1, 64).astype(int)]
    n = 9
    while True:
        if n >= min(width, _MAX_NODES):
            return min(width, _MAX_NODES) if width > 2 else 2, 0.0
        pos = node_positions(width, n)
        mid = (pos[:-1] + pos[1:]) / 2
        nx_, ny_ = geo.nodes(sample, order, width, pos, pos)
        ex, ey = geo.nodes(sample, order, width, mid, mid)
        ix = 0.25 * (nx_[:, :-1, :-1] + nx_[:, 1:, :-1] + nx_[:, :-1, 1:] + nx_[:, 1:, 1:])
        iy = 0.25 * (ny_[:, :-1, :-1] + ny_[:, 1:, :-1] + ny_[:, :-1, 1:] + ny_[:, 1:, 1:])
        err = np.hypot(ix - ex, iy - ey)
        error = float(np.nanmax(err)) if np.isfinite(err).any() else 0.0
        if error <= TOLERANCE:
            return n, error
        n = (3 * n) // 2


def _hpx_crpix(orders_tiles: dict[int, np.ndarray], width: int, frame: str
               ) -> dict[int, dict[int, tuple[float, float]]]:
    """CRPIX of the HPX tile WCS of every tile (the header reproject.hips writes)."""
    import astropy.units as u
    from astropy_healpix import core as hp

    out = {}
    for order, tiles in orders_tiles.items():
        wcs = _hpx_wcs(order, width, frame)
        lon, lat = hp.healpix_to_lonlat(np.asarray(tiles, np.int64), 2**order,
                                        dx=np.full(len(tiles), 0.75),
                                        dy=np.full(len(tiles), 0.25), order="nested")
        x, y = wcs.wcs_world2pix(lon.to_value(u.deg), lat.to_value(u.deg), 0)
        c1 = -x - 0.5 + width / 4
        c2 = -y - 0.5 + width / 4
        out[order] = {int(t): (float(a), float(b)) for t, a, b in zip(tiles, c1, c2,
                                                                        strict=True)}
    return out


def _hpx_wcs(order: int, width: int, frame: str):
    from astropy.wcs.utils import celestial_frame_to_wcs

    wcs = celestial_frame_to_wcs(_frame_object(frame), projection="HPX")
    wcs.wcs.crval = 0.0, 0.0
    res = 45 / width / 2**order
    wcs.wcs.cd = [[-res, -res], [res, -res]]
    wcs.wcs.set_pv([(2, 1, 4), (2, 2, 3)])
    wcs.wcs.crpix = 0.0, 0.0
    return wcs


def _header_templates(orders, width: int, frame: str, extra: list) -> dict[int, str]:
    out = {}
    for order in orders:
        h = fits.Header()
        h["SIMPLE"] = True
        h["BITPIX"] = -32
        h["NAXIS"] = 2
        h["NAXIS1"] = width
        h["NAXIS2"] = width
        h.extend(_hpx_wcs(order, width, frame).to_header().cards)
        h["ORDER"] = order
        h["NPIX"] = 0
        for key, value, comment in extra:
            h[key] = (value, comment)
        out[order] = h.tostring()
    return out


# ----------------------------------------------------------------------------- tile writing
@dataclass
class _Params:
    """What every task needs (small; pickled into the graph once per task)."""

    folder: str
    order: int
    group_order: int
    width: int
    formats: tuple[str, ...]
    cut: tuple[float, float]
    stretch: str
    interpolation: str
    shape: tuple[int, int]
    device: str
    headers: dict[int, str]
    crpix: dict[int, dict[int, tuple[float, float]]]
    allsky_width: int
    png_level: int = 1
    collect: bool = False
    """Tasks return their tiles (`_Info.tiles`) instead of writing them."""


def _fits_bytes(header_text: str, tile: np.ndarray) -> bytes:
    data = np.ascontiguousarray(tile, dtype=">f4").tobytes()
    pad = (-len(data)) % 2880
    return header_text.encode("ascii") + data + b"\0" * pad


@contextlib.contextmanager
def _working(folder: str):
    """Count a task writing into ``folder``; refuse to start once the run has failed."""
    with _LOCK:
        if folder in _CANCELLED:
            raise RuntimeError(f"to_hips into {folder} was stopped")
        _ACTIVE[folder] = _ACTIVE.get(folder, 0) + 1
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE[folder] -= 1


def _drain(folder: str, timeout: float = 120.0) -> None:
    """After a failure: stop new writes into ``folder`` and wait for running ones, so the
    temporary folder can be removed whole."""
    with _LOCK:
        _CANCELLED.add(folder)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with _LOCK:
            if _ACTIVE.get(folder, 0) <= 0:
                _ACTIVE.pop(folder, None)
                return
        time.sleep(0.01)


def _write_tile(p: _Params, order: int, index: int, tile: np.ndarray) -> None:
    if p.folder in _CANCELLED:
        raise RuntimeError(f"to_hips into {p.folder} was stopped")
    folder = Path(p.folder) / f"Norder{order}" / f"Dir{(index // 10000) * 10000}"
    folder.parent.mkdir(exist_ok=True)  # never parents: a removed run folder stays removed
    folder.mkdir(exist_ok=True)
    if "fits" in p.formats:
        h = fits.Header.fromstring(p.headers[order])
        c1, c2 = p.crpix[order][index]
        h["CRPIX1"], h["CRPIX2"], h["NPIX"] = c1, c2, index
        with atomic_path(folder / f"Npix{index}.fits", overwrite=True) as tmp:
            tmp.write_bytes(_fits_bytes(h.tostring(), tile))
    if "png" in p.formats:
        _write_png(folder / f"Npix{index}.png", tile, p)


def _write_png(path: Path, tile: np.ndarray, p: _Params) -> None:
    from PIL import Image as PILImage

    grey = np.ascontiguousarray(to_uint8(tile, p.cut, p.stretch)[::-1])
    with atomic_path(path, overwrite=True) as tmp:
        PILImage.fromarray(grey).save(tmp, format="png", transparency=0,
                                      compress_level=p.png_level)


def _moc_cells(index: int, tile: np.ndarray, width: int) -> np.ndarray:
    m = min(MOC_DEPTH, round(math.log2(width)))
    side = 2**m
    block = width // side
    valid = np.isfinite(tile).reshape(side, block, side, block).any(axis=(1, 3))
    sub = subpixel_index(side)
    return index * side * side + sub[valid]


class _Info:
    """What a task reports to the driver: tiles written, value range, MOC cells, thumbnails."""

    def __init__(self):
        self.written: dict[int, list[int]] = {}
        self.lo = math.inf
        self.hi = -math.inf
        self.moc: list[np.ndarray] = []
        self.thumbs: dict[int, np.ndarray] = {}
        self.tiles: list[tuple[int, int, np.ndarray]] = []  # to write, with `_Params.collect`

    def merge(self, other: _Info) -> _Info:
        for k, v in other.written.items():
            self.written.setdefault(k, []).extend(v)
        self.lo, self.hi = min(self.lo, other.lo), max(self.hi, other.hi)
        self.moc.extend(other.moc)
        self.thumbs.update(other.thumbs)
        return self


def _emit(p: _Params, info: _Info, order: int, index: int, tile: np.ndarray) -> bool:
    """Write one tile if it holds anything; record it. Returns whether it was written."""
    finite = np.isfinite(tile)
    if not finite.any():
        return False
    if p.collect:
        info.tiles.append((order, int(index), tile))
    else:
        _write_tile(p, order, index, tile)
    info.written.setdefault(order, []).append(int(index))
    if order == p.order:
        vals = tile[finite]
        info.lo = min(info.lo, float(vals.min()))
        info.hi = max(info.hi, float(vals.max()))
        info.moc.append(_moc_cells(index, tile, p.width))
    if order == ALLSKY_ORDER:
        thumb = tile
        while thumb.shape[-1] > p.allsky_width:
            thumb = downsample2(thumb)
        info.thumbs[int(index)] = thumb
    return True


def _assemble(halves: dict[int, np.ndarray], parent: int, width: int) -> np.ndarray:
    """A parent tile from its children's 2x2 means (missing children are NaN)."""
    h = width // 2
    out = np.full((width, width), np.nan, np.float32)
    for sub, (rs, cs) in enumerate(((slice(h, None), slice(None, h)),
                                    (slice(None, h), slice(None, h)),
                                    (slice(h, None), slice(h, None)),
                                    (slice(None, h), slice(h, None)))):
        child = halves.get(4 * parent + sub)
        if child is not None:
            out[rs, cs] = child
    return out


def _resample(region, origin, nodes_x, nodes_y, p: _Params) -> np.ndarray:
    if p.device == "gpu":  # pragma: no cover - needs a GPU
        import cupy as cp

        tiles = sample_tiles(cp.asarray(region), cp.asarray(nodes_x), cp.asarray(nodes_y),
                             width=p.width, origin=origin, shape=p.shape,
                             interpolation=p.interpolation)
        return cp.asnumpy(tiles)
    from .._optional import HAS_NUMBA

    region = np.asarray(region)
    if HAS_NUMBA:
        return numba_sample_tiles(region, nodes_x, nodes_y, width=p.width, origin=origin,
                                  shape=p.shape, interpolation=p.interpolation)
    return sample_tiles(region, nodes_x, nodes_y, width=p.width, origin=origin,
                        shape=p.shape, interpolation=p.interpolation)


def _group_task(region, origin, tiles, nodes_x, nodes_y, p: _Params):
    """Resample and write a group's deepest tiles and its orders up to ``p.group_order``.

    Returns ``(info, (root index, root tile halved or None))``.
    """
    with _working(p.folder):
        return _group_body(region, origin, tiles, nodes_x, nodes_y, p)


def _group_body(region, origin, tiles, nodes_x, nodes_y, p: _Params):
    if isinstance(region, _Region):
        region = region.read()
    info = _Info()
    halves: dict[int, np.ndarray] = {}
    # a few tiles at a time keep the working memory small
    for s in range(0, len(tiles), 4):
        block = _resample(region, origin, nodes_x[s:s + 4], nodes_y[s:s + 4], p)
        for index, tile in zip(tiles[s:s + 4], block, strict=True):
            if _emit(p, info, p.order, int(index), tile):
                halves[int(index)] = downsample2(tile)
    for order in range(p.order - 1, p.group_order - 1, -1):
        parents = sorted({i >> 2 for i in halves})
        new = {}
        for parent in parents:
            tile = _assemble(halves, parent, p.width)
            if _emit(p, info, order, parent, tile):
                new[parent] = downsample2(tile)
        halves = new
    root = int(tiles[0]) >> (2 * (p.order - p.group_order))
    return info, (root, halves.get(root))


def _parent_task(order: int, parent: int, p: _Params, *children):
    with _working(p.folder):
        return _parent_body(order, parent, p, *children)


def _parent_body(order: int, parent: int, p: _Params, *children):
    info = _Info()
    halves = {}
    for child_info, (index, half) in children:
        del child_info
        if half is not None:
            halves[index] = half
    tile = _assemble(halves, parent, p.width)
    half = downsample2(tile) if _emit(p, info, order, parent, tile) else None
    return info, (parent, half)


class _Region:
    """A box of a lazy input (`LazySource`, e.g. a FITS file), read inside the task."""

    def __init__(self, source, y0, y1, x0, x1):
        self.source, self.box = source, (y0, y1, x0, x1)

    def read(self) -> np.ndarray:
        y0, y1, x0, x1 = self.box
        return np.asarray(self.source[y0:y1, x0:x1])


def _region_arg(data, box):
    y0, y1, x0, x1 = box
    if isinstance(data, LazySource):
        return _Region(data, y0, y1, x0, x1)
    return data[y0:y1, x0:x1]  # numpy view, CuPy slice, or dask slice (a task dependency)


# ----------------------------------------------------------------------------- cut, allsky
def _sample_values(data, shape, n: int = 1_000_000) -> np.ndarray:
    ny, nx = shape
    s = max(1, math.ceil(math.sqrt(ny * nx / n)))
    if isinstance(data, LazySource):
        band = s * max(1, 256 // s)  # a few reads of whole rows, then strided
        rows = [np.asarray(data[y:min(y + band, ny), :])[::s, ::s] for y in range(0, ny, band)]
        values = np.concatenate(rows, axis=0)
    else:
        values = data[::s, ::s]
        if hasattr(values, "compute"):
            values = values.compute()
        if hasattr(values, "get") and not isinstance(values, np.ndarray):
            values = values.get()
    values = np.asarray(values, dtype=float).ravel()
    return values[np.isfinite(values)]


def _allsky(thumbs: dict[int, np.ndarray], width: int) -> np.ndarray:
    """The order-3 Allsky in FITS row order (27 tiles a row, the first row at the top)."""
    per_row = 27
    rows = -(-768 // per_row)
    image = np.full((rows * width, per_row * width), np.nan, np.float32)  # top-down (PNG)
    for index, thumb in thumbs.items():
        b, a = divmod(index, per_row)
        image[b * width:(b + 1) * width, a * width:(a + 1) * width] = thumb[::-1]
    return image[::-1]


def _write_properties(path: Path, props: dict[str, Any]) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text("".join(f"{k:<30} = {v}\n" for k, v in props.items()))


def read_properties(path: str | os.PathLike) -> dict[str, str]:
    """The ``properties`` of a HiPS folder as a dict of strings."""
    out = {}
    for line in (Path(path) / "properties").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


# ----------------------------------------------------------------------------- public
def _check_args(out, order, tile_width, formats, interpolation, stretch, frame, cut, overwrite):
    if isinstance(formats, str):
        formats = (formats,)
    try:
        formats = tuple(formats)
    except TypeError:
        raise VanotebookInputError("formats", f"a sequence of {FORMATS}", formats) from None
    if not formats or len(set(formats)) != len(formats) or any(f not in FORMATS for f in formats):
        raise VanotebookInputError("formats", f"a non-empty subset of {FORMATS}", formats)
    check_choice("interpolation", interpolation, INTERPOLATIONS)
    check_choice("stretch", stretch, STRETCHES)
    check_choice("frame", frame, tuple(FRAMES))
    if isinstance(tile_width, bool) or not isinstance(tile_width, int | np.integer) or \
            tile_width < 8 or tile_width > 4096 or tile_width & (tile_width - 1):
        raise VanotebookInputError("tile_width", "a power of two from 8 to 4096", tile_width)
    tile_width = int(tile_width)
    if order is not None:
        top = _max_order(tile_width)
        if isinstance(order, bool) or not isinstance(order, int | np.integer) or \
                not ALLSKY_ORDER <= order <= top:
            raise VanotebookInputError("order", f"an integer HiPS order in [{ALLSKY_ORDER}, "
                                       f"{top}] (or None to choose it)", order)
        order = int(order)
    if cut is not None:
        try:
            lo, hi = (float(v) for v in cut)
            ok = math.isfinite(lo) and math.isfinite(hi) and hi > lo
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise VanotebookInputError("cut", "(low, high) finite numbers with low < high", cut)
        cut = (lo, hi)
    out = Path(out)
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise VanotebookInputError("out", "a new or empty folder (or overwrite=True)",
                                   str(out))
    return out, order, tile_width, formats, cut


def to_hips(
    image: Any,
    out: str | os.PathLike,
    *,
    order: int | None = None,
    tile_width: int = 512,
    formats: tuple[str, ...] = FORMATS,
    interpolation: str = "bilinear",
    stretch: str = "linear",
    cut: tuple[float, float] | None = None,
    frame: str = "icrs",
    title: str | None = None,
    creator_did: str | None = None,
    client=None,
    device: str = "auto",
    chunks: int | None = None,
    overwrite: bool = False,
    progress=False,
) -> Hips:
    """Write an image (or a mosaic) as a HiPS 1.0 folder: tiles, Allsky, MOC, properties.

    Parameters
    ----------
    image
        Anything `vanotebook.io.parse_image` accepts -- a FITS path (read block
        by block, never whole), an HDU, ``(array, WCS)`` with a numpy, CuPy or
        dask array, an xarray DataArray -- or the Dataset `mosaic` returns
        (in memory or zarr-backed).
    out : path
        The HiPS folder to create. It appears complete or not at all.
    order : int, optional
        The deepest HiPS order (``hips_order``), from 3; by default the
        coarsest whose tile pixels are no larger than the image's (as Hipsgen).
    tile_width : int
        Tile side in pixels (a power of two; 512 is the HiPS default).
    formats : tuple of {"fits", "png"}
        Tile formats (``hips_tile_format``, in this order).
    interpolation : {"bilinear", "nearest"}
        Resampling of the deepest order (as ``reproject_interp``); lower orders
        are NaN-aware 2x2 means of their children.
    stretch : {"linear", "sqrt", "log", "asinh"}
        How PNG tiles map values within ``cut`` to grey levels (``hips_pixel_func``).
    cut : (float, float), optional
        PNG black and white levels (``hips_pixel_cut``); by default the 0.5 and
        99.5 percentiles of a sample of the image.
    frame : {"icrs", "galactic", "ecliptic"}
        The HEALPix frame (``hips_frame``); the image may be in any frame.
    title, creator_did : str, optional
        ``obs_title`` (default: the folder name) and ``creator_did`` (default:
        ``ivo://vanotebook/P/<provenance digest>``).
    client : distributed.Client, optional
        Where the tile tasks run; in-process threads without one. Where its workers
        cannot write into ``out``'s folder or read the FITS input (workers of another
        account, a private folder), they get each group's pixels by value and return
        its tiles, written here; the HiPS is the same.
    device : {"auto", "cpu", "gpu"}
        Where the resampling kernel runs.
    chunks : int, optional
        Side, in pixels, of the block of deepest tiles one task makes (and so of
        the input box it reads); `vanotebook.cluster.image_chunk` by default.
    overwrite : bool
        Replace an existing ``out`` (only once the new one is complete).
    progress : bool or callable
        Dask's progress bar (True) or a callback taking the fraction done.

    Returns
    -------
    Hips
        The folder, its orders and tiles, cut, MOC, properties and provenance.

    Raises
    ------
    VanotebookInputError
        For an image without celestial WCS, an existing ``out`` without
        ``overwrite``, unknown formats, an order out of range, ...
    """
    out, order, tile_width, formats, cut = _check_args(
        out, order, tile_width, formats, interpolation, stretch, frame, cut, overwrite)
    device = cluster.resolve_device(device)
    chunk = cluster.image_chunk(chunks)
    client = cluster.get_client(client)
    im, source = _as_image(image)
    data = _plane(im.data)
    shape = tuple(int(n) for n in data.shape[-2:])
    wcs = im.celestial
    if wcs.pixel_n_dim != 2:
        raise VanotebookInputError("image", "an image with two celestial pixel axes", wcs)
    scale = float(im.pixel_scale.to_value("deg"))
    if not (scale > 0 and math.isfinite(scale)):
        raise VanotebookInputError("image", "a WCS with a finite pixel scale", scale)
    k = order if order is not None else choose_order(scale, tile_width)
    geo = _Geometry(wcs, shape, frame)

    # enough to remake it (`vanotebook rerun`): the input file, when it is one, and the
    # title the properties will carry (the folder's name by default)
    params = {"image": source["path"] if Path(source["path"]).is_file() else None,
              "order": k, "tile_width": tile_width, "formats": list(formats),
              "interpolation": interpolation, "stretch": stretch,
              "cut": None if cut is None else list(cut), "frame": frame,
              "title": title or out.name, "creator_did": creator_did}
    with record(ACTIVITY, params) as prov:
        prov.inputs.append(source)
        digest = prov.digest
        # plan: tiles, nodes, groups
        candidates = _candidate_tiles(geo, k, scale)
        n_nodes, error = _choose_nodes(geo, candidates, k, tile_width)
        pos = node_positions(tile_width, n_nodes)
        nx_all, ny_all = geo.nodes(candidates, k, tile_width, pos, pos)
        ny, nx = shape
        with np.errstate(invalid="ignore"):
            touch = (np.nanmax(nx_all, axis=(1, 2)) >= -0.5) & \
                (np.nanmin(nx_all, axis=(1, 2)) <= nx - 0.5) & \
                (np.nanmax(ny_all, axis=(1, 2)) >= -0.5) & \
                (np.nanmin(ny_all, axis=(1, 2)) <= ny - 0.5)
        tiles = candidates[touch]
        nx_all, ny_all = nx_all[touch], ny_all[touch]
        if tiles.size == 0:
            raise VanotebookInputError("image", "an image that covers some sky", "no tiles")
        g = max(0, round(math.log2(max(chunk / tile_width, 1.0))))
        g = min(g, k)
        group_order = k - g
        roots = tiles >> (2 * g)
        orders_tiles = {j: np.unique(tiles >> (2 * (k - j))) for j in range(k + 1)}
        crpix = _hpx_crpix(orders_tiles, tile_width, frame) if "fits" in formats else {}
        if cut is None:
            values = _sample_values(data, shape)
            if values.size == 0:
                raise VanotebookInputError("image", "an image with finite pixels",
                                           "all pixels NaN")
            lo, hi = (float(v) for v in np.percentile(values, [0.5, 99.5]))
            cut = (lo, hi if hi > lo else lo + 1.0)
        extra = [(key, value, comment) for key, value, comment in prov.header_cards()
                 if key in ("PROVACT", "PROVDIG", "PROVVER")]
        if im.unit is not None:
            extra.append(("BUNIT", fits_string(im.unit), "brightness unit"))
        with atomic_dir(out, overwrite=overwrite) as tmp:
            p = _Params(folder=str(tmp), order=k, group_order=group_order, width=tile_width,
                        formats=formats, cut=cut, stretch=stretch, interpolation=interpolation,
                        shape=shape, device=device,
                        headers=_header_templates(range(k + 1), tile_width, frame, extra)
                        if "fits" in formats else {},
                        crpix=crpix, allsky_width=min(64, tile_width))
            try:
                info = _run(data, tiles, roots, nx_all, ny_all, p, client, device, progress)
            except BaseException:
                _drain(p.folder)  # in-process tasks still running finish before the cleanup
                raise
            result = _finish(tmp, out, info, p, geo, im, cut, frame, title, creator_did,
                             digest, prov, error)
    return result


def _run(data, tiles, roots, nx_all, ny_all, p: _Params, client, device, progress) -> _Info:
    import dask
    from dask import delayed

    from .._remote import workers_can_read, workers_can_write
    from ._dask import Tracker, compute_blocks, gpu_annotations

    path = getattr(data, "path", None) if isinstance(data, LazySource) else None
    readable = workers_can_read(client, [path] if path else [])
    if client is not None and not (readable and workers_can_write(client, p.folder)):
        return _run_here(data, tiles, roots, nx_all, ny_all, p, client, device, progress,
                         readable=readable)
    token = Path(p.folder).name.strip(".").replace(".", "-")
    level: dict[int, Any] = {}
    group_keys = []
    for i, (root, sel, box) in enumerate(_groups(roots, nx_all, ny_all, p.shape)):
        gx, gy = nx_all[sel], ny_all[sel]
        y0, _, x0, _ = box
        region = _region_arg(data, box)
        with dask.annotate(**gpu_annotations(device)):
            task = delayed(_group_task, pure=False)(
                region, (y0, x0), tiles[sel], gx, gy, p,
                dask_key_name=f"{GROUP_PREFIX}{token}-{i}")
        level[int(root)] = task
        group_keys.append(task)
    parents_all = []
    for order in range(p.group_order - 1, -1, -1):
        parents: dict[int, list] = {}
        for index, task in level.items():
            parents.setdefault(index >> 2, []).append(task)
        level = {parent: delayed(_parent_task, pure=False)(
            order, parent, p, *children, dask_key_name=f"hips-{token}-{order}-{parent}")
            for parent, children in parents.items()}
        parents_all.extend(level.values())
    # every task's info comes back; tile arrays stay on the workers
    infos = [delayed(_first, pure=False)(t, dask_key_name=f"info-{t.key}")
             for t in [*group_keys, *parents_all]]
    tracker = Tracker(len(group_keys), progress)
    results = compute_blocks(infos, client, tracker)
    total = _Info()
    for r in results:
        total.merge(r)
    return total


def _groups(roots, nx_all, ny_all, shape):
    """``(root, selection, input box)`` of every group of tiles, in root order."""
    ny, nx = shape
    out = []
    for root in np.unique(roots):
        sel = roots == root
        gx, gy = nx_all[sel], ny_all[sel]
        with np.errstate(invalid="ignore"):
            x0 = int(np.clip(np.floor(np.nanmin(gx)) - 1, 0, nx - 1))
            x1 = int(np.clip(np.ceil(np.nanmax(gx)) + 2, x0 + 1, nx))
            y0 = int(np.clip(np.floor(np.nanmin(gy)) - 1, 0, ny - 1))
            y1 = int(np.clip(np.ceil(np.nanmax(gy)) + 2, y0 + 1, ny))
        out.append((int(root), sel, (y0, y1, x0, x1)))
    return out


def _run_here(data, tiles, roots, nx_all, ny_all, p: _Params, client, device, progress, *,
              readable: bool) -> _Info:
    """`_run` for workers that cannot write into the folder (or read the input).

    The group tasks run on the workers but return their tiles, which are written
    here as each group comes back; an input the workers cannot read goes by value
    (each group's box, read here a few groups ahead of the workers). The few
    tiles above the groups' roots are made here from the roots' halves.
    """
    from dataclasses import replace

    from .._remote import bounded_map
    from ._dask import Tracker, gpu_annotations

    remote = replace(p, collect=True)
    groups = _groups(roots, nx_all, ny_all, p.shape)

    def jobs():
        for _, sel, box in groups:
            y0, y1, x0, x1 = box
            if isinstance(data, LazySource) and not readable:
                region = np.asarray(data[y0:y1, x0:x1])
            else:
                region = _region_arg(data, box)
                if hasattr(region, "dask"):  # a dask slice: computed on the cluster
                    region = client.compute(region)
            yield region, (y0, x0), tiles[sel], nx_all[sel], ny_all[sel], remote

    tracker = Tracker(len(groups), progress)
    total = _Info()
    level: dict[int, Any] = {}
    for _, (info, (root, half)) in bounded_map(client, _group_task, jobs(),
                                               **gpu_annotations(device)):
        for order, index, tile in info.tiles:
            _write_tile(p, order, index, tile)
        info.tiles = []
        total.merge(info)
        level[int(root)] = (None, (root, half))
        tracker.step()
    for order in range(p.group_order - 1, -1, -1):
        parents: dict[int, list] = {}
        for index, child in level.items():
            parents.setdefault(index >> 2, []).append(child)
        level = {}
        for parent, children in parents.items():
            info, pair = _parent_body(order, parent, p, *children)
            total.merge(info)
            level[parent] = (None, pair)
    return total


def _first(pair):
    return pair[0]


def _finish(tmp: Path, out: Path, info: _Info, p: _Params, geo: _Geometry, im: Image,
            cut, frame, title, creator_did, digest, prov, error) -> Hips:
    from mocpy import MOC

    k, width = p.order, p.width
    if not info.written.get(k):
        raise VanotebookInputError("image", "an image with finite pixels", "all pixels NaN")
    # Allsky
    thumbs = info.thumbs
    allsky = _allsky(thumbs, p.allsky_width)
    folder = tmp / f"Norder{ALLSKY_ORDER}"
    folder.mkdir(parents=True, exist_ok=True)
    if "fits" in p.formats:
        h = fits.Header()
        h["ORDER"] = ALLSKY_ORDER
        hdu = fits.PrimaryHDU(allsky, h)
        with atomic_path(folder / "Allsky.fits", overwrite=True) as t:
            hdu.writeto(t, output_verify="exception")
    if "png" in p.formats:
        _write_png(folder / "Allsky.png", allsky, p)
    # MOC
    depth = k + min(MOC_DEPTH, round(math.log2(width)))
    cells = np.unique(np.concatenate(info.moc)).astype(np.uint64)
    moc = MOC.from_healpix_cells(cells, np.full(cells.shape, depth, np.uint8), depth)
    with atomic_path(tmp / "Moc.fits", overwrite=True) as t:
        moc.save(str(t), format="fits", overwrite=True)
    # properties and provenance
    ny, nx = p.shape
    lon, lat = geo.to_sky(np.array([(nx - 1) / 2, -0.5, nx - 0.5]),
                          np.array([(ny - 1) / 2, -0.5, ny - 0.5]))
    from astropy.coordinates import SkyCoord

    centre = SkyCoord(lon, lat, unit="deg", frame=geo.frame).icrs
    fov = float(centre[1].separation(centre[2]).deg)
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%MZ")
    from .. import __version__ as version

    counts = {j: len(v) for j, v in sorted(info.written.items())}
    props: dict[str, Any] = {
        "creator_did": creator_did or f"ivo://vanotebook/P/{digest[:16]}",
        "obs_title": title or out.name,
        "dataproduct_type": "image",
        "hips_version": "1.4",
        "hips_builder": f"vanotebook {version}",
        "hips_release_date": now,
        "hips_creation_date": now,
        "hips_status": "public master clonableOnce",
        "hips_order": k,
        "hips_order_min": 0,
        "hips_tile_width": width,
        "hips_tile_format": " ".join(p.formats),
        "hips_frame": FRAMES[frame],
        "hips_pixel_bitpix": -32,
        "hips_pixel_cut": f"{cut[0]:.6g} {cut[1]:.6g}",
        "hips_pixel_func": p.stretch,
        "hips_data_range": f"{info.lo:.6g} {info.hi:.6g}",
        "hips_sampling": p.interpolation,
        "hips_pixel_scale": f"{_tile_side_deg(k) / width:.6g}",
        "hips_initial_ra": f"{centre[0].ra.deg:.8f}",
        "hips_initial_dec": f"{centre[0].dec.deg:.8f}",
        "hips_initial_fov": f"{max(fov, 1e-4):.6g}",
        "hips_nb_tiles": sum(counts.values()),
        "moc_sky_fraction": f"{moc.sky_fraction:.6g}",
        "moc_order": depth,
        "vanotebook_activity": ACTIVITY,
        "vanotebook_provenance_digest": digest,
        "vanotebook_provenance": "provenance.json",
        "vanotebook_transform_error": f"{error:.3g}",
    }
    if im.unit is not None:
        props["vanotebook_unit"] = fits_string(im.unit)
    _write_properties(tmp / "properties", props)
    prov.outputs.append({"path": str(out), "sha256": ""})
    prov.finish()
    with atomic_path(tmp / "provenance.json", overwrite=True) as t:
        t.write_text(prov.to_json())
    return Hips(path=out, order=k, tile_width=width, frame=frame, formats=p.formats,
                tiles=counts, cut=(float(cut[0]), float(cut[1])),
                data_range=(info.lo, info.hi), properties={k_: str(v) for k_, v in
                                                           props.items()},
                moc=moc, provenance=prov.to_dict())
