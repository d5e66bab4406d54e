"""The gateway end to end: a real hub, the npm proxy, real user servers, the shared
Dask cluster, and the dashboards app in headless Chromium (Playwright)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest
import requests

from vanotebook.hub import HubClient, HubSettings, configure, proxy_command

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """`vanotebook gateway` on free ports, with an API token for the test."""
    assert proxy_command() is not None or shutil.which("npm"), "npm proxy unavailable"
    state = tmp_path_factory.mktemp("hub")
    port = _free_port()
    token = uuid.uuid4().hex
    env = dict(os.environ, VANOTEBOOK_API_TOKEN=token,
               VANOTEBOOK_HUB_API_PORT=str(_free_port()),
               VANOTEBOOK_SCHEDULER_PORT=str(_free_port()),
               VANOTEBOOK_DASK_DASHBOARD_PORT=str(_free_port()),
               VANOTEBOOK_DASK_INTERNAL_PORT=str(_free_port()),
               VANOTEBOOK_APP_PORT=str(_free_port()), VANOTEBOOK_CULL_TIMEOUT="3600",
               PYTHONUNBUFFERED="1")
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    log = (state / "gateway.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vanotebook.cli", "gateway", "--port", str(port),
         "--state-dir", str(state), "--workers", "2", "--password", "s3cret"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    hub = HubClient(url, token)
    try:
        hub.wait_ready()
        yield {"url": url, "hub": hub, "proc": proc, "state": state}
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


def test_users_run_on_the_shared_cluster(gateway):
    code = (
        "import os, vanotebook\n"
        "from distributed import get_worker\n"
        "c = vanotebook.connect()\n"
        "print('ADDR', os.environ['DASK_SCHEDULER_ADDRESS'])\n"
        "print('WORKERS', sorted(c.run(lambda dask_worker: dask_worker.name).values()))\n"
        "print('RAN_ON', c.submit(lambda x: (get_worker().name, x * 2), 21).result())\n"
        "print('TUTORIALS', os.path.isdir(os.path.expanduser('~/tutorials')))\n"
        "from distributed import get_task_stream\n"
        "from vanotebook.sky import demo_sky\n"
        "sky = demo_sky(0, size=0.4)\n"
        "with get_task_stream(client=c) as ts:\n"
        "    m = vanotebook.mosaic(sky.images('radio'), client=c, chunks=160)\n"
        "    d = vanotebook.detect(m['mosaic'], tile=160, overlap=32, client=c)\n"
        "names = {a: w['name'] for a, w in c.scheduler_info(n_workers=-1)['workers'].items()}\n"
        "print('TASK_WORKERS', sorted({names[t['worker']] for t in ts.data}))\n"
        "print('N_TASKS', len(ts.data))\n"
        "print('SOURCES', len(d.catalogue))\n"
        "from vanotebook.archive import personal_archive, shared_archive\n"
        "import astropy.units as u\n"
        "shared, mine = shared_archive(), personal_archive()\n"
        "print('SHARED', shared.path)\n"
        "print('SHARED_RADIO', len(shared.images((281.6, -2.6, 0.3 * u.deg), survey='radio')))\n"
        "mine.add_catalogue('found', d.catalogue)\n"
        "print('MINE', mine.path, len(mine.catalogue('found').cone(281.6, -2.6, 1 * u.deg)))\n"
    )
    outputs = {}
    hub = gateway["hub"]
    for name in ("alice", "bob"):
        outputs[name] = hub.execute(hub.spawn(name), code)
    for text in outputs.values():
        assert "WORKERS ['shared-0', 'shared-1']" in text
        assert "RAN_ON ('shared-" in text and ", 42)" in text
        assert "TUTORIALS True" in text
        # the mosaic and the detection ran as tasks on the shared workers
        assert "TASK_WORKERS ['shared-0', 'shared-1']" in text
        n_tasks = int(text.split("N_TASKS ")[1].split()[0])
        assert n_tasks >= 8
        assert int(text.split("SOURCES ")[1].split()[0]) >= 5
    # one shared archive (the demo sky), a personal archive in each home
    shared = {t.split("SHARED ")[1].split()[0] for t in outputs.values()}
    assert shared == {str(gateway["state"] / "shared" / "archive")}
    for name, text in outputs.items():
        assert int(text.split("SHARED_RADIO ")[1].split()[0]) >= 1
        mine = text.split("MINE ")[1].split()
        assert mine[0] == str(gateway["state"] / "home" / name / "archive")
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


def test_anonymous_requests_are_sent_to_login(gateway):
    url = gateway["url"]
    for path in ("/services/dashboards/", "/services/dask/status", "/user/alice/lab",
                 "/hub/home"):
        r = requests.get(url + path, allow_redirects=False, timeout=10)
        assert r.status_code in (302, 303, 401, 403), (path, r.status_code)
        if r.status_code in (302, 303):
            assert "/hub/login" in r.headers["location"] or \
                "/hub/api/oauth2/authorize" in r.headers["location"], r.headers["location"]
    # and following the redirects ends on the login page, not on the content
    r = requests.get(url + "/services/dashboards/", timeout=10)
    assert "/hub/login" in r.url


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
            page.goto(f"{url}/hub/login")
            page.fill("input[name=username]", "carol")
            page.fill("input[name=password]", "s3cret")
            page.click("#login_submit")
            page.wait_for_load_state("networkidle")
            page.goto(f"{url}/services/dashboards/", timeout=60_000)
            # Panel renders into shadow DOM: locators pierce it, inner_text does not
            page.get_by_text("Cluster", exact=True).first.click(timeout=60_000)
            page.get_by_text("Dask dashboard").first.wait_for(timeout=60_000)
            page.get_by_text(re.compile(r"2 workers, 2 threads")).first.wait_for(timeout=10_000)
            for worker in ("shared-0", "shared-1"):
                page.get_by_text(worker, exact=True).first.wait_for(timeout=10_000)
            # run a detection from the UI and check what is drawn
            page.get_by_text("Detect", exact=True).first.click(timeout=30_000)
            page.locator("button", has_text="Run detection").click(timeout=60_000)
            page.locator(".tabulator-row").first.wait_for(timeout=180_000)
            rows = page.locator(".tabulator-row").count()
            drawn = page.evaluate(GLYPH_COUNTS)
            page.screenshot(path=str(gateway["state"] / "dashboards.png"))
            assert rows >= 10
            assert drawn.get("Ellipse", 0) >= rows  # one ellipse per source (table is paged)
            assert drawn.get("Image", 0) >= 1
        finally:
            browser.close()


def test_ctrl_c_stops_everything(gateway):
    """Runs last among the gateway tests: Ctrl-C leaves no process behind."""
    proc = gateway["proc"]
    children = psutil.Process(proc.pid).children(recursive=True)
    names = {" ".join(p.cmdline()[:4]) for p in children}
    assert any("jupyterhub" in n for n in names)
    assert any("configurable-http-proxy" in n for n in names)
    assert any("singleuser" in n for n in names)  # the users' servers
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=90) == 0
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]


def test_config_refuses_shared_password_beyond_localhost(tmp_path):
    from traitlets.config import Config

    from vanotebook import VanotebookInputError

    settings = HubSettings(ip="0.0.0.0", state_dir=tmp_path)
    with pytest.raises(VanotebookInputError, match="VANOTEBOOK_AUTHENTICATOR: expected a real"):
        configure(Config(), settings)


def test_config_external_cluster_starts_no_workers(tmp_path, recwarn):
    from traitlets.config import Config

    c = Config()
    settings = HubSettings(state_dir=tmp_path, scheduler_address="tcp://cluster:8786",
                           shared_archive=tmp_path / "shared")
    configure(c, settings)
    names = [s["name"] for s in c.JupyterHub.services]
    assert not any(n.startswith("dask") for n in names)
    assert c.Spawner.environment["DASK_SCHEDULER_ADDRESS"] == "tcp://cluster:8786"
    # users read the shared archive (created empty where configured) and own ~/archive
    assert c.Spawner.environment["VANOTEBOOK_SHARED_ARCHIVE"] == str(tmp_path / "shared")
    assert (tmp_path / "shared" / "index.duckdb").exists()
    assert c.Spawner.environment["VANOTEBOOK_ARCHIVE"] == "~/archive"
    assert "dashboards" in names and "idle-culler" in names
    user_role = next(r for r in c.JupyterHub.load_roles if r["name"] == "user")
    assert "access:services" in user_role["scopes"]


def test_config_user_servers_start_light(tmp_path, recwarn):
    """Users' servers: the lighter launcher, slow extensions off, a queued spawner that
    notices a started server at once; workers warm up before they join."""
    from jupyterhub.spawner import SimpleLocalProcessSpawner
    from traitlets.config import Config

    c = Config()
    settings = HubSettings(state_dir=tmp_path, shared_archive=tmp_path / "shared",
                           spawn_concurrency=3)
    configure(c, settings)
    assert c.Spawner.cmd[1:] == ["-m", "vanotebook.hub._singleuser"]
    for name in ("jupyter_lsp", "panel.io.jupyter_server_extension"):
        assert f"--ServerApp.jpserver_extensions={name}=False" in c.Spawner.args
    assert issubclass(c.JupyterHub.spawner_class, SimpleLocalProcessSpawner)
    workers = [s for s in c.JupyterHub.services if s["name"].startswith("dask-worker")]
    assert len(workers) == 2
    for w in workers:
        assert w["environment"]["DASK_DISTRIBUTED__WORKER__PRELOAD"] == \
            '["vanotebook.hub._warm"]'
    # everything back on when asked
    c2 = Config()
    configure(c2, HubSettings(state_dir=tmp_path, shared_archive=tmp_path / "shared",
                              disabled_server_extensions=()))
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


def test_warm_up_runs_the_services_in_process():
    from vanotebook.hub._warm import warm

    assert warm() > 0


def test_dashboards_app_builds_without_warnings():
    """The app the hub serves: a tab per installed service plus the cluster (strict warnings)."""
    from vanotebook.hub.app import ClusterStatus, build_app

    tabs = build_app()
    titles = [tabs._names[i] for i in range(len(tabs))]
    assert titles[-1] == "Cluster"
    assert "Mosaic" in titles and "Cross-match" in titles
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
