"""A job's SIGTERM (ABORT) frees the cluster: its client is closed, then it ends with 143.

The handler is called as the signal would call it, in this process, with the
job's client on a real one-thread LocalCluster holding a task of the job; the
process's exit is replaced by a recorder.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from distributed import Client, LocalCluster

from vanotebook.jobs import _run

_RELEASE = threading.Event()  # ends the job's task once the test is done


def _held() -> None:
    _RELEASE.wait(60)


class _Exited(BaseException):
    """What the replaced `os._exit` raises, so the handler's caller goes on."""


@pytest.fixture
def exits(monkeypatch):
    """The codes `os._exit` was called with; the SIGTERM handler is restored after."""
    codes: list[int] = []

    def record(code: int) -> None:
        codes.append(code)
        raise _Exited

    monkeypatch.setattr(os, "_exit", record)
    old = signal.getsignal(signal.SIGTERM)
    try:
        yield codes
    finally:
        signal.signal(signal.SIGTERM, old)


def _until(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_sigterm_closes_the_jobs_client_and_frees_the_cluster(exits):
    """Mutation: the old handler's cancel by ``client.futures`` (keys) without the close
    leaves the task on the scheduler, and fails it."""
    _RELEASE.clear()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster:
        client = Client(cluster)  # the job's client
        try:
            future = client.submit(_held, pure=False)
            assert _until(lambda: future.key in cluster.scheduler.tasks and
                          cluster.scheduler.tasks[future.key].state == "processing", 30)
            _run._cancel_on_term(client)
            with pytest.raises(_Exited):
                signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
            assert exits == [143]
            assert _until(lambda: not cluster.scheduler.tasks, 10), cluster.scheduler.tasks
            assert client.status == "closed"
        finally:
            _RELEASE.set()
            client.close()  # closed already, unless the handler failed


def test_sigterm_before_the_cluster_ends_the_job(exits):
    _run._cancel_on_term(None)
    with pytest.raises(_Exited):
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    assert exits == [143]
