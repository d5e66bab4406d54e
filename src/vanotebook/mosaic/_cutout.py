"""Homogenised multi-survey cutouts of one source, or of a whole catalogue on Dask."""

from __future__ import annotations

import math
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from .._errors import VanotebookInputError
from ..cluster import get_client
from ..io import parse_catalogue
from ..units import Beam
from ._homogenise import homogenise
from ._plan import Grid

__all__ = ["cutout", "cutout_grid", "cutouts"]


def _position(position: Any) -> SkyCoord:
    if isinstance(position, SkyCoord):
        return position.icrs if position.isscalar else position[0].icrs
    if isinstance(position, tuple | list) and len(position) == 2:
        return SkyCoord(float(position[0]) * u.deg, float(position[1]) * u.deg, frame="icrs")
    raise VanotebookInputError("position", "a SkyCoord or (ra, dec) in degrees", position)


def cutout_grid(position: Any, size: u.Quantity, pixel_scale: u.Quantity, *,
                frame: str = "icrs") -> Grid:
    """A north-up TAN grid of side ``size`` centred on ``position``."""
    if not isinstance(size, u.Quantity) or size.unit.physical_type != "angle":
        raise VanotebookInputError("size", "an angle Quantity such as 2*u.arcmin", size)
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
    return Grid(w, (n, n))


def cutout(images: Any, position: Any, size: u.Quantity = 2 * u.arcmin, *,
           pixel_scale: u.Quantity = 2 * u.arcsec, frame: str = "icrs",
           resolution: str | Beam = "coarsest", unit: str = "MJy/sr",
           match_background: bool | str = False, method: str = "bilinear",
           device: str = "auto"):
    """A homogenised multi-survey cutout around one position.

    Parameters
    ----------
    images : dict {survey: images}
        As for `homogenise`.
    position : SkyCoord or (ra, dec)
        Centre, ICRS degrees for a tuple.
    size : Quantity
        Side of the square cutout.
    pixel_scale : Quantity
        Pixel of the cutout grid.
    frame, resolution, unit, match_background, method, device
        As for `homogenise`.

    Returns
    -------
    xarray.Dataset
        One variable per survey (see `homogenise`); surveys that miss the
        position are left out, and an error is raised when all do.
    """
    grid = cutout_grid(position, size, pixel_scale, frame=frame)
    groups = dict(images)
    kept = {}
    for name, g in groups.items():
        try:
            from ._core import prepare_images
            from ._plan import footprint_bbox

            ims = prepare_images(g, argument=f"images[{name!r}]")
            ims = [im for im in ims if footprint_bbox(im, grid) is not None]
        except VanotebookInputError:
            raise
        if ims:
            kept[name] = ims
    if not kept:
        raise VanotebookInputError("position", "a position covered by at least one survey",
                                   position)
    return homogenise(kept, grid=grid, resolution=resolution, unit=unit,
                      match_background=match_background, method=method, device=device)


def cutouts(images: Any, catalogue: Any, size: u.Quantity = 2 * u.arcmin, *,
            ra: str = "ra", dec: str = "dec", client=None, **kwargs) -> list:
    """`cutout` for every row of a catalogue, one Dask task per source.

    Returns a list of Datasets in catalogue order (None where no survey covers the source).
    Where the cluster's workers cannot read image paths given (a private folder,
    workers of another account), the images are read here once and sent to them.
    """
    import dask

    client = get_client(client)
    if client is not None:
        images = _reachable_images(images, client)
    table = parse_catalogue(catalogue, ra=ra, dec=dec)
    if hasattr(table, "compute"):
        table = table.compute()
    coords = [(float(r), float(d)) for r, d in zip(np.asarray(table[ra]), np.asarray(table[dec]),
                                                   strict=True)]

    def one(images, pos):
        try:
            return cutout(images, pos, size, **kwargs)
        except VanotebookInputError as exc:
            if exc.argument == "position":
                return None
            raise

    from dask.delayed import Delayed

    if not isinstance(images, Delayed):
        images = dask.delayed(images, traverse=False)  # one graph key for every task
    tasks = [dask.delayed(one)(images, pos) for pos in coords]
    if client is not None:
        return client.gather(client.compute(tasks))
    return list(dask.compute(*tasks, scheduler="threads"))


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
    import dask

    (shared,) = client.scatter([out], hash=False)  # one future for the whole dict
    return dask.delayed(shared)
