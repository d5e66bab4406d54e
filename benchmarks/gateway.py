"""Load and faults on the gateway: many users at once, and a worker killed mid-job.

Run (as root: the gateway makes a unix account per user):
``python benchmarks/gateway.py [--users 10]``. It starts ``vanotebook gateway``
on free ports (TLS cluster, per-user accounts and cgroups, as deployed), then

1. spawns N users at once; each runs a small mosaic on the shared cluster;
   it prints the spawn-to-first-result times (median, max) and any refusals;
2. runs a mosaic on the shared cluster while a worker is killed (SIGKILL)
   halfway, checks the result equals the same mosaic made in-process, and
   prints what the failure cost.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

from vanotebook.hub import HubClient
from vanotebook.hub._client import wait_for

PREFIX = f"vb{uuid.uuid4().hex[:4]}-"  # this run's unix accounts, deleted at the end

# the user's first code; the timestamps (wall clock, same machine) time each phase
JOB = """
import time as _time
_t = {'code': _time.time()}
import json, psutil, numpy as np, vanotebook
from vanotebook.sky import demo_sky
_me = psutil.Process()
# psutil's create_time counts from /proc/stat's whole-second boot time; correct it
with open('/proc/uptime') as _f:
    _boot = _time.time() - float(_f.read().split()[0]) - psutil.boot_time()
_t['server_proc'] = _me.parent().create_time() + _boot
_t['import'] = _time.time()
c = vanotebook.connect()
_t['connect'] = _time.time()
tiles = demo_sky(0, size=0.3).images('fir250')
_t['data'] = _time.time()
m = vanotebook.mosaic(tiles, client=c, chunks=128)
print('RESULT', float(np.nanmean(m['mosaic'].values)))
_t['result'] = _time.time()
_t['kernel_cpu'] = sum(_me.cpu_times()[:2])
_t['server_cpu'] = sum(_me.parent().cpu_times()[:2])
print('PHASES', json.dumps(_t))
"""

# phase name -> (from, to) between the timestamps a user collects
PHASES = {
    "hub: request -> server process": ("request", "server_proc"),
    "server process -> ready (hub)": ("server_proc", "ready"),
    "ready -> kernel started": ("ready", "kernel"),
    "kernel started -> code runs": ("kernel", "code"),
    "imports": ("code", "import"),
    "connect": ("import", "connect"),
    "demo data": ("connect", "data"),
    "mosaic": ("data", "result"),
    "result -> reply at the client": ("result", "reply"),
    "total (spawn to first result)": ("request", "reply"),
}

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


def _cpu_by_kind(root: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of the gateway's processes, summed by kind."""
    kinds = {"singleuser": "user servers", "jupyterhub ": "hub", "configurable-http-proxy":
             "proxy", "dask_worker": "workers", "dask_scheduler": "scheduler"}
    out: dict[str, float] = {}
    for p in psutil.Process(root).children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
            cpu = sum(p.cpu_times()[:2])
        except psutil.Error:
            continue
        kind = next((v for k, v in kinds.items() if k in cmd + " "), "other services")
        out[kind] = out.get(kind, 0.0) + cpu
    return out


def _cluster_security(state: Path):
    """The cluster's own certificate (root reads it): TLS with mutual authentication."""
    from distributed.security import Security

    tls = state / "dask" / "tls"
    return Security(tls_ca_file=str(tls / "ca.pem"), tls_client_cert=str(tls / "cluster.pem"),
                    tls_client_key=str(tls / "cluster.key"), require_encryption=True)


def _wait_for_services(hub: HubClient, scheduler_port: str, log_path: str, *,
                       workers: int) -> None:
    """Wait until the gateway is fully up: its workers joined, its dashboards app answers.

    Users arrive at a running gateway; the hub's API answers before its managed
    services have finished starting, and they would compete for the CPU.
    """
    from distributed import Client

    with Client(f"tls://127.0.0.1:{scheduler_port}", timeout=120,
                security=_cluster_security(Path(log_path).parent)) as client:
        client.wait_for_workers(workers, timeout=300)
    # the workers warm up in the background as they start (vanotebook.hub._warm)
    log = Path(log_path)
    wait_for(lambda: all(f"vanotebook warm-up of shared-{i} " in log.read_text()
                         for i in range(workers)), 300, "the workers' warm-up")
    # the dashboards service (its proxy) answers with a redirect to the login once it is up
    wait_for(lambda: requests.get(f"{hub.url}/services/dashboards/", allow_redirects=False,
                                  timeout=5).status_code < 500, 300, "the dashboards app")
    time.sleep(2)  # let the services settle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--no-wait", action="store_true",
                        help="spawn the users as soon as the hub's API answers, while its "
                        "services (workers, dashboards app) are still starting")
    parser.add_argument("--no-fault", action="store_true",
                        help="only the load test, not the worker killed mid-mosaic")
    args = parser.parse_args()
    token = uuid.uuid4().hex
    port = _port()
    state = tempfile.mkdtemp(prefix="vanotebook-gateway-bench-")
    env = dict(os.environ, VANOTEBOOK_API_TOKEN=token, VANOTEBOOK_HUB_API_PORT=str(_port()),
               VANOTEBOOK_SCHEDULER_PORT=str(_port()),
               VANOTEBOOK_DASK_DASHBOARD_PORT=str(_port()),
               VANOTEBOOK_DASK_INTERNAL_PORT=str(_port()), VANOTEBOOK_APP_PORT=str(_port()),
               VANOTEBOOK_PROXY_API_PORT=str(_port()), VANOTEBOOK_PUBLISH_PORT=str(_port()),
               VANOTEBOOK_DASK_GATEWAY_PORT=str(_port()),
               VANOTEBOOK_DASK_GATEWAY_PROXY_PORT=str(_port()),
               VANOTEBOOK_DASK_GATEWAY_API_PORT=str(_port()),
               VANOTEBOOK_USER_PREFIX=PREFIX)
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    log = open(os.path.join(state, "gateway.log"), "w")  # noqa: SIM115
    t_launch = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vanotebook.cli", "gateway", "--port",
                             str(port), "--state-dir", state, "--workers", "2"],
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    hub = HubClient(f"http://127.0.0.1:{port}", token)
    print("gateway log:", log.name, flush=True)
    try:
        hub.wait_ready()
        if not args.no_wait:
            _wait_for_services(hub, env["VANOTEBOOK_SCHEDULER_PORT"], log.name, workers=2)
        print(f"gateway up {time.perf_counter() - t_launch:.1f} s after launch; "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)

        phases: list[dict[str, float]] = []

        def user(i: int) -> tuple[float, str | None]:
            stamps = {"request": time.time()}
            try:
                server = hub.spawn(f"user{i:02d}", timeout=300)
                stamps["ready"] = time.time()
                out = hub.execute(server, JOB, timeout=300, timings=stamps)
            except (RuntimeError, TimeoutError) as exc:
                return time.time() - stamps["request"], str(exc).splitlines()[0]
            # spawn to first result: until the result reached this client (the kernel's
            # shutdown afterwards is not counted)
            dt = stamps["reply"] - stamps["request"]
            if "RESULT" not in out:
                return dt, out
            stamps.update(json.loads(out.split("PHASES ")[1].splitlines()[0]))
            phases.append(stamps)
            return dt, None

        t_start = time.perf_counter()
        cpu_before = _cpu_by_kind(proc.pid)
        with ThreadPoolExecutor(args.users) as pool:
            results = list(pool.map(user, range(args.users)))
        cpu_after = _cpu_by_kind(proc.pid)
        times = [t for t, err in results if err is None]
        refused = [err for _, err in results if err is not None]
        print(f"{args.users} users at once: spawn-to-first-result median "
              f"{statistics.median(times):.1f} s, max {max(times):.1f} s "
              f"(target median <= 15 s); refused: {len(refused)}; "
              f"load average {os.getloadavg()[0]:.2f} after "
              f"{time.perf_counter() - t_start:.0f} s")
        for err in refused:
            print("  refused:", err)
        print(f"  {'phase (s)':34s} {'median':>7s} {'max':>7s}")
        for name, (a, b) in PHASES.items():
            spans = [p[b] - p[a] for p in phases]
            if spans:
                print(f"  {name:34s} {statistics.median(spans):7.1f} {max(spans):7.1f}")
        for name in ("server_cpu", "kernel_cpu"):
            cpu = [p[name] for p in phases]
            if cpu:
                print(f"  {name + ' (CPU s, at result)':34s} {statistics.median(cpu):7.1f} "
                      f"{max(cpu):7.1f}")
        used = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_after.items()}
        print("  CPU s the gateway used during the burst (kernels already gone, see above): "
              + ", ".join(f"{k} {v:.1f}" for k, v in sorted(used.items())))
        if args.no_fault:
            return

        server = hub.spawn("fault")
        clean = hub.execute(server, FAULT)
        print("no fault:", clean.strip().splitlines()[-1])
        victim = next(p for p in psutil.process_iter(["cmdline"])
                      if "shared-0" in " ".join(p.info["cmdline"] or [])
                      and "dask_worker" in " ".join(p.info["cmdline"] or []))
        from distributed import Client

        watcher = Client(f"tls://127.0.0.1:{env['VANOTEBOOK_SCHEDULER_PORT']}",
                         security=_cluster_security(Path(state)))

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
        from vanotebook.hub._accounts import delete_account

        for name in [p.pw_name for p in pwd.getpwall() if p.pw_name.startswith(PREFIX)]:
            delete_account(name)


if __name__ == "__main__":
    main()
