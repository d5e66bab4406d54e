"""Bring several surveys to the same technical features: one grid, one beam, one unit.

Each survey is mosaicked onto the common grid, converted to Jy/sr with its
own beam, convolved with the Gaussian kernel that turns its beam into the
common one (`Beam.deconvolve`), and converted to the requested unit with the
common beam and the grid's pixel area.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs.utils import wcs_to_celestial_frame

from .._errors import VanotebookInputError, check_choice
from ..provenance import record
from ..units import Beam, convert_brightness, fits_string, parse_unit
from ._core import _digest, mosaic, prepare_images
from ._plan import Grid, optimal_grid, resolve_grid

__all__ = ["beam_kernel", "check_angle", "common_beam", "homogenise"]

ACTIVITY = "vanotebook.mosaic.homogenise"
_JY_SR = u.Jy / u.sr


def _groups(images: Any) -> dict[str, Any]:
    expected = ("a dict {survey: images} or a list of image lists (one list per survey; "
                "for one survey's tiles pass {'name': tiles})")
    if isinstance(images, Mapping):
        groups = dict(images)
    elif isinstance(images, list | tuple) and not isinstance(images, fits.HDUList) and all(
            isinstance(g, list) and not isinstance(g, fits.HDUList) for g in images):
        groups = {f"image{i}": g for i, g in enumerate(images)}
    else:
        raise VanotebookInputError("images", expected, images)
    if not groups:
        raise VanotebookInputError("images", "at least one survey", groups)
    return groups


def rotate_beam(beam: Beam, wcs_from, wcs_to) -> Beam:
    """The beam with its PA measured from ``wcs_to``'s north instead of ``wcs_from``'s."""
    f_from, f_to = wcs_to_celestial_frame(wcs_from), wcs_to_celestial_frame(wcs_to)
    if f_from.is_equivalent_frame(f_to) or beam.major == beam.minor:
        return beam
    lon, lat = wcs_from.wcs.crval
    here = SkyCoord(lon * u.deg, lat * u.deg, frame=f_from)
    north = SkyCoord(lon * u.deg, (lat + 1.0 / 60) * u.deg, frame=f_from)
    theta = here.transform_to(f_to).position_angle(north.transform_to(f_to)).to(u.deg)
    return Beam(beam.major, beam.minor, (beam.pa + theta) % (180 * u.deg))


def common_beam(beams: list[Beam]) -> Beam:
    """The largest beam if every other fits inside it, else the circle of the largest major axis."""
    big = max(beams, key=lambda b: b.sr.to_value(u.sr))
    for b in beams:
        if np.linalg.eigvalsh(big.covariance() - b.covariance()).min() < -1e-12 * np.abs(
                big.covariance()).max():
            major = max(b.major for b in beams) * (1 + 1e-6)
            return Beam.circular(major.to(u.arcsec))
    return big


def beam_kernel(target: Beam, beam: Beam, grid: Grid) -> np.ndarray | None:
    """The normalised pixel kernel that turns ``beam`` into ``target`` on ``grid``.

    None when the two beams are the same (no convolution needed).
    """
    cov = target.covariance() - beam.covariance()
    scale = np.abs(target.covariance()).max()
    if np.abs(cov).max() <= 1e-9 * scale:
        return None
    kbeam = target.deconvolve(beam)
    m = np.linalg.inv(grid.wcs.pixel_scale_matrix)  # (east, north) deg -> pixels
    cpix = m @ kbeam.covariance() @ m.T
    half = math.ceil(4 * math.sqrt(np.linalg.eigvalsh(cpix).max())) + 1
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    inv = np.linalg.inv(cpix)
    k = np.exp(-0.5 * (inv[0, 0] * xx * xx + 2 * inv[0, 1] * xx * yy + inv[1, 1] * yy * yy))
    return k / k.sum()


def convolve_nan(data: np.ndarray, kernel: np.ndarray | None) -> np.ndarray:
    """Convolve with NaN pixels treated as missing (normalised convolution); NaN stays NaN."""
    if kernel is None:
        return data
    from scipy.signal import fftconvolve  # scipy.signal takes ~0.5 s to import

    mask = np.isfinite(data)
    filled = np.where(mask, data, 0.0)
    num = fftconvolve(filled, kernel, mode="same")
    den = fftconvolve(mask.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~mask | (den < 0.5)] = np.nan
    return out


_SURFACE_BRIGHTNESS = (u.Jy / u.sr, u.Jy / u.beam, u.Jy / u.pix)


def _is_brightness(unit) -> bool:
    return unit is not None and any(unit.is_equivalent(b) for b in _SURFACE_BRIGHTNESS)


def _per_beam(unit) -> bool:
    return unit is not None and unit.is_equivalent(u.Jy / u.beam)


def check_angle(argument: str, value: Any) -> u.Quantity:
    """A positive, finite, scalar angle Quantity, else a named error.

    A plain number is refused: ``pixel_scale=4`` could mean arcsec, degrees or pixels.
    """
    ok = (isinstance(value, u.Quantity) and value.isscalar
          and value.unit.physical_type == "angle" and bool(np.isfinite(value.value))
          and value.value > 0)
    if not ok:
        raise VanotebookInputError(argument, "a positive angle Quantity such as 4 * u.arcsec "
                                   "(a plain number is ambiguous: arcsec, degrees or pixels?)",
                                   value)
    return value


def check_progress(progress: Any) -> Any:
    """``progress`` as `mosaic` takes it: a bool or a callable taking the fraction done."""
    if not (isinstance(progress, bool) or callable(progress)):
        raise VanotebookInputError("progress", "True, False or a callable f(fraction)", progress)
    return progress


def _check_output(output, overwrite: bool):
    if output is None:
        return None
    from pathlib import Path

    if not isinstance(output, str | os.PathLike) or not str(output).endswith(".fits"):
        raise VanotebookInputError("output", "a path ending in .fits", output)
    if Path(output).exists() and not overwrite:
        raise VanotebookInputError("output", "a new path (or overwrite=True)", str(output))
    return Path(output)


def _check_options(*, unit, resolution, match_background, method, pixel_scale, progress):
    """Every option checked before any image is read; returns the parsed unit."""
    from ._background import MODELS
    from ._core import METHODS

    if pixel_scale is not None:
        check_angle("pixel_scale", pixel_scale)
    if not (resolution is None or isinstance(resolution, Beam) or resolution == "coarsest"):
        raise VanotebookInputError("resolution", "'coarsest', a Beam or None (each survey's "
                                   "own resolution)", resolution)
    if match_background not in (True, False, None, *MODELS):
        raise VanotebookInputError("match_background", f"True, False or one of {MODELS}",
                                   match_background)
    check_choice("method", method, METHODS)
    check_progress(progress)
    target = parse_unit(unit, "unit")
    if _per_beam(target) and resolution is None:
        raise VanotebookInputError("resolution", f"a common beam ('coarsest' or a Beam) to "
                                   f"express {target}", resolution)
    return target


def _out_unit(name: str, own, target):
    """The unit survey ``name`` (in ``own``) comes out in; a named error when it cannot."""
    argument = f"images[{name!r}]"
    if target is None:
        return own
    if own is None:
        raise VanotebookInputError(argument, f"images with a BUNIT to convert to {target} "
                                   "(or unit=None to keep each survey's own)", "no BUNIT")
    if _is_brightness(target):
        if not _is_brightness(own):
            raise VanotebookInputError(
                argument, f"images in a surface-brightness unit (Jy/beam, MJy/sr, Jy/pix) to "
                f"convert to {target}; pass unit=None to keep each survey's own unit",
                fits_string(own))
        return target
    if not own.is_equivalent(target):
        raise VanotebookInputError(argument, f"images in a unit convertible to {target} "
                                   "(or unit=None to keep each survey's own)", fits_string(own))
    return target


def _record_images(groups: dict[str, Any]) -> dict[str, list[str]] | None:
    """``{survey: [absolute paths]}`` when every survey names files only, else None
    (data in memory: such a product cannot be remade by `vanotebook rerun`)."""
    import glob

    out = {}
    for name, g in groups.items():
        items = [g] if isinstance(g, str | os.PathLike) else g if isinstance(g, list) else None
        if not items or not all(isinstance(i, str | os.PathLike) for i in items):
            return None
        paths = []
        for item in items:
            text = os.fspath(item)
            found = sorted(glob.glob(text)) if any(c in text for c in "*?[") else [text]
            if not found or not all(os.path.isfile(p) for p in found):
                return None
            paths.extend(found)
        out[name] = [os.path.abspath(p) for p in paths]
    return out


def homogenise(
    images: Any,
    *,
    grid: str | Any = "optimal",
    shape: tuple[int, int] | None = None,
    frame: str | None = None,
    pixel_scale: u.Quantity | None = None,
    resolution: str | Beam | None = "coarsest",
    unit: str | u.UnitBase | None = "MJy/sr",
    match_background: bool | str = True,
    method: str = "bilinear",
    client=None,
    device: str = "auto",
    chunks: int | None = None,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool | Callable[[float], None] = False,
):
    """Put several surveys on one grid, at one resolution, in one unit.

    Parameters
    ----------
    images : dict {name: images} or list of image lists
        Each survey's tiles (anything `mosaic` takes). Every survey needs a beam
        (``BMAJ``/``BMIN``) to change resolution or per-beam units.
    grid : "optimal", WCS, Header or Grid
        The common grid; "optimal" holds every image of every survey.
    shape : (ny, nx), optional
        Shape for a WCS ``grid``.
    frame : str, optional
        Frame of the optimal grid.
    pixel_scale : Quantity, optional
        Pixel of the optimal grid, an angle such as ``4 * u.arcsec`` (default: the
        finest input pixel). A plain number is refused (arcsec? degrees? pixels?).
    resolution : "coarsest", Beam or None
        The common beam: the coarsest survey beam (grown to hold every other), or a
        given one; None keeps each survey's own resolution (no beam needed then).
    unit : str, Unit or None
        Common unit: a surface brightness (``MJy/sr``, ``Jy/beam`` of the common
        beam, ``Jy/pix`` of the grid's pixel), or a unit the surveys are in already
        up to a scale (``DN``, ``K``...); None keeps each survey's own (per beam: of
        the common beam; per pixel: of the grid's pixel). Converting a non-flux unit
        (``DN``, ``electron/s``) to a flux is refused.
    match_background, method, client, device, chunks
        As for `mosaic`, applied to each survey.
    output : path, optional
        Also write the set to this ``.fits`` file: one image HDU per survey
        (``EXTNAME`` = survey), then a ``PROVENANCE`` HDU, and the record beside it as
        ``<output>.prov.json`` (`vanotebook rerun` remakes the same bytes from it).
    overwrite : bool
        Replace an existing ``output``.
    progress : bool or callable
        As for `mosaic`: True shows Dask's progress bar (one per survey); a callable
        is called with the fraction done over all surveys (0..1).

    Returns
    -------
    xarray.Dataset
        One variable per survey on dims ``(y, x)``; attrs ``header`` (grid,
        common beam and unit), ``unit``, ``beam``, ``kernels`` and ``provenance``.

    Raises
    ------
    VanotebookInputError
        Before any work, for a bad option (unit, pixel_scale, resolution...), a
        survey without a beam or BUNIT where one is needed, or a unit that cannot be
        converted to ``unit``.
    """
    import xarray as xr

    groups = _groups(images)
    target_unit = _check_options(unit=unit, resolution=resolution,
                                 match_background=match_background, method=method,
                                 pixel_scale=pixel_scale, progress=progress)
    output = _check_output(output, overwrite)
    if frame is not None:
        from ._plan import FRAMES

        check_choice("frame", frame, FRAMES)
    parsed = {name: prepare_images(g, argument=f"images[{name!r}]")
              for name, g in groups.items()}
    out_units = {name: _out_unit(name, ims[0].unit, target_unit)
                 for name, ims in parsed.items()}
    everything = [im for ims in parsed.values() for im in ims]
    try:
        if isinstance(grid, str) and grid == "optimal":
            scale = None if pixel_scale is None else pixel_scale.to_value(u.deg)
            the_grid = optimal_grid(everything, frame=frame, pixel_scale=scale)
        else:
            the_grid = resolve_grid(everything, grid, frame=frame, shape=shape)
    except VanotebookInputError as exc:
        if exc.argument != "wcs":
            raise
        raise VanotebookInputError("grid", exc.expected, exc.got) from exc
    beams: dict[str, Beam | None] = {}
    for name, ims in parsed.items():
        beam = ims[0].beam
        own = ims[0].unit
        needs = resolution is not None or (_per_beam(own) and _is_brightness(out_units[name])
                                           and out_units[name] != own)
        if beam is None and needs:
            raise VanotebookInputError(f"images[{name!r}]", "images with a beam (BMAJ/BMIN) "
                                       "to bring to a common resolution (or resolution=None)"
                                       if resolution is not None else
                                       f"images with a beam (BMAJ/BMIN) to convert {own}",
                                       "no beam")
        beams[name] = None if beam is None else rotate_beam(beam, ims[0].celestial,
                                                            the_grid.wcs)
    if isinstance(resolution, Beam):
        target = resolution
    elif resolution == "coarsest":
        target = common_beam(list(beams.values()))
    else:
        target = None
    kernels_ = {}
    for name in parsed:
        if target is None:
            kernels_[name] = None
            continue
        try:
            kernels_[name] = beam_kernel(target, beams[name], the_grid)
        except VanotebookInputError as exc:
            raise VanotebookInputError("resolution", f"a beam larger than {name}'s "
                                       f"{beams[name]}", str(target)) from exc
    pixel_area = the_grid.pixel_area_sr * u.sr
    recorded = _record_images(groups)
    params = {"images": recorded, "grid": grid if isinstance(grid, str)
              else the_grid.header.tostring(), "shape": None, "frame": frame,
              "pixel_scale": None if pixel_scale is None else
              float(pixel_scale.to_value(u.arcsec)),
              "resolution": None if resolution is None else
              (resolution if isinstance(resolution, str) else str(resolution)),
              "resolution_beam": None if not isinstance(resolution, Beam) else
              [resolution.major.to_value(u.arcsec), resolution.minor.to_value(u.arcsec),
               resolution.pa.to_value(u.deg)],
              "unit": None if target_unit is None else target_unit.to_string(),
              "match_background": match_background, "method": method}
    n = len(parsed)
    data_vars = {}
    with record(ACTIVITY, params) as prov:
        for k, (name, ims) in enumerate(parsed.items()):
            if recorded is not None:
                for path in recorded[name]:
                    prov.add_input(path)
            else:
                for i, im in enumerate(ims):
                    prov.inputs.append({"path": f"images[{name!r}][{i}]",
                                        "sha256": _digest(im)})
            step = progress
            if callable(progress):
                def step(f, k=k):
                    progress(min((k + f) / n, 1.0))
            ds = mosaic(ims, wcs=the_grid, match_background=match_background, method=method,
                        client=client, device=device, chunks=chunks, progress=step)
            own = parse_unit(ds.attrs["unit"] or None, f"images[{name!r}]")
            values = np.asarray(ds["mosaic"].values, dtype=np.float64)
            out_unit = out_units[name]
            if _is_brightness(own):
                values = convert_brightness(values, own, _JY_SR, beam=beams[name],
                                            pixel_area=ims[0].pixel_area)
                values = convolve_nan(values, kernels_[name])
                values = convert_brightness(values, _JY_SR, out_unit,
                                            beam=target or beams[name], pixel_area=pixel_area)
            else:  # DN, K, counts...: smoothed as they are, scaled to an equivalent unit
                values = convolve_nan(values, kernels_[name])
                if out_unit is not None and out_unit != own:
                    values = values * own.to(out_unit)
            data_vars[name] = (("y", "x"), values.astype(np.float32),
                               {"unit": "" if out_unit is None else out_unit.to_string(),
                                "beam_in": str(beams[name])})
            if callable(progress):
                progress((k + 1) / n)
        header = the_grid.header
        units = {v[2]["unit"] for v in data_vars.values()}
        common = units.pop() if len(units) == 1 else None
        if common:
            header["BUNIT"] = fits_string(parse_unit(common))
        if target is not None:
            for key, card in target.header_cards().items():
                header[key] = card
        text = header.tostring()
        for var in data_vars.values():
            var[2]["header"] = text
        out = xr.Dataset(data_vars, attrs={
            "header": text, "unit": common or "", "beam": "" if target is None else str(target),
            "kernels": {name: None if kernels_[name] is None else
                        str(target.deconvolve(beams[name])) for name in parsed}})
        if output is not None:
            _write_set(out, output, prov, overwrite=overwrite)
    if output is not None:
        prov.add_output(output)
        prov.write_sidecar(output)
    out.attrs["provenance"] = prov.to_dict()
    return out


def _write_set(dataset, path, prov, *, overwrite: bool) -> None:
    """The homogenised set as FITS: an empty primary (grid, beam, PROV cards), one image
    HDU per survey, the PROVENANCE HDU; written atomically."""
    from ..io import write_fits

    header = fits.Header.fromstring(dataset.attrs["header"])
    hdus = [fits.PrimaryHDU(header=header.copy())]
    for name, var in dataset.data_vars.items():
        h = header.copy()
        h.remove("BUNIT", ignore_missing=True)
        if var.attrs.get("unit"):
            h["BUNIT"] = fits_string(parse_unit(var.attrs["unit"]))
        h["EXTNAME"] = str(name)
        hdus.append(fits.ImageHDU(np.asarray(var.values, np.float32), h))
    hdul = fits.HDUList(hdus)
    prov.attach(hdul)
    write_fits(hdul, path, overwrite=overwrite)


def header_of(dataset) -> fits.Header:
    """The FITS header of a homogenised (or mosaic) Dataset."""
    return fits.Header.fromstring(dataset.attrs["header"])
