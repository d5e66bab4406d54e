"""Run one job in its own process: ``python -m vanotebook.jobs._run <job folder>``.

The service starts it in a new process group (so ABORT and an overrun end
it and everything it started); it reads ``job.json`` (pipeline, parameters,
the modules that declared pipelines), joins the cluster its environment
names (``DASK_SCHEDULER_ADDRESS``; the work then runs there as futures),
writes progress lines to ``progress.txt`` and, at the end, ``outcome.json``:
the result files, or the error a user can act on. On SIGTERM (ABORT) it
cancels what it has on the cluster before it ends, so the workers are freed.
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
    """SIGTERM: cancel this client's futures on the cluster, then end."""
    import os
    import signal

    def stop(signum, frame):  # pragma: no cover - runs in the job's process
        try:
            if client is not None:
                futures = list(client.futures)
                if futures:
                    client.cancel(futures, force=True)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1]))
