"""`moments`, `channel_maps`, `pv_slice`, `spectrum`, `find_lines`: the cube service's API.

Each parses its cube once (`parse_cube`), checks every argument before any
work, maps an array-API kernel over blocks on Dask (`_dask`), and returns an
xarray object or an astropy table with its unit, WCS header and provenance.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits

from .._errors import VanotebookInputError, check_choice, check_positive
from ..cluster import get_client
from ..provenance import Provenance, software_versions
from ..units import fits_string
from . import _kernels as K
from ._dask import BLOCK_BYTES, compute, spatial_blocks
from ._geometry import line_weights, polygon_weights, sample_edges
from ._spectral import Cube, parse_cube

__all__ = ["ACTIVITY", "channel_maps", "find_lines", "from_fits", "moments", "pv_slice",
           "spectral_copy", "spectrum", "to_fits"]

ACTIVITY = "vanotebook.cube.moments"
KMS = u.km / u.s
AUTO_SIGMA = 3.0
_VELOCITY_NAMES = {"moment1", "velocity_of_peak", "velocity_of_min", "linewidth_sigma",
                   "linewidth_fwhm"}
_CASA = {v: k for k, v in K.MOMENTS.items() if v is not None}


# ----------------------------------------------------------------------------- helpers
@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    # importlib.metadata takes ~0.1 s for the seven packages: once per process
    return tuple(software_versions().items())


@contextlib.contextmanager
def record(activity: str, parameters: dict[str, Any]) -> Iterator[Provenance]:
    """`vanotebook.provenance.record` with the software versions read once per process."""
    prov = Provenance(activity=activity, parameters=dict(parameters),
                      versions=dict(_versions()))
    try:
        json.dumps(prov.parameters)
    except (TypeError, ValueError) as exc:
        raise VanotebookInputError("parameters", "JSON-serialisable values",
                                   prov.parameters) from exc
    yield prov
    prov.finish()


@contextlib.contextmanager
def _digesting(prov: Provenance, cube: Cube, argument: str = "cube") -> Iterator[None]:
    """Hash the input in a thread while the work runs (hashlib releases the GIL)."""
    thread = threading.Thread(target=_digest_input, args=(prov, cube, argument))
    thread.start()
    try:
        yield
    finally:
        thread.join()


def _orders(orders: Any) -> tuple[str, ...]:
    if isinstance(orders, int | str):
        orders = (orders,)
    names = []
    for o in orders:
        if isinstance(o, bool):
            raise VanotebookInputError("orders", "moment numbers 0, 1, 2 (CASA -1..11) or "
                                       f"names in {sorted(K.MOMENTS)}", orders)
        if isinstance(o, int | np.integer):
            name = _CASA.get(int(o))
        else:
            name = o if o in K.MOMENTS else None
        if name is None:
            raise VanotebookInputError("orders", "moment numbers 0, 1, 2 (CASA -1..11 but 4) or "
                                       f"names in {sorted(K.MOMENTS)}", o)
        if name not in names:
            names.append(name)
    if not names:
        raise VanotebookInputError("orders", "at least one moment", orders)
    return tuple(names)


def _map_unit(name: str, unit: u.UnitBase | None) -> u.UnitBase | None:
    if name in _VELOCITY_NAMES:
        return KMS
    if name == "moment2":
        return KMS**2
    if name == "moment0":
        return KMS if unit is None else unit * KMS
    return unit


def _mask_param(mask: Any, cube: Cube):
    """``(threshold, auto_sigma, mask array, JSON form)`` of the ``mask`` argument."""
    if mask is None:
        return None, None, None, None
    if isinstance(mask, str):
        check_choice("mask", mask, ("auto",))
        return None, AUTO_SIGMA, None, "auto"
    if isinstance(mask, u.Quantity):
        if mask.size != 1:
            raise VanotebookInputError("mask", "a threshold in the cube's unit", mask)
        if cube.unit is None:
            value = float(mask.value)
        else:
            try:
                value = float(mask.to_value(cube.unit))
            except u.UnitsError as exc:
                raise VanotebookInputError("mask", f"a threshold in {cube.unit}", mask) from exc
        return value, None, None, value
    if isinstance(mask, int | float | np.floating | np.integer) and not isinstance(mask, bool):
        return float(mask), None, None, float(mask)
    shape = getattr(mask, "shape", None)
    if shape is not None and tuple(shape) == cube.shape and \
            np.dtype(getattr(mask, "dtype", bool)) == np.bool_:
        return None, None, mask, "array"
    raise VanotebookInputError(
        "mask", f"None, a threshold (number or Quantity), 'auto', or a boolean array of the "
        f"cube's shape {cube.shape}", mask)


def _digest_input(prov: Provenance, cube: Cube, argument: str = "cube") -> None:
    if cube.path is not None:
        prov.add_input(cube.path)
        return
    data = cube.data
    if hasattr(data, "compute"):  # a lazy cube: its graph's name stands for its pixels
        h = hashlib.sha256(str(getattr(data, "name", "")).encode())
    else:
        h = hashlib.sha256(np.ascontiguousarray(np.asarray(data)).view(np.uint8))
    h.update(cube.wcs.to_header_string(relax=True).encode())
    prov.inputs.append({"path": argument, "sha256": h.hexdigest()})


def _celestial_header(cube: Cube) -> fits.Header:
    header = cube.celestial.to_header(relax=True)
    for key in ("OBJECT", "TELESCOP", "LINE", "SPECSYS", "EQUINOX", "RADESYS"):
        if key in cube.header and key not in header:
            header[key] = cube.header[key]
    if cube.beam is not None:
        for key, card in cube.beam.header_cards().items():
            header[key] = card
    return header


def _prov_cards(header: fits.Header, prov: Provenance) -> fits.Header:
    for key, value, comment in prov.header_cards():
        header[key] = (value, comment)
    return header


def _params(cube_arg: Any, cube: Cube, **extra) -> dict[str, Any]:
    return {"cube": cube.path, "convention": cube.convention,
            "rest_hz": None if cube.rest is None else float(cube.rest.to_value(u.Hz)),
            **extra}


def _velocity_json(cube: Cube, sl: slice) -> list[float]:
    return [float(cube.velocity[sl].min()), float(cube.velocity[sl].max())]


# ----------------------------------------------------------------------------- moments
def moments(
    cube: Any,
    orders: Any = (0, 1, 2),
    *,
    velocity: tuple[u.Quantity, u.Quantity] | None = None,
    mask: Any = None,
    convention: str | None = None,
    rest: u.Quantity | None = None,
    client=None,
    chunks: int | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
    progress: Any = None,
):
    """Moment maps of a spectral cube, block by block (out of core on Dask).

    Parameters
    ----------
    cube
        A 3-D cube (or 4-D with a degenerate Stokes axis): FITS path (read
        lazily), HDU, ``(array, WCS)``, ``(array, Header)``, a DataArray with
        its header, or a `mosaic_cube` Dataset; see `parse_cube`.
    orders : int, str or sequence
        Moments 0, 1, 2 (spectral-cube's ``moment(order=k)``: integrated
        intensity, intensity-weighted velocity, intensity-weighted velocity
        variance), CASA numbers -1..11 (but 4) or names: ``mean``, ``median``,
        ``std``, ``rms``, ``abs_mean_deviation``, ``peak``, ``velocity_of_peak``,
        ``min``, ``velocity_of_min``, ``linewidth_sigma``, ``linewidth_fwhm``.
    velocity : (vmin, vmax) Quantity, optional
        Use the channels whose centres lie in the range (inclusive).
    mask : None, float, Quantity, "auto" or bool array
        Voxels that count: all finite ones; those above a threshold (in the
        cube's unit); "auto": those above 3 sigma of their spectrum's MAD noise
        and their neighbouring channels; or a boolean array of the cube's shape.
    convention : {"radio", "optical", "relativistic"}, optional
        Doppler convention of the velocities (see `parse_cube`).
    rest : Quantity, optional
        Rest frequency, overriding the header's.
    client : distributed.Client, optional
        Where to run; by default the current client, else threads here.
    chunks : int, optional
        Side of the square sky patches of each block (every block holds all
        channels); by default whole rows, about 16 MiB per block.
    output : path, optional
        Also write the maps to this FITS file (one HDU per map, plus PROVENANCE).
    overwrite : bool
        Replace an existing ``output``.
    progress : bool or callable, optional
        A callable is called with the fraction of blocks done (0 to 1) as
        each finishes; True prints it to stderr.

    Returns
    -------
    xarray.Dataset
        One ``(y, x)`` variable per map, each with ``attrs["unit"]`` (K km/s,
        km/s, km2/s2...) and ``attrs["header"]`` (the celestial WCS, BUNIT and
        the PROV* cards); attrs ``header``, ``velocity`` (the range used),
        ``convention``, ``provenance``.

    Raises
    ------
    VanotebookInputError
        A 2-D image, no spectral axis, frequency without rest frequency, a
        velocity range outside the cube, or a bad option, before any work.
    """
    names = _orders(orders)
    parsed = parse_cube(cube, convention=convention, rest=rest)
    sl = parsed.channels(velocity)
    threshold, auto_sigma, mask_array, mask_json = _mask_param(mask, parsed)
    if chunks is not None:
        check_positive("chunks", chunks, integer=True)
    if output is not None and Path(output).exists() and not overwrite:
        raise VanotebookInputError("output", "a path that does not exist (or overwrite=True)",
                                   str(output))
    tell = _progress(progress)
    client = get_client(client)
    params = _params(cube, parsed, orders=list(names), velocity=_velocity_json(parsed, sl),
                     mask=mask_json, chunks=chunks)
    with record(ACTIVITY, params) as prov, _digesting(prov, parsed):
        values = _moment_values(parsed, sl, names, threshold, auto_sigma, mask_array,
                                client, chunks, tell)
    ds = _moment_dataset(parsed, sl, names, values, prov)
    if output is not None:
        to_fits(ds, output, overwrite=overwrite)
        prov.add_output(output)
        ds.attrs["provenance"] = prov.to_dict()
    return ds


def _progress(progress: Any):
    """``f(fraction)`` or None for a ``progress`` argument (True: to stderr)."""
    if progress is None or progress is False:
        return None
    if progress is True:
        import sys

        return lambda f: print(f"moments: {100 * f:3.0f}%", file=sys.stderr, flush=True)
    if callable(progress):
        return progress
    raise VanotebookInputError("progress", "True, False or a callable taking the fraction "
                               "done", progress)


def _moment_values(cube: Cube, sl: slice, names, threshold, auto_sigma, mask_array, client,
                   chunks, progress=None) -> np.ndarray:
    import dask.array as da

    data = cube.data[sl]
    blocks = spatial_blocks(data, chunks)
    v = np.ascontiguousarray(cube.velocity[sl], dtype=np.float64)
    dv = np.ascontiguousarray(cube.width[sl], dtype=np.float64)
    k = len(names)
    out_chunks = ((k,), blocks.chunks[1], blocks.chunks[2])
    kwargs = {"names": names, "threshold": threshold, "auto_sigma": auto_sigma}
    if mask_array is not None:
        m = mask_array[sl]
        m = da.from_array(m, chunks=blocks.chunks) if not isinstance(m, da.Array) else \
            m.rechunk(blocks.chunks)
        result = da.map_blocks(_moment_block, blocks, m, v=v, dv=dv, chunks=out_chunks,
                               dtype=np.float64, meta=np.empty((0, 0, 0)), **kwargs)
    else:
        result = da.map_blocks(_moment_block, blocks, v=v, dv=dv, chunks=out_chunks,
                               dtype=np.float64, meta=np.empty((0, 0, 0)), **kwargs)
    return compute(result, client, progress)


def _moment_block(block, mask=None, *, v, dv, names, threshold, auto_sigma):
    from array_api_compat import array_namespace

    from ._fused import available, fused_sums

    if available(block, names, mask, auto_sigma):
        _, ny, nx = block.shape
        sums, count = fused_sums(block, v - v[0], dv, threshold)
        return K.moments_from_sums(sums, count, float(v[0]), names, (ny, nx))
    xp = array_namespace(block)
    return K.moment_maps(block, xp.asarray(v), xp.asarray(dv), names, threshold=threshold,
                         auto_sigma=auto_sigma, mask=mask)


def _moment_dataset(cube: Cube, sl: slice, names, values: np.ndarray, prov: Provenance):
    import xarray as xr

    base = _prov_cards(_celestial_header(cube), prov)
    vrange = _velocity_json(cube, sl)
    data_vars = {}
    for i, name in enumerate(names):
        unit = _map_unit(name, cube.unit)
        header = base.copy()
        if unit is not None:
            header["BUNIT"] = fits_string(unit)
        header["MOMENT"] = (name, "vanotebook.cube moment map")
        if K.MOMENTS[name] is not None:
            header["CASAMOM"] = (K.MOMENTS[name], "CASA moments= number")
        header["VMIN"] = (vrange[0], "[km/s] lowest channel velocity used")
        header["VMAX"] = (vrange[1], "[km/s] highest channel velocity used")
        header["VELCONV"] = (cube.convention, "Doppler convention of the velocities")
        data_vars[name] = (("y", "x"), values[i],
                           {"unit": "" if unit is None else unit.to_string(),
                            "header": header.tostring()})
    attrs = {"header": base.tostring(), "velocity": vrange, "convention": cube.convention,
             "unit": "" if cube.unit is None else cube.unit.to_string(),
             "provenance": prov.to_dict()}
    return xr.Dataset(data_vars, attrs=attrs)


def to_fits(ds: Any, path: str | Path | None = None, *, overwrite: bool = False
            ) -> fits.HDUList:
    """A moments or channel-maps Dataset as FITS: one HDU per map, then ``PROVENANCE``.

    Written atomically to ``path`` when given; the HDUList is returned either way.
    """
    from ..io import write_fits

    if not hasattr(ds, "data_vars") or "provenance" not in ds.attrs:
        raise VanotebookInputError("ds", "a Dataset from vanotebook.cube.moments", ds)
    hdus = []
    for i, name in enumerate(ds.data_vars):
        var = ds[name]
        header = fits.Header.fromstring(var.attrs["header"])
        data = np.asarray(var.values, dtype=np.float32)
        hdu = fits.PrimaryHDU(data, header) if i == 0 else fits.ImageHDU(data, header,
                                                                         name=name.upper())
        if i == 0:
            hdu.header["EXTNAME"] = name.upper()
        hdus.append(hdu)
    hdul = fits.HDUList(hdus)
    Provenance.from_dict(ds.attrs["provenance"]).attach(hdul)
    if path is not None:
        write_fits(hdul, path, overwrite=overwrite)
    return hdul


def from_fits(path: str | Path):
    """Read a moments FITS file written by `to_fits` back into a Dataset."""
    import xarray as xr

    data_vars = {}
    with fits.open(path) as hdul:
        prov = None
        if "PROVENANCE" in hdul:  # the FITS form names inputs by sha256 only
            rec = Provenance.read(path)
            prov = {"activity": rec.activity, "parameters": rec.parameters,
                    "inputs": rec.inputs, "versions": rec.versions}
        for hdu in hdul:
            if not hdu.is_image or hdu.data is None:
                continue
            name = hdu.header.get("MOMENT", hdu.name.lower())
            data_vars[name] = (("y", "x"), np.asarray(hdu.data, np.float64),
                               {"unit": hdu.header.get("BUNIT", ""),
                                "header": hdu.header.tostring()})
    return xr.Dataset(data_vars, attrs={"provenance": prov})


# ----------------------------------------------------------------------------- channel maps
def channel_maps(cube: Any, n: int | None = None, *, width: u.Quantity | None = None,
                 velocity: tuple[u.Quantity, u.Quantity] | None = None,
                 convention: str | None = None, rest: u.Quantity | None = None,
                 client=None, chunks: int | None = None):
    """Integrated-intensity maps of consecutive channel ranges.

    Parameters
    ----------
    cube
        As in `moments`.
    n : int, optional
        Number of maps, the channels in ``velocity`` split as evenly as possible
        (default 9, or fewer when there are fewer channels).
    width : Quantity, optional
        Velocity width of each map instead of ``n`` (rounded to whole channels).
    velocity, convention, rest, client, chunks
        As in `moments`.

    Returns
    -------
    xarray.Dataset
        ``channel_map`` ``(v, y, x)`` in the cube's unit times km/s, with
        coordinates ``velocity`` (width-weighted centre of each range) and
        ``vmin``/``vmax``; attrs ``header`` (celestial), ``unit``, ``provenance``.
    """
    import dask.array as da
    import xarray as xr

    parsed = parse_cube(cube, convention=convention, rest=rest)
    sl = parsed.channels(velocity)
    nchan = sl.stop - sl.start
    if n is not None and width is not None:
        raise VanotebookInputError("width", "either n or width, not both", width)
    if width is not None:
        try:
            w = float(u.Quantity(width).to_value(KMS))
        except (TypeError, u.UnitsError) as exc:
            raise VanotebookInputError("width", "a velocity Quantity", width) from exc
        per = max(1, round(w / float(np.median(parsed.width[sl]))))
        starts = list(range(0, nchan, per))
        stops = [min(s + per, nchan) for s in starts]
    else:
        n = min(9, nchan) if n is None else check_positive("n", n, integer=True)
        if n > nchan:
            raise VanotebookInputError("n", f"at most {nchan} maps (the channels in range)", n)
        groups = np.array_split(np.arange(nchan), n)
        starts = [int(g[0]) for g in groups]
        stops = [int(g[-1]) + 1 for g in groups]
    client = get_client(client)
    params = _params(cube, parsed, velocity=_velocity_json(parsed, sl), starts=starts,
                     stops=stops, chunks=chunks)
    with record("vanotebook.cube.channel_maps", params) as prov:
        _digest_input(prov, parsed)
        blocks = spatial_blocks(parsed.data[sl], chunks)
        dv = np.ascontiguousarray(parsed.width[sl], np.float64)
        result = da.map_blocks(_binned_block, blocks, dv=dv, starts=tuple(starts),
                               stops=tuple(stops),
                               chunks=((len(starts),), blocks.chunks[1], blocks.chunks[2]),
                               dtype=np.float64, meta=np.empty((0, 0, 0)))
        values = compute(result, client)
    v, dv = parsed.velocity[sl], parsed.width[sl]
    centres = [float(np.sum(v[a:b] * dv[a:b]) / np.sum(dv[a:b])) for a, b in
               zip(starts, stops, strict=True)]
    unit = _map_unit("moment0", parsed.unit)
    header = _prov_cards(_celestial_header(parsed), prov)
    header["BUNIT"] = fits_string(unit)
    return xr.Dataset(
        {"channel_map": (("v", "y", "x"), values, {"unit": unit.to_string()})},
        coords={"velocity": ("v", centres, {"unit": "km/s", "convention": parsed.convention}),
                "vmin": ("v", [float(min(v[a], v[b - 1])) for a, b in zip(starts, stops,
                                                                           strict=True)]),
                "vmax": ("v", [float(max(v[a], v[b - 1])) for a, b in zip(starts, stops,
                                                                           strict=True)])},
        attrs={"header": header.tostring(), "unit": unit.to_string(),
               "provenance": prov.to_dict()})


def _binned_block(block, *, dv, starts, stops):
    from array_api_compat import array_namespace

    return K.binned_sum(block, array_namespace(block).asarray(dv), starts, stops)


# ----------------------------------------------------------------------------- PV slices
def _path_pixels(path: Any, cube: Cube) -> tuple[np.ndarray, np.ndarray]:
    from astropy.coordinates import SkyCoord

    if isinstance(path, SkyCoord):
        if path.size < 2:
            raise VanotebookInputError("path", "a SkyCoord polyline of at least 2 points", path)
        x, y = cube.celestial.world_to_pixel(path)
        x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    else:
        try:
            xy = np.asarray(path, dtype=float)
        except (TypeError, ValueError) as exc:
            raise VanotebookInputError("path", "pixel vertices [(x0, y0), (x1, y1), ...] or a "
                                       "SkyCoord polyline", path) from exc
        if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] < 2:
            raise VanotebookInputError("path", "pixel vertices [(x0, y0), (x1, y1), ...] or a "
                                       "SkyCoord polyline", path)
        x, y = xy[:, 0], xy[:, 1]
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise VanotebookInputError("path", "vertices that fall on the cube's sky grid", path)
    return x, y


def _pixel_scale_deg(cube: Cube) -> float:
    from astropy.wcs.utils import proj_plane_pixel_scales

    sx, sy = proj_plane_pixel_scales(cube.celestial)
    return float(np.sqrt(sx * sy))


def _pixels(value: Any, scale_deg: float, argument: str) -> float:
    if isinstance(value, u.Quantity):
        try:
            return check_positive(argument, float(value.to_value(u.deg)) / scale_deg)
        except u.UnitsError as exc:
            raise VanotebookInputError(argument, "pixels or an angle Quantity", value) from exc
    return float(check_positive(argument, value))


def pv_slice(cube: Any, path: Any, *, width: Any = None, spacing: Any = 1.0, order: int = 3,
             velocity: tuple[u.Quantity, u.Quantity] | None = None,
             convention: str | None = None, rest: u.Quantity | None = None, client=None):
    """A position-velocity slice along a polyline, as pvextractor's ``extract_pv_slice``.

    Parameters
    ----------
    cube
        As in `moments`.
    path : (N, 2) pixel vertices or SkyCoord
        The polyline, in 0-based pixel ``(x, y)`` or as sky positions.
    width : float or angle Quantity, optional
        Width of the slice; each step averages the pixels of its rectangle,
        weighted by the area they share with it. None: sample the line itself.
    spacing : float or angle Quantity
        Step along the path (pixels by default).
    order : {0, 1, 3}
        Interpolation along a line without width: nearest, bilinear or cubic
        spline (as ``scipy.ndimage.map_coordinates``).
    velocity, convention, rest, client
        As in `moments`.

    Returns
    -------
    xarray.DataArray
        ``(v, offset)``: coordinates ``velocity`` (km/s) and ``offset`` (deg),
        attrs ``header`` (axis 1 OFFSET in deg, axis 2 the velocity), ``unit``,
        ``provenance``, ``path`` (the pixel vertices).
    """
    import xarray as xr

    parsed = parse_cube(cube, convention=convention, rest=rest)
    sl = parsed.channels(velocity)
    check_choice("order", order, (0, 1, 3))
    scale = _pixel_scale_deg(parsed)
    x, y = _path_pixels(path, parsed)
    step = _pixels(spacing, scale, "spacing")
    w = None if width is None else _pixels(width, scale, "width")
    edges = sample_edges(x, y, step)
    if edges is None:
        raise VanotebookInputError("path", f"a path longer than the spacing ({step:g} px)",
                                   f"a path {np.sum(np.hypot(np.diff(x), np.diff(y))):.3g} "
                                   "px long")
    _, ny, nx = parsed.shape
    if w is None:
        _, xs, ys, _, _ = edges
        xs, ys = 0.5 * (xs[:-1] + xs[1:]), 0.5 * (ys[:-1] + ys[1:])
    client = get_client(client)
    params = _params(cube, parsed, velocity=_velocity_json(parsed, sl),
                     path=np.column_stack([x, y]).tolist(), width_px=w, spacing_px=step,
                     order=order)
    with record("vanotebook.cube.pv_slice", params) as prov, _digesting(prov, parsed):
        data = parsed.data[sl]
        if w is None and order == 3:
            values = _spline_pv(data, xs, ys, client)
        else:
            if w is None:
                index, weight = line_weights(xs, ys, (ny, nx), order)
            else:
                index, weight = polygon_weights(x, y, step, w, (ny, nx))
            values = _gather_pv(data, index, weight, w is None and order == 1, client)
            if w is None and order == 1:  # map_coordinates' cval outside the plane
                out = (xs < 0) | (ys < 0) | (xs > nx - 1) | (ys > ny - 1)
                values[:, out] = np.nan
    v = parsed.velocity[sl]
    n_off = values.shape[1]
    offset = np.arange(n_off) * step * scale
    header = fits.Header()
    header["CTYPE1"], header["CUNIT1"] = "OFFSET", "deg"
    header["CRPIX1"], header["CRVAL1"], header["CDELT1"] = 1.0, 0.0, step * scale
    spec = parsed.spectral_header(sl)
    for key, value in spec.items():
        header[f"{key}2"] = value
    if parsed.rest is not None:
        header["RESTFRQ"] = float(parsed.rest.to_value(u.Hz))
    if parsed.unit is not None:
        header["BUNIT"] = fits_string(parsed.unit)
    _prov_cards(header, prov)
    return xr.DataArray(
        values, dims=("v", "offset"),
        coords={"velocity": ("v", v, {"unit": "km/s", "convention": parsed.convention}),
                "offset": ("offset", offset, {"unit": "deg"})},
        attrs={"header": header.tostring(), "unit": "" if parsed.unit is None else
               parsed.unit.to_string(), "provenance": prov.to_dict(),
               "path": np.column_stack([x, y]).tolist()}, name="pv")


def _bbox(index: np.ndarray, weight: np.ndarray, nx: int):
    used = index[(weight > 0) & (index >= 0)]
    if used.size == 0:
        return None
    ys, xs = used // nx, used % nx
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def _gather_pv(data, index: np.ndarray, weight: np.ndarray, interpolate: bool, client):
    import dask.array as da

    nv, _, nx = (int(n) for n in data.shape)
    box = _bbox(index, weight, nx)
    if box is None:
        return np.full((nv, index.shape[0]), np.nan)
    y0, y1, x0, x1 = box
    bx = x1 - x0
    npix = (y1 - y0) * bx
    local = np.where(index >= 0, (index // nx - y0) * bx + (index % nx - x0), npix)
    local = np.where((local >= 0) & (local <= npix), local, npix)
    sub = data[:, y0:y1, x0:x1]
    itemsize = np.dtype(getattr(data, "dtype", np.float32)).itemsize
    per = max(1, min(nv, BLOCK_BYTES // max(npix * itemsize, 1)))
    blocks = spatial_blocks(sub, chunks=None, spectral=per).rechunk((per, y1 - y0, bx))
    out = da.map_blocks(_gather_block, blocks, index=local, weight=weight,
                        interpolate=interpolate,
                        chunks=(blocks.chunks[0], (index.shape[0],)), drop_axis=2,
                        dtype=np.float64, meta=np.empty((0, 0)))
    return compute(out, client)


def _gather_block(block, *, index, weight, interpolate):
    from array_api_compat import array_namespace

    xp = array_namespace(block)
    nv = block.shape[0]
    flat = xp.reshape(block, (nv, -1))
    pad = xp.full((nv, 1), float("nan"), dtype=flat.dtype)
    flat = xp.concat([flat, pad], axis=1)
    return K.pv_gather(flat, xp.asarray(index), xp.asarray(weight, dtype=xp.float64),
                       interpolate=interpolate)


def _spline_pv(data, xs: np.ndarray, ys: np.ndarray, client):
    """Cubic-spline sampling of each plane (the CPU/CuPy ndimage shim; pvextractor's rule)."""
    import dask.array as da

    nv, ny, nx = (int(n) for n in data.shape)
    itemsize = np.dtype(getattr(data, "dtype", np.float32)).itemsize
    per = max(1, min(nv, BLOCK_BYTES // max(ny * nx * itemsize, 1)))
    blocks = spatial_blocks(data, chunks=None, spectral=per).rechunk((per, ny, nx))
    out = da.map_blocks(_spline_block, blocks, xs=xs, ys=ys,
                        chunks=(blocks.chunks[0], (xs.size,)), drop_axis=2,
                        dtype=np.float64, meta=np.empty((0, 0)))
    return compute(out, client)


def _ndimage(block):
    if type(block).__module__.startswith("cupy"):
        import cupyx.scipy.ndimage as nd

        return nd
    import scipy.ndimage as nd

    return nd


def _spline_block(block, *, xs, ys):
    nd = _ndimage(block)
    xp = np if not type(block).__module__.startswith("cupy") else __import__("cupy")
    nz = block.shape[0]
    zi = np.outer(np.arange(nz), np.ones(xs.size))
    yi = np.outer(np.ones(nz), ys)
    xi = np.outer(np.ones(nz), xs)
    coords = xp.asarray(np.stack([zi, yi, xi]))
    block = xp.asarray(block, dtype=xp.float64)
    bad = xp.isnan(block)
    if bool(bad.any()):
        out = nd.map_coordinates(xp.nan_to_num(block), coords, order=3, cval=np.nan)
        slice_bad = nd.map_coordinates(bad.astype(int), coords, order=3)
        out[xp.nonzero(slice_bad)] = np.nan
        return out
    return nd.map_coordinates(block, coords, order=3, cval=np.nan)


# ----------------------------------------------------------------------------- spectra
def _region_mask(cube: Cube, region: Any) -> np.ndarray:
    from astropy.coordinates import SkyCoord

    from ..archive import parse_region

    parsed = parse_region(region, argument="region")
    _, ny, nx = cube.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    world = cube.celestial.pixel_to_world(xx.ravel(), yy.ravel())
    icrs = world.icrs if isinstance(world, SkyCoord) else world
    inside = np.asarray(parsed.contains(icrs.ra.deg, icrs.dec.deg), bool).reshape(ny, nx)
    if not inside.any():
        raise VanotebookInputError("region", "a region holding pixel centres of the cube",
                                   region)
    return inside


def channel_noise(cube: Cube, sl: slice | None = None, client=None,
                  max_samples: int = 65_536) -> np.ndarray:
    """Robust noise of every channel: 1.4826 x MAD over a regular sample of its pixels."""
    sl = sl or slice(0, cube.shape[0])
    _, ny, nx = cube.shape
    stride = max(1, int(np.ceil(np.sqrt(ny * nx / max_samples))))
    sample = cube.data[sl, ::stride, ::stride]
    if hasattr(sample, "compute"):
        sample = compute(sample, client)
    sample = np.asarray(sample, np.float64)
    flat = sample.reshape(sample.shape[0], -1).T  # (npix, v): the noise of each channel
    return np.asarray(K.mad_noise(flat))


def spectrum(cube: Any, region: Any, *, how: str = "mean",
             velocity: tuple[u.Quantity, u.Quantity] | None = None,
             convention: str | None = None, rest: u.Quantity | None = None, client=None):
    """The mean or summed spectrum of the pixels in a sky region, with its noise.

    Parameters
    ----------
    cube
        As in `moments`.
    region
        Any form `vanotebook.archive.parse_region` takes: a cone
        ``(ra, dec, radius)``, an astropy-regions sky region, polygon vertices,
        a `mocpy.MOC`. Pixels count when their centre is inside.
    how : {"mean", "sum"}
        Mean over the pixels, or their sum.
    velocity, convention, rest, client
        As in `moments`.

    Returns
    -------
    astropy.table.QTable
        ``velocity`` (km/s), ``flux`` (the cube's unit), ``noise`` (its
        1-sigma noise), ``channel_noise`` (the noise of one pixel in that
        channel, 1.4826 MAD over the whole channel), ``npix``; meta ``region``,
        ``how``, ``n_beams``, ``unit``, ``provenance``.

    Notes
    -----
    The spectrum's noise is ``channel_noise / sqrt(n_eff)`` for the mean (``x
    npix`` for the sum), with ``n_eff`` the number of independent beams in
    the region (the pixels when there is no beam), never more than ``npix``.
    """
    import dask.array as da
    from astropy.table import QTable

    check_choice("how", how, ("mean", "sum"))
    parsed = parse_cube(cube, convention=convention, rest=rest)
    sl = parsed.channels(velocity)
    inside = _region_mask(parsed, region)
    client = get_client(client)
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    box = inside[y0:y1, x0:x1]
    from ..archive._regions import Region  # noqa: F401  (the parser's one region type)

    params = _params(cube, parsed, velocity=_velocity_json(parsed, sl), how=how,
                     box=[y0, y1, x0, x1])
    with record("vanotebook.cube.spectrum", params) as prov:
        _digest_input(prov, parsed)
        sub = parsed.data[sl, y0:y1, x0:x1]
        nv = sl.stop - sl.start
        itemsize = np.dtype(getattr(sub, "dtype", np.float32)).itemsize
        per = max(1, min(nv, BLOCK_BYTES // max(box.size * itemsize, 1)))
        blocks = spatial_blocks(sub, chunks=None, spectral=per).rechunk(
            (per, y1 - y0, x1 - x0))
        sums = da.map_blocks(_region_block, blocks, inside=box,
                             chunks=((2,), blocks.chunks[0]), drop_axis=2,
                             dtype=np.float64, meta=np.empty((0, 0)))
        s, n = compute(sums, client)
        sigma = channel_noise(parsed, sl, client)
    npix = n
    beam_px = 1.0
    if parsed.beam is not None:
        pix_sr = (_pixel_scale_deg(parsed) * u.deg) ** 2
        beam_px = max(float((parsed.beam.sr / pix_sr).decompose()), 1.0)
    n_eff = np.clip(npix / beam_px, 1.0, np.maximum(npix, 1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(npix > 0, s / np.where(npix > 0, npix, 1), np.nan)
    noise = sigma / np.sqrt(n_eff)
    flux = mean if how == "mean" else np.where(npix > 0, s, np.nan)
    if how == "sum":
        noise = noise * npix
    unit = parsed.unit or u.dimensionless_unscaled
    table = QTable()
    table["velocity"] = parsed.velocity[sl] * KMS
    table["width"] = parsed.width[sl] * KMS
    table["flux"] = flux * unit
    table["noise"] = noise * unit
    table["channel_noise"] = sigma * unit
    table["npix"] = npix.astype(np.int64)
    table.meta.update({"region": _describe_region(region), "how": how,
                       "n_beams": float(int(inside.sum()) / beam_px),
                       "unit": unit.to_string(), "convention": parsed.convention,
                       "provenance": prov.to_dict()})
    return table


def _describe_region(region: Any) -> dict:
    from ..archive import parse_region

    return parse_region(region).describe()


def _region_block(block, *, inside):
    from array_api_compat import array_namespace

    return K.region_sums(block, array_namespace(block).asarray(inside))


# ----------------------------------------------------------------------------- lines
def find_lines(spectrum_table: Any, *, nsigma: float = 3.0, min_channels: int = 2):
    """Lines in a spectrum: runs of at least ``min_channels`` channels above ``nsigma``.

    Parameters
    ----------
    spectrum_table : QTable
        As `spectrum` returns it (``velocity``, ``flux``, ``noise``; ``width``
        optional).
    nsigma : float
        Channels count when ``flux > nsigma * noise``.
    min_channels : int
        Shortest run that makes a line.

    Returns
    -------
    astropy.table.QTable
        One row per line: ``vmin``, ``vmax``, ``v_peak``, ``peak``,
        ``integral`` (``sum(flux dv)``), ``n_channels``, ``snr`` (peak over its
        noise); empty, with these columns, when nothing is found.
    """
    from astropy.table import QTable

    check_positive("nsigma", nsigma)
    check_positive("min_channels", min_channels, integer=True)
    cols = getattr(spectrum_table, "colnames", None)
    if cols is None or not {"velocity", "flux", "noise"} <= set(cols):
        raise VanotebookInputError("spectrum_table", "a table with velocity, flux and noise "
                                   "columns (as spectrum() returns)", spectrum_table)
    v = u.Quantity(spectrum_table["velocity"]).to_value(KMS)
    flux_q = u.Quantity(spectrum_table["flux"])
    unit = flux_q.unit
    f = flux_q.value
    noise = u.Quantity(spectrum_table["noise"]).to_value(unit)
    dv = (u.Quantity(spectrum_table["width"]).to_value(KMS) if "width" in cols
          else np.abs(np.gradient(v)) if v.size > 1 else np.ones_like(v))
    with np.errstate(invalid="ignore"):
        hot = np.isfinite(f) & np.isfinite(noise) & (f > nsigma * noise)
    runs = []
    k = 0
    while k < hot.size:
        if hot[k]:
            j = k
            while j + 1 < hot.size and hot[j + 1]:
                j += 1
            if j - k + 1 >= min_channels:
                runs.append((k, j + 1))
            k = j + 1
        else:
            k += 1
    out = QTable()
    out["vmin"] = [float(min(v[a], v[b - 1])) for a, b in runs] * KMS
    out["vmax"] = [float(max(v[a], v[b - 1])) for a, b in runs] * KMS
    peaks = [a + int(np.argmax(f[a:b])) for a, b in runs]
    out["v_peak"] = [float(v[p]) for p in peaks] * KMS
    out["peak"] = [float(f[p]) for p in peaks] * unit
    out["integral"] = [float(np.sum(f[a:b] * dv[a:b])) for a, b in runs] * (unit * KMS)
    out["n_channels"] = np.array([b - a for a, b in runs], dtype=np.int64)
    out["snr"] = np.array([float(f[p] / noise[p]) for p in peaks], dtype=float)
    out.meta["nsigma"] = float(nsigma)
    return out


# ----------------------------------------------------------------------------- spectral copy
def spectral_copy(cube: Any, path: str | Path, *, side: int = 16, overwrite: bool = False,
                  convention: str | None = None, rest: u.Quantity | None = None) -> Path:
    """A spectral-order zarr copy of a cube, for instant spectra in interactive use.

    Each zarr chunk holds every channel of a ``side x side`` patch of sky, so a
    spectrum under the cursor reads one or a few chunks instead of a piece of
    every plane. The store keeps the cube's FITS header (``attrs["header"]``)
    and is written atomically (nothing is left on failure), block by block in
    this process, so cubes larger than memory can be copied.

    Parameters
    ----------
    cube
        As in `moments`.
    path : path
        The ``.zarr`` folder to write.
    side : int
        Side of the sky patch of each chunk, pixels.
    overwrite : bool
        Replace an existing store.
    convention, rest
        As in `moments` (checked now; the copy keeps the original axis).

    Returns
    -------
    pathlib.Path
        The store; `parse_cube` (and so every function here) reads it lazily.
    """
    import dask.array as da

    from ..io import atomic_dir

    parsed = parse_cube(cube, convention=convention, rest=rest)
    check_positive("side", side, integer=True)
    path = Path(path)
    if path.exists() and not overwrite:
        raise VanotebookInputError("path", "a path that does not exist (or overwrite=True)",
                                   str(path))
    nv, ny, nx = parsed.shape
    header = parsed.wcs.to_header(relax=True)
    header["NAXIS"], header["NAXIS1"], header["NAXIS2"], header["NAXIS3"] = 3, nx, ny, nv
    for key in ("BUNIT", "BMAJ", "BMIN", "BPA", "SPECSYS", "RESTFRQ", "OBJECT", "LINE"):
        if key in parsed.header and key not in header:
            header[key] = parsed.header[key]
    if parsed.unit is not None:
        header["BUNIT"] = fits_string(parsed.unit)
    data = spatial_blocks(parsed.data, side)
    with atomic_dir(path, overwrite=overwrite) as tmp:
        import zarr

        store = zarr.open_group(str(tmp), mode="w")
        store.attrs["header"] = header.tostring()
        store.attrs["vanotebook"] = "spectral-order copy (vanotebook.cube.spectral_copy)"
        arr = store.create_array("cube", shape=(nv, ny, nx), chunks=(nv, side, side),
                                 dtype=np.dtype(data.dtype))
        da.store(data, arr, lock=False, scheduler="threads")
    return path
