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

Memory: the input is first laid out as HEALPix partitions (an archive
`Catalogue` already is). A first pass reads only the ordering column of each
partition and keeps its ``max_rows_per_tile * (S - 1)`` first rows, which
provably contain every row that the shallow orders ``< S`` (whose cells span
several partitions) show; a second pass tiles each partition alone. So memory
holds one partition at a time plus the few shallow rows.
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
from ..healpix import MAX_ORDER, partition_path

__all__ = ["assign_orders", "write_catalogue_hips"]

ROW_COLUMN = "_hips_row"
HEALPIX_COLUMN = "_healpix_29"
AUTO_MAX_ORDER = 14
"""Deepest order chosen automatically; rows still left there share their tile."""
MOC_ORDER = 10
ALLSKY_ORDERS = (1, 2)  # Aladin Lite reads these two orders as Allsky.tsv files


# ----------------------------------------------------------------------------- kernel
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
    h29 = np.asarray(h29, np.int64)
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


def _priority(key: np.ndarray | None, rid: np.ndarray, descending: bool) -> np.ndarray:
    """Permutation putting rows in display order: by key (NaN last), ties by row id."""
    if key is None:
        return np.argsort(rid, kind="stable")
    k = np.asarray(key, float)
    k = -k if descending else k
    k = np.where(np.isnan(k), np.inf, k)
    return np.lexsort((rid, k))


# ----------------------------------------------------------------------------- input
class _Numbered:
    """Re-iterable chunks of the input with a running row number (the input order)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def __iter__(self) -> Iterator[Any]:
        import pyarrow as pa

        start = 0
        for chunk in self.source.chunks():
            n = chunk.num_rows
            yield chunk.append_column(ROW_COLUMN, pa.array(np.arange(start, start + n)))
            start += n


class _Layout:
    """HEALPix-partitioned parquet: the dataset folder, its order and pixels."""

    def __init__(self, dataset: Path, order: int, pixels: np.ndarray, counts: np.ndarray,
                 ra: str, dec: str, units: dict[str, str], columns: list[str]) -> None:
        self.dataset, self.order = dataset, int(order)
        self.pixels = np.asarray(pixels, np.int64)
        self.counts = np.asarray(counts, np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.ra, self.dec, self.units, self.columns = ra, dec, units, columns

    def path(self, pix: int) -> Path:
        return partition_path(self.dataset, self.order, pix)


def _input_units(data: Any) -> dict[str, str]:
    if hasattr(data, "colnames"):
        return {c: str(data[c].unit) for c in data.colnames
                if getattr(data[c], "unit", None) is not None}
    attrs = getattr(data, "attrs", None)
    if isinstance(attrs, dict):
        return dict(attrs.get("units", {}))
    return {}


def _layout(catalogue: Any, work: Path, *, ra: str, dec: str, max_order: int | None,
            client: Any) -> _Layout:
    """Lay the input out as HEALPix partitions (an archive Catalogue already is one)."""
    import pyarrow.parquet as pq

    from .. import _config
    from ..io import parquet_units, parse_catalogue
    from ._catalogue import Catalogue, _Source, write_catalogue

    if isinstance(catalogue, Catalogue) and (max_order is None or catalogue.order <= max_order):
        md = [pq.read_metadata(partition_path(catalogue.path / "dataset", catalogue.order, p))
              for p in catalogue.pixels]
        return _Layout(catalogue.path / "dataset", catalogue.order, catalogue.pixels,
                       np.array([m.num_rows for m in md], np.int64), catalogue.ra,
                       catalogue.dec, dict(catalogue.units), list(catalogue.columns))
    if isinstance(catalogue, Catalogue):  # partitions finer than max_order: re-partition
        units, columns = dict(catalogue.units), list(catalogue.columns)
        ra, dec = catalogue.ra, catalogue.dec
        data: Any = str(catalogue.path / "dataset")
    else:
        is_path = isinstance(catalogue, str | os.PathLike)
        if is_path and (Path(catalogue).is_dir() or
                        Path(catalogue).suffix.lower() in (".parquet", ".pq")):
            parse_catalogue(catalogue, ra=ra, dec=dec, lazy=True)  # checks columns
            data = str(catalogue)
            units = parquet_units(catalogue)
        else:
            data = parse_catalogue(catalogue, ra=ra, dec=dec)
            units = _input_units(data)
        columns = []
    rows = int(_config.get("partition-rows", 1_000_000))
    src = _Source(data, ra=ra, dec=dec, chunk_rows=rows, client=client)
    columns = columns or [c for c in src.columns if c not in (HEALPIX_COLUMN, ROW_COLUMN)]
    for arg, col in (("ra", ra), ("dec", dec)):
        if col not in src.columns:
            raise VanotebookInputError(arg, "a column of the catalogue", col)
    if src.single is not None:
        import pyarrow as pa

        feed: Any = src.single.append_column(ROW_COLUMN,
                                             pa.array(np.arange(src.single.num_rows)))
    else:
        feed = _Numbered(src)
    info = write_catalogue(feed, work, name="hips", ra=ra, dec=dec, order=None,
                           max_rows=rows, chunk_rows=rows, client=None)
    order = info["order"]
    if max_order is not None and order > max_order:
        shutil.rmtree(work)
        info = write_catalogue(feed, work, name="hips", ra=ra, dec=dec, order=max_order,
                               max_rows=rows, chunk_rows=rows, client=None)
    parts = info["partitions"]
    return _Layout(work / "dataset", info["order"], parts["Npix"].to_numpy(),
                   parts["num_rows"].to_numpy(), ra, dec, units, columns)


# ----------------------------------------------------------------------------- passes
def _read(layout: _Layout, pix: int, columns: list[str] | None):
    import pyarrow.parquet as pq

    f = pq.ParquetFile(layout.path(pix))
    names = f.schema_arrow.names
    if columns is not None:
        columns = [c for c in dict.fromkeys(columns) if c in names]
    return f.read(columns=columns)


def _rid(table: Any, layout: _Layout, pix: int) -> np.ndarray:
    if ROW_COLUMN in table.column_names:
        return table.column(ROW_COLUMN).to_numpy().astype(np.int64)
    i = int(np.searchsorted(layout.pixels, pix))
    return layout.offsets[i] + np.arange(table.num_rows, dtype=np.int64)


def _key(table: Any, order_by: str | None) -> np.ndarray | None:
    if order_by is None:
        return None
    return table.column(order_by).to_numpy(zero_copy_only=False).astype(float)


def _candidates(layout: _Layout, pix: int, *, order_by: str | None, descending: bool,
                shallow: int, limit: int) -> dict[str, np.ndarray]:
    """The rows of one partition that the orders below ``shallow`` may show."""
    t = _read(layout, pix, [HEALPIX_COLUMN, ROW_COLUMN] + ([order_by] if order_by else []))
    h29 = t.column(HEALPIX_COLUMN).to_numpy()
    rid = _rid(t, layout, pix)
    key = _key(t, order_by)
    prio = _priority(key, rid, descending)
    group = h29[prio] >> (2 * (MAX_ORDER - max(layout.order, shallow - 1)))
    o = np.argsort(group, kind="stable")
    gs = group[o]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(gs)) + 1])
    rank = np.arange(gs.size) - np.repeat(starts, np.diff(np.append(starts, gs.size)))
    keep = prio[o[rank < limit * (shallow - 1)]]
    cell, counts = np.unique(h29 >> (2 * (MAX_ORDER - (shallow - 1))), return_counts=True)
    moc = np.unique(h29 >> (2 * (MAX_ORDER - MOC_ORDER)))
    return {"h29": h29[keep], "rid": rid[keep],
            "key": np.zeros(keep.size) if key is None else key[keep],
            "cell": cell, "count": counts, "moc": moc}


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


def _write_tiles(out: Path, table: Any, orders: np.ndarray, h29: np.ndarray,
                 totals: dict[int, dict[int, int]] | None, names: list[str]) -> dict[int, int]:
    """Write one tile per (order, cell); ``table`` rows are in display order.

    ``totals[order][cell]`` is the number of rows in the cell and below (for
    the completeness line); without it the rows given are counted.
    """
    import pyarrow as pa

    cells = h29 >> (2 * (MAX_ORDER - orders.astype(np.int64)))
    o = np.lexsort((cells, orders))  # stable: display order kept inside each tile
    so, sc = orders[o], cells[o]
    edges = np.flatnonzero((np.diff(so) != 0) | (np.diff(sc) != 0)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.append(edges, so.size)
    table = table.select(names).take(pa.array(o))
    head = _tsv_header(names)
    per_order: dict[int, int] = {}
    made: set[Path] = set()
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        k, c = int(so[a]), int(sc[a])
        path = _tile_path(out, k, c)
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        total = (totals or {}).get(k, {}).get(c)
        if total is None:
            total = int(np.count_nonzero((h29 >> (2 * (MAX_ORDER - k))) == c))
        with open(path, "wb") as f:
            f.write(f"# Completeness = {b - a} / {total}\n{head}".encode())
            f.write(_tsv_rows(table.slice(a, b - a)))
        per_order[k] = per_order.get(k, 0) + (b - a)
    return per_order


def _tile_partition(layout: _Layout, pix: int, out: str, *, order_by: str | None,
                    descending: bool, shallow: int, limit: int, max_order: int | None,
                    shallow_rids: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Tile the deep orders (>= ``shallow``) of one partition; return its shallow rows."""
    import pyarrow as pa

    need = list(dict.fromkeys([*names, HEALPIX_COLUMN, ROW_COLUMN] +
                              ([order_by] if order_by else [])))
    t = _read(layout, pix, need)
    h29 = t.column(HEALPIX_COLUMN).to_numpy()
    rid = _rid(t, layout, pix)
    is_shallow = np.isin(rid, shallow_rids)
    shallow_table = t.filter(pa.array(is_shallow)).select(names)
    deep = ~is_shallow
    last = AUTO_MAX_ORDER if max_order is None else max_order
    per_order: dict[int, int] = {}
    deepest = 0
    if deep.any():
        td = t.filter(pa.array(deep))
        hd, rd = h29[deep], rid[deep]
        key = _key(td, order_by)
        prio = _priority(key, rd, descending)
        orders = assign_orders(hd[prio], first=shallow, last=last, limit=limit)
        deepest = int(orders.max())
        totals: dict[int, dict[int, int]] = {}
        for k in np.unique(orders).tolist():
            cells, counts = np.unique(h29 >> (2 * (MAX_ORDER - k)), return_counts=True)
            totals[k] = dict(zip(cells.tolist(), counts.tolist(), strict=True))
        per_order = _write_tiles(Path(out), td.take(pa.array(prio)), orders, hd[prio],
                                 totals, names)
    return {"shallow": shallow_table, "shallow_rid": rid[is_shallow],
            "shallow_key": (np.zeros(int(is_shallow.sum())) if order_by is None
                            else _key(t, order_by)[is_shallow]),
            "shallow_h29": h29[is_shallow], "per_order": per_order, "deepest": deepest}


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
        archive `Catalogue` (read partition by partition).
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
        Tiles the partitions on this cluster (the folder must be shared).
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    from ..cluster import get_client
    from ..io import atomic_dir
    from ..provenance import record
    from ._catalogue import Catalogue

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
                            str(catalogue) if isinstance(catalogue, str | os.PathLike) else
                            type(catalogue).__name__)}
    runner = get_client(client)
    with record("vanotebook.archive.write_catalogue_hips", params) as prov, \
            atomic_dir(out, overwrite=overwrite) as tmp:
        work = tmp / "_partitions"
        layout = _layout(catalogue, work, ra=ra, dec=dec, max_order=max_order, client=runner)
        ra, dec = layout.ra, layout.dec
        if columns is None:
            names = list(layout.columns)
        else:
            missing = [c for c in columns if c not in layout.columns]
            if missing:
                raise VanotebookInputError("columns", f"columns of the catalogue "
                                           f"({', '.join(layout.columns[:20])})", missing)
            names = list(dict.fromkeys([ra, dec, *columns]))
        if order_by is not None and order_by not in layout.columns:
            raise VanotebookInputError("order_by", f"a column of the catalogue "
                                       f"({', '.join(layout.columns[:20])})", order_by)
        if order_by is not None:
            import pyarrow.parquet as pq

            schema = pq.read_schema(layout.path(int(layout.pixels[0])))
            if _kind(schema, order_by) not in "if":
                raise VanotebookInputError("order_by", "a numeric column",
                                           f"{order_by} of type {schema.field(order_by).type}")
        shallow = max(layout.order, 3)
        if max_order is not None:
            shallow = min(shallow, max_order)
        pixels = layout.pixels.tolist()
        # pass 1: the candidates of the orders whose cells span several partitions
        cands = [_candidates(layout, p, order_by=order_by, descending=descending,
                             shallow=shallow, limit=limit) for p in pixels]
        h29 = np.concatenate([c["h29"] for c in cands])
        rid = np.concatenate([c["rid"] for c in cands])
        key = np.concatenate([c["key"] for c in cands])
        prio = _priority(None if order_by is None else key, rid, descending)
        orders = assign_orders(h29[prio], first=1, last=shallow - 1, limit=limit, dump=False)
        shallow_rids = np.sort(rid[prio][orders >= 0])
        totals: dict[int, dict[int, int]] = {}
        hist_cells = np.concatenate([c["cell"] for c in cands])
        hist_counts = np.concatenate([c["count"] for c in cands])
        for k in range(1, shallow):
            cell = hist_cells >> (2 * (shallow - 1 - k))
            u, inv = np.unique(cell, return_inverse=True)
            totals[k] = dict(zip(u.tolist(), np.bincount(inv, hist_counts).astype(int).tolist(),
                                 strict=True))
        moc_cells = np.unique(np.concatenate([c["moc"] for c in cands]))
        del cands, h29, rid, key, prio, orders
        # pass 2: each partition tiles its own deep orders
        kwargs = {"order_by": order_by, "descending": descending, "shallow": shallow,
                  "limit": limit, "max_order": max_order, "names": names}
        if runner is not None:
            futures = runner.map(_tile_partition, [layout] * len(pixels), pixels,
                                 [str(tmp)] * len(pixels), shallow_rids=shallow_rids,
                                 pure=False, **kwargs)
            results = runner.gather(futures)
        else:
            with ThreadPoolExecutor(max_workers=2) as pool:
                results = list(pool.map(lambda p: _tile_partition(
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
        if srows.num_rows:
            prio = _priority(None if order_by is None else s_key, s_rid, descending)
            s_orders = assign_orders(s_h29[prio], first=1, last=shallow - 1, limit=limit,
                                     dump=False)
            srows = srows.take(pa.array(prio))
            for k, n in _write_tiles(tmp, srows, s_orders, s_h29[prio], totals,
                                     names).items():
                per_order[k] = per_order.get(k, 0) + n
                deepest = max(deepest, k)
            head = _tsv_header(names)
            for k in ALLSKY_ORDERS:  # Aladin Lite's first two orders, one file each
                sel = np.flatnonzero(s_orders == k)
                (tmp / f"Norder{k}").mkdir(exist_ok=True)
                with open(tmp / f"Norder{k}" / "Allsky.tsv", "wb") as f:
                    f.write(f"# Completeness = {sel.size} / {int(layout.counts.sum())}\n"
                            f"{head}".encode())
                    f.write(_tsv_rows(srows.take(pa.array(sel))))
        else:
            for k in ALLSKY_ORDERS:
                (tmp / f"Norder{k}").mkdir(exist_ok=True)
                (tmp / f"Norder{k}" / "Allsky.tsv").write_text(
                    f"# Completeness = 0 / {int(layout.counts.sum())}\n{_tsv_header(names)}")
        if work.exists():
            shutil.rmtree(work)
        n_rows = int(layout.counts.sum())
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
        (tmp / "provenance.json").write_text(prov.finish().to_json())
    return out


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
