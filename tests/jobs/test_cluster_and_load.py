"""Jobs on a real Dask cluster (ABORT frees its workers, durations end them), and load.

The cluster is a `distributed.LocalCluster` of worker processes on
loopback; the job service names it in ``DASK_SCHEDULER_ADDRESS``, so each
job's process joins it and runs its work there as futures.
"""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    lc = LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0")
    client = Client(lc)
    yield client
    client.close()
    lc.close()


@pytest.fixture(scope="module")
def svc(cluster, tmp_path_factory, uws):
    service = uws.Service(tmp_path_factory.mktemp("cl") / "state", slots=2,
                          env={"DASK_SCHEDULER_ADDRESS": cluster.scheduler.address}).start()
    yield service
    service.stop()


def _busy(client) -> int:
    """Tasks the scheduler holds (of any client but ours) and the workers run."""
    def count(dask_scheduler):
        return len(dask_scheduler.tasks)

    return client.run_on_scheduler(count) + sum(len(v) for v in client.processing().values())


def test_a_job_runs_its_work_on_the_cluster(svc, cluster, uws):
    job, s = svc.run("sleep", {"seconds": "2"})
    assert "tasks on the cluster" in s.get(f"{job}/results/log").text
    # the job's process was a client of this scheduler while it ran
    assert "on the cluster tcp://127.0.0.1" in (svc.state / job.rsplit("/", 1)[1] /
                                                "progress.txt").read_text()


def test_abort_cancels_the_work_and_frees_the_workers(svc, cluster, uws):
    s = svc.session("alice")
    r = s.post(f"{svc.url}/sleep/jobs", data={"PHASE": "RUN", "seconds": "120"},
               allow_redirects=False)
    job = svc.url + r.headers["Location"]
    end = time.time() + 60
    while time.time() < end and "tasks done" not in s.get(job).text:
        time.sleep(0.2)
    assert _busy(cluster) > 0, "the job never put work on the cluster"
    r = s.post(f"{job}/phase", data={"PHASE": "ABORT"})
    assert uws.phase_of(s, job) == "ABORTED"
    end = time.time() + 15
    while time.time() < end and _busy(cluster):
        time.sleep(0.2)
    assert _busy(cluster) == 0, "ABORT left work on the cluster"


def test_an_overrun_ends_in_error_and_frees_the_workers(svc, cluster, uws):
    s = svc.session("alice")
    r = s.post(f"{svc.url}/sleep/jobs", data={"PHASE": "RUN", "seconds": "120",
                                              "EXECUTIONDURATION": "4"}, allow_redirects=False)
    job = svc.url + r.headers["Location"]
    assert uws.wait_final(s, job, timeout=60) == "ERROR"
    assert "execution duration of 4 s exceeded" in s.get(f"{job}/error").text
    end = time.time() + 15
    while time.time() < end and _busy(cluster):
        time.sleep(0.2)
    assert _busy(cluster) == 0


def test_five_users_fifty_jobs_each_at_once(tmp_path, uws):
    """250 jobs submitted together by 5 users: all complete, none lost, none run twice."""
    service = uws.Service(tmp_path / "state", slots=4, users=[f"u{i}" for i in range(5)],
                          env={"DASK_SCHEDULER_ADDRESS": ""}).start()
    try:
        urls: dict[str, list[str]] = {}
        errors: list[str] = []

        def submit(user: str) -> None:
            s = service.session(user)
            mine = []
            for i in range(50):
                r = s.post(f"{service.url}/sleep/jobs", data={
                    "PHASE": "RUN", "seconds": "0.05", "RUNID": f"{user}-{i}"},
                    allow_redirects=False)
                if r.status_code != 303:
                    errors.append(r.text)
                    continue
                mine.append(service.url + r.headers["Location"])
            urls[user] = mine

        threads = [threading.Thread(target=submit, args=(f"u{i}",)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and sum(map(len, urls.values())) == 250
        for user, mine in urls.items():
            s = service.session(user)
            phases = [uws.wait_final(s, u, timeout=600) for u in mine]
            assert phases == ["COMPLETED"] * 50, user
            listed = uws.doc(s.get(f"{service.url}/sleep/jobs")).findall("uws:jobref", uws.NS)
            assert len(listed) == 50  # each sees exactly their own
        # none ran twice: each job's folder shows one start and one outcome
        runs = [(service.state / u.rsplit("/", 1)[1] / "runs.txt").read_text().split()
                for mine in urls.values() for u in mine]
        assert [len(r) for r in runs] == [1] * 250
        import sqlite3

        con = sqlite3.connect(service.state / "jobs.sqlite")
        started = con.execute("SELECT COUNT(*), COUNT(DISTINCT id), COUNT(DISTINCT run_id) "
                              "FROM jobs WHERE started IS NOT NULL").fetchone()
        con.close()
        assert started == (250, 250, 250)
    finally:
        service.stop()
