"""Result downloads in the served app go over HTTP, not through the page's websocket."""

from __future__ import annotations

import io
import socket
import stat
import time
import urllib.request

import numpy as np
import panel as pn
import param
import pytest

from vanotebook.dashboards import _files
from vanotebook.dashboards._help import result_download


class _Viewer(param.Parameterized):
    status = param.String("")
    running = param.Boolean(False)
    result = param.Parameter(None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_download_is_a_private_file_behind_a_link(tmp_path, monkeypatch):
    """Issue 13, item 1: a 64 MB mosaic pushed through the websocket closed it. Served,
    the button writes the result to the downloads folder (readable by this account
    only) and shows a link; a real Panel server under the hub's prefix serves the
    link's file, the same bytes. Disabled before a result. Mutation: the button a
    FileDownload again (no file, no link) fails it."""
    folder = tmp_path / "downloads"
    folder.mkdir(mode=0o700)
    monkeypatch.setattr(_files, "_FOLDER", folder)
    viewer = _Viewer()
    data = np.random.default_rng(0).bytes(3_000_000)
    shown = result_download(viewer, lambda: io.BytesIO(viewer.result), "mosaic.fits",
                            "Download mosaic (FITS)", ready=lambda: viewer.result is not None)
    button, link = shown.objects
    assert isinstance(button, pn.widgets.Button) and button.disabled
    viewer.param.update(result=data, status="done")
    assert not button.disabled
    button.clicks += 1
    assert 'href="downloads/' in link.object and "mosaic.fits</a> (3.0 MB)" in link.object
    url = link.object.split('href="')[1].split('"')[0]
    path = folder / url.removeprefix("downloads/")
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # the app's server (as `vanotebook.hub.app` serves it, under the hub's prefix)
    port, prefix = _free_port(), "/user/carol/dashboards"
    server = pn.serve({"": lambda: pn.pane.Markdown("page")}, port=port,
                      address="127.0.0.1", prefix=prefix, show=False, threaded=True,
                      static_dirs={_files.ROUTE: str(folder)})
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{prefix}/{url}",
                                            timeout=10) as r:
                    assert r.read() == data
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the served app never answered")
    finally:
        server.stop()


def test_unserved_download_stays_a_file_download(monkeypatch):
    monkeypatch.setattr(_files, "_FOLDER", None)
    widget = result_download(_Viewer(), lambda: io.BytesIO(b""), "x.ecsv", "Download",
                             ready=lambda: False)
    assert isinstance(widget, pn.widgets.FileDownload) and widget.disabled


def test_save_refuses_paths_as_file_names(tmp_path, monkeypatch):
    monkeypatch.setattr(_files, "_FOLDER", tmp_path)
    with pytest.raises(ValueError, match="filename"):
        _files.save(lambda: b"x", "..")


def test_on_the_hub_downloads_go_through_the_jupyter_servers_files(tmp_path, monkeypatch):
    """Under a hub user's Jupyter server (jupyter-server-proxy buffers a response and
    refuses one over 100 MB: a 4501^2 mosaic's FITS failed with 599), the folder is
    ~/vanotebook-downloads, private, emptied at start, and the links go to the
    server's /files/ handler, which streams."""
    monkeypatch.setattr(_files, "_FOLDER", None)
    monkeypatch.setattr(_files, "_URL", _files.ROUTE)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/carol/")
    (tmp_path / "vanotebook-downloads" / "old").mkdir(parents=True)
    folder = _files.serve_folder("/user/carol/dashboards")
    assert folder == tmp_path / "vanotebook-downloads" and not (folder / "old").exists()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    url, size = _files.save(lambda: b"SIMPLE", "mosaic.fits")
    assert url.startswith("/user/carol/files/vanotebook-downloads/") and size == 6
    assert (folder / url.rsplit("/", 2)[1] / "mosaic.fits").read_bytes() == b"SIMPLE"
