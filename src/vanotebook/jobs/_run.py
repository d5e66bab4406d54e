"""Run one job in its own process: ``python -m vanotebook.jobs._run <job folder>``.

The service starts it in a new process group (so ABORT and an overrun end
it and everything it started); it reads ``job.json`` (pipeline, parameters,
the modules that declared pipelines), joins the cluster its environment
names (``DASK_SCHEDULER_ADDRESS``; the work then runs there as futures),
writes progress lines to ``progress.txt`` and, at the end, ``outcome.json``:
the result files, or the error a user can act on. On SIGTERM (ABORT) it
closes its client before it ends: the scheduler drops the job's tasks, so the
workers are freed.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def _join_cluster(say):
    """The shared cluster's client when the environment names one, else None."""
    import os

    from ..cluster import SCHEDULER_ENV, connect

    if not os.environ.get(SCHEDULER_ENV):
        return None
    client = connect()
    n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
    say(f"on the cluster {client.scheduler.address} ({n} workers)")
    return client


def _cancel_on_term(client) -> None:
    """SIGTERM: close this job's client, which frees the cluster, then end (status 143).

    Closing the client makes the scheduler release every key it held, so the
    job's queued and running tasks leave the cluster. ``client.futures`` holds
    keys, not futures: ``client.cancel`` given them cancelled nothing.
    """
    import os
    import signal

    def stop(signum, frame):
        try:
            if client is not None:
                client.close(timeout=2)
        finally:
            os._exit(143)

    signal.signal(signal.SIGTERM, stop)


def main(folder: str) -> int:
    import os
    from importlib import import_module

    from .._errors import VanotebookInputError
    from ._registry import PIPELINES

    work = Path(folder)
    spec = json.loads((work / "job.json").read_text())
    progress = work / "progress.txt"
    with (work / "runs.txt").open("a") as f:  # one line per start: a job never runs twice
        f.write(f"{os.getpid()}\n")
    for module in spec.get("plugins", []):
        import_module(module)

    def say(message: str) -> None:
        with progress.open("a") as f:
            f.write(message.replace("\n", " ")[:500] + "\n")

    outcome: dict
    client = None
    _cancel_on_term(None)
    try:
        pipeline = PIPELINES[spec["pipeline"]]
        params = pipeline.parse(spec["parameters"])
        client = _join_cluster(say)
        _cancel_on_term(client)
        say("reading the inputs")
        params = pipeline.resolve(params, work)
        (work / "results").mkdir(exist_ok=True)
        results = pipeline.run(params, work / "results", say)
        outcome = {"results": {k: str(Path(p).resolve()) for k, p in results.items()}}
    except VanotebookInputError as exc:  # the user can act on it: say it as it is
        outcome = {"error": str(exc)}
    except Exception as exc:
        traceback.print_exc()
        outcome = {"error": f"{type(exc).__name__}: {exc}"}
    if client is not None:
        client.close()
    tmp = work / ".outcome.json"
    tmp.write_text(json.dumps(outcome))
    tmp.replace(work / "outcome.json")
    return 0


def warm(module: str | None = None) -> None:
    """Pay a fresh process's one-time costs before a job arrives.

    ``module``'s ``warm()`` when given (the gateway's runs the services'
    numba kernels on the demo sky); else the services are imported and a
    small detection runs in-process (scipy, scikit-learn, kernels, the
    classifier). Nothing here may start JAX, whose thread pools would not
    survive the fork of each job: the classifier's inference is numpy
    (`vanotebook.classify._infer`), and a test checks that no JAX is loaded.
    """
    from importlib import import_module

    if module:
        import_module(module).warm()
        return
    import numpy as np
    from astropy.wcs import WCS

    import vanotebook
    from vanotebook import mosaic, som, xmatch  # noqa: F401

    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (96, 96)).astype(np.float32)
    yy, xx = np.mgrid[:96, :96]
    for y, x in ((30, 30), (60, 70)):
        image += 50 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.5)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cdelt = [-1 / 3600, 1 / 3600]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [48, 48]
    vanotebook.detect((image, wcs), client=None)


def _after_fork() -> None:
    """In a forked job: drop thread pools whose threads stayed in the parent."""
    import dask.threaded

    dask.threaded.default_pool = None
    dask.threaded.pools.clear()


def forkserver(module: str | None = None) -> int:
    """A warm process that forks one child per job, for one account.

    It warms up once (`warm`), prints ``ready``, then reads job folders on
    stdin; for each it forks a child in a new session (so ABORT ends the
    child's group) that reads the job's own environment from ``env.json``
    (its certificate, its token; removed once read), writes to the folder's
    ``log.txt`` and runs `main`; the child's pid is printed back. A job thus
    starts in milliseconds with imports and kernels already loaded, and no
    two jobs share a process. It ends when stdin closes (the service ended).
    """
    import os
    import signal

    try:
        warm(module)
    except Exception:  # a cold server is slower, not broken
        traceback.print_exc(file=sys.stderr)

    def reap(*_args) -> None:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass

    signal.signal(signal.SIGCHLD, reap)
    print("ready", flush=True)
    for line in sys.stdin:
        work = Path(line.strip())
        pid = os.fork()
        if pid == 0:  # the job
            rc = 1
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.setsid()
                _after_fork()
                os.chdir(work)
                fd = os.open(work / "log.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                env_file = work / "env.json"
                if env_file.exists():
                    os.environ.update(json.loads(env_file.read_text()))
                    env_file.unlink()
                import dask

                dask.config.refresh()  # the job's Dask settings (TLS) from its environment
                rc = main(str(work))
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(rc)
        print(pid, flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1] == "--forkserver":
        sys.exit(forkserver(sys.argv[2] if len(sys.argv) > 2 else None))
    sys.exit(main(sys.argv[1]))
