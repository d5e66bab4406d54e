"""UWS job service benchmark: a small detection as a job vs `vanotebook.detect` in a notebook.

One process starts a Dask LocalCluster (worker processes on loopback) and the
job service (``python -m vanotebook.jobs._service``, users by bearer token)
whose jobs join that cluster. Then, on the same 150 x 150 radio tile of the
demo sky:

* ``notebook``: `vanotebook.detect` called here, a client of the same cluster
  (what a notebook does), median of ``--repeat`` warm calls, and its first
  call in a fresh process;
* ``job``: submission (upload + PHASE=RUN) to COMPLETED seen by the client
  through UWS WAIT, median of ``--repeat``; the overhead is job - notebook
  (target <= 1.5 s);
* throughput: ``--queued`` jobs submitted at once, jobs per minute until all
  are COMPLETED (the service runs ``--slots`` at a time).

Not a test; prints one table.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--queued", type=int, default=50)
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()

    import requests
    from distributed import Client, LocalCluster

    import vanotebook
    from vanotebook.jobs import JobClient
    from vanotebook.sky import demo_sky

    work = Path(tempfile.mkdtemp(prefix="uws-bench-"))
    tile = work / "radio.fits"
    demo_sky(0, size=0.3, n_catalogue=100, n_spectra=10).observe("radio").tiles[0].writeto(tile)
    cluster = LocalCluster(n_workers=1, threads_per_worker=2, host="127.0.0.1",
                           dashboard_address=None)
    client = Client(cluster)
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps({"tok-bench": "bench"}))
    port = _port()
    env = dict(os.environ, DASK_SCHEDULER_ADDRESS=cluster.scheduler_address)
    service = subprocess.Popen(
        [sys.executable, "-m", "vanotebook.jobs._service", "--port", str(port), "--state",
         str(work / "state"), "--slots", str(args.slots), "--tokens", str(tokens)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if requests.get(f"{url}/availability", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        jobs = JobClient(url, token="tok-bench")

        # first call in a fresh process (imports and kernel loading included)
        code = ("import time; t=time.perf_counter(); import vanotebook; "
                f"vanotebook.detect({str(tile)!r}); print(time.perf_counter()-t)")
        first = float(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                     text=True, check=True).stdout.split()[-1])
        vanotebook.detect(str(tile))  # warm
        notebook, job_times = [], []
        for _ in range(args.repeat):  # alternate, on a shared machine
            t0 = time.perf_counter()
            vanotebook.detect(str(tile))
            notebook.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            jobs.submit("detect", image=tile).wait(progress=False)
            job_times.append(time.perf_counter() - t0)
        nb, jb = statistics.median(notebook), statistics.median(job_times)

        t0 = time.perf_counter()
        queued = [jobs.submit("detect", image=tile) for _ in range(args.queued)]
        submitted = time.perf_counter() - t0
        for j in queued:
            j.wait(progress=False)
        elapsed = time.perf_counter() - t0
    finally:
        service.kill()
        service.wait()
        client.close()
        cluster.close()

    print(f"{'what':38s} {'time':>9s}")
    print(f"{'detect in a notebook, warm (median)':38s} {nb:8.3f}s")
    print(f"{'detect in a notebook, fresh process':38s} {first:8.3f}s")
    print(f"{'detect as a UWS job, submit->COMPLETED':38s} {jb:8.3f}s")
    print(f"{'job overhead (target <= 1.5 s)':38s} {jb - nb:8.3f}s  ratio {jb / nb:.1f}x")
    print(f"{args.queued} jobs queued at once: submitted in {submitted:.2f} s, all COMPLETED "
          f"in {elapsed:.1f} s = {60 * args.queued / elapsed:.0f} jobs/min "
          f"({args.slots} slots, {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
