"""What the Dask workers can reach of this process's files, and sending data by value.

On the gateway the shared workers run as a service account, not as the user,
and every home is 0700: a task that opens a path in the user's folder fails
there. The services therefore ask, before handing a path to a task, whether
the workers can read it (`workers_can_read`) or write into a folder
(`workers_can_write`). One worker answers once per client and path, with a
tiny task calling ``os.access``; with no client (work in this process) the
answer is always yes. Where the workers cannot reach a file, the service reads
it here and sends the values (`frame_by_value` for a dask DataFrame;
`bounded_map` to feed tasks one block at a time, so only a few blocks are
ever held here) or writes what the tasks return.

All workers of one cluster are taken to run as the same account with the same
filesystems (the shared cluster); a path a worker does not see at all (another
machine) counts as unreadable, so the data go by value there too.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

__all__ = ["bounded_map", "frame_by_value", "worker_threads", "workers_can_read",
           "workers_can_write"]

_READ, _WRITE = "read", "write"
_LOCK = threading.Lock()
_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], bool]] = \
    weakref.WeakKeyDictionary()


def _access(paths: list[str], mode: str) -> list[bool]:
    """On a worker: whether its account may read (or write into) each path."""
    import os

    out = []
    for p in paths:
        if mode == _WRITE:
            out.append(os.path.isdir(p) and os.access(p, os.W_OK | os.X_OK))
        elif os.path.isdir(p):
            out.append(os.access(p, os.R_OK | os.X_OK))
        else:
            out.append(os.path.isfile(p) and os.access(p, os.R_OK))
    return out


def _ask(client, paths: Iterable[str | os.PathLike], mode: str) -> bool:
    if client is None:
        return True
    wanted = list(dict.fromkeys(os.path.abspath(os.fspath(p)) for p in paths))
    if not wanted:
        return True
    with _LOCK:
        known = _CACHE.setdefault(client, {})
        todo = [p for p in wanted if (p, mode) not in known]
    if todo:
        answers = client.submit(_access, todo, mode, pure=False,
                                key=f"vanotebook-access-{os.urandom(6).hex()}").result()
        with _LOCK:
            known.update({(p, mode): bool(a) for p, a in zip(todo, answers, strict=True)})
    return all(known[(p, mode)] for p in wanted)


def workers_can_read(client, paths: Iterable[str | os.PathLike]) -> bool:
    """Whether the workers of ``client`` can read every one of ``paths``.

    Files must be readable, folders readable and traversable, by the workers'
    account. True with no client (the work runs in this process) and for no paths.
    One worker is asked once per path; the answer is kept for the client's life.
    """
    return _ask(client, paths, _READ)


def workers_can_write(client, folder: str | os.PathLike) -> bool:
    """Whether the workers of ``client`` can create files in ``folder`` (True with no client)."""
    return _ask(client, [folder], _WRITE)


def worker_threads(client) -> int:
    """Threads over all workers of ``client`` (at least 1)."""
    try:
        info = client.scheduler_info(n_workers=-1)["workers"]
    except Exception:  # pragma: no cover - a client without scheduler info
        return 1
    return max(1, sum(int(w.get("nthreads", 1)) for w in info.values()))


def bounded_map(client, func: Callable, jobs: Iterable[Sequence[Any]], *,
                in_flight: int | None = None, **submit_kwargs) -> Iterator[tuple[int, Any]]:
    """Run ``func(*job)`` on the cluster for each job; yield ``(index, result)`` as they end.

    ``jobs`` is consumed lazily: a new job is taken (and, when it reads data here, read)
    only when fewer than ``in_flight`` tasks are running (default: twice the workers'
    threads), so only a few jobs' data are ever held in this process. Results come
    back in completion order, each released from the cluster once yielded.
    ``submit_kwargs`` go to `distributed.Client.submit` (``resources=``...).
    """
    from distributed import as_completed

    limit = in_flight or 2 * worker_threads(client)
    jobs = iter(jobs)
    index: dict[str, int] = {}
    pending = as_completed(loop=client.loop)
    running = 0
    n = 0

    def submit() -> bool:
        nonlocal running, n
        job = next(jobs, None)
        if job is None:
            return False
        future = client.submit(func, *job, pure=False, **submit_kwargs)
        index[future.key] = n
        n += 1
        running += 1
        pending.add(future)
        return True

    try:
        while running < limit and submit():
            pass
        for future in pending:
            result = future.result()
            i = index.pop(future.key)
            running -= 1
            future.release()
            while running < limit and submit():
                pass
            yield i, result
    finally:
        for future in list(pending.futures):
            future.cancel()


def frame_by_value(client, frame):
    """``frame`` (a dask DataFrame whose tasks read files) with its partitions sent by value.

    Each partition is computed here, in this process, one at a time, and
    scattered to the workers; the result is a persisted dask DataFrame over
    those pieces (same meta, same divisions), so this process never holds more
    than one partition, and the workers (which spill to disk as usual) never
    open a path. The pieces live as long as the returned frame or anything
    derived from it.
    """
    import dask
    import dask.dataframe as dd

    meta = frame._meta
    futures = []
    for part in frame.to_delayed():
        (df,) = dask.compute(part, scheduler="sync")
        futures.append(client.scatter(df, hash=False))
        del df
    if not futures:
        return frame
    divisions = frame.divisions if (frame.known_divisions and
                                    len(frame.divisions) == len(futures) + 1) else None
    pieces = dd.from_delayed(futures, meta=meta, divisions=divisions, verify_meta=False)
    # persisted, the frame's graph holds its futures: frames and arrays derived from it
    # keep the pieces alive (a graph over bare scattered futures does not)
    return client.persist(pieces)
