"""Planning a mosaic: the output grid, and which part of it each input covers.

`optimal_grid` does what reproject's ``find_optimal_celestial_wcs`` does: a
north-up grid in the chosen frame and projection, centred on the mean
direction of the inputs, at their finest pixel scale, just large enough to
hold all of them. `resolve_grid` turns the ``wcs=`` argument (``"optimal"``,
a WCS, or a FITS header) into a celestial WCS and an output shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales, wcs_to_celestial_frame

from .._errors import VanotebookInputError, check_choice
from ..io import Image
from ._kernels import LazySource, pixel_to_pixel, pixel_to_world

__all__ = ["FRAMES", "FitsSource", "Grid", "footprint_bbox", "optimal_grid", "resolve_grid"]

FRAMES = ("icrs", "fk5", "fk4", "galactic")
_CTYPES = {"icrs": ("RA--", "DEC-"), "fk5": ("RA--", "DEC-"), "fk4": ("RA--", "DEC-"),
           "galactic": ("GLON", "GLAT")}


def frame_object(name: str):
    """The astropy frame of an output grid: FK5 at J2000, FK4 at B1950.

    An explicit frame, never a name: ``SkyCoord.transform_to("fk5")`` keeps the
    source's equinox (B1950 coordinates would come out as "FK5 equinox 1950",
    and be labelled J2000 on the grid).
    """
    from astropy.coordinates import FK4, FK5, ICRS, Galactic

    return {"icrs": ICRS(), "fk5": FK5(equinox="J2000"), "fk4": FK4(equinox="B1950"),
            "galactic": Galactic()}[name]


class FitsSource(LazySource):
    """The pixels of one FITS image HDU, read region by region, never whole.

    It pickles as its path and HDU number, so a Dask task graph carries no pixels:
    each block task reads (through ``HDU.section``) only the part of the input it
    resamples. Leading degenerate axes (``NAXIS3 = 1``...) are dropped.
    """

    def __init__(self, path, hdu: int, shape: tuple[int, ...], dtype):
        self.path = str(path)
        self.hdu = int(hdu)
        self.lead = (0,) * (len(shape) - 2)
        self.shape = tuple(int(n) for n in shape[-2:])
        self.dtype = np.dtype(np.float32) if np.dtype(dtype).kind != "f" else \
            np.dtype(dtype).newbyteorder("=")

    def __getitem__(self, key) -> np.ndarray:
        with fits.open(self.path, memmap=False, lazy_load_hdus=True) as hdul:
            part = hdul[self.hdu].section[(*self.lead, *key)]
        return np.asarray(part, dtype=self.dtype)

    def __repr__(self) -> str:
        return f"FitsSource({self.path!r}, hdu={self.hdu}, shape={self.shape})"

    @classmethod
    def open(cls, path, argument: str):
        """``(source, header)`` of the first image HDU of a FITS file."""
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            for k, h in enumerate(hdul):
                if h.is_image and h.header.get("NAXIS", 0) >= 2:
                    shape = tuple(h.header[f"NAXIS{i}"] for i in range(h.header["NAXIS"], 0, -1))
                    bitpix = h.header["BITPIX"]
                    dtype = np.float64 if bitpix == -64 else np.float32
                    return cls(path, k, shape, dtype), h.header.copy()
        raise VanotebookInputError(argument, "a FITS file with an image HDU", str(path))


@dataclass(frozen=True)
class Grid:
    """An output grid: a celestial WCS and a shape ``(ny, nx)``."""

    wcs: WCS
    shape: tuple[int, int]

    @property
    def header(self) -> fits.Header:
        header = self.wcs.to_header(relax=True)
        header["NAXIS"] = 2
        header["NAXIS1"] = self.shape[1]
        header["NAXIS2"] = self.shape[0]
        return header

    @property
    def pixel_area_sr(self) -> float:
        scales = proj_plane_pixel_scales(self.wcs)
        return float(np.prod(np.radians(scales)))


def _edge_points(shape: tuple[int, ...], n: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates along the edges of an image (outer pixel boundaries)."""
    ny, nx = shape[-2:]
    t = np.linspace(0.0, 1.0, n)
    xs = np.concatenate([-0.5 + t * nx, np.full(n, nx - 0.5), -0.5 + t * nx, np.full(n, -0.5)])
    ys = np.concatenate([np.full(n, -0.5), -0.5 + t * ny, np.full(n, ny - 0.5), -0.5 + t * ny])
    return xs, ys


def _frame_name(wcs: WCS) -> str:
    return wcs_to_celestial_frame(wcs).name


#: beyond this angular radius (deg) from the inputs' centre, a TAN grid is not sensible
WIDE_RADIUS = 60.0
#: the largest optimal grid made without being asked for it (pixels of one plane)
MAX_PIXELS = 2**31


def _sample_points(image: Image, n_edge: int = 129, n_inner: int = 33):
    """Pixels along the edges of an image and on an interior lattice (0-based x, y)."""
    xs, ys = _edge_points(image.shape, n_edge)
    ny, nx = image.shape[-2:]
    gx, gy = np.meshgrid(np.linspace(-0.5, nx - 0.5, n_inner),
                         np.linspace(-0.5, ny - 0.5, n_inner))
    return np.concatenate([xs, gx.ravel()]), np.concatenate([ys, gy.ravel()])


def _sky_points(images: Sequence[Image], frame: str) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes and latitudes (deg, in ``frame``) of every image's sample pixels that lie
    on the sky (pixels outside an all-sky projection's boundary, AIT's corners, are
    dropped)."""
    lons, lats = [], []
    target = frame_object(frame)
    for im in images:
        xs, ys = _sample_points(im)
        with np.errstate(invalid="ignore"):
            lon, lat = pixel_to_world(im.celestial, xs, ys)
        ok = np.isfinite(lon) & np.isfinite(lat)
        c = SkyCoord(lon[ok], lat[ok], unit="deg", frame=wcs_to_celestial_frame(im.celestial))
        c = c.transform_to(target)
        lons.append(c.spherical.lon.deg)
        lats.append(c.spherical.lat.deg)
    return np.concatenate(lons), np.concatenate(lats)


def _lon_range(lon: np.ndarray, spacing: float) -> tuple[float, float] | None:
    """``(start, width)`` of the smallest longitude interval holding ``lon``, or None when
    no gap wider than ``spacing`` is left (the whole circle)."""
    s = np.sort(np.mod(lon, 360.0))
    gaps = np.diff(np.concatenate([s, [s[0] + 360.0]]))
    k = int(np.argmax(gaps))
    if gaps[k] <= spacing:
        return None
    start = s[(k + 1) % s.size]
    return float(start), float(360.0 - gaps[k])


def optimal_grid(images: Sequence[Image], *, frame: str | None = None,
                 projection: str = "TAN", pixel_scale: float | None = None) -> Grid:
    """The smallest north-up grid holding every image, like ``find_optimal_celestial_wcs``.

    Images spread wider than `WIDE_RADIUS` degrees from their centre (a Galactic-plane
    strip, an all-sky map in CAR, AIT, MOL, ZEA or HEALPix's HPX) get a plate-carree
    (CAR) grid instead of a TAN one: centred on the equator, as wide in longitude as
    they are (the whole circle for all-sky maps), as high in latitude as they reach.
    Nothing is cut: every sample pixel of every image lands inside the grid.

    Parameters
    ----------
    images : list of Image
    frame : {"icrs", "fk5", "fk4", "galactic"}, optional
        Frame of the output (FK5 at equinox J2000, FK4 at B1950); by default the
        first image's. Inputs in any frame astropy knows (FK4/FK5 at any equinox...)
        are transformed to it.
    projection : str
        FITS projection code (``TAN`` by default; wide inputs switch it to ``CAR``).
    pixel_scale : float, optional
        Pixel side in degrees; by default the finest among the inputs.

    Raises
    ------
    VanotebookInputError
        A frame not in `FRAMES`, or a grid larger than `MAX_PIXELS` pixels (its shape
        and memory are in the message: give ``wcs=`` a grid, or a coarser ``pixel_scale``).
    """
    frame = frame or _frame_name(images[0].celestial)
    check_choice("frame", frame, FRAMES)
    lon, lat = _sky_points(images, frame)
    if lon.size == 0:
        raise VanotebookInputError("images", "images with pixels on the sky", "none")
    if pixel_scale is None:
        pixel_scale = min(float(np.min(proj_plane_pixel_scales(im.celestial)))
                          for im in images)
    vec = np.stack([np.cos(np.radians(lat)) * np.cos(np.radians(lon)),
                    np.cos(np.radians(lat)) * np.sin(np.radians(lon)), np.sin(np.radians(lat))])
    mean = vec.mean(axis=1)
    norm = float(np.linalg.norm(mean))
    lon0 = math.degrees(math.atan2(mean[1], mean[0])) % 360.0
    lat0 = math.degrees(math.atan2(mean[2], math.hypot(mean[0], mean[1])))
    if norm > 1e-6:
        radius = float(np.degrees(np.arccos(np.clip(mean @ vec / norm, -1.0, 1.0))).max())
    else:
        radius = 180.0
    wide = radius > WIDE_RADIUS
    if wide and projection == "TAN":
        projection = "CAR"
    w = WCS(naxis=2)
    a, b = _CTYPES[frame]
    w.wcs.ctype = [f"{a}-{projection}", f"{b}-{projection}"]
    w.wcs.cdelt = [-pixel_scale, pixel_scale]
    w.wcs.cunit = ["deg", "deg"]
    if frame == "icrs":
        w.wcs.radesys = "ICRS"
    elif frame == "fk5":
        w.wcs.radesys = "FK5"
        w.wcs.equinox = 2000.0
    elif frame == "fk4":
        w.wcs.radesys = "FK4"
        w.wcs.equinox = 1950.0
    if projection == "CAR" and wide:
        # the sample lattice's spacing on the sky: a longitude gap narrower than twice it
        # may fall between samples, not on empty sky (then the grid is the whole circle)
        spacing = max(max(im.shape[-1], im.shape[-2]) / 32.0
                      * float(np.max(proj_plane_pixel_scales(im.celestial))) for im in images)
        _car_grid(w, lon, lat, pixel_scale, spacing=2.0 * spacing + 5.0)
    else:
        w.wcs.crval = [lon0, lat0]
        w.wcs.crpix = [1.0, 1.0]
    w.wcs.set()
    if not (projection == "CAR" and wide):
        with np.errstate(invalid="ignore"):
            x, y = w.wcs_world2pix(lon, lat, 0)
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise VanotebookInputError(
                "images", f"images that the {projection} projection can hold around "
                f"({lon0:.4g}, {lat0:.4g}) (give wcs= a grid in another projection)",
                f"{int(np.sum(~np.isfinite(x)))} sample pixels beyond its boundary")
        xmin, xmax = float(np.min(x)), float(np.max(x))
        ymin, ymax = float(np.min(y)), float(np.max(y))
        w.wcs.crpix = [round(1.0 - (xmin + 0.5), 6), round(1.0 - (ymin + 0.5), 6)]
        nx = math.ceil(xmax - xmin)
        ny = math.ceil(ymax - ymin)
        w.wcs.set()
    else:
        nx, ny = w.pixel_shape
        w.pixel_shape = None
    _check_size((ny, nx), pixel_scale)
    return Grid(w, (ny, nx))


def _car_grid(w: WCS, lon, lat, pixel_scale: float, *, spacing: float) -> None:
    """Set ``w`` (a CAR WCS) to the plate-carree grid holding ``lon, lat``; its shape goes
    to ``w.pixel_shape``. A longitude gap narrower than ``spacing`` (deg) is not one."""
    span = _lon_range(lon, spacing=spacing)
    if span is None:  # the whole circle
        start, width = 180.0, 360.0
    else:
        start, width = span
        margin = min(2 * pixel_scale, (360.0 - width) / 2)
        start, width = start - margin, width + 2 * margin
    centre = (start + width / 2.0) % 360.0
    south = max(float(np.min(lat)) - 2 * pixel_scale, -90.0)
    north = min(float(np.max(lat)) + 2 * pixel_scale, 90.0)
    if north > 90.0 - 5.0 * pixel_scale - 1.0:
        north = 90.0
    if south < -90.0 + 5.0 * pixel_scale + 1.0:
        south = -90.0
    nx = max(1, math.ceil(width / pixel_scale - 1e-9))
    ny = max(1, math.ceil((north - south) / pixel_scale - 1e-9))
    w.wcs.crval = [centre, 0.0]
    # pixel centres: x = 0 at the grid's east edge plus half a pixel; the equator at CRPIX2
    w.wcs.crpix = [(nx + 1) / 2.0, 0.5 + (0.0 - south) / pixel_scale]
    w.pixel_shape = (nx, ny)


def _check_size(shape: tuple[int, int], pixel_scale: float) -> None:
    ny, nx = shape
    if ny * nx > MAX_PIXELS:
        gib = ny * nx * 12 / 2**30  # mosaic, weight and coverage in float32
        raise VanotebookInputError(
            "wcs", f"an optimal grid of at most {MAX_PIXELS} pixels (give wcs= a grid, or "
            "a coarser pixel scale)",
            f"{ny} x {nx} pixels at {pixel_scale * 3600:.3g} arcsec ({gib:.3g} GiB in memory)")


def resolve_grid(images: Sequence[Image], wcs, *, frame: str | None = None,
                 shape: tuple[int, int] | None = None, projection: str = "TAN") -> Grid:
    """Turn the ``wcs=`` argument into a `Grid`.

    ``"optimal"`` uses `optimal_grid`; a `Grid` is used as is; a FITS
    `~astropy.io.fits.Header` must carry ``NAXIS1``/``NAXIS2``; a `WCS` needs
    ``shape`` (or its ``pixel_shape``).
    """
    if isinstance(wcs, Grid):
        return wcs
    if isinstance(wcs, str):
        check_choice("wcs", wcs, ("optimal",))
        return optimal_grid(images, frame=frame, projection=projection)
    if isinstance(wcs, fits.Header | dict):
        header = fits.Header(wcs)
        if "NAXIS1" not in header or "NAXIS2" not in header:
            raise VanotebookInputError("wcs", "a header with NAXIS1 and NAXIS2", "a header "
                                       "without them")
        w = WCS(header).celestial
        grid_shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
    elif isinstance(wcs, WCS):
        w = wcs.celestial
        grid_shape = tuple(shape) if shape is not None else (
            tuple(wcs.pixel_shape[::-1]) if wcs.pixel_shape is not None else None)
        if grid_shape is None:
            raise VanotebookInputError("shape", "the output shape (ny, nx) for a WCS without "
                                       "pixel_shape", shape)
    else:
        raise VanotebookInputError("wcs", "'optimal', an astropy WCS or a FITS Header", wcs)
    if not w.has_celestial or w.naxis != 2:
        raise VanotebookInputError("wcs", "a grid with two celestial axes", wcs)
    if frame is not None and _frame_name(w) != frame:
        raise VanotebookInputError("frame", f"the given grid's frame ({_frame_name(w)})", frame)
    return Grid(w, (int(grid_shape[0]), int(grid_shape[1])))


def footprint_bbox(image: Image, grid: Grid) -> tuple[int, int, int, int] | None:
    """The output-pixel box ``(y0, y1, x0, x1)`` an image covers; None when it misses the grid.

    Found from the image's edges and an interior lattice (so a grid inside the image, or
    a fold, is still found). Where part of the edges is off the sky (the corners of an
    all-sky AIT map), the outline is the lattice's, and the box grows by its spacing.
    """
    xs, ys = _sample_points(image, 65, 33)
    with np.errstate(invalid="ignore"):
        x, y = pixel_to_pixel(image.celestial, grid.wcs, xs, ys)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return None
    n_edge = 4 * 65
    margin = 1.0
    if not ok[:n_edge].all():
        ny, nx = image.shape[-2:]
        spacing = max(nx, ny) / 32.0 * float(np.max(proj_plane_pixel_scales(image.celestial)))
        margin += spacing / float(np.min(proj_plane_pixel_scales(grid.wcs)))
    x, y = x[ok], y[ok]
    gny, gnx = grid.shape
    x0 = max(0, math.floor(x.min() - margin))
    x1 = min(gnx, math.ceil(x.max() + 1 + margin))
    y0 = max(0, math.floor(y.min() - margin))
    y1 = min(gny, math.ceil(y.max() + 1 + margin))
    if x0 >= x1 or y0 >= y1:
        return None
    return y0, y1, x0, x1


@dataclass
class NodeMap:
    """A coarse transform: exact pixel coordinates at nodes ``(ky0+j, kx0+i) * step``."""

    step: int
    ky0: int
    kx0: int
    nodes_x: np.ndarray
    nodes_y: np.ndarray
    error: float


@dataclass
class TilePlan:
    """One input as the kernels see it: its pixels, where it lands, and its corrections.

    ``nodes_x/nodes_y`` map output-grid nodes to this tile's pixels (the
    inverse transform, `NodeMap` fields flattened for the kernels);
    ``forward`` maps this tile's pixel nodes to the output grid (for the
    flux-conserving mode). ``scale`` converts its unit to the mosaic's,
    ``plane`` is its fitted background ``(a, b, c)``.
    """

    index: int
    data: np.ndarray
    wcs: WCS
    bbox: tuple[int, int, int, int]
    step: int
    ky0: int
    kx0: int
    nodes_x: np.ndarray
    nodes_y: np.ndarray
    error: float
    weight: float = 1.0
    weight_map: np.ndarray | None = None
    scale: float = 1.0
    plane: tuple[float, float, float] = (0.0, 0.0, 0.0)
    forward: NodeMap | None = None
    area_ratio: float = 1.0
    grid_wcs: WCS | None = None
    fused: bool = True  # numpy blocks may take the numba kernel (`_kernels.FUSED_PIXELS`)


def node_map(wcs_from: WCS, wcs_to: WCS, bbox: tuple[int, int, int, int], *,
             tolerance: float) -> NodeMap:
    """Coarse transform from ``wcs_from`` pixels in ``bbox`` to ``wcs_to`` pixels, to tolerance."""
    from ._kernels import choose_step, coarse_nodes

    step, error = choose_step(wcs_from, wcs_to, bbox, tolerance=tolerance)
    y0, y1, x0, x1 = bbox
    # nodes one cell beyond the box on each side, so sub-pixel positions interpolate
    kx = np.arange(x0 // step - 1, -(-(x1 - 1) // step) + 2)
    ky = np.arange(y0 // step - 1, -(-(y1 - 1) // step) + 2)
    nx, ny = coarse_nodes(wcs_from, wcs_to, kx, ky, step)
    return NodeMap(step, int(ky[0]), int(kx[0]), np.ascontiguousarray(nx),
                   np.ascontiguousarray(ny), error)


def plan_tiles(images: Sequence[Image], grid: Grid, *, tolerance: float, method: str,
               weights=None, scales=None) -> list[TilePlan]:
    """Plan every image that overlaps the grid; raise when none does."""
    from .._errors import VanotebookInputError
    from ._kernels import FUSED_PIXELS

    plans = []
    out_area = grid.pixel_area_sr
    fused = grid.shape[0] * grid.shape[1] >= FUSED_PIXELS
    for i, im in enumerate(images):
        bbox = footprint_bbox(im, grid)
        if bbox is None:
            continue
        inv = node_map(grid.wcs, im.celestial, bbox, tolerance=tolerance)
        if not (np.isfinite(inv.nodes_x).all() and np.isfinite(inv.nodes_y).all()):
            # nodes off the input's projection (e.g. beyond a SIN horizon): exact transform
            # everywhere they are undefined would be NaN anyway; keep them NaN-safe
            inv.nodes_x = np.ascontiguousarray(np.nan_to_num(inv.nodes_x, nan=-1e9))
            inv.nodes_y = np.ascontiguousarray(np.nan_to_num(inv.nodes_y, nan=-1e9))
        w = 1.0 if weights is None else weights[i]
        wmap = None
        if getattr(w, "ndim", 0) == 2:
            wmap, w = np.asarray(w, dtype=np.float32), 1.0
        fwd = None
        in_area = float(np.prod(np.radians(proj_plane_pixel_scales(im.celestial))))
        plans.append(TilePlan(
            index=i, data=im.data, wcs=im.celestial, bbox=bbox, step=inv.step, ky0=inv.ky0,
            kx0=inv.kx0, nodes_x=inv.nodes_x, nodes_y=inv.nodes_y,
            error=max(inv.error, fwd.error if fwd else 0.0), weight=float(w), weight_map=wmap,
            scale=1.0 if scales is None else float(scales[i]), forward=fwd,
            area_ratio=in_area / out_area, grid_wcs=grid.wcs, fused=fused,
        ))
    if not plans:
        raise VanotebookInputError("wcs", "an output grid that overlaps at least one image",
                                   f"a {grid.shape[1]}x{grid.shape[0]} grid at "
                                   f"{tuple(np.round(grid.wcs.wcs.crval, 4))} missing all "
                                   f"{len(images)} images")
    return plans
