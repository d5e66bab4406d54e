"""Catalogue HiPS of a large catalogue: time and peak memory.

1e7 rows (id, ra, dec and five float columns) uniform over a 20 x 20 deg
patch are written to a parquet file in chunks, then turned into a
progressive catalogue HiPS (brightest ``mag`` first, 500 rows per tile)
twice: from the parquet file (laid out as HEALPix partitions first) and from
an archive `Catalogue` (already partitioned). A sampler thread records the
process's peak RSS above its level before each run.

    python benchmarks/catalogue_hips.py [n_rows]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from vanotebook.archive import Archive
from vanotebook.archive._hips import write_catalogue_hips


def make_parquet(path: Path, n: int, chunk: int = 1_000_000) -> None:
    rng = np.random.default_rng(0)
    writer = None
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        sin = rng.uniform(np.sin(np.radians(-10)), np.sin(np.radians(10)), m)
        cols = {"id": np.arange(start, start + m), "ra": rng.uniform(140, 160, m),
                "dec": np.degrees(np.arcsin(sin)), "mag": rng.uniform(12, 24, m)}
        for i in range(4):
            cols[f"f{i}"] = rng.normal(size=m)
        t = pa.table(cols)
        writer = writer or pq.ParquetWriter(path, t.schema)
        writer.write_table(t)
    writer.close()


class PeakRSS:
    def __enter__(self):
        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    @property
    def extra_gib(self) -> float:
        return (self.peak - self.base) / 2**30


def main(n: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="cathips-"))
    try:
        src = root / "cat.parquet"
        t0 = time.perf_counter()
        make_parquet(src, n)
        print(f"rows: {n:,}; parquet written in {time.perf_counter() - t0:.1f} s "
              f"({src.stat().st_size / 2**20:.0f} MiB)")
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            out = write_catalogue_hips(src, root / "hips_parquet", order_by="mag",
                                       max_rows_per_tile=500)
            dt = dt_parquet = time.perf_counter() - t0
        n_tiles = sum(1 for _ in out.rglob("Npix*.tsv"))
        props = (out / "properties").read_text()
        order = next(ln for ln in props.splitlines() if ln.startswith("hips_order ="))
        print(f"catalogue HiPS from parquet : {dt:7.1f} s  peak RSS +{mem.extra_gib:.2f} GiB  "
              f"{n_tiles:,} tiles, {order}")
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            arch = Archive(root / "archive")
            arch.add_catalogue("big", src)
            dt_ingest = time.perf_counter() - t0
            cat = arch.catalogue("big")
            t0 = time.perf_counter()
            write_catalogue_hips(cat, root / "hips_archive", order_by="mag",
                                 max_rows_per_tile=500)
            dt = time.perf_counter() - t0
        print(f"archive ingest              : {dt_ingest:7.1f} s")
        print(f"catalogue HiPS from archive : {dt:7.1f} s  peak RSS +{mem.extra_gib:.2f} GiB "
              f"(ingest included in the peak)")
        print(f"input size in memory would be {n * 8 * 8 / 2**30:.2f} GiB")
        print(f"ratio parquet path / (ingest + archive path): {dt_parquet / (dt_ingest + dt):.2f} "
              f"(target <= 1.3)")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main(int(float(sys.argv[1])) if len(sys.argv) > 1 else 10_000_000)
