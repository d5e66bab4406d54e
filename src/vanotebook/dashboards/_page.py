"""The page a dashboard's background work reports back to, and the run that can be cancelled.

Work runs in a worker thread; what it changes on the page must change on the
page's own event loop, under its document's lock. Bokeh's current document
is not known in a worker thread (`panel.state.curdoc` there may be another
session's document or none, and a change made outside the lock can be lost,
leaving the page unchanged), so the page is taken in the thread that starts
the work (`page`) and the changes are handed to it (`on_page`).

A `Run` is one start of a dashboard's long action: its page, its stop switch
and its cluster work. Its Cancel frees the cluster at once: work on a Dask
cluster goes through a client of the run's own, on the same scheduler, so
that every future of the run is that client's, and closing it cancels them
all (the scheduler drops the tasks that no other client wants); Cancel closes
it in a thread of its own, so that the page's event loop is never held. Work
in this process stops at its next step: the services' progress callbacks call
`Run.check`, which raises `Cancelled` once the run is cancelled (a service
with no step in between, such as an in-memory cross-match without a cluster,
runs on to its end in its thread, and its result is dropped).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import panel as pn

__all__ = ["CANCELLED", "Cancelled", "Run", "on_page", "page"]

#: The status a dashboard shows once its run is cancelled.
CANCELLED = "Cancelled"


def page() -> Any:
    """The served document of the calling (UI) thread, or None outside a server."""
    doc = pn.state.curdoc
    return doc if doc is not None and doc.session_context is not None else None


def on_page(doc: Any, change: Callable[[], None]) -> None:
    """Run ``change`` on ``doc``'s event loop under its lock; at once when ``doc`` is None."""
    if doc is None:
        change()
    else:
        doc.add_next_tick_callback(change)


class Cancelled(Exception):
    """Raised in a run's worker thread at its next step once the run is cancelled."""


class Run:
    """One start of a dashboard's long action, made in the UI thread that starts it.

    Parameters
    ----------
    client : distributed.Client, optional
        The cluster the work goes to; the work is handed a client of its own
        on the same scheduler (`connect`). None: the work stays in this
        process (or on the default client, where only `check` stops it).
    """

    def __init__(self, client: Any = None) -> None:
        self.doc = page()  # the page that asked: the run's changes are made on its loop
        self.stopped = threading.Event()
        self._base, self.client = client, None
        self._lock = threading.RLock()  # a change and a cancel never interleave

    def connect(self) -> Any:
        """The run's own client (called in the worker thread), or None without a cluster."""
        if self._base is not None:
            from distributed import Client

            self.client = Client(self._base.scheduler.address, security=self._base.security,
                                 set_as_default=False)
        self.check()  # a cancel that came while connecting
        return self.client

    def check(self) -> None:
        """Raise `Cancelled` once the run is cancelled (the work calls it between steps)."""
        if self.stopped.is_set():
            raise Cancelled

    def report(self, change: Callable[[], None], *, last: bool = False) -> None:
        """Hand ``change`` to the page (`on_page`); it is dropped once the run is cancelled.

        ``last``: the run's outcome; after it, a cancel changes nothing.
        """
        def guarded() -> None:
            with self._lock:
                if not self.stopped.is_set():
                    if last:
                        self.stopped.set()
                    change()

        on_page(self.doc, guarded)

    def cancel(self, change: Callable[[], None]) -> None:
        """Stop the run, make ``change`` (what the page shows), then free the cluster.

        It returns at once: the run's client is closed in a thread of its own
        (closing it takes seconds on a remote cluster, and a Cancel button's
        callback runs on the page's event loop, which would be held that long).
        Nothing happens once the run has reported its outcome or was cancelled.
        """
        with self._lock:
            if self.stopped.is_set():
                return
            self.stopped.set()
            change()
            client, self.client = self.client, None  # the worker thread's close skips it
        if client is not None:
            threading.Thread(target=client.close, name="vanotebook-cancel-close",
                             daemon=True).start()

    def close(self) -> None:
        """Close the run's client: the scheduler forgets every future of the run."""
        with self._lock:  # the worker thread's close and a cancel's close: once
            client, self.client = self.client, None
        if client is not None:
            client.close()
