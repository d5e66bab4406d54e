"""The dashboards app's Sky tab: Aladin Lite on the demo sky's HiPS, and *View on the sky*
from the Mosaic and Detect tabs (#13 item 3)."""

from __future__ import annotations

import importlib.util
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
import requests

from vanotebook.archive._viewer import aladin_lite_path

try:
    aladin_lite_path()
    HAS_ALADIN = True
except RuntimeError:
    HAS_ALADIN = False
REQUIRE = os.environ.get("VANOTEBOOK_REQUIRE_BROWSER") == "1"
CHROMIUM = "/usr/bin/chromium"


def _app(tmp_path):
    """The app's Workflow on a small demo sky, its tabs and their titles."""
    from vanotebook.hub.app import Workflow
    from vanotebook.sky import demo_sky

    flow = Workflow(sky=demo_sky(0, size=0.5, n_catalogue=2000, n_spectra=500),
                    archive=tmp_path / "shared", hips_folder=tmp_path / "hips")
    tabs = flow.__panel__()
    return flow, tabs, [tabs._names[i] for i in range(len(tabs))]


def _page_config(viewer) -> dict:
    """What the viewer's page draws (the served view's config)."""
    from vanotebook.archive._viewer import hips_server

    return hips_server().views[viewer.url.rsplit("/view/", 1)[1]]


def _serialises(viewer) -> None:
    from bokeh.document import Document

    doc = Document()
    doc.add_root(viewer.__panel__().get_root(doc))
    doc.to_json()  # raises for a model with a property left unset (a slider set to None)
    assert doc.roots


def _separations(ra, dec, ra0: float, dec0: float) -> np.ndarray:
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    return SkyCoord(ra0 * u.deg, dec0 * u.deg).separation(
        SkyCoord(np.asarray(ra) * u.deg, np.asarray(dec) * u.deg)).deg


def test_sky_tab_shows_the_demo_hips(tmp_path):
    """(a) A Sky tab with a HiPSViewer: two lines of help, the demo sky's image and
    catalogue HiPS on offer (written once into the user's folder), and a status
    saying what is shown."""
    from vanotebook.dashboards import HiPSViewer
    from vanotebook.hub.app import SKY_HELP

    flow, tabs, titles = _app(tmp_path)
    assert "Sky" in titles and titles[-1] == "Cluster"
    viewer = flow.sky_viewer
    assert isinstance(viewer, HiPSViewer)
    help_pane = viewer.__panel__()[0]
    assert help_pane.object == SKY_HELP and "View on the sky" in SKY_HELP
    _serialises(viewer)  # the page can be sent (no control without a value)
    assert flow._sky_future is None  # nothing is written before the tab is opened
    tabs.active = titles.index("Sky")
    flow.prepare_sky().result(timeout=600)
    assert len(viewer.image_choices) == 3 and len(viewer.catalogue_choices) == 3
    assert viewer.image_hips in viewer.image_choices.values()
    assert viewer.catalogue_hips in viewer.catalogue_choices.values()
    assert "radio" in Path(viewer.image_hips).name  # the first survey's
    if not HAS_ALADIN and not REQUIRE:
        assert "npm install" in viewer.status
        return
    assert viewer.status == "Showing image, catalogue.", viewer.status
    page = requests.get(viewer.url, timeout=10).text
    assert '"image": "../hips/' in page and '"catalogue": "../hips/' in page
    # picking another survey from the menu shows it
    menu = viewer._menus["image_hips"]
    title = next(t for t, f in viewer.image_choices.items() if "ir24" in Path(f).name)
    menu.value = viewer.image_choices[title]
    assert "ir24" in Path(viewer.image_hips).name and viewer.status.startswith("Showing")
    _serialises(viewer)
    # a second app finds them written: nothing is made again
    stamp = {p: p.stat().st_mtime for p in (tmp_path / "hips").rglob("properties")}
    again, _tabs, _titles = _app(tmp_path)
    again.prepare_sky(sync=True)
    assert again.sky_viewer.image_choices == viewer.image_choices
    assert {p: p.stat().st_mtime for p in (tmp_path / "hips").rglob("properties")} == stamp


def test_view_detections_on_the_sky(tmp_path):
    """(b) Detect, press View on the sky: the viewer is centred on the detections' mean
    position, its field holds them all, they are drawn, and the Sky tab is opened."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord, UnitSphericalRepresentation

    flow, tabs, titles = _app(tmp_path)
    detect, viewer = flow.dashboards["Detect"], flow.sky_viewer
    detect.run(sync=True)
    assert detect.n_sources > 5, detect.status
    assert not flow.view_detections_on_sky.disabled
    assert titles[tabs.active] != "Sky"
    flow.view_detections_on_sky.clicks += 1  # the press
    cat = detect.result.catalogue
    ra, dec = cat["ra"].to_value("deg"), cat["dec"].to_value("deg")
    mean = SkyCoord(ra * u.deg, dec * u.deg).cartesian.mean()
    mean = mean.represent_as(UnitSphericalRepresentation)
    assert viewer.ra == pytest.approx(mean.lon.deg, abs=1e-6)
    assert viewer.dec == pytest.approx(mean.lat.deg, abs=1e-6)
    far = _separations(ra, dec, viewer.ra, viewer.dec).max()
    assert far <= viewer.fov / 2 <= 2 * far  # holds them all, and is not the whole sky
    assert len(viewer.regions) == len(cat)
    assert sorted(viewer.regions["id"]) == sorted(cat["id"])
    assert np.allclose(viewer.regions["ra"], ra) and np.allclose(viewer.regions["dec"], dec)
    assert titles[tabs.active] == "Sky"
    flow.prepare_sky().result(timeout=600)  # pressed before the Sky tab was opened
    assert "radio" in Path(viewer.image_hips).name  # the survey that was searched
    assert (viewer.ra, viewer.dec) == pytest.approx((mean.lon.deg, mean.lat.deg), abs=1e-6)
    if HAS_ALADIN or REQUIRE:
        assert viewer.status == "Showing image, catalogue, regions.", viewer.status
        shapes = _page_config(viewer)["regions"]  # what the page draws: every detection
        assert len(shapes) == len(cat) and all(s["type"] == "ellipse" for s in shapes)
        assert np.allclose(sorted(s["ra"] for s in shapes), sorted(ra))


def test_view_mosaic_on_the_sky(tmp_path):
    """The mosaic's View on the sky: centred on the mosaic's centre, its field holds the
    whole mosaic, and its survey's HiPS is shown."""
    from astropy.io import fits
    from astropy.wcs import WCS

    flow, tabs, titles = _app(tmp_path)
    mosaic, viewer = flow.dashboards["Mosaic"], flow.sky_viewer
    flow.prepare_sky(sync=True)
    mosaic.source = "fir250"
    mosaic.start().result()
    assert mosaic.result is not None, mosaic.status
    assert not flow.view_mosaic_on_sky.disabled
    flow.view_mosaic_on_sky.clicks += 1
    ny, nx = mosaic.result["mosaic"].shape
    wcs = WCS(fits.Header.fromstring(mosaic.result.attrs["header"])).celestial
    ra0, dec0 = wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2)
    assert (viewer.ra, viewer.dec) == pytest.approx((float(ra0), float(dec0)), abs=1e-6)
    corners = wcs.calc_footprint(axes=(nx, ny))
    far = _separations(corners[:, 0], corners[:, 1], viewer.ra, viewer.dec).max()
    assert far <= viewer.fov / 2 <= 2 * far
    assert viewer.regions is None  # no detections yet
    assert "fir250" in Path(viewer.image_hips).name
    assert "fir250" in Path(viewer.catalogue_hips).name
    assert titles[tabs.active] == "Sky"


def test_view_on_the_sky_is_disabled_before_a_result(tmp_path):
    """(c) Both buttons are disabled, saying why, until there is something to show."""
    flow, tabs, titles = _app(tmp_path)
    viewer = flow.sky_viewer
    for button, why in ((flow.view_mosaic_on_sky, "mosaic"),
                        (flow.view_detections_on_sky, "detection")):
        assert button.disabled
        assert re.search(rf"no {why}.*run", button.description, re.I), button.description
        assert button in _widgets(tabs)  # on the Mosaic and Detect tabs
    # pressed anyway (a script), it says why and changes nothing
    flow.view_on_sky("Detect")
    assert viewer.status.startswith("error: No detections yet"), viewer.status
    assert viewer.ra is None and viewer.regions is None
    assert titles[tabs.active] != "Sky"
    flow.view_on_sky("Mosaic")
    assert viewer.status.startswith("error: No mosaic yet"), viewer.status
    flow.dashboards["Detect"].run(sync=True)
    assert not flow.view_detections_on_sky.disabled and flow.view_mosaic_on_sky.disabled
    assert "detections" in flow.view_detections_on_sky.description


def _widgets(tabs) -> list:
    return list(tabs.select(lambda obj: hasattr(obj, "clicks")))


# ----------------------------------------------------------------------------- in Chromium
def _gateway_tests():
    """tests/hub/test_gateway.py as a module, for its ``gateway`` fixture."""
    spec = importlib.util.spec_from_file_location(
        "vanotebook_test_gateway_for_sky", Path(__file__).with_name("test_gateway.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_gw = _gateway_tests()
gateway = _gw.gateway  # the module's own instance: a real hub for this file's test


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists() and not REQUIRE,
                    reason="Debian chromium is not installed (CI installs it and requires it)")
@pytest.mark.skipif(not HAS_ALADIN and not REQUIRE, reason="aladin-lite is not installed")
def test_sky_tab_draws_tiles_through_the_hub(gateway):
    """(d) Log in, open the Sky tab of the dashboards in the user's own server: Aladin
    Lite, served through the hub, draws the demo sky's tiles."""
    from playwright.sync_api import sync_playwright

    url = gateway["url"]
    args = ["--no-sandbox", "--disable-background-networking", "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            _gw.open_dashboards(page, url, "dora", "dora-s3cret")
            try:
                page.get_by_text("Sky", exact=True).first.click(timeout=60_000)
                page.get_by_text("survey images and published catalogues").first.wait_for(
                    timeout=30_000)  # the tab's help
                # the demo HiPS are written (first opening), then shown
                page.get_by_text("Showing image, catalogue.").first.wait_for(timeout=300_000)
                frame = None
                for _ in range(120):
                    frame = next((f for f in page.frames if "/view/" in f.url), None)
                    if frame is not None:
                        break
                    page.wait_for_timeout(500)
                assert frame is not None, [f.url for f in page.frames]
                assert re.search(r"/user/dora/proxy/\d+/view/[0-9a-f]+$", frame.url), frame.url
                frame.wait_for_function("window.vanotebook && (window.vanotebook.ready || "
                                        "window.vanotebook.error)", timeout=150_000)
                assert frame.evaluate("window.vanotebook.error") is None
                frame.wait_for_function(
                    "performance.getEntriesByType('resource').some(e => "
                    "/\\/hips\\/.*Npix\\d+\\.png/.test(e.name))", timeout=150_000)
                frame.wait_for_function("window.vanotebook.catalogueSources() > 0",
                                        timeout=150_000)
                page.wait_for_timeout(3000)
                shot = frame.locator("#aladin canvas").first.screenshot()
            except Exception:
                print(_gw._diagnose(page, gateway["state"]))
                raise
            page.screenshot(path=str(Path(os.environ.get("TMPDIR", "/tmp"))
                                     / "vanotebook-sky-tab.png"))
        finally:
            browser.close()
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), float)
    assert pixels.std() > 5 and np.unique(pixels).size > 20, pixels.std()
