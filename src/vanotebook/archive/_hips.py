"""Catalogue HiPS: a progressive catalogue that Aladin Lite (and Aladin) display.

Layout written (the HiPS catalogue convention, as Hipsgen-cat writes it)::

    properties                  dataproduct_type=catalog, hips_order, hips_cat_nrows, ...
    Metadata.xml                a VOTable with the FIELDs (RA/Dec carry pos.eq UCDs)
    Moc.fits                    the coverage (mocpy)
    Norder1/Allsky.tsv          every row of order 1 (and the same for order 2)
    NorderK/DirD/NpixN.tsv      the rows of one tile: "# Completeness = m / n", a header
                                line, then one row per line, brightest first
    provenance.json

Order ``k`` holds, in each HEALPix cell, the ``max_rows_per_tile`` first rows
(by ``order_by``) that no shallower order already shows; the deepest order
takes what is left. Every row therefore appears exactly once.

Memory: an archive `Catalogue` is tiled partition by partition as it is.
Any other input is read in chunks (parquet row group by row group) and
scattered into per-pixel Arrow files (pixels of at most ``GROUP_ROWS`` rows);
while scattering, each chunk keeps its ``max_rows_per_tile * (S - 1)`` first
rows per order-``S-1`` cell, which provably contain every row that the
shallow orders ``< S`` (whose cells span several pixels) show. Then each pixel
is tiled alone (numba order assignment, TSV formatted by pyarrow a batch of
whole tiles at a time). So memory holds a chunk or two pixels at a time plus
the few shallow rows, whatever the input's size.

On a cluster whose workers cannot read the groups or write into the output
folder (workers of another account, a private folder), each group's rows are
read here and sent, and its tiles come back as bytes to be written here
(`_tile_here`); the tiles are the same.
"""

from __future__ import annotations

import io as _io
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import VanotebookInputError, check_positive
from .._optional import HAS_NUMBA
from ..healpix import MAX_ORDER, partition_path

__all__ = ["assign_orders", "write_catalogue_hips"]

ROW_COLUMN = "_hips_row"
HEALPIX_COLUMN = "_healpix_29"
AUTO_MAX_ORDER = 14
"""Deepest order chosen automatically; rows still left there share their tile."""
MOC_ORDER = 10
ALLSKY_ORDERS = (1, 2)  # Aladin Lite reads these two orders as Allsky.tsv files
CHUNK_ROWS = 262_144
"""Rows read at a time from a parquet or dask input (capped by ``partition-rows``)."""
GROUP_ROWS = 200_000
"""Most rows (about) tiled at once: the pixels of the scattered input hold no more."""
MAX_OPEN_WRITERS = 256
HIST_ORDER = 9
"""Order of the row-count histogram that chooses the pixels (a pixel is >= 47 arcmin^2)."""


# ----------------------------------------------------------------------------- kernel
def _assign_orders_numpy(h29: np.ndarray, first: int, last: int, limit: int,
                         dump: bool) -> np.ndarray:
    """Reference implementation of `assign_orders` (one stable sort per order)."""
    out = np.full(h29.size, -1, np.int16)
    todo = np.arange(h29.size)
    for k in range(first, last + 1):
        if todo.size == 0:
            break
        if k == last and dump:
            out[todo] = k
            break
        cell = h29[todo] >> (2 * (MAX_ORDER - k))
        o = np.argsort(cell, kind="stable")
        cs = cell[o]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(cs)) + 1])
        rank = np.arange(cs.size) - np.repeat(starts, np.diff(np.append(starts, cs.size)))
        out[todo[o[rank < limit]]] = k
        todo = np.sort(todo[o[rank >= limit]])
    return out


def _assign_orders_loop(h29: np.ndarray, by_cell: np.ndarray, first: int, last: int,
                        limit: int, dump: bool) -> np.ndarray:  # pragma: no cover - numba
    """`assign_orders` as loops: dense cell ids from one sort, then one scan per order."""
    n = h29.size
    out = np.full(n, -1, np.int16)
    dense = np.empty(n, np.int64)
    todo = np.arange(n)
    m = n
    for k in range(first, last + 1):
        if m == 0:
            break
        if k == last and dump:
            for t in range(m):
                out[todo[t]] = k
            break
        shift = 2 * (MAX_ORDER - k)
        cid = -1
        prev = -1
        for j in range(n):
            i = by_cell[j]
            c = h29[i] >> shift
            if c != prev:
                cid += 1
                prev = c
            dense[i] = cid
        count = np.zeros(cid + 1, np.int64)
        w = 0
        for t in range(m):
            i = todo[t]
            d = dense[i]
            if count[d] < limit:
                count[d] += 1
                out[i] = k
            else:
                todo[w] = i
                w += 1
        m = w
    return out


if HAS_NUMBA:  # module-level, so numba's on-disk cache keeps the compiled kernel
    import numba

    _assign_orders_jit = numba.njit(nogil=True, cache=True)(_assign_orders_loop)
else:  # pragma: no cover
    _assign_orders_jit = None


def assign_orders(h29: np.ndarray, *, first: int, last: int, limit: int,
                  dump: bool = True) -> np.ndarray:
    """The HiPS order of each row, rows given brightest (first) first.

    Parameters
    ----------
    h29 : array of int64
        NESTED order-29 HEALPix index of each row, in priority order.
    first, last : int
        Orders to fill. At each order, each cell takes the ``limit`` first rows
        not yet placed.
    limit : int
        Rows per tile.
    dump : bool
        Put every row still left at ``last`` (True), or leave it at -1.

    Returns
    -------
    numpy.ndarray of int16, -1 for rows not placed.
    """
    h29 = np.ascontiguousarray(h29, np.int64)
    if _assign_orders_jit is None or h29.size < 2:
        return _assign_orders_numpy(h29, int(first), int(last), int(limit), bool(dump))
    return _assign_orders_jit(h29, np.argsort(h29, kind="stable"), int(first), int(last),
                              int(limit), bool(dump))


def _priority(key: np.ndarray | None, rid: np.ndarray, descending: bool) -> np.ndarray:
    """Permutation putting rows in display order: by key (NaN last), ties by row id."""
    if key is None:
        return np.argsort(rid, kind="stable")
    k = np.asarray(key, float)
    k = -k if descending else k
    k = np.where(np.isnan(k), np.inf, k)
    return np.lexsort((rid, k))


def _top_per_cell(h29: np.ndarray, key: np.ndarray | None, rid: np.ndarray, *,
                  descending: bool, order: int, n: int) -> np.ndarray:
    """Indices of the ``n`` first rows (display order) of each order-``order`` cell."""
    prio = _priority(key, rid, descending)
    group = h29[prio] >> (2 * (MAX_ORDER - order))
    o = np.argsort(group, kind="stable")
    gs = group[o]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(gs)) + 1])
    rank = np.arange(gs.size) - np.repeat(starts, np.diff(np.append(starts, gs.size)))
    return np.sort(prio[o[rank < n]])


# ----------------------------------------------------------------------------- input
class _Candidates:
    """What the shallow orders (< S, cells spanning partitions) need, gathered per chunk.

    The rows shown at orders ``< S`` in an order-``S-1`` cell are at most
    ``limit * (S - 1)`` and are the first rows of that cell; so keeping the
    ``limit * (S - 1)`` first rows of each cell of each chunk, and reducing the
    union the same way, keeps every one of them. Also counts rows per
    order-``S-1`` cell (the completeness totals) and the MOC cells.
    """

    def __init__(self, *, shallow: int, limit: int, descending: bool, keyed: bool) -> None:
        self.order = shallow - 1
        self.n = limit * (shallow - 1)
        self.descending, self.keyed = descending, keyed
        self.h29 = np.empty(0, np.int64)
        self.rid = np.empty(0, np.int64)
        self.key = np.empty(0, float)
        self.cells: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.moc = np.empty(0, np.int64)

    def add(self, h29: np.ndarray, rid: np.ndarray, key: np.ndarray | None) -> None:
        if key is None:
            key = np.zeros(h29.size)
        if self.n > 0:
            keep = _top_per_cell(h29, key if self.keyed else None, rid,
                                 descending=self.descending, order=self.order, n=self.n)
            h = np.concatenate([self.h29, h29[keep]])
            r = np.concatenate([self.rid, rid[keep]])
            k = np.concatenate([self.key, key[keep]])
            keep = _top_per_cell(h, k if self.keyed else None, r,
                                 descending=self.descending, order=self.order, n=self.n)
            self.h29, self.rid, self.key = h[keep], r[keep], k[keep]
        cell, count = np.unique(h29 >> (2 * (MAX_ORDER - max(self.order, 0))),
                                return_counts=True)
        self.cells.append(cell)
        self.counts.append(count)
        self.moc = np.union1d(self.moc, np.unique(h29 >> (2 * (MAX_ORDER - MOC_ORDER))))

    def totals(self) -> dict[int, dict[int, int]]:
        """``totals[k][cell]``: rows in each cell of the shallow orders."""
        cells = np.concatenate(self.cells)
        counts = np.concatenate(self.counts)
        out: dict[int, dict[int, int]] = {}
        for k in range(1, self.order + 1):
            u, inv = np.unique(cells >> (2 * (self.order - k)), return_inverse=True)
            out[k] = dict(zip(u.tolist(), np.bincount(inv, counts).astype(int).tolist(),
                              strict=True))
        return out


def _input_units(data: Any) -> dict[str, str]:
    if hasattr(data, "colnames"):
        return {c: str(data[c].unit) for c in data.colnames
                if getattr(data[c], "unit", None) is not None}
    attrs = getattr(data, "attrs", None)
    if isinstance(attrs, dict):
        return dict(attrs.get("units", {}))
    return {}


class _ParquetChunks:
    """Parquet file(s) or folder read in small batches of the columns asked for."""

    def __init__(self, path: str | os.PathLike, chunk_rows: int) -> None:
        import json

        import pyarrow.dataset as ds

        from ._catalogue import UNITS_KEY

        dataset = ds.dataset(str(path), format="parquet")
        self.files = list(dataset.files)
        self.schema = dataset.schema
        self.columns = list(dataset.schema.names)
        self.units = json.loads((dataset.schema.metadata or {}).get(UNITS_KEY, b"{}"))
        self.chunk_rows = chunk_rows

    def chunks(self, columns: list[str] | None = None) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        for path in self.files:
            f = pq.ParquetFile(path)
            for group in range(f.num_row_groups):  # one reader per row group: a reader
                # over the whole file holds on to what it has read (pyarrow 2x)
                for batch in f.iter_batches(batch_size=self.chunk_rows, columns=columns,
                                            row_groups=[group], use_threads=True):
                    if batch.num_rows:
                        yield pa.Table.from_batches([batch])


class _CatalogueChunks:
    """An archive catalogue's partitions read one after the other (pixel order)."""

    def __init__(self, catalogue: Any) -> None:
        self.paths = [partition_path(catalogue.path / "dataset", catalogue.order, p)
                      for p in catalogue.pixels]
        self.columns = list(catalogue.columns)

    def chunks(self, columns: list[str] | None = None) -> Iterator[Any]:
        import pyarrow.parquet as pq

        for path in self.paths:
            names = pq.read_schema(path).names
            cols = None if columns is None else [c for c in columns if c in names]
            if columns is not None and HEALPIX_COLUMN in names:
                cols.append(HEALPIX_COLUMN)
            yield pq.read_table(path, columns=cols)


class _Layout:
    """The HEALPix groups to tile: each a list of files (parquet partitions or fragments)."""

    def __init__(self, order: int, groups: dict[int, list[str]], first_rid: dict[int, int],
                 n_rows: int, ra: str, dec: str, units: dict[str, str], columns: list[str],
                 schema: Any) -> None:
        self.order, self.groups, self.first_rid = int(order), groups, first_rid
        self.n_rows = int(n_rows)
        self.ra, self.dec, self.units, self.columns = ra, dec, units, columns
        self.schema = schema


def _coords(table: Any, ra: str, dec: str) -> np.ndarray:
    from ._catalogue import _check_coords, healpix29

    if HEALPIX_COLUMN in table.column_names:
        return table.column(HEALPIX_COLUMN).to_numpy().astype(np.int64, copy=False)
    return healpix29(*_check_coords(table, ra, dec))


def _key(table: Any, order_by: str | None) -> np.ndarray | None:
    if order_by is None:
        return None
    return table.column(order_by).to_numpy(zero_copy_only=False).astype(float)


def _stream(source: Any, work: Path, *, ra: str, dec: str, order_by: str | None,
            descending: bool, limit: int, max_order: int | None, names: list[str],
            units: dict[str, str], single: Any = None) -> tuple[_Layout, _Candidates]:
    """Scatter the input, chunk by chunk, into per-pixel Arrow fragments under ``work``.

    A first pass over the coordinates chooses the pixel order (at most
    ``partition-rows`` rows a pixel); the second reads the columns written to
    the tiles, numbers the rows, gathers the shallow candidates and writes
    each chunk's rows of each pixel to ``work/<pixel>/<chunk>.arrow``.
    """
    import pyarrow as pa

    from .. import _config
    from ..healpix import order_from_counts
    from ._catalogue import MAX_PARTITIONS

    rows = min(GROUP_ROWS, int(_config.get("partition-rows", 1_000_000)))
    cached: np.ndarray | None = None
    if single is not None:
        cached = _coords(single, ra, dec)
        pix, counts = np.unique(cached >> (2 * (MAX_ORDER - HIST_ORDER)), return_counts=True)
    else:
        pix, counts = np.empty(0, np.int64), np.empty(0, np.int64)
        for chunk in source.chunks([ra, dec]):
            fine = _coords(chunk, ra, dec) >> (2 * (MAX_ORDER - HIST_ORDER))
            p, c = np.unique(fine, return_counts=True)
            pix, inv = np.unique(np.concatenate([pix, p]), return_inverse=True)
            counts = np.bincount(inv, np.concatenate([counts, c])).astype(np.int64)
    if pix.size == 0:
        raise VanotebookInputError("catalogue", "a catalogue with at least one row", "no rows")
    order = order_from_counts(pix, counts, order=HIST_ORDER, max_rows=rows)
    while order > 0 and np.unique(pix >> (2 * (HIST_ORDER - order))).size > MAX_PARTITIONS:
        order -= 1
    if max_order is not None:
        order = min(order, max_order)
    shallow = _shallow(order, max_order)
    cands = _Candidates(shallow=shallow, limit=limit, descending=descending,
                        keyed=order_by is not None)
    keep = list(dict.fromkeys([*names, *([order_by] if order_by else [])]))
    need = list(dict.fromkeys([*keep, ra, dec]))
    groups: dict[int, list[str]] = {}
    writers: dict[int, Any] = {}  # open Arrow files, least recently used first
    start = 0
    schema = None
    chunks = iter([single]) if single is not None else source.chunks(need)
    for i, chunk in enumerate(chunks):
        if i == 0:
            _check_order_by(chunk.schema, order_by)
        h29 = cached if cached is not None else _coords(chunk, ra, dec)
        n = chunk.num_rows
        rid = np.arange(start, start + n, dtype=np.int64)
        start += n
        cands.add(h29, rid, _key(chunk, order_by))
        part = h29 >> (2 * (MAX_ORDER - order))
        o = np.argsort(part, kind="stable")
        ps = part[o]
        edges = np.flatnonzero(np.diff(ps)) + 1
        table = chunk.select(keep)
        schema = schema or table.schema
        table = table.append_column(HEALPIX_COLUMN, pa.array(h29)) \
                     .append_column(ROW_COLUMN, pa.array(rid)).take(pa.array(o))
        del chunk, h29, rid, part
        for a, b in zip(np.concatenate([[0], edges]).tolist(),
                        np.append(edges, ps.size).tolist(), strict=True):
            p = int(ps[a])
            piece = table.slice(a, b - a)
            writer, wschema = writers.pop(p, (None, None))
            if writer is not None and wschema != piece.schema:
                writer.close()
                writer = None
            if writer is None:
                if len(writers) >= MAX_OPEN_WRITERS:  # close the least recently used
                    writers.pop(next(iter(writers)))[0].close()
                path = work / f"{p}.{len(groups.get(p, [])):06d}.arrow"
                work.mkdir(parents=True, exist_ok=True)
                writer = pa.ipc.new_file(str(path), piece.schema)
                groups.setdefault(p, []).append(str(path))
            writer.write_table(piece)
            writers[p] = (writer, piece.schema)
        del table
        pa.default_memory_pool().release_unused()
    for writer, _ in writers.values():
        writer.close()
    layout = _Layout(order, dict(sorted(groups.items())), {}, start, ra, dec, units,
                     list(keep), schema)
    return layout, cands


def _shallow(order: int, max_order: int | None) -> int:
    """First order tiled partition by partition (its cells lie inside one partition)."""
    shallow = max(order, 3)
    return shallow if max_order is None else min(shallow, max_order)


def _read_group(layout: _Layout, pix: int, columns: list[str]):
    """One group's rows (``columns`` + healpix + row number), fragments concatenated."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = layout.groups[pix]
    if files[0].endswith(".arrow"):
        cols = list(dict.fromkeys([*columns, HEALPIX_COLUMN, ROW_COLUMN]))
        parts = []
        for f in files:
            with pa.memory_map(f) as source:
                parts.append(pa.ipc.open_file(source).read_all().select(cols))
        return pa.concat_tables(parts, promote_options="permissive")
    f = pq.ParquetFile(files[0])
    t = f.read(columns=list(dict.fromkeys([*columns, HEALPIX_COLUMN])))
    rid = layout.first_rid[pix] + np.arange(t.num_rows, dtype=np.int64)
    return t.append_column(ROW_COLUMN, pa.array(rid))


# ----------------------------------------------------------------------------- tiles
def _tsv_header(names: list[str]) -> str:
    return "\t".join(names) + "\n"


def _tsv_rows(table: Any) -> bytes:
    import pyarrow.csv as pcsv

    buf = _io.BytesIO()
    pcsv.write_csv(table, buf, pcsv.WriteOptions(include_header=False, delimiter="\t",
                                                  quoting_style="none"))
    return buf.getvalue()


def _tile_path(out: Path, order: int, pix: int) -> Path:
    return out / f"Norder{order}" / f"Dir{(pix // 10_000) * 10_000}" / f"Npix{pix}.tsv"


def _write_file(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data`` (plain os calls: tiles are many and small)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


BATCH_ROWS = 65_536
"""Rows formatted as TSV in one call (whole tiles; bounds the text held in memory)."""


def _write_tiles(out: Path, table: Any, orders: np.ndarray, h29: np.ndarray,
                 totals: Any, names: list[str], perm: np.ndarray | None = None,
                 collect: list | None = None) -> dict[int, int]:
    """Write one tile per (order, cell); ``table.take(perm)`` rows are in display order.

    ``totals`` gives the number of rows in a cell and below (for the
    completeness line): either a dict ``totals[order][cell]`` or a sorted array
    of the order-29 indices of every row of the partition. With ``collect`` (a
    list) nothing is written: ``(path relative to out, bytes)`` pairs are appended.
    """
    import pyarrow as pa

    orders = orders.astype(np.int64)
    cells = h29 >> (2 * (MAX_ORDER - orders))
    o = np.lexsort((cells, orders))  # stable: display order kept inside each tile
    so, sc = orders[o], cells[o]
    edges = np.flatnonzero((np.diff(so) != 0) | (np.diff(sc) != 0)) + 1
    starts = np.concatenate([[0], edges]).astype(np.int64)
    stops = np.append(edges, so.size).astype(np.int64)
    t_order, t_cell = so[starts], sc[starts]
    if isinstance(totals, np.ndarray):
        shift = 2 * (MAX_ORDER - t_order)
        total = (np.searchsorted(totals, (t_cell + 1) << shift)
                 - np.searchsorted(totals, t_cell << shift))
    else:
        total = np.array([totals[k][c] for k, c in zip(t_order.tolist(), t_cell.tolist(),
                                                        strict=True)], np.int64)
    table = table.select(names).take(pa.array(o if perm is None else perm[o]))
    head = _tsv_header(names).encode()
    made: set[Path] = set()
    i = 0
    n_tiles = starts.size
    while i < n_tiles:  # whole tiles, about BATCH_ROWS rows at a time
        j = int(np.searchsorted(starts, starts[i] + BATCH_ROWS, side="right"))
        j = max(j, i + 1)
        a0, b0 = int(starts[i]), int(stops[j - 1])
        text = _tsv_rows(table.slice(a0, b0 - a0))
        ends = np.flatnonzero(np.frombuffer(text, np.uint8) == 10) + 1
        line_end = np.concatenate([[0], ends])
        for t in range(i, j):
            a, b = int(starts[t]) - a0, int(stops[t]) - a0
            path = _tile_path(out, int(t_order[t]), int(t_cell[t]))
            data = (f"# Completeness = {b - a} / {int(total[t])}\n".encode()
                    + head + text[line_end[a]:line_end[b]])
            if collect is not None:
                collect.append((str(path.relative_to(out)), data))
                continue
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            _write_file(path, data)
        i = j
    counts = np.bincount(so, minlength=int(so.max()) + 1 if so.size else 0)
    return {int(k): int(counts[k]) for k in np.flatnonzero(counts)}


def _group_columns(names: list[str], order_by: str | None) -> list[str]:
    return list(dict.fromkeys([*names] + ([order_by] if order_by else [])))


def _tile_group(layout: _Layout, pix: int, out: str, *, order_by: str | None,
                descending: bool, shallow: int, limit: int, max_order: int | None,
                shallow_rids: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Tile the deep orders (>= ``shallow``) of one group; return its shallow rows."""
    t = _read_group(layout, pix, _group_columns(names, order_by))
    return _tile_rows(t, out, order_by=order_by, descending=descending, shallow=shallow,
                      limit=limit, max_order=max_order, shallow_rids=shallow_rids,
                      names=names)


def _tile_rows(t: Any, out: str, *, order_by: str | None, descending: bool, shallow: int,
               limit: int, max_order: int | None, shallow_rids: np.ndarray,
               names: list[str], collect: bool = False) -> dict[str, Any]:
    """`_tile_group` on a group's rows already read; with ``collect`` the tiles are not
    written but returned (``"tiles"``: ``(relative path, bytes)`` pairs)."""
    import pyarrow as pa

    tiles: list | None = [] if collect else None
    h29 = t.column(HEALPIX_COLUMN).to_numpy()
    rid = t.column(ROW_COLUMN).to_numpy()
    key = _key(t, order_by)
    if shallow_rids.size:
        at = np.minimum(np.searchsorted(shallow_rids, rid), shallow_rids.size - 1)
        is_shallow = shallow_rids[at] == rid
    else:
        is_shallow = np.zeros(rid.size, bool)
    sel = np.flatnonzero(is_shallow)
    shallow_table = t.select(names).take(pa.array(sel))
    last = AUTO_MAX_ORDER if max_order is None else max_order
    per_order: dict[int, int] = {}
    deepest = 0
    deep = np.flatnonzero(~is_shallow)
    if deep.size:
        prio = deep[_priority(None if key is None else key[deep], rid[deep], descending)]
        hp = h29[prio]
        orders = assign_orders(hp, first=shallow, last=last, limit=limit)
        deepest = int(orders.max())
        per_order = _write_tiles(Path(out), t.select(names), orders, hp, np.sort(h29),
                                 names, perm=prio, collect=tiles)
    del t
    pa.default_memory_pool().release_unused()
    return {"shallow": shallow_table, "shallow_rid": rid[sel],
            "shallow_key": np.zeros(sel.size) if key is None else key[sel],
            "shallow_h29": h29[sel], "per_order": per_order, "deepest": deepest,
            "tiles": tiles or []}


def _tile_here(layout: _Layout, pixels: list[int], tmp: Path, runner: Any, *,
               readable: bool, **kwargs) -> list[dict[str, Any]]:
    """The groups tiled on workers that cannot write into ``tmp`` (or read the groups).

    Each group is read here where the workers cannot read it (a few groups ahead
    of them: `vanotebook._remote.bounded_map`), tiled on a worker, and its tiles,
    which come back as bytes, are written here as each group finishes.
    """
    from .._remote import bounded_map

    cols = _group_columns(kwargs["names"], kwargs["order_by"])

    def jobs():
        for pix in pixels:
            if readable:
                yield _tile_group_collect, (layout, pix)
            else:
                yield _tile_rows_collect, (_read_group(layout, pix, cols),)

    results: list[Any] = [None] * len(pixels)
    made: set[Path] = set()
    for i, r in bounded_map(runner, _call, ((f, a, str(tmp), kwargs) for f, a in jobs())):
        for rel, data in r.pop("tiles"):
            path = tmp / rel
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            _write_file(path, data)
        results[i] = r
    return results


def _call(func, args, out, kwargs):
    return func(*args, out, **kwargs)


def _tile_group_collect(layout, pix, out, **kwargs):
    t = _read_group(layout, pix, _group_columns(kwargs["names"], kwargs["order_by"]))
    return _tile_rows(t, out, collect=True, **kwargs)


def _tile_rows_collect(t, out, **kwargs):
    return _tile_rows(t, out, collect=True, **kwargs)


def _catalogue_layout(catalogue: Any, *, order_by: str | None, descending: bool, limit: int,
                      max_order: int | None) -> tuple[_Layout, _Candidates]:
    """An archive catalogue as it is: its partitions are the groups."""
    import pyarrow.parquet as pq

    dataset = catalogue.path / "dataset"
    paths = [partition_path(dataset, catalogue.order, p) for p in catalogue.pixels]
    shallow = _shallow(catalogue.order, max_order)
    cands = _Candidates(shallow=shallow, limit=limit, descending=descending,
                        keyed=order_by is not None)
    first: dict[int, int] = {}
    start = 0
    schema = None
    for p, path in zip(catalogue.pixels.tolist(), paths, strict=True):
        f = pq.ParquetFile(path)
        schema = schema or f.schema_arrow
        t = f.read(columns=[HEALPIX_COLUMN] + ([order_by] if order_by else []))
        first[int(p)] = start
        rid = np.arange(start, start + t.num_rows, dtype=np.int64)
        start += t.num_rows
        cands.add(t.column(HEALPIX_COLUMN).to_numpy(), rid, _key(t, order_by))
    groups = {int(p): [str(path)] for p, path in zip(catalogue.pixels.tolist(), paths,
                                                      strict=True)}
    return _Layout(catalogue.order, groups, first, start, catalogue.ra, catalogue.dec,
                   dict(catalogue.units), list(catalogue.columns), schema), cands


# ----------------------------------------------------------------------------- metadata
_VOTABLE_TYPES = {"b": "boolean", "i": "long", "f": "double", "O": "char"}


def _metadata_xml(schema: Any, names: list[str], ra: str, dec: str,
                  units: dict[str, str]) -> str:
    from xml.sax.saxutils import quoteattr

    fields = []
    for name in names:
        attrs = {"name": name, "datatype": _VOTABLE_TYPES[_kind(schema, name)]}
        if attrs["datatype"] == "char":
            attrs["arraysize"] = "*"
        if name == ra:
            attrs["ucd"] = "pos.eq.ra;meta.main"
        elif name == dec:
            attrs["ucd"] = "pos.eq.dec;meta.main"
        unit = units.get(name) or ("deg" if name in (ra, dec) else None)
        if unit:
            attrs["unit"] = unit
        fields.append("      <FIELD " + " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items())
                      + "/>")
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">',
        "  <RESOURCE>", '    <TABLE name="catalogue">', *fields,
        "      <DATA><TABLEDATA></TABLEDATA></DATA>", "    </TABLE>", "  </RESOURCE>",
        "</VOTABLE>", ""])


def _kind(schema: Any, name: str) -> str:
    import pyarrow as pa

    t = schema.field(name).type
    if pa.types.is_boolean(t):
        return "b"
    if pa.types.is_integer(t):
        return "i"
    if pa.types.is_floating(t):
        return "f"
    return "O"

def _check_order_by(schema: Any, order_by: str | None) -> None:
    if order_by is not None and _kind(schema, order_by) not in "if":
        raise VanotebookInputError("order_by", "a numeric column",
                                   f"{order_by} of type {schema.field(order_by).type}")


# ----------------------------------------------------------------------------- public
def write_catalogue_hips(catalogue: Any, out: str | os.PathLike, *, ra: str = "ra",
                         dec: str = "dec", order_by: str | None = None,
                         descending: bool = False, max_rows_per_tile: int = 500,
                         max_order: int | None = None, columns: list[str] | None = None,
                         name: str | None = None, client: Any = None,
                         overwrite: bool = False) -> Path:
    """Write a progressive catalogue HiPS that Aladin Lite displays level by level.

    Parameters
    ----------
    catalogue
        Anything `vanotebook.io.parse_catalogue` takes (Table, pandas or dask
        DataFrame, FITS/VOTable/ECSV/parquet path or parquet folder), or an
        archive `Catalogue` (read partition by partition). Parquet inputs and
        dask DataFrames are read chunk by chunk, never whole.
    out : path
        The HiPS folder to create (written atomically).
    ra, dec : str
        Coordinate columns in degrees (ICRS). Ignored for an archive Catalogue.
    order_by : str, optional
        Column that decides which rows show first (e.g. a magnitude); default
        the input order.
    descending : bool
        Largest ``order_by`` first (for fluxes). NaN values always come last.
    max_rows_per_tile : int
        Rows per tile at each order.
    max_order : int, optional
        Deepest order (>= 3); it holds every row still left there. Default:
        deep enough that every tile keeps the bound (at most order 14).
    columns : list of str, optional
        Columns written to the tiles (the coordinates always are).
    name : str, optional
        The title recorded in ``properties``.
    client : distributed.Client, optional
        Tiles the partitions on this cluster. Where its workers cannot read the
        input or write into ``out``'s folder (workers of another account, a private
        folder), each group's rows are read here and sent, and its tiles come back to
        be written here.
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    from .. import _config
    from ..cluster import get_client
    from ..io import atomic_dir
    from ..provenance import record
    from ._catalogue import Catalogue, _Source

    check_positive("max_rows_per_tile", max_rows_per_tile, integer=True)
    limit = int(max_rows_per_tile)
    if max_order is not None:
        if isinstance(max_order, bool) or not isinstance(max_order, int | np.integer) \
                or not 3 <= max_order <= AUTO_MAX_ORDER + 6:
            raise VanotebookInputError("max_order", "an integer from 3 to 20", max_order)
        max_order = int(max_order)
    if order_by is not None and not isinstance(order_by, str):
        raise VanotebookInputError("order_by", "a column name or None", order_by)
    out = Path(out)
    params = {"order_by": order_by, "descending": bool(descending),
              "max_rows_per_tile": limit, "max_order": max_order, "columns": columns,
              "ra": ra, "dec": dec,
              "catalogue": (catalogue.name if isinstance(catalogue, Catalogue) else
                            str(Path(catalogue).resolve())
                            if isinstance(catalogue, str | os.PathLike) else
                            type(catalogue).__name__), "name": name}
    if isinstance(catalogue, Catalogue):
        params["archive"] = str(Path(catalogue._archive).resolve())
    runner = get_client(client)
    chunk_rows = min(CHUNK_ROWS, int(_config.get("partition-rows", 1_000_000)))
    # the input, as a source of chunks (nothing read yet but for small in-memory inputs)
    single = None
    source: Any = None
    if isinstance(catalogue, Catalogue):
        ra, dec = catalogue.ra, catalogue.dec
        all_columns, units = list(catalogue.columns), dict(catalogue.units)
        if max_order is not None and catalogue.order > max_order:
            source = _CatalogueChunks(catalogue)  # partitions finer than max_order
    elif isinstance(catalogue, str | os.PathLike) and (
            Path(catalogue).is_dir() or Path(catalogue).suffix.lower() in (".parquet", ".pq")):
        if not Path(catalogue).exists():
            raise VanotebookInputError("catalogue", "an existing catalogue file",
                                       str(catalogue))
        source = _ParquetChunks(catalogue, chunk_rows)
        all_columns, units = source.columns, dict(source.units)
    else:
        from ..io import parse_catalogue

        data = parse_catalogue(catalogue, ra=ra, dec=dec)
        source = _Source(data, ra=ra, dec=dec, chunk_rows=chunk_rows, client=runner)
        single = source.single
        all_columns, units = list(source.columns), _input_units(data) or dict(source.units)
    all_columns = [c for c in all_columns if c not in (HEALPIX_COLUMN, ROW_COLUMN)]
    for arg, col in (("ra", ra), ("dec", dec)):
        if col not in all_columns:
            raise VanotebookInputError(arg, "a column of the catalogue", col)
    if columns is None:
        names = list(all_columns)
    else:
        missing = [c for c in columns if c not in all_columns]
        if missing:
            raise VanotebookInputError("columns", f"columns of the catalogue "
                                       f"({', '.join(all_columns[:20])})", missing)
        names = list(dict.fromkeys([ra, dec, *columns]))
    if order_by is not None and order_by not in all_columns:
        raise VanotebookInputError("order_by", f"a column of the catalogue "
                                   f"({', '.join(all_columns[:20])})", order_by)
    with record("vanotebook.archive.write_catalogue_hips", params) as prov, \
            atomic_dir(out, overwrite=overwrite) as tmp:
        work = tmp / "_partitions"
        if isinstance(catalogue, Catalogue) and source is None:
            layout, cands = _catalogue_layout(catalogue, order_by=order_by,
                                              descending=descending, limit=limit,
                                              max_order=max_order)
            _check_order_by(layout.schema, order_by)
        else:
            layout, cands = _stream(source, work, ra=ra, dec=dec, order_by=order_by,
                                    descending=descending, limit=limit, max_order=max_order,
                                    names=names, units=units, single=single)
        shallow = _shallow(layout.order, max_order)
        # the orders whose cells span several partitions, from the candidates
        prio = _priority(None if order_by is None else cands.key, cands.rid, descending)
        orders = assign_orders(cands.h29[prio], first=1, last=shallow - 1, limit=limit,
                               dump=False)
        shallow_rids = np.sort(cands.rid[prio][orders >= 0])
        totals = cands.totals()
        moc_cells = cands.moc
        del cands, prio, orders
        # each group tiles its own deep orders
        kwargs = {"order_by": order_by, "descending": descending, "shallow": shallow,
                  "limit": limit, "max_order": max_order, "names": names}
        pixels = list(layout.groups)
        # workers of another account may neither read the groups (a personal archive,
        # fragments in tmp) nor write into tmp: then rows and tiles go by value
        from .._remote import workers_can_read, workers_can_write

        readable = runner is not None and workers_can_read(
            runner, [f for files in layout.groups.values() for f in files])
        if runner is not None and not (readable and workers_can_write(runner, tmp)):
            results = _tile_here(layout, pixels, tmp, runner, readable=readable,
                                 shallow_rids=shallow_rids, **kwargs)
        elif runner is not None:
            futures = runner.map(_tile_group, [layout] * len(pixels), pixels,
                                 [str(tmp)] * len(pixels), shallow_rids=shallow_rids,
                                 pure=False, **kwargs)
            results = runner.gather(futures)
        else:
            with ThreadPoolExecutor(max_workers=2) as pool:
                results = list(pool.map(lambda p: _tile_group(
                    layout, p, str(tmp), shallow_rids=shallow_rids, **kwargs), pixels))
        import pyarrow as pa

        per_order: dict[int, int] = {}
        deepest = 0
        for r in results:
            deepest = max(deepest, r["deepest"])
            for k, n in r["per_order"].items():
                per_order[k] = per_order.get(k, 0) + n
        srows = pa.concat_tables([r["shallow"] for r in results])
        s_rid = np.concatenate([r["shallow_rid"] for r in results])
        s_key = np.concatenate([r["shallow_key"] for r in results])
        s_h29 = np.concatenate([r["shallow_h29"] for r in results])
        del results
        schema = srows.schema
        n_rows = layout.n_rows
        head = _tsv_header(names)
        if srows.num_rows:
            prio = _priority(None if order_by is None else s_key, s_rid, descending)
            s_orders = assign_orders(s_h29[prio], first=1, last=shallow - 1, limit=limit,
                                     dump=False)
            srows = srows.take(pa.array(prio))
            for k, n in _write_tiles(tmp, srows, s_orders, s_h29[prio], totals,
                                     names).items():
                per_order[k] = per_order.get(k, 0) + n
                deepest = max(deepest, k)
            for k in ALLSKY_ORDERS:  # Aladin Lite's first two orders, one file each
                sel = np.flatnonzero(s_orders == k)
                (tmp / f"Norder{k}").mkdir(exist_ok=True)
                with open(tmp / f"Norder{k}" / "Allsky.tsv", "wb") as f:
                    f.write(f"# Completeness = {sel.size} / {n_rows}\n{head}".encode())
                    f.write(_tsv_rows(srows.take(pa.array(sel))))
        else:
            for k in ALLSKY_ORDERS:
                (tmp / f"Norder{k}").mkdir(exist_ok=True)
                (tmp / f"Norder{k}" / "Allsky.tsv").write_text(
                    f"# Completeness = 0 / {n_rows}\n{head}")
        if work.exists():
            shutil.rmtree(work)
        hips_order = max(deepest, 3)
        # coverage, metadata, properties
        from mocpy import MOC

        moc = MOC.from_healpix_cells(moc_cells, np.full(moc_cells.size, MOC_ORDER, np.uint8),
                                     MOC_ORDER)
        moc.save(str(tmp / "Moc.fits"), format="fits", overwrite=True)
        (tmp / "Metadata.xml").write_text(_metadata_xml(
            schema, names, ra, dec, layout.units))
        centre = _centre(moc)
        title = name or params["catalogue"]
        lines = [
            f"creator_did = ivo://vanotebook/hips/{_did(title)}",
            f"obs_title = {title}",
            "dataproduct_type = catalog",
            "hips_version = 1.4",
            "hips_builder = vanotebook.archive.write_catalogue_hips",
            "hips_frame = equatorial",
            "hips_order_min = 1",
            f"hips_order = {hips_order}",
            "hips_tile_format = tsv",
            f"hips_cat_nrows = {n_rows}",
            f"hips_cat_max_rows_per_tile = {limit}",
            f"hips_initial_ra = {centre[0]:.6f}",
            f"hips_initial_dec = {centre[1]:.6f}",
            f"moc_sky_fraction = {moc.sky_fraction:.6g}",
            "hips_status = private master unclonable",
            *[f"hips_cat_nrows_order{k} = {per_order[k]}" for k in sorted(per_order)],
        ]
        if order_by is not None:
            lines.append(f"hips_cat_order_by = {order_by} {'desc' if descending else 'asc'}")
        (tmp / "properties").write_text("\n".join(lines) + "\n")
        prov.parameters["n_rows"] = n_rows
        _record_files(prov, catalogue, tmp)
        (tmp / "provenance.json").write_text(prov.finish().to_json())
    return out


def _record_files(prov: Any, catalogue: Any, tmp: Path) -> None:
    """Inputs (the catalogue's files) and outputs (every file of the HiPS) with their sha256."""
    from ..healpix import partition_path
    from ._catalogue import Catalogue

    if isinstance(catalogue, Catalogue):
        for pix in catalogue.pixels.tolist():
            path = partition_path(catalogue.path / "dataset", catalogue.order, pix)
            prov.inputs.append({"path": str(path), "sha256": catalogue._checksums.get(pix, "")})
    elif isinstance(catalogue, str | os.PathLike):
        path = Path(catalogue).resolve()
        for f in sorted(path.rglob("*.parquet")) if path.is_dir() else [path]:
            prov.add_input(f)
    for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
        prov.add_output(f)
        prov.outputs[-1]["path"] = f.relative_to(tmp).as_posix()


def _did(title: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in title) or "catalogue"


def _centre(moc: Any) -> tuple[float, float]:
    """A point of the coverage (the mean direction of its cells)."""
    import astropy.units as u
    import cdshealpix.nested as cn

    cells = np.concatenate([np.arange(a, b) for a, b in
                            (moc.to_depth29_ranges >> (2 * (MAX_ORDER - MOC_ORDER)))])
    if cells.size == 0:
        return 0.0, 0.0
    cells = cells[:: max(1, cells.size // 100_000)]
    lon, lat = cn.healpix_to_lonlat(cells.astype(np.uint64), MOC_ORDER)
    lon, lat = lon.to_value(u.rad), lat.to_value(u.rad)
    v = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)]).mean(1)
    return (float(np.degrees(np.arctan2(v[1], v[0])) % 360),
            float(np.degrees(np.arctan2(v[2], np.hypot(v[0], v[1])))))


def read_hips_tile(path: str | os.PathLike):
    """Read one tile (or Allsky.tsv) back as an astropy Table (for checks and tests)."""
    from astropy.io import ascii as aascii
    from astropy.table import Table

    text = Path(path).read_text().splitlines()
    if len(text) < 2:
        raise VanotebookInputError("path", "a catalogue HiPS tile", str(path))
    names = text[1].split("\t")
    if len(text) == 2:
        return Table(names=names)
    return aascii.read(text[2:], format="no_header", delimiter="\t", names=names,
                       guess=False, fast_reader=True)
