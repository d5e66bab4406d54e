"""Homogenised multi-survey cutouts of one source, or of a whole catalogue on Dask."""

from __future__ import annotations

import math
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from .._errors import VanotebookInputError, check_choice
from ..cluster import get_client
from ..io import atomic_dir, parse_catalogue
from ..units import Beam
from ._homogenise import (
    _check_options,
    _groups,
    _record_images,
    _write_set,
    check_angle,
    check_progress,
    homogenise,
)
from ._plan import FRAMES, Grid

__all__ = ["cutout", "cutout_grid", "cutouts"]

ACTIVITY = "vanotebook.mosaic.cutouts"


def _position(position: Any) -> SkyCoord:
    if isinstance(position, SkyCoord):
        return position.icrs if position.isscalar else position[0].icrs
    if isinstance(position, tuple | list) and len(position) == 2:
        return SkyCoord(float(position[0]) * u.deg, float(position[1]) * u.deg, frame="icrs")
    raise VanotebookInputError("position", "a SkyCoord or (ra, dec) in degrees", position)


def cutout_grid(position: Any, size: u.Quantity, pixel_scale: u.Quantity, *,
                frame: str = "icrs") -> Grid:
    """A north-up TAN grid of side ``size`` centred on ``position``."""
    check_angle("size", size)
    check_angle("pixel_scale", pixel_scale)
    check_choice("frame", frame, FRAMES)
    c = _position(position).transform_to(frame)
    scale = pixel_scale.to_value(u.deg)
    n = max(3, math.ceil(size.to_value(u.deg) / scale))
    w = WCS(naxis=2)
    a, b = ("RA---TAN", "DEC--TAN") if frame != "galactic" else ("GLON-TAN", "GLAT-TAN")
    w.wcs.ctype = [a, b]
    w.wcs.crval = [c.spherical.lon.deg, c.spherical.lat.deg]
    w.wcs.crpix = [(n + 1) / 2.0, (n + 1) / 2.0]
    w.wcs.cdelt = [-scale, scale]
    if frame == "icrs":
        w.wcs.radesys = "ICRS"
    elif frame in ("fk5", "fk4"):
        w.wcs.radesys = frame.upper()
        w.wcs.equinox = 2000.0 if frame == "fk5" else 1950.0
    return Grid(w, (n, n))


_OPTIONS = ("pixel_scale", "frame", "resolution", "unit", "match_background", "method",
            "device")
_DEFAULTS = {"pixel_scale": 2 * u.arcsec, "frame": "icrs", "resolution": "coarsest",
             "unit": "MJy/sr", "match_background": False, "method": "bilinear",
             "device": "auto"}


def _check_cutout_options(size, options: dict) -> None:
    """Every cutout option checked before any image is read (named errors)."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise VanotebookInputError(unknown[0], f"one of the cutout options {_OPTIONS}",
                                   options[unknown[0]])
    opts = {**_DEFAULTS, **options}
    check_angle("size", size)
    check_angle("pixel_scale", opts["pixel_scale"])
    check_choice("frame", opts["frame"], FRAMES)
    check_choice("device", opts["device"], ("auto", "cpu", "gpu"))
    _check_options(unit=opts["unit"], resolution=opts["resolution"],
                   match_background=opts["match_background"], method=opts["method"],
                   pixel_scale=None, progress=False)


def cutout(images: Any, position: Any, size: u.Quantity = 2 * u.arcmin, *,
           pixel_scale: u.Quantity = 2 * u.arcsec, frame: str = "icrs",
           resolution: str | Beam | None = "coarsest", unit: str | None = "MJy/sr",
           match_background: bool | str = False, method: str = "bilinear",
           device: str = "auto", client=None, progress=False):
    """A homogenised multi-survey cutout around one position.

    Parameters
    ----------
    images : dict {survey: images} or list of image lists
        As for `homogenise`.
    position : SkyCoord or (ra, dec)
        Centre, ICRS degrees for a tuple.
    size : Quantity
        Side of the square cutout (an angle).
    pixel_scale : Quantity
        Pixel of the cutout grid (an angle: a plain number is refused).
    frame, resolution, unit, match_background, method, device, client, progress
        As for `homogenise` (``unit=None`` keeps each survey's own unit, for images
        in DN, electron/s or K; ``resolution=None`` keeps each survey's beam).

    Returns
    -------
    xarray.Dataset
        One variable per survey (see `homogenise`); surveys that miss the
        position are left out, and an error is raised when all do.
    """
    from ._core import prepare_images
    from ._plan import footprint_bbox

    _check_cutout_options(size, {"pixel_scale": pixel_scale, "frame": frame,
                                 "resolution": resolution, "unit": unit,
                                 "match_background": match_background, "method": method,
                                 "device": device})
    check_progress(progress)
    grid = cutout_grid(position, size, pixel_scale, frame=frame)
    groups = _groups(images)
    kept = {}
    for name, g in groups.items():
        ims = prepare_images(g, argument=f"images[{name!r}]")
        ims = [im for im in ims if footprint_bbox(im, grid) is not None]
        if ims:
            kept[name] = ims
    if not kept:
        raise VanotebookInputError("position", "a position covered by at least one survey",
                                   position)
    return homogenise(kept, grid=grid, resolution=resolution, unit=unit,
                      match_background=match_background, method=method, device=device,
                      client=client, progress=progress)


def _cutout_or_none(images, pos, size, options, client=None):
    try:
        return cutout(images, pos, size, client=client, **options)
    except VanotebookInputError as exc:
        if exc.argument == "position":
            return None
        raise


def _cutout_task(images, pos, size, options):
    """One source's cutout, inside a Dask task.

    A task runs `mosaic`, which computes on the current client when there is
    one. On a cluster in this process (``Client(processes=False)``) the caller's
    client is the current one in every worker thread too, so the blocks would be
    queued behind this very task and wait for a thread it holds: with one thread
    the run hangs. Then the task secedes from the worker's pool while its blocks
    run (`distributed.worker_client`); elsewhere it runs them in its own thread.
    """
    try:
        from distributed import default_client, get_worker

        get_worker()
        default_client()
    except (ImportError, ValueError):
        return _cutout_or_none(images, pos, size, options)
    from distributed import worker_client

    with worker_client() as inner:
        return _cutout_or_none(images, pos, size, options, client=inner)


def cutouts(images: Any, catalogue: Any, size: u.Quantity = 2 * u.arcmin, *,
            ra: str = "ra", dec: str = "dec", client=None, output=None,
            overwrite: bool = False, progress=False, **options) -> list:
    """`cutout` for every row of a catalogue, one Dask task per source.

    Parameters
    ----------
    images, size
        As for `cutout`.
    catalogue
        Anything `vanotebook.io.parse_catalogue` takes, with ``ra``/``dec`` columns (deg).
    client : distributed.Client, optional
        Where the tasks run (default: the current client, else threads in-process).
    output : path, optional
        Also write the cutouts to this new folder: ``cutout_<row>.fits`` for every
        row a survey covers (one HDU per survey, as `homogenise` writes), and
        ``provenance.json`` (`vanotebook rerun` remakes the same bytes from it). The
        folder appears complete or not at all.
    overwrite : bool
        Replace an existing ``output``.
    progress : bool or callable
        As for `mosaic`: True shows a progress bar, a callable gets the fraction of
        sources done (0..1).
    **options
        `cutout`'s options (``pixel_scale``, ``frame``, ``resolution``, ``unit``,
        ``match_background``, ``method``, ``device``).

    Returns a list of Datasets in catalogue order (None where no survey covers the source).
    Where the cluster's workers cannot read image paths given (a private folder,
    workers of another account), the images are read here once and sent to them.
    """
    from pathlib import Path

    from ..provenance import record
    from ._dask import Tracker

    _check_cutout_options(size, options)
    check_progress(progress)
    if output is not None and Path(output).exists() and not overwrite and (
            not Path(output).is_dir() or any(Path(output).iterdir())):
        raise VanotebookInputError("output", "a new or empty folder (or overwrite=True)",
                                   str(output))
    groups = _groups(images)
    recorded = _record_images(groups)
    client = get_client(client)
    table = parse_catalogue(catalogue, ra=ra, dec=dec)
    if hasattr(table, "compute"):
        table = table.compute()
    coords = [(float(r), float(d)) for r, d in zip(np.asarray(table[ra]), np.asarray(table[dec]),
                                                   strict=True)]
    params = {"images": recorded, "positions": [list(c) for c in coords],
              "size": float(size.to_value(u.arcsec)),
              **{k: _param(v) for k, v in {**_DEFAULTS, **options}.items()}}
    tracker = Tracker(len(coords), progress)
    with record(ACTIVITY, params) as prov:
        if recorded is not None:
            for name in recorded:
                for path in recorded[name]:
                    prov.add_input(path)
        if client is None:
            results = _run_threads(groups, coords, size, options, tracker)
        else:
            results = _run_cluster(_reachable_images(groups, client), coords, size, options,
                                   client, tracker)
        if output is not None:
            _write_cutouts(results, Path(output), prov, overwrite=overwrite)
    return results


def _param(value):
    """A cutout option as JSON (angles in arcsec; a Beam as [major, minor, pa])."""
    if isinstance(value, u.Quantity):
        return float(value.to_value(u.arcsec))
    if isinstance(value, Beam):
        return [value.major.to_value(u.arcsec), value.minor.to_value(u.arcsec),
                value.pa.to_value(u.deg)]
    if isinstance(value, u.UnitBase):
        return value.to_string()
    return value


def _run_threads(groups, coords, size, options, tracker) -> list:
    import dask
    from dask.base import tokenize

    from ._dask import BLOCK_PREFIX, compute_blocks

    shared = dask.delayed(groups, traverse=False)  # one graph key for every task
    token = tokenize(coords, size, options)[:12]
    tasks = [dask.delayed(_cutout_or_none, pure=False)(
        shared, pos, size, options, dask_key_name=f"{BLOCK_PREFIX}cutout-{token}-{i}")
        for i, pos in enumerate(coords)]
    return compute_blocks(tasks, None, tracker)


def _run_cluster(images, coords, size, options, client, tracker) -> list:
    """The tasks on the cluster, at most twice its threads in flight (a seceded task
    holds a thread of its own: `_cutout_task`)."""
    from .._remote import bounded_map

    if not hasattr(images, "key"):
        (images,) = client.scatter([images], hash=False)  # sent once, not with every task
    results: list = [None] * len(coords)
    bar = None
    if tracker.show:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(coords), desc="cutouts")
    try:
        jobs = ((images, pos, size, options) for pos in coords)
        for i, result in bounded_map(client, _cutout_task, jobs):
            results[i] = result
            tracker.step()
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    return results


def _write_cutouts(results, folder, prov, *, overwrite: bool) -> None:
    """``cutout_<row>.fits`` for every covered row and ``provenance.json`` (with every
    file's sha256), in a folder that appears complete or not at all."""
    from ..provenance import sha256_file

    with atomic_dir(folder, overwrite=overwrite) as tmp:
        for i, ds in enumerate(results):
            if ds is not None:
                _write_set(ds, tmp / f"cutout_{i}.fits", prov, overwrite=True)
                prov.outputs.append({"path": str(folder / f"cutout_{i}.fits"),
                                     "sha256": sha256_file(tmp / f"cutout_{i}.fits")})
        prov.finish()
        (tmp / "provenance.json").write_text(prov.to_json())


def _paths(group: Any) -> list[str] | None:
    """The files a survey's images name (a glob expanded); None when it names none."""
    import glob
    import os

    items = group if isinstance(group, list | tuple) and not (
        isinstance(group, tuple) and len(group) == 2 and not isinstance(
            group[0], str | os.PathLike)) else [group]
    paths = []
    for item in items:
        if isinstance(item, str | os.PathLike):
            text = os.fspath(item)
            paths.extend(glob.glob(text) if any(c in text for c in "*?[") else [text])
    return paths or None


def _reachable_images(images: Any, client) -> Any:
    """``images`` with every survey naming files the workers cannot read parsed here
    (pixels sent with the tasks, once: scattered)."""
    from .._remote import workers_can_read
    from ._core import prepare_images

    groups = dict(images)
    out, moved = {}, False
    for name, g in groups.items():
        paths = _paths(g)
        if paths is not None and not workers_can_read(client, paths):
            out[name] = prepare_images(g, argument=f"images[{name!r}]")
            moved = True
        else:
            out[name] = g
    if not moved:
        return images
    (shared,) = client.scatter([out], hash=False)  # one future for the whole dict
    return shared
