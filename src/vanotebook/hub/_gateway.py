"""dask-gateway as a hub service: private Dask clusters, each run as its user's account.

`dask_gateway_service` writes a ``dask-gateway-server`` configuration file
into the hub's state dir (mode 0600: it holds the gateway's hub token) and
returns what ``jupyterhub_config.py`` needs: the service (``dask-gateway-server
-f <file>``, run by the hub), the roles that let users' servers reach it, and
the environment that points their ``dask_gateway`` client (and
``vanotebook.connect(private=True)``) at it.

Layout on one machine (every listener on 127.0.0.1 unless
``VANOTEBOOK_DASK_GATEWAY_HOST`` says otherwise)::

    user's kernel --HTTP--> hub proxy /services/dask-gateway/ --> gateway proxy :port
                                          (prefix stripped) --> gateway API :api_port
    user's kernel --TLS (SNI = cluster name)--> scheduler proxy :proxy_port --> scheduler

Users authenticate with their server's ``JUPYTERHUB_API_TOKEN``
(`HubAuthenticator`, dask-gateway's JupyterHub authenticator, which checks
the token's ``access:services!service=dask-gateway`` scope) and the hub
name ``alice`` becomes the unix name ``vn-alice`` (`UnixNameMixin`), so the
local and batch backends start her clusters as her own account and the
gateway shows each user only their own clusters. Each cluster has a TLS key
pair of its own (dask-gateway makes one per cluster).

The bounded options are `vanotebook.cluster.PRIVATE_CLUSTER_OPTIONS`
(worker cores, memory, GPUs, workers at most); `gateway_options` serves them
as dask-gateway's ``cluster_options`` and maps them onto the chosen
backend's traits. Environment variables, read when the file is written:

``VANOTEBOOK_DASK_GATEWAY_BACKEND``
    ``local`` (default: processes on this machine, as the user's account),
    ``kubernetes`` (dask-gateway's KubeBackend), ``slurm`` or ``pbs``.
``VANOTEBOOK_DASK_GATEWAY_HOST``
    where the gateway's API and proxies, and (local, Slurm, PBS) the clusters'
    schedulers and workers listen (default 127.0.0.1). A batch system whose
    jobs run on other nodes needs ``0.0.0.0`` or the cluster network's address.
``VANOTEBOOK_DASK_GATEWAY_PROXY_ADDRESS``
    the scheduler proxy as users' servers reach it (default
    ``gateway://127.0.0.1:<proxy_port>``; e.g. the Helm chart's traefik service
    when users' servers are KubeSpawner pods).
``VANOTEBOOK_DASK_GATEWAY_URL``
    a gateway run elsewhere (e.g. by dask-gateway's Helm chart with this
    file): the hub starts none and routes ``/services/dask-gateway/`` there.
``VANOTEBOOK_DASK_GATEWAY_IDLE_TIMEOUT``
    seconds after which an idle cluster is shut down (default 3600; 0: never).
``VANOTEBOOK_DASK_GATEWAY_GPUS``
    local: the GPU ids workers are given, comma-separated (default: those of
    ``CUDA_VISIBLE_DEVICES``, else every GPU ``nvidia-smi`` lists). Each
    worker gets its own through ``CUDA_VISIBLE_DEVICES``, spread over them.
``VANOTEBOOK_DASK_GATEWAY_IMAGE`` / ``VANOTEBOOK_DASK_GATEWAY_NAMESPACE``
    kubernetes: the image of schedulers and workers (required; it needs
    vanotebook and dask-gateway) and their namespace.
``VANOTEBOOK_DASK_GATEWAY_QUEUE`` / ``_ACCOUNT`` / ``_QOS`` / ``_PROJECT``
    slurm (partition, account, QOS) and pbs (queue, account, project).
``VANOTEBOOK_DASK_GATEWAY_PYTHON`` / ``VANOTEBOOK_DASK_GATEWAY_SETUP``
    slurm, pbs: the Python on the compute nodes (default: the hub's) and shell
    lines run before it (``module load ...``, activating an environment).
"""

from __future__ import annotations

import functools
import os
import pwd
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dask_gateway_server.auth import JupyterHubAuthenticator
from dask_gateway_server.backends.jobqueue.pbs import PBSBackend
from dask_gateway_server.backends.jobqueue.slurm import SlurmBackend, SlurmClusterConfig
from dask_gateway_server.backends.local import LocalBackend, LocalClusterConfig
from dask_gateway_server.models import User
from dask_gateway_server.options import Float, Integer, Options
from dask_gateway_server.traitlets import Type
from traitlets import Integer as IntegerTrait
from traitlets import List, Unicode, default
from traitlets.config import Configurable

from .._errors import VanotebookInputError, check_choice
from ..cluster import PRIVATE_CLUSTER_OPTIONS, gpu_count
from ._accounts import unix_name
from ._tls import _write_private

__all__ = [
    "BACKENDS",
    "SERVICE_NAME",
    "HubAuthenticator",
    "UnixNameMixin",
    "UserLocalBackend",
    "UserPBSBackend",
    "UserSlurmBackend",
    "config_values",
    "dask_gateway_service",
    "gateway_options",
    "merge_roles",
]

SERVICE_NAME = "dask-gateway"
PREFIX = f"/services/{SERVICE_NAME}"
CONFIG_NAME = "dask_gateway_config.py"
BACKENDS = ("local", "kubernetes", "slurm", "pbs")
_BACKEND_CLASSES = {
    "local": "vanotebook.hub._gateway.UserLocalBackend",
    "kubernetes": "dask_gateway_server.backends.kubernetes.KubeBackend",
    "slurm": "vanotebook.hub._gateway.UserSlurmBackend",
    "pbs": "vanotebook.hub._gateway.UserPBSBackend",
}
_GIB = 2**30
_ENV = "VANOTEBOOK_DASK_GATEWAY_"


# -- who: hub names become unix names ---------------------------------------------------


class UnixNameMixin(Configurable):
    """Authenticator mix-in: the hub user ``alice`` is the gateway user ``<prefix>alice``.

    Every backend then sees the unix account's name: the local and batch
    backends start the user's clusters as that account, and the gateway's
    listing and permission checks (which compare names) use it too. Names
    that make no unix account (a hub service's ``service:<name>``) are
    refused.
    """

    user_prefix = Unicode("vn-", config=True,
                          help="What comes before a hub user's name in their unix name.")

    async def authenticate(self, request: Any) -> Any:
        from aiohttp import web

        found = await super().authenticate(request)
        user, context = found if isinstance(found, tuple) else (found, None)
        try:
            name = unix_name(user.name, self.user_prefix)
        except VanotebookInputError:
            raise web.HTTPForbidden(
                reason=f"{user.name!r} has no unix account: no clusters") from None
        mapped = User(name, groups=user.groups, admin=user.admin)
        return (mapped, context) if isinstance(found, tuple) else mapped


class HubAuthenticator(UnixNameMixin, JupyterHubAuthenticator):
    """dask-gateway's JupyterHub authenticator, with hub names mapped to unix names."""


# -- where: backends that run clusters as the user's account ------------------------------


class _GPUConfig(Configurable):
    worker_gpus = IntegerTrait(0, min=0, config=True, help="GPUs given to each worker.")


class UserLocalClusterConfig(_GPUConfig, LocalClusterConfig):
    """A local cluster's configuration, with GPUs per worker."""


class UserLocalBackend(LocalBackend):
    """dask-gateway's LocalBackend (run as root): each cluster runs as its user's account.

    On top of dask-gateway's own:

    * the working dir (certificates, logs) is made by root and handed over to
      the account whole, mode 0700 (dask-gateway 2026.3's own
      ``setup_working_directory`` gives each *character* of the certificate
      paths to ``chown``, so as root it hands ``/`` to the user, then fails);
    * ``HOME`` is the account's home (Dask's and numba's caches go there);
    * schedulers and workers listen on `default_host` (127.0.0.1);
    * each worker gets ``worker_gpus`` of `gpu_ids` through
      ``CUDA_VISIBLE_DEVICES``, the least used first; the scheduler gets none.
    """

    cluster_config_class = Type(
        "vanotebook.hub._gateway.UserLocalClusterConfig",
        klass="dask_gateway_server.backends.base.ClusterConfig",
        help="The cluster config class to use", config=True)
    default_host = Unicode("127.0.0.1", config=True,
                           help="Where schedulers and workers listen.")
    gpu_ids = List(Unicode(), config=True, help="GPU ids workers may be given.")

    @default("gpu_ids")
    def _default_gpu_ids(self) -> list[str]:
        return _host_gpu_ids()

    def setup_working_directory(self, cluster: Any) -> str:
        entry = pwd.getpwnam(cluster.username)
        if self.clusters_directory:
            workdir = os.path.join(self.clusters_directory, cluster.name)
            os.makedirs(self.clusters_directory, 0o711, exist_ok=True)
            os.mkdir(workdir, 0o700)
        else:
            workdir = tempfile.mkdtemp(prefix="dask-gateway-", suffix=f"-{cluster.name}")
        certs, logs = self.get_certs_directory(workdir), self.get_logs_directory(workdir)
        paths = [workdir, certs, logs]
        for path in (certs, logs):
            os.mkdir(path, 0o700)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        for path, data in zip(self._get_tls_paths(workdir), (cluster.tls_cert, cluster.tls_key),
                              strict=True):
            with os.fdopen(os.open(path, flags, 0o600), "wb") as f:
                f.write(data)
            paths.append(path)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        os.chmod(workdir, 0o700)
        self.log.debug("Working directory %s for cluster %s created", workdir, cluster.name)
        return workdir

    def get_env(self, cluster: Any) -> dict[str, str]:
        env = super().get_env(cluster)
        entry = pwd.getpwnam(cluster.username)
        env.update(HOME=entry.pw_dir, LOGNAME=cluster.username)
        return env

    def get_scheduler_env(self, cluster: Any) -> dict[str, str]:
        return {**super().get_scheduler_env(cluster), "CUDA_VISIBLE_DEVICES": ""}

    def get_worker_command(self, cluster: Any, worker_name: str,
                           scheduler_address: str | None = None) -> list[str]:
        cmd = super().get_worker_command(cluster, worker_name, scheduler_address)
        return [*cmd, "--host", self.default_host]

    def _take_gpus(self, n: int) -> list[str]:
        in_use = getattr(self, "_gpus_in_use", None)
        if in_use is None:
            in_use = self._gpus_in_use = dict.fromkeys(self.gpu_ids, 0)
        if n > len(in_use):
            raise ValueError(f"worker_gpus={n}, but this machine has {len(in_use)} GPU(s)")
        taken = sorted(in_use, key=lambda i: (in_use[i], self.gpu_ids.index(i)))[:n]
        for i in taken:
            in_use[i] += 1
        return taken

    def _give_back_gpus(self, ids: list[str]) -> None:
        in_use = getattr(self, "_gpus_in_use", {})
        for i in ids:
            if in_use.get(i, 0) > 0:
                in_use[i] -= 1

    async def do_start_worker(self, worker: Any):
        cluster = worker.cluster
        gpus = self._take_gpus(cluster.config.get("worker_gpus", 0) or 0)
        yield {"gpus": gpus}
        env = {**self.get_worker_env(cluster), "CUDA_VISIBLE_DEVICES": ",".join(gpus)}
        pid = await self.start_process(cluster, self.get_worker_command(cluster, worker.name),
                                       env, f"worker-{worker.name}")
        yield {"gpus": gpus, "pid": pid}

    async def do_stop_worker(self, worker: Any) -> None:
        try:
            await super().do_stop_worker(worker)
        finally:
            self._give_back_gpus(worker.state.get("gpus", []))


class UserSlurmClusterConfig(_GPUConfig, SlurmClusterConfig):
    """A Slurm cluster's configuration, with GPUs per worker (``--gres=gpu:n``)."""


class UserSlurmBackend(SlurmBackend):
    """dask-gateway's SlurmBackend: jobs submitted as the user (``sudo -u``), GPUs by gres."""

    cluster_config_class = Type(
        "vanotebook.hub._gateway.UserSlurmClusterConfig",
        klass="dask_gateway_server.backends.base.ClusterConfig",
        help="The cluster config class to use", config=True)
    default_host = Unicode("127.0.0.1", config=True,
                           help="Where schedulers and workers listen on their nodes.")

    def get_submit_cmd_env_stdin(self, cluster: Any, worker: Any = None):
        cmd, env, stdin = super().get_submit_cmd_env_stdin(cluster, worker)
        if worker is not None and cluster.config.worker_gpus:
            cmd.append(f"--gres=gpu:{cluster.config.worker_gpus}")
        return cmd, env, stdin


class UserPBSBackend(PBSBackend):
    """dask-gateway's PBSBackend: jobs submitted as the user; GPUs in the resource list."""

    default_host = Unicode("127.0.0.1", config=True,
                           help="Where schedulers and workers listen on their nodes.")


# -- what: the bounded options, mapped onto each backend ---------------------------------


def gateway_options(backend: str = "local", *, gpus: int | None = None,
                    environment: Mapping[str, str] | None = None) -> Options:
    """dask-gateway's ``cluster_options`` from `PRIVATE_CLUSTER_OPTIONS`.

    Parameters
    ----------
    backend : str
        One of `BACKENDS`; decides which traits the options set.
    gpus : int, optional
        GPUs a worker may ask for at most on this deployment (lowers the
        declared bound; the local backend passes the machine's count).
    environment : mapping, optional
        Environment of every scheduler and worker, before the options' own.

    Returns
    -------
    dask_gateway_server.options.Options
        Fields ``worker_cores``, ``worker_memory`` (GiB), ``worker_gpus`` and
        ``max_workers``, with a handler that maps them onto ``backend``.
    """
    check_choice("backend", backend, BACKENDS)
    fields = []
    for option in PRIVATE_CLUSTER_OPTIONS:
        top = option.max
        if option.name == "worker_gpus" and gpus is not None:
            top = max(option.min, min(top, gpus))
        field = Integer if option.kind is int else Float
        fields.append(field(option.name, default=option.kind(min(option.default, top)),
                            min=option.kind(option.min), max=option.kind(top),
                            label=option.label))
    handler = functools.partial(_overrides, backend, dict(environment or {}))
    return Options(*fields, handler=handler)


def _overrides(backend: str, environment: dict[str, str], options: Any,
               user: Any) -> dict[str, Any]:
    """The ClusterConfig traits the checked options set on ``backend``."""
    cores, gpus = int(options.worker_cores), int(options.worker_gpus)
    memory = int(options.worker_memory * _GIB)
    threads = str(cores)
    env = {**environment, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
           "MKL_NUM_THREADS": threads, "NUMBA_NUM_THREADS": threads}
    if gpus:  # read by distributed as the worker's resources: tasks annotated GPU=1 go there
        env["DASK_DISTRIBUTED__WORKER__RESOURCES"] = f'{{"GPU": {gpus}}}'
    out: dict[str, Any] = {"worker_cores": cores, "worker_memory": memory,
                           "cluster_max_workers": int(options.max_workers),
                           "environment": env}
    if backend in ("local", "slurm"):
        out["worker_gpus"] = gpus
    elif backend == "kubernetes":
        out["worker_cores_limit"] = float(cores)
        out["worker_memory_limit"] = memory
        if gpus:
            out["worker_extra_container_config"] = {
                "resources": {"limits": {"nvidia.com/gpu": gpus}}}
    elif backend == "pbs":
        out["worker_resource_list"] = "select=1:ncpus={cores}:mem={memory}" + (
            f":ngpus={gpus}" if gpus else "")
    return out


# -- the hub service ---------------------------------------------------------------------


def _host_gpu_ids(env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    listed = env.get(f"{_ENV}GPUS")
    if listed is None:
        listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [i.strip() for i in listed.split(",") if i.strip() and i.strip() != "-1"]
    return [str(i) for i in range(gpu_count())]


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if value in (None, ""):
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise VanotebookInputError(name, "a number of seconds", value) from exc


def config_values(*, hub_api_url: str, port: int, proxy_port: int, api_port: int,
                  user_prefix: str = "vn-", backend: str = "local",
                  api_token: str | None = None, python: str = sys.executable,
                  env: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The dask-gateway-server traits `dask_gateway_service` writes, by class.

    Everything but ``Backend.cluster_options`` (an object, written as a call
    of `gateway_options`); see the module docs for the environment read.
    """
    env = os.environ if env is None else env
    check_choice("backend", backend, BACKENDS)
    host = env.get(f"{_ENV}HOST") or "127.0.0.1"
    auth: dict[str, Any] = {"jupyterhub_api_url": hub_api_url,
                            "jupyterhub_service_name": SERVICE_NAME,
                            "user_prefix": user_prefix}
    if api_token:
        auth["jupyterhub_api_token"] = api_token
    values: dict[str, dict[str, Any]] = {
        "DaskGateway": {"address": f"{host}:{api_port}",
                        "authenticator_class": "vanotebook.hub._gateway.HubAuthenticator",
                        "backend_class": _BACKEND_CLASSES[backend]},
        "HubAuthenticator": auth,
        "Proxy": {"address": f"{host}:{port}", "tcp_address": f"{host}:{proxy_port}",
                  "prefix": PREFIX},
        "ClusterConfig": {"idle_timeout": _env_float(env, f"{_ENV}IDLE_TIMEOUT", 3600.0)},
    }
    if backend == "kubernetes":
        image = env.get(f"{_ENV}IMAGE")
        if not image:
            raise VanotebookInputError(
                f"{_ENV}IMAGE", "an image with vanotebook and dask-gateway for the "
                "kubernetes backend", image)
        kube: dict[str, Any] = {"image": image,
                                "scheduler_cmd": ["python", "-m",
                                                  "distributed.cli.dask_scheduler"],
                                "worker_cmd": ["python", "-m", "distributed.cli.dask_worker"]}
        if env.get(f"{_ENV}NAMESPACE"):
            kube["namespace"] = env[f"{_ENV}NAMESPACE"]
        values["KubeClusterConfig"] = kube
        return values
    node_python = python if backend == "local" else env.get(f"{_ENV}PYTHON") or python
    values["ClusterConfig"].update(
        scheduler_cmd=[node_python, "-m", "distributed.cli.dask_scheduler"],
        worker_cmd=[node_python, "-m", "distributed.cli.dask_worker"])
    values["DBBackendBase"] = {"cluster_start_timeout": 120.0, "worker_start_timeout": 120.0}
    if backend == "local":
        values["UserLocalBackend"] = {"default_host": host, "gpu_ids": _host_gpu_ids(env)}
        return values
    setup = env.get(f"{_ENV}SETUP", "")
    name = "UserSlurmBackend" if backend == "slurm" else "UserPBSBackend"
    values[name] = {"default_host": host}
    queue = {"queue": env.get(f"{_ENV}QUEUE", ""), "account": env.get(f"{_ENV}ACCOUNT", "")}
    if backend == "slurm":
        config = {"partition": queue["queue"], "account": queue["account"],
                  "qos": env.get(f"{_ENV}QOS", "")}
        values["SlurmClusterConfig"] = {**config, "scheduler_setup": setup,
                                            "worker_setup": setup}
    else:
        values["PBSClusterConfig"] = {**queue, "project": env.get(f"{_ENV}PROJECT", ""),
                                      "scheduler_setup": setup, "worker_setup": setup}
    return values


def dask_gateway_service(
    *,
    state_dir: str | os.PathLike,
    hub_api_url: str,
    public_url: str,
    port: int,
    proxy_port: int,
    api_port: int,
    user_prefix: str = "vn-",
    backend: str | None = None,
    api_token: str | None = None,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """dask-gateway as a hub-managed service: its config file, service, roles and user env.

    Parameters
    ----------
    state_dir : path
        The hub's state dir; the config file goes to
        ``<state_dir>/dask-gateway/dask_gateway_config.py`` (folder 0700, file 0600).
    hub_api_url : str
        The hub's API, as the gateway reaches it (``http://127.0.0.1:8081/hub/api``).
    public_url : str
        The hub's proxy as users' servers reach it (``http://127.0.0.1:8000``);
        they reach the gateway at ``<public_url>/services/dask-gateway``.
    port, proxy_port, api_port : int
        The gateway's HTTP proxy (the service's URL, behind the hub's proxy),
        its scheduler (TLS) proxy, and its own API server.
    user_prefix : str
        Hub user ``alice`` runs her clusters as unix account ``<user_prefix>alice``.
    backend : str, optional
        One of `BACKENDS`; default ``$VANOTEBOOK_DASK_GATEWAY_BACKEND``, else ``local``.
    api_token : str, optional
        A token for the service (the hub makes one for managed services anyway).
    python : str
        The interpreter that runs the gateway, and the local clusters.
    env : mapping, optional
        Where the ``VANOTEBOOK_DASK_GATEWAY_*`` choices are read (default ``os.environ``).

    Returns
    -------
    services : list of dict
        For ``c.JupyterHub.services``.
    roles : list of dict
        For ``c.JupyterHub.load_roles`` (merge with `merge_roles`): users' servers'
        tokens get ``access:services!service=dask-gateway``.
    environment : dict
        For ``c.Spawner.environment``: ``DASK_GATEWAY__ADDRESS``,
        ``DASK_GATEWAY__PROXY_ADDRESS``, ``DASK_GATEWAY__PUBLIC_ADDRESS``,
        ``DASK_GATEWAY__AUTH__TYPE=jupyterhub``.
    """
    env = os.environ if env is None else env
    backend = backend or env.get(f"{_ENV}BACKEND") or "local"
    values = config_values(hub_api_url=hub_api_url, port=port, proxy_port=proxy_port,
                           api_port=api_port, user_prefix=user_prefix, backend=backend,
                           api_token=api_token, python=python, env=env)
    gpus = len(values["UserLocalBackend"]["gpu_ids"]) if backend == "local" else None
    folder = Path(state_dir) / "dask-gateway"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = folder / CONFIG_NAME
    _write_private(path, _render(values, backend, gpus).encode())

    external = env.get(f"{_ENV}URL")
    service: dict[str, Any] = {"name": SERVICE_NAME,
                               "url": external or f"http://127.0.0.1:{port}"}
    if not external:
        service["command"] = [python, "-m", "dask_gateway_server", "-f", str(path)]
    if api_token:
        service["api_token"] = api_token
    roles = [
        # the token of each user's server: the hub's defaults, plus the gateway
        {"name": "server", "scopes": ["users:activity!user", "access:servers!server",
                                      f"access:services!service={SERVICE_NAME}"]},
        {"name": "user", "scopes": ["self", f"access:services!service={SERVICE_NAME}"]},
    ]
    address = f"{public_url.rstrip('/')}{PREFIX}"
    proxy = env.get(f"{_ENV}PROXY_ADDRESS") or f"gateway://127.0.0.1:{proxy_port}"
    user_env = {"DASK_GATEWAY__ADDRESS": address, "DASK_GATEWAY__PUBLIC_ADDRESS": address,
                "DASK_GATEWAY__PROXY_ADDRESS": proxy, "DASK_GATEWAY__AUTH__TYPE": "jupyterhub"}
    return [service], roles, user_env


def merge_roles(*role_lists: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Role dicts merged by name: the union of their scopes, users, services and groups."""
    merged: dict[str, dict[str, Any]] = {}
    for roles in role_lists:
        for role in roles:
            into = merged.setdefault(role["name"], {"name": role["name"]})
            for key, value in role.items():
                if key == "name":
                    continue
                if isinstance(value, list):
                    into[key] = [*into.get(key, []),
                                 *(v for v in value if v not in into.get(key, []))]
                else:
                    into[key] = value
    return list(merged.values())


def _render(values: dict[str, dict[str, Any]], backend: str, gpus: int | None) -> str:
    lines = [
        "# dask-gateway-server configuration, written by vanotebook.hub._gateway at each",
        "# hub start: change the VANOTEBOOK_DASK_GATEWAY_* variables, not this file.",
        "from vanotebook.hub._gateway import gateway_options",
        "",
    ]
    for section, traits in values.items():
        for trait, value in traits.items():
            lines.append(f"c.{section}.{trait} = {value!r}")
    lines.append(f"c.Backend.cluster_options = gateway_options({backend!r}, gpus={gpus!r})")
    return "\n".join(lines) + "\n"
