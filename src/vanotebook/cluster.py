"""Cluster access: the shared Dask scheduler when configured, else a local one.

`connect` is what notebooks call first. Services take ``client=None`` and
``device="auto"``; `get_client` and `resolve_device` turn those into a
client (or none, to run in-process) and a device, the same way everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Literal

import psutil

from . import _config
from ._errors import VanotebookInputError, check_choice, check_positive
from ._optional import HAS_CUPY

__all__ = [
    "SCHEDULER_ENV",
    "cluster_summary",
    "connect",
    "get_client",
    "gpu_count",
    "image_chunk",
    "resolve_device",
    "worker_command",
]

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


def gpu_count() -> int:
    """How many NVIDIA GPUs this process may use.

    ``CUDA_VISIBLE_DEVICES`` decides when it is set (empty means none);
    otherwise the devices ``nvidia-smi -L`` lists are counted. No driver, no
    GPUs.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        if ids == ["NoDevFiles"]:
            return 0
        return len(ids)
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    if out.returncode != 0:
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def connect(
    address: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | int | None = None,
    dashboard_address: str = ":0",
):
    """Connect to the shared Dask cluster, or start a local one.

    Parameters
    ----------
    address : str, optional
        Scheduler address. When None, ``$DASK_SCHEDULER_ADDRESS`` is used (the
        hub sets it for every user), then ``vanotebook.scheduler-address`` in
        the Dask config; when none is set, a `distributed.LocalCluster` sized
        to this machine is started.
    n_workers, threads_per_worker, memory_limit : optional
        Sizing of the local cluster only (defaults: one process per two
        cores, at most four, sharing 80% of the memory). A worker advertises
        ``GPU=1`` when this machine has a GPU.
    dashboard_address : str
        Where the local cluster's dashboard listens (":0" picks a free port).

    Returns
    -------
    distributed.Client
        The client, also made the default for Dask computations.
    """
    from distributed import Client, LocalCluster

    address = address or os.environ.get(SCHEDULER_ENV) or _config.get("scheduler-address")
    if address:
        return Client(address)
    cores = os.cpu_count() or 1
    if n_workers is None:
        n_workers = max(1, min(4, cores // 2))
    n_workers = check_positive("n_workers", n_workers, integer=True)
    if threads_per_worker is None:
        threads_per_worker = max(1, cores // n_workers)
    threads_per_worker = check_positive("threads_per_worker", threads_per_worker, integer=True)
    if memory_limit is None:
        memory_limit = int(0.8 * psutil.virtual_memory().total / n_workers)
    gpus = gpu_count()
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        memory_limit=memory_limit,
        dashboard_address=dashboard_address,
        resources={"GPU": 1} if gpus else None,
    )
    return Client(cluster)


def get_client(client=None):
    """The client a service should use: the one given, else the current default, else None.

    None means "run in this process" with Dask's threaded scheduler.
    """
    if client is not None:
        from distributed import Client

        if not isinstance(client, Client):
            raise VanotebookInputError("client", "a distributed.Client or None", client)
        return client
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def resolve_device(device: str | None = None) -> Literal["cpu", "gpu"]:
    """Turn ``device="auto"|"cpu"|"gpu"`` into the device this process will use.

    "auto" (the configured default) picks the GPU when CuPy and a device are
    present; "gpu" raises when either is missing, so a request for a GPU is
    never silently run elsewhere.
    """
    device = device or _config.get("device", "auto")
    check_choice("device", device, _config.DEVICES)
    has_gpu = HAS_CUPY and gpu_count() > 0
    if device == "gpu" and not has_gpu:
        why = "CuPy is not installed" if not HAS_CUPY else "no NVIDIA GPU is visible"
        raise VanotebookInputError("device", f"'cpu' or 'auto' here ({why})", device)
    if device == "auto":
        return "gpu" if has_gpu else "cpu"
    return device  # type: ignore[return-value]


def image_chunk(chunks: int | None = None) -> int:
    """Side of the square image blocks on Dask: ``chunks`` or the configured default."""
    value = _config.get("image-chunk", 2048) if chunks is None else chunks
    return check_positive("chunks", value, integer=True)


def worker_command(
    scheduler: str,
    *,
    nthreads: int | None = None,
    memory_limit: str | None = None,
    name: str | None = None,
    gpus: int | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of a Dask worker that advertises ``GPU=n`` when it sees GPUs."""
    if not scheduler or not isinstance(scheduler, str):
        raise VanotebookInputError("scheduler", "a scheduler address such as tcp://host:8786",
                                   scheduler)
    gpus = gpu_count() if gpus is None else gpus
    cmd = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler]
    if nthreads is not None:
        cmd += ["--nthreads", str(check_positive("nthreads", nthreads, integer=True))]
    if memory_limit is not None:
        cmd += ["--memory-limit", str(memory_limit)]
    if name is not None:
        cmd += ["--name", name]
    if gpus:
        cmd += ["--resources", f"GPU={gpus}"]
    return [*cmd, *extra]


def cluster_summary(client=None) -> dict:
    """Workers, threads, memory and GPUs of the cluster a client is connected to.

    Returns
    -------
    dict
        ``address``, ``dashboard`` (link), ``workers`` (a list of dicts with
        ``name``, ``threads``, ``memory_limit``, ``memory_used``, ``gpus``), and
        the totals ``n_workers``, ``threads``, ``gpus``.
    """
    client = get_client(client)
    if client is None:
        return {"address": None, "dashboard": None, "workers": [], "n_workers": 0,
                "threads": 0, "gpus": 0}
    info = client.scheduler_info(n_workers=-1)
    workers = []
    for w in info["workers"].values():
        workers.append({
            "name": str(w.get("name")),
            "threads": int(w.get("nthreads", 0)),
            "memory_limit": int(w.get("memory_limit") or 0),
            "memory_used": int((w.get("metrics") or {}).get("memory", 0)),
            "gpus": int((w.get("resources") or {}).get("GPU", 0)),
        })
    return {
        "address": info.get("address"),
        "dashboard": client.dashboard_link,
        "workers": workers,
        "n_workers": len(workers),
        "threads": sum(w["threads"] for w in workers),
        "gpus": sum(w["gpus"] for w in workers),
    }
