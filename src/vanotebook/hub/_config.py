"""JupyterHub configuration for the vanotebook gateway.

One machine, out of the box, as a deployment an operator can run for a class
or a group: every hub user is a unix account (``vn-<name>``) with a private
home; each user's own password (FirstUseAuthenticator, hashed, with lockout);
admin rights only for the names the operator lists, whose password is set
before the first start; memory and CPU limits per server through cgroups; a
shared Dask cluster that speaks TLS with mutual authentication, its scheduler
and workers running as a service account that cannot read users' homes; the
dashboards served from each user's own server; every listener on loopback.

Production switches are environment variables, read by `HubSettings`:

``VANOTEBOOK_HUB_IP`` / ``VANOTEBOOK_HUB_PORT``
    where the hub's proxy listens (default 127.0.0.1:8000).
``VANOTEBOOK_CLUSTER_IP``
    where the shared scheduler, workers and nannies listen (default 127.0.0.1).
``VANOTEBOOK_STATE_DIR``
    database, cookie secret, password hashes, the cluster's CA, pid files
    (readable by root only) and, by default, the users' homes and the shared
    archive (default ``~/.vanotebook/hub``).
``VANOTEBOOK_HOMES``
    the folder of the users' homes (default ``<state dir>/home``).
``VANOTEBOOK_USER_PREFIX``
    prefix of the users' unix accounts (default ``vn-``); the workers' service
    account is ``<prefix>dask`` unless ``VANOTEBOOK_WORKER_ACCOUNT`` names one.
``VANOTEBOOK_AUTHENTICATOR``
    ``firstuse`` (default: each user's own password, set at their first
    login), or any JupyterHub authenticator, e.g. ``github``,
    ``ldapauthenticator.LDAPAuthenticator`` or
    ``oauthenticator.generic.GenericOAuthenticator``.
``VANOTEBOOK_ADMIN_USERS``
    comma-separated admin names (default ``admin``).
``VANOTEBOOK_ADMIN_PASSWORD``
    the admins' first password; when unset, one is generated at the first
    start and printed once.
``VANOTEBOOK_OPEN_SIGNUP``
    ``1`` (default): a new name logs in by choosing its password; ``0``: only
    names an admin has created.
``VANOTEBOOK_PROFILES``
    JSON that overrides or adds resource profiles, e.g.
    ``{"small": {"mem": "2G", "cpu": 1}}``.
``VANOTEBOOK_SPAWNER``
    ``local`` (default: unix accounts), or e.g. ``kubespawner.KubeSpawner``
    (the profiles become its ``profile_list``), ``dockerspawner.DockerSpawner``.
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
``VANOTEBOOK_DACHS_URL`` / ``VANOTEBOOK_DACHS_INPUTS``
    a DaCHS server on this machine (e.g. ``http://localhost:8080``) and its
    inputs folder (default ``/var/gavo/inputs``): the publishing service then
    also publishes users' catalogues to the VO (TAP and cone search) as
    ``gw_<user>_<name>``. Its account joins DaCHS's group; no user does.
``VANOTEBOOK_UWS_PORT``
    port of the UWS job service (``/services/uws/<pipeline>/jobs``; default 8795).
``VANOTEBOOK_CULL_TIMEOUT``
    seconds of inactivity before a user server is culled (default 3600).
``VANOTEBOOK_SPAWN_CONCURRENCY``
    with the local spawner, how many user servers start at the same
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

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import VanotebookInputError
from ..cluster import SCHEDULER_ENV, gpu_count

__all__ = ["HubSettings", "configure", "proxy_command"]

PUBLISH_SERVICE = "archive-publisher"
UWS_SERVICE = "uws"

# server extensions users' servers start without by default: ~0.7 s of CPU each
_SLOW_EXTENSIONS = ("jupyter_lsp", "panel.io.jupyter_server_extension")
PROFILES = {
    "small": {"display_name": "Small: 1 core, 4 GiB", "cpu": 1, "mem": "4G", "gpu": 0},
    "large": {"display_name": "Large: 4 cores, 16 GiB", "cpu": 4, "mem": "16G", "gpu": 0},
    "gpu": {"display_name": "GPU: 4 cores, 16 GiB, 1 GPU", "cpu": 4, "mem": "16G", "gpu": 1},
}


def machine_profiles(profiles: dict[str, dict[str, Any]], *, cpus: int, memory: int,
                     gpus: int) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The profiles this machine can honour, and why the others were left out.

    A profile asking for more cores, memory (bytes) or GPUs than the machine
    has is not offered (the cgroup limits could not give it). When none is
    left, the first one is cut down to the machine's cores and memory.
    """
    from ._limits import parse_memory

    kept, dropped = {}, []
    for key, p in profiles.items():
        mem = parse_memory(p.get("mem", "4G"))
        why = [what for what, need, have in (("cores", p.get("cpu", 1), cpus),
                                            ("bytes of memory", mem, memory),
                                            ("GPUs", p.get("gpu", 0), gpus)) if need > have]
        if why:
            dropped.append(f"{key} (needs more {' and '.join(why)} than this machine has)")
        else:
            kept[key] = p
    if not kept and profiles:
        key, p = next(iter(profiles.items()))
        cpu, mem_gib = max(1, min(int(p.get("cpu", 1)), cpus)), max(1, memory // 2**30)
        kept[key] = {**p, "cpu": cpu, "mem": f"{mem_gib}G", "gpu": 0,
                     "display_name": f"{key.capitalize()}: {cpu} core(s), {mem_gib} GiB"}
    return kept, dropped


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise VanotebookInputError(name, "an integer", value) from exc


def _env_profiles() -> dict[str, dict[str, Any]]:
    profiles = {k: dict(v) for k, v in PROFILES.items()}
    text = os.environ.get("VANOTEBOOK_PROFILES")
    if not text:
        return profiles
    try:
        extra = json.loads(text)
    except json.JSONDecodeError:
        extra = None
    if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
        raise VanotebookInputError("VANOTEBOOK_PROFILES",
                                   'JSON such as {"small": {"mem": "2G", "cpu": 1}}', text)
    for key, value in extra.items():
        profiles.setdefault(key, {"display_name": key, "cpu": 1, "mem": "4G", "gpu": 0})
        profiles[key].update(value)
        p = profiles[key]
        if "display_name" not in value:
            p["display_name"] = (f"{key.capitalize()}: {p['cpu']} core(s), {p['mem']}"
                                 + (f", {p['gpu']} GPU" if p.get("gpu") else ""))
    return profiles


@dataclass
class HubSettings:
    """The gateway's choices, from environment variables (see the module docs)."""

    ip: str = field(default_factory=lambda: os.environ.get("VANOTEBOOK_HUB_IP", "127.0.0.1"))
    port: int = field(default_factory=lambda: _env_int("VANOTEBOOK_HUB_PORT", 8000))
    hub_port: int = field(default_factory=lambda: _env_int("VANOTEBOOK_HUB_API_PORT", 8081))
    proxy_api_port: int = field(default_factory=lambda: _env_int(
        "VANOTEBOOK_PROXY_API_PORT", 0))
    cluster_ip: str = field(default_factory=lambda: os.environ.get(
        "VANOTEBOOK_CLUSTER_IP", "127.0.0.1"))
    state_dir: Path = field(default_factory=lambda: Path(os.environ.get(
        "VANOTEBOOK_STATE_DIR", Path.home() / ".vanotebook" / "hub")).expanduser())
    homes: Path | None = field(default_factory=lambda: (
        Path(os.environ["VANOTEBOOK_HOMES"]) if os.environ.get("VANOTEBOOK_HOMES") else None))
    user_prefix: str = field(default_factory=lambda: os.environ.get(
        "VANOTEBOOK_USER_PREFIX", "vn-"))
    worker_account: str | None = field(default_factory=lambda: os.environ.get(
        "VANOTEBOOK_WORKER_ACCOUNT") or None)
    authenticator: str = field(default_factory=lambda: os.environ.get(
        "VANOTEBOOK_AUTHENTICATOR", "firstuse"))
    admin_users: tuple[str, ...] = field(default_factory=lambda: tuple(
        n.strip() for n in os.environ.get("VANOTEBOOK_ADMIN_USERS", "admin").split(",")
        if n.strip()))
    admin_password: str | None = field(default_factory=lambda: os.environ.get(
        "VANOTEBOOK_ADMIN_PASSWORD") or None)
    open_signup: bool = field(default_factory=lambda: os.environ.get(
        "VANOTEBOOK_OPEN_SIGNUP", "1") != "0")
    profiles: dict[str, dict[str, Any]] = field(default_factory=_env_profiles)
    spawner: str = field(default_factory=lambda: os.environ.get("VANOTEBOOK_SPAWNER", "local"))
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
    publish_port: int = field(default_factory=lambda: _env_int("VANOTEBOOK_PUBLISH_PORT", 8791))
    uws_port: int = field(default_factory=lambda: _env_int("VANOTEBOOK_UWS_PORT", 8795))
    dachs_url: str | None = field(default_factory=lambda: os.environ.get(
        "VANOTEBOOK_DACHS_URL") or None)
    dachs_inputs: Path = field(default_factory=lambda: Path(os.environ.get(
        "VANOTEBOOK_DACHS_INPUTS", "/var/gavo/inputs")))
    private_clusters: bool = field(default_factory=lambda: os.environ.get(
        "VANOTEBOOK_PRIVATE_CLUSTERS", "1") != "0")
    gateway_port: int = field(default_factory=lambda: _env_int(
        "VANOTEBOOK_DASK_GATEWAY_PORT", 8792))
    gateway_proxy_port: int = field(default_factory=lambda: _env_int(
        "VANOTEBOOK_DASK_GATEWAY_PROXY_PORT", 8793))
    gateway_api_port: int = field(default_factory=lambda: _env_int(
        "VANOTEBOOK_DASK_GATEWAY_API_PORT", 8794))
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
    def homes_path(self) -> Path:
        """The folder of the users' homes (default ``<state dir>/home``)."""
        return self.homes or self.state_dir / "home"

    @property
    def worker_account_name(self) -> str:
        """The service account of the shared scheduler and workers."""
        return self.worker_account or f"{self.user_prefix}dask"

    @property
    def local_accounts(self) -> bool:
        """Whether users' servers run as unix accounts made here (the local spawner as root)."""
        return self.spawner in ("local", "simple") and os.geteuid() == 0

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
        return f"tls://{self.cluster_ip}:{self.scheduler_port}"


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
           "--timeout", "60", "--address", "127.0.0.1"]
    if absolute:
        cmd.append("--absolute-url")
    if server_port:
        cmd += ["--server-port", str(server_port)]
    return [*cmd, "--", *command]


def _share_tree(root: Path) -> None:
    """Make ``root`` readable by every account: folders 0755, files 0644 (owner unchanged)."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)


def _ensure_shared_archive(s: HubSettings) -> Path:
    """The shared archive's folder; the demo sky's archive is written there when missing.

    Every account may read it; only root (the hub and its publishing path) writes it.
    """
    path = s.shared_archive_path
    if not (path / "index.duckdb").exists():
        if s.shared_archive is None:  # the default: the demo sky, with its archive
            print(f"vanotebook gateway: writing the demo sky's shared archive to {path}",
                  flush=True)
            cmd = [_python(), "-m", "vanotebook.cli", "demo-data", str(path.parent)]
            if path.parent.exists():
                cmd.append("--overwrite")
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        else:
            from ..archive import Archive

            Archive(path)
    if os.geteuid() == 0:
        _share_tree(path.parent if s.shared_archive is None else path)
    return path


def _secure_state(s: HubSettings) -> None:
    """The state dir: secrets for root only, the homes and the shared archive reachable.

    The state dir is 0711 (others may pass through to their home and to the
    shared archive, but list nothing); the hub runs with umask 077 (set by
    ``jupyterhub_config.py``), so what it writes there (the database, cookie
    secret, password hashes, CA) is its own.
    """
    s.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(s.state_dir, 0o711)
    for name in ("jupyterhub.sqlite", "jupyterhub_cookie_secret", "passwords.dbm"):
        for path in s.state_dir.glob(f"{name}*"):
            os.chmod(path, 0o600)
    homes = s.homes_path
    homes.mkdir(parents=True, exist_ok=True)
    os.chmod(homes, 0o711)
    if s.local_accounts:
        from ._accounts import make_reachable

        here = Path(__file__).resolve().parents[1]
        paths = [Path(sys.prefix), Path(sys.base_prefix), here, homes, s.shared_archive_path]
        if s.notebooks is not None:
            paths.append(s.notebooks)
        changed = make_reachable(*(p for p in paths if p.exists()))
        if changed:
            print("vanotebook gateway: let the users' accounts pass through (o+x, no listing) "
                  + ", ".join(map(str, changed)) + " to reach Python, vanotebook, their homes "
                  "and the shared archive", flush=True)


def _shared_aladin_lite(s: HubSettings) -> Path | None:
    """Aladin Lite where every account reads it: root's copy, put beside the shared archive.

    The gateway installs Aladin Lite in root's cache, which the users' accounts
    cannot read; `view_hips` in their servers finds this copy through
    ``VANOTEBOOK_ALADIN_LITE``. None when Aladin Lite is not installed (the
    viewer then says how to install it).
    """
    from ..archive._viewer import aladin_lite_path

    try:
        source = aladin_lite_path()
    except RuntimeError:
        return None
    target = s.state_dir / "shared" / "aladin-lite"
    if not (target / "aladin.js").is_file() or \
            (target / "aladin.js").read_bytes() != (source / "aladin.js").read_bytes():
        tmp = target.with_name(f".aladin-lite.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp, symlinks=False)
        for dirpath, _dirnames, filenames in os.walk(tmp):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    os.chmod(target.parent, 0o755)
    return target


def _configure_auth(c: Any, s: HubSettings) -> None:
    c.Authenticator.admin_users = set(s.admin_users)
    if s.authenticator != "firstuse":
        c.JupyterHub.authenticator_class = s.authenticator
        return
    from ._auth import seed_password

    dbm_path = s.state_dir / "passwords.dbm"
    c.JupyterHub.authenticator_class = "vanotebook.hub._auth.GatewayAuthenticator"
    c.FirstUseAuthenticator.dbm_path = str(dbm_path)
    c.FirstUseAuthenticator.create_users = s.open_signup
    c.FirstUseAuthenticator.min_password_length = 8
    c.Authenticator.allow_all = True
    c.Authenticator.allow_existing_users = True
    for name in s.admin_users:
        new = seed_password(dbm_path, name, s.admin_password)
        if new is not None and s.admin_password is None:
            # shown once, at the start that made it; only its bcrypt hash is kept
            print(f"\nvanotebook gateway: the password of admin {name!r} is {new}\n"
                  "  (shown only now; log in and change it at /hub/auth/change-password)\n",
                  flush=True)


def _configure_spawner(c: Any, s: HubSettings, ca_dir: Path | None) -> None:
    singleuser = shutil.which("jupyterhub-singleuser") or str(
        Path(_python()).with_name("jupyterhub-singleuser"))
    c.Spawner.cmd = [singleuser]
    c.Spawner.default_url = "/lab"
    c.Spawner.http_timeout = 120
    c.Spawner.start_timeout = 120
    c.Spawner.ip = "127.0.0.1"
    args = [f"--ServerApp.jpserver_extensions={name}=False"
            for name in s.disabled_server_extensions]
    if s.spawner in ("local", "simple"):
        from ._spawner import GatewaySpawner

        c.JupyterHub.spawner_class = GatewaySpawner
        # jupyterhub-singleuser without jsonschema's slow rfc3987_syntax (see _singleuser)
        c.Spawner.cmd = [_python(), "-m", "vanotebook.hub._singleuser"]
        c.GatewaySpawner.user_prefix = s.user_prefix
        c.GatewaySpawner.homes = str(s.homes_path)
        c.GatewaySpawner.notebooks = str(s.notebooks or "")
        c.GatewaySpawner.ca_dir = str(ca_dir or "")
        c.GatewaySpawner.numba_seed = str(_numba_seed(s))
        import psutil

        from ..cluster import gpu_count

        profiles, dropped = machine_profiles(s.profiles, cpus=os.cpu_count() or 1,
                                             memory=psutil.virtual_memory().total,
                                             gpus=gpu_count())
        if dropped:
            print("vanotebook gateway: not offering the profiles " + "; ".join(dropped),
                  flush=True)
        c.GatewaySpawner.profiles = profiles
        c.GatewaySpawner.default_profile = "small" if "small" in profiles else next(
            iter(profiles))
        c.GatewaySpawner.concurrency = s.spawn_concurrency
        c.Spawner.options_form = _profiles_form(profiles)
        c.Spawner.options_from_form = _options_from_form(profiles)
    else:
        c.JupyterHub.spawner_class = s.spawner
        if "kubespawner" in s.spawner.lower():
            c.KubeSpawner.profile_list = [
                {"display_name": p["display_name"], "slug": key, "default": key == "small",
                 "kubespawner_override": {"cpu_limit": p["cpu"], "mem_limit": p["mem"],
                                          **({"extra_resource_limits": {"nvidia.com/gpu": "1"}}
                                             if p["gpu"] else {})}}
                for key, p in s.profiles.items()]
    c.Spawner.args = args


def _numba_seed(s: HubSettings) -> Path:
    """The hub's own numba cache for the accounts (see `_numba`), started at the first call."""
    seed = s.state_dir / "numba-seed"
    if not getattr(s, "_seeded", False):
        from ._numba import seed_cache, warm_seed

        seed.mkdir(mode=0o700, exist_ok=True)
        seed_cache(Path(__file__).resolve().parents[1], seed)
        warm_seed(seed)  # kernels root never ran yet: compiled once, in the background
        s._seeded = True  # type: ignore[attr-defined]
    return seed


def _cluster_services(s: HubSettings, ca_dir: Path) -> tuple[list[dict[str, Any]], Path]:
    """The shared scheduler, its workers and the Dask dashboard, as the service account.

    Returns the services and the folder of the cluster's own certificate.
    """
    from ._tls import ClusterCA, dask_tls_env

    prefix = "/services/dask"
    account: dict[str, Any] = {}
    dask_home = s.state_dir / "dask"
    if s.local_accounts:
        from ._accounts import ensure_account

        entry = ensure_account(s.worker_account_name, dask_home, system=True)
        uid, gid = entry.pw_uid, entry.pw_gid
        account = {"user": entry.pw_name, "cwd": str(dask_home)}
    else:
        dask_home.mkdir(mode=0o700, exist_ok=True)
        uid = gid = -1
    creds = ClusterCA(ca_dir).issue("cluster", dask_home / "tls", uid=uid, gid=gid)
    scratch = dask_home / "scratch"
    numba_cache = dask_home / "numba-cache"
    for d in (scratch, numba_cache):
        d.mkdir(mode=0o700, exist_ok=True)
        if uid >= 0:
            os.chown(d, uid, gid)
    from ._numba import copy_cache

    copy_cache(_numba_seed(s), numba_cache, uid, gid)
    tls_env = dask_tls_env(creds)
    services: list[dict[str, Any]] = [{
        "name": "dask-scheduler",
        "command": [_python(), "-m", "distributed.cli.dask_scheduler", "--protocol", "tls",
                    "--host", s.cluster_ip, "--port", str(s.scheduler_port),
                    "--dashboard-address", f"127.0.0.1:{s.dask_internal_port}",
                    "--dashboard-prefix", prefix, "--no-show"],
        "environment": dict(tls_env),
        **account,
    }, {
        # the scheduler runs on its own, so it is up before anyone opens its dashboard;
        # the "dask" service puts that dashboard behind the hub's OAuth
        "name": "dask",
        "url": f"http://127.0.0.1:{s.dask_dashboard_port}",
        "command": _standalone([_python(), "-c", "import time; time.sleep(1e9)"],
                               absolute=True, server_port=s.dask_internal_port),
        "oauth_no_confirm": True,
        **account,
    }]
    gpus = gpu_count()
    # each worker imports the services and loads their numba kernels as it starts
    # (hub/_warm.py), so no user's first job pays for that; the kernels are cached
    # in the service account's own folder
    worker_env = {**tls_env, "DASK_DISTRIBUTED__WORKER__PRELOAD": '["vanotebook.hub._warm"]',
                  "NUMBA_CACHE_DIR": str(numba_cache)}
    for i in range(s.workers):
        cmd = [_python(), "-m", "vanotebook.cli", "worker",
               f"tls://{s.cluster_ip}:{s.scheduler_port}", "--nthreads", str(s.worker_threads),
               "--memory-limit", s.worker_memory, "--name", f"shared-{i}",
               "--host", s.cluster_ip, "--local-directory", str(scratch)]
        if gpus:
            cmd += ["--gpus", "1"]  # one GPU per worker; CUDA_VISIBLE_DEVICES below
        service = {"name": f"dask-worker-{i}", "command": cmd,
                   "environment": dict(worker_env), **account}
        if gpus:
            service["environment"]["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        services.append(service)
    return services, dask_home / "tls"


def _publisher_account(s: HubSettings, shared: Path) -> str:
    """The account that alone writes the shared archive (its publishing service runs as it)."""
    from ._accounts import ensure_account

    entry = ensure_account(f"{s.user_prefix}archive", s.state_dir / "publisher", system=True)
    if s.dachs_url:  # DaCHS's group may write its inputs and run `dachs imp`; no user is in it
        import grp

        group = grp.getgrgid(s.dachs_inputs.stat().st_gid).gr_name
        if entry.pw_name not in grp.getgrnam(group).gr_mem:
            subprocess.run(["usermod", "-aG", group, entry.pw_name], check=True)
    root = shared.parent if s.shared_archive is None else shared
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (dirpath, *(os.path.join(dirpath, n) for n in (*dirnames, *filenames))):
            os.chown(name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    return entry.pw_name


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
    if s.spawner in ("local", "simple") and os.geteuid() != 0:
        raise VanotebookInputError(
            "VANOTEBOOK_SPAWNER", "root to run the local spawner (it makes a unix account "
            "per user), or a spawner such as kubespawner.KubeSpawner",
            f"local, as {pwd.getpwuid(os.geteuid()).pw_name}")
    _secure_state(s)

    c.JupyterHub.ip = s.ip
    c.JupyterHub.port = s.port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = s.hub_port
    c.JupyterHub.db_url = f"sqlite:///{s.state_dir / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(s.state_dir / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(s.state_dir / "jupyterhub.pid")
    c.ConfigurableHTTPProxy.pid_file = str(s.state_dir / "proxy.pid")
    # the proxy's API next to the proxy (8001 for the default 8000), so gateways on
    # other ports do not collide on JupyterHub's fixed default
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{s.proxy_api_port or s.port + 1}"
    chp = proxy_command()
    if chp is not None:
        c.ConfigurableHTTPProxy.command = chp

    _configure_auth(c, s)
    # the hub's CA: for its own cluster, or for an external TLS one whose workers
    # carry certificates of this CA (users get theirs at spawn either way)
    tls_outside = (s.scheduler_address or "").startswith("tls://")
    ca_dir = s.state_dir / "ca" if s.managed_cluster or tls_outside else None
    _configure_spawner(c, s, ca_dir)
    shared = _ensure_shared_archive(s)
    env = {"VANOTEBOOK_GATEWAY": "1", "VANOTEBOOK_SHARED_ARCHIVE": str(shared),
           "VANOTEBOOK_ARCHIVE": "~/archive"}
    aladin = _shared_aladin_lite(s)
    if aladin is not None:
        env["VANOTEBOOK_ALADIN_LITE"] = str(aladin)
    if s.user_scheduler_address:
        env[SCHEDULER_ENV] = s.user_scheduler_address
    if s.managed_cluster:  # the dashboard is behind the hub, not on the machine's loopback
        env["DASK_DISTRIBUTED__DASHBOARD__LINK"] = "/services/dask/status"
    if s.dask_gateway:
        env["DASK_GATEWAY__ADDRESS"] = s.dask_gateway

    # -- services
    services: list[dict[str, Any]] = []
    roles = [{"name": "user", "scopes": ["self", "access:services"]},
             # the token of each user's server: the hub's defaults, plus the publishing path
             {"name": "server", "scopes": ["users:activity!user", "access:servers!server",
                                           f"access:services!service={PUBLISH_SERVICE}",
                                           f"access:services!service={UWS_SERVICE}"]}]
    if s.managed_cluster:
        services += _cluster_services(s, ca_dir)[0]
    if s.private_clusters and s.local_accounts and not s.dask_gateway:
        from ._gateway import dask_gateway_service, merge_roles

        gw_services, gw_roles, gw_env = dask_gateway_service(
            state_dir=s.state_dir, hub_api_url=f"http://127.0.0.1:{s.hub_port}/hub/api",
            public_url=f"http://127.0.0.1:{s.port}", port=s.gateway_port,
            proxy_port=s.gateway_proxy_port, api_port=s.gateway_api_port,
            user_prefix=s.user_prefix, python=_python())
        services += gw_services
        roles = merge_roles(roles, gw_roles)
        env.update(gw_env)
    if s.local_accounts:
        publisher = _publisher_account(s, shared)
        services.append({
            "name": PUBLISH_SERVICE,
            "url": f"http://127.0.0.1:{s.publish_port}",
            "command": [_python(), "-m", "vanotebook.hub._publish", "--port",
                        str(s.publish_port), "--archive", str(shared),
                        *(["--dachs-url", s.dachs_url, "--dachs-inputs", str(s.dachs_inputs)]
                          if s.dachs_url else [])],
            "user": publisher, "cwd": str(shared),
        })
        env["VANOTEBOOK_PUBLISH_URL"] = \
            f"http://127.0.0.1:{s.publish_port}/services/{PUBLISH_SERVICE}/"
        if s.dachs_url:
            env["VANOTEBOOK_DACHS_URL"] = s.dachs_url  # to query what was published
    if s.local_accounts:  # UWS jobs, each run as its owner's account
        services.append({
            "name": UWS_SERVICE, "url": f"http://127.0.0.1:{s.uws_port}", "oauth_no_confirm": True,
            "command": [_python(), "-m", "vanotebook.hub._uws", "--port", str(s.uws_port),
                        "--state", str(s.state_dir / "jobs"), "--user-prefix", s.user_prefix,
                        "--publish-service", PUBLISH_SERVICE,
                        *(["--ca-dir", str(ca_dir)] if ca_dir else [])],
            # what a user's server sees (the cluster, the archives, publishing); each job
            # adds its owner's certificate and token (vanotebook.hub._uws)
            "environment": dict(env),
        })
        # to give each job a short-lived token of its owner that reaches publishing only
        roles.append({"name": "uws", "services": [UWS_SERVICE], "scopes": ["tokens"]})
        env["VANOTEBOOK_UWS_URL"] = f"http://127.0.0.1:{s.port}/services/{UWS_SERVICE}/"
    # the dashboards run in each user's own server (jupyter-server-proxy, as that
    # account); this service only sends a logged-in user there
    services.append({
        "name": "dashboards",
        "url": f"http://127.0.0.1:{s.app_port}",
        "command": [_python(), "-m", "vanotebook.hub._redirect", "--port", str(s.app_port),
                    "--to", "/hub/user-redirect/dashboards/"],
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
    c.Spawner.environment = env
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
    return s


def _profiles_form(profiles: dict[str, dict[str, Any]]) -> str:
    options = "\n".join(
        f'<option value="{key}"{" selected" if key == "small" else ""}>'
        f'{p["display_name"]}</option>' for key, p in profiles.items())
    return f'<label for="profile">Resources</label>\n<select name="profile">{options}</select>'


def _options_from_form(profiles: dict[str, dict[str, Any]]):
    def parse(formdata: dict[str, list[str]]) -> dict[str, Any]:
        key = (formdata.get("profile") or ["small"])[0]
        if key not in profiles:
            raise VanotebookInputError("profile", f"one of {tuple(profiles)}", key)
        return {"profile": key}

    return parse
