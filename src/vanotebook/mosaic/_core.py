"""`mosaic`: plan the grid, match backgrounds, resample and combine on blocks, return a Dataset.

Also the FITS round trip of a mosaic Dataset (`to_fits`, `from_fits`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from .._errors import VanotebookInputError, check_choice, check_positive
from ..cluster import get_client, image_chunk, resolve_device
from ..io import Image, parse_images
from ..provenance import Provenance, record
from ..units import convert_brightness
from ._background import MODELS, fit_overlaps, solve_corrections
from ._coadd import COMBINES, namespace_for
from ._dask import compute, lazy_blocks, write_fits, write_zarr
from ._plan import FRAMES, Grid, plan_tiles, resolve_grid

__all__ = ["ACTIVITY", "METHODS", "from_fits", "mosaic", "prepare_images", "to_fits"]

ACTIVITY = "vanotebook.mosaic.mosaic"
METHODS = ("bilinear", "nearest", "flux-conserving")
_JY_SR = u.Jy / u.sr


def _as_2d(im: Image, argument: str) -> Image:
    data = im.data
    if data.ndim > 2:
        extra = data.shape[:-2]
        if any(n != 1 for n in extra):
            raise VanotebookInputError(argument, "a 2-D image (use cube_mosaic for cubes)",
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


def prepare_images(images: Any, *, argument: str = "images") -> list[Image]:
    """Parse images and check them: 2-D, celestial, not all NaN."""
    parsed = parse_images(images, argument=argument)
    return [_as_2d(im, f"{argument}[{i}]") for i, im in enumerate(parsed)]


def unit_scales(images: list[Image], unit=None, *, argument: str = "images"):
    """The target unit and the factor that brings each image to it."""
    target = unit if unit is not None else images[0].unit
    if target is not None:
        target = u.Unit(target)
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
            jy_sr = float(convert_brightness(1.0, im.unit, _JY_SR, beam=im.beam,
                                             pixel_area=im.pixel_area))
            scales.append(float(convert_brightness(jy_sr, _JY_SR, target, beam=ref_beam,
                                                   pixel_area=im.pixel_area)))
        except VanotebookInputError as exc:
            raise VanotebookInputError(
                f"{argument}[{i}]", f"a beam (BMAJ/BMIN) to convert {im.unit} to {target}",
                f"unit {im.unit} with {exc.argument} {exc.got!r}") from exc
    return target, scales


def _digest(im: Image) -> str:
    h = hashlib.sha256(np.ascontiguousarray(im.data).tobytes())
    h.update(im.celestial.to_header_string().encode())
    return h.hexdigest()


def _check_weights(weights, images: list[Image]):
    if weights is None:
        return None
    if np.isscalar(weights) or len(weights) != len(images):
        raise VanotebookInputError("weights", f"a list of {len(images)} numbers or arrays",
                                   weights)
    out = []
    for i, (w, im) in enumerate(zip(weights, images, strict=True)):
        if np.ndim(w) == 0:
            out.append(float(check_positive(f"weights[{i}]", float(w))))
        elif np.shape(w) == im.shape:
            out.append(np.asarray(w, dtype=np.float32))
        else:
            raise VanotebookInputError(f"weights[{i}]", f"a number or an array of shape "
                                       f"{im.shape}", w)
    return out


def _wcs_param(wcs) -> Any:
    if isinstance(wcs, str):
        return wcs
    if isinstance(wcs, Grid):
        return wcs.header.tostring()
    if isinstance(wcs, WCS):
        return wcs.to_header_string()
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
    progress: bool = False,
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
    frame : {"icrs", "fk5", "galactic"}, optional
        Frame of the optimal grid (default: the first image's).
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
        Write the mosaic there chunk by chunk: ``.fits`` or ``.zarr``. The Dataset
        returned then reads from it.
    overwrite : bool
        Replace an existing ``output``.
    progress : bool
        Show a progress bar (Dask's) while computing.

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
    device = resolve_device(device)
    client = get_client(client)
    images = prepare_images(images)
    weights = _check_weights(weights, images)
    target_unit, scales = unit_scales(images, unit)
    grid = resolve_grid(images, wcs, frame=frame, shape=shape)
    params = {"wcs": _wcs_param(wcs), "shape": list(shape) if shape else None, "frame": frame,
              "combine": combine, "weights": None if weights is None else "given",
              "match_background": match_background or False, "method": method,
              "tolerance": tolerance, "unit": None if unit is None else str(unit),
              "chunks": chunk}
    with record(ACTIVITY, params) as prov:
        for i, im in enumerate(images):
            prov.inputs.append({"path": f"images[{i}]", "sha256": _digest(im)})
        tiles = plan_tiles(images, grid, tolerance=tolerance, method=method, weights=weights,
                           scales=scales)
        centre = ((grid.shape[0] - 1) / 2.0, (grid.shape[1] - 1) / 2.0)
        background = {}
        if match_background:
            overlaps = fit_overlaps(tiles, centre=centre, model=match_background,
                                    xp=namespace_for(device))
            planes = solve_corrections([t.index for t in tiles], overlaps, model=match_background)
            for t in tiles:
                t.plane = planes[t.index]
                background[str(t.index)] = list(planes[t.index])
        token = prov.digest[:12] + hashlib.sha256(repr(background).encode()).hexdigest()[:8]
        stack = lazy_blocks(tiles, grid.shape, chunk=chunk, combine=combine, method=method,
                            device=device, centre=centre, token=token)
        header = grid.header
        if target_unit is not None:
            header["BUNIT"] = target_unit.to_string("fits")
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
        ctx = _progress(progress, client)
        with ctx:
            if output is None:
                (values,) = compute([stack], client)
                ds = _dataset(values, header, attrs)
            elif str(output).endswith(".fits"):
                write_fits(stack, header, output, chunk=chunk, client=client, prov=prov,
                           overwrite=overwrite)
            else:
                lazy = _dataset(stack, header, attrs)
                lazy.attrs["provenance"] = prov.to_dict()
                write_zarr(lazy.chunk({"y": chunk, "x": chunk}), output, client=client,
                           overwrite=overwrite)
    if output is not None:
        prov.outputs.append({"path": str(output), "sha256": "" if str(output).endswith(".zarr")
                             else _sha(output)})
        ds = from_fits(output) if str(output).endswith(".fits") else _open_zarr(output)
        ds.attrs.update(dict(attrs.items()))
    ds.attrs["provenance"] = prov.to_dict()
    return ds


def _sha(path) -> str:
    from ..provenance import sha256_file

    return sha256_file(path)


def _progress(progress: bool, client):
    import contextlib

    if not progress:
        return contextlib.nullcontext()
    if client is None:
        from dask.diagnostics import ProgressBar

        return ProgressBar()
    return contextlib.nullcontext()


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


def _open_zarr(path):
    import xarray as xr

    return xr.open_zarr(path, consolidated=False)


def to_fits(dataset, path: str | os.PathLike | None = None, *, overwrite: bool = False
            ) -> fits.HDUList:
    """A mosaic Dataset as FITS: the mosaic (primary), WEIGHT, COVERAGE and PROVENANCE HDUs.

    Written atomically to ``path`` when given; the HDUList is returned either way.
    """
    from ..io import write_fits as _write

    header = fits.Header.fromstring(dataset.attrs["header"])
    hdul = fits.HDUList([
        fits.PrimaryHDU(np.asarray(dataset["mosaic"].values, np.float32), header),
        fits.ImageHDU(np.asarray(dataset["weight"].values, np.float32), _wcs_only(header),
                      name="WEIGHT"),
        fits.ImageHDU(np.asarray(dataset["coverage"].values, np.int16), _wcs_only(header),
                      name="COVERAGE"),
    ])
    prov = dataset.attrs.get("provenance")
    if prov:
        Provenance.from_dict(prov).attach(hdul)
    if path is not None:
        _write(hdul, path, overwrite=overwrite)
    return hdul


def _wcs_only(header: fits.Header) -> fits.Header:
    return WCS(header).celestial.to_header()


def from_fits(path: str | os.PathLike | fits.HDUList):
    """Read a mosaic written by `to_fits` or ``mosaic(output="....fits")`` back into a Dataset."""
    if isinstance(path, str | os.PathLike):
        if not Path(path).is_file():
            raise VanotebookInputError("path", "an existing mosaic FITS file", str(path))
        with fits.open(path, memmap=False) as hdul:
            return from_fits(hdul)
    hdul = path
    names = [h.name for h in hdul]
    if "WEIGHT" not in names or "COVERAGE" not in names:
        raise VanotebookInputError("path", "a mosaic FITS file with WEIGHT and COVERAGE HDUs",
                                   names)
    header = hdul[0].header.copy()
    for key in ("SIMPLE", "EXTEND"):
        header.remove(key, ignore_missing=True)
    values = [np.asarray(hdul[0].data, np.float32),
              np.asarray(hdul["WEIGHT"].data, np.float32),
              np.asarray(hdul["COVERAGE"].data, np.float32)]
    unit = header.get("BUNIT", "")
    ds = _dataset(np.stack(values), header, {"unit": unit})
    if "PROVENANCE" in names:
        import json

        ds.attrs["provenance"] = {"vanotebook": json.loads(hdul["PROVENANCE"].data["record"][0])}
    return ds

