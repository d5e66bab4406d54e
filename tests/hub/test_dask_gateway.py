"""Private clusters through dask-gateway: the generated configuration, and a real gateway.

The configuration tests load the file `dask_gateway_service` writes into
dask-gateway-server's own application (traitlets), without starting it, for
each backend. The e2e test runs ``dask-gateway-server`` as root with that file
(its authenticator swapped for a password one that maps names the same way),
and two unix accounts: alice's cluster runs as alice, bob cannot see or reach it.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from vanotebook import VanotebookInputError
from vanotebook.cluster import PRIVATE_CLUSTER_OPTIONS, PRIVATE_PROFILES, check_private_options

SRC = Path(__file__).resolve().parents[2] / "src"
HUB_API = "http://127.0.0.1:8081/hub/api"
LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _service(tmp_path, backend, env=None, **kw):
    from vanotebook.hub._gateway import dask_gateway_service

    args = {"state_dir": tmp_path / "state", "hub_api_url": HUB_API,
            "public_url": "http://127.0.0.1:8000/", "port": 8792, "proxy_port": 8793,
            "api_port": 8794, "user_prefix": "vn-", "backend": backend,
            "api_token": "secret-token", "env": {} if env is None else env, **kw}
    return dask_gateway_service(**args)


def _load(path: Path):
    """dask-gateway-server's own application, configured from ``path``, not started."""
    from dask_gateway_server.app import DaskGateway

    DaskGateway.clear_instance()
    app = DaskGateway()
    app.initialize(["-f", str(path)])
    return app


def _fake_cluster(config, username="root"):
    from dask_gateway_server.utils import FrozenAttrDict

    return types.SimpleNamespace(name="c0ffee", username=username, token="t",
                                 scheduler_address="tls://127.0.0.1:1",
                                 config=FrozenAttrDict(config.to_dict()),
                                 state={"workdir": "/tmp"})


ENVS = {
    "local": {"VANOTEBOOK_DASK_GATEWAY_GPUS": "0,1"},
    "kubernetes": {"VANOTEBOOK_DASK_GATEWAY_IMAGE": "registry.example/vanotebook:1",
                   "VANOTEBOOK_DASK_GATEWAY_NAMESPACE": "astro"},
    "slurm": {"VANOTEBOOK_DASK_GATEWAY_QUEUE": "gpu", "VANOTEBOOK_DASK_GATEWAY_ACCOUNT": "ast1",
              "VANOTEBOOK_DASK_GATEWAY_QOS": "normal",
              "VANOTEBOOK_DASK_GATEWAY_PYTHON": "/opt/env/bin/python",
              "VANOTEBOOK_DASK_GATEWAY_SETUP": "module load cuda"},
    "pbs": {"VANOTEBOOK_DASK_GATEWAY_QUEUE": "workq", "VANOTEBOOK_DASK_GATEWAY_ACCOUNT": "ast1",
            "VANOTEBOOK_DASK_GATEWAY_PROJECT": "sky",
            "VANOTEBOOK_DASK_GATEWAY_PYTHON": "/opt/env/bin/python"},
}
CLASSES = {
    "local": "vanotebook.hub._gateway.UserLocalBackend",
    "kubernetes": "dask_gateway_server.backends.kubernetes.backend.KubeBackend",
    "slurm": "vanotebook.hub._gateway.UserSlurmBackend",
    "pbs": "vanotebook.hub._gateway.UserPBSBackend",
}


@pytest.mark.parametrize("backend", list(ENVS))
def test_generated_config_loads_in_dask_gateway_server(tmp_path, backend):
    from dask_gateway_server.backends.base import PublicException
    from dask_gateway_server.backends.local import UnsafeLocalBackend
    from dask_gateway_server.models import User
    from dask_gateway_server.proxy import Proxy

    services, roles, user_env = _service(tmp_path, backend, ENVS[backend])
    (service,) = services
    assert service["name"] == "dask-gateway" and service["url"] == "http://127.0.0.1:8792"
    assert service["command"][1:4] == ["-m", "dask_gateway_server", "-f"]
    path = Path(service["command"][-1])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert "Unsafe" not in path.read_text()
    assert user_env == {
        "DASK_GATEWAY__ADDRESS": "http://127.0.0.1:8000/services/dask-gateway",
        "DASK_GATEWAY__PUBLIC_ADDRESS": "http://127.0.0.1:8000/services/dask-gateway",
        "DASK_GATEWAY__PROXY_ADDRESS": "gateway://127.0.0.1:8793",
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub"}
    server_role = next(r for r in roles if r["name"] == "server")
    assert "access:services!service=dask-gateway" in server_role["scopes"]

    app = _load(path)
    backend_obj = app.backend
    cls = type(backend_obj)
    assert f"{cls.__module__}.{cls.__qualname__}" == CLASSES[backend]
    assert not isinstance(backend_obj, UnsafeLocalBackend)
    auth = app.authenticator
    assert type(auth).__name__ == "HubAuthenticator"
    assert (auth.jupyterhub_api_url, auth.jupyterhub_service_name, auth.user_prefix) == (
        HUB_API, "dask-gateway", "vn-")
    assert auth.use_service_access_scopes

    # every listener on loopback: the API server, the HTTP and scheduler proxies, clusters
    proxy = Proxy(parent=backend_obj, log=app.log)
    assert app.address == "127.0.0.1:8794"
    assert (proxy.address, proxy.tcp_address) == ("127.0.0.1:8792", "127.0.0.1:8793")
    assert proxy.prefix == "/services/dask-gateway"

    # the options: the one declaration, with its bounds
    gpus = 2 if backend == "local" else None
    spec = {f["field"]: f for f in backend_obj.cluster_options.get_specification()}
    assert list(spec) == [o.name for o in PRIVATE_CLUSTER_OPTIONS]
    for option in PRIVATE_CLUSTER_OPTIONS:
        top = min(option.max, gpus) if option.name == "worker_gpus" and gpus else option.max
        assert (spec[option.name]["spec"]["min"], spec[option.name]["spec"]["max"]) == (
            option.min, top)

    request = {"worker_cores": 2, "worker_memory": 3.0, "worker_gpus": 1, "max_workers": 3}
    _, config = asyncio.run(backend_obj.process_cluster_options(User("vn-alice"), request))
    assert config.worker_cores == 2 and config.worker_threads == 2
    assert config.worker_memory == 3 * 2**30
    assert config.cluster_max_workers == 3
    assert config.environment["DASK_DISTRIBUTED__WORKER__RESOURCES"] == '{"GPU": 1}'
    assert config.environment["OMP_NUM_THREADS"] == "2"
    assert config.idle_timeout == 3600
    for bad, name in (({"worker_cores": 5}, "worker_cores"),
                      ({"worker_memory": 64.0}, "worker_memory"),
                      ({"worker_gpus": 5}, "worker_gpus"), ({"max_workers": 9}, "max_workers"),
                      ({"worker_threads": 2}, "worker_threads")):
        with pytest.raises(PublicException, match=name):
            asyncio.run(backend_obj.process_cluster_options(User("vn-alice"), bad))

    if backend == "kubernetes":
        assert config.image == "registry.example/vanotebook:1"
        assert config.namespace == "astro"
        assert (config.worker_cores_limit, config.worker_memory_limit) == (2.0, 3 * 2**30)
        assert config.worker_extra_container_config == {
            "resources": {"limits": {"nvidia.com/gpu": 1}}}
        assert config.worker_cmd[:3] == ["python", "-m", "distributed.cli.dask_worker"]
        return

    # local and batch: schedulers and workers listen on loopback too
    backend_obj.proxy = proxy
    assert backend_obj.api_url == "http://127.0.0.1:8792/services/dask-gateway/api"
    assert backend_obj.default_host == LOOPBACK
    cluster = _fake_cluster(config)
    cmd = backend_obj.get_scheduler_command(cluster)
    for flag in ("--host", "--dashboard-address", "--dg-api-address"):
        assert cmd[cmd.index(flag) + 1].split(":")[0] == LOOPBACK, flag
    worker_cmd = backend_obj.get_worker_command(cluster, "w1")
    assert worker_cmd[worker_cmd.index("--dashboard-address") + 1] == "127.0.0.1:0"
    python = sys.executable if backend == "local" else "/opt/env/bin/python"
    assert cmd[:3] == [python, "-m", "distributed.cli.dask_scheduler"]
    assert worker_cmd[:3] == [python, "-m", "distributed.cli.dask_worker"]
    if backend == "local":
        assert worker_cmd[worker_cmd.index("--host") + 1] == LOOPBACK
        assert backend_obj.gpu_ids == ["0", "1"]
        assert config.worker_gpus == 1
        return
    submit, _env, _stdin = backend_obj.get_submit_cmd_env_stdin(
        cluster, types.SimpleNamespace(name="w1"))
    if backend == "slurm":
        assert (config.partition, config.account, config.qos) == ("gpu", "ast1", "normal")
        assert config.worker_setup == "module load cuda"
        assert "--gres=gpu:1" in submit and "--cpus-per-task=2" in submit
        scheduler_submit = backend_obj.get_submit_cmd_env_stdin(cluster)[0]
        assert not any(a.startswith("--gres") for a in scheduler_submit)
    else:
        assert (config.queue, config.account, config.project) == ("workq", "ast1", "sky")
        assert submit[submit.index("-l") + 1] == "select=1:ncpus=2:mem=3072MB:ngpus=1"


def test_listeners_move_only_when_configured(tmp_path):
    services, _roles, user_env = _service(
        tmp_path, "slurm", {"VANOTEBOOK_DASK_GATEWAY_HOST": "0.0.0.0",
                            "VANOTEBOOK_DASK_GATEWAY_PROXY_ADDRESS": "gateway://login1:8793"})
    app = _load(Path(services[0]["command"][-1]))
    assert app.address == "0.0.0.0:8794"
    assert app.backend.default_host == "0.0.0.0"
    assert user_env["DASK_GATEWAY__PROXY_ADDRESS"] == "gateway://login1:8793"


def test_external_gateway_and_kubernetes_image_required(tmp_path):
    services, _, _ = _service(
        tmp_path, "kubernetes", {"VANOTEBOOK_DASK_GATEWAY_IMAGE": "img:1",
                                 "VANOTEBOOK_DASK_GATEWAY_URL": "http://traefik-dask-gateway"})
    assert services[0]["url"] == "http://traefik-dask-gateway"
    assert "command" not in services[0]
    with pytest.raises(VanotebookInputError, match="VANOTEBOOK_DASK_GATEWAY_IMAGE: expected"):
        _service(tmp_path, "kubernetes", {})
    with pytest.raises(VanotebookInputError, match=r"backend: expected one of \('local'"):
        _service(tmp_path, "yarn")
    services, _, _ = _service(tmp_path, None, {"VANOTEBOOK_DASK_GATEWAY_BACKEND": "pbs"})
    assert "UserPBSBackend" in Path(services[0]["command"][-1]).read_text()


def test_merge_roles_unions_scopes():
    from vanotebook.hub._gateway import merge_roles

    merged = merge_roles([{"name": "user", "scopes": ["self", "access:services"]}],
                         [{"name": "user", "scopes": ["self", "access:services!service=x"]},
                          {"name": "server", "scopes": ["a"]}])
    assert merged == [{"name": "user", "scopes": ["self", "access:services",
                                                   "access:services!service=x"]},
                      {"name": "server", "scopes": ["a"]}]


def test_hub_names_become_unix_names():
    from aiohttp import web
    from dask_gateway_server.auth import Authenticator
    from dask_gateway_server.models import User

    from vanotebook.hub._gateway import UnixNameMixin

    class Fixed(Authenticator):
        name = "alice"

        async def authenticate(self, request):
            return User(self.name, groups=["astro"], admin=True)

    class Mapped(UnixNameMixin, Fixed):
        pass

    auth = Mapped(user_prefix="vt-")
    user = asyncio.run(auth.authenticate(None))
    assert (user.name, user.groups, user.admin) == ("vt-alice", {"astro"}, True)
    auth.name = "service:jobs"  # a hub service's token: no unix account, no cluster
    with pytest.raises(web.HTTPForbidden):
        asyncio.run(auth.authenticate(None))


def test_working_directory_is_handed_over_whole(tmp_path, monkeypatch):
    """Only the cluster's own folder and files change owner (never a parent, never '/')."""
    from vanotebook.hub import _gateway

    me = pwd.getpwuid(os.getuid())
    chowned = []
    monkeypatch.setattr(_gateway.pwd, "getpwnam", lambda name: me)
    monkeypatch.setattr(_gateway.os, "chown",
                        lambda path, uid, gid, **kw: chowned.append((path, uid, gid)))
    backend = _gateway.UserLocalBackend(clusters_directory=str(tmp_path / "clusters"))
    cluster = types.SimpleNamespace(name="abc123", username="vn-alice",
                                    tls_cert=b"CERT", tls_key=b"KEY")
    workdir = Path(backend.setup_working_directory(cluster))
    assert workdir == tmp_path / "clusters" / "abc123"
    cert, key = workdir / ".certs" / "dask.crt", workdir / ".certs" / "dask.pem"
    assert sorted(p for p, _, _ in chowned) == sorted(
        map(str, [workdir, workdir / ".certs", workdir / "logs", cert, key]))
    assert {(uid, gid) for _, uid, gid in chowned} == {(me.pw_uid, me.pw_gid)}
    for path, mode in ((workdir, 0o700), (workdir / "logs", 0o700), (key, 0o600)):
        assert stat.S_IMODE(path.stat().st_mode) == mode
    assert key.read_bytes() == b"KEY"
    with pytest.raises(FileExistsError):  # a cluster's folder is never reused
        backend.setup_working_directory(cluster)


def test_each_worker_gets_its_own_gpus():
    from vanotebook.hub._gateway import UserLocalBackend

    backend = UserLocalBackend(gpu_ids=["0", "1", "2"])
    assert backend._take_gpus(2) == ["0", "1"]
    assert backend._take_gpus(1) == ["2"]
    assert backend._take_gpus(1) == ["0"]  # all in use: the least used, first listed
    backend._give_back_gpus(["1"])
    assert backend._take_gpus(1) == ["1"]
    assert backend._take_gpus(0) == []
    with pytest.raises(ValueError, match="worker_gpus=4"):
        backend._take_gpus(4)


# -- connect(private=True): checked before any request --------------------------------------


@pytest.fixture
def no_requests(monkeypatch):
    """A gateway address, and a GatewayCluster that fails the test if it is ever made."""
    import dask
    import dask_gateway

    def refuse(*args, **kwargs):
        raise AssertionError("a request reached the gateway")

    monkeypatch.setattr(dask_gateway, "GatewayCluster", refuse)
    with dask.config.set({"gateway.address": "http://127.0.0.1:9/services/dask-gateway"}):
        yield


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"worker_cores": 5}, r"worker_cores: expected an integer from 1 to 4, got int 5"),
    ({"worker_cores": 1.5}, r"worker_cores: expected an integer from 1 to 4"),
    ({"worker_memory": 64}, r"worker_memory: expected a number from 0\.5 to 16\.0, got int 64"),
    ({"worker_gpus": -1}, r"worker_gpus: expected an integer from 0 to 4"),
    ({"max_workers": True}, r"max_workers: expected an integer from 1 to 8, got bool"),
    ({"worker_threads": 2}, r"worker_threads: expected a private-cluster option"),
    ({"profile": "huge"}, r"profile: expected one of \('small', 'large', 'gpu'\)"),
    ({"n_workers": 6, "max_workers": 2}, r"n_workers: expected at most max_workers=2, got int 6"),
    ({"threads_per_worker": 2}, r"threads_per_worker: expected None with private=True"),
])
def test_connect_private_refuses_bad_options_before_any_request(no_requests, kwargs, match):
    import vanotebook

    with pytest.raises(VanotebookInputError, match=match):
        vanotebook.connect(private=True, **kwargs)


def test_connect_refuses_private_options_without_private(no_requests):
    import vanotebook

    with pytest.raises(VanotebookInputError, match="worker_gpus: expected a private-cluster "
                                                   "option only with private=True"):
        vanotebook.connect(worker_gpus=1)


def test_connect_private_without_gateway_is_a_named_error(monkeypatch):
    import dask

    import vanotebook

    with dask.config.set({"gateway.address": None}), pytest.raises(
            VanotebookInputError, match=r"private: expected a dask-gateway to ask: none is "
                                        r"configured \(Dask config 'gateway.address'"):
        vanotebook.connect(private=True)
    with dask.config.set({"gateway.address": None}), pytest.raises(
            VanotebookInputError, match="private: expected a dask-gateway"):
        vanotebook.connect(profile="small")


def test_private_options_and_profiles():
    assert check_private_options() == {"worker_cores": 1, "worker_memory": 2.0,
                                       "worker_gpus": 0, "max_workers": 4}
    assert check_private_options("gpu", max_workers=2) == {
        **PRIVATE_PROFILES["gpu"], "max_workers": 2}
    assert isinstance(check_private_options(worker_memory=3)["worker_memory"], float)
    for values in PRIVATE_PROFILES.values():
        check_private_options(**values)


# -- a real gateway, two users ------------------------------------------------------------


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _listeners(procs) -> set[str]:
    """The IP addresses the given processes listen on (TCP)."""
    import psutil

    found = set()
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found.update(c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN)
    return found


def _processes_of(uid: int):
    import psutil

    return [p for p in psutil.process_iter(["uids"]) if p.info["uids"].real == uid]


@pytest.fixture(scope="module")
def gateway_server():
    """dask-gateway-server (as root) from the generated local config, with two accounts.

    The hub's JupyterHub authenticator is swapped for dask-gateway's password
    one, through the same hub-name -> unix-name mix-in; users reach it as the
    hub's proxy would send them (``/services/dask-gateway/`` on its HTTP proxy).
    """
    from vanotebook.hub._accounts import delete_account, ensure_account, make_reachable, unix_name
    from vanotebook.hub._gateway import dask_gateway_service

    assert os.geteuid() == 0, "the gateway starts clusters as unix accounts: run as root (CI does)"
    prefix = f"vt{secrets.token_hex(2)}-"
    base = Path(tempfile.mkdtemp(prefix="vanotebook-dask-gateway-test-"))
    os.chmod(base, 0o711)  # the homes below are reachable, the state dir is root's
    make_reachable(sys.prefix, sys.base_prefix, SRC)
    accounts = {}
    proc = log = None
    try:
        for who in ("alice", "bob"):
            accounts[who] = ensure_account(unix_name(who, prefix), base / "home" / who)
        os.chmod(base / "home", 0o711)
        port, proxy_port, api_port = _free_port(), _free_port(), _free_port()
        services, _roles, user_env = dask_gateway_service(
            state_dir=base / "state", hub_api_url="http://127.0.0.1:1/hub/api",
            public_url=f"http://127.0.0.1:{port}", port=port, proxy_port=proxy_port,
            api_port=api_port, user_prefix=prefix, backend="local", env={})
        command = services[0]["command"]
        password = secrets.token_hex(8)
        with open(command[-1], "a") as f:  # the test's authenticator: same name mapping
            f.write(
                "from dask_gateway_server.auth import SimpleAuthenticator\n"
                "from vanotebook.hub._gateway import UnixNameMixin\n"
                "class PasswordAuthenticator(UnixNameMixin, SimpleAuthenticator):\n"
                "    pass\n"
                "c.DaskGateway.authenticator_class = PasswordAuthenticator\n"
                f"c.PasswordAuthenticator.password = {password!r}\n"
                f"c.PasswordAuthenticator.user_prefix = {prefix!r}\n"
                "c.DBBackendBase.cluster_status_period = 2.0\n"
                "c.DBBackendBase.worker_status_period = 2.0\n")
        log = (base / "state" / "gateway.log").open("w")
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        _wait_http(f"http://127.0.0.1:{port}/services/dask-gateway/api/health")
        yield {"env": user_env, "password": password, "accounts": accounts, "proc": proc,
               "base": base, "log": base / "state" / "gateway.log"}
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # stops every cluster it started
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if log is not None:
            log.close()
            shutil.copy(base / "state" / "gateway.log",
                        Path(tempfile.gettempdir()) / "vanotebook-dask-gateway-test.log")
        for entry in accounts.values():
            for p in _processes_of(entry.pw_uid):  # left behind by a failed stop
                p.kill()
            delete_account(entry.pw_name)
        shutil.rmtree(base, ignore_errors=True)


def _gateway_config(server, who: str, password: str | None = None) -> dict:
    env = server["env"]
    return {"gateway.address": env["DASK_GATEWAY__ADDRESS"],
            "gateway.proxy-address": env["DASK_GATEWAY__PROXY_ADDRESS"],
            "gateway.public-address": env["DASK_GATEWAY__PUBLIC_ADDRESS"],
            "gateway.auth.type": "basic",
            "gateway.auth.kwargs": {"username": who,
                                    "password": password or server["password"]}}


@pytest.mark.e2e
@pytest.mark.slow
def test_private_cluster_runs_as_its_user_and_is_refused_to_others(gateway_server):
    import aiohttp
    import dask
    from dask_gateway import Gateway
    from distributed import get_task_stream

    import vanotebook
    from vanotebook.cluster import _close_once
    from vanotebook.sky import demo_sky

    alice, bob = gateway_server["accounts"]["alice"], gateway_server["accounts"]["bob"]
    image = demo_sky(0, size=0.3).images("radio")[0]
    here = vanotebook.detect(image, tile=64, overlap=16)  # in this process, no client yet

    with dask.config.set(_gateway_config(gateway_server, "alice")):
        client = vanotebook.connect(private=True, worker_cores=1, worker_memory=1.0,
                                    max_workers=2, n_workers=1)
    cluster = client.cluster
    try:
        client.wait_for_workers(1, timeout=180)
        # the scheduler and the workers run as alice, in her private working dir
        assert client.run_on_scheduler(os.getuid) == alice.pw_uid
        assert set(client.run(os.getuid).values()) == {alice.pw_uid}
        assert set(client.run(os.getuid, nanny=True).values()) == {alice.pw_uid}
        workdir = Path(client.run_on_scheduler(os.getcwd))
        info = workdir.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (alice.pw_uid, 0o700)
        key = workdir / ".certs" / "dask.pem"
        assert (key.stat().st_uid, stat.S_IMODE(key.stat().st_mode)) == (alice.pw_uid, 0o600)
        peek = subprocess.run(["ls", str(workdir)], user=bob.pw_uid, capture_output=True,
                              check=False)
        assert peek.returncode != 0, "bob can list alice's cluster folder"
        assert cluster.scheduler_address.startswith("gateway://127.0.0.1:")
        workers = client.scheduler_info(n_workers=-1)["workers"]
        assert all(addr.startswith("tls://127.0.0.1:") for addr in workers)
        assert _listeners(_processes_of(alice.pw_uid)) == {LOOPBACK}
        import psutil

        server = psutil.Process(gateway_server["proc"].pid)
        assert _listeners([server, *server.children(recursive=True)]) == {LOOPBACK}

        # a detection on alice's cluster equals the one in this process
        with get_task_stream(client) as stream:
            there = vanotebook.detect(image, tile=64, overlap=16, client=client)
        assert len(stream.data) >= 4  # the tiles ran on the cluster
        assert len(there.catalogue) == len(here.catalogue) >= 1
        for col in ("x", "y", "peak", "flux", "major", "minor"):
            np.testing.assert_allclose(np.asarray(there.catalogue[col]),
                                       np.asarray(here.catalogue[col]), rtol=1e-5)

        # bob sees none of alice's clusters, cannot connect to, scale or stop hers
        with dask.config.set(_gateway_config(gateway_server, "bob")):
            gateway = _close_once(Gateway())
            try:
                assert gateway.list_clusters() == []
                for attempt in (lambda: gateway.connect(cluster.name),
                                lambda: gateway.scale_cluster(cluster.name, 2),
                                lambda: gateway.stop_cluster(cluster.name)):
                    with pytest.raises(aiohttp.ClientResponseError) as refused:
                        attempt()
                    assert refused.value.status == 403
            finally:
                gateway.close()
        # nor can anyone without alice's password
        with dask.config.set(_gateway_config(gateway_server, "alice", "wrong")):
            gateway = _close_once(Gateway())
            try:
                with pytest.raises(aiohttp.ClientResponseError) as refused:
                    gateway.list_clusters()
                assert refused.value.status == 401
            finally:
                gateway.close()
        with dask.config.set(_gateway_config(gateway_server, "alice")):
            gateway = _close_once(Gateway())
            try:
                (report,) = gateway.list_clusters()
                assert report.name == cluster.name
            finally:
                gateway.close()
        assert client.submit(sum, [1, 2]).result(timeout=60) == 3  # still running
    finally:
        client.close()  # shuts the cluster down
    assert cluster.status == "closed"
    with dask.config.set(_gateway_config(gateway_server, "alice")):
        gateway = _close_once(Gateway())
        try:
            deadline = time.monotonic() + 60
            while gateway.list_clusters() and time.monotonic() < deadline:
                time.sleep(0.5)
            assert gateway.list_clusters() == []
        finally:
            gateway.close()
    deadline = time.monotonic() + 60  # stopping: workers, the scheduler, then its folder
    while (_processes_of(alice.pw_uid) or workdir.exists()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _processes_of(alice.pw_uid)
    assert not workdir.exists()


def test_a_gateway_closed_on_its_own_loop_thread_does_not_deadlock():
    """Garbage collection can close a gateway on its event loop's thread (CI hung there for
    15 minutes inside another gateway's request): that close must not wait on itself."""
    import threading

    from dask_gateway import Gateway

    from vanotebook.cluster import _close_once

    gateway = _close_once(Gateway(address="http://127.0.0.1:9", auth="basic"))
    done = threading.Event()

    def on_the_loop() -> None:
        gateway.close()  # what Gateway.__del__ does when collected there
        done.set()

    gateway.loop.add_callback(on_the_loop)
    assert done.wait(20), "close on the loop's thread blocked it"
    other = _close_once(Gateway(address="http://127.0.0.1:9", auth="basic"))
    other.close()  # the shared loop still answers
    gateway._loop_runner.stop()


def test_a_gateway_dask_gateway_drops_is_collected_on_the_loop_without_deadlock():
    """The gateway a refused Gateway.connect leaves behind is dask-gateway's own (never passed
    through _close_once): its __del__ on the loop's thread hung CI inside bob's stop_cluster."""
    import threading

    from dask_gateway import Gateway

    from vanotebook.cluster import _close_once

    ours = _close_once(Gateway(address="http://127.0.0.1:9", auth="basic"))  # installs it
    theirs = Gateway(address="http://127.0.0.1:9", auth="basic")
    done = threading.Event()

    def collected_on_the_loop() -> None:
        type(theirs).__del__(theirs)
        done.set()

    theirs.loop.add_callback(collected_on_the_loop)
    assert done.wait(20), "Gateway.__del__ on the loop's thread blocked it"
    ours.close()
    theirs._loop_runner.stop()
