"""The out-of-core cross-match: HEALPix partitions with margins, mapped on Dask.

1. A pixel histogram of both catalogues (order 12, one pass) gives the
   densities and the partition order: the coarsest at which no pixel holds
   more than ``partition-rows`` left rows, capped so pixels stay three radii
   wide.
2. Left rows are tagged with their pixel; right rows with their pixel and
   copied to every margin pixel (`vanotebook.healpix.margin_pixels`).
3. Both are shuffled (``set_index`` with the same known divisions, so Dask
   spills to disk rather than holding a catalogue in memory) into aligned
   partitions of whole pixels.
4. Each partition is matched pixel by pixel with the in-memory kernels; a left
   row lives in exactly one pixel, so no pair is lost or found twice.
5. The completeness is fitted on all pairs and the probabilities added.

The N-way match (`crossmatch_many_dask`) partitions the primary the same way,
copies every other catalogue's rows into the margins, fits each pairwise
completeness on all partitions' statistics, then weighs each partition with
those global priors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from .. import _config, healpix
from ..cluster import get_client
from . import _core as C
from . import _nway

__all__ = ["crossmatch_dask", "crossmatch_many_dask"]

_FINE = 12
MATCH_PREFIX = "xmatch-partition"  # the key prefix of the partition match tasks
_PIX = healpix.PIXEL_COLUMN


def _to_dask(table, npartitions: int = 1):
    import dask.dataframe as dd

    if type(table).__module__.startswith("dask"):
        return table
    return dd.from_pandas(table.to_pandas(index=False), npartitions=npartitions)


def _histogram(df: pd.DataFrame, spec: C.MatchSpec, epoch) -> pd.DataFrame:
    ra, dec = C.positions(df, spec, epoch)
    ok = np.isfinite(ra) & np.isfinite(dec)
    pix, counts = np.unique(healpix.pixel_index(ra[ok], dec[ok], _FINE), return_counts=True)
    extra = pd.DataFrame({"pix": [-1], "n": [int((~ok).sum())]})  # NaN rows
    return pd.concat([pd.DataFrame({"pix": pix, "n": counts}), extra], ignore_index=True)


def _tag_left(df: pd.DataFrame, spec, epoch, order: int) -> pd.DataFrame:
    ra, dec = C.positions(df, spec, epoch)
    ok = np.isfinite(ra) & np.isfinite(dec)
    out = df.loc[ok].copy()
    out["_ra"], out["_dec"] = ra[ok], dec[ok]
    out[_PIX] = healpix.pixel_index(ra[ok], dec[ok], order)
    return out


_RID = "_rid"
_ROWS_PER_INPUT_PARTITION = 2**40


def _tag_right(df: pd.DataFrame, spec, epoch, order: int, keep: np.ndarray,
               partition_info=None) -> pd.DataFrame:
    ra, dec = C.positions(df, spec, epoch)
    ok = np.isfinite(ra) & np.isfinite(dec)
    base = df.loc[ok].copy()
    base["_ra"], base["_dec"] = ra[ok], dec[ok]
    number = partition_info["number"] if partition_info else 0
    # one id per right row, shared by its margin copies, so a partition can drop the copies
    base[_RID] = number * _ROWS_PER_INPUT_PARTITION + np.flatnonzero(ok).astype(np.int64)
    base[_PIX] = healpix.pixel_index(ra[ok], dec[ok], order)
    rows, pix = healpix.margin_pixels(ra[ok], dec[ok], order, spec.radius)
    margin = base.iloc[rows].copy()
    margin[_PIX] = pix
    out = pd.concat([base, margin], ignore_index=True)
    return out[np.isin(out[_PIX].to_numpy(), keep)]


def _match_partition(left: pd.DataFrame, right: pd.DataFrame, spec, rerr_typical,
                     lcols, rcols) -> pd.DataFrame:
    """Match one partition of whole pixels in one call.

    Every right row within the radius of a left row of pixel P is in P (its own
    rows or margin copies), so matching the partition's left rows against its
    distinct right rows (margin copies dropped by row id) finds exactly the
    pairs a pixel-by-pixel match would, each once.
    """
    if len(left) == 0:
        return _empty(left, right, spec, lcols, rcols)
    right = right.drop_duplicates(_RID) if len(right) else right
    errors = spec.errors or {"left": None, "right": None}
    lerr = C.error_arrays(left, errors["left"], "left")
    rerr = C.error_arrays(right, errors["right"], "right")
    pairs = C.match_arrays(left["_ra"].to_numpy(), left["_dec"].to_numpy(),
                           right["_ra"].to_numpy(), right["_dec"].to_numpy(), lerr, rerr, spec,
                           rerr_typical=rerr_typical)
    data = {}
    for cols, frame, rows, suffix in ((lcols, left, pairs.left, spec.suffixes[0]),
                                      (rcols, right, pairs.right, spec.suffixes[1])):
        for c in cols:
            data[f"{c}{suffix}"] = frame[c].to_numpy().take(rows)
    data.update({"separation": pairs.separation / C.ARCSEC, "_f": pairs.f,
                 "_f_sum": pairs.f_sum, "_f_in": pairs.f_in, "_first": pairs.first})
    out = pd.DataFrame(data)
    meta = _empty(left, right, spec, lcols, rcols)
    return out.astype(meta.dtypes.to_dict())


def _empty(left, right, spec, lcols, rcols) -> pd.DataFrame:
    lsel = left.iloc[:0][lcols].reset_index(drop=True)
    rsel = right.iloc[:0][rcols].reset_index(drop=True)
    lsel.columns = [f"{c}{spec.suffixes[0]}" for c in lcols]
    rsel.columns = [f"{c}{spec.suffixes[1]}" for c in rcols]
    stats = pd.DataFrame({"separation": np.zeros(0), "_f": np.zeros(0), "_f_sum": np.zeros(0),
                          "_f_in": np.zeros(0), "_first": np.zeros(0, bool)})
    return pd.concat([lsel, rsel, stats], axis=1)


def _divisions(pixels: np.ndarray, counts: np.ndarray, max_rows: int) -> tuple[int, ...]:
    """Group sorted pixels into runs of at most ``max_rows`` left rows (at least one pixel)."""
    starts, total = [int(pixels[0])], 0
    for p, n in zip(pixels, counts, strict=True):
        if total and total + n > max_rows:
            starts.append(int(p))
            total = 0
        total += int(n)
    return (*starts, int(pixels[-1]))


def _reachable(client, frame, folder):
    """``frame``, read from the partitioned ``folder``, as the workers can compute it: as
    it is where they can read the folder, else with its partitions sent by value."""
    from pathlib import Path

    from .._remote import frame_by_value, workers_can_read

    if folder is None or client is None:
        return frame
    files = [folder, *sorted(Path(folder).rglob("*.parquet"))]
    return frame if workers_can_read(client, files) else frame_by_value(client, frame)


def crossmatch_dask(left, right, spec: C.MatchSpec, *, client=None, max_rows: int | None = None,
                    progress=None, sources: dict | None = None, folder=None):
    """Match two catalogues (dask DataFrames or Tables) partition by partition.

    The pairs come back as one Table; with ``folder`` (an existing empty folder)
    they are written there instead, one parquet part per partition as each
    finishes (`_write_partitions`), and only the result's numbers (``meta``)
    come back: the client never holds more than one partition's pairs.

    ``progress(done, total)`` is called as match partitions finish. Partition
    tasks ask for ``resources={"GPU": 1}`` when ``spec.device`` is "gpu".
    ``sources`` names the partitioned folder a side was read from (``{"left":
    path}``); where the workers cannot read it (a private folder, workers of
    another account), that side's partitions are read here and sent by value.
    """
    import dask
    from astropy.table import Table

    client = get_client(client)
    left, right = _to_dask(left), _to_dask(right)
    sources = sources or {}
    left = _reachable(client, left, sources.get("left"))
    right = _reachable(client, right, sources.get("right"))
    max_rows = max_rows or _max_rows(client, left._meta, right._meta)
    lcols, rcols = list(left.columns), list(right.columns)
    meta_l, meta_r = left._meta, right._meta
    epoch = _epoch(left, right, spec, client)
    hl = left.map_partitions(_histogram, spec, epoch, meta={"pix": "i8", "n": "i8"})
    hr = right.map_partitions(_histogram, spec, epoch, meta={"pix": "i8", "n": "i8"})
    errors = spec.errors or {"left": None, "right": None}

    def rerr_stats(df):
        e = C.error_arrays(df, errors["right"], "right")
        if e is None:
            return pd.DataFrame({"s": [0.0], "n": [0]})
        v = (e[0] ** 2 + e[1] ** 2) / 2
        return pd.DataFrame({"s": [float(np.nansum(v))], "n": [int(np.isfinite(v).sum())]})

    rs = right.map_partitions(rerr_stats, meta={"s": "f8", "n": "i8"})
    hl, hr, rs = _compute(client, hl, hr, rs)
    nan_rows = {"left": int(hl.loc[hl.pix < 0, "n"].sum()),
                "right": int(hr.loc[hr.pix < 0, "n"].sum())}
    for side, n in nan_rows.items():
        if n and spec.nan == "raise":
            raise C.VanotebookInputError(side, "finite coordinates (or nan='drop')",
                                         f"{n} rows with NaN {spec.ra}/{spec.dec}")
    hl = hl[hl.pix >= 0].groupby("pix").n.sum()
    hr = hr[hr.pix >= 0].groupby("pix").n.sum()
    rerr_typical = float(rs.s.sum() / rs.n.sum()) if rs.n.sum() else 0.0
    n_left = int(hl.sum())
    rho = 0.0
    if len(hr):
        area = healpix.coverage_area(hr.index.to_numpy(), hr.to_numpy(), order=_FINE)
        rho = float(hr.sum()) / (area * (math.pi / 180) ** 2)
    if n_left == 0 or len(hr) == 0:
        empty = _empty(meta_l, meta_r, spec, lcols, rcols)
        out = _finish(empty, n_left, rho, spec, nan_rows, epoch, order=None, n_parts=0)
        if folder is not None:
            _write_part(out, folder, 0)
            return out.meta
        return out
    order = healpix.order_from_counts(hl.index.to_numpy(), hl.to_numpy(), order=_FINE,
                                      max_rows=max_rows, radius=spec.radius)
    coarse = (hl.index.to_numpy() >> (2 * (_FINE - order)))
    pixels, inv = np.unique(coarse, return_inverse=True)
    counts = np.bincount(inv, weights=hl.to_numpy()).astype(np.int64)
    divisions = _divisions(pixels, counts, max_rows)
    lmeta = meta_l.assign(_ra=np.float64(0), _dec=np.float64(0), **{_PIX: np.int64(0)})
    rmeta = meta_r.assign(_ra=np.float64(0), _dec=np.float64(0),
                          **{_RID: np.int64(0), _PIX: np.int64(0)})
    lt = left.map_partitions(_tag_left, spec, epoch, order, meta=lmeta)
    rt = right.map_partitions(_tag_right, spec, epoch, order, pixels, meta=rmeta)
    with dask.config.set({"dataframe.shuffle.method": "p2p" if client else "disk"}):
        lt = lt.set_index(_PIX, divisions=list(divisions))
        rt = rt.set_index(_PIX, divisions=list(divisions))
    out_meta = _empty(meta_l, meta_r, spec, lcols, rcols)
    args = (spec, rerr_typical, lcols, rcols)
    meta = {"n_left": n_left, "rho": rho, "nan_rows": nan_rows, "epoch": epoch,
            "order": order, "n_parts": len(divisions) - 1}
    if folder is not None:
        return _write_partitions(client, lt, rt, args, progress, out_meta, folder, meta,
                                 resources=_resources(spec))
    result = _match_partitions(client, lt, rt, args, progress, out_meta,
                               resources=_resources(spec))
    return _finish(result, n_left, rho, spec, nan_rows, epoch, order=order,
                   n_parts=len(divisions) - 1, Table=Table)


def _resources(spec: C.MatchSpec) -> dict | None:
    """The worker resources a match task asks for: ``{"GPU": 1}`` on "gpu", else none.

    They are given to each task as it is submitted (`_match_partitions`):
    ``dask.annotate`` around a dask DataFrame is dropped by its query planner.
    """
    return {"GPU": 1} if spec.device == "gpu" else None


def _match_partitions(client, lt, rt, args: tuple, progress, meta: pd.DataFrame, *,
                      resources: dict | None = None, sink=None) -> pd.DataFrame | None:
    """Match the aligned partitions of ``lt`` and ``rt`` (one task each), in partition order.

    On a cluster, the shuffled partitions are computed as futures and each pair
    is matched by a task submitted with ``resources`` (so a GPU match runs on a
    worker with the ``GPU`` resource); ``progress(done, total)`` is called as
    each ends. Without a client the tasks run on Dask's threads in this process.
    With ``sink``, each partition's pairs go to ``sink(number, frame)`` as they
    arrive and are not kept (None is returned).
    """
    import dask
    from dask.base import tokenize

    lparts, rparts = lt.to_delayed(), rt.to_delayed()
    total = len(lparts)
    if progress is not None:
        progress(0, total)
    if client is None:
        tasks = [dask.delayed(_match_partition)(a, b, *args)
                 for a, b in zip(lparts, rparts, strict=True)]
        frames = list(dask.compute(*tasks))
        if sink is not None:
            for n, frame in enumerate(frames):
                sink(n, frame)
                frames[n] = None
        if progress is not None:
            progress(total, total)
    else:
        from distributed import as_completed

        lf, rf = client.compute(lparts), client.compute(rparts)
        token = tokenize(lt, rt, *args)
        futures = [client.submit(_match_partition, a, b, *args, resources=resources,
                                 key=f"{MATCH_PREFIX}-{token}-{n}")
                   for n, (a, b) in enumerate(zip(lf, rf, strict=True))]
        del lf, rf  # the match tasks hold their inputs; each is freed once matched
        where = {f.key: i for i, f in enumerate(futures)}
        frames = [None] * total
        for done, future in enumerate(as_completed(futures, loop=client.loop), start=1):
            if sink is not None:
                sink(where[future.key], future.result())
            else:
                frames[where[future.key]] = future.result()
            future.release()
            if progress is not None:
                progress(done, total)
    if sink is not None:
        return None
    frames = [f for f in frames if f is not None and len(f)]
    return pd.concat(frames, ignore_index=True) if frames else meta


_WORK_BYTES_PER_ROW = 200  # vectors, keys, sort orders, pair arrays of the match kernel


def _max_rows(client, lmeta: pd.DataFrame, rmeta: pd.DataFrame) -> int:
    """Left rows per partition: the configured ``partition-rows``, fewer on small workers.

    A partition's left and right rows, their shuffle copies and the kernel's
    work arrays should take at most a tenth of the smallest worker memory limit.
    """
    rows = int(_config.get("partition-rows", 1_000_000))
    if client is None:
        return rows
    try:
        limits = [w.get("memory_limit") or 0 for w in client.scheduler_info()["workers"].values()]
    except Exception:  # pragma: no cover - a client without scheduler info
        return rows
    limits = [m for m in limits if m > 0]
    if not limits:
        return rows
    def row_bytes(meta):
        return sum(8 if dt.kind in "fiub" else 64 for dt in meta.dtypes) + 3 * 8
    per_row = 2 * (row_bytes(lmeta) + row_bytes(rmeta)) + _WORK_BYTES_PER_ROW
    return int(min(rows, max(10_000, min(limits) / 10 / per_row)))


def _compute(client, *objs):
    import dask

    if client is not None:
        return client.compute(list(objs), sync=True)
    return dask.compute(*objs)


def _epoch(left, right, spec, client):
    if spec.epoch is False:
        return None
    if spec.epoch is not None:
        return spec.epoch
    pm = {"pmra", "pmdec", "epoch"}
    lpm, rpm = pm <= set(left.columns), pm <= set(right.columns)
    if lpm == rpm:
        return None
    other = right if lpm else left
    if "epoch" not in other.columns:
        return None
    (values,) = _compute(client, other["epoch"].drop_duplicates())
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(values[0]) if values.size == 1 else None


def _finish(df: pd.DataFrame, n_left, rho, spec, nan_rows, epoch, *, order, n_parts,
            Table=None):
    f = df["_f"].to_numpy(float)
    first = df["_first"].to_numpy(bool)
    prob, q = C.probabilities(f, df["_f_sum"].to_numpy(float), df["_f_in"].to_numpy(float),
                              first, n_left, rho, spec)
    out = _pairs_table(df, prob)
    out.meta.update(_numbers(q, rho, nan_rows, epoch, order, n_parts))
    return out


def _numbers(q, rho, nan_rows, epoch, order, n_parts) -> dict:
    return {"nan_rows": nan_rows, "completeness": q,
            "right_density_deg2": rho * (math.pi / 180) ** 2, "epoch": epoch,
            "order": order, "partitions": n_parts}


def _pairs_table(df: pd.DataFrame, prob: np.ndarray):
    """The pairs as a Table: the internal columns dropped, units and probability added."""
    from astropy import units as u
    from astropy.table import Table

    df = df.drop(columns=["_f", "_f_sum", "_f_in", "_first"])
    out = Table.from_pandas(df.reset_index(drop=True))
    out["separation"].unit = u.arcsec
    out["probability"] = np.asarray(prob, dtype=np.float64)
    return out


def _write_part(out, folder, number: int) -> None:
    from ..io import write_table

    table = out.copy(copy_data=False)
    table.meta = C._file_meta(out.meta)
    write_table(table, folder / f"part-{number:05d}.parquet")


def _write_partitions(client, lt, rt, args: tuple, progress, out_meta: pd.DataFrame, folder,
                      meta: dict, *, resources: dict | None = None) -> dict:
    """Match partition by partition into ``folder``; the result's numbers come back.

    Each partition's pairs are staged as they arrive, keeping only what the
    completeness fit needs (each matched left row's density sum and inside
    fraction); the fit done, each staged part gets its probabilities and is
    written as ``part-NNNNN.parquet``, in partition order: the same pairs, in
    the same order, with the same probabilities as the in-memory result.
    """
    from pathlib import Path

    spec = args[0]
    folder = Path(folder)
    staged, f_sum_first, f_in_first, finite = [], [], [], False

    def sink(number: int, frame: pd.DataFrame) -> None:
        nonlocal finite
        if frame is None or not len(frame):
            return
        first = frame["_first"].to_numpy(bool)
        f_sum_first.append(frame["_f_sum"].to_numpy(float)[first])
        f_in_first.append(frame["_f_in"].to_numpy(float)[first])
        finite = finite or bool(np.isfinite(frame["_f"].to_numpy(float)).any())
        path = folder / f".stage-{number:05d}.parquet"
        frame.to_parquet(path, index=False)
        staged.append((number, path))

    _match_partitions(client, lt, rt, args, progress, out_meta, resources=resources, sink=sink)
    rho, q, f_in = meta["rho"], float("nan"), float("nan")
    if staged and finite and rho > 0:
        q, f_in = C.fit_prior(np.concatenate(f_sum_first), np.concatenate(f_in_first),
                              meta["n_left"], rho, spec)
    numbers = _numbers(q, rho, meta["nan_rows"], meta["epoch"], meta["order"],
                       meta["n_parts"])
    if not staged:  # no pair at all: one empty part keeps the columns
        out = _pairs_table(out_meta, np.zeros(0))
        out.meta.update(numbers)
        _write_part(out, folder, 0)
    for number, path in sorted(staged):
        df = pd.read_parquet(path)
        prob = np.full(len(df), np.nan)
        if np.isfinite(q):
            prob = np.asarray(C.P.pair_posteriors(df["_f"].to_numpy(float),
                                                  df["_f_sum"].to_numpy(float), q, rho, f_in))
        out = _pairs_table(df, prob)
        out.meta.update(numbers)
        _write_part(out, folder, number)
        path.unlink()
    return numbers


# ----------------------------------------------------------------------------- N-way
NWAY_PREFIX = "nway-partition"  # the key prefix of the N-way partition tasks
_PID = "_pid"


@dataclass
class NwayPlan:
    """What each N-way partition task needs, all of it global (decided before the tasks).

    ``pair_epoch[n]`` is the epoch the primary and ``n`` are matched at (as the
    pairwise `crossmatch`), ``xyz_epoch[n]`` that of ``n``'s positions in the
    Bayes factors; ``rerr_typical[n]`` the mean error variance of ``n`` (the
    inside fraction of the pairwise fit).
    """

    names: list[str]
    spec: C.MatchSpec
    errors: dict[str, Any]
    units: dict[str, dict[str, str]]
    columns: dict[str, list[str]]
    pair_epoch: dict[str, float | None]
    xyz_epoch: dict[str, float | None]
    rerr_typical: dict[str, float]


def _with_units(df: pd.DataFrame, units: dict) -> pd.DataFrame:
    """A shallow copy of ``df`` whose ``attrs`` give its column units (`_core._unit_of`)."""
    out = df.copy(deep=False)
    out.attrs = {"units": dict(units)}
    return out


def _frame_table(df: pd.DataFrame, units: dict):
    """A pandas partition as an astropy Table with units; NaN stays NaN (not masked) in
    plain numpy columns, as in the Table the lazy catalogue was made from."""
    from astropy.table import Table

    cols = {}
    for c in df.columns:
        s = df[c]
        plain = isinstance(s.dtype, np.dtype) and s.dtype.kind != "O"
        cols[c] = s.to_numpy() if plain else Table.from_pandas(df[[c]])[c]
    table = Table(cols, copy=False) if cols else Table()
    for c, unit in units.items():
        if c in table.colnames:
            table[c].unit = unit
    return table


def _nway_histogram(df, spec, epoch, units) -> pd.DataFrame:
    return _histogram(_with_units(df, units), spec, epoch)


def _nway_error_stats(df, spec, epoch, errors, units, name) -> pd.DataFrame:
    """Sum and count of an other catalogue's error variance over its finite rows."""
    df = _with_units(df, units)
    ra, dec = C.positions(df, spec, epoch)
    ok = np.isfinite(ra) & np.isfinite(dec)
    e = C.error_arrays(df, errors, name)
    v = ((e[0] ** 2 + e[1] ** 2) / 2)[ok] if e is not None else np.zeros(0)
    return pd.DataFrame({"s": [float(np.sum(v))], "n": [int(v.size)]})


def _nway_shift(df, spec, epochs: tuple, units) -> pd.DataFrame:
    """The largest move (radians) of the primary's rows between two epochs."""
    df = _with_units(df, units)
    a = np.asarray(C.K.unit_vectors(*C.positions(df, spec, epochs[0])))
    b = np.asarray(C.K.unit_vectors(*C.positions(df, spec, epochs[1])))
    sep = np.asarray(C.K.separation(a, b)) if len(df) else np.zeros(0)
    sep = sep[np.isfinite(sep)]
    return pd.DataFrame({"s": [float(sep.max()) if sep.size else 0.0]})


def _tag_primary(df, spec, epoch, order: int, units, partition_info=None) -> pd.DataFrame:
    """Primary rows with finite positions, with their pixel and a global row id (the
    input partition's number and the row in it: the in-memory row order)."""
    ra, dec = C.positions(_with_units(df, units), spec, epoch)
    ok = np.isfinite(ra) & np.isfinite(dec)
    out = df.loc[ok].copy()
    number = partition_info["number"] if partition_info else 0
    out[_PID] = number * _ROWS_PER_INPUT_PARTITION + np.flatnonzero(ok).astype(np.int64)
    out[_PIX] = healpix.pixel_index(ra[ok], dec[ok], order)
    out.attrs = {}
    return out


def _tag_other(df, spec, epoch, order: int, keep, units, partition_info=None) -> pd.DataFrame:
    """`_tag_right` of an other catalogue (its own pixel and every pixel within the margin)."""
    out = _tag_right(_with_units(df, units), spec, epoch, order, keep,
                     partition_info=partition_info)
    out.attrs = {}
    return out


def _nway_state(plan: NwayPlan, primary: pd.DataFrame, *others: pd.DataFrame) -> dict:
    """One partition's tables and candidate pairs, and its pairwise fit statistics.

    The primary rows are this partition's own (sorted by global row id); each
    other catalogue's rows are its own and margin copies, deduplicated: every
    candidate within the radius of a primary row is here, so the pairs, their
    densities and sums are those the whole-catalogue match finds.
    """
    names, spec = plan.names, plan.spec
    p = primary.sort_values(_PID, kind="stable")
    state = {"pid": p[_PID].to_numpy(np.int64), "pairs": {}, "stats": {}, "rid": {}}
    first = names[0]
    tables = {first: _frame_table(p[plan.columns[first]].reset_index(drop=True),
                                  plan.units[first])}
    lerr = C.error_arrays(tables[first], plan.errors[first], "left")
    xyz_p, sigma_p = _weighing_vectors(tables[first], plan, first)
    for n, o in zip(names[1:], others, strict=True):
        o = o.drop_duplicates(_RID).sort_values(_RID, kind="stable") if len(o) else o
        tables[n] = _frame_table(o[plan.columns[n]].reset_index(drop=True), plan.units[n])
        pra, pdec = C.positions(tables[first], spec, plan.pair_epoch[n])
        rerr = C.error_arrays(tables[n], plan.errors[n], "right")
        pairs = C.match_arrays(pra, pdec, o["_ra"].to_numpy(), o["_dec"].to_numpy(), lerr,
                               rerr, spec, rerr_typical=plan.rerr_typical[n])
        state["pairs"][n] = (pairs.left, pairs.right)
        rid = o[_RID].to_numpy(np.int64) if len(o) else np.zeros(0, np.int64)
        state["rid"][n] = rid
        # this partition's share of each candidate's crowding (`_nway.crowding`): the
        # Gaussian terms of its primaries, summed over all partitions by row id
        xyz_o, sigma_o = _weighing_vectors(tables[n], plan, n)
        g = _nway.gaussian_terms(xyz_p[pairs.left], xyz_o[pairs.right],
                                 sigma_p[pairs.left] ** 2 + sigma_o[pairs.right] ** 2)
        state["stats"][n] = (pairs.f_sum[pairs.first], pairs.f_in[pairs.first],
                             bool(np.isfinite(pairs.f).any()), rid[pairs.right], g)
    state["tables"] = tables
    return state


def _weighing_vectors(table, plan: NwayPlan, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A catalogue's unit vectors at its weighing epoch and circular errors (radians)."""
    xyz = np.asarray(C.K.unit_vectors(*C.positions(table, plan.spec, plan.xyz_epoch[name])))
    return xyz, C.nway_sigma(table, plan.errors[name], name)


def _global_crowding(stats: list[dict], names: list[str]) -> dict:
    """Each other catalogue's crowding over the whole primary catalogue: the partitions'
    Gaussian terms summed by row id, as ``(sorted row ids, sums)``."""
    out = {}
    for n in names[1:]:
        parts = [s[n] for s in stats if s is not None]
        rid = np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, np.int64)
        g = np.concatenate([p[4] for p in parts]) if parts else np.zeros(0)
        ids, inv = np.unique(rid, return_inverse=True)
        out[n] = (ids, np.bincount(inv, weights=g, minlength=ids.size))
    return out


def _crowding_of(rid: np.ndarray, crowd: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The global crowding (`_global_crowding`) of rows with ids ``rid`` (0 if none)."""
    ids, sums = crowd
    out = np.zeros(rid.size)
    if ids.size:
        at = np.minimum(np.searchsorted(ids, rid), ids.size - 1)
        hit = ids[at] == rid
        out[hit] = sums[at[hit]]
    return out


def _state_stats(state: dict) -> dict:
    """What the pairwise fits need of one partition (a few numbers per matched primary)."""
    return state["stats"]


def _nway_weigh(state: dict, plan: NwayPlan, priors: dict, rho: dict, crowd: dict,
                rho_primary: float):
    """One partition's result rows (`_core.nway_table`, plus the global row id ``_pid``),
    weighed with the global priors, densities and crowding."""
    names, tables = plan.names, state["tables"]
    xyz, sigma = {}, {}
    for n in names:
        xyz[n], sigma[n] = _weighing_vectors(tables[n], plan, n)
    local = {n: _crowding_of(state["rid"][n], crowd[n]) for n in names[1:]}
    rows, chosen, best, p_any = C.weigh_rows(len(tables[names[0]]), state["pairs"], xyz,
                                             sigma, priors, rho, names,
                                             rho_primary=rho_primary, crowd=local)
    out = C.nway_table(tables, names, rows, chosen, best, p_any, xyz)
    out[_PID] = state["pid"][rows]
    return out


def _nway_epochs(frames: dict, names: list[str], spec, client) -> tuple[dict, dict]:
    """``(pair_epoch, xyz_epoch)`` as `_core._weigh_many` has them, for lazy frames."""
    pm = {"pmra", "pmdec", "epoch"}
    primary, epoch = frames[names[0]], spec.epoch
    pair, xyz = {}, {names[0]: epoch if epoch is not False else None}
    for n in names[1:]:
        auto = _epoch(primary, frames[n], replace(spec, epoch=None), client) \
            if (pm <= set(primary.columns)) != (pm <= set(frames[n].columns)) else None
        pair[n] = None if epoch is False else (epoch if epoch is not None else auto)
        xyz[n] = epoch if epoch not in (None, False) else auto
    return pair, xyz


def crossmatch_many_dask(frames: dict, names: list[str], spec: C.MatchSpec, errors: dict, *,
                         client=None, max_rows: int | None = None, progress=None,
                         sources: dict | None = None, units: dict | None = None, folder=None):
    """The N-way match of `crossmatch_many` on HEALPix partitions of the primary.

    1. One pass over every catalogue: pixel histograms (the partition order,
       the densities), error variances (the pairwise fits' inside fraction)
       and, with proper motions, how far the primary moves between epochs.
    2. The primary is tagged with its pixel, every other catalogue's rows with
       theirs and copied to each pixel within the radius (`_tag_right`); all
       are shuffled into the same partitions of whole pixels.
    3. Each partition finds its candidates and the pairwise statistics; the
       completeness of each other catalogue is fitted on all partitions' (as
       the pairwise `crossmatch` fits it), and each partition is weighed with
       those global priors and densities (`_core.weigh_rows`).

    The result Table (rows in the primary's order) comes back; with ``folder``
    (an existing empty folder) each partition's rows are written there as a
    parquet part as it is weighed, and only the numbers (``meta``) come back.
    """
    import dask

    client = get_client(client)
    sources, units = sources or {}, units or {}
    frames = {n: _reachable(client, _to_dask(frames[n]), sources.get(n)) for n in names}
    primary, others = names[0], names[1:]
    units = {n: {c: v for c, v in (units.get(n) or {}).items() if c in frames[n].columns}
             for n in names}
    pair_epoch, xyz_epoch = _nway_epochs(frames, names, spec, client)
    pf = frames[primary]
    graphs = [pf.map_partitions(_nway_histogram, spec, xyz_epoch[primary], units[primary],
                                meta={"pix": "i8", "n": "i8"})]
    for n in others:
        f = frames[n]
        graphs += [f.map_partitions(_nway_histogram, spec, pair_epoch[n], units[n],
                                    meta={"pix": "i8", "n": "i8"}),
                   f.map_partitions(_nway_histogram, spec, None, units[n],
                                    meta={"pix": "i8", "n": "i8"}),
                   f.map_partitions(_nway_error_stats, spec, pair_epoch[n], errors[n], units[n],
                                    n, meta={"s": "f8", "n": "i8"}),
                   pf.map_partitions(_nway_shift, spec, (xyz_epoch[primary], pair_epoch[n]),
                                     units[primary], meta={"s": "f8"})]
    done = _compute(client, *graphs)
    hist = {primary: done[0]}
    rho, rho_pair, rerr, margin = {}, {}, {}, {}
    for i, n in enumerate(others):
        hp, h0, es, shift = done[1 + 4 * i: 5 + 4 * i]
        hist[n] = hp
        rho_pair[n] = _density(hp)
        rho[n] = _density(h0, with_nan=True)
        rerr[n] = float(es.s.sum() / es.n.sum()) if es.n.sum() else 0.0
        move = float(shift.s.max()) if len(shift) else 0.0
        margin[n] = spec.radius + (move * (1 + 1e-6) * C.u.rad).to(spec.radius.unit)
    _check_rows(hist, names, spec)
    hl = hist[primary]
    hl = hl[hl.pix >= 0].groupby("pix").n.sum()
    n_left = int(hl.sum())
    if n_left == 0:
        raise C.VanotebookInputError(f"catalogues[{primary!r}]", "rows with finite positions",
                                     "none")
    ometa = pd.concat([frames[n]._meta for n in others], axis=1)
    max_rows = max_rows or _max_rows(client, pf._meta, ometa)
    order = healpix.order_from_counts(hl.index.to_numpy(), hl.to_numpy(), order=_FINE,
                                      max_rows=max_rows, radius=max(margin.values()))
    pixels, inv = np.unique(hl.index.to_numpy() >> (2 * (_FINE - order)), return_inverse=True)
    counts = np.bincount(inv, weights=hl.to_numpy()).astype(np.int64)
    divisions = list(_divisions(pixels, counts, max_rows))
    columns = {n: list(frames[n].columns) for n in names}
    plan = NwayPlan(names, spec, dict(errors), units, columns, pair_epoch, xyz_epoch, rerr)
    pmeta = pf._meta.assign(**{_PID: np.int64(0), _PIX: np.int64(0)})
    tagged = [pf.map_partitions(_tag_primary, spec, xyz_epoch[primary], order,
                                units[primary], meta=pmeta)]
    for n in others:
        rmeta = frames[n]._meta.assign(_ra=np.float64(0), _dec=np.float64(0),
                                       **{_RID: np.int64(0), _PIX: np.int64(0)})
        tagged.append(frames[n].map_partitions(
            _tag_other, replace(spec, radius=margin[n]), pair_epoch[n], order, pixels,
            units[n], meta=rmeta))
    with dask.config.set({"dataframe.shuffle.method": "p2p" if client else "disk"}):
        tagged = [t.set_index(_PIX, divisions=divisions) for t in tagged]
    numbers = {"n_left": n_left, "rho_pair": rho_pair, "rho": rho, "order": order,
               "partitions": len(divisions) - 1,
               "rho_primary": _density(hist[primary], with_nan=True)}
    return _nway_partitions(client, tagged, plan, numbers, progress, folder)


def _density(hist: pd.DataFrame, *, with_nan: bool = False) -> float:
    """Sources per steradian from an order-12 histogram (`_core.density_sr`'s answer);
    ``with_nan`` counts rows without positions too, as `density_sr` counts every row."""
    ok = hist[hist.pix >= 0].groupby("pix").n.sum()
    if not len(ok):
        return 0.0
    area = healpix.coverage_area(ok.index.to_numpy(), ok.to_numpy(), order=_FINE)
    rows = float(hist.n.sum() if with_nan else ok.sum())
    return rows / (area * (math.pi / 180) ** 2)


def _check_rows(hist: dict, names: list[str], spec) -> None:
    """Refuse an empty catalogue, or NaN positions with ``nan='raise'``, by name."""
    for n in names:
        h = hist[n]
        if int(h.n.sum()) == 0:
            raise C.VanotebookInputError(f"catalogues[{n!r}]", "a catalogue with rows",
                                         "an empty table")
        bad = int(h.loc[h.pix < 0, "n"].sum())
        if bad and spec.nan == "raise":
            raise C.VanotebookInputError(f"catalogues[{n!r}]",
                                         "finite coordinates (or nan='drop')",
                                         f"{bad} rows with NaN {spec.ra}/{spec.dec}")


def _fit_priors(stats: list[dict], plan: NwayPlan, numbers: dict) -> dict:
    """Each other catalogue's completeness, fitted on every partition's statistics (in
    partition order) as the pairwise `crossmatch` fits it on the whole catalogues."""
    priors = {}
    for n in plan.names[1:]:
        parts = [s[n] for s in stats if s is not None]
        finite = any(p[2] for p in parts)
        rho = numbers["rho_pair"][n]
        if not parts or not finite or rho <= 0:
            priors[n] = float("nan")
            continue
        f_sum = np.concatenate([p[0] for p in parts])
        f_in = np.concatenate([p[1] for p in parts])
        if f_sum.size == 0:
            priors[n] = float("nan")
            continue
        priors[n] = C.fit_prior(f_sum, f_in, numbers["n_left"], rho, plan.spec)[0]
    return priors


def _nway_partitions(client, tagged: list, plan: NwayPlan, numbers: dict, progress, folder):
    """Find each partition's candidates (pass 1), fit the priors on all of them, weigh
    each partition (pass 2); the rows go to one Table, or to ``folder`` part by part."""
    from pathlib import Path

    parts = [t.to_delayed() for t in tagged]
    total = len(parts[0])
    if progress is not None:
        progress(0, 2 * total)
    meta = {"completeness": None, "order": numbers["order"],
            "partitions": numbers["partitions"]}
    written, kept = [], {}

    def sink(number: int, table) -> None:
        if folder is None:
            kept[number] = table
        elif len(table):
            _write_nway_part(table, Path(folder), number, meta)
            written.append(number)

    def fit(stats):
        priors = _fit_priors(stats, plan, numbers)
        meta["completeness"] = priors
        return priors, _global_crowding(stats, plan.names)

    runner = _nway_local if client is None else _nway_cluster
    last = runner(client, parts, plan, numbers, fit, sink, progress, total)
    if folder is not None:
        if not written:  # no row at all: one empty part keeps the columns
            _write_nway_part(last, Path(folder), 0, meta)
        return meta
    return _gathered(kept, meta)


def _nway_local(client, parts, plan, numbers, fit, sink, progress, total):
    """Both passes in this process (no client): Dask's threads find the candidates."""
    import dask

    states = list(dask.compute(*[dask.delayed(_nway_state)(plan, *p)
                                 for p in zip(*parts, strict=True)]))
    if progress is not None:
        progress(total, 2 * total)
    priors, crowd = fit([_state_stats(s) for s in states])
    last = None
    for number in range(total):
        last = _nway_weigh(states[number], plan, priors, numbers["rho"], crowd,
                           numbers["rho_primary"])
        states[number] = None
        sink(number, last)
        if progress is not None:
            progress(total + number + 1, 2 * total)
    return last


def _nway_cluster(client, parts, plan, numbers, fit, sink, progress, total):
    """Both passes on the cluster: the partitions' states stay on the workers, only the
    fit statistics and then each partition's rows (one at a time) come here."""
    from dask.base import tokenize
    from distributed import as_completed

    inputs = [client.compute(list(p)) for p in parts]
    token = tokenize(plan, *parts)
    resources = _resources(plan.spec)
    states = [client.submit(_nway_state, plan, *p, resources=resources,
                            key=f"{NWAY_PREFIX}-{token}-{n}")
              for n, p in enumerate(zip(*inputs, strict=True))]
    del inputs  # the state tasks hold their inputs
    stat_futures = [client.submit(_state_stats, s, key=f"{NWAY_PREFIX}-stats-{token}-{n}")
                    for n, s in enumerate(states)]
    where = {f.key: i for i, f in enumerate(stat_futures)}
    stats = [None] * total
    for done, future in enumerate(as_completed(stat_futures, loop=client.loop), start=1):
        stats[where[future.key]] = future.result()
        future.release()
        if progress is not None:
            progress(done, 2 * total)
    priors, crowd = fit(stats)
    [crowd] = client.scatter([crowd], broadcast=True)  # one copy per worker, not per task
    weigh = [client.submit(_nway_weigh, s, plan, priors, numbers["rho"], crowd,
                           numbers["rho_primary"], resources=resources,
                           key=f"{NWAY_PREFIX}-weigh-{token}-{n}")
             for n, s in enumerate(states)]
    del states  # each state is freed once weighed
    where = {f.key: i for i, f in enumerate(weigh)}
    last = None
    for done, future in enumerate(as_completed(weigh, loop=client.loop), start=1):
        last = future.result()
        sink(where[future.key], last)
        future.release()
        if progress is not None:
            progress(total + done, 2 * total)
    return last[:0] if last is not None else None


def _gathered(kept: dict, meta: dict):
    """The partitions' rows as one Table in the primary's row order, ``_pid`` dropped."""
    from astropy.table import vstack

    tables = [kept[n] for n in sorted(kept)]
    nonempty = [t for t in tables if len(t)] or tables[:1]
    out = vstack(nonempty, metadata_conflicts="silent") if len(nonempty) > 1 else nonempty[0]
    out = out[np.argsort(np.asarray(out[_PID]), kind="stable")]
    out.remove_column(_PID)
    out.meta.clear()
    out.meta.update(meta)
    return out


def _write_nway_part(table, folder, number: int, meta: dict) -> None:
    """One partition's rows (``_pid`` dropped, in the primary's order) as a parquet part."""
    out = table[np.argsort(np.asarray(table[_PID]), kind="stable")]
    out.remove_column(_PID)
    out.meta.clear()
    out.meta.update(meta)
    _write_part(out, folder, number)
