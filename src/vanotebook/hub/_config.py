"""JupyterHub configuration for the vanotebook gateway.

One machine, out of the box: loopback only, a shared-password authenticator
that refuses to run anywhere but on localhost, local process spawning
(``--allow-root`` only when running as root), the shared Dask scheduler and
its workers as hub-managed services, the dashboards app behind the hub's
login, idle culling, and the tutorial notebooks copied into each new home.

Production switches are environment variables, read by `HubSettings`:

``VANOTEBOOK_HUB_IP`` / ``VANOTEBOOK_HUB_PORT``
    where the hub's proxy listens (default 127.0.0.1:8000).
``VANOTEBOOK_STATE_DIR``
    database, cookie secret, pid file and user homes (default ``~/.vanotebook/hub``).
``VANOTEBOOK_AUTHENTICATOR``
    ``shared-password`` (default; localhost only), or any JupyterHub
    authenticator, e.g. ``github`` or ``oauthenticator.generic.GenericOAuthenticator``.
``VANOTEBOOK_HUB_PASSWORD``
    the shared password of the default authenticator (default ``vanotebook``).
``VANOTEBOOK_SPAWNER``
    ``simple`` (default), or e.g. ``kubespawner.KubeSpawner`` / ``dockerspawner.DockerSpawner``.
``DASK_SCHEDULER_ADDRESS``
    an external Dask scheduler: no scheduler or workers are started here, and
    every user's server connects to that one. ``VANOTEBOOK_DASK_GATEWAY`` names
    a dask-gateway address to hand to users instead.
``VANOTEBOOK_WORKERS`` / ``VANOTEBOOK_WORKER_THREADS`` / ``VANOTEBOOK_WORKER_MEMORY``
    size of the managed cluster (default 2 workers, 1 thread, 4GiB each).
``VANOTEBOOK_SHARED_ARCHIVE``
    the archive every user reads (the demo sky and the gateway's published
    products); default ``<state dir>/shared/archive``, built from the demo sky
    when the hub first starts. Each user's own archive is ``~/archive``.
``VANOTEBOOK_CULL_TIMEOUT``
    seconds of inactivity before a user server is culled (default 3600).
``VANOTEBOOK_SPAWN_CONCURRENCY``
    with the default local spawner, how many user servers start at the same
    time (default: half the CPUs, at least 1; 0 for no limit). Later ones wait
    their turn (they are not refused), so in a burst the first users get their
    servers, and their results, sooner instead of everyone sharing the CPUs
    until the end (10 users at once on 2 cores: median spawn-to-first-result
    15.8 s with 1, 19.1 s with 2, 22.0 s with no limit; max 24.6/25.7/22.1 s).
``VANOTEBOOK_DISABLE_SERVER_EXTENSIONS``
    comma-separated Jupyter server extensions turned off in users' servers, to
    start them faster (default ``jupyter_lsp,panel.io.jupyter_server_extension``:
    no language server is installed, and Panel's server extension only serves
    JupyterLab's "Preview with Panel"; Panel output in notebooks does not need it).
    Set it empty to keep every installed extension.
``VANOTEBOOK_API_TOKEN``
    when set, a ``vanotebook-api`` service holds this token with the rights
    to create users and start their servers (for automation and tests).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import VanotebookInputError
from ..cluster import SCHEDULER_ENV, gpu_count

__all__ = ["HubSettings", "configure", "proxy_command"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
# server extensions users' servers start without by default: ~0.7 s of CPU each
_SLOW_EXTENSIONS = ("jupyter_lsp", "panel.io.jupyter_server_extension")
PROFILES = {
    "small": {"display_name": "Small: 1 core, 4 GiB", "cpu": 1, "mem": "4G", "gpu": 0},
    "large": {"display_name": "Large: 4 cores, 16 GiB", "cpu": 4, "mem": "16G", "gpu": 0},
    "gpu": {"display_name": "GPU: 4 cores, 16 GiB, 1 GPU", "cpu": 4, "mem": "16G", "gpu": 1},
}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise VanotebookInputError(name, "an integer", value) from exc


@dataclass
class HubSettings:
    """The gateway's choices, from environment variables (see the module docs)."""

    ip: str = field(default_factory=lambda: os.environ.get("VANOTEBOOK_HUB_IP", "127.0.0.1"))
    port: int = field(default_factory=lambda: _env_int("VANOTEBOOK_HUB_PORT", 8000))
    hub_port: int = field(default_factory=lambda: _env_int("VANOTEBOOK_HUB_API_PORT", 8081))
    state_dir: Path = field(default_factory=lambda: Path(os.environ.get(
        "VANOTEBOOK_STATE_DIR", Path.home() / ".vanotebook" / "hub")).expanduser())
    authenticator: str = field(default_factory=lambda: os.environ.get(
        "VANOTEBOOK_AUTHENTICATOR", "shared-password"))
    password: str = field(default_factory=lambda: os.environ.get(
        "VANOTEBOOK_HUB_PASSWORD", "vanotebook"))
    spawner: str = field(default_factory=lambda: os.environ.get("VANOTEBOOK_SPAWNER", "simple"))
    scheduler_address: str | None = field(default_factory=lambda: os.environ.get(SCHEDULER_ENV))
    dask_gateway: str | None = field(default_factory=lambda: os.environ.get(
        "VANOTEBOOK_DASK_GATEWAY"))
    scheduler_port: int = field(default_factory=lambda: _env_int(
        "VANOTEBOOK_SCHEDULER_PORT", 8786))
    workers: int = field(default_factory=lambda: _env_int("VANOTEBOOK_WORKERS", 2))
    worker_threads: int = field(default_factory=lambda: _env_int("VANOTEBOOK_WORKER_THREADS", 1))
    worker_memory: str = field(default_factory=lambda: os.environ.get(
        "VANOTEBOOK_WORKER_MEMORY", "4GiB"))
    dask_dashboard_port: int = field(default_factory=lambda: _env_int(
        "VANOTEBOOK_DASK_DASHBOARD_PORT", 8787))
    dask_internal_port: int = field(default_factory=lambda: _env_int(
        "VANOTEBOOK_DASK_INTERNAL_PORT", 8788))
    app_port: int = field(default_factory=lambda: _env_int("VANOTEBOOK_APP_PORT", 8790))
    cull_timeout: int = field(default_factory=lambda: _env_int("VANOTEBOOK_CULL_TIMEOUT", 3600))
    spawn_concurrency: int = field(default_factory=lambda: _env_int(
        "VANOTEBOOK_SPAWN_CONCURRENCY", max(1, (os.cpu_count() or 1) // 2)))
    disabled_server_extensions: tuple[str, ...] = field(default_factory=lambda: tuple(
        name.strip() for name in os.environ.get(
            "VANOTEBOOK_DISABLE_SERVER_EXTENSIONS", ",".join(_SLOW_EXTENSIONS)).split(",")
        if name.strip()))
    notebooks: Path | None = field(default_factory=lambda: _default_notebooks())
    shared_archive: Path | None = field(default_factory=lambda: (
        Path(os.environ["VANOTEBOOK_SHARED_ARCHIVE"]).expanduser()
        if os.environ.get("VANOTEBOOK_SHARED_ARCHIVE") else None))

    @property
    def shared_archive_path(self) -> Path:
        """The shared archive's folder (default ``<state dir>/shared/archive``)."""
        return self.shared_archive or self.state_dir / "shared" / "archive"

    @property
    def managed_cluster(self) -> bool:
        """Whether the hub starts the shared scheduler and workers itself."""
        return not (self.scheduler_address or self.dask_gateway)

    @property
    def user_scheduler_address(self) -> str | None:
        """What users' servers get as ``DASK_SCHEDULER_ADDRESS``."""
        if self.scheduler_address:
            return self.scheduler_address
        if self.dask_gateway:
            return None
        return f"tcp://127.0.0.1:{self.scheduler_port}"


def _default_notebooks() -> Path | None:
    env = os.environ.get("VANOTEBOOK_NOTEBOOKS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[3] / "notebooks"  # a source checkout
    return here if here.is_dir() else None


def proxy_command() -> list[str] | None:
    """The npm ``configurable-http-proxy`` command, from PATH or vanotebook's cache, or None."""
    found = shutil.which("configurable-http-proxy")
    if found:
        return [found]
    cached = Path.home() / ".cache" / "vanotebook" / "chp" / "node_modules" / ".bin" / \
        "configurable-http-proxy"
    return [str(cached)] if cached.exists() else None


def _python() -> str:
    return sys.executable


def _standalone(command: list[str], *, absolute: bool, server_port: int = 0) -> list[str]:
    """Put a web app behind the hub's OAuth (jupyter-server-proxy's standalone mode).

    With ``server_port``, the proxy forwards to an app already listening there
    and ``command`` only has to stay alive.
    """
    cmd = [_python(), "-c", "from jupyter_server_proxy.standalone import main; main()",
           "--timeout", "60"]
    if absolute:
        cmd.append("--absolute-url")
    if server_port:
        cmd += ["--server-port", str(server_port)]
    return [*cmd, "--", *command]


def _copy_notebooks(spawner: Any) -> None:
    """Pre-spawn hook: put the tutorials into a new user's home (never overwriting)."""
    source = getattr(spawner, "_vanotebook_notebooks", None)
    home = Path(spawner.home_dir) if hasattr(spawner, "home_dir") else None
    if source is None or home is None:
        return
    target = home / "tutorials"
    if target.exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))


def _ensure_shared_archive(s: HubSettings) -> Path:
    """The shared archive's folder; the demo sky's archive is written there when missing."""
    path = s.shared_archive_path
    if (path / "index.duckdb").exists():
        return path
    if s.shared_archive is None:  # the default: the demo sky, with its archive
        print(f"vanotebook gateway: writing the demo sky's shared archive to {path}", flush=True)
        cmd = [_python(), "-m", "vanotebook.cli", "demo-data", str(path.parent)]
        if path.parent.exists():
            cmd.append("--overwrite")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    else:
        from ..archive import Archive

        Archive(path)
    return path


def configure(c: Any, settings: HubSettings | None = None) -> HubSettings:
    """Fill a JupyterHub config object ``c`` for the vanotebook gateway.

    Parameters
    ----------
    c : traitlets.config.Config
        The ``c`` of ``jupyterhub_config.py``.
    settings : HubSettings, optional
        Choices; by default read from the environment.

    Returns
    -------
    HubSettings
        The settings used.
    """
    s = settings or HubSettings()
    # hub-managed services started in the background inherit an ignored SIGINT
    signal.signal(signal.SIGINT, signal.default_int_handler)
    s.state_dir.mkdir(parents=True, exist_ok=True)
    homes = s.state_dir / "home"
    homes.mkdir(exist_ok=True)

    c.JupyterHub.ip = s.ip
    c.JupyterHub.port = s.port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = s.hub_port
    c.JupyterHub.db_url = f"sqlite:///{s.state_dir / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(s.state_dir / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(s.state_dir / "jupyterhub.pid")
    c.ConfigurableHTTPProxy.pid_file = str(s.state_dir / "proxy.pid")
    chp = proxy_command()
    if chp is not None:
        c.ConfigurableHTTPProxy.command = chp

    # -- authentication
    if s.authenticator == "shared-password":
        if s.ip not in _LOOPBACK:
            raise VanotebookInputError(
                "VANOTEBOOK_AUTHENTICATOR",
                "a real authenticator when the hub listens beyond localhost",
                f"shared-password with VANOTEBOOK_HUB_IP={s.ip}",
            )
        warnings.warn(
            "vanotebook gateway: the shared-password authenticator is for one machine "
            "only; set VANOTEBOOK_AUTHENTICATOR for anything else", UserWarning, stacklevel=2)
        c.JupyterHub.authenticator_class = "dummy"
        c.DummyAuthenticator.password = s.password
        c.Authenticator.allow_all = True
    else:
        c.JupyterHub.authenticator_class = s.authenticator
    c.Authenticator.admin_users = {"admin"}

    # -- spawner
    c.JupyterHub.spawner_class = s.spawner
    if s.spawner == "simple":
        c.JupyterHub.spawner_class = _local_spawner(s.spawn_concurrency)
    singleuser = shutil.which("jupyterhub-singleuser") or str(
        Path(_python()).with_name("jupyterhub-singleuser"))
    c.Spawner.cmd = [singleuser]
    c.Spawner.default_url = "/lab"
    c.Spawner.http_timeout = 120
    c.Spawner.start_timeout = 120
    args = [f"--ServerApp.jpserver_extensions={name}=False"
            for name in s.disabled_server_extensions]
    if s.spawner == "simple":
        # jupyterhub-singleuser without jsonschema's slow rfc3987_syntax (see _singleuser)
        c.Spawner.cmd = [_python(), "-m", "vanotebook.hub._singleuser"]
        c.SimpleLocalProcessSpawner.home_dir_template = str(homes / "{username}")
        if os.geteuid() == 0:
            args.insert(0, "--allow-root")
        c.Spawner.options_form = _profiles_form()
        c.Spawner.options_from_form = _options_from_form
    elif "kubespawner" in s.spawner.lower():
        c.KubeSpawner.profile_list = [
            {"display_name": p["display_name"], "slug": key, "default": key == "small",
             "kubespawner_override": {"cpu_limit": p["cpu"], "mem_limit": p["mem"],
                                      **({"extra_resource_limits": {"nvidia.com/gpu": "1"}}
                                         if p["gpu"] else {})}}
            for key, p in PROFILES.items()]
    c.Spawner.args = args
    shared = _ensure_shared_archive(s)
    env = {"VANOTEBOOK_GATEWAY": "1", "VANOTEBOOK_SHARED_ARCHIVE": str(shared),
           "VANOTEBOOK_ARCHIVE": "~/archive"}
    if s.user_scheduler_address:
        env[SCHEDULER_ENV] = s.user_scheduler_address
    if s.dask_gateway:
        env["DASK_GATEWAY__ADDRESS"] = s.dask_gateway
    c.Spawner.environment = env
    if s.notebooks is not None:
        nb = s.notebooks

        def pre_spawn(spawner: Any) -> None:
            profile = PROFILES.get(spawner.user_options.get("profile", "small"), {})
            spawner.environment = {**spawner.environment,
                                   "VANOTEBOOK_PROFILE": spawner.user_options.get("profile",
                                                                                  "small")}
            if profile.get("gpu") == 0:
                spawner.environment["CUDA_VISIBLE_DEVICES"] = ""
            spawner._vanotebook_notebooks = nb
            _copy_notebooks(spawner)

        c.Spawner.pre_spawn_hook = pre_spawn

    # -- services
    services: list[dict[str, Any]] = []
    roles = [{"name": "user", "scopes": ["self", "access:services"]}]
    if s.managed_cluster:
        prefix = "/services/dask"
        # the scheduler runs on its own, so it is up before anyone opens its dashboard;
        # the "dask" service puts that dashboard behind the hub's OAuth
        services.append({
            "name": "dask-scheduler",
            "command": [_python(), "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                        "--port", str(s.scheduler_port), "--dashboard-address",
                        f"127.0.0.1:{s.dask_internal_port}", "--dashboard-prefix", prefix,
                        "--no-show"],
        })
        services.append({
            "name": "dask",
            "url": f"http://127.0.0.1:{s.dask_dashboard_port}",
            "command": _standalone([_python(), "-c", "import time; time.sleep(1e9)"],
                                   absolute=True, server_port=s.dask_internal_port),
            "oauth_no_confirm": True,
        })
        gpus = gpu_count()
        # each worker imports the services and loads their numba kernels as it starts
        # (hub/_warm.py), so no user's first job pays for that
        worker_env = {"DASK_DISTRIBUTED__WORKER__PRELOAD": '["vanotebook.hub._warm"]'}
        if not os.access(Path(__file__).resolve().parents[1], os.W_OK):
            # numba cannot cache next to an installed package: the workers (all of them
            # the hub's own processes) share one cache in the state dir
            worker_env["NUMBA_CACHE_DIR"] = str(s.state_dir / "numba-cache")
        for i in range(s.workers):
            cmd = [_python(), "-m", "vanotebook.cli", "worker",
                   f"tcp://127.0.0.1:{s.scheduler_port}", "--nthreads", str(s.worker_threads),
                   "--memory-limit", s.worker_memory, "--name", f"shared-{i}"]
            if gpus:
                cmd += ["--gpus", "1"]  # one GPU per worker; CUDA_VISIBLE_DEVICES below
            service = {"name": f"dask-worker-{i}", "command": cmd,
                       "environment": dict(worker_env)}
            if gpus:
                service["environment"]["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
            services.append(service)
    dash_env = {SCHEDULER_ENV: s.user_scheduler_address} if s.user_scheduler_address else {}
    dash_env["VANOTEBOOK_SHARED_ARCHIVE"] = str(shared)
    services.append({
        "name": "dashboards",
        "url": f"http://127.0.0.1:{s.app_port}",
        "command": _standalone([
            _python(), "-m", "vanotebook.hub.app", "--port", "{port}",
            "--prefix", "/services/dashboards"], absolute=True),
        "environment": dash_env,
        "oauth_no_confirm": True,
    })
    services.append({
        "name": "idle-culler",
        "command": [_python(), "-m", "jupyterhub_idle_culler", f"--timeout={s.cull_timeout}"],
    })
    roles.append({"name": "idle-culler", "services": ["idle-culler"],
                  "scopes": ["list:users", "read:users:activity", "read:servers",
                             "delete:servers"]})
    token = os.environ.get("VANOTEBOOK_API_TOKEN")
    if token:
        services.append({"name": "vanotebook-api", "api_token": token})
        roles.append({"name": "vanotebook-api", "services": ["vanotebook-api"],
                      "scopes": ["admin:users", "admin:servers", "access:servers",
                                 "access:services", "tokens"]})
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
    return s


def _local_spawner(concurrency: int) -> type:
    """JupyterHub's local process spawner, queued and quick to notice a started server.

    At most ``concurrency`` servers start at once (0: no limit); the others wait
    for a slot instead of being refused. ``start`` returns only once the server
    accepts connections (checked every 0.1 s), so the hub's own check of the new
    server, whose back-off grows to 5 s between tries, succeeds at its first try.
    """
    import asyncio

    from jupyterhub.spawner import SimpleLocalProcessSpawner

    slots = asyncio.Semaphore(concurrency) if concurrency > 0 else None

    class VanotebookLocalSpawner(SimpleLocalProcessSpawner):
        async def start(self) -> tuple[str, int]:
            if slots is None:
                return await self._start_and_wait()
            async with slots:
                return await self._start_and_wait()

        async def _start_and_wait(self) -> tuple[str, int]:
            ip, port = await super().start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.http_timeout
            while loop.time() < deadline and self.proc.poll() is None:
                try:
                    _reader, writer = await asyncio.open_connection(ip or "127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.1)
                    continue
                writer.close()
                break
            # a server that died or never listened is the hub's to report, as before
            return ip, port

    return VanotebookLocalSpawner


def _profiles_form() -> str:
    options = "\n".join(
        f'<option value="{key}"{" selected" if key == "small" else ""}>'
        f'{p["display_name"]}</option>' for key, p in PROFILES.items())
    return f'<label for="profile">Resources</label>\n<select name="profile">{options}</select>'


def _options_from_form(formdata: dict[str, list[str]]) -> dict[str, Any]:
    key = (formdata.get("profile") or ["small"])[0]
    if key not in PROFILES:
        raise VanotebookInputError("profile", f"one of {tuple(PROFILES)}", key)
    return {"profile": key, **PROFILES[key]}
