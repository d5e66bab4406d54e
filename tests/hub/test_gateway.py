"""The gateway end to end: a real hub, the npm proxy, real user servers, the shared
Dask cluster, and the dashboards app in headless Chromium (Playwright)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests

from vanotebook import VanotebookInputError
from vanotebook.hub import HubClient, HubSettings, configure, proxy_command, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


# counts the data rows of every Bokeh glyph renderer on the page, by glyph type
GLYPH_COUNTS = """() => {
  const out = {};
  for (const doc of window.Bokeh.documents) {
    for (const m of doc.all_models) {
      if (m.glyph !== undefined && m.data_source !== undefined) {
        const k = m.glyph.type;
        out[k] = (out[k] || 0) + m.data_source.get_length();
      }
    }
  }
  return out;
}"""


IMAGE_STEP = """(name) => {
  let step = null;  // a figure redrawn (a new result) leaves the old one's models named alike
  for (const doc of window.Bokeh.documents) {
    for (const m of doc.all_models) {
      if (m.name !== name || m.renderers === undefined) continue;
      for (const r of m.renderers) {
        if (r.glyph !== undefined && r.glyph.type === "Image") step = r.data_source.data.step[0];
      }
    }
  }
  return step;
}"""


SHADOW_TEXT = """() => {
  const out = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) walk(el.shadowRoot);
      if (['STYLE', 'SCRIPT'].includes(el.tagName)) continue;
      if (el.children.length === 0 && el.textContent.trim()) out.push(el.textContent.trim());
    }
  };
  walk(document);
  return out.join(' | ').slice(-4000);
}"""


def _diagnose(page, state: Path) -> str:
    """What a failed browser step saw: the page's text (shadow DOM too), the busiest
    processes and the end of the gateway's log (the users' servers log there)."""
    lines = [f"page url: {page.url}"]
    try:
        lines.append("page text: " + page.evaluate(SHADOW_TEXT))
    except Exception as exc:  # the page may be gone
        lines.append(f"page text unavailable: {exc!r}")
    procs = []
    for p in psutil.process_iter(["pid", "username", "cmdline", "cpu_times", "memory_info"]):
        try:
            cpu = sum(p.info["cpu_times"][:2])
            procs.append((cpu, p.info["pid"], p.info["username"],
                          (p.info["memory_info"].rss >> 20) if p.info["memory_info"] else 0,
                          " ".join(p.info["cmdline"] or [])[:160]))
        except (TypeError, psutil.Error):
            continue
    lines += [f"cpu {c:8.1f}s pid {pid} {user} {rss} MiB {cmd}"
              for c, pid, user, rss, cmd in sorted(procs, reverse=True)[:15]]
    log = (state / "gateway.log").read_text(errors="replace").splitlines()
    lines += ["gateway.log (end):", *log[-200:]]
    return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PREFIX = f"vt{uuid.uuid4().hex[:4]}-"  # this run's unix accounts: vtXXXX-alice, ...
RUN = PREFIX.strip("-")  # names this run publishes to the shared DaCHS


def _accounts() -> list[str]:
    import pwd

    return [p.pw_name for p in pwd.getpwall() if p.pw_name.startswith(PREFIX)]


DACHS_URL = "http://localhost:8080"


def _dachs_up() -> bool:
    try:
        return requests.get(f"{DACHS_URL}/tap/availability", timeout=5).ok
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def gateway():
    """`vanotebook gateway` on free ports, as root, with an API token for the test.

    Its state dir is a fresh folder under /tmp (the users' homes and the shared
    archive are inside it); its unix accounts carry a prefix of this run and are
    deleted at the end.
    """
    from vanotebook.hub._accounts import delete_account

    assert proxy_command() is not None or shutil.which("npm"), "npm proxy unavailable"
    assert os.geteuid() == 0, "the gateway makes unix accounts: run as root (CI does)"
    state = Path(tempfile.mkdtemp(prefix="vanotebook-hub-test-"))
    port = _free_port()
    token = uuid.uuid4().hex
    env = dict(os.environ, VANOTEBOOK_API_TOKEN=token,
               VANOTEBOOK_HUB_API_PORT=str(_free_port()),
               VANOTEBOOK_PROXY_API_PORT=str(_free_port()),
               VANOTEBOOK_PUBLISH_PORT=str(_free_port()),
               VANOTEBOOK_UWS_PORT=str(_free_port()),
               VANOTEBOOK_DASK_GATEWAY_PORT=str(_free_port()),
               VANOTEBOOK_DASK_GATEWAY_PROXY_PORT=str(_free_port()),
               VANOTEBOOK_DASK_GATEWAY_API_PORT=str(_free_port()),
               VANOTEBOOK_SCHEDULER_PORT=str(_free_port()),
               VANOTEBOOK_DASK_DASHBOARD_PORT=str(_free_port()),
               VANOTEBOOK_DASK_INTERNAL_PORT=str(_free_port()),
               VANOTEBOOK_APP_PORT=str(_free_port()), VANOTEBOOK_CULL_TIMEOUT="3600",
               VANOTEBOOK_USER_PREFIX=PREFIX, VANOTEBOOK_SPAWN_CONCURRENCY="2",
               VANOTEBOOK_PROFILES=json.dumps({"small": {"mem": "2G", "cpu": 1}}),
               PYTHONUNBUFFERED="1")
    for key in ("DASK_SCHEDULER_ADDRESS", "VANOTEBOOK_ADMIN_PASSWORD"):
        env.pop(key, None)
    if _dachs_up():
        env["VANOTEBOOK_DACHS_URL"] = DACHS_URL
    log = (state / "gateway.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vanotebook.cli", "gateway", "--port", str(port),
         "--state-dir", str(state), "--workers", "2"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    hub = HubClient(url, token)
    try:
        hub.wait_ready()
        yield {"url": url, "hub": hub, "proc": proc, "state": state,
               "scheduler": f"tls://127.0.0.1:{env['VANOTEBOOK_SCHEDULER_PORT']}"}
    finally:
        if proc.poll() is None:
            children = psutil.Process(proc.pid).children(recursive=True)
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            for p in psutil.wait_procs(children, timeout=30)[1]:
                p.kill()
        log.close()
        shutil.copy(state / "gateway.log", Path(tempfile.gettempdir()) / "vanotebook-hub-test.log")
        for name in _accounts():
            delete_account(name)
        shutil.rmtree(state, ignore_errors=True)


def _admin_password(state: Path) -> str:
    text = (state / "gateway.log").read_text()
    found = re.search(r"the password of admin 'admin' is (\S+)", text)
    assert found, "the gateway did not print the admin's first password"
    return found.group(1)


def _login(url: str, name: str, password: str) -> requests.Session | None:
    """Log in through the hub's login form; the session when it worked, else None."""
    session = requests.Session()
    session.get(f"{url}/hub/login", timeout=30)
    r = session.post(f"{url}/hub/login", data={
        "username": name, "password": password, "_xsrf": session.cookies.get("_xsrf", "")},
        allow_redirects=False, timeout=60)
    return session if r.status_code == 302 and "/hub/login" not in r.headers.get(
        "location", "") else None


def test_users_run_on_the_shared_cluster(gateway):
    code = (
        "import os, vanotebook\n"
        "from distributed import get_worker\n"
        "c = vanotebook.connect()\n"
        "print('ADDR', os.environ['DASK_SCHEDULER_ADDRESS'])\n"
        "print('UID', os.getuid(), os.environ['USER'])\n"
        "print('WORKER_UIDS', sorted(set(c.run(os.getuid).values())))\n"
        "print('WORKERS', sorted(c.run(lambda dask_worker: dask_worker.name).values()))\n"
        "print('RAN_ON', c.submit(lambda x: (get_worker().name, x * 2), 21).result())\n"
        "print('TUTORIALS', os.path.isdir(os.path.expanduser('~/tutorials')))\n"
        "from distributed import get_task_stream\n"
        "import astropy.units as u\n"
        "from vanotebook.sky import demo_sky\n"
        "sky = demo_sky(0, size=0.4, n_catalogue=20000)\n"
        "with get_task_stream(client=c) as ts:\n"
        "    m = vanotebook.mosaic(sky.images('radio'), client=c, chunks=160)\n"
        "    d = vanotebook.detect(m['mosaic'], tile=160, overlap=32, client=c)\n"
        "    left, right = sky.catalogues.to_tables()\n"
        "    pairs = vanotebook.crossmatch(left, right, radius=1 * u.arcsec, client=c)\n"
        "names = {a: w['name'] for a, w in c.scheduler_info(n_workers=-1)['workers'].items()}\n"
        "print('TASK_WORKERS', sorted({names[t['worker']] for t in ts.data}))\n"
        "print('N_TASKS', len(ts.data))\n"
        "print('PAIRS', len(pairs))\n"
        "print('SOURCES', len(d.catalogue))\n"
        "from vanotebook.archive import personal_archive, shared_archive\n"
        "shared, mine = shared_archive(), personal_archive()\n"
        "print('SHARED', shared.path)\n"
        "print('SHARED_RADIO', len(shared.images((281.6, -2.6, 0.3 * u.deg), survey='radio')))\n"
        "mine.add_catalogue('found', d.catalogue)\n"
        "print('MINE', mine.path, len(mine.catalogue('found').cone(281.6, -2.6, 1 * u.deg)))\n"
    )
    hub = gateway["hub"]
    servers = {name: hub.spawn(name) for name in ("alice", "bob")}
    # both users at once: a mosaic, a detection and a cross-match on the shared cluster
    with ThreadPoolExecutor(2) as pool:
        done = {name: pool.submit(hub.execute, url, code, timeout=400)
                for name, url in servers.items()}
        outputs = {name: f.result() for name, f in done.items()}
    import pwd

    dask_uid = pwd.getpwnam(f"{PREFIX}dask").pw_uid
    for name, text in outputs.items():
        # each user's kernel runs as their own account, the workers as the service account
        assert f"UID {pwd.getpwnam(PREFIX + name).pw_uid} {PREFIX}{name}" in text
        assert f"WORKER_UIDS [{dask_uid}]" in text
        assert dask_uid != 0
        assert "WORKERS ['shared-0', 'shared-1']" in text
        assert "RAN_ON ('shared-" in text and ", 42)" in text
        assert "TUTORIALS True" in text
        # the mosaic and the detection ran as tasks on the shared workers
        assert "TASK_WORKERS ['shared-0', 'shared-1']" in text
        n_tasks = int(text.split("N_TASKS ")[1].split()[0])
        assert n_tasks >= 8
        assert int(text.split("SOURCES ")[1].split()[0]) >= 5
        assert int(text.split("PAIRS ")[1].split()[0]) >= 5000  # half of 20,000 have a mate
    # one shared archive (the demo sky), a personal archive in each home
    shared = {t.split("SHARED ")[1].split()[0] for t in outputs.values()}
    assert shared == {str(gateway["state"] / "shared" / "archive")}
    for name, text in outputs.items():
        assert int(text.split("SHARED_RADIO ")[1].split()[0]) >= 1
        mine = text.split("MINE ")[1].split()
        assert mine[0] == str(gateway["state"] / "home" / f"{PREFIX}{name}" / "archive")
        assert int(mine[1]) == int(text.split("SOURCES ")[1].split()[0])
    # both users reached the same scheduler
    addrs = {line for t in outputs.values() for line in t.splitlines() if line.startswith("ADDR")}
    assert len(addrs) == 1
    # each user saw both workers at once (the line, not TASK_WORKERS)
    for text in outputs.values():
        assert "\nWORKERS ['shared-0', 'shared-1']" in text
    # the shared workers warmed up (imported the services, loaded their kernels)
    log = (gateway["state"] / "gateway.log").read_text()
    for worker in ("shared-0", "shared-1"):
        assert f"vanotebook warm-up of {worker} took" in log
    # the users' servers started without the extensions turned off for them
    assert "jupyterlab | extension was successfully loaded" in log
    assert "jupyter_lsp | extension was successfully loaded" not in log
    assert "panel.io.jupyter_server_extension | extension was successfully loaded" not in log


PROBE = """
import os, glob
def can_read(path):
    try:
        with open(path, 'rb') as f:
            f.read(1)
        return True
    except PermissionError:
        return False
def can_list(path):
    try:
        os.listdir(path)
        return True
    except PermissionError:
        return False
"""


def test_users_cannot_read_each_other_or_the_hub(gateway):
    """alice cannot read bob's home, his /tmp files, his kernel connection file or the
    hub's secrets, nor write the shared archive; her token does not open bob's server."""
    hub, state = gateway["hub"], gateway["state"]
    bob = hub.spawn("bob")
    out = hub.execute(bob, (
        "import os, tempfile\n"
        "from ipykernel.connect import get_connection_file\n"
        "open(os.path.expanduser('~/secret.txt'), 'w').write('bob only')\n"
        "fd, tmp = tempfile.mkstemp(prefix='bob-', dir='/tmp'); os.write(fd, b'x'); os.close(fd)\n"
        "plain = '/tmp/bob-plain-' + str(os.getpid()); open(plain, 'w').write('x')\n"
        "print('TMP', tmp, plain)\n"
        "print('CONN', get_connection_file())\n"
        "print('MODES', oct(os.stat(plain).st_mode & 0o777),\n"
        "      oct(os.stat(os.path.expanduser('~')).st_mode & 0o777))\n"))
    tmp, plain = out.split("TMP ")[1].split()[:2]
    assert "MODES 0o600 0o700" in out  # umask 077, private home
    bob_home = state / "home" / f"{PREFIX}bob"
    # a kernel of bob's that stays up while alice looks (execute's own is gone by now)
    r = requests.post(f"{bob}api/kernels", headers=hub.headers, json={"name": "python3"},
                      timeout=60)
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    conn = Path(out.split("CONN ")[1].split()[0]).with_name(f"kernel-{kid}.json")
    wait_for(conn.exists, 60, "bob's kernel connection file")
    secrets = [bob_home / "secret.txt", tmp, plain, conn, state / "jupyterhub_cookie_secret",
               state / "jupyterhub.sqlite", state / "passwords.dbm.dat", state / "ca" / "ca.key",
               state / "dask" / "tls" / "cluster.key", bob_home / ".vanotebook" / "dask" /
               f"{PREFIX}bob.key"]
    for path in secrets:
        assert Path(path).exists(), path
    alice = hub.spawn("alice")
    probe = PROBE + "".join(f"print('READ', {str(p)!r}, can_read({str(p)!r}))\n"
                            for p in secrets)
    probe += (f"print('LIST', can_list({str(bob_home)!r}), can_list({str(state)!r}))\n"
              f"shared = os.environ['VANOTEBOOK_SHARED_ARCHIVE']\n"
              "print('SHARED_READ', can_read(os.path.join(shared, 'index.duckdb')))\n"
              "try:\n"
              "    open(os.path.join(shared, 'mine.txt'), 'w')\n"
              "    print('SHARED_WRITE True')\n"
              "except PermissionError:\n"
              "    print('SHARED_WRITE False')\n"
              "import requests\n"
              "tok = os.environ['JUPYTERHUB_API_TOKEN']\n"
              f"r = requests.get({gateway['url']!r} + '/user/bob/api/kernels',\n"
              "                 headers={'Authorization': 'token ' + tok}, allow_redirects=False)\n"
              "print('BOB_SERVER', r.status_code)\n"
              f"r = requests.get({gateway['url']!r} + '/user/alice/api/kernels',\n"
              "                 headers={'Authorization': 'token ' + tok}, allow_redirects=False)\n"
              "print('OWN_SERVER', r.status_code)\n")
    out = hub.execute(alice, probe)
    for path in secrets:
        assert f"READ {path} False" in out, (path, out)
    assert "LIST False False" in out
    assert "SHARED_READ True" in out and "SHARED_WRITE False" in out
    assert "OWN_SERVER 200" in out  # the token works, so the refusal below is about bob
    assert re.search(r"BOB_SERVER (403|404)", out), out
    requests.delete(f"{bob}api/kernels/{kid}", headers=hub.headers, timeout=60)


def test_no_default_admin_password_and_lockout(gateway):
    url, state = gateway["url"], gateway["state"]
    for guess in ("vanotebook", "admin", "password", ""):  # 4: the 5th failure locks
        assert _login(url, "admin", guess) is None, guess
    password = _admin_password(state)
    admin = _login(url, "admin", password)
    assert admin is not None
    assert admin.get(f"{url}/hub/admin", timeout=30).status_code == 200
    # the first login of a name sets its password; a wrong one never logs in after that
    assert _login(url, "dave", "dave-first-pw") is not None
    assert _login(url, "dave", "not-daves-pw") is None
    assert _login(url, "dave", "dave-first-pw") is not None
    # dave is no admin
    dave = _login(url, "dave", "dave-first-pw")
    assert dave.get(f"{url}/hub/admin", timeout=30, allow_redirects=False).status_code == 403
    # repeated failures are slowed, then the name is locked, right password included
    assert _login(url, "erin", "erin-right-pw") is not None
    t0 = time.monotonic()
    for _ in range(5):
        assert _login(url, "erin", "wrong-password") is None
    assert time.monotonic() - t0 > 15  # 0.5 + 1 + 2 + 4 + 8 s of delay after the failures
    assert _login(url, "erin", "erin-right-pw") is None  # locked
    # password hashes only, readable by root only
    assert (state / "passwords.dbm.dat").stat().st_mode & 0o077 == 0
    assert password.encode() not in (state / "passwords.dbm.dat").read_bytes()


def test_cluster_refuses_clients_without_a_certificate(gateway):
    import ssl

    address = gateway["scheduler"]
    host, port = address.removeprefix("tls://").split(":")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    code = (
        "import sys\n"
        "from distributed import Client\n"
        "for addr in sys.argv[1:]:\n"
        "    try:\n"
        "        Client(addr, timeout=5).close()\n"
        "        print('CONNECTED', addr)\n"
        "    except Exception as exc:\n"
        "        print('REFUSED', addr, type(exc).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code, address, f"tcp://{host}:{port}"],
                         capture_output=True, text=True, timeout=120, env=env).stdout
    assert "CONNECTED" not in out and out.count("REFUSED") == 2, out
    # a TLS client that trusts the cluster's CA but has no certificate of its own
    ctx = ssl.create_default_context(cafile=str(gateway["state"] / "dask" / "tls" / "ca.pem"))
    ctx.check_hostname = False
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)), \
            ctx.wrap_socket(raw) as tls:
        tls.sendall(b"x" * 64)
        tls.recv(1)  # TLS 1.3: the server's refusal arrives with the first read


def _gateway_pids(proc: subprocess.Popen) -> set[int]:
    return {proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))}


def test_dask_dashboard_link_is_the_one_behind_the_hub(gateway):
    """The link a user's client prints opens the dashboard the hub serves (not loopback)."""
    hub = gateway["hub"]
    out = hub.execute(hub.spawn("alice"), "import vanotebook\n"
                                          "print('LINK', vanotebook.connect().dashboard_link)\n")
    assert "LINK /services/dask/status" in out, out


def test_nothing_listens_beyond_loopback(gateway):
    hub = gateway["hub"]
    server = hub.spawn("alice")
    hub.execute(server, "import requests\n"
                        f"print(requests.get({gateway['url']!r} + '/user/alice/dashboards/', "
                        "headers={'Authorization': 'token ' + __import__('os').environ["
                        "'JUPYTERHUB_API_TOKEN']}).status_code)\n")
    pids = _gateway_pids(gateway["proc"])
    listening = [c for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert len(listening) >= 8  # proxy, its API, hub, scheduler, workers, nannies, servers...
    outside = [(c.laddr, psutil.Process(c.pid).cmdline()[:4]) for c in listening
               if c.laddr.ip not in ("127.0.0.1", "::1")]
    assert not outside, outside


def test_memory_limit_kills_only_that_users_work(gateway):
    """alice's process past her 2G limit is killed; bob's mosaic finishes meanwhile."""
    from vanotebook.hub._limits import CgroupLimits

    hub = gateway["hub"]
    alice, bob = hub.spawn("alice"), hub.spawn("bob")
    limits = CgroupLimits(f"{PREFIX}alice", 0, 1)
    assert limits.version is not None, "this machine has no writable cgroups"
    assert (limits.root / "memory" / "vanotebook" / f"{PREFIX}alice" /
            "memory.limit_in_bytes").read_text().strip() == str(2 * 2**30)
    assert (limits.root / "cpu" / "vanotebook" / f"{PREFIX}alice" /
            "cpu.cfs_quota_us").read_text().strip() == "100000"
    before = limits.oom_kills()
    results = {}

    def bob_works():
        results["bob"] = hub.execute(bob, (
            "import numpy as np, vanotebook\n"
            "from vanotebook.sky import demo_sky\n"
            "m = vanotebook.mosaic(demo_sky(0, size=0.3).images('ir24'), "
            "client=vanotebook.connect(), chunks=128)\n"
            "print('BOB', np.isfinite(m['mosaic'].values).sum())\n"), timeout=300)

    t = threading.Thread(target=bob_works)
    t.start()
    out = hub.execute(alice, (
        "import subprocess, sys\n"
        "p = subprocess.run([sys.executable, '-c', 'import numpy as np; "
        "a = np.ones(3 * 2**30 // 8); print(a.sum())'])\n"
        "print('ALICE_RC', p.returncode)\n"), timeout=300)
    t.join(timeout=300)
    assert "ALICE_RC -9" in out, out  # SIGKILL from the OOM killer
    assert limits.oom_kills() > before
    assert int(results["bob"].split("BOB ")[1].split()[0]) > 1000
    # alice's server and kernels live on
    assert "1" in hub.execute(alice, "print(1)")


def test_worker_killed_mid_mosaic_gives_the_right_result(gateway):
    from distributed import Client
    from distributed.security import Security

    hub, state = gateway["hub"], gateway["state"]
    server = hub.spawn("alice")
    code = (
        "import numpy as np, vanotebook\n"
        "from vanotebook.sky import demo_sky\n"
        "tiles = demo_sky(1, size=1.0).images('ir24')\n"
        "local = vanotebook.mosaic(tiles, match_background=False)\n"
        "c = vanotebook.connect()\n"
        "m = vanotebook.mosaic(tiles, client=c, chunks=64, match_background=False)\n"
        "print('SAME', bool(np.allclose(m['mosaic'].values, local['mosaic'].values, "
        "equal_nan=True)))\n")
    tls = state / "dask" / "tls"
    security = Security(tls_ca_file=str(tls / "ca.pem"), tls_client_cert=str(tls / "cluster.pem"),
                        tls_client_key=str(tls / "cluster.key"), require_encryption=True)
    results = {}
    t = threading.Thread(target=lambda: results.setdefault("out", hub.execute(
        server, code, timeout=400)))
    killed = False
    with Client(gateway["scheduler"], security=security, timeout=30) as watcher:
        t.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 300 and t.is_alive():
            names = {a: w["name"] for a, w in
                     watcher.scheduler_info(n_workers=-1)["workers"].items()}
            busy = {names.get(w) for w, tasks in watcher.processing().items() if tasks}
            if "shared-1" in busy and sum(map(len, watcher.processing().values())) > 2:
                victim = next(p for p in psutil.process_iter(["cmdline"])
                              if "shared-1" in " ".join(p.info["cmdline"] or [])
                              and "dask_worker" in " ".join(p.info["cmdline"] or [])
                              and p.pid in _gateway_pids(gateway["proc"]))
                for p in [*victim.children(recursive=True), victim]:
                    p.kill()
                killed = True
                break
            time.sleep(0.05)
    t.join(timeout=400)
    assert killed, "the mosaic never kept shared-1 busy"
    assert "SAME True" in results["out"], results


def test_shared_archive_is_written_only_through_the_publishing_path(gateway):
    """alice publishes; bob reads it but can neither overwrite it nor write the archive."""
    hub = gateway["hub"]
    alice, bob = hub.spawn("alice"), hub.spawn("bob")
    publish = (
        "from astropy.table import Table\n"
        "from vanotebook.hub._publish import publish_catalogue, PublishError\n"
        "t = Table({'ra': [281.5, 281.6, 281.7], 'dec': [-2.6, -2.5, -2.7], "
        "'flux': [1.0, 2.0, 3.0]})\n"
        "try:\n"
        "    print('DONE', publish_catalogue(t[:NROWS], 'alice_sources', overwrite=OVERWRITE))\n"
        "except PublishError as exc:\n"
        "    print('REFUSED', exc)\n")
    out = hub.execute(alice, publish.replace("NROWS", "3").replace("OVERWRITE", "False"))
    assert "DONE {'name': 'alice_sources', 'rows': 3, 'owner': 'alice'}" in out, out
    out = hub.execute(alice, publish.replace("NROWS", "3").replace("OVERWRITE", "False"))
    assert "REFUSED publishing 'alice_sources': 409" in out, out
    out = hub.execute(bob, publish.replace("NROWS", "1").replace("OVERWRITE", "True"))
    assert "REFUSED publishing 'alice_sources': 403" in out and "by alice" in out, out
    demo = publish.replace("NROWS", "1").replace("OVERWRITE", "True")
    out = hub.execute(bob, demo.replace("alice_sources", "left"))
    assert "REFUSED publishing 'left': 403" in out, out  # the demo sky's own
    out = hub.execute(bob, (
        "import astropy.units as u\n"
        "from vanotebook.archive import shared_archive\n"
        "print('ROWS', len(shared_archive().catalogue('alice_sources').cone("
        "281.6, -2.6, 1 * u.deg)))\n"))
    assert "ROWS 3" in out, out
    out = hub.execute(alice, publish.replace("NROWS", "2").replace("OVERWRITE", "True"))
    assert "'rows': 2, 'owner': 'alice'" in out, out


def test_users_publish_to_the_vo_through_the_publishing_service(gateway):
    """alice publishes to the gateway's DaCHS; anyone queries it by TAP; bob cannot write
    DaCHS's inputs himself, and his publication of the same name is his own resource."""
    if not _dachs_up():
        if os.environ.get("VANOTEBOOK_REQUIRE_DACHS") == "1":
            pytest.fail(f"no DaCHS server at {DACHS_URL}")
        pytest.skip(f"no DaCHS server at {DACHS_URL}")
    import pyvo

    hub = gateway["hub"]
    alice, bob = hub.spawn("alice"), hub.spawn("bob")
    publish = (
        "from astropy.table import Table\n"
        "from vanotebook.hub._publish import publish_catalogue, PublishError\n"
        "t = Table({'ra': [281.5, 281.6, 281.7], 'dec': [-2.6, -2.5, -2.7], "
        "'flux': [1.0, 2.0, 3.0]})\n"
        "try:\n"
        f"    print('DONE', publish_catalogue(t[:NROWS], 'src_{RUN}', vo=True))\n"
        "except PublishError as exc:\n"
        "    print('REFUSED', exc)\n")
    out = hub.execute(alice, publish.replace("NROWS", "3"))
    resource = f"gw_alice_src_{RUN}"
    assert f"'table': '{resource}.main'" in out and "'owner': 'alice'" in out, out
    rows = pyvo.dal.TAPService(f"{DACHS_URL}/tap").search(
        f"SELECT flux FROM {resource}.main ORDER BY flux").to_table()
    assert list(rows["flux"]) == [1.0, 2.0, 3.0]
    out = hub.execute(bob, publish.replace("NROWS", "1"))
    assert f"'table': 'gw_bob_src_{RUN}.main'" in out, out
    assert len(pyvo.dal.TAPService(f"{DACHS_URL}/tap").search(
        f"SELECT * FROM {resource}.main").to_table()) == 3  # alice's is untouched
    out = hub.execute(bob, (
        "import os\n"
        "try:\n"
        f"    open('/var/gavo/inputs/{resource}/q.rd', 'a').close()\n"
        "    print('WROTE')\n"
        "except PermissionError:\n"
        "    print('DENIED')\n"
        "print('GROUPS', os.getgroups())\n"))
    assert "DENIED" in out, out
    import grp

    gavo = grp.getgrgid(Path("/var/gavo/inputs").stat().st_gid).gr_gid
    assert str(gavo) not in out.split("GROUPS", 1)[1], out


def _user_token(hub, name: str) -> str:
    r = requests.post(f"{hub.api}/users/{name}/tokens", headers=hub.headers, timeout=30,
                      json={"scopes": ["access:services!service=uws"], "note": "uws test"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_uws_jobs_run_as_their_owner_behind_the_hub(gateway, tmp_path):
    """A detect job through /services/uws/: hub token, run as alice's account, hers only."""
    import pwd

    from vanotebook.sky import demo_sky

    hub = gateway["hub"]
    hub.spawn("alice"), hub.spawn("bob")  # their accounts exist once their servers ran
    jobs = f"{gateway['url']}/services/uws/detect/jobs"
    assert requests.get(jobs, allow_redirects=False, timeout=30).status_code in (302, 403)
    alice = requests.Session()
    alice.headers["Authorization"] = f"token {_user_token(hub, 'alice')}"
    bob = requests.Session()
    bob.headers["Authorization"] = f"token {_user_token(hub, 'bob')}"
    tile = tmp_path / "radio.fits"
    demo_sky(0, size=0.3, n_catalogue=100, n_spectra=10).observe("radio").tiles[0].writeto(tile)
    with tile.open("rb") as f:
        r = alice.post(jobs, data={"PHASE": "RUN"}, files={"image": ("radio.fits", f)},
                       allow_redirects=False, timeout=60)
    assert r.status_code == 303, r.text
    job = gateway["url"] + r.headers["Location"]
    for _ in range(120):
        phase = alice.get(f"{job}/phase", timeout=30).text
        if phase in ("COMPLETED", "ERROR", "ABORTED"):
            break
        alice.get(job, params={"WAIT": 5, "PHASE": phase}, timeout=60)
    assert phase == "COMPLETED", alice.get(f"{job}/error", timeout=30).text
    assert alice.get(f"{job}/results/catalogue", timeout=30).content.startswith(b"<?xml")
    assert bob.get(job, timeout=30).status_code == 404
    job_dir = gateway["state"] / "jobs" / job.rsplit("/", 1)[1]
    owner = pwd.getpwuid(job_dir.stat().st_uid).pw_name
    assert owner == f"{PREFIX}alice" and (job_dir.stat().st_mode & 0o077) == 0
    assert any(pwd.getpwuid(p.stat().st_uid).pw_name == f"{PREFIX}alice"
               for p in (job_dir / "results").rglob("*") if p.is_file())
    assert "on the cluster tls://" in (job_dir / "progress.txt").read_text()

    def run(pipeline, data, files=None):
        r = alice.post(f"{gateway['url']}/services/uws/{pipeline}/jobs", files=files,
                       data={"PHASE": "RUN", **data}, allow_redirects=False, timeout=60)
        assert r.status_code == 303, r.text
        url = gateway["url"] + r.headers["Location"]
        for _ in range(120):
            phase = alice.get(f"{url}/phase", timeout=30).text
            if phase in ("COMPLETED", "ERROR", "ABORTED"):
                break
            alice.get(url, params={"WAIT": 5, "PHASE": phase}, timeout=60)
        assert phase == "COMPLETED", alice.get(f"{url}/error", timeout=30).text
        return url

    # its work runs on the shared cluster (TLS, alice's own certificate in the job)
    url = run("sleep", {"seconds": "1"})
    assert "tasks on the cluster" in alice.get(f"{url}/results/log", timeout=30).text
    # publishing for others goes through the publishing service, as alice
    catalogue = alice.get(f"{job}/results/catalogue", timeout=30).content
    url = run("publish", {"name": "alice_uws", "to": "shared"},
              files={"catalogue": ("sources.vot", catalogue)})
    done = alice.get(f"{url}/results/published", timeout=30).json()
    assert done["owner"] == "alice" and done["name"] == "alice_uws" and done["rows"] >= 1
    out = hub.execute(hub.spawn("bob"), (
        "from vanotebook.archive import shared_archive\n"
        "print('ROWS', shared_archive().catalogue('alice_uws').n_rows)\n"))
    assert f"ROWS {done['rows']}" in out, out


def test_hips_viewer_finds_aladin_lite_in_a_users_server(gateway):
    """view_hips in a user's server uses the gateway's readable copy of Aladin Lite."""
    from vanotebook.archive._viewer import aladin_lite_path

    try:
        root_copy = aladin_lite_path()
    except RuntimeError:
        if os.environ.get("VANOTEBOOK_REQUIRE_BROWSER") == "1":
            raise
        pytest.skip("Aladin Lite is not installed for root")
    hub = gateway["hub"]
    out = hub.execute(hub.spawn("alice"), (
        "import os\n"
        "from vanotebook.archive._viewer import aladin_lite_path\n"
        "p = aladin_lite_path()\n"
        "print('ALADIN', p, len((p / 'aladin.js').read_bytes()))\n"))
    where, size = out.split("ALADIN ", 1)[1].split()[:2]
    assert Path(where).is_relative_to(gateway["state"]), out
    assert int(size) == (root_copy / "aladin.js").stat().st_size


def test_private_cluster_runs_as_its_user_and_is_refused_to_others(gateway):
    """dask-gateway through the hub: alice's own cluster, as her account; bob sees nothing."""
    import pwd

    hub = gateway["hub"]
    alice, bob = hub.spawn("alice"), hub.spawn("bob")
    out = hub.execute(alice, (
        "import os, vanotebook\n"
        "from vanotebook.sky import demo_sky\n"
        "c = vanotebook.connect(private=True, worker_cores=1, worker_memory=1, n_workers=1)\n"
        "c.wait_for_workers(1, timeout=120)\n"
        "print('UIDS', c.run_on_scheduler(os.getuid), sorted(set(c.run(os.getuid).values())))\n"
        "image = demo_sky(0, size=0.5).images('ir24')[0]\n"
        "d = vanotebook.detect(image, tile=128, overlap=32, client=c)\n"
        "local = vanotebook.detect(image, tile=128, overlap=32, client=None)\n"
        "print('SOURCES', len(d.catalogue), len(local.catalogue))\n"
        "from dask_gateway import Gateway\n"
        "print('NAME', Gateway().list_clusters()[0].name)\n"), timeout=400)
    uid = pwd.getpwnam(PREFIX + "alice").pw_uid
    assert f"UIDS {uid} [{uid}]" in out, out
    n, n_local = map(int, out.split("SOURCES ")[1].split()[:2])
    assert n == n_local >= 5
    name = out.split("NAME ")[1].split()[0]
    out = hub.execute(bob, (
        "from dask_gateway import Gateway\n"
        "g = Gateway()\n"
        "print('LIST', [c.name for c in g.list_clusters()])\n"
        "try:\n"
        f"    g.connect({name!r})\n"
        "    print('CONNECTED')\n"
        "except Exception as exc:\n"
        "    print('REFUSED', type(exc).__name__)\n"), timeout=120)
    assert "LIST []" in out and "REFUSED" in out, out


def test_anonymous_requests_are_sent_to_login(gateway):
    url = gateway["url"]
    for path in ("/services/dashboards/", "/services/dask/status", "/user/alice/lab",
                 "/hub/home"):
        r = requests.get(url + path, allow_redirects=False, timeout=10)
        assert r.status_code in (302, 303, 401, 403), (path, r.status_code)
        if r.status_code in (302, 303):
            assert any(k in r.headers["location"] for k in (
                "/hub/login", "/hub/api/oauth2/authorize", "/hub/user-redirect/", "/hub/user/")), \
                r.headers["location"]
    # and following the redirects ends on the login page, not on the content
    for path in ("/services/dashboards/", "/user/alice/dashboards/", "/services/dask/status",
                 "/user/alice/lab"):
        r = requests.get(url + path, timeout=10)
        assert "/hub/login" in r.url, (path, r.url)


def open_dashboards(page, url: str, user: str, password: str) -> list[str]:
    """Log ``user`` in (the first login sets the password), open the dashboards, take the
    first resource profile offered; the profiles offered, once the app is there (none when
    the user's server was already running: the hub goes straight to the app)."""
    page.goto(f"{url}/hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("#login_submit")
    page.wait_for_load_state("networkidle")
    page.goto(f"{url}/services/dashboards/", timeout=60_000)
    # the dashboards are in the user's own server: the hub asks which resources first,
    # unless that server is running (then the redirects end on the app)
    app = re.compile(rf"/user/{user}/dashboards/")
    if app.search(page.url):
        return []
    form = page.locator("select[name=profile]")
    form.wait_for(timeout=60_000)
    offered = form.locator("option").evaluate_all("els => els.map(e => e.value)")
    page.locator("input[type=submit], button[type=submit]").first.click()
    page.wait_for_url(app, timeout=180_000)
    return offered


@pytest.mark.skipif(not Path(CHROMIUM).exists()
                    and os.environ.get("VANOTEBOOK_REQUIRE_BROWSER") != "1",
                    reason="Debian chromium is not installed (CI installs it and requires it)")
def test_login_and_dashboards_app_in_chromium(gateway):
    from playwright.sync_api import sync_playwright

    url = gateway["url"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            offered = open_dashboards(page, url, "carol", "carol-s3cret")
            from vanotebook.cluster import gpu_count

            assert "small" in offered
            assert ("gpu" in offered) == (gpu_count() > 0 and (os.cpu_count() or 1) >= 4)
            assert ("large" in offered) == ((os.cpu_count() or 1) >= 4)
            # Panel renders into shadow DOM: locators pierce it, inner_text does not
            page.get_by_text("Cluster", exact=True).first.click(timeout=60_000)
            page.get_by_text("Dask dashboard").first.wait_for(timeout=60_000)
            page.get_by_text(re.compile(r"2 workers, 2 threads")).first.wait_for(timeout=10_000)
            for worker in ("shared-0", "shared-1"):
                page.get_by_text(worker, exact=True).first.wait_for(timeout=10_000)
            # run a detection from the UI and check what is drawn
            page.get_by_text("Detect", exact=True).first.click(timeout=30_000)
            download = page.locator("button", has_text="Download catalogue (ECSV)").first
            assert download.is_disabled()  # nothing to save before a run (#13 item 11)
            page.locator("button", has_text="Run detection").click(timeout=60_000)
            try:  # the run ends (cold workers: minutes), then its rows are drawn
                page.get_by_text(re.compile(r"\d+ compact sources")).first.wait_for(
                    timeout=300_000)
                page.locator(".tabulator-row").first.wait_for(timeout=30_000)
            except Exception:
                print(_diagnose(page, gateway["state"]))
                raise
            assert download.is_enabled()
            rows = page.locator(".tabulator-row").count()
            drawn = page.evaluate(GLYPH_COUNTS)
            page.screenshot(path=str(Path(tempfile.gettempdir()) / "vanotebook-dashboards.png"))
            # the app runs as carol's account, on a unix socket only she can reach
            import pwd

            apps = [p for p in psutil.process_iter(["cmdline", "uids"])
                    if "vanotebook.hub.app" in " ".join(p.info["cmdline"] or [])]
            carol = [p for p in apps
                     if p.info["uids"].real == pwd.getpwnam(PREFIX + "carol").pw_uid]
            assert len(carol) == 1 and "--unix-socket" in carol[0].info["cmdline"]
            # every user's app (alice's too, from an earlier test) runs as its own user
            assert all(p.info["uids"].real >= 1000 for p in apps)
            assert rows >= 10
            assert drawn.get("Ellipse", 0) >= rows  # one ellipse per source (table is paged)
            assert drawn.get("Image", 0) >= 1
            # the cursor's sky position is read out under the image (#13 items 1, 10)
            canvas = page.locator(".detect-image canvas").first
            canvas.scroll_into_view_if_needed()
            box = canvas.bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5)
            page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5)
            page.get_by_text(re.compile(r"value .* RA \d+h\d+m")).first.wait_for(
                timeout=30_000)
            # the catalogue is downloaded as a file over HTTP, not through the websocket
            download.click()
            link = page.locator(".vn-download-link a").first
            link.wait_for(timeout=30_000)
            href = link.get_attribute("href")
            assert href.startswith("/user/carol/files/vanotebook-downloads/"), href
            got = page.request.get(f"{url}{href}")
            assert got.ok and got.body().startswith(b"# %ECSV"), got.status
            # without carol's login the file is not served (the hub sends to its login)
            other = browser.new_page()
            assert not other.request.get(f"{url}{href}", max_redirects=0).ok
            other.close()
            # a 4501 x 4501 mosaic (81 MB of pixels; 1939^2 closed the websocket, #13 item 1)
            # is shown at screen resolution, zoomed to finer pixels and downloaded as a file
            page.get_by_text("Mosaic", exact=True).first.click(timeout=30_000)
            page.locator("select:has(option[value='pixel scale'])").first.select_option(
                "pixel scale")
            scale = page.locator(".bk-input-group", has_text="Pixel scale arcsec").locator(
                "input").first
            scale.fill("0.8")
            scale.press("Enter")
            page.locator("button", has_text="Run mosaic").first.click(timeout=30_000)
            page.get_by_text(re.compile(r"-> 4501 x 4501 px")).first.wait_for(timeout=300_000)
            canvas = page.locator(".mosaic-image canvas").first
            canvas.scroll_into_view_if_needed()
            canvas.wait_for(timeout=60_000)
            page.wait_for_function(f"() => ({IMAGE_STEP})('mosaic-image') === 5",
                                   timeout=60_000)
            box = canvas.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            for _ in range(12):
                page.mouse.wheel(0, -300)
                page.wait_for_timeout(100)
            page.wait_for_function(f"() => ({IMAGE_STEP})('mosaic-image') < 5",
                                   timeout=60_000)
            page.locator("button", has_text="Download mosaic (FITS)").first.click()
            link = page.locator(".vn-download-link a", has_text="mosaic.fits").first
            link.wait_for(timeout=120_000)
            # read here as a stream, with carol's cookies (Playwright would hold 200 MB)
            cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
            request = urllib.request.Request(f"{url}{link.get_attribute('href')}",
                                             headers={"Cookie": cookie})
            with urllib.request.urlopen(request, timeout=300) as got:
                head = got.read(6)
                size = 6 + sum(len(b) for b in iter(lambda: got.read(1 << 20), b""))
            assert head == b"SIMPLE" and size > 8e7, (head, size)
            assert not page.get_by_text("Connection to the server lost").count()
            # the Jobs tab: a sleep job through the job service, as carol, to COMPLETED
            page.get_by_text("Jobs", exact=True).first.click(timeout=30_000)
            page.locator("select:has(option[value='sleep'])").first.select_option("sleep")
            page.locator("button", has_text="Submit").first.click(timeout=30_000)
            page.get_by_text(re.compile(r"submitted sleep job")).first.wait_for(timeout=60_000)
            for _ in range(60):
                page.locator("button", has_text="Refresh").first.click()
                if page.locator(".tabulator-cell", has_text="COMPLETED").count():
                    break
                page.wait_for_timeout(1000)
            assert page.locator(".tabulator-cell", has_text="COMPLETED").count() >= 1
            # Cross-match: an impossible radius is refused with a message and kept; an absurd
            # match is refused before any work, saying what to change (#13 items 7 and 2)
            page.get_by_text("Cross-match", exact=True).first.click(timeout=30_000)
            radius = page.locator(".bk-input-group", has_text="Radius arcsec").locator(
                "input").first
            radius.fill("-2")
            radius.press("Enter")
            page.get_by_text("expected between 0.01 and 3600, got -2").first.wait_for(
                timeout=30_000)
            radius.fill("3600")
            radius.press("Enter")
            page.wait_for_timeout(500)
            page.get_by_role("button", name="Match", exact=True).click(timeout=30_000)
            page.get_by_text(re.compile(r'refused: a 3600" match')).first.wait_for(
                timeout=60_000)
            # Cubes: the moments run on the shared cluster as carol; the 3-D view draws
            page.get_by_text("Cubes", exact=True).first.click(timeout=30_000)
            page.locator("button", has_text="Compute moments").first.click(timeout=60_000)
            page.get_by_text("maps of a").first.wait_for(timeout=240_000)
            page.get_by_role("button", name="3-D view (drag to rotate)").click(timeout=60_000)
            page.locator(".cube-volume canvas >> visible=true").first.wait_for(timeout=60_000)
            page.screenshot(path=str(Path(tempfile.gettempdir()) / "vanotebook-cubes.png"))
        finally:
            browser.close()


# ------------------------------------------------------------ the dashboards in Chromium (#13)
# One hub user per test (their first login spawns their server), so that no test depends on
# another; every wait is for something on the page or on the scheduler, with a timeout.
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and os.environ.get("VANOTEBOOK_REQUIRE_BROWSER") != "1",
    reason="Debian chromium is not installed (CI installs it and requires it)")

# the text of a Panel pane (its shadow root, bar the styles)
PANE_TEXT = """(el) => Array.from((el.shadowRoot || el).childNodes)
  .filter((n) => !["STYLE", "LINK"].includes(n.nodeName))
  .map((n) => n.textContent).join("").trim()"""

# per legend label (the cross-match's sky plot: "matched", "unmatched"): the points its
# glyphs draw and their fill colour
LEGEND_POINTS = """() => {
  const out = {};
  for (const doc of window.Bokeh.documents) {
    for (const m of doc.all_models) {
      if (m.type !== "LegendItem" || !m.label || m.label.value === undefined) continue;
      for (const r of m.renderers) {
        const [n] = out[m.label.value] || [0];
        out[m.label.value] = [n + r.data_source.get_length(), JSON.stringify(r.glyph.fill_color)];
      }
    }
  }
  return out;
}"""

# the title of the newest figure named ``name`` (a redrawn figure leaves the old one's models)
FIGURE_TITLE = """(name) => {
  let title = null;
  for (const doc of window.Bokeh.documents) {
    for (const m of doc.all_models) {
      if (m.name === name && m.renderers !== undefined && m.title) title = m.title.text;
    }
  }
  return title;
}"""

# the filenames that the page's file inputs hold (what the browser sent)
UPLOADED_NAMES = """() => {
  const out = [];
  for (const doc of window.Bokeh.documents) {
    for (const m of doc.all_models) {
      if (m.type !== "FileInput") continue;
      try { out.push(m.filename); } catch (e) { /* unset: nothing chosen yet */ }
    }
  }
  return out;
}"""

DANGER = re.compile(r"\balert-danger\b")  # the status alert of an error
WAIT = 60_000  # ms: a change on the page after an action (an upload, a click)


@contextlib.contextmanager
def dashboards_pages(gateway, *users: str):
    """Chromium pages of the dashboards app, one per user of ``users`` (each in a browser
    context of its own, logged in by `open_dashboards`, in that order); what each page
    showed is printed when the test fails (`_diagnose`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages = []
        try:
            for user in users:
                pages.append(browser.new_page(viewport={"width": 1400, "height": 1000}))
                open_dashboards(pages[-1], gateway["url"], user, f"{user}-s3cret")
            yield pages
        except BaseException:
            for page in pages:
                print(_diagnose(page, gateway["state"]))
            raise
        finally:
            browser.close()


@contextlib.contextmanager
def dashboards_page(gateway, user: str):
    """A Chromium page of the dashboards app, ``user`` logged in (`dashboards_pages`)."""
    with dashboards_pages(gateway, user) as (page,):
        yield page


def _tab(page, title: str) -> None:
    page.get_by_text(title, exact=True).first.click(timeout=120_000)


def _shown(page, selector: str, **kwargs):
    """The first ``selector`` shown (every tab is in the page, the others hidden)."""
    return page.locator(f"{selector} >> visible=true", **kwargs).first


def _field(page, label: str, tag: str = "input"):
    """The ``tag`` of the shown widget labelled ``label``."""
    return _shown(page, ".bk-input-group", has_text=label).locator(tag).first


def _status(page):
    """The shown tab's status alert (`_help.status_pane`)."""
    return _shown(page, ".vn-status")


def _sources(page):
    """The cross-match's line saying where its catalogues come from."""
    return _shown(page, "pre", has_text=re.compile(r"demo pair|left: "))


def _run(page, button, done: str, timeout: int) -> str:
    """Press ``button``; the status text once the run it started has ended: the ``done``
    message (a regex), or an error or a refusal (the assertion that follows shows it)."""
    status = _status(page).element_handle()
    before = status.evaluate(PANE_TEXT)
    button.click()
    page.wait_for_function(
        f"""([el, before, done]) => {{
          const text = ({PANE_TEXT})(el);
          return text !== before && new RegExp(`^(${{done}}|error|refused)`).test(text);
        }}""", arg=[status, before, done], timeout=timeout)
    return status.evaluate(PANE_TEXT)


def _upload(file_input, name: str, data: bytes) -> None:
    file_input.set_input_files(files=[{"name": name, "mimeType": "application/octet-stream",
                                       "buffer": data}])


def _vizier_csv(table):
    """``table``'s ra/dec (deg) as VizieR writes them, in a CSV (``Seq``, sexagesimal
    ``RAJ2000``/``DEJ2000``), and the positions those strings give (a Table of ra/dec)."""
    import io

    import astropy.units as u
    import numpy as np
    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    c = SkyCoord(table["ra"], table["dec"], unit="deg")
    out = Table({"Seq": np.arange(len(table)),
                 "RAJ2000": c.ra.to_string(u.hourangle, sep=":", precision=4),
                 "DEJ2000": c.dec.to_string(sep=":", precision=3, alwayssign=True)})
    buf = io.StringIO()
    out.write(buf, format="ascii.csv")
    back = SkyCoord(out["RAJ2000"], out["DEJ2000"], unit=(u.hourangle, u.deg))
    return buf.getvalue().encode(), Table({"ra": back.ra.deg, "dec": back.dec.deg})


def _demo_pair_match(step: int) -> tuple[bytes, int]:
    """Every ``step``-th row of the cross-match tab's demo left catalogue as a VizieR CSV,
    and the pairs it makes at 1" with the tab's demo right catalogue (`crossmatch`)."""
    import astropy.units as u

    from vanotebook import crossmatch
    from vanotebook.dashboards import XmatchDashboard

    left, right = XmatchDashboard().catalogues()  # what the page matches an upload with
    csv, positions = _vizier_csv(left[::step])
    return csv, len(crossmatch(positions, right, radius=1 * u.arcsec))


def _cluster(gateway):
    """A client of the shared cluster, with the cluster's own certificate."""
    from distributed import Client
    from distributed.security import Security

    tls = gateway["state"] / "dask" / "tls"
    security = Security(tls_ca_file=str(tls / "ca.pem"), tls_client_cert=str(tls / "cluster.pem"),
                        tls_client_key=str(tls / "cluster.key"), require_encryption=True)
    return Client(gateway["scheduler"], security=security, timeout=30)


def _on_scheduler(client) -> tuple[set[str], set[str]]:
    """The keys of every task the scheduler holds, and its clients' ids (bar the workers'
    own, which connect when a task first asks for one, e.g. to wait on an `Event`)."""
    keys, clients = client.run_on_scheduler(
        lambda dask_scheduler: ([str(k) for k in dask_scheduler.tasks],
                                list(dask_scheduler.clients)))
    return set(keys), {c for c in clients if not c.startswith("Client-worker-")}


@needs_chromium
def test_cancel_frees_the_shared_cluster_in_chromium(gateway):
    """#13 item 2: a mosaic started in the page waits on the shared cluster (both worker
    threads held by another client's tasks); Cancel in the page says "Cancelled" (a
    warning), enables Run again, and the scheduler is left with no task and no client of
    the run, the other client's tasks untouched."""
    from distributed import Event
    from distributed import wait as wait_futures
    from playwright.sync_api import expect

    with _cluster(gateway) as watcher, dashboards_page(gateway, "frank") as page:
        _tab(page, "Mosaic")
        run = _shown(page, "button", has_text="Run mosaic")
        cancel = _shown(page, "button", has_text="Cancel")
        expect(run).to_be_enabled(timeout=WAIT)
        expect(cancel).to_be_disabled(timeout=WAIT)
        # another user's work holds every worker thread: the mosaic's tasks will wait there
        release = Event(f"release-{uuid.uuid4().hex}", client=watcher)
        workers = list(watcher.scheduler_info(n_workers=-1)["workers"])
        held = [watcher.submit(release.wait, 600, workers=[w], allow_other_workers=False,
                               pure=False) for w in workers]
        try:
            wait_for(lambda: all(watcher.run(
                lambda dask_worker: len(dask_worker.state.executing)).values()), 60,
                "the held tasks to run on every worker", interval=0.2)
            keys, clients = _on_scheduler(watcher)
            run.click()
            wait_for(lambda: _on_scheduler(watcher)[0] - keys, 120,
                     "the mosaic's tasks on the scheduler", interval=0.2)
            assert _on_scheduler(watcher)[1] - clients  # the run's own client
            expect(cancel).to_be_enabled(timeout=WAIT)
            expect(run).to_be_disabled(timeout=WAIT)
            cancel.click()
            status = _status(page)
            expect(status).to_have_text("Cancelled", timeout=60_000)
            expect(status).to_have_class(re.compile(r"\balert-warning\b"), timeout=WAIT)
            expect(run).to_be_enabled(timeout=WAIT)
            expect(cancel).to_be_disabled(timeout=WAIT)
            # the run's tasks and client leave the scheduler (they would wait there for
            # the held threads, minutes, if Cancel only changed the page)
            t0, left = time.monotonic(), None
            while time.monotonic() - t0 < 30:
                now = _on_scheduler(watcher)
                left = (now[0] - keys, now[1] - clients)
                if left == (set(), set()):
                    break
                time.sleep(0.2)
            assert left == (set(), set()), f"left on the cluster after Cancel: {left}"
            assert not any(f.done() for f in held)  # the other user's work went on
        finally:
            release.set()
            wait_futures(held, timeout=60)


@needs_chromium
def test_matched_detections_are_drawn_as_matched_in_chromium(gateway):
    """#13 item 5: Detect, then "Cross-match the detections" with the radio survey's
    catalogue: the sky plot draws as many points "matched" (not grey) as there are pairs,
    and the rest of the detections "unmatched"."""
    from playwright.sync_api import expect

    with dashboards_page(gateway, "grace") as page:
        _tab(page, "Detect")
        text = _run(page, _shown(page, "button", has_text="Run detection"),
                    r"\d+ compact sources", 300_000)
        found = re.match(r"(\d+) compact sources", text)
        assert found, text
        n_found = int(found[1])
        _tab(page, "Cross-match")
        _field(page, "Catalogue survey", "select").select_option("radio")
        _shown(page, "button", has_text="Cross-match the detections").click()
        expect(_sources(page)).to_have_text("left: uploaded, right: uploaded", timeout=WAIT)
        radius = _field(page, "Radius arcsec")
        radius.fill("5")
        radius.press("Enter")
        text = _run(page, page.get_by_role("button", name="Match", exact=True), r"\d+ pairs",
                    120_000)
        found = re.match(r"(\d+) pairs", text)
        assert found and int(found[1]) > 0, text
        n_pairs = int(found[1])
        # one matched point per pair (how="nearest": a detection is in one pair at most)
        with contextlib.suppress(Exception):  # the assertions below say what was drawn
            page.wait_for_function(
                f"() => (({LEGEND_POINTS})().matched || [0])[0] === {n_pairs}", timeout=30_000)
        drawn = page.evaluate(LEGEND_POINTS)
        assert drawn["matched"][0] == n_pairs, drawn
        assert drawn["matched"][0] + drawn["unmatched"][0] == n_found, drawn
        assert drawn["matched"][1] != drawn["unmatched"][1], drawn  # another colour


@needs_chromium
def test_bad_uploads_are_named_and_replace_nothing_in_chromium(gateway):
    """#13 item 6: after a good upload, a file of the wrong kind and a broken file get a
    message naming the file and what was wrong, and the good upload stays in use (it is
    not replaced, by the demo data or anything else): in Cross-match, Detect and Mosaic."""
    import io

    from playwright.sync_api import expect

    from vanotebook.sky import demo_sky

    csv, n_pairs = _demo_pair_match(100)
    tile = io.BytesIO()
    demo_sky(0, size=0.5).images("ir24")[1].writeto(tile)
    with dashboards_page(gateway, "heidi") as page:
        _tab(page, "Cross-match")
        status, sources = _status(page), _sources(page)
        left = _field(page, "left catalogue", "input[type=file]")
        _upload(left, "mine.csv", csv)
        expect(status).to_have_text("left catalogue: mine.csv", timeout=WAIT)
        expect(sources).to_have_text("left: uploaded, right: demo", timeout=WAIT)
        for name, data, why in (
                ("notes.txt", b"hello", "expected a FITS, VOTable, ECSV, CSV, TSV or parquet"),
                ("cat.fits", b"not fits at all", "expected a readable catalogue (fits)")):
            _upload(left, name, data)
            expect(status).to_contain_text(f"error reading left upload {name}: left: {why}",
                                           timeout=WAIT)
            expect(status).to_have_class(DANGER, timeout=WAIT)
            shown = status.evaluate(PANE_TEXT)
            assert "/tmp" not in shown and "vanotebook-upload" not in shown, shown
            expect(sources).to_have_text("left: uploaded, right: demo", timeout=WAIT)
        # the match uses mine.csv: its own number of pairs (the demo pair makes thousands)
        text = _run(page, page.get_by_role("button", name="Match", exact=True), r"\d+ pairs",
                    120_000)
        assert text.startswith(f"{n_pairs} pairs"), (n_pairs, text)

        _tab(page, "Detect")
        status = _status(page)
        source = _shown(page, "select:has(option[value='given image'])")
        image = _field(page, "Upload FITS", "input[type=file]")
        _upload(image, "tile1.fits", tile.getvalue())
        expect(status).to_have_text("Image 'tile1.fits' ready; Run detection.", timeout=WAIT)
        expect(source).to_have_value("given image", timeout=WAIT)
        _upload(image, "notes.fits", b"this is not FITS")
        expect(status).to_contain_text("Upload of 'notes.fits' failed: not a FITS file",
                                       timeout=WAIT)
        expect(source).to_have_value("given image")  # not back to the demo survey
        assert page.evaluate(FIGURE_TITLE, "detect-image") == "tile1.fits"  # the image shown

        _tab(page, "Mosaic")
        status = _status(page)
        files = _shown(page, "input[type=file]")
        _upload(files, "tile1.fits", tile.getvalue())
        expect(status).to_have_text("uploaded 1 file(s): tile1.fits", timeout=WAIT)
        _upload(files, "notes.fits", b"this is not FITS")
        expect(status).to_contain_text("error: upload 'notes.fits' is not a usable FITS image",
                                       timeout=WAIT)
        expect(status).to_have_class(DANGER, timeout=WAIT)
        # the mosaic is made of the one uploaded tile (the demo survey has several)
        text = _run(page, _shown(page, "button", has_text="Run mosaic"),
                    r"\d+ tiles -> \d+ x \d+ px", 300_000)
        assert text.startswith("1 tiles -> "), text


@needs_chromium
def test_an_empty_upload_says_so_in_chromium(gateway):
    """#13 item 6: "an empty file gives no message": one in Cross-match and in Detect.
    (It failed here until the dashboards watched the upload's filename too: the browser's
    FileInput gives an empty file to Panel as None, so the value never changed.)"""
    from playwright.sync_api import expect

    with dashboards_page(gateway, "ivan") as page:
        for tab, label, name, want in (
                ("Cross-match", "left catalogue", "empty.csv",
                 "error reading left upload empty.csv: left: expected a catalogue file"),
                ("Detect", "Upload FITS", "empty.fits", "'empty.fits'")):
            _tab(page, tab)
            status = _status(page)
            _upload(_field(page, label, "input[type=file]"), name, b"")
            # the browser sent the file: its input holds the name ...
            page.wait_for_function(f"() => ({UPLOADED_NAMES})().includes({name!r})",
                                   timeout=30_000)
            # ... and the page says what is wrong with it
            expect(status).to_contain_text(want, timeout=30_000)
            expect(status).to_have_class(DANGER, timeout=10_000)  # set with the text


@needs_chromium
def test_a_refused_image_upload_is_shown_as_an_error_in_chromium(gateway):
    """#13 items 6 and 9: Detect's "Upload of 'x' failed: ..." was shown as a green
    success (`_help.message_kind` knew only "error"); now in red."""
    from playwright.sync_api import expect

    with dashboards_page(gateway, "judy") as page:
        _tab(page, "Detect")
        status = _status(page)
        _upload(_field(page, "Upload FITS", "input[type=file]"), "notes.fits",
                b"this is not FITS")
        expect(status).to_contain_text("Upload of 'notes.fits' failed: not a FITS file",
                                       timeout=WAIT)
        expect(status).to_have_class(DANGER, timeout=10_000)  # set with the text


@needs_chromium
def test_vizier_csv_uploads_with_its_columns_picked_in_chromium(gateway):
    """#13 item 8: the cross-match offers CSV; a VizieR CSV (sexagesimal RAJ2000/DEJ2000)
    uploads, the pickers choose RAJ2000/DEJ2000 (any column can be picked), and the match
    finds the pairs that `crossmatch` finds, drawn as matched."""
    from playwright.sync_api import expect

    csv, n_pairs = _demo_pair_match(40)
    assert n_pairs > 50
    with dashboards_page(gateway, "ken") as page:
        _tab(page, "Cross-match")
        left = _field(page, "left catalogue", "input[type=file]")
        assert ".csv" in left.get_attribute("accept").split(",")
        _upload(left, "vizier.csv", csv)
        status = _status(page)
        expect(status).to_have_text("left catalogue: vizier.csv", timeout=WAIT)
        ra, dec = _field(page, "left RA", "select"), _field(page, "left Dec", "select")
        expect(ra).to_have_value("RAJ2000", timeout=WAIT)
        expect(dec).to_have_value("DEJ2000", timeout=WAIT)
        offered = ra.locator("option").evaluate_all("els => els.map(e => e.value)")
        assert offered == ["Seq", "RAJ2000", "DEJ2000"], offered
        text = _run(page, page.get_by_role("button", name="Match", exact=True), r"\d+ pairs",
                    120_000)
        assert text.startswith(f"{n_pairs} pairs"), (n_pairs, text)
        with contextlib.suppress(Exception):  # the assertion below says what was drawn
            page.wait_for_function(
                f"() => (({LEGEND_POINTS})().matched || [0])[0] === {n_pairs}", timeout=30_000)
        drawn = page.evaluate(LEGEND_POINTS)
        assert drawn["matched"][0] == n_pairs, drawn


# the newest Detect figure's view (x and y ranges), and the source ``id``'s pixel position,
# glyph index and the indices its ellipses hold selected (the highlighted ones)
DETECT_VIEW = """(id) => {
  let fig = null, ellipses = null;  // a redrawn figure leaves the old one's models
  for (const doc of window.Bokeh.documents) {
    for (const m of doc.all_models) {
      if (m.name === "detect-image" && m.renderers !== undefined) fig = m;
      if (m.name === "detect-ellipses" && m.glyph !== undefined) ellipses = m;
    }
  }
  if (fig === null || ellipses === null) return null;
  const d = ellipses.data_source.data;
  const k = Array.from(d.id, Number).indexOf(id);
  return {x: [fig.x_range.start, fig.x_range.end], y: [fig.y_range.start, fig.y_range.end],
          index: k, source: k < 0 ? null : [Number(d.x[k]), Number(d.y[k])],
          selected: Array.from(ellipses.data_source.selected.indices)};
}"""


@needs_chromium
def test_a_row_click_zooms_to_its_source_in_chromium(gateway):
    """#13 item 4: after a detection, a click on a table row zooms the image onto that
    row's source (the view holds its pixel position and is under a fifth of the whole
    image) and highlights it (its ellipse, and only it, selected); another row moves both."""
    with dashboards_page(gateway, "olga") as page:
        _tab(page, "Detect")
        text = _run(page, _shown(page, "button", has_text="Run detection"),
                    r"\d+ compact sources", 300_000)
        assert re.match(r"\d+ compact sources", text), text
        rows = page.locator(".detect-table .tabulator-row >> visible=true")
        rows.nth(5).wait_for(timeout=WAIT)
        whole = page.evaluate(DETECT_VIEW, -1)
        assert whole["selected"] == [], whole
        for n in (2, 5):
            cell = rows.nth(n).locator("[tabulator-field=id]")  # the row is wider than
            source_id = int(cell.inner_text())  # the page: its middle is out of sight
            cell.click()
            with contextlib.suppress(Exception):  # the assertions below say what was seen
                page.wait_for_function(
                    f"""() => {{ const v = ({DETECT_VIEW})({source_id});
                        return v !== null && v.selected.length > 0
                               && v.x[1] - v.x[0] < ({whole['x'][1]} - {whole['x'][0]}) / 5
                               && v.x[0] < v.source[0] && v.source[0] < v.x[1]; }}""",
                    timeout=30_000)
            view = page.evaluate(DETECT_VIEW, source_id)
            (x, y), (x0, x1), (y0, y1) = view["source"], view["x"], view["y"]
            assert x0 < x < x1 and y0 < y < y1, (source_id, view)
            assert x1 - x0 < (whole["x"][1] - whole["x"][0]) / 5, (whole, view)
            assert y1 - y0 < (whole["y"][1] - whole["y"][0]) / 5, (whole, view)
            assert view["selected"] == [view["index"]], (source_id, view)


# what a user's server sees of a catalogue of the shared archive (read as that user)
ARCHIVED = """
import hashlib, json
import numpy as np
import pyarrow.dataset as ds
from vanotebook.archive import shared_archive
cat = shared_archive().catalogue(NAME)
rows = ds.dataset(cat.path / 'dataset', format='parquet').to_table()
flux = np.sort(np.asarray(rows.column('flux'), float))
print('ARCHIVED', json.dumps({'rows': cat.n_rows, 'read': rows.num_rows,
                              'folder': cat.path.name,
                              'flux': hashlib.sha256(flux.tobytes()).hexdigest()}))
"""


@needs_chromium
def test_two_users_publishing_the_same_name_keep_their_own_in_chromium(gateway):
    """#13 item 11: two users, each in a browser page of their own, detect on different
    surveys and press Publish, leaving the name the page offers (it was "detections" for
    everyone, so one overwrote the other): both catalogues are in the shared archive, under
    names of their own, with each one's own rows and bytes, owned by each (the publishing
    service's registry), and each page says where its catalogue went. Then the second user
    types the first's name and presses Publish: refused, naming the owner, and the first's
    catalogue is left as it was."""
    from playwright.sync_api import expect

    from vanotebook.hub._publish import _registry

    users, surveys = ("lena", "mike"), ("radio", "ir24")
    archive = gateway["state"] / "shared" / "archive"
    hub = gateway["hub"]

    def archived(user: str, name: str) -> dict:
        out = hub.execute(hub.spawn(user), ARCHIVED.replace("NAME", repr(name)))
        return json.loads(out.split("ARCHIVED", 1)[1])

    with dashboards_pages(gateway, *users) as pages:
        found, names = {}, {}
        for user, page, survey in zip(users, pages, surveys, strict=True):
            _tab(page, "Detect")
            _shown(page, "select:has(option[value='fir250'])").select_option(survey)
            text = _run(page, _shown(page, "button", has_text="Run detection"),
                        r"\d+ compact sources", 300_000)
            got = re.match(r"(\d+) compact sources", text)
            assert got, (user, text)
            found[user] = int(got[1])
        published = {}
        for user, page in zip(users, pages, strict=True):
            names[user] = _field(page, "Publish name").input_value()
            button = _shown(page, "button", has_text="Publish the detections")
            message = _shown(page, "pre", has_text=re.compile(r"^(published|error)"))
            button.click()
            message.wait_for(timeout=WAIT)
            published[user] = message.inner_text()
        for user in users:
            # the shared archive by name, never its path on the server (#13 item 9)
            assert published[user].rstrip() == (
                f"published {found[user]} sources as {names[user]!r} in the shared archive"
            ), published
            assert str(gateway["state"]) not in published[user]
        assert names["lena"] != names["mike"], names
        registry = _registry(archive)
        seen = {user: archived(user, names[user]) for user in users}
        for user in users:
            assert registry.get(names[user]) == user, (user, names, registry)
            assert seen[user]["rows"] == seen[user]["read"] == found[user], (user, found, seen)
        assert seen["lena"]["flux"] != seen["mike"]["flux"], seen
        # mike publishes under lena's name: refused, saying whose it is; hers is untouched
        page = pages[1]
        box = _field(page, "Publish name")
        box.fill(names["lena"])
        box.press("Enter")
        page.wait_for_timeout(500)
        _shown(page, "button", has_text="Publish the detections").click()
        expect(_shown(page, "pre", has_text=re.compile(r"^error"))).to_contain_text(
            "was published by lena", timeout=WAIT)
        assert _registry(archive).get(names["lena"]) == "lena"
        assert archived("lena", names["lena"]) == seen["lena"]


@needs_chromium
def test_dashboards_open_again_while_the_server_runs_in_chromium(gateway):
    """`open_dashboards` when the user's server is already running (no profile form): a
    second browser of the same user goes straight to a working app."""
    from playwright.sync_api import expect

    with dashboards_pages(gateway, "nina", "nina") as pages:
        assert re.search(r"/user/nina/dashboards/", pages[1].url), pages[1].url
        for page in pages:
            _tab(page, "Detect")
            expect(_shown(page, "button", has_text="Run detection")).to_be_enabled(
                timeout=WAIT)


def test_ctrl_c_stops_everything(gateway):
    """Runs last among the gateway tests: Ctrl-C leaves no process behind."""
    proc = gateway["proc"]
    children = psutil.Process(proc.pid).children(recursive=True)
    names = set()
    for p in children:
        # psutil.Error: gone meanwhile, or a child that ended and awaits its parent
        with contextlib.suppress(psutil.Error):
            names.add(" ".join(p.cmdline()[:4]))
    assert any("jupyterhub" in n for n in names)
    assert any("configurable-http-proxy" in n for n in names)
    assert any("singleuser" in n for n in names)  # the users' servers
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=90) == 0
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]


CONFIG_PREFIX = f"vc{uuid.uuid4().hex[:4]}-"  # accounts of the configuration tests


@pytest.fixture
def config_accounts():
    """Delete the service accounts that `configure` makes as root, after the test."""
    import pwd

    from vanotebook.hub._accounts import delete_account

    yield CONFIG_PREFIX
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(CONFIG_PREFIX):
            delete_account(entry.pw_name)


def test_config_real_login_by_default(tmp_path, config_accounts):
    """FirstUse login, admins only by name, their first password hashed before the start."""
    import dbm

    import bcrypt
    from traitlets.config import Config

    c = Config()
    s = configure(c, HubSettings(state_dir=tmp_path, shared_archive=tmp_path / "shared",
                                 user_prefix=CONFIG_PREFIX, admin_users=("boss",),
                                 admin_password="boss-first-pw"))
    assert c.JupyterHub.authenticator_class == "vanotebook.hub._auth.GatewayAuthenticator"
    assert c.Authenticator.admin_users == {"boss"}
    assert c.FirstUseAuthenticator.min_password_length >= 8
    with dbm.open(str(tmp_path / "passwords.dbm")) as db:
        stored = db[b"boss"]
    assert stored != b"boss-first-pw" and bcrypt.checkpw(b"boss-first-pw", stored)
    # the hub's secrets are root's; others may only pass through the state dir
    assert tmp_path.stat().st_mode & 0o777 == 0o711
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o077 == 0
    assert (tmp_path / "ca").stat().st_mode & 0o777 == 0o700
    assert s.user_scheduler_address.startswith("tls://127.0.0.1:")
    # any other authenticator plugs in by name
    c2 = Config()
    configure(c2, HubSettings(state_dir=tmp_path, shared_archive=tmp_path / "shared",
                              user_prefix=CONFIG_PREFIX, authenticator="github"))
    assert c2.JupyterHub.authenticator_class == "github"


def test_config_cluster_is_tls_on_loopback_as_a_service_account(tmp_path, config_accounts):
    import pwd

    from traitlets.config import Config

    c = Config()
    configure(c, HubSettings(state_dir=tmp_path, shared_archive=tmp_path / "shared",
                             user_prefix=CONFIG_PREFIX))
    services = {sv["name"]: sv for sv in c.JupyterHub.services}
    account = pwd.getpwnam(f"{CONFIG_PREFIX}dask")
    assert account.pw_uid != 0
    for name in ("dask-scheduler", "dask-worker-0", "dask-worker-1", "dask"):
        assert services[name]["user"] == f"{CONFIG_PREFIX}dask"
    sched = services["dask-scheduler"]["command"]
    assert sched[sched.index("--protocol") + 1] == "tls"
    assert sched[sched.index("--host") + 1] == "127.0.0.1"
    worker = services["dask-worker-0"]
    assert worker["command"][worker["command"].index("--host") + 1] == "127.0.0.1"
    assert worker["environment"]["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
    key = Path(worker["environment"]["DASK_DISTRIBUTED__COMM__TLS__WORKER__KEY"])
    assert key.stat().st_uid == account.pw_uid and key.stat().st_mode & 0o077 == 0
    assert c.Spawner.environment["DASK_SCHEDULER_ADDRESS"].startswith("tls://127.0.0.1:")
    assert c.Spawner.ip == "127.0.0.1"
    # the dashboards are each user's own (a redirect service, no app process of its own)
    assert "vanotebook.hub._redirect" in services["dashboards"]["command"]


def test_config_profiles_are_limits_and_follow_kubespawner(tmp_path, config_accounts,
                                                           monkeypatch):
    from traitlets.config import Config

    from vanotebook.hub._config import _env_profiles

    monkeypatch.setenv("VANOTEBOOK_PROFILES", '{"small": {"mem": "2G"}, "tiny": {"cpu": 0.5}}')
    profiles = _env_profiles()
    assert profiles["small"]["mem"] == "2G" and profiles["small"]["cpu"] == 1
    assert profiles["tiny"]["cpu"] == 0.5
    monkeypatch.setenv("VANOTEBOOK_PROFILES", "[1, 2]")
    with pytest.raises(VanotebookInputError, match="VANOTEBOOK_PROFILES"):
        _env_profiles()
    monkeypatch.delenv("VANOTEBOOK_PROFILES")
    c = Config()
    configure(c, HubSettings(state_dir=tmp_path, shared_archive=tmp_path / "shared",
                             user_prefix=CONFIG_PREFIX, spawner="kubespawner.KubeSpawner",
                             scheduler_address="tls://dask:8786"))
    limits = {p["slug"]: p["kubespawner_override"] for p in c.KubeSpawner.profile_list}
    assert limits["small"] == {"cpu_limit": 1, "mem_limit": "4G"}
    assert limits["gpu"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}


def test_config_external_cluster_starts_no_workers(tmp_path, config_accounts):
    from traitlets.config import Config

    c = Config()
    settings = HubSettings(state_dir=tmp_path, scheduler_address="tcp://cluster:8786",
                           shared_archive=tmp_path / "shared", user_prefix=CONFIG_PREFIX)
    configure(c, settings)
    names = [s["name"] for s in c.JupyterHub.services]
    assert not any(n.startswith(("dask-scheduler", "dask-worker")) or n == "dask"
                   for n in names)
    assert "dask-gateway" in names  # private clusters stay on
    assert c.Spawner.environment["DASK_SCHEDULER_ADDRESS"] == "tcp://cluster:8786"
    # a plain TCP scheduler outside: no TLS settings that would make users refuse it
    assert c.GatewaySpawner.ca_dir == ""
    # users read the shared archive (created empty where configured) and own ~/archive
    assert c.Spawner.environment["VANOTEBOOK_SHARED_ARCHIVE"] == str(tmp_path / "shared")
    assert (tmp_path / "shared" / "index.duckdb").exists()
    assert c.Spawner.environment["VANOTEBOOK_ARCHIVE"] == "~/archive"
    assert "dashboards" in names and "idle-culler" in names
    user_role = next(r for r in c.JupyterHub.load_roles if r["name"] == "user")
    assert "access:services" in user_role["scopes"]


def test_config_user_servers_start_light(tmp_path, config_accounts):
    """Users' servers: the lighter launcher, slow extensions off, a queued spawner that
    notices a started server at once; workers warm up before they join."""
    from jupyterhub.spawner import LocalProcessSpawner
    from traitlets.config import Config

    c = Config()
    settings = HubSettings(state_dir=tmp_path, shared_archive=tmp_path / "shared",
                           spawn_concurrency=3, user_prefix=CONFIG_PREFIX)
    configure(c, settings)
    assert c.Spawner.cmd[1:] == ["-m", "vanotebook.hub._singleuser"]
    assert "--allow-root" not in c.Spawner.args
    for name in ("jupyter_lsp", "panel.io.jupyter_server_extension"):
        assert f"--ServerApp.jpserver_extensions={name}=False" in c.Spawner.args
    assert issubclass(c.JupyterHub.spawner_class, LocalProcessSpawner)
    assert c.GatewaySpawner.concurrency == 3
    workers = [s for s in c.JupyterHub.services if s["name"].startswith("dask-worker")]
    assert len(workers) == 2
    for w in workers:
        assert w["environment"]["DASK_DISTRIBUTED__WORKER__PRELOAD"] == \
            '["vanotebook.hub._warm"]'
    # everything back on when asked
    c2 = Config()
    configure(c2, HubSettings(state_dir=tmp_path, shared_archive=tmp_path / "shared",
                              disabled_server_extensions=(), user_prefix=CONFIG_PREFIX))
    assert not any("jpserver_extensions" in a for a in c2.Spawner.args)


def test_singleuser_launcher_skips_only_the_slow_format_checker():
    """`python -m vanotebook.hub._singleuser` is jupyterhub-singleuser without
    rfc3987_syntax; jsonschema still checks the other formats."""
    code = (
        "import sys\n"
        "from vanotebook.hub._singleuser import main\n"
        "sys.argv = ['x', '--version']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "import jsonschema\n"
        "checker = jsonschema.Draft7Validator.FORMAT_CHECKER\n"
        "print('LOADED', 'jupyter_server.serverapp' in sys.modules)\n"
        "print('RFC3987', sys.modules.get('rfc3987_syntax', 'absent'))\n"
        "print('DATE', checker.conforms('2026-11-23T10:00:00Z', 'date-time'),\n"
        "      checker.conforms('not a date', 'date-time'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "6." in out.splitlines()[0]  # jupyterhub-singleuser --version
    assert "LOADED True" in out
    assert "RFC3987 None" in out
    assert "DATE True False" in out


def test_warm_up_leaves_nothing_to_compile():
    """After `warm`, a default mosaic and detection of another sky compile no kernel."""
    code = (
        "import sys\n"
        "from numba.core.registry import CPUDispatcher\n"
        "from vanotebook.hub._warm import warm\n"
        "def compiled():\n"
        "    return {f'{n}.{a}': len(o.signatures) for n, m in list(sys.modules.items())\n"
        "            if n.startswith('vanotebook') for a, o in vars(m).items()\n"
        "            if isinstance(o, CPUDispatcher)}\n"
        "warm()\n"
        "before = compiled()\n"
        "import vanotebook\n"
        "from vanotebook.sky import demo_sky\n"
        "sky = demo_sky(1, size=0.3, n_catalogue=100, n_spectra=10)\n"
        "for key in ('radio', 'ir24'):\n"
        "    m = vanotebook.mosaic(sky.images(key), client=None)\n"
        "    vanotebook.detect(m['mosaic'], client=None)\n"
        "after = compiled()\n"
        "print('KERNELS', sum(1 for v in before.values() if v))\n"
        "print('LATE', sorted(k for k, v in after.items() if v != before.get(k, 0)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, check=True).stdout
    assert int(out.split("KERNELS ")[1].split()[0]) >= 8
    assert "LATE []" in out, out


def test_dashboards_app_builds_without_warnings():
    """The app the hub serves: a tab per installed service plus the cluster (strict warnings)."""
    from vanotebook.hub.app import ClusterStatus, build_app

    tabs = build_app()
    titles = [tabs._names[i] for i in range(len(tabs))]
    assert titles[-1] == "Cluster"
    assert "Mosaic" in titles and "Cross-match" in titles and "Cubes" in titles
    assert ("Jobs" in titles) == bool(os.environ.get("VANOTEBOOK_UWS_URL"))
    status = ClusterStatus(None)
    assert status.summary["n_workers"] == 0  # no client: runs in-process
    assert status.__panel__() is not None


def test_linked_workflow_mosaic_detect_crossmatch(tmp_path):
    """Each step's output is offered to the next: mosaic -> detect -> cross-match, and the
    detections are published to the shared archive."""
    import astropy.units as u

    from vanotebook.archive import Archive
    from vanotebook.hub.app import Workflow
    from vanotebook.sky import demo_sky

    flow = Workflow(sky=demo_sky(0, size=0.5, n_catalogue=2000, n_spectra=500),
                    archive=tmp_path / "shared")
    assert flow.publish_detections() is None and flow.published.startswith("error: nothing")
    mosaic, detect, xmatch = (flow.dashboards[k] for k in ("Mosaic", "Detect", "Cross-match"))
    assert flow.detect_on_mosaic.disabled and flow.match_detections.disabled
    mosaic.source = "radio"
    mosaic.start().result()
    assert mosaic.result is not None, mosaic.status
    assert not flow.detect_on_mosaic.disabled
    flow.offer_mosaic()
    image = detect.image()
    assert image.data.shape == mosaic.result["mosaic"].shape
    detect.run(sync=True)
    assert detect.n_sources > 5, detect.status
    assert not flow.match_detections.disabled and not flow.publish_detections_button.disabled
    flow.publish_name = "radio_detections"
    assert flow.publish_detections() is not None, flow.published
    found = Archive(tmp_path / "shared").catalogue("radio_detections").cone(
        281.6, -2.6, 1 * u.deg)
    assert sorted(found["id"]) == sorted(detect.result.catalogue["id"])
    flow.catalogue_survey = "radio"
    flow.offer_detections()
    left, right = xmatch.catalogues()
    assert len(left) == detect.n_sources
    xmatch.radius_arcsec = 5.0
    xmatch.start().result()
    # the radio detections on the radio mosaic find the radio survey's own catalogue
    assert xmatch.n_pairs >= 0.8 * min(len(left), len(right)), xmatch.status
