"""How long the demo data takes to make, and how large it is.

Run: ``python benchmarks/demo_data.py [--catalogue-rows 10000000]``. There is
no peer for this one: it times the default ``vanotebook demo-data`` set (the
foundation issue asks for under 2 minutes) and, optionally, a large
cross-match catalogue pair written chunk by chunk.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from vanotebook.sky import catalogue_pair, write_demo_data


def _size(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalogue-rows", type=int, default=0,
                        help="also time a catalogue pair of this many rows per side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_demo_data(Path(tmp) / "demo")
        dt = time.perf_counter() - t0
        print(f"demo-data (defaults): {dt:.1f} s, {_size(Path(tmp) / 'demo'):.0f} MB")
        if args.catalogue_rows:
            t0 = time.perf_counter()
            catalogue_pair(args.catalogue_rows).write(Path(tmp) / "big")
            dt = time.perf_counter() - t0
            print(f"catalogue pair 2 x {args.catalogue_rows:,}: {dt:.1f} s, "
                  f"{_size(Path(tmp) / 'big'):.0f} MB")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MB")


if __name__ == "__main__":
    main()
