"""The scenarios of uws-validator (kristinriebe/uws-validator, features/*.feature), in pytest.

Its user-defined jobs are the ``sleep`` pipeline: "veryshort" 0.1 s, "short"
3 s, "long" 60 s, and "error" (``fail=true``, which ends in ERROR). Waits of
the feature files (10 s) are 2 s here; what is checked is the same: a WAIT
on an active phase lasts its time, on an inactive or mismatching phase it
returns at once, and it returns at the phase change. Every document is
validated against the UWS 1.1 schema.
"""

from __future__ import annotations

import time

import pytest
import requests

JOBS = {"veryshort": {"seconds": "0.1"}, "short": {"seconds": "3"},
        "long": {"seconds": "60"}, "error": {"fail": "true"}}
WAIT = 2.0


@pytest.fixture(scope="module")
def svc(tmp_path_factory, uws):
    service = uws.Service(tmp_path_factory.mktemp("validator") / "state", slots=3).start()
    yield service
    service.stop()


@pytest.fixture
def client(svc, uws):
    class Client:
        base = f"{svc.url}/sleep/jobs"
        session = svc.session("alice")

        def create(self, kind: str, run: bool = False) -> str:
            data = dict(JOBS[kind], **({"PHASE": "RUN"} if run else {}))
            r = self.session.post(self.base, data=data)  # follows the 303
            assert r.status_code == 200, r.text
            uws.validate(r.content)
            return r.url

        def element(self, response, name: str):
            return uws.doc(response).find(f"uws:{name}", uws.NS)

        def phase(self, response) -> str:
            return self.element(response, "phase").text

        def timed(self, url: str, **params) -> tuple[requests.Response, float]:
            t0 = time.monotonic()
            r = self.session.get(url, params=params)
            return r, time.monotonic() - t0

    return Client()


# ----------------------------------------------------------------------------- account
def test_user_can_access_the_endpoint(client, svc):
    r = client.session.get(client.base)
    assert r.status_code == 200
    assert requests.get(client.base).status_code == 403  # and nobody else can


# ----------------------------------------------------------------------------- job basics
def test_create_pending_job(client, uws):
    r = client.session.get(client.create("veryshort"))
    root = uws.doc(r)
    assert root.tag == f"{{{uws.NS['uws']}}}job" and root.get("version") == "1.1"
    for name in ("jobId", "ownerId", "executionDuration"):
        assert client.element(r, name) is not None, name
    assert client.phase(r) == "PENDING"


def test_create_job_and_remove(client, uws):
    url = client.create("veryshort")
    r = client.session.delete(url)  # 303 to the job list, followed
    assert r.status_code == 200 and uws.doc(r).tag == f"{{{uws.NS['uws']}}}jobs"
    uws.validate(r.content)
    assert client.session.get(url).status_code == 404
    url = client.create("veryshort")  # and by ACTION=DELETE
    assert client.session.post(url, data={"ACTION": "DELETE"}).status_code == 200
    assert client.session.get(url).status_code == 404


def test_create_job_and_abort(client):
    url = client.create("veryshort")
    r = client.session.post(f"{url}/phase", data={"PHASE": "ABORT"})
    assert r.status_code == 200
    assert client.phase(r) == "ABORTED" and client.element(r, "endTime").text


def test_create_job_and_start(client):
    url = client.create("veryshort")
    r = client.session.post(f"{url}/phase", data={"PHASE": "RUN"})
    assert r.status_code == 200 and client.phase(r) in ("QUEUED", "EXECUTING", "COMPLETED")


def test_create_and_start_in_one_step(client):
    r = client.session.get(client.create("veryshort", run=True))
    assert client.phase(r) in ("QUEUED", "EXECUTING", "COMPLETED")


def test_create_a_job_with_error(client, uws):
    url = client.create("error")
    client.session.post(f"{url}/phase", data={"PHASE": "RUN"})
    assert uws.wait_final(client.session, url) == "ERROR"
    r = client.session.get(url)
    uws.validate(r.content)
    assert client.element(r, "startTime").text and client.element(r, "endTime").text
    assert client.session.get(f"{url}/error").text.startswith("fail: expected false")


def test_create_a_long_job_and_abort(client):
    url = client.create("long", run=True)
    for _ in range(100):
        if client.session.get(f"{url}/phase").text == "EXECUTING":
            break
        time.sleep(0.1)
    client.session.post(f"{url}/phase", data={"PHASE": "ABORT"})
    time.sleep(1)
    r = client.session.get(url)
    assert client.phase(r) == "ABORTED" and client.element(r, "endTime").text


# ----------------------------------------------------------------------------- WAIT
def test_no_wait_for_a_job_in_an_inactive_phase(client):
    url = client.create("veryshort")
    client.session.post(f"{url}/phase", data={"PHASE": "ABORT"})
    _, took = client.timed(url, WAIT="100")
    assert took < 1.0


def test_wait_for_a_job_in_an_active_phase(client):
    url = client.create("veryshort")  # PENDING is active: the wait lasts its time
    r, took = client.timed(url, WAIT=str(WAIT))
    assert WAIT <= took < WAIT + 1.5 and client.phase(r) == "PENDING"


@pytest.mark.parametrize("phase", ["COMPLETED", "ERROR", "ABORTED", "ARCHIVED", "HELD",
                                   "SUSPENDED", "UNKNOWN"])
def test_no_wait_with_a_given_inactive_phase(client, phase):
    url = client.create("veryshort")
    _, took = client.timed(url, WAIT=str(WAIT), PHASE=phase)
    assert took < 1.0


def test_wait_with_the_given_active_phase(client):
    url = client.create("veryshort")
    _, took = client.timed(url, WAIT=str(WAIT), PHASE="PENDING")
    assert WAIT <= took < WAIT + 1.5


@pytest.mark.parametrize("phase", ["EXECUTING", "QUEUED"])
def test_no_wait_with_a_mismatching_phase(client, phase):
    url = client.create("veryshort")  # PENDING, asked to wait while QUEUED/EXECUTING
    _, took = client.timed(url, WAIT=str(WAIT), PHASE=phase)
    assert took < 1.0


def test_wait_returns_at_the_phase_change(client):
    url = client.create("short", run=True)
    client.timed(url, WAIT="120", PHASE="QUEUED")
    r, took = client.timed(url, WAIT="30", PHASE="EXECUTING")
    assert 0.5 < took < 30 and client.phase(r) == "COMPLETED"


def test_wait_forever_is_bounded_by_the_phase_change(client, svc):
    url = client.create("veryshort")
    import threading

    # WAIT=-1 waits until the phase changes (here: a RUN sent from elsewhere)
    threading.Timer(1.5, lambda: svc.session("alice").post(
        f"{url}/phase", data={"PHASE": "RUN"})).start()
    r, took = client.timed(url, WAIT="-1")
    assert 1.0 < took < 10 and client.phase(r) != "PENDING"


# ----------------------------------------------------------------------------- job list
def _refs(client, uws, response):
    return uws.doc(response).findall("uws:jobref", uws.NS)


def test_job_list_structure(client, uws):
    client.create("veryshort")
    client.create("veryshort", run=True)
    url = client.create("veryshort")
    client.session.post(f"{url}/phase", data={"PHASE": "ABORT"})
    client.create("error", run=True)
    r = client.session.get(client.base)
    assert r.status_code == 200 and "xml" in r.headers["Content-Type"]
    root = uws.doc(r)
    assert root.tag == f"{{{uws.NS['uws']}}}jobs" and root.get("version") == "1.1"
    uws.validate(r.content)
    refs = _refs(client, uws, r)
    assert refs and all(ref.get("id") for ref in refs)
    phases = [ref.find("uws:phase", uws.NS).text for ref in refs]
    assert set(phases) <= {"PENDING", "QUEUED", "EXECUTING", "COMPLETED", "ERROR", "ABORTED",
                           "HELD", "SUSPENDED", "UNKNOWN"}  # never ARCHIVED unasked


@pytest.mark.parametrize("phases", [["PENDING"], ["COMPLETED"], ["ERROR"], ["ABORTED"],
                                    ["ARCHIVED"], ["UNKNOWN"], ["PENDING", "ERROR"],
                                    ["COMPLETED", "ERROR", "ABORTED"]])
def test_phase_filters(client, uws, phases):
    client.create("veryshort")
    r = client.session.get(client.base, params=[("PHASE", p) for p in phases])
    assert r.status_code == 200
    uws.validate(r.content)
    got = {ref.find("uws:phase", uws.NS).text for ref in _refs(client, uws, r)}
    assert got <= set(phases)


@pytest.mark.parametrize("phase", ["SUCCESS", "pendinggg", "somenonsense", "1345"])
def test_phase_filter_with_an_invalid_phase(client, phase):
    assert client.session.get(client.base, params={"PHASE": phase}).status_code == 400


def _created(client, uws, response):
    return [ref.find("uws:creationTime", uws.NS).text for ref in _refs(client, uws, response)]


@pytest.mark.parametrize("last", [1, 3, 120])
def test_last_filter_newest_first(client, uws, last):
    for _ in range(4):
        client.create("veryshort")
    r = client.session.get(client.base, params={"LAST": str(last)})
    assert r.status_code == 200
    times = _created(client, uws, r)
    assert 1 <= len(times) <= last and times == sorted(times, reverse=True)


@pytest.mark.parametrize("last", ["-1", "-254", "sometext", "0"])
def test_last_filter_with_invalid_values(client, last):
    assert client.session.get(client.base, params={"LAST": last}).status_code == 400


@pytest.mark.parametrize("after", ["2015-10-26T09:15:35", "2015-10-26 09:00", "2015-10-26",
                                   "2015", "20151026", "2015-10-26T09:15:35Z"])
def test_after_filter_with_valid_formats(client, uws, after):
    client.create("veryshort")
    r = client.session.get(client.base, params={"AFTER": after})
    assert r.status_code == 200 and _created(client, uws, r)


@pytest.mark.parametrize("after", ["2015-26-10", "sometext", "2015-10-26T09:00+01:00"])
def test_after_filter_with_invalid_values(client, after):
    r = client.session.get(client.base, params={"AFTER": after})
    assert r.status_code == 400 and r.text.startswith("AFTER: expected"), r.text


def test_after_filter_with_a_creation_time_from_the_list(client, uws):
    for _ in range(3):
        client.create("veryshort")
    times = _created(client, uws, client.session.get(client.base))
    pick = sorted(times)[-2]
    r = client.session.get(client.base, params={"AFTER": pick})
    later = _created(client, uws, r)
    assert later and all(t > pick for t in later)
    both = client.session.get(client.base, params={"AFTER": pick, "LAST": "1",
                                                   "PHASE": "PENDING"})
    assert len(_created(client, uws, both)) == 1
