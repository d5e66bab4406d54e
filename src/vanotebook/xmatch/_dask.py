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
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import _config, healpix
from ..cluster import get_client
from . import _core as C

__all__ = ["crossmatch_dask"]

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
