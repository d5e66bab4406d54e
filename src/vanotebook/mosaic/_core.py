"""`mosaic`: plan the grid, match backgrounds, resample and combine on blocks, return a Dataset.

Also the FITS round trip of a mosaic Dataset (`to_fits`, `from_fits`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from .._errors import VanotebookInputError, check_choice, check_positive
from ..cluster import devices, get_client, image_chunk
from ..io import _FITS_SUFFIXES, Image, parse_images, write_dataset
from ..provenance import record
from ..units import convert_brightness, fits_string
from ._background import MODELS, fit_overlaps, solve_corrections
from ._coadd import COMBINES, namespace_for
from ._dask import (
    Tracker,
    assemble,
    block_tasks,
    compute_blocks,
    fill_in_process,
    stream_blocks,
    workers_reach_inputs,
    write_fits,
    write_zarr,
)
from ._kernels import LazySource
from ._plan import FRAMES, FitsSource, Grid, plan_tiles, resolve_grid

__all__ = ["ACTIVITY", "CUBE_ACTIVITY", "METHODS", "from_fits", "mosaic", "mosaic_cube",
           "prepare_images", "to_fits"]

ACTIVITY = "vanotebook.mosaic.mosaic"
METHODS = ("bilinear", "nearest", "flux-conserving")
_JY_SR = u.Jy / u.sr


def _as_2d(im: Image, argument: str) -> Image:
    data = im.data
    if isinstance(data, LazySource):
        _check_finite(data, argument)
        return im
    if data.ndim > 2:
        extra = data.shape[:-2]
        if any(n != 1 for n in extra):
            raise VanotebookInputError(argument, "a 2-D image (use mosaic_cube for cubes)",
                                       f"an image of shape {tuple(data.shape)}")
        data = data.reshape(data.shape[-2:])
    if hasattr(data, "compute"):
        data = data.compute()
    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float32)
    if not np.isfinite(data).any():
        raise VanotebookInputError(argument, "an image with finite pixels", "all pixels NaN")
    return Image(data, im.wcs, im.header, im.unit, im.beam)


def _check_finite(source: LazySource, argument: str, rows: int = 512) -> None:
    """The all-NaN check of a lazy input, stripe by stripe (stops at the first finite pixel)."""
    ny = source.shape[0]
    for y in range(0, ny, rows):
        if np.isfinite(source[y:y + rows, :]).any():
            return
    raise VanotebookInputError(argument, "an image with finite pixels", "all pixels NaN")


def _lazy_item(item, argument: str):
    """A FITS path as ``(FitsSource, header)`` (pixels stay on disk); anything else as is."""
    if isinstance(item, str | os.PathLike) and Path(item).is_file() and \
            str(item).lower().endswith(_FITS_SUFFIXES):
        source, header = FitsSource.open(item, argument)
        if source.lead and any(
                header[f"NAXIS{i}"] != 1 for i in range(3, header["NAXIS"] + 1)):
            raise VanotebookInputError(argument, "a 2-D image (use mosaic_cube for cubes)",
                                       f"an image with NAXIS={header['NAXIS']}")
        return source, header
    return item


def prepare_images(images: Any, *, argument: str = "images", lazy: bool = False) -> list[Image]:
    """Parse images and check them: 2-D, celestial, not all NaN.

    With ``lazy``, FITS paths are not read: their pixels stay on disk and are read
    region by region by the block tasks (`FitsSource`), so inputs larger than
    memory can be mosaicked.
    """
    if isinstance(images, fits.HDUList):  # one image (its first image HDU), not a list
        images = [images]
    if lazy:
        if isinstance(images, str | os.PathLike):
            text = str(images)
            if Path(text).is_dir():
                images = sorted(p for p in Path(text).iterdir()
                                if p.name.lower().endswith(_FITS_SUFFIXES))
            else:
                import glob

                images = sorted(glob.glob(text)) or [text]
        if isinstance(images, list | tuple) and not (
                isinstance(images, tuple) and len(images) == 2
                and not isinstance(images[0], str | os.PathLike)):
            images = [_lazy_item(im, f"{argument}[{i}]") for i, im in enumerate(images)]
    parsed = parse_images(images, argument=argument)
    return [_as_2d(im, f"{argument}[{i}]") for i, im in enumerate(parsed)]


def unit_scales(images: list[Image], unit=None, *, argument: str = "images"):
    """The target unit and the factor that brings each image to it.

    Images in the target unit are taken as they are, whatever it is (DN,
    electron/s, K, mag...). Others are converted: by plain unit scaling where
    astropy converts them (mJy/beam to Jy/beam, mK to K, DN/min to DN/s), else as
    surface brightness through the beam or pixel area (Jy/beam to MJy/sr); units
    with no conversion between them (DN and K) are refused by name.
    """
    target = unit if unit is not None else images[0].unit
    if target is not None:
        try:
            target = u.Unit(target)
        except (TypeError, ValueError) as exc:
            raise VanotebookInputError("unit", "an astropy unit (str or Unit)", unit) from exc
    ref_beam = next((im.beam for im in images if im.unit == target), images[0].beam)
    scales = []
    for i, im in enumerate(images):
        if im.unit == target:
            scales.append(1.0)
            continue
        if im.unit is None or target is None:
            raise VanotebookInputError(f"{argument}[{i}]", f"a BUNIT like the others ({target})",
                                       im.unit)
        try:
            scales.append(float(im.unit.to(target)))
            continue
        except u.UnitsError:
            pass
        if not (_is_brightness(im.unit) and _is_brightness(target)):
            raise VanotebookInputError(
                f"{argument}[{i}]", f"a unit convertible to {target} (or unit= one of them)",
                f"BUNIT {im.unit}")
        try:
            jy_sr = float(convert_brightness(1.0, im.unit, _JY_SR, beam=im.beam,
                                             pixel_area=im.pixel_area))
            scales.append(float(convert_brightness(jy_sr, _JY_SR, target, beam=ref_beam,
                                                   pixel_area=im.pixel_area)))
        except VanotebookInputError as exc:
            raise VanotebookInputError(
                f"{argument}[{i}]", f"a beam (BMAJ/BMIN) to convert {im.unit} to {target}",
                f"unit {im.unit} with {exc.argument} {exc.got!r}") from exc
    return target, scales


def _is_brightness(unit) -> bool:
    """Whether a unit is a surface brightness or flux per beam / pixel (Jy/sr, Jy/beam...)."""
    return any(unit.is_equivalent(other) for other in (_JY_SR, u.Jy / u.beam, u.Jy / u.pix,
                                                       u.Jy))


def source_paths(images: Any) -> list[str | None]:
    """The absolute path of the file each image comes from (None for one in memory), in
    the order `prepare_images` parses them: what a rerun needs to remake the mosaic."""
    if isinstance(images, str | os.PathLike):
        text = str(images)
        if Path(text).is_dir():
            found = sorted(p for p in Path(text).iterdir()
                           if p.name.lower().endswith(_FITS_SUFFIXES))
        elif any(ch in text for ch in "*?["):
            import glob

            found = sorted(Path(p) for p in glob.glob(text))
        else:
            found = [Path(text)]
        return [str(p.resolve()) if p.is_file() else None for p in found]
    if isinstance(images, list | tuple) and not isinstance(images, fits.HDUList) and not (
            isinstance(images, tuple) and len(images) == 2
            and not isinstance(images[0], str | os.PathLike)):
        return [str(Path(im).resolve()) if isinstance(im, str | os.PathLike)
                and Path(im).is_file() else None for im in images]
    return [None]


def _digest(im: Image, path: str | None = None) -> str:
    if path is not None or isinstance(im.data, FitsSource):
        from ..provenance import sha256_file

        return sha256_file(path or im.data.path)
    h = hashlib.sha256(np.ascontiguousarray(im.data).tobytes())
    h.update(im.celestial.to_header_string(relax=True).encode())
    return h.hexdigest()


def _check_weights(weights, images: list[Image]):
    if weights is None:
        return None
    if np.isscalar(weights) or not hasattr(weights, "__len__") or len(weights) != len(images):
        raise VanotebookInputError("weights", f"a list of {len(images)} numbers or arrays",
                                   weights)
    out = []
    for i, (w, im) in enumerate(zip(weights, images, strict=True)):
        if isinstance(w, str | bytes) or (np.ndim(w) == 0 and not isinstance(
                w, int | float | np.integer | np.floating)) or isinstance(w, bool):
            raise VanotebookInputError(f"weights[{i}]", "a positive number or a weight map", w)
        if np.ndim(w) == 0:
            out.append(float(check_positive(f"weights[{i}]", float(w))))
            continue
        if np.shape(w) != tuple(im.shape):
            raise VanotebookInputError(f"weights[{i}]", f"a number or an array of shape "
                                       f"{im.shape}", w)
        try:
            wmap = np.asarray(w, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise VanotebookInputError(f"weights[{i}]", "a numeric weight map", w) from exc
        if np.any(wmap < 0):
            raise VanotebookInputError(f"weights[{i}]", "a weight map >= 0 (NaN: no weight)",
                                       f"a map with minimum {np.nanmin(wmap)}")
        out.append(wmap)
    return out


def _wcs_param(wcs) -> Any:
    if isinstance(wcs, str):
        return wcs
    if isinstance(wcs, Grid):
        return wcs.header.tostring()
    if isinstance(wcs, WCS):
        return wcs.to_header_string(relax=True)
    return fits.Header(wcs).tostring()


def mosaic(
    images: Any,
    *,
    wcs: str | WCS | fits.Header | Grid = "optimal",
    shape: tuple[int, int] | None = None,
    frame: str | None = None,
    combine: str = "mean",
    weights: list | None = None,
    match_background: bool | str = True,
    method: str = "bilinear",
    tolerance: float = 1e-5,
    unit: str | u.UnitBase | None = None,
    client=None,
    device: str = "auto",
    chunks: int | None = None,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool | Callable[[float], None] = False,
):
    """Merge overlapping images into one map on a common grid.

    Parameters
    ----------
    images : list, glob pattern or folder
        Anything `vanotebook.io.parse_images` accepts (paths, HDUs, ``(array, WCS)``...).
    wcs : "optimal", WCS, Header or Grid
        The output grid: the smallest north-up grid holding every image (like
        reproject's ``find_optimal_celestial_wcs``), or a given one (a WCS needs ``shape``).
    shape : (ny, nx), optional
        Output shape when ``wcs`` is a WCS without ``pixel_shape``.
    frame : {"icrs", "fk5", "fk4", "galactic"}, optional
        Frame of the optimal grid (default: the first image's); FK5 is at equinox
        J2000 and FK4 at B1950. Inputs in other frames or equinoxes are transformed
        through astropy's frames.
    combine : {"mean", "median", "sum", "first", "last", "count"}
        How overlapping pixels combine; ``mean`` and ``sum`` use the weights.
    weights : list of numbers or arrays, optional
        One weight per image (or a weight map of the image's shape).
    match_background : bool or {"offset", "plane"}
        Fit the difference of every overlap and solve for per-tile
        corrections by global least squares (Montage's method); True means ``"offset"``.
    method : {"bilinear", "nearest", "flux-conserving"}
        Resampling. ``flux-conserving`` drizzles 2x2 sub-pixels forward, so the
        summed flux (``mosaic * weight * pixel area``) equals the input's.
    tolerance : float
        Largest error, in input pixels, allowed for the coarse-grid coordinate
        transform; the one met is in ``attrs["transform_error"]``.
    unit : str or Unit, optional
        Output brightness unit (default: the first image's); others are converted.
    client : distributed.Client, optional
        Run on this cluster (default: the current client, else threads in-process).
    device : {"auto", "cpu", "gpu"}
        Where the resampling runs (a GPU through CuPy when available).
    chunks : int, optional
        Side of the output blocks (default: the ``image-chunk`` setting).
    output : path, optional
        Write the mosaic there block by block: ``.fits`` (streamed in stripes) or
        ``.zarr`` (each Dask task writes its own chunk). Inputs given as FITS paths are
        then not loaded: every block task reads only the part of each input it needs,
        so neither inputs nor output need fit in memory. The Dataset returned reads
        from the file. Where the cluster's workers cannot open the inputs or write
        the output (workers of another account, files in a private folder), the
        blocks get their pixels by value, read here a few blocks ahead, and come back
        to be written here; the product is the same.
    overwrite : bool
        Replace an existing ``output``.
    progress : bool or callable
        True shows Dask's progress bar (``distributed.progress`` with a client,
        ``dask.diagnostics.ProgressBar`` in-process); a callable is called with the
        fraction of output blocks done (0..1), from a worker thread, as they finish.

    Returns
    -------
    xarray.Dataset
        ``mosaic``, ``weight`` (summed weight) and ``coverage`` (number of
        tiles), dims ``(y, x)``; attrs: ``header`` (FITS header text),
        ``unit``, ``provenance``, ``transform_error``, ``background``.

    Raises
    ------
    VanotebookInputError
        No images, no celestial WCS, an all-NaN image, mixed units without a
        beam, a grid that misses every image, or a bad option.
    """
    check_choice("combine", combine, COMBINES)
    check_choice("method", method, METHODS)
    if match_background is True:
        match_background = "offset"
    if match_background not in (False, None, *MODELS):
        raise VanotebookInputError("match_background", f"True, False or one of {MODELS}",
                                   match_background)
    check_positive("tolerance", tolerance)
    if frame is not None:
        check_choice("frame", frame, FRAMES)
    if output is not None and not str(output).endswith((".fits", ".zarr")):
        raise VanotebookInputError("output", "a path ending in .fits or .zarr", str(output))
    if output is not None and Path(output).exists() and not overwrite:
        raise VanotebookInputError("output", "a new path (or overwrite=True)", str(output))
    chunk = image_chunk(chunks)
    client = get_client(client)
    here, device = devices(device, client)  # the blocks' device is the cluster's choice
    paths = source_paths(images)
    images = prepare_images(images, lazy=output is not None)
    if len(paths) != len(images):
        paths = [None] * len(images)
    weights = _check_weights(weights, images)
    target_unit, scales = unit_scales(images, unit)
    grid = resolve_grid(images, wcs, frame=frame, shape=shape)
    if weights is None or any(isinstance(w, np.ndarray) for w in weights):
        weight_param = None if weights is None else "maps"
    else:
        weight_param = [float(w) for w in weights]
    params = {"images": paths, "wcs": _wcs_param(wcs), "shape": list(shape) if shape else None,
              "frame": frame, "combine": combine, "weights": weight_param,
              "match_background": match_background or False, "method": method,
              "tolerance": tolerance, "unit": None if unit is None else str(unit),
              "chunks": chunk}
    with record(ACTIVITY, params) as prov:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:  # hashlib frees the GIL
            digests = list(pool.map(_digest, images, paths))
        for i, (digest, path) in enumerate(zip(digests, paths, strict=True)):
            prov.inputs.append({"path": path or f"images[{i}]", "sha256": digest})
        tiles = plan_tiles(images, grid, tolerance=tolerance, method=method, weights=weights,
                           scales=scales)
        centre = ((grid.shape[0] - 1) / 2.0, (grid.shape[1] - 1) / 2.0)
        background = {}
        if match_background:
            overlaps = fit_overlaps(tiles, centre=centre, model=match_background,
                                    xp=namespace_for(here))
            planes = solve_corrections([t.index for t in tiles], overlaps, model=match_background)
            for t in tiles:
                t.plane = planes[t.index]
                background[str(t.index)] = list(planes[t.index])
        token = prov.digest[:12] + hashlib.sha256(repr(background).encode()).hexdigest()[:8]

        def make_rows(sink=None):
            return block_tasks(tiles, grid.shape, chunk=chunk, combine=combine, method=method,
                               device=device, centre=centre, token=token, sink=sink)

        rows = make_rows()
        tracker = Tracker(sum(len(r) for r in rows), progress)
        # workers of another account may not open the caller's FITS files: then the
        # blocks get the pixels they sample by value, read here a few blocks ahead
        by_value = not workers_reach_inputs(client, tiles)

        def stream(windows):
            return stream_blocks(tiles, windows, client=client, combine=combine,
                                 method=method, device=device, centre=centre,
                                 by_value=by_value, tracker=tracker)

        header = grid.header
        if target_unit is not None:
            header["BUNIT"] = fits_string(target_unit)
        ref = images[0]
        if ref.beam is not None and all(im.beam == ref.beam for im in images):
            for key, card in ref.beam.header_cards().items():
                header[key] = card
        attrs = {"unit": "" if target_unit is None else target_unit.to_string(),
                 "transform_error": max(t.error for t in tiles),
                 "transform_tolerance": tolerance,
                 "background": background,
                 "tiles": [t.index for t in tiles],
                 "footprints": [list(map(int, t.bbox)) for t in tiles]}
        if output is None and client is None:
            values = fill_in_process(tiles, grid.shape, chunk=chunk, combine=combine,
                                     method=method, device=device, centre=centre,
                                     tracker=tracker)
            ds = _dataset(values, header, attrs)
        elif output is None and by_value:
            values = np.empty((3, *grid.shape), np.float32)
            for (y0, y1, x0, x1), block in stream([w for row in rows for w, _ in row]):
                values[:, y0:y1, x0:x1] = block
            ds = _dataset(values, header, attrs)
        elif output is None:
            values = assemble(rows, compute_blocks([d for row in rows for _, d in row], client,
                                                   tracker))
            ds = _dataset(values, header, attrs)
        elif str(output).endswith(".fits"):
            write_fits(rows, grid.shape, header, output, client=client, prov=prov,
                       overwrite=overwrite, tracker=tracker, stream=stream if by_value else None)
        else:
            write_zarr(grid.shape, output, chunk=chunk, client=client, overwrite=overwrite,
                       tracker=tracker, make_rows=make_rows, stream=stream, by_value=by_value,
                       attrs={"header": header.tostring(), **attrs,
                              "provenance": prov.to_dict()})
    if output is not None:
        prov.outputs.append({"path": str(output), "sha256": "" if str(output).endswith(".zarr")
                             else _sha(output)})
        from .._remote import workers_can_read

        # dask-backed only where the workers can read the product; else read here on access
        readable = workers_can_read(client, [output])
        if str(output).endswith(".fits"):
            ds = from_fits(output, chunks=chunk, dask=readable)
        else:
            ds = _open_zarr(output, dask=readable)
        ds.attrs.update(dict(attrs.items()))
    ds.attrs["provenance"] = prov.to_dict()
    return ds


def _sha(path) -> str:
    from ..provenance import sha256_file

    return sha256_file(path)


def _dataset(values, header: fits.Header, attrs: dict):
    import xarray as xr

    text = header.tostring()
    ds = xr.Dataset(
        {"mosaic": (("y", "x"), values[0], {"header": text, "unit": attrs["unit"]}),
         "weight": (("y", "x"), values[1]),
         "coverage": (("y", "x"), values[2].astype(np.int16))},
        attrs={"header": text, **attrs},
    )
    return ds


def _open_zarr(path, *, dask: bool = True):
    """The store as a Dataset: dask-backed, or (``dask=False``) lazily indexed arrays read
    in this process on access (for a store the cluster's workers cannot open)."""
    import xarray as xr

    return xr.open_zarr(path, consolidated=False, **({} if dask else {"chunks": None}))


#: ``to_fits(dataset, path=None, *, overwrite=False)``: a mosaic Dataset as FITS (the
#: mosaic, WEIGHT, COVERAGE and PROVENANCE HDUs), written atomically when ``path`` is given.
#: It lives in `vanotebook.io` (the archive writes Datasets too, without the mosaic).
to_fits = write_dataset


def from_fits(path: str | os.PathLike | fits.HDUList, *, chunks: int | None = None,
              dask: bool = True):
    """Read a mosaic written by `to_fits` or ``mosaic(output="....fits")`` back into a Dataset.

    With ``chunks`` (a path only), the Dataset reads the file region by region
    on access, nothing loaded: dask-backed in ``chunks``-square blocks, or with
    ``dask=False`` lazily indexed arrays read in this process (for a file the
    cluster's workers cannot open).
    """
    if isinstance(path, str | os.PathLike):
        if not Path(path).is_file():
            raise VanotebookInputError("path", "an existing mosaic FITS file", str(path))
        with fits.open(path, memmap=False, lazy_load_hdus=chunks is not None) as hdul:
            if chunks is None:
                return from_fits(hdul)
            return _lazy_fits(path, hdul, check_positive("chunks", chunks, integer=True),
                              dask=dask)
    hdul = path
    header, names = _mosaic_header(hdul)
    values = [np.asarray(hdul[0].data, np.float32),
              np.asarray(hdul["WEIGHT"].data, np.float32),
              np.asarray(hdul["COVERAGE"].data, np.float32)]
    unit = header.get("BUNIT", "")
    ds = _dataset(np.stack(values), header, {"unit": unit})
    _read_provenance(ds, hdul, names)
    return ds


def _mosaic_header(hdul) -> tuple[fits.Header, list[str]]:
    names = [h.name for h in hdul]
    if "WEIGHT" not in names or "COVERAGE" not in names:
        raise VanotebookInputError("path", "a mosaic FITS file with WEIGHT and COVERAGE HDUs",
                                   names)
    header = hdul[0].header.copy()
    for key in ("SIMPLE", "EXTEND"):
        header.remove(key, ignore_missing=True)
    return header, names


def _read_provenance(ds, hdul, names) -> None:
    if "PROVENANCE" in names:
        import json

        ds.attrs["provenance"] = {"vanotebook": json.loads(hdul["PROVENANCE"].data["record"][0])}


def _lazy_fits(path, hdul, chunk: int, *, dask: bool = True):
    """The mosaic file as a Dataset over `FitsSource` regions of each HDU (dask-backed,
    or lazily indexed in this process)."""
    import dask.array as da
    import xarray as xr

    header, names = _mosaic_header(hdul)
    arrays = []
    for name in ("PRIMARY", "WEIGHT", "COVERAGE"):
        k = names.index(name)
        h = hdul[k].header
        shape = (h["NAXIS2"], h["NAXIS1"])
        source = FitsSource(path, k, shape, np.float64 if h["BITPIX"] == -64 else np.float32)
        if dask:
            arrays.append(da.from_array(source, chunks=(chunk, chunk), asarray=True,
                                        name=f"mosaic-file-{name.lower()}-{_sha(path)[:16]}"))
        else:
            arrays.append(_local_plane(source, np.int16 if name == "COVERAGE" else np.float32))
    if not dask:
        from xarray.core.indexing import LazilyIndexedArray

        arrays = [LazilyIndexedArray(a) for a in arrays]
    text = header.tostring()
    unit = header.get("BUNIT", "")
    if dask:
        arrays = [arrays[0].astype(np.float32), arrays[1].astype(np.float32),
                  arrays[2].astype(np.int16)]
    ds = xr.Dataset(
        {"mosaic": (("y", "x"), arrays[0], {"header": text, "unit": unit}),
         "weight": (("y", "x"), arrays[1]),
         "coverage": (("y", "x"), arrays[2])},
        attrs={"header": text, "unit": unit})
    _read_provenance(ds, hdul, names)
    return ds


def _local_plane_class():
    from xarray.backends import BackendArray
    from xarray.core import indexing

    class LocalPlane(BackendArray):
        """One HDU of a mosaic file, read region by region in this process."""

        def __init__(self, source: FitsSource, dtype) -> None:
            self.source, self.shape, self.dtype = source, source.shape, np.dtype(dtype)

        def __getitem__(self, key):
            return indexing.explicit_indexing_adapter(
                key, self.shape, indexing.IndexingSupport.BASIC, self._raw)

        def _raw(self, key):
            return np.asarray(self.source[key]).astype(self.dtype)

    return LocalPlane


def _local_plane(source: FitsSource, dtype):  # the class is built on first use (xarray)
    return _local_plane_class()(source, dtype)


# ----------------------------------------------------------------------------- cubes
CUBE_ACTIVITY = "vanotebook.mosaic.mosaic_cube"


def _velocities(im: Image, argument: str) -> u.Quantity:
    """Velocity of every channel of a cube: a velocity axis as given, a frequency or
    wavelength axis as radio velocity about its rest frequency."""
    wcs = im.wcs
    if im.data.ndim != 3 or not wcs.has_spectral:
        raise VanotebookInputError(argument, "a 3-D cube with a spectral WCS axis",
                                   f"an image of shape {tuple(im.data.shape)}")
    spec = wcs.spectral
    n = im.data.shape[0]
    coord = spec.pixel_to_world(np.arange(n))
    try:
        if u.Quantity(coord).unit.physical_type == "speed":  # a velocity axis: as given
            return u.Quantity(coord).to(u.km / u.s)
        return coord.to(u.km / u.s, doppler_convention="radio")
    except (u.UnitsError, ValueError) as exc:
        raise VanotebookInputError(argument, "a spectral axis convertible to velocity "
                                   "(a velocity axis, or frequency with RESTFRQ)",
                                   str(spec.wcs.ctype[0])) from exc


def mosaic_cube(
    cubes: Any,
    *,
    velocity: tuple[u.Quantity, u.Quantity],
    wcs: str | WCS | fits.Header | Grid = "optimal",
    shape: tuple[int, int] | None = None,
    frame: str | None = None,
    combine: str = "mean",
    method: str = "bilinear",
    tolerance: float = 1e-5,
    client=None,
    device: str = "auto",
    chunks: int | None = None,
    progress: bool | Callable[[float], None] = False,
):
    """Merge spectral cubes spatially, channel by channel, within a velocity range.

    The spectral axis is not resampled: every cube must have the same channels
    (radio velocities equal to 1/1000 of a channel) inside ``velocity``, and each
    channel is mosaicked on the common celestial grid with the same plan (the
    coordinate transform is paid once for all channels).

    Parameters
    ----------
    cubes : list
        3-D images (path, HDU, ``(array, WCS)``...) with two celestial axes and a
        spectral axis in velocity, or in frequency/wavelength with a rest frequency.
    velocity : (vmin, vmax) Quantity
        Radio-velocity range of the channels kept (inclusive).
    wcs, shape, frame, combine, method, tolerance, client, device, chunks, progress
        As in `mosaic` (``progress`` counts blocks over all channels).

    Returns
    -------
    xarray.Dataset
        ``mosaic``, ``weight``, ``coverage`` with dims ``(v, y, x)`` and coordinate
        ``velocity`` (km/s); attrs ``header`` (3-D FITS header), ``unit``, ``provenance``.

    Raises
    ------
    VanotebookInputError
        A cube that is not 3-D or has no velocity axis, cubes whose channels differ in
        the range (``cubes[i]``), an empty range (``velocity``), or a bad option.
    """
    check_choice("combine", combine, COMBINES)
    check_choice("method", method, METHODS)
    check_positive("tolerance", tolerance)
    try:
        vmin, vmax = (u.Quantity(v).to(u.km / u.s) for v in velocity)
    except (TypeError, ValueError, u.UnitsError) as exc:
        raise VanotebookInputError("velocity", "(vmin, vmax) velocity Quantities",
                                   velocity) from exc
    if vmin > vmax:
        vmin, vmax = vmax, vmin
    chunk = image_chunk(chunks)
    client = get_client(client)
    _, device = devices(device, client)
    paths = source_paths(cubes)
    parsed = parse_images(cubes, argument="cubes")
    if len(paths) != len(parsed):
        paths = [None] * len(parsed)
    selected, ref_v = [], None
    for i, im in enumerate(parsed):
        v = _velocities(im, f"cubes[{i}]")
        keep = np.flatnonzero((v >= vmin) & (v <= vmax))
        if keep.size == 0:
            raise VanotebookInputError("velocity", f"a range holding channels of cubes[{i}] "
                                       f"({v.min():.3g} .. {v.max():.3g})",
                                       f"{vmin:.3g} .. {vmax:.3g}")
        vk = v[keep].value
        if ref_v is None:
            ref_v, ref_keep = vk, keep
            width = float(np.min(np.abs(np.diff(v.value)))) if v.size > 1 else 1.0
        elif vk.size != ref_v.size or np.max(np.abs(vk - ref_v)) > 1e-3 * width:
            raise VanotebookInputError(
                f"cubes[{i}]", f"the spectral axis of cubes[0] in the range ({ref_v.size} "
                f"channels at {ref_v[0]:.4g}..{ref_v[-1]:.4g} km/s)",
                f"{vk.size} channels at {vk[0]:.4g}..{vk[-1]:.4g} km/s")
        data = np.asarray(im.data.compute() if hasattr(im.data, "compute") else im.data)
        selected.append((im, data[keep], keep))
    # plan once on the celestial part (channel 0 stands in for all)
    planes0 = [Image(d[0], im.wcs.celestial, im.header, im.unit, im.beam)
               for im, d, _ in selected]
    images = [_as_2d(p, f"cubes[{i}]") for i, p in enumerate(planes0)]
    target_unit, scales = unit_scales(images, None, argument="cubes")
    grid = resolve_grid(images, wcs, frame=frame, shape=shape)
    params = {"cubes": paths, "velocity": [float(vmin.value), float(vmax.value)],
              "wcs": _wcs_param(wcs),
              "shape": list(shape) if shape else None, "frame": frame, "combine": combine,
              "method": method, "tolerance": tolerance, "chunks": chunk}
    with record(CUBE_ACTIVITY, params) as prov:
        for i, (im, d, _) in enumerate(selected):
            if paths[i] is not None:  # a file: its sha256, as rerun checks it
                prov.inputs.append({"path": paths[i], "sha256": _sha(paths[i])})
                continue
            h = hashlib.sha256(np.ascontiguousarray(d).tobytes())
            h.update(im.wcs.to_header_string(relax=True).encode())
            prov.inputs.append({"path": f"cubes[{i}]", "sha256": h.hexdigest()})
        base = plan_tiles(images, grid, tolerance=tolerance, method=method, scales=scales)
        centre = ((grid.shape[0] - 1) / 2.0, (grid.shape[1] - 1) / 2.0)
        rows_all, tasks = [], []
        for c in range(ref_v.size):
            tiles = [replace(t, data=np.ascontiguousarray(selected[t.index][1][c]))
                     for t in base]
            rows = block_tasks(tiles, grid.shape, chunk=chunk, combine=combine, method=method,
                               device=device, centre=centre,
                               token=f"{prov.digest[:12]}-c{c}")
            rows_all.append(rows)
            tasks.extend(d for row in rows for _, d in row)
        results = compute_blocks(tasks, client, Tracker(len(tasks), progress))
        k = 0
        planes = []
        for rows in rows_all:
            n = sum(len(r) for r in rows)
            planes.append(assemble(rows, results[k:k + n]))
            k += n
    values = np.stack(planes, axis=1)  # (3, nv, ny, nx)
    header = grid.header
    spec = selected[0][0].wcs.spectral
    spec = spec.slice((slice(int(ref_keep[0]), int(ref_keep[-1]) + 1),))
    header["NAXIS"] = 3
    header["NAXIS3"] = ref_v.size
    for key, value in spec.to_header().items():
        if key[-1] == "1" and key[:-1] in ("CTYPE", "CRVAL", "CRPIX", "CDELT", "CUNIT"):
            header[key[:-1] + "3"] = value
        elif key in ("RESTFRQ", "RESTWAV", "SPECSYS", "SSYSOBS", "VELREF", "MJD-OBS",
                     "DATE-OBS"):
            header[key] = value
    if target_unit is not None:
        header["BUNIT"] = fits_string(target_unit)
    import xarray as xr

    text = header.tostring()
    ds = xr.Dataset(
        {"mosaic": (("v", "y", "x"), values[0], {"header": text}),
         "weight": (("v", "y", "x"), values[1]),
         "coverage": (("v", "y", "x"), values[2].astype(np.int16))},
        coords={"velocity": ("v", ref_v, {"unit": "km/s", "convention": "radio"})},
        attrs={"header": text, "unit": "" if target_unit is None else target_unit.to_string(),
               "transform_error": max(t.error for t in base),
               "footprints": [list(map(int, t.bbox)) for t in base]},
    )
    ds.attrs["provenance"] = prov.to_dict()
    return ds
