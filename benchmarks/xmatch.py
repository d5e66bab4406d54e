"""Cross-match benchmark: vanotebook vs astropy, a raw cKDTree and LSDB on one input.

The issue's workload: 1e6 x 1e6 rows in a 10 x 10 deg patch, 50% true
counterparts offset by 0.3" (Gaussian per axis), radius 1". Everything runs in
this process on the same tables; times are end to end from in-memory tables,
the median of three runs each after one untimed run, for every method.

    python benchmarks/xmatch.py            # the full workload
    python benchmarks/xmatch.py --small    # 1e5 x 1e5, seconds
    python benchmarks/xmatch.py --big      # also 1e7 x 1e7 out of core on Dask
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord, search_around_sky
from astropy.table import Table


def make(n: int, seed: int = 0, side: float = 10.0):
    rng = np.random.default_rng(seed)
    ra0, dec0 = 150.0, 0.0
    ra = ra0 + rng.uniform(-side / 2, side / 2, n)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(dec0 - side / 2)),
                                           np.sin(np.radians(dec0 + side / 2)), n)))
    true = rng.random(n) < 0.5
    rra = ra0 + rng.uniform(-side / 2, side / 2, n)
    rdec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(dec0 - side / 2)),
                                            np.sin(np.radians(dec0 + side / 2)), n)))
    off = rng.normal(0, 0.3 / 3600, (2, true.sum()))
    rdec[true] = np.clip(dec[true] + off[1], -90, 90)
    rra[true] = ra[true] + off[0] / np.cos(np.radians(dec[true]))
    left = Table({"id": np.arange(n), "ra": ra, "dec": dec,
                  "ra_error": np.full(n, 0.2), "dec_error": np.full(n, 0.2)})
    right = Table({"id": np.arange(n), "ra": rra, "dec": rdec,
                   "ra_error": np.full(n, 0.22), "dec_error": np.full(n, 0.22),
                   "truth": np.where(true, np.arange(n), -1)})
    return left, right


def timed(label, func, n, results, repeat: int = 3):
    """The median of ``repeat`` runs after one untimed run (warm: the first runs at a new
    size pay the page faults of fresh arrays until malloc keeps them)."""
    if repeat > 1:
        func()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        value = func()
        times.append(time.perf_counter() - t)
    dt = float(np.median(times))
    results[label] = dt
    print(f"{label:<34s} {dt:8.2f} s  {n / dt / 1e6:6.2f} M rows/s  (runs: "
          f"{' '.join(f'{x:.2f}' for x in times)})", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="1e5 x 1e5 rows")
    parser.add_argument("--big", action="store_true", help="also 1e7 x 1e7 out of core")
    parser.add_argument("--no-lsdb", action="store_true")
    parser.add_argument("--big-rows", type=int, default=10_000_000, help="rows per side of --big")
    parser.add_argument("--memory-limit", default="1GB", help="per worker, for --big")
    parser.add_argument("--big-only", action="store_true", help="skip the 1e6 workload")
    args = parser.parse_args()
    if args.big_only:
        big(args.big_rows, args.memory_limit)
        return
    from scipy.spatial import cKDTree

    from vanotebook.xmatch import crossmatch

    n = 100_000 if args.small else 1_000_000
    left, right = make(n)
    radius = 1 * u.arcsec
    print(f"workload: {n:,} x {n:,} rows, 10x10 deg, 50% true at 0.3\", radius 1\"; "
          f"{os.cpu_count()} cores")
    res: dict[str, float] = {}
    # warm-up: imports, numba's compiled-kernel cache (loaded by a match of more than
    # GRID_ROWS rows in all: smaller ones take the numpy join), astropy's frames
    from vanotebook.xmatch._kernels import GRID_ROWS

    half = min(n, GRID_ROWS // 2 + 1)
    crossmatch(left[:half], right[:half], radius=radius, device="cpu")
    small_l, small_r = left[:1000], right[:1000]
    crossmatch(small_l, small_r, radius=radius, device="cpu")
    SkyCoord(small_l["ra"], small_l["dec"], unit="deg").match_to_catalog_sky(
        SkyCoord(small_r["ra"], small_r["dec"], unit="deg"))
    ours = timed("vanotebook nearest (+probability)",
                 lambda: crossmatch(left, right, radius=radius, device="cpu"), n, res)
    timed("vanotebook all", lambda: crossmatch(left, right, radius=radius, how="all",
                                               device="cpu"), n, res)

    def astropy_nearest():
        cl = SkyCoord(left["ra"], left["dec"], unit="deg")
        cr = SkyCoord(right["ra"], right["dec"], unit="deg")
        idx, sep, _ = cl.match_to_catalog_sky(cr)
        ok = sep <= radius
        return np.flatnonzero(ok), idx[ok]

    ref = timed("astropy match_to_catalog_sky", astropy_nearest, n, res)

    def astropy_all():
        cl = SkyCoord(left["ra"], left["dec"], unit="deg")
        cr = SkyCoord(right["ra"], right["dec"], unit="deg")
        i1, i2, _, _ = search_around_sky(cl, cr, radius)
        return i1, i2

    ref_all = timed("astropy search_around_sky", astropy_all, n, res)

    def raw_tree():
        def xyz(t):
            r, d = np.radians(t["ra"]), np.radians(t["dec"])
            return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], 1)
        tree = cKDTree(xyz(right))
        return tree.query(xyz(left), k=1, distance_upper_bound=2 * np.sin(
            radius.to_value(u.rad) / 2), workers=2)

    timed("raw cKDTree (2 workers)", raw_tree, n, res)
    same = set(zip(ours["id_left"], ours["id_right"], strict=True)) == set(
        zip(*ref, strict=True))
    ours_all = crossmatch(left, right, radius=radius, how="all", device="cpu")
    same_all = set(zip(ours_all["id_left"], ours_all["id_right"], strict=True)) == set(
        zip(*ref_all, strict=True))
    print(f"nearest pairs identical to astropy: {same} ({len(ours)} pairs)")
    print(f"all pairs identical to search_around_sky: {same_all} ({len(ours_all)} pairs)")
    truth = np.asarray(ours["truth_right"]) == np.asarray(ours["id_left"])
    p = np.asarray(ours["probability"])
    for lo, hi in ((0.0, 0.5), (0.5, 0.8), (0.8, 0.95), (0.95, 1.01)):
        sel = (p >= lo) & (p < hi)
        if sel.sum():
            print(f"  p in [{lo:.2f},{hi:.2f}): n={sel.sum():7d} mean p={p[sel].mean():.3f} "
                  f"true fraction={truth[sel].mean():.3f}")
    if not args.no_lsdb:
        try:
            import lsdb

            def run_lsdb():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    lc = lsdb.from_dataframe(left.to_pandas(), ra_column="ra", dec_column="dec")
                    rc = lsdb.from_dataframe(right.to_pandas(), ra_column="ra",
                                             dec_column="dec")
                    return lc.crossmatch(rc, n_neighbors=1, radius_arcsec=1,
                                         suffixes=("_l", "_r")).compute()

            got = timed(f"LSDB {lsdb.__version__} end to end", run_lsdb, n, res, repeat=1)
            lcol = [c for c in got.columns if c.startswith("id_")]
            same_lsdb = set(zip(got[lcol[0]], got[lcol[1]], strict=True)) == set(
                zip(*ref, strict=True))
            print(f"LSDB pairs: {len(got)}; identical to astropy: {same_lsdb}")
        except ImportError:
            print("LSDB not installed (pip install lsdb)")
    base = res["vanotebook nearest (+probability)"]
    print("\nratios (time of peer / time of vanotebook nearest):")
    for label, t in res.items():
        print(f"  {label:<34s} {t / base:6.2f}x")
    print(f"targets: >= 4x astropy nearest: "
          f"{res['astropy match_to_catalog_sky'] / base:.2f}x; >= 1 M rows/s: "
          f"{n / base / 1e6:.2f} M rows/s" + "".join(
              f"; >= 10x LSDB: {t / base:.2f}x" for k, t in res.items() if k.startswith("LSDB")))
    from _fresh import first_call
    from xmatch_nway import FRESH_CALL, FRESH_SETUP

    first_call("crossmatch (2,000 rows)", FRESH_SETUP, FRESH_CALL)
    if args.big:
        big(args.big_rows, args.memory_limit)


def big(n: int, memory_limit: str = "1GB") -> None:
    """1e7 x 1e7 out of core: written as parquet, matched on 2 single-thread workers."""
    import dask.dataframe as dd

    from vanotebook import connect
    from vanotebook.xmatch import crossmatch

    with tempfile.TemporaryDirectory() as tmp:
        file_rows = 250_000
        for i, step in enumerate(range(0, n, file_rows)):
            left, right = make(file_rows, seed=100 + i)
            left["id"] += step
            right["id"] += step
            left.write(f"{tmp}/left_{i:03d}.parquet")
            right.write(f"{tmp}/right_{i:03d}.parquet")
        size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
        client = connect(n_workers=2, threads_per_worker=1, memory_limit=memory_limit)
        print(f"\nbig: {n:,} x {n:,} rows, {size / 1e9:.2f} GB parquet "
              f"({n * (5 + 6) * 8 / 1e9:.2f} GB as float64 columns in memory), "
              f"workers 2 x {memory_limit}", flush=True)
        import resource

        def peak_mb() -> float:  # this (client) process's peak resident memory so far
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        before = peak_mb()
        t = time.perf_counter()
        written = crossmatch(dd.read_parquet(f"{tmp}/left_*.parquet"),
                             dd.read_parquet(f"{tmp}/right_*.parquet"), radius=1 * u.arcsec,
                             client=client, output=f"{tmp}/pairs")
        dt = time.perf_counter() - t
        parts = len(os.listdir(f"{tmp}/pairs"))
        print(f"big out-of-core nearest, written to a folder: {dt:.1f} s, "
              f"{n / dt / 1e6:.2f} M rows/s, {len(written):,} pairs in {parts} parts; "
              f"client peak {peak_mb():.0f} MB (was {before:.0f} MB before)", flush=True)
        t = time.perf_counter()
        out = crossmatch(dd.read_parquet(f"{tmp}/left_*.parquet"),
                         dd.read_parquet(f"{tmp}/right_*.parquet"), radius=1 * u.arcsec,
                         client=client)
        dt = time.perf_counter() - t
        print(f"big out-of-core nearest, gathered here: {dt:.1f} s, {n / dt / 1e6:.2f} M rows/s, "
              f"{len(out):,} pairs, {out.meta['partitions']} partitions "
              f"(order {out.meta['order']}); client peak {peak_mb():.0f} MB", flush=True)
        client.close()


if __name__ == "__main__":
    main()
