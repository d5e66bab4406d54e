"""Bring several surveys to the same technical features: one grid, one beam, one unit.

Each survey is mosaicked onto the common grid, converted to Jy/sr with its
own beam, convolved with the Gaussian kernel that turns its beam into the
common one (`Beam.deconvolve`), and converted to the requested unit with the
common beam and the grid's pixel area.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs.utils import wcs_to_celestial_frame

from .._errors import VanotebookInputError
from ..provenance import record
from ..units import Beam, convert_brightness
from ._core import _digest, mosaic, prepare_images
from ._plan import Grid, optimal_grid, resolve_grid

__all__ = ["beam_kernel", "common_beam", "homogenise"]

ACTIVITY = "vanotebook.mosaic.homogenise"
_JY_SR = u.Jy / u.sr


def _groups(images: Any) -> dict[str, Any]:
    if isinstance(images, Mapping):
        groups = dict(images)
    elif isinstance(images, list | tuple):
        groups = {f"image{i}": g for i, g in enumerate(images)}
    else:
        raise VanotebookInputError("images", "a dict {survey: images} or a list of image lists",
                                   images)
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


def homogenise(
    images: Any,
    *,
    grid: str | Any = "optimal",
    shape: tuple[int, int] | None = None,
    frame: str | None = None,
    pixel_scale: u.Quantity | None = None,
    resolution: str | Beam = "coarsest",
    unit: str | u.UnitBase = "MJy/sr",
    match_background: bool | str = True,
    method: str = "bilinear",
    client=None,
    device: str = "auto",
    chunks: int | None = None,
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
        Pixel of the optimal grid (default: the finest input pixel).
    resolution : "coarsest" or Beam
        The common beam: the coarsest survey beam (grown to hold every other), or a given one.
    unit : str or Unit
        Common unit: a surface brightness (``MJy/sr``, ``Jy/beam`` of the common
        beam, ``Jy/pix`` of the grid's pixel).
    match_background, method, client, device, chunks
        As for `mosaic`, applied to each survey.

    Returns
    -------
    xarray.Dataset
        One variable per survey on dims ``(y, x)``; attrs ``header`` (grid,
        common beam and unit), ``unit``, ``beam``, ``kernels`` and ``provenance``.
    """
    import xarray as xr

    groups = _groups(images)
    parsed = {name: prepare_images(g, argument=f"images[{name!r}]")
              for name, g in groups.items()}
    target_unit = u.Unit(unit)
    everything = [im for ims in parsed.values() for im in ims]
    if isinstance(grid, str) and grid == "optimal":
        scale = None if pixel_scale is None else pixel_scale.to_value(u.deg)
        the_grid = optimal_grid(everything, frame=frame, pixel_scale=scale)
    else:
        the_grid = resolve_grid(everything, grid, frame=frame, shape=shape)
    beams = {}
    for name, ims in parsed.items():
        beam = ims[0].beam
        if beam is None:
            raise VanotebookInputError(f"images[{name!r}]", "images with a beam (BMAJ/BMIN) "
                                       "to bring to a common resolution", "no beam")
        beams[name] = rotate_beam(beam, ims[0].celestial, the_grid.wcs)
    if isinstance(resolution, Beam):
        target = resolution
    elif resolution == "coarsest":
        target = common_beam(list(beams.values()))
    else:
        raise VanotebookInputError("resolution", "'coarsest' or a Beam", resolution)
    pixel_area = the_grid.pixel_area_sr * u.sr
    params = {"surveys": list(parsed), "grid": the_grid.header.tostring(),
              "resolution": str(target), "unit": target_unit.to_string(),
              "match_background": match_background, "method": method}
    data_vars = {}
    kernels = {}
    with record(ACTIVITY, params) as prov:
        for name, ims in parsed.items():
            for i, im in enumerate(ims):
                prov.inputs.append({"path": f"images[{name!r}][{i}]", "sha256": _digest(im)})
            ds = mosaic(ims, wcs=the_grid, match_background=match_background, method=method,
                        client=client, device=device, chunks=chunks)
            own_unit = u.Unit(ds.attrs["unit"]) if ds.attrs["unit"] else None
            if own_unit is None:
                raise VanotebookInputError(f"images[{name!r}]", "images with a BUNIT", None)
            values = np.asarray(ds["mosaic"].values, dtype=np.float64)
            values = convert_brightness(values, own_unit, _JY_SR, beam=beams[name],
                                        pixel_area=ims[0].pixel_area)
            try:
                kernel = beam_kernel(target, beams[name], the_grid)
            except VanotebookInputError as exc:
                raise VanotebookInputError("resolution", f"a beam larger than {name}'s "
                                           f"{beams[name]}", str(target)) from exc
            kernels[name] = None if kernel is None else str(target.deconvolve(beams[name]))
            values = convolve_nan(values, kernel)
            values = convert_brightness(values, _JY_SR, target_unit, beam=target,
                                        pixel_area=pixel_area)
            data_vars[name] = (("y", "x"), values.astype(np.float32),
                               {"unit": target_unit.to_string(), "beam_in": str(beams[name])})
    header = the_grid.header
    header["BUNIT"] = target_unit.to_string("fits")
    for key, card in target.header_cards().items():
        header[key] = card
    text = header.tostring()
    for var in data_vars.values():
        var[2]["header"] = text
    out = xr.Dataset(data_vars, attrs={"header": text, "unit": target_unit.to_string(),
                                       "beam": str(target), "kernels": kernels})
    out.attrs["provenance"] = prov.to_dict()
    return out


def header_of(dataset) -> fits.Header:
    """The FITS header of a homogenised (or mosaic) Dataset."""
    return fits.Header.fromstring(dataset.attrs["header"])
