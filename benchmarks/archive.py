"""The archive's catalogue and image queries against LSDB, astropy and plain DuckDB.

Run: ``python benchmarks/archive.py [--small] [--rows N] [--centres 20]``.

Catalogue workload (issue 9): ``--rows`` (1e7; 1e6 with ``--small``) rows
uniform over a 20 deg x 20 deg patch with id, ra, dec and five float columns;
cone queries of 1', 6' and 1 deg at 20 random centres, cold (a freshly opened
catalogue, the first query at each centre) and warm (the same queries again).
Methods, all in this process on the same rows:

* ours: ``Archive.add_catalogue`` then ``Archive.catalogue(name).cone``;
* LSDB: ``lsdb.from_dataframe`` + ``write_catalog``, then ``lsdb.open_catalog``
  + ``cone_search(...).compute()``;
* astropy brute force: ``SkyCoord.separation`` over every row;
* plain DuckDB over HEALPix-partitioned parquet: ``COPY ... PARTITION_BY``
  the order-5 pixel, then a haversine ``WHERE`` over the files of the pixels
  the cone touches;
* DaCHS 2.7 (a real local server, ``--dachs-url``): the first ``--dachs-rows``
  (1e6) of the same rows published with ``DaCHS.publish_catalogue`` (its
  import is timed), then the same cones through pyvo's TAP (ADQL
  ``CONTAINS(POINT, CIRCLE)``) and SCS; ids checked against astropy's on that
  subset. ``--no-dachs`` skips it, ``--dachs-only`` runs only it.

Every method's ids are checked against astropy's. Then the image query: 1,000
indexed images and a cone that overlaps a few. Timings on a shared 2-core
machine are noisy; run it twice.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
from astropy.coordinates import SkyCoord

from vanotebook.archive import Archive, parse_region

RADII = {"1'": 1 * u.arcmin, "6'": 6 * u.arcmin, "1 deg": 1 * u.deg}
PATCH = (170.0, 190.0, -10.0, 10.0)
DUCK_ORDER = 5


def make_rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"id": np.arange(n, dtype=np.int64),
                       "ra": rng.uniform(PATCH[0], PATCH[1], n),
                       "dec": rng.uniform(PATCH[2], PATCH[3], n)})
    for k in range(5):
        df[f"f{k}"] = rng.normal(size=n)
    return df


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def fmt(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1e3:8.1f} ms  max {max(values) * 1e3:8.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="1e6 rows")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--centres", type=int, default=20)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--no-lsdb", action="store_true")
    parser.add_argument("--no-dachs", action="store_true")
    parser.add_argument("--dachs-only", action="store_true")
    parser.add_argument("--dachs-rows", type=int, default=1_000_000)
    parser.add_argument("--dachs-url", default="http://localhost:8080")
    parser.add_argument("--lsdb-partition-rows", type=int, default=1_000_000,
                        help="LSDB's partition target (ours uses the same, partition-rows); "
                             "0 for LSDB's default")
    args = parser.parse_args()
    n = args.rows or (1_000_000 if args.small else 10_000_000)
    rng = np.random.default_rng(42)
    centres = np.column_stack([rng.uniform(PATCH[0] + 1.5, PATCH[1] - 1.5, args.centres),
                               rng.uniform(PATCH[2] + 1.5, PATCH[3] - 1.5, args.centres)])
    df = make_rows(n)
    print(f"catalogue: {n:,} rows over 20 x 20 deg, {args.centres} centres")
    if args.dachs_only:
        dachs_benchmark(df, centres, args.dachs_rows, args.dachs_url, None)
        return
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    ids: dict[str, dict[tuple[int, str], set]] = {}
    ingest: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        tmp = Path(tmp)
        # ---------------------------------------------------------------- ours
        arc = Archive(tmp / "archive")
        _, ingest["ours"] = timed(arc.add_catalogue, "bench", df)
        cat = arc.catalogue("bench")
        print(f"ours: ingest {ingest['ours']:.1f} s ({cat.pixels.size} partitions, "
              f"order {cat.order})")
        results["ours"], ids["ours"] = {}, {}
        for label, radius in RADII.items():
            cold, warm = [], []
            for i, (ra, dec) in enumerate(centres):
                fresh = arc.catalogue("bench")
                got, dt = timed(fresh.cone, ra, dec, radius)
                cold.append(dt)
                got, dt = timed(fresh.cone, ra, dec, radius)
                warm.append(dt)
                ids["ours"][(i, label)] = set(got["id"].tolist())
            results["ours"][label] = {"cold": cold, "warm": warm}
        # ---------------------------------------------------------------- plain DuckDB
        import duckdb

        from vanotebook.archive._catalogue import healpix29

        t0 = time.perf_counter()
        duck_dir = tmp / "duck"
        frame = df.assign(npix=healpix29(df["ra"].to_numpy(), df["dec"].to_numpy())
                          >> (2 * (29 - DUCK_ORDER)))
        con = duckdb.connect()
        con.register("frame", frame)
        con.execute(f"COPY (SELECT * FROM frame ORDER BY npix) TO '{duck_dir}' "
                    "(FORMAT parquet, PARTITION_BY (npix))")
        con.unregister("frame")
        del frame
        ingest["duckdb"] = time.perf_counter() - t0
        print(f"plain DuckDB: ingest {ingest['duckdb']:.1f} s")
        results["duckdb"], ids["duckdb"] = {}, {}

        def duck_cone(ra, dec, radius):
            cells = parse_region((ra, dec, radius)).cells(DUCK_ORDER)
            files = [str(f) for c in cells for f in (duck_dir / f"npix={c}").glob("*.parquet")]
            r = float(radius.to_value(u.deg))
            box = r / max(np.cos(np.radians(abs(dec) + r)), 1e-6)
            sql = (f"SELECT id FROM read_parquet({files}) WHERE dec BETWEEN {dec - r} AND "
                   f"{dec + r} AND ra BETWEEN {ra - box} AND {ra + box} AND "
                   f"2 * asin(sqrt(pow(sin(radians(dec - {dec}) / 2), 2) + cos(radians(dec)) "
                   f"* cos(radians({dec})) * pow(sin(radians(ra - {ra}) / 2), 2))) "
                   f"<= radians({r})")
            return con.execute(sql).fetchnumpy()["id"]

        for label, radius in RADII.items():
            cold, warm = [], []
            for i, (ra, dec) in enumerate(centres):
                got, dt = timed(duck_cone, ra, dec, radius)
                cold.append(dt)
                got, dt = timed(duck_cone, ra, dec, radius)
                warm.append(dt)
                ids["duckdb"][(i, label)] = set(got.tolist())
            results["duckdb"][label] = {"cold": cold, "warm": warm}
        # ---------------------------------------------------------------- LSDB
        if not args.no_lsdb:
            import lsdb

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                lcat = lsdb.from_dataframe(df, ra_column="ra", dec_column="dec",
                                           catalog_name="bench",
                                           partition_rows=args.lsdb_partition_rows or None)
                lcat.write_catalog(tmp / "lsdb", as_collection=False)
                ingest["lsdb"] = time.perf_counter() - t0
                print(f"LSDB: ingest {ingest['lsdb']:.1f} s "
                      f"({lcat.get_healpix_pixels().__len__()} partitions, partition_rows="
                      f"{args.lsdb_partition_rows or 'default'})")
                results["lsdb"], ids["lsdb"] = {}, {}
                for label, radius in RADII.items():
                    cold, warm = [], []
                    for i, (ra, dec) in enumerate(centres):
                        opened, dt_open = timed(lsdb.open_catalog, tmp / "lsdb")
                        got, dt = timed(lambda c=opened, ra=ra, dec=dec, radius=radius:
                                        c.cone_search(ra=ra, dec=dec, radius_arcsec=radius.to_value(
                                            u.arcsec)).compute(progress_bar=False))
                        cold.append(dt + dt_open)
                        got, dt = timed(lambda c=opened, ra=ra, dec=dec, radius=radius:
                                        c.cone_search(ra=ra, dec=dec, radius_arcsec=radius.to_value(
                                            u.arcsec)).compute(progress_bar=False))
                        warm.append(dt)
                        ids["lsdb"][(i, label)] = set(got["id"].tolist())
                    results["lsdb"][label] = {"cold": cold, "warm": warm}
        # ---------------------------------------------------------------- astropy
        coords = SkyCoord(df["ra"].to_numpy() * u.deg, df["dec"].to_numpy() * u.deg)
        results["astropy"], ids["astropy"] = {}, {}
        for label, radius in RADII.items():
            times = []
            for i, (ra, dec) in enumerate(centres):
                sep, dt = timed(coords.separation, SkyCoord(ra * u.deg, dec * u.deg))
                t0 = time.perf_counter()
                got = df["id"].to_numpy()[sep <= radius]
                times.append(dt + time.perf_counter() - t0)
                ids["astropy"][(i, label)] = set(got.tolist())
            results["astropy"][label] = {"cold": times, "warm": times}
        # ---------------------------------------------------------------- report
        print("\ningestion:")
        for name, dt in ingest.items():
            ratio = f"  (LSDB / this = {ingest['lsdb'] / dt:.2f}x)" if (
                "lsdb" in ingest and name != "lsdb") else ""
            print(f"  {name:8s} {dt:7.1f} s{ratio}")
        print("\ncone queries (median and max over centres):")
        for label in RADII:
            for mode in ("cold", "warm"):
                for name in results:
                    print(f"  {label:6s} {mode:5s} {name:8s} {fmt(results[name][label][mode])}")
        print("\nratios of warm medians (peer / ours; > 1 means ours is faster):")
        for label in RADII:
            ours = statistics.median(results["ours"][label]["warm"])
            parts = [f"{name} {statistics.median(results[name][label]['warm']) / ours:6.1f}x"
                     for name in results if name != "ours"]
            print(f"  {label:6s} " + "  ".join(parts))
        print("ratios of cold medians (peer / ours):")
        for label in RADII:
            ours = statistics.median(results["ours"][label]["cold"])
            parts = [f"{name} {statistics.median(results[name][label]['cold']) / ours:6.1f}x"
                     for name in results if name != "ours"]
            print(f"  {label:6s} " + "  ".join(parts))
        bad = [(name, key) for name in ids for key in ids[name]
               if ids[name][key] != ids["astropy"][key]]
        counts = [len(ids["astropy"][(i, lab)]) for i in range(len(centres)) for lab in RADII]
        print(f"identical ids across {', '.join(ids)}: {not bad} "
              f"({len(counts)} queries, {min(counts)}..{max(counts)} rows each)")
        if bad:
            print("  mismatches:", bad[:10])
        del coords
        if not args.no_dachs:
            dachs_benchmark(df, centres, args.dachs_rows, args.dachs_url, results["ours"])
        images_benchmark(tmp, args.images)


def dachs_benchmark(df: pd.DataFrame, centres: np.ndarray, n_rows: int, url: str,
                    ours: dict | None) -> None:
    """Publish the first ``n_rows`` rows to DaCHS; time TAP and SCS cones through pyvo."""
    import uuid

    import pyvo

    from vanotebook.archive import DaCHS

    sub = df.iloc[:min(n_rows, len(df))]
    name = f"bench_{uuid.uuid4().hex[:6]}"
    server = DaCHS(url)
    print(f"\nDaCHS: publishing {len(sub):,} rows (the first of the same catalogue) as {name}")
    _, dt = timed(server.publish_catalogue, sub, name, id="id", title="benchmark rows")
    print(f"DaCHS: publish_catalogue (write FITS + dachs imp + reload) {dt:.1f} s")
    try:
        coords = SkyCoord(sub["ra"].to_numpy() * u.deg, sub["dec"].to_numpy() * u.deg)
        sub_ids = sub["id"].to_numpy()
        tap = pyvo.dal.TAPService(f"{server.url}/tap")
        scs = pyvo.dal.SCSService(f"{server.url}/{name}/q/cone/scs.xml")
        times: dict[str, dict[str, dict[str, list[float]]]] = {"TAP": {}, "SCS": {}}
        bad, counts = [], []
        for label, radius in RADII.items():
            r = float(radius.to_value(u.deg))
            for method in times:
                times[method][label] = {"cold": [], "warm": []}
            for i, (ra, dec) in enumerate(centres.tolist()):
                truth = set(sub_ids[coords.separation(SkyCoord(ra * u.deg, dec * u.deg))
                                    <= radius].tolist())
                counts.append(len(truth))
                adql = (f"SELECT id FROM {name}.main WHERE 1=CONTAINS(POINT('ICRS', ra, dec), "
                        f"CIRCLE('ICRS', {ra!r}, {dec!r}, {r!r}))")
                runs = {"TAP": lambda q=adql: tap.search(q, maxrec=1_000_000).to_table(),
                        "SCS": lambda ra=ra, dec=dec, r=r: scs.search(
                            (ra, dec), r, verbosity=1, maxrec=1_000_000).to_table()}
                for method, run in runs.items():
                    for mode in ("cold", "warm"):
                        got, dt = timed(run)
                        times[method][label][mode].append(dt)
                    # (DaCHS's SCS writes bigint ids as text)
                    if set(np.asarray(got["id"]).astype(np.int64).tolist()) != truth:
                        bad.append((method, i, label, len(got), len(truth)))
        print(f"DaCHS cone queries on {len(sub):,} rows (median and max over centres):")
        for label in RADII:
            for mode in ("cold", "warm"):
                for method in times:
                    print(f"  {label:6s} {mode:5s} DaCHS {method} "
                          f"{fmt(times[method][label][mode])}")
        if ours is not None:
            print(f"ratios of warm medians (DaCHS on {len(sub):,} rows / ours on {len(df):,}):")
            for label in RADII:
                mine = statistics.median(ours[label]["warm"])
                parts = [f"DaCHS {m} {statistics.median(times[m][label]['warm']) / mine:6.1f}x"
                         for m in times]
                print(f"  {label:6s} " + "  ".join(parts))
        print(f"DaCHS TAP and SCS ids identical to astropy's on the subset: {not bad} "
              f"({len(counts)} cones, {min(counts)}..{max(counts)} rows each)")
        if bad:
            print("  mismatches (method, centre, radius, got, expected):", bad[:10])
    finally:
        server.unpublish(name)


def images_benchmark(tmp: Path, n_images: int) -> None:
    """Index ``n_images`` 1-deg tiles over the patch and query a 20' cone."""
    from astropy.io import fits
    from astropy.wcs import WCS

    rng = np.random.default_rng(7)
    folder = tmp / "images"
    folder.mkdir()
    for k in range(n_images):
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [rng.uniform(PATCH[0], PATCH[1]), rng.uniform(PATCH[2], PATCH[3])]
        w.wcs.crpix = [32.5, 32.5]
        w.wcs.cdelt = [-1 / 64, 1 / 64]
        header = w.to_header()
        header["BUNIT"] = "MJy/sr"
        header["FILTER"] = rng.choice(["g", "r", "i"])
        header["MJD-OBS"] = 58000.0 + k
        data = rng.normal(size=(64, 64)).astype(np.float32)
        fits.PrimaryHDU(data, header).writeto(folder / f"tile{k:04d}.fits")
    arc = Archive(tmp / "img_archive")
    _, dt = timed(arc.add_images, str(folder / "*.fits"))
    print(f"\nimages: indexed {n_images} tiles (1 deg, 64 x 64 px) in {dt:.1f} s "
          f"({dt / n_images * 1e3:.1f} ms per image)")
    grids = {}
    xs, ys = np.meshgrid(np.linspace(-0.5, 63.5, 65), np.linspace(-0.5, 63.5, 65))
    for f in sorted(folder.glob("*.fits")):
        grids[f.name] = WCS(fits.getheader(f)).pixel_to_world(xs.ravel(), ys.ravel())
    times, found = [], []
    centres = np.column_stack([rng.uniform(172, 188, 20), rng.uniform(-8, 8, 20)])
    missed = 0
    for ra, dec in centres:
        got, t = timed(arc.images, (ra, dec, 20 * u.arcmin))
        times.append(t)
        found.append(len(got))
        # brute force: tiles with any pixel within the cone must be listed
        near = SkyCoord(ra * u.deg, dec * u.deg)
        names = {Path(p).name for p in got["path"]}
        for name, sky in grids.items():
            if name not in names and (sky.separation(near) <= 20 * u.arcmin).any():
                missed += 1
    print(f"images query (20' cone, 20 centres): {fmt(times)}; "
          f"{min(found)}..{max(found)} images per query; missed by brute force check: {missed}")


if __name__ == "__main__":
    main()
