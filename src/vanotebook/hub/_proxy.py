"""The dashboards app inside each user's own server (a jupyter-server-proxy entry).

Registered as the ``jupyter_serverproxy_servers`` entry point ``dashboards``:
the user's Jupyter server starts the Panel app on first visit of
``/user/<name>/dashboards/``, as the user's account and in the user's
cgroup, listening on a unix socket in a private temporary folder (no TCP
port another local account could reach); the server's own auth guards it.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["dashboards"]


def dashboards() -> dict[str, Any]:
    """The server-proxy entry of the dashboards app."""
    return {
        "command": [sys.executable, "-m", "vanotebook.hub.app", "--unix-socket",
                    "{unix_socket}", "--prefix", "{base_url}dashboards"],
        "unix_socket": True,
        "absolute_url": True,
        "timeout": 120,
        "launcher_entry": {"title": "vanotebook dashboards"},
    }
