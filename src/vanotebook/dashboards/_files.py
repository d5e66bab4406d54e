"""Result files served over HTTP by the dashboards app, never pushed through its websocket.

A download button (`FileDownload`) sends the whole file through the page's
websocket: a mosaic of a few thousand pixels a side closed the connection.
Where the app serves a downloads folder (`serve_folder`, passed to
``pn.serve(static_dirs=...)`` by `vanotebook.hub.app`), a result is written
there instead, under a random token, readable by this account only, and the
page gets a plain link; the browser fetches it like any file, behind the same
login as the page. Elsewhere (a notebook) the button stays a `FileDownload`.

Inside a user's Jupyter server on the hub (the app runs under
jupyter-server-proxy, which buffers a whole response and refuses one over
100 MB), the folder is ``~/vanotebook-downloads`` and the links go to the
server's own ``/files/`` handler, which streams files of any size.
"""

from __future__ import annotations

import io
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["ROUTE", "save", "serve_folder", "served"]

#: The URL path of the folder, relative to the app's page.
ROUTE = "downloads"
#: The folder in a hub user's home that their Jupyter server's ``/files/`` serves.
HOME_FOLDER = "vanotebook-downloads"
_FOLDER: Path | None = None
_URL = ROUTE  # the URL of the folder: links are ``_URL/<token>/<name>``


def serve_folder(prefix: str = "") -> Path:
    """Make this process's private downloads folder; the app serves it at ``prefix/ROUTE``.

    Under a hub user's Jupyter server (``JUPYTERHUB_SERVICE_PREFIX`` begins
    ``prefix``) it is ``~/vanotebook-downloads``, emptied of earlier sessions'
    files, and served by that server's ``/files/``.
    """
    global _FOLDER, _URL
    prefix = prefix.rstrip("/")
    server = (os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "").rstrip("/")
    if server and prefix.startswith(server + "/"):
        import shutil

        folder = Path.home() / HOME_FOLDER
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(mode=0o700)
        _FOLDER, _URL = folder, f"{server}/files/{HOME_FOLDER}"
    else:
        _FOLDER = Path(tempfile.mkdtemp(prefix="vanotebook-downloads-"))  # mode 0700
        _URL = f"{prefix}/{ROUTE}" if prefix else ROUTE
    return _FOLDER


def served() -> bool:
    """Whether a downloads folder is served (by the dashboards app in this process)."""
    return _FOLDER is not None


def save(make: Callable[[], io.BytesIO | bytes], filename: str) -> tuple[str, int]:
    """Write the result ``make()`` under a new token; its URL and size.

    The URL is ``<prefix>/downloads/<token>/<name>`` (relative to the page where
    no prefix was given), or the Jupyter server's ``/files/`` URL on the hub.

    The file appears whole or not at all (written aside, then renamed) and is
    readable by this account only.
    """
    if _FOLDER is None:
        raise RuntimeError("no downloads folder is served (serve_folder)")
    name = Path(filename).name
    if not name or name in (".", ".."):
        raise ValueError(f"filename: expected a plain file name, got {filename!r}")
    data = make()
    data = data.getvalue() if isinstance(data, io.BytesIO) else bytes(data)
    token = secrets.token_urlsafe(16)
    folder = _FOLDER / token
    folder.mkdir(mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-")
    with os.fdopen(fd, "wb") as f:  # mkstemp: mode 0600
        f.write(data)
    os.replace(tmp, folder / name)
    return f"{_URL}/{token}/{name}", len(data)
