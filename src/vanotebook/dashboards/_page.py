"""The page a dashboard's background work reports back to.

Work runs in a worker thread; what it changes on the page must change on the
page's own event loop, under its document's lock. Bokeh's current document
is not known in a worker thread (`panel.state.curdoc` there may be another
session's document or none, and a change made outside the lock can be lost,
leaving the page unchanged), so the page is taken in the thread that starts
the work (`page`) and the changes are handed to it (`on_page`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import panel as pn

__all__ = ["on_page", "page"]


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
