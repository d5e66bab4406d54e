"""What TLS with mutual authentication costs the shared cluster: mosaic and cross-match.

The gateway's cluster speaks TLS (``vanotebook.hub._tls``). This runs the same
mosaic and the same cross-match on two clusters started in this process, one
plain TCP and one TLS with the gateway's certificates (two workers, one thread
each, like the gateway's defaults), alternating, and prints the warm medians,
the TLS/TCP ratio, and the first call on each fresh cluster.

    python benchmarks/tls.py [--repeats 5] [--rows 300000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import astropy.units as u
import numpy as np


def _cluster(security=None):
    from distributed import Client, LocalCluster

    kwargs = {"protocol": "tls://", "security": security} if security else {
        "protocol": "tcp://"}
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, host="127.0.0.1", **kwargs)
    return cluster, Client(cluster, security=security) if security else Client(cluster)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=300_000)
    args = parser.parse_args()

    from distributed.security import Security

    import vanotebook
    from vanotebook.hub._tls import ClusterCA
    from vanotebook.sky import demo_sky

    folder = Path(tempfile.mkdtemp(prefix="vanotebook-tls-bench-"))
    creds = ClusterCA(folder / "ca").issue("cluster", folder / "tls")
    security = Security(tls_ca_file=str(creds.ca_file), tls_client_cert=str(creds.cert),
                        tls_client_key=str(creds.key), tls_scheduler_cert=str(creds.cert),
                        tls_scheduler_key=str(creds.key), tls_worker_cert=str(creds.cert),
                        tls_worker_key=str(creds.key), require_encryption=True)
    sky = demo_sky(0, size=1.0, n_catalogue=args.rows, n_spectra=10)
    tiles = sky.images("ir24")
    left, right = sky.catalogues.to_tables()

    def mosaic(client):
        m = vanotebook.mosaic(tiles, client=client, chunks=256, match_background=False)
        return float(np.nansum(m["mosaic"].values))

    def xmatch(client):
        return len(vanotebook.crossmatch(left, right, radius=1 * u.arcsec, client=client))

    jobs = {"mosaic (ir24, 1 deg, 256-px blocks)": mosaic,
            f"cross-match {args.rows:,} x {args.rows:,} at 1\"": xmatch}
    clusters = {"tcp": _cluster(), "tls": _cluster(security)}
    times: dict[tuple[str, str], list[float]] = {}
    first: dict[tuple[str, str], float] = {}
    answers: dict[tuple[str, str], object] = {}
    try:
        for name, job in jobs.items():
            for kind, (_, client) in clusters.items():
                t0 = time.perf_counter()
                answers[name, kind] = job(client)
                first[name, kind] = time.perf_counter() - t0
            for _ in range(args.repeats):
                for kind, (_, client) in clusters.items():
                    t0 = time.perf_counter()
                    assert job(client) == answers[name, kind]
                    times.setdefault((name, kind), []).append(time.perf_counter() - t0)
            assert answers[name, "tcp"] == answers[name, "tls"], name
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    print(f"{'workload':40s} {'tcp warm':>9s} {'tls warm':>9s} {'tls/tcp':>8s} "
          f"{'tcp 1st':>8s} {'tls 1st':>8s}")
    for name in jobs:
        tcp = statistics.median(times[name, "tcp"])
        tls = statistics.median(times[name, "tls"])
        print(f"{name:40s} {tcp:8.2f}s {tls:8.2f}s {tls / tcp:8.2f} "
              f"{first[name, 'tcp']:7.2f}s {first[name, 'tls']:7.2f}s")
    print("(median of", args.repeats, "alternating runs; same answers on both)")


if __name__ == "__main__":
    main()
