"""The job service as its own process, users known by bearer token, and UWS helpers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

UWS_XSD = Path("/usr/lib/python3/dist-packages/gavo/resources/schemata/UWS.xsd")
NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, state: Path, slots: int = 2, env: dict | None = None,
                 users: list[str] | None = None) -> None:
        self.state, self.slots = state, slots
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tokens = state.parent / "tokens.json"
        tokens.write_text(json.dumps({f"tok-{u}": u for u in users or ["alice", "bob"]}))
        self.tokens = tokens
        self.proc = None

    def start(self) -> Service:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vanotebook.jobs._service", "--port", str(self.port),
             "--state", str(self.state), "--slots", str(self.slots), "--tokens",
             str(self.tokens)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=self.env)
        for _ in range(200):
            try:
                if requests.get(f"{self.url}/availability", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("the job service did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def session(self, user: str) -> requests.Session:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer tok-{user}"
        return s

    def run(self, pipeline: str, data: dict, files=None, *, user: str = "alice",
            timeout: float = 300) -> tuple[str, requests.Session]:
        """Submit a job with PHASE=RUN, wait for it to end; its URL (it must complete)."""
        s = self.session(user)
        r = s.post(f"{self.url}/{pipeline}/jobs", data={"PHASE": "RUN", **data}, files=files,
                   allow_redirects=False)
        assert r.status_code == 303, r.text
        job = self.url + r.headers["Location"]
        phase = wait_final(s, job, timeout=timeout)
        assert phase == "COMPLETED", (phase, s.get(f"{job}/error").text)
        return job, s


@pytest.fixture
def service(tmp_path):
    svc = Service(tmp_path / "state").start()
    yield svc
    svc.stop()


def doc(response):
    from xml.etree import ElementTree as ET

    return ET.fromstring(response.content)


def phase_of(session, url) -> str:
    return session.get(f"{url}/phase").text


def wait_final(session, url, timeout=120) -> str:
    end = time.time() + timeout
    while time.time() < end:
        phase = phase_of(session, url)
        if phase in ("COMPLETED", "ERROR", "ABORTED"):
            return phase
        session.get(url, params={"WAIT": 5, "PHASE": phase})
    raise AssertionError(f"job still {phase}")


def validate(text: bytes) -> None:
    if not UWS_XSD.exists():
        if os.environ.get("VANOTEBOOK_REQUIRE_DACHS") == "1":
            raise AssertionError(f"no UWS schema at {UWS_XSD}")
        return
    from lxml import etree

    class Local(etree.Resolver):  # the schemas DaCHS ships beside UWS.xsd, not the web
        def resolve(self, url, pubid, context):
            return self.resolve_filename(str(UWS_XSD.parent / url.rsplit("/", 1)[-1]), context)

    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(Local())
    schema = etree.XMLSchema(etree.parse(str(UWS_XSD), parser))
    doc = etree.fromstring(text)
    assert schema.validate(doc), schema.error_log


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    from vanotebook.sky import demo_sky

    path = tmp_path_factory.mktemp("tile") / "radio.fits"
    demo_sky(0, size=0.3, n_catalogue=100, n_spectra=10).observe("radio").tiles[0].writeto(path)
    return path




class UWS:
    """The helpers above, for the tests (``uws.doc(...)``, ``uws.Service(...)``)."""

    NS = NS
    Service = Service
    doc = staticmethod(doc)
    phase_of = staticmethod(phase_of)
    wait_final = staticmethod(wait_final)
    validate = staticmethod(validate)
    free_port = staticmethod(free_port)


@pytest.fixture(scope="session")
def uws():
    return UWS
