"""Load and faults on the gateway: many users at once, and a worker killed mid-job.

Run: ``python benchmarks/gateway.py [--users 10]``. It starts ``vanotebook
gateway`` on free ports, then

1. spawns N users at once; each runs a small mosaic on the shared cluster;
   it prints the spawn-to-first-result times (median, max) and any refusals;
2. runs a mosaic on the shared cluster while a worker is killed (SIGKILL)
   halfway, checks the result equals the same mosaic made in-process, and
   prints what the failure cost.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psutil

from vanotebook.hub import HubClient

JOB = """
import time, numpy as np, vanotebook
from vanotebook.sky import demo_sky
c = vanotebook.connect()
m = vanotebook.mosaic(demo_sky(0, size=0.3).images('fir250'), client=c, chunks=128)
print('RESULT', float(np.nanmean(m['mosaic'].values)))
"""

FAULT = """
import time, numpy as np, vanotebook
from vanotebook.sky import demo_sky
tiles = demo_sky(1, size=1.5).images('ir24')
local = vanotebook.mosaic(tiles, match_background=False)
c = vanotebook.connect()
print('START', flush=True)
t0 = time.perf_counter()
m = vanotebook.mosaic(tiles, client=c, chunks=64, match_background=False)
dt = time.perf_counter() - t0
same = bool(np.allclose(m['mosaic'].values, local['mosaic'].values, equal_nan=True))
print('SECONDS', dt, 'SAME', same, 'WORKERS', len(c.scheduler_info()['workers']))
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=10)
    args = parser.parse_args()
    token = uuid.uuid4().hex
    port = _port()
    state = tempfile.mkdtemp(prefix="vanotebook-gateway-bench-")
    env = dict(os.environ, VANOTEBOOK_API_TOKEN=token, VANOTEBOOK_HUB_API_PORT=str(_port()),
               VANOTEBOOK_SCHEDULER_PORT=str(_port()),
               VANOTEBOOK_DASK_DASHBOARD_PORT=str(_port()),
               VANOTEBOOK_DASK_INTERNAL_PORT=str(_port()), VANOTEBOOK_APP_PORT=str(_port()))
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    log = open(os.path.join(state, "gateway.log"), "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "vanotebook.cli", "gateway", "--port",
                             str(port), "--state-dir", state, "--workers", "2"],
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    hub = HubClient(f"http://127.0.0.1:{port}", token)
    try:
        hub.wait_ready()

        def user(i: int) -> tuple[float, str | None]:
            t0 = time.perf_counter()
            try:
                out = hub.execute(hub.spawn(f"user{i:02d}", timeout=300), JOB, timeout=300)
            except (RuntimeError, TimeoutError) as exc:
                return time.perf_counter() - t0, str(exc).splitlines()[0]
            return time.perf_counter() - t0, None if "RESULT" in out else out

        with ThreadPoolExecutor(args.users) as pool:
            results = list(pool.map(user, range(args.users)))
        times = [t for t, err in results if err is None]
        refused = [err for _, err in results if err is not None]
        print(f"{args.users} users at once: spawn-to-first-result median "
              f"{statistics.median(times):.1f} s, max {max(times):.1f} s "
              f"(target median <= 15 s); refused: {len(refused)}")
        for err in refused:
            print("  refused:", err)

        server = hub.spawn("fault")
        clean = hub.execute(server, FAULT)
        print("no fault:", clean.strip().splitlines()[-1])
        victim = next(p for p in psutil.process_iter(["cmdline"])
                      if "shared-0" in " ".join(p.info["cmdline"] or [])
                      and "dask_worker" in " ".join(p.info["cmdline"] or []))
        from distributed import Client

        watcher = Client(f"tcp://127.0.0.1:{env['VANOTEBOOK_SCHEDULER_PORT']}")

        def kill_when_busy() -> float:
            # kill shared-0 once it is in the middle of the user's mosaic
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 300:
                busy = {w: len(t) for w, t in watcher.processing().items() if t}
                names = {a: w["name"] for a, w in
                         watcher.scheduler_info(n_workers=-1)["workers"].items()}
                if any(names.get(w) == "shared-0" for w in busy) and sum(busy.values()) > 2:
                    victim.send_signal(signal.SIGKILL)
                    return time.perf_counter() - t0
                time.sleep(0.05)
            return float("nan")

        with ThreadPoolExecutor(1) as pool:
            killed = pool.submit(kill_when_busy)
            faulty = hub.execute(server, FAULT)
        watcher.close()
        print(f"worker shared-0 killed mid-mosaic ({killed.result():.1f} s after the watch "
              f"began):", faulty.strip().splitlines()[-1])
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
        log.close()


if __name__ == "__main__":
    main()
