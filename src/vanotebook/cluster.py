"""Cluster access: the shared Dask scheduler when configured, else a local one.

`connect` is what notebooks call first. Services take ``client=None`` and
``device="auto"``; `get_client` and `resolve_device` turn those into a
client (or none, to run in-process) and a device, the same way everywhere.

``connect(private=True)`` asks dask-gateway (the hub runs one, see
`vanotebook.hub._gateway`) for a cluster of one's own instead. Its bounded
options are declared once, in `PRIVATE_CLUSTER_OPTIONS`: this module checks
a request against them before sending it, and the gateway serves the same
declaration as its ``cluster_options`` (and enforces it again).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psutil

from . import _config
from ._errors import VanotebookInputError, check_choice, check_positive
from ._optional import HAS_CUPY

__all__ = [
    "PRIVATE_CLUSTER_OPTIONS",
    "PRIVATE_PROFILES",
    "SCHEDULER_ENV",
    "ClusterOption",
    "check_private_options",
    "cluster_summary",
    "connect",
    "devices",
    "get_client",
    "gpu_count",
    "image_chunk",
    "resolve_device",
    "worker_command",
]

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
GATEWAY_ADDRESS_KEY = "gateway.address"  # Dask config key; the hub sets DASK_GATEWAY__ADDRESS


@dataclass(frozen=True)
class ClusterOption:
    """One bounded choice a user makes for a private cluster.

    Attributes
    ----------
    name : str
        The keyword of `connect` and the dask-gateway option's field.
    label : str
        Human-readable name (the gateway's option widget shows it).
    kind : type
        ``int`` or ``float``.
    default, min, max : int or float
        Default and inclusive bounds.
    """

    name: str
    label: str
    kind: type
    default: float
    min: float
    max: float

    def check(self, value: Any) -> int | float:
        """Return ``value`` as this option's type, or raise naming the option and its bounds."""
        expected = (f"{'an integer' if self.kind is int else 'a number'} "
                    f"from {self.min} to {self.max}")
        ok_type = (isinstance(value, int) if self.kind is int
                   else isinstance(value, int | float)) and not isinstance(value, bool)
        if not ok_type or not self.min <= value <= self.max:
            raise VanotebookInputError(self.name, expected, value)
        return self.kind(value)


#: The bounded options of a private cluster, declared once: `connect` checks
#: them, `vanotebook.hub._gateway` turns them into dask-gateway's Options and
#: maps them onto each backend (local processes, Kubernetes, Slurm, PBS).
PRIVATE_CLUSTER_OPTIONS: tuple[ClusterOption, ...] = (
    ClusterOption("worker_cores", "Cores per worker", int, 1, 1, 4),
    ClusterOption("worker_memory", "Memory per worker (GiB)", float, 2.0, 0.5, 16.0),
    ClusterOption("worker_gpus", "GPUs per worker", int, 0, 0, 4),
    ClusterOption("max_workers", "Workers at most", int, 4, 1, 8),
)

#: Named sets of private-cluster options: ``connect(profile="gpu")``.
PRIVATE_PROFILES: dict[str, dict[str, int | float]] = {
    "small": {"worker_cores": 1, "worker_memory": 2.0, "worker_gpus": 0},
    "large": {"worker_cores": 4, "worker_memory": 8.0, "worker_gpus": 0},
    "gpu": {"worker_cores": 4, "worker_memory": 8.0, "worker_gpus": 1},
}


def check_private_options(profile: str | None = None, **options: Any) -> dict[str, int | float]:
    """Every private-cluster option, checked against `PRIVATE_CLUSTER_OPTIONS`.

    Parameters
    ----------
    profile : str, optional
        A key of `PRIVATE_PROFILES` whose values stand in for the defaults.
    **options
        ``worker_cores``, ``worker_memory`` (GiB), ``worker_gpus``, ``max_workers``.

    Returns
    -------
    dict
        All the options, with defaults filled in.

    Raises
    ------
    VanotebookInputError
        Naming an unknown option, or the option whose value is outside its bounds.
    """
    declared = {o.name: o for o in PRIVATE_CLUSTER_OPTIONS}
    for name in options:
        if name not in declared:
            raise VanotebookInputError(
                name, f"a private-cluster option, one of {tuple(declared)}", options[name])
    values: dict[str, Any] = {o.name: o.default for o in PRIVATE_CLUSTER_OPTIONS}
    if profile is not None:
        check_choice("profile", profile, tuple(PRIVATE_PROFILES))
        values.update(PRIVATE_PROFILES[profile])
    values.update(options)
    return {name: declared[name].check(value) for name, value in values.items()}


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
    private: bool = False,
    profile: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | int | None = None,
    dashboard_address: str = ":0",
    **options: Any,
):
    """Connect to the shared Dask cluster, start a local one, or get a private one.

    Parameters
    ----------
    address : str, optional
        Scheduler address. When None, ``$DASK_SCHEDULER_ADDRESS`` is used (the
        hub sets it for every user), then ``vanotebook.scheduler-address`` in
        the Dask config; when none is set, a `distributed.LocalCluster` sized
        to this machine is started. With ``private=True``: the dask-gateway
        address instead (default: the Dask config ``gateway.address``, which
        the hub sets through ``DASK_GATEWAY__ADDRESS``).
    private : bool
        Ask dask-gateway for a new cluster of one's own (its scheduler and
        workers run as one's own account, behind TLS with a key pair of its
        own), sized by ``options``; it is shut down when the client closes
        or this process ends.
    profile : str, optional
        A named set of private-cluster options (a key of `PRIVATE_PROFILES`:
        ``"small"``, ``"large"``, ``"gpu"``); implies ``private=True``.
    n_workers : int, optional
        Local cluster: its number of worker processes (default: one per two
        cores, at most four). Private cluster: scale to this many workers
        (at most ``max_workers``); by default it adapts between one worker
        and ``max_workers``.
    threads_per_worker, memory_limit : optional
        Sizing of the local cluster only (default: the cores shared out, and
        80% of the memory). A local worker advertises ``GPU=1`` when this
        machine has a GPU.
    dashboard_address : str
        Where the local cluster's dashboard listens (":0" picks a free port).
    **options
        Private cluster only, bounded by `PRIVATE_CLUSTER_OPTIONS`:
        ``worker_cores`` (1-4), ``worker_memory`` in GiB (0.5-16),
        ``worker_gpus`` (0-4; each worker sees its own through
        ``CUDA_VISIBLE_DEVICES`` and advertises ``GPU=n``) and
        ``max_workers`` (1-8).

    Returns
    -------
    distributed.Client
        The client, also made the default for Dask computations.

    Raises
    ------
    VanotebookInputError
        An option out of its bounds or unknown (before anything is asked of
        the gateway), or ``private=True`` where no dask-gateway is configured.
    """
    from distributed import Client, LocalCluster

    if private or profile is not None:
        for name, value in (("threads_per_worker", threads_per_worker),
                            ("memory_limit", memory_limit)):
            if value is not None:
                raise VanotebookInputError(
                    name, "None with private=True (size workers with worker_cores and "
                    "worker_memory)", value)
        checked = check_private_options(profile, **options)
        if n_workers is not None:
            n_workers = check_positive("n_workers", n_workers, integer=True)
            if n_workers > checked["max_workers"]:
                raise VanotebookInputError(
                    "n_workers", f"at most max_workers={checked['max_workers']}", n_workers)
        return _connect_private(address, checked, n_workers)
    if options:
        name = next(iter(options))
        raise VanotebookInputError(
            name, "a private-cluster option only with private=True, or a keyword of "
            "connect()", options[name])
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


def _connect_private(address: str | None, options: Mapping[str, Any], n_workers: int | None):
    """A new dask-gateway cluster with ``options``, scaled or adaptive, and its client."""
    import dask.config

    address = address or dask.config.get(GATEWAY_ADDRESS_KEY, None)
    if not address:
        raise VanotebookInputError(
            "private", "a dask-gateway to ask: none is configured (Dask config "
            f"'{GATEWAY_ADDRESS_KEY}', which the hub sets as DASK_GATEWAY__ADDRESS, or "
            "connect(address, private=True))", True)
    try:
        from dask_gateway import GatewayCluster
    except ImportError as exc:  # pragma: no cover - dask-gateway is a dependency
        raise VanotebookInputError("private", "the dask-gateway client installed",
                                   True) from exc
    cluster = GatewayCluster(address=address, shutdown_on_close=True, **options)
    _close_once(cluster.gateway)
    try:
        if n_workers is None:
            cluster.adapt(minimum=1, maximum=options["max_workers"])
        else:
            cluster.scale(n_workers)
        client = _private_client_class()(cluster, security=cluster.security,
                                         set_as_default=True)
    except BaseException:
        cluster.shutdown()
        raise
    # as GatewayCluster.get_client does: closing the cluster closes this client too
    # (instead of leaving it to try to reconnect)
    cluster._clients.add(client)
    return client


def _close_once(gateway: Any) -> Any:
    """Make a `dask_gateway.Gateway`'s ``close`` safe to call twice; return the gateway.

    dask-gateway 2026.3 closes a gateway again when it is garbage collected,
    and that second ``close`` raises (distributed refuses to hand out a
    stopped loop), printing "Exception ignored in Gateway.__del__" after
    every private cluster. It also installs `_safe_gateway_del` for every
    gateway, ours or dask-gateway's own.
    """
    _safe_gateway_del()
    close = gateway.close

    def close_if_open() -> Any:
        return _close_gateway(gateway, close)

    gateway.close = close_if_open
    return gateway


def _close_gateway(gateway: Any, close: Callable[[], Any]) -> Any:
    """``close()`` a gateway unless it is closed already, never blocking its own loop.

    A gateway collected on its event loop's own thread (``Gateway.__del__``
    runs wherever the collector does: CI hung for 15 minutes inside another
    gateway's request) cannot wait for its loop there: its HTTP session is
    closed on the loop instead, and the shared loop is left running.
    """
    if gateway.asynchronous:
        return close()
    runner = getattr(gateway, "_loop_runner", None)
    if runner is None or not runner.is_started():
        return None
    import asyncio

    loop = gateway.loop.asyncio_loop
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if here is loop:
        loop.create_task(gateway._cleanup())
        return None
    return close()


@functools.cache
def _safe_gateway_del() -> None:
    """Give `dask_gateway.Gateway` a ``__del__`` that never blocks its own loop (once).

    dask-gateway's own closes the gateway synchronously, which deadlocks the
    event loop when the collection happens on the loop's thread: seen with
    the gateway a refused ``Gateway.connect`` leaves behind.
    """

    from dask_gateway import Gateway

    def __del__(self) -> None:
        if getattr(self, "asynchronous", True) or sys.is_finalizing():
            return
        with contextlib.suppress(Exception):  # a finaliser must not raise
            _close_gateway(self, self.close)

    Gateway.__del__ = __del__


@functools.cache
def _private_client_class() -> type:
    """`distributed.Client` that shuts its dask-gateway cluster down when it closes."""
    from distributed import Client

    class PrivateClient(Client):
        """A client of a private dask-gateway cluster; closing it shuts the cluster down.

        The cluster is also shut down when this process exits (dask-gateway's
        exit hook), and by the gateway after its idle timeout.
        """

        def close(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().close(*args, **kwargs)
            finally:
                cluster = self.cluster
                if cluster is not None and getattr(cluster, "status", "closed") != "closed":
                    cluster.shutdown()

    return PrivateClient


def get_client(client=None):
    """The client a service should use: the one given, else the current default, else None.

    None means "run in this process" with Dask's threaded scheduler.
    """
    if client is not None:
        from distributed import Client

        if not isinstance(client, Client):
            raise VanotebookInputError("client", "a distributed.Client or None", client)
        return client
    if "distributed" not in sys.modules:  # no client can exist; skip its import (~0.2 s)
        return None
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


def cluster_gpus(client: Any) -> int:
    """GPUs the workers of ``client``'s cluster advertise (their ``GPU`` resources)."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return int(sum((w.get("resources") or {}).get("GPU", 0) for w in workers.values()))


def devices(device: str | None, client: Any = None) -> tuple[str, str]:
    """``(here, tasks)``: the device of the work done in this process and of the tasks.

    Without a client both are `resolve_device`'s answer for this process.
    With one, the tasks' device is decided by the cluster, where they run:
    "gpu" (or "auto") sends them, annotated with the ``GPU`` resource, to
    the workers that advertise one, even when this process has no GPU (a
    user's server sending work to GPU workers); "gpu" on a cluster where no
    worker advertises a GPU is refused by name. The work done here uses this
    process's GPU only if it has one.
    """
    device = device or _config.get("device", "auto")
    check_choice("device", device, _config.DEVICES)
    if client is None:
        local = resolve_device(device)
        return local, local
    if device == "cpu":
        return "cpu", "cpu"
    remote = cluster_gpus(client)
    if device == "gpu" and remote == 0:
        n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        raise VanotebookInputError(
            "device", "'cpu' or 'auto' on this cluster (none of its workers advertises a "
            "GPU resource)", f"'gpu' with {n} CPU-only worker(s)")
    here = "gpu" if HAS_CUPY and gpu_count() > 0 else "cpu"
    return here, ("gpu" if remote > 0 else "cpu")


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
