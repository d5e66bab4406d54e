"""Catalogue layout and queries: HEALPix-partitioned parquet, HATS-compatible.

Layout of one catalogue folder (LSDB's ``open_catalog`` reads it)::

    properties                 HATS properties (hats_col_ra, hats_order, ...)
    partition_info.csv         Norder,Npix,num_rows
    dataset/Norder=K/Dir=D/Npix=N.parquet
    dataset/_common_metadata   the schema, with column units (vanotebook.units)

Every row carries ``_healpix_29`` (its NESTED index at order 29); inside a
partition rows are sorted by it and written in small row groups, whose
min/max statistics let a query read only the row groups its HEALPix cover
touches. Large inputs (parquet files, dask DataFrames, iterators of tables)
are written chunk by chunk: a first pass over the coordinates chooses the
order, a second writes per-chunk fragments per partition, and a third merges
and sorts each partition, so memory holds one chunk or one partition at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import VanotebookInputError
from ..healpix import MAX_ORDER, order_from_counts, partition_path
from ..io import coordinates_in_degrees, native_byteorder
from ._epochs import epoch_range, values_to_mjd
from ._regions import Region, parse_region

__all__ = ["HEALPIX_COLUMN", "Catalogue", "write_catalogue"]

HEALPIX_COLUMN = "_healpix_29"
UNITS_KEY = b"vanotebook.units"
ROW_GROUP_ROWS = 8192
HIST_ORDER = 12
MAX_PARTITIONS = 4096
"""The order is capped so that a catalogue has at most this many partitions."""


def _choose_order(pixels: np.ndarray, counts: np.ndarray, max_rows: int) -> int:
    """`order_from_counts`, capped so that no more than `MAX_PARTITIONS` pixels are used."""
    order = order_from_counts(pixels, counts, order=HIST_ORDER, max_rows=max_rows)
    while order > 0 and np.unique(pixels >> (2 * (HIST_ORDER - order))).size > MAX_PARTITIONS:
        order -= 1
    return order


# ----------------------------------------------------------------------------- kernels
def healpix29(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """NESTED order-29 index of positions in degrees (CDS healpix, as mocpy uses)."""
    try:
        import astropy.units as u
        import cdshealpix.nested as cn
        from astropy.coordinates import Latitude, Longitude
    except ImportError:  # pragma: no cover - mocpy brings cdshealpix
        from ..healpix import pixel_index

        return pixel_index(ra, dec, MAX_ORDER)
    return np.asarray(cn.lonlat_to_healpix(Longitude(np.asarray(ra, float) * u.deg),
                                           Latitude(np.asarray(dec, float) * u.deg),
                                           MAX_ORDER), np.int64)


# ----------------------------------------------------------------------------- input chunks
def _arrow_from_table(table: Any):
    import pyarrow as pa

    cols = {}
    for name in table.colnames:
        col = table[name]
        if getattr(col, "mask", None) is not None and np.any(col.mask):
            return pa.Table.from_pandas(table.to_pandas(index=False), preserve_index=False)
        arr = native_byteorder(np.asarray(col))  # FITS columns are big-endian
        if arr.ndim != 1:
            return pa.Table.from_pandas(table.to_pandas(index=False), preserve_index=False)
        if arr.dtype.kind == "S":  # FITS strings are ASCII bytes: store them as text
            with contextlib.suppress(UnicodeDecodeError):
                arr = arr.astype(str)
        cols[name] = arr
    return pa.table(cols)


def _units_of(table: Any) -> dict[str, str]:
    return {c: str(table[c].unit) for c in table.colnames
            if getattr(table[c], "unit", None) is not None}


class _Source:
    """Input as a sequence of pyarrow tables, with its units and a coordinate-only pass."""

    def __init__(self, data: Any, *, ra: str, dec: str, chunk_rows: int,
                 client: Any = None) -> None:
        import pyarrow as pa

        self.units: dict[str, str] = {}
        self.inputs: list[str] = []
        self.single: pa.Table | None = None
        self._factory: Callable[[list[str] | None], Iterator[pa.Table]] | None = None
        self.columns: list[str]
        self.reiterable = True
        if isinstance(data, str | os.PathLike) or (
            isinstance(data, list | tuple) and data and all(
                isinstance(d, str | os.PathLike) for d in data)
        ):
            paths = [Path(p) for p in ([data] if isinstance(data, str | os.PathLike) else data)]
            for p in paths:
                if not p.exists():
                    raise VanotebookInputError("data", "an existing catalogue file", str(p))
            if all(p.is_dir() or p.suffix.lower() in (".parquet", ".pq") for p in paths):
                import pyarrow.dataset as ds

                dataset = ds.dataset([str(p) for p in paths] if len(paths) > 1 else
                                     str(paths[0]), format="parquet")
                meta = dataset.schema.metadata or {}
                self.units = json.loads(meta.get(UNITS_KEY, b"{}"))
                self.columns = list(dataset.schema.names)
                self.inputs = [str(f) for f in dataset.files]
                if dataset.count_rows() <= chunk_rows:
                    self.single = dataset.to_table()
                else:
                    self._factory = lambda cols: (pa.Table.from_batches([b]) for b in
                                                  dataset.to_batches(columns=cols,
                                                                     batch_size=chunk_rows)
                                                  if b.num_rows)
                return
            from ..io import read_catalogue

            if len(paths) != 1:
                raise VanotebookInputError("data", "one catalogue file or parquet files", data)
            self.inputs = [str(paths[0])]
            data = read_catalogue(paths[0])
        module = type(data).__module__
        if module.startswith("dask"):
            self.columns = list(data.columns)
            parts = data.to_delayed()

            from ..cluster import get_client

            runner = get_client(client)

            def from_dask(cols):
                for part in parts:
                    df = part.compute() if runner is None else runner.compute(part).result()
                    yield pa.Table.from_pandas(df if cols is None else df[cols],
                                               preserve_index=False)

            self._factory = from_dask
            self.units = dict(getattr(data, "attrs", {}).get("units", {}))
            return
        if module.startswith("pandas") and type(data).__name__ == "DataFrame":
            self.columns = list(data.columns)
            self.units = dict(data.attrs.get("units", {}))
            self.single = pa.Table.from_pandas(data, preserve_index=False)
            return
        if hasattr(data, "colnames"):
            from astropy.table import Table

            table = Table(data)  # QTable -> Table with units on the columns
            self.columns = list(table.colnames)
            if ra in table.colnames and dec in table.colnames:
                # blank cells: NaN, counted and refused below; text: sexagesimal
                coordinates_in_degrees(table, ra, dec)
            self.units = _units_of(table)
            self.single = _arrow_from_table(table)
            return
        if isinstance(data, pa.Table):
            self.columns = list(data.schema.names)
            self.single = data
            return
        if isinstance(data, Iterable):
            import itertools

            items = iter(data)
            first = next(items, None)
            if first is None:
                raise VanotebookInputError("data", "at least one chunk", data)
            head = _Source(first, ra=ra, dec=dec, chunk_rows=chunk_rows)
            self.columns, self.units = head.columns, head.units
            self.reiterable = not isinstance(data, Iterator)
            rest = itertools.chain([first], items)

            def from_iter(cols):
                for t in (rest if isinstance(data, Iterator) else data):
                    chunk = _Source(t, ra=ra, dec=dec, chunk_rows=chunk_rows).single
                    yield chunk if cols is None else chunk.select(cols)

            self._factory = from_iter
            return
        raise VanotebookInputError(
            "data", "an astropy Table, pandas or dask DataFrame, a catalogue path or parquet "
            "files/folder, or an iterable of tables", data)

    def chunks(self, columns: list[str] | None = None) -> Iterator[Any]:
        if self.single is not None:
            yield self.single if columns is None else self.single.select(columns)
        else:
            yield from self._factory(columns)


def _check_coords(table: Any, ra: str, dec: str) -> tuple[np.ndarray, np.ndarray]:
    for arg, name in (("ra", ra), ("dec", dec)):
        if name not in table.column_names:
            shown = ", ".join(table.column_names[:20])
            raise VanotebookInputError(arg, f"a column of the catalogue (columns: {shown})", name)
    r = table.column(ra).to_numpy(zero_copy_only=False).astype(float, copy=False)
    d = table.column(dec).to_numpy(zero_copy_only=False).astype(float, copy=False)
    if r.size:
        if not (np.isfinite(r).all() and np.isfinite(d).all()):
            raise VanotebookInputError(ra, "finite coordinates in every row",
                                       f"{int((~np.isfinite(r) | ~np.isfinite(d)).sum())} "
                                       "missing (blank, masked or null) or non-finite rows")
        if d.min() < -90 or d.max() > 90:
            raise VanotebookInputError(dec, "declinations within [-90, 90] deg",
                                       f"values from {d.min():g} to {d.max():g}")
    return r, d


# ----------------------------------------------------------------------------- writing
def _write_partition(table: Any, path: Path, units_meta: dict, row_group_rows: int) -> None:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **units_meta})
    pq.write_table(table, path, row_group_size=row_group_rows, write_statistics=True)


def _split_sorted(table: Any, h29: np.ndarray, order: int) -> Iterator[tuple[int, Any]]:
    """Sort by ``_healpix_29`` and cut into (pixel, table) at ``order``."""
    import pyarrow as pa

    sort = np.argsort(h29, kind="stable")
    h = h29[sort]
    table = table.take(pa.array(sort)).append_column(HEALPIX_COLUMN, pa.array(h))
    pix = h >> (2 * (MAX_ORDER - order))
    edges = np.flatnonzero(np.diff(pix)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [h.size]])
    for a, b in zip(starts, stops, strict=True):
        yield int(pix[a]), table.slice(int(a), int(b - a))


def write_catalogue(data: Any, folder: Path, *, name: str, ra: str, dec: str,
                    order: int | None, max_rows: int, chunk_rows: int,
                    row_group_rows: int = ROW_GROUP_ROWS,
                    progress: Callable[[str], None] | None = None,
                    client: Any = None) -> dict[str, Any]:
    """Write ``data`` as a HATS-like partitioned catalogue into the new ``folder``.

    Returns a dict with ``order``, ``n_rows``, ``columns``, ``units``,
    ``partitions`` (DataFrame Norder, Npix, num_rows) and ``inputs``.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    say = progress or (lambda _m: None)
    src = _Source(data, ra=ra, dec=dec, chunk_rows=chunk_rows, client=client)
    for arg, col in (("ra", ra), ("dec", dec)):
        if col not in src.columns:
            shown = ", ".join(map(str, src.columns[:20]))
            raise VanotebookInputError(arg, f"a column of the catalogue (columns: {shown})", col)
    if src.single is not None and src.single.num_rows == 0:
        raise VanotebookInputError("data", "a catalogue with at least one row", "0 rows")
    src_cols_drop = [HEALPIX_COLUMN] if HEALPIX_COLUMN in src.columns else []
    units = {k: v for k, v in src.units.items() if k != HEALPIX_COLUMN}
    units_meta = {UNITS_KEY: json.dumps(units).encode()}
    dataset = folder / "dataset"
    dataset.mkdir(parents=True)
    written: dict[int, int] = {}
    schema = None
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        if src.single is not None:
            table = src.single.drop_columns(src_cols_drop) if src_cols_drop else src.single
            r, d = _check_coords(table, ra, dec)
            h29 = healpix29(r, d)
            if order is None:
                fine = h29 >> (2 * (MAX_ORDER - HIST_ORDER))
                pix, counts = np.unique(fine, return_counts=True)
                order = _choose_order(pix, counts, max_rows)
            say(f"{name}: {table.num_rows:,} rows into order-{order} partitions")
            futures = []
            for pix, part in _split_sorted(table, h29, order):
                written[pix] = part.num_rows
                schema = part.schema
                futures.append(pool.submit(_write_partition, part,
                                           partition_path(dataset, order, pix), units_meta,
                                           row_group_rows))
            for f in futures:
                f.result()
        else:
            if order is None and not src.reiterable:
                raise VanotebookInputError("order", "an order when data is a one-shot iterator "
                                           "(or pass a list of tables)", None)
            if order is None:
                say(f"{name}: counting rows per HEALPix cell")
                hist: dict[int, int] = {}
                for chunk in src.chunks([ra, dec]):
                    r, d = _check_coords(chunk, ra, dec)
                    fine = healpix29(r, d) >> (2 * (MAX_ORDER - HIST_ORDER))
                    pix, counts = np.unique(fine, return_counts=True)
                    for p, c in zip(pix.tolist(), counts.tolist(), strict=True):
                        hist[p] = hist.get(p, 0) + c
                order = _choose_order(np.fromiter(hist, np.int64, len(hist)),
                                      np.fromiter(hist.values(), np.int64, len(hist)), max_rows)
            frag = folder / "_fragments"
            for i, chunk in enumerate(src.chunks()):
                if src_cols_drop:
                    chunk = chunk.drop_columns(src_cols_drop)
                r, d = _check_coords(chunk, ra, dec)
                say(f"{name}: chunk {i} ({chunk.num_rows:,} rows)")
                for pix, part in _split_sorted(chunk, healpix29(r, d), order):
                    target = frag / f"Npix={pix}" / f"chunk{i:06d}.parquet"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    pq.write_table(part, target)
            say(f"{name}: merging partitions")

            def merge(pixdir: Path) -> tuple[int, int, Any]:
                pix = int(pixdir.name.split("=")[1])
                parts = [pq.read_table(f) for f in sorted(pixdir.iterdir())]
                part = pa.concat_tables(parts, promote_options="permissive")
                h = part.column(HEALPIX_COLUMN).to_numpy()
                sort = np.argsort(h, kind="stable")
                part = part.take(pa.array(sort))
                _write_partition(part, partition_path(dataset, order, pix), units_meta,
                                 row_group_rows)
                shutil.rmtree(pixdir)
                return pix, part.num_rows, part.schema

            if frag.exists():
                for pix, n, sch in pool.map(merge, sorted(frag.iterdir())):
                    written[pix] = n
                    schema = sch
                frag.rmdir()
    finally:
        pool.shutdown(wait=True)
    if schema is None:
        raise VanotebookInputError("data", "a catalogue with at least one row", "no rows")
    schema = schema.with_metadata({**(schema.metadata or {}), **units_meta})
    pq.write_metadata(schema, dataset / "_common_metadata")
    pixels = np.array(sorted(written), np.int64)
    counts = np.array([written[p] for p in pixels], np.int64)
    info = pd.DataFrame({"Norder": np.full(pixels.size, order, np.int64), "Npix": pixels,
                         "num_rows": counts})
    info[["Norder", "Npix"]].to_csv(folder / "partition_info.csv", index=False)
    n_rows = int(counts.sum())
    (folder / "properties").write_text("\n".join([
        "#HATS catalog", f"obs_collection={name}", "dataproduct_type=object",
        f"hats_nrows={n_rows}", f"hats_col_ra={ra}", f"hats_col_dec={dec}",
        f"hats_col_healpix={HEALPIX_COLUMN}", "hats_col_healpix_order=29",
        "hats_npix_suffix=.parquet", f"hats_max_rows={int(counts.max())}",
        "hats_version=v1.0", f"hats_order={order}", "hats_builder=vanotebook.archive", "",
    ]))
    columns = [c for c in schema.names if c != HEALPIX_COLUMN]
    return {"order": int(order), "n_rows": n_rows, "columns": columns, "units": units,
            "partitions": info, "inputs": src.inputs}


# ----------------------------------------------------------------------------- queries
class Catalogue:
    """One catalogue of an archive, queried by region.

    Made by `Archive.catalogue`; it holds the partition list (a snapshot of the
    index) and caches parquet footers, so repeated queries touch no index.

    Attributes
    ----------
    name : str
    path : pathlib.Path
        The HATS-style folder (``lsdb.open_catalog(path)`` opens it).
    order : int
        HEALPix order of the partitions.
    n_rows : int
    columns : list of str
    units : dict
    ra, dec : str
        Coordinate columns (degrees, ICRS).
    epoch : str or None
    last_read : list of (path, row groups)
        The parquet files and row groups the latest query read.
    """

    def __init__(self, name: str, path: Path, *, order: int, n_rows: int, columns: list[str],
                 units: dict[str, str], ra: str, dec: str, epoch: str | None,
                 pixels: np.ndarray, checksums: dict[int, str], archive: str) -> None:
        self.name = name
        self.path = Path(path)
        self.order = int(order)
        self.n_rows = int(n_rows)
        self.columns = list(columns)
        self.units = dict(units)
        self.ra, self.dec, self.epoch = ra, dec, epoch
        self.pixels = np.asarray(pixels, np.int64)
        self._checksums = checksums
        self._archive = archive
        self._footers: dict[int, tuple[Any, np.ndarray, np.ndarray]] = {}
        self.last_read: list[tuple[Path, list[int]]] = []

    def __repr__(self) -> str:
        return (f"Catalogue({self.name!r}, {self.n_rows:,} rows, order {self.order}, "
                f"{self.pixels.size} partitions)")

    # -- planning ---------------------------------------------------------
    def _footer(self, pix: int):
        hit = self._footers.get(pix)
        if hit is None:
            import pyarrow.parquet as pq

            md = pq.read_metadata(partition_path(self.path / "dataset", self.order, pix))
            col = md.schema.names.index(HEALPIX_COLUMN)
            lo = np.empty(md.num_row_groups, np.int64)
            hi = np.empty(md.num_row_groups, np.int64)
            for i in range(md.num_row_groups):
                st = md.row_group(i).column(col).statistics
                lo[i], hi[i] = st.min, st.max
            hit = (md, lo, hi)
            self._footers[pix] = hit
        return hit

    def plan(self, region: Any) -> list[tuple[Path, list[int]]]:
        """The parquet files and row groups a query of ``region`` reads.

        Only partitions whose pixel meets the region's HEALPix cover are
        listed, and in them only the row groups whose ``_healpix_29`` range
        meets the cover.
        """
        reg = parse_region(region)
        return [(p, rgs) for p, rgs, _ in self._plan(reg)]

    def _plan(self, reg: Region):
        order = max(reg.query_order(), self.order)
        ranges = reg.ranges(order)
        if ranges.size == 0:
            return []
        shift = 2 * (MAX_ORDER - self.order)
        first, last = ranges[:, 0] >> shift, (ranges[:, 1] - 1) >> shift
        touched = self.pixels[np.any((self.pixels[:, None] >= first) &
                                     (self.pixels[:, None] <= last), axis=1)]
        out = []
        for pix in touched.tolist():
            md, lo, hi = self._footer(pix)
            keep = np.any((ranges[None, :, 0] <= hi[:, None]) &
                          (ranges[None, :, 1] > lo[:, None]), axis=1)
            rgs = np.flatnonzero(keep).tolist()
            if rgs:
                out.append((partition_path(self.path / "dataset", self.order, pix), rgs, md))
        return out

    # -- reading ----------------------------------------------------------
    def _read(self, path: Path, rgs: list[int], md: Any, reg: Region,
              columns: list[str] | None, device: str = "cpu"):
        import pyarrow.parquet as pq

        cols = None
        if columns is not None:
            cols = list(dict.fromkeys([*columns, self.ra, self.dec]))
        table = pq.ParquetFile(path, metadata=md).read_row_groups(rgs, columns=cols)
        mask = _membership(reg, table.column(self.ra).to_numpy(),
                           table.column(self.dec).to_numpy(), device)
        table = table.filter(mask)
        keep = [c for c in table.column_names if c != HEALPIX_COLUMN and
                (columns is None or c in columns)]
        return table.select(keep)

    def cone(self, ra: Any, dec: Any, radius: Any, *, columns: list[str] | None = None,
             lazy: bool = False, device: str = "cpu", client: Any = None, epoch: Any = None):
        """Rows within ``radius`` of (``ra``, ``dec``): an exact great-circle cone.

        Parameters
        ----------
        ra, dec : float or Quantity
            ICRS centre (degrees when plain numbers).
        radius : Quantity
            An angle, e.g. ``6 * u.arcmin``; a plain number is refused.
        columns : list of str, optional
            Columns to return (default all).
        lazy : bool
            Return a dask DataFrame (one partition per file read) instead of a Table.
        device : {"cpu", "gpu", "auto"}
            Where the exact membership test runs (CuPy on a GPU). The default is
            the CPU: the rows a query reads are few, and copying them to a GPU
            costs more than the test.
        client : distributed.Client, optional
            With ``lazy``: the cluster that will compute the frame (default: the
            current client). Where its workers cannot read this archive (a
            personal archive, workers of another account), the partitions are
            read here and sent to them, so the frame never hands them a path.
        epoch : (start, end), optional
            Keep rows whose epoch lies in the range (see `region`).

        Returns
        -------
        astropy.table.Table or dask.dataframe.DataFrame
        """
        from ._regions import make_cone

        return self.region(make_cone(ra, dec, radius), columns=columns, lazy=lazy,
                           device=device, client=client, epoch=epoch)

    def region(self, region: Any, *, columns: list[str] | None = None, lazy: bool = False,
               device: str = "cpu", client: Any = None, epoch: Any = None):
        """Rows inside ``region`` (any form `parse_region` accepts), exactly.

        ``epoch`` ``(start, end)`` (Time, ISO or MJD) keeps the rows whose
        epoch column lies in the range; for a catalogue with one epoch it
        keeps every row or none. Returns an astropy Table with units and
        ``meta["provenance"]``, or a dask DataFrame when ``lazy``
        (``client`` as for `cone`).
        """
        from ..cluster import resolve_device

        device = "cpu" if device == "cpu" else resolve_device(device)
        reg = parse_region(region)
        if columns is not None:
            missing = [c for c in columns if c not in self.columns]
            if missing:
                raise VanotebookInputError("columns", f"columns of {self.name}", missing)
        window = None if epoch is None else epoch_range(epoch)
        if window is not None and self.epoch is None:
            raise VanotebookInputError("epoch", f"None: catalogue {self.name} has no epoch",
                                       epoch)
        read_columns = columns
        if window is not None and isinstance(self.epoch, str) and columns is not None \
                and self.epoch not in columns:
            read_columns = [*columns, self.epoch]
        plan = self._plan(reg)
        self.last_read = [(p, rgs) for p, rgs, _ in plan]
        if lazy:
            frame = self._lazy(plan, reg, read_columns, client)
            if window is None:
                return frame
            return frame.map_partitions(self._in_epoch_frame, window, columns)
        import pyarrow as pa

        if plan:
            parts = [self._read(p, rgs, md, reg, read_columns, device) for p, rgs, md in plan]
            table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        else:
            table = self._empty(read_columns)
        out = self._to_astropy(table, reg, plan)
        if window is not None:
            out = out[self._in_epoch(out, window)]
            if read_columns is not columns:
                del out[self.epoch]
            out.meta["provenance"]["parameters"]["epoch"] = [str(e) for e in epoch]
        return out

    def _in_epoch(self, table: Any, window: tuple[float | None, float | None]) -> np.ndarray:
        """Which rows have an epoch in ``window`` (MJD bounds, None open)."""
        if isinstance(self.epoch, str):
            mjd = values_to_mjd(np.asarray(table[self.epoch], float), self.units.get(self.epoch))
        else:
            mjd = np.full(len(table), float(values_to_mjd([self.epoch], None)[0]))
        keep = np.isfinite(mjd)
        if window[0] is not None:
            keep &= mjd >= window[0]
        if window[1] is not None:
            keep &= mjd <= window[1]
        return keep

    def _in_epoch_frame(self, frame, window, columns):
        kept = frame[self._in_epoch(frame, window)]
        return kept if columns is None else kept[list(columns)]

    def overlaps(self, region: Any) -> bool:
        """Whether any partition of the catalogue overlaps ``region`` (from the index only)."""
        reg = parse_region(region)
        return bool(self._plan(reg))

    def _empty(self, columns):
        import pyarrow.parquet as pq

        schema = pq.read_schema(self.path / "dataset" / "_common_metadata")
        keep = [c for c in schema.names if c != HEALPIX_COLUMN and
                (columns is None or c in columns)]
        return schema.empty_table().select(keep)

    def _to_astropy(self, table, reg: Region, plan):
        from astropy.table import Table

        out = Table({c: table.column(c).to_numpy(zero_copy_only=False)
                     for c in table.column_names})
        for c, unit in self.units.items():
            if c in out.colnames:
                out[c].unit = unit
        out.meta["provenance"] = {
            "activity": "vanotebook.archive.query",
            "parameters": {"catalogue": self.name, "region": reg.describe()},
            "inputs": [{"path": str(p), "sha256": self._checksums.get(_npix(p), "")}
                       for p, _, _ in plan],
            "archive": self._archive,
        }
        return out

    def _lazy(self, plan, reg: Region, columns, client=None):
        import dask.dataframe as dd

        meta = self._empty(columns).to_pandas()
        if not plan:
            return dd.from_pandas(meta, npartitions=1)
        tasks = [(str(p), rgs) for p, rgs, _ in plan]
        frame = dd.from_map(_read_task, tasks, region=reg, ra=self.ra, dec=self.dec,
                            columns=columns, meta=meta)
        return _for_workers(frame, [p for p, _ in tasks], client)

    def to_hips(self, out, *, order_by: str | None = None, descending: bool = False,
                max_rows_per_tile: int = 500, max_order: int | None = None,
                columns: list[str] | None = None, client: Any = None, overwrite: bool = False):
        """Write this catalogue as a progressive catalogue HiPS (see `write_catalogue_hips`)."""
        from ._hips import write_catalogue_hips

        return write_catalogue_hips(self, out, order_by=order_by, descending=descending,
                                    max_rows_per_tile=max_rows_per_tile, max_order=max_order,
                                    columns=columns, name=self.name, client=client,
                                    overwrite=overwrite)

    def to_dask(self, *, columns: list[str] | None = None, client: Any = None):
        """The whole catalogue as a dask DataFrame, one partition per HEALPix pixel.

        ``client`` (default: the current one) is the cluster that will compute it;
        where its workers cannot read this archive, the partitions are read here, one
        at a time, and sent to them (they then live in the cluster's memory).
        """
        import dask.dataframe as dd

        files = [str(partition_path(self.path / "dataset", self.order, p)) for p in self.pixels]
        meta = self._empty(columns).to_pandas()
        frame = dd.from_map(_read_task, [(f, None) for f in files], region=None, ra=self.ra,
                            dec=self.dec, columns=columns, meta=meta)
        return _for_workers(frame, files, client)


def _for_workers(frame, files: list[str], client):
    """``frame`` as it is where the cluster's workers can read ``files`` (or there is no
    cluster), else with its partitions read here and sent by value."""
    from .._remote import frame_by_value, workers_can_read
    from ..cluster import get_client

    client = get_client(client)
    if workers_can_read(client, files):
        return frame
    return frame_by_value(client, frame)


def _membership(reg: Region, ra: np.ndarray, dec: np.ndarray, device: str) -> np.ndarray:
    """The exact test on the CPU (numpy) or a GPU (CuPy; MOCs always on the CPU)."""
    if device == "gpu" and reg.kind != "moc":
        import cupy

        return cupy.asnumpy(reg.contains(cupy.asarray(ra), cupy.asarray(dec))).astype(bool)
    return np.asarray(reg.contains(ra, dec), bool)


def _npix(path: Path) -> int:
    return int(Path(path).stem.split("=")[1])


def _read_task(task: tuple[str, list[int] | None], *, region: Region | None, ra: str, dec: str,
               columns: list[str] | None):
    """Read one partition's row groups and keep the rows in ``region`` (a pandas DataFrame)."""
    import pyarrow.parquet as pq

    path, rgs = task
    f = pq.ParquetFile(path)
    cols = None if columns is None else list(dict.fromkeys([*columns, ra, dec]))
    table = f.read_row_groups(rgs, columns=cols) if rgs is not None else f.read(columns=cols)
    if region is not None:
        mask = _membership(region, table.column(ra).to_numpy(), table.column(dec).to_numpy(),
                           "cpu")
        table = table.filter(mask)
    keep = [c for c in table.column_names if c != HEALPIX_COLUMN and
            (columns is None or c in columns)]
    return table.select(keep).to_pandas()
