"""HEALPix partitioning shared by the cross-match and the archive.

A catalogue is cut into HEALPix pixels (NESTED scheme) of one order chosen
from its density, so that no partition holds more than a target number of
rows. To find every pair closer than ``radius`` partition by partition, the
*margin* of a pixel -- the rows of neighbouring pixels closer than ``radius``
to it -- is copied in: `margin_pixels` gives, for each row, the other pixels
it must also be copied to. The test is conservative (a superset, never a
subset): a row goes to every pixel that holds a neighbour, at a finer order
whose pixels are at least three radii wide, of the row's own fine pixel.

On disk the layout follows HATS (LSDB's format): ``Norder=K/Dir=D/Npix=N.parquet``
with ``D = (N // 10000) * 10000`` and a ``partition_info.csv`` (``Norder,Npix``)
at the top. `read_partitioned` reads that layout, ours or a HATS catalogue's.

The pixel arithmetic uses ``astropy_healpix`` (a dependency of reproject).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import astropy.units as u
import numpy as np
from astropy_healpix import core as _hp

from ._errors import VanotebookInputError, check_positive
from .io import atomic_dir

if TYPE_CHECKING:  # pandas is imported where it is used: it costs ~0.25 s
    import pandas as pd

__all__ = [
    "MAX_ORDER",
    "PIXEL_COLUMN",
    "choose_order",
    "margin_pixels",
    "max_order_for_radius",
    "order_from_counts",
    "partition_path",
    "pixel_area",
    "pixel_index",
    "pixel_resolution",
    "read_partition_info",
    "read_partitioned",
    "write_partitioned",
]

MAX_ORDER = 29
"""The finest HEALPix order (nside = 2**29) that 64-bit NESTED indices hold."""
PIXEL_COLUMN = "_healpix"
"""Name of the temporary pixel column added while partitioning."""
MARGIN_FACTOR = 3.0
"""Fine pixels used for margins are at least this many radii wide."""
_UNITS_KEY = b"vanotebook.units"


def _check_order(order: Any, argument: str = "order") -> int:
    if isinstance(order, bool) or not isinstance(order, int | np.integer) or not (
        0 <= order <= MAX_ORDER
    ):
        raise VanotebookInputError(argument, f"an integer HEALPix order in [0, {MAX_ORDER}]", order)
    return int(order)


def pixel_resolution(order: int) -> u.Quantity:
    """Square root of the pixel area at ``order`` (an angle)."""
    return _hp.nside_to_pixel_resolution(2 ** _check_order(order)).to(u.deg)


def pixel_area(order: int) -> u.Quantity:
    """Pixel solid angle at ``order``, in deg^2."""
    return _hp.nside_to_pixel_area(2 ** _check_order(order)).to(u.deg**2)


def max_order_for_radius(radius: u.Quantity) -> int:
    """The finest order whose pixels are at least `MARGIN_FACTOR` radii wide (-1 if none).

    Partitions must be wider than the match radius for margins made of
    neighbouring pixels to be complete; -1 means "do not partition".
    """
    r = radius.to_value(u.deg)
    for order in range(MAX_ORDER, -1, -1):
        if pixel_resolution(order).value >= MARGIN_FACTOR * r:
            return order
    return -1


def choose_order(density: float, *, max_rows: int, radius: u.Quantity | None = None) -> int:
    """The coarsest order whose pixels hold at most ``max_rows`` rows at ``density``.

    Parameters
    ----------
    density : float
        Sources per deg^2 (uniform).
    max_rows : int
        Target largest partition.
    radius : Quantity, optional
        Match radius; the order is capped by `max_order_for_radius`.
    """
    check_positive("density", density)
    check_positive("max_rows", max_rows, integer=True)
    order = 0
    while order < MAX_ORDER and density * pixel_area(order).value > max_rows:
        order += 1
    if radius is not None:
        order = min(order, max(max_order_for_radius(radius), 0))
    return order


def order_from_counts(pixels: np.ndarray, counts: np.ndarray, *, order: int, max_rows: int,
                      radius: u.Quantity | None = None) -> int:
    """The coarsest order at which no pixel holds more than ``max_rows`` rows.

    ``pixels``/``counts`` are a histogram at the fine ``order``; it is summed
    up to coarser orders (a pixel's parent at order ``o`` is ``pixel >> 2 (order - o)``).
    The result is at most ``order`` and, given ``radius``, at most
    `max_order_for_radius`.
    """
    order = _check_order(order)
    check_positive("max_rows", max_rows, integer=True)
    pixels, counts = np.asarray(pixels, np.int64), np.asarray(counts, np.int64)
    best = order
    for o in range(order + 1):
        parents = pixels >> (2 * (order - o))
        _, inv = np.unique(parents, return_inverse=True)
        if counts.size == 0 or np.bincount(inv, weights=counts).max() <= max_rows:
            best = o
            break
    if radius is not None:
        best = min(best, max(max_order_for_radius(radius), 0))
    return best


def pixel_index(ra: Any, dec: Any, order: int) -> np.ndarray:
    """NESTED HEALPix index at ``order`` of positions in degrees (arrays or Quantities)."""
    order = _check_order(order)
    ra = u.Quantity(ra, u.deg)
    dec = u.Quantity(dec, u.deg)
    return np.asarray(_hp.lonlat_to_healpix(ra, dec, 2**order, order="nested"), np.int64)


def margin_pixels(ra: Any, dec: Any, order: int, radius: u.Quantity
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The other pixels at ``order`` each row must be copied to, so pairs closer than ``radius``.

    A row is closer than ``radius`` to pixel P only if P contains a neighbour
    of the row's fine pixel (at the finest order whose pixels are at least
    `MARGIN_FACTOR` radii wide). This is a superset of the exact margin: it
    never loses a pair, and may copy a few rows too many.

    Returns
    -------
    rows, pixels : ndarray of int64
        Row ``rows[i]`` goes also to pixel ``pixels[i]`` (never its own pixel).
    """
    order = _check_order(order)
    radius = _check_radius(radius)
    fine = max_order_for_radius(radius)
    if fine < order:
        expected = f"a radius below {pixel_resolution(order) / MARGIN_FACTOR:.4g} at order {order}"
        raise VanotebookInputError("radius", expected, radius)
    sub = pixel_index(ra, dec, fine)
    levels = fine - order
    own = sub >> (2 * levels)
    # Only a fine pixel on the border of its parent has neighbours in other pixels:
    # NESTED indices interleave the x and y bits of the position inside the parent.
    local = sub & ((1 << (2 * levels)) - 1)
    x, y = np.zeros_like(local), np.zeros_like(local)
    for bit in range(levels):
        x |= ((local >> (2 * bit)) & 1) << bit
        y |= ((local >> (2 * bit + 1)) & 1) << bit
    edge = (1 << levels) - 1
    border = np.flatnonzero((x == 0) | (y == 0) | (x == edge) | (y == edge))
    del local, x, y
    uniq, inv = np.unique(sub[border], return_inverse=True)
    with np.errstate(invalid="ignore"):  # pixels with 7 neighbours give -1 (and a warning)
        nb = np.asarray(_hp.neighbours(uniq, 2**fine, order="nested"), np.int64)  # (8, U)
    parents = np.where(nb >= 0, nb >> (2 * levels), -1)[:, inv]  # (8, n_border)
    rows = np.broadcast_to(border, parents.shape)
    keep = (parents >= 0) & (parents != own[border])
    rows, pix = rows[keep], parents[keep]
    if rows.size == 0:
        return rows.astype(np.int64), pix
    key = np.unique(rows.astype(np.int64) * (12 * 4**order) + pix)
    return key // (12 * 4**order), key % (12 * 4**order)


def _check_radius(radius: Any) -> u.Quantity:
    if not isinstance(radius, u.Quantity) or radius.unit.physical_type != "angle" or (
        radius.size != 1
    ):
        raise VanotebookInputError("radius", "an angle Quantity such as 1 * u.arcsec", radius)
    if not (0 < radius.to_value(u.deg) <= 180):
        raise VanotebookInputError("radius", "an angle in (0, 180] deg", radius)
    return radius


# ----------------------------------------------------------------------------- files
def partition_path(root: str | os.PathLike, order: int, pixel: int) -> Path:
    """``root/Norder=K/Dir=D/Npix=N.parquet``, the HATS path of one partition."""
    d = (int(pixel) // 10_000) * 10_000
    return Path(root) / f"Norder={int(order)}" / f"Dir={d}" / f"Npix={int(pixel)}.parquet"


def write_partitioned(catalogue: Any, path: str | os.PathLike, *, order: int | None = None,
                      ra: str = "ra", dec: str = "dec", max_rows: int | None = None,
                      overwrite: bool = False) -> Path:
    """Write a catalogue as HEALPix partitions: ``Norder=K/Dir=D/Npix=N.parquet``.

    Parameters
    ----------
    catalogue
        Anything `vanotebook.io.parse_catalogue` accepts that fits in memory.
    path : path
        The folder to create; it is written under a temporary name and renamed.
    order : int, optional
        HEALPix order; chosen from the density (`order_from_counts`) when None.
    ra, dec : str
        Coordinate columns, degrees.
    max_rows : int, optional
        Largest partition when the order is chosen (default: the configured
        ``partition-rows``).
    overwrite : bool
        Replace an existing folder.

    Returns
    -------
    pathlib.Path
        The folder, holding the partitions and ``partition_info.csv``.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from . import _config
    from .io import parse_catalogue, table_units

    table = parse_catalogue(catalogue, ra=ra, dec=dec)
    if not hasattr(table, "colnames"):
        table = parse_catalogue(table.compute(), ra=ra, dec=dec)
    units = table_units(table)
    df = table.to_pandas(index=False)
    ok = np.isfinite(df[ra].to_numpy(float)) & np.isfinite(df[dec].to_numpy(float))
    if not ok.all():
        raise VanotebookInputError(ra, "finite coordinates to partition", f"{(~ok).sum()} NaN rows")
    if order is None:
        max_rows = max_rows or int(_config.get("partition-rows", 1_000_000))
        fine = pixel_index(df[ra].to_numpy(), df[dec].to_numpy(), 12)
        pix, counts = np.unique(fine, return_counts=True)
        order = order_from_counts(pix, counts, order=12, max_rows=max_rows)
    order = _check_order(order)
    pixels = pixel_index(df[ra].to_numpy(), df[dec].to_numpy(), order)
    meta = {_UNITS_KEY: json.dumps(units).encode()}
    with atomic_dir(path, overwrite=overwrite) as tmp:
        sort = np.argsort(pixels, kind="stable")
        uniq, starts, counts = np.unique(pixels[sort], return_index=True, return_counts=True)
        for pix, start, n in zip(uniq, starts, counts, strict=True):
            part = df.iloc[sort[start:start + n]]
            target = partition_path(tmp, order, pix)
            target.parent.mkdir(parents=True, exist_ok=True)
            pat = pa.Table.from_pandas(part, preserve_index=False)
            pat = pat.replace_schema_metadata({**(pat.schema.metadata or {}), **meta})
            pq.write_table(pat, target)
        info = pd.DataFrame({"Norder": np.full(uniq.size, order), "Npix": uniq,
                             "num_rows": counts})
        info.to_csv(tmp / "partition_info.csv", index=False)
        (tmp / "properties").write_text(
            f"obs_collection={Path(path).name}\ndataproduct_type=object\nhats_nrows={len(df)}\n"
            f"hats_col_ra={ra}\nhats_col_dec={dec}\nhats_max_rows={int(counts.max(initial=0))}\n"
        )
    return Path(path)


def read_partition_info(path: str | os.PathLike) -> pd.DataFrame:
    """The ``Norder, Npix`` table of a partitioned catalogue (ours or HATS)."""
    import pandas as pd

    path = Path(path)
    info = path / "partition_info.csv"
    if not info.is_file():
        raise VanotebookInputError("path", "a folder with partition_info.csv", str(path))
    df = pd.read_csv(info)
    if not {"Norder", "Npix"} <= set(df.columns):
        raise VanotebookInputError("path", "partition_info.csv with Norder and Npix", list(df))
    return df


def is_partitioned(path: Any) -> bool:
    """Whether ``path`` is a folder with a ``partition_info.csv``."""
    return isinstance(path, str | os.PathLike) and (Path(path) / "partition_info.csv").is_file()


def read_partitioned(path: str | os.PathLike, *, lazy: bool = True,
                     pixels: Sequence[int] | None = None):
    """Read a partitioned catalogue: a dask DataFrame with one partition per pixel.

    Parameters
    ----------
    path : path
        Folder with ``partition_info.csv`` and ``Norder=K/Dir=D/Npix=N.parquet``
        (written by `write_partitioned`, or a HATS catalogue).
    lazy : bool
        Return a dask DataFrame (default) or an in-memory astropy Table.
    pixels : sequence of int, optional
        Only these ``Npix`` values.

    Returns
    -------
    dask.dataframe.DataFrame or astropy.table.Table
        Column units are on the Table columns (`vanotebook.io.parquet_units` for dask).
    """
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    path = Path(path)
    info = read_partition_info(path)
    if pixels is not None:
        info = info[info["Npix"].isin(list(pixels))]
    files = []
    for o, n in zip(info["Norder"], info["Npix"], strict=True):
        f = partition_path(path, o, n)
        if not f.is_file():  # newer HATS: Npix=N/ folders
            f = f.with_suffix("")
        files.append(str(f))
    if not files:
        raise VanotebookInputError("pixels", "at least one partition", pixels)
    meta = pq.read_schema(files[0] if files[0].endswith(".parquet") else
                          next(Path(files[0]).glob("*.parquet"))).metadata or {}
    units = json.loads(meta.get(_UNITS_KEY, b"{}"))
    if lazy:
        return dd.from_map(_read_one, files)
    import pandas as pd
    from astropy.table import Table

    frames = [_read_one(f) for f in files]
    table = Table.from_pandas(pd.concat(frames, ignore_index=True), units=units)
    return table


def _read_one(file: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    df = pq.read_table(file).to_pandas()
    drop = [c for c in ("Norder", "Dir", "Npix", "_hipscat_index", "_healpix_29") if c in df]
    return df.drop(columns=drop).reset_index(drop=True)


def coverage_area(pixels: np.ndarray, counts: np.ndarray, *, order: int,
                  min_count: int = 30) -> float:
    """Area in deg^2 a catalogue covers, from its pixel histogram at a fine ``order``.

    The histogram is coarsened until a typical occupied pixel holds at least
    ``min_count`` rows; partially filled pixels (at the edges) count in
    proportion to their rows over the median occupancy.
    """
    order = _check_order(order)
    pixels, counts = np.asarray(pixels, np.int64), np.asarray(counts, np.float64)
    if counts.sum() == 0:
        return 0.0
    for o in range(order, -1, -1):
        parents = pixels >> (2 * (order - o))
        _, inv = np.unique(parents, return_inverse=True)
        per = np.bincount(inv, weights=counts)
        typical = float(np.median(per))
        if typical >= min_count or o == 0:
            return float(np.minimum(per / typical, 1.0).sum() * pixel_area(o).value)
    return float(pixel_area(0).value * 12)  # pragma: no cover
