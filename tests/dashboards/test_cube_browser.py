"""The cube dashboard in Chromium: its maps, cuts and 3-D volume draw; the read-out follows
the mouse; a tap moves the cursor.

Served by Panel on loopback and driven by Playwright with Debian's Chromium
(WebGL by SwiftShader, as in the Aladin test). Nothing is fetched from outside:
every request goes to the local server (vtk.js comes with Panel).
"""

from __future__ import annotations

import io
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking",
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--ignore-gpu-blocklist"]
REQUIRE = os.environ.get("VANOTEBOOK_REQUIRE_BROWSER") == "1"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not REQUIRE,
    reason="Debian chromium is not installed (CI installs it and requires it)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _varied(png: bytes) -> float:
    """The standard deviation of a screenshot's pixels (0 for a blank one)."""
    from PIL import Image

    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), float).std())


def _differ(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two screenshots of one size, in grey levels."""
    from PIL import Image

    ga, gb = (np.asarray(Image.open(io.BytesIO(x)).convert("L"), float) for x in (a, b))
    return float(np.abs(ga - gb).mean()) if ga.shape == gb.shape else 255.0


def test_cube_dashboard_draws_and_follows_a_tap_in_chromium():
    import panel as pn
    from playwright.sync_api import sync_playwright

    from vanotebook.dashboards import CubeDashboard

    made: list = []

    def app():
        dash = CubeDashboard(demo="co")
        made.append(dash)
        return dash.__panel__()

    port = _free_port()
    server = pn.serve({"cube": app}, port=port, address="127.0.0.1", show=False,
                      threaded=True, websocket_origin=f"127.0.0.1:{port}")
    urls: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1500})
                page.on("request", lambda r: urls.append(r.url))
                page.goto(f"http://127.0.0.1:{port}/cube", timeout=120_000)
                figure = page.locator(".cube-map").first
                figure.wait_for(timeout=120_000)
                page.wait_for_timeout(1000)
                empty = figure.screenshot()
                page.get_by_role("button", name="Compute moments").click(timeout=120_000)
                page.get_by_text("maps of a").wait_for(timeout=180_000)  # in a shadow root
                dash = made[-1]
                # the 3-D view: vtk.js draws the volume into its canvas once asked for
                page.get_by_role("button", name="3-D view (drag to rotate)").click(
                    timeout=60_000)
                volume = page.locator(".cube-volume canvas >> visible=true").first
                volume.wait_for(timeout=120_000)
                page.wait_for_timeout(3000)
                assert _varied(volume.screenshot()) > 2.0
                # the moment map is drawn once the worker thread is done
                page.wait_for_timeout(1000)
                drawn = figure.screenshot()
                assert _differ(empty, drawn) > 5.0
                assert _differ(page.locator(".cube-continuum").first.screenshot(), empty) > 5.0
                shot = page.screenshot(full_page=True)
                assert _varied(shot) > 2.0
                if os.environ.get("VANOTEBOOK_CUBE_SHOT"):
                    Path(os.environ["VANOTEBOOK_CUBE_SHOT"]).write_bytes(shot)
                # the read-out under the mouse (ImageView): the map's value and its sky
                # position in the map's own frame (the demo cubes are Galactic); on the PV
                # slice, offset and velocity
                figure.scroll_into_view_if_needed()
                box = figure.bounding_box()
                for fx in (0.40, 0.45):
                    page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * 0.5)
                readout = page.locator(".cube-map-readout").first.get_by_text(
                    re.compile(r"value \S+ K km / s +l \d+\.\d{5}° +b [+-]")).first
                readout.wait_for(timeout=30_000)  # the text is in the pane's shadow root
                assert dash.views["map"].readout in readout.inner_text()
                pv = page.locator(".cube-pv").first.bounding_box()
                for fx in (0.40, 0.45):
                    page.mouse.move(pv["x"] + pv["width"] * fx, pv["y"] + pv["height"] * 0.5)
                page.locator(".cube-pv-readout").first.get_by_text(
                    re.compile(r"offset \S+″ +velocity \S+ km/s")).wait_for(timeout=30_000)
                # a tap on the map moves the cursor; the spectrum and the cuts follow
                before = dash.cursor
                spectrum_before = np.asarray(dash.spectrum_table["flux"].value).copy()
                box = figure.bounding_box()
                page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.7)
                for _ in range(100):
                    if dash.cursor != before:
                        break
                    page.wait_for_timeout(100)
                assert dash.cursor != before
                for _ in range(100):  # the spectrum follows on the server (a loaded CI: >0.5 s)
                    if not np.array_equal(dash.spectrum_table["flux"].value, spectrum_before):
                        break
                    page.wait_for_timeout(100)
                assert not np.array_equal(dash.spectrum_table["flux"].value, spectrum_before)
            finally:
                browser.close()
    finally:
        server.stop()
    outside = [u for u in urls if not u.startswith(("http://127.0.0.1", "ws://127.0.0.1",
                                                    "data:", "blob:"))]
    assert outside == []
