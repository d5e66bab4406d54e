"""The local HiPS viewer: its server, and Aladin Lite drawing our tiles in Chromium."""

from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import requests
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from vanotebook._errors import VanotebookInputError
from vanotebook.archive._hips import write_catalogue_hips
from vanotebook.archive._viewer import aladin_lite_path, view_hips

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking",
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--ignore-gpu-blocklist"]
RA, DEC = 150.0, 2.0

try:
    aladin_lite_path()
    HAS_ALADIN = True
except RuntimeError:
    HAS_ALADIN = False
REQUIRE = os.environ.get("VANOTEBOOK_REQUIRE_BROWSER") == "1"
needs_aladin = pytest.mark.skipif(not HAS_ALADIN and not REQUIRE,
                                  reason="aladin-lite npm package not installed (CI installs it)")


def _image(path: Path) -> Path:
    """A 512x512 TAN image at 2 arcsec with noise and point sources."""
    rng = np.random.default_rng(0)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [RA, DEC]
    w.wcs.crpix = [256.5, 256.5]
    w.wcs.cdelt = [-2 / 3600, 2 / 3600]
    data = rng.normal(0, 1, (512, 512)).astype(np.float32)
    yy, xx = np.mgrid[:512, :512]
    for x, y in rng.uniform(20, 492, (60, 2)):
        data += 50 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8)
    fits.PrimaryHDU(data, w.to_header()).writeto(path)
    return path


def _image_hips(image: Path, out: Path) -> Path:
    try:
        from vanotebook.mosaic import to_hips
    except ImportError:  # before the mosaic HiPS writer: reproject's
        from reproject import reproject_interp
        from reproject.hips import reproject_to_hips

        reproject_to_hips(str(image), coord_system_out="equatorial",
                          reproject_function=reproject_interp, output_directory=str(out),
                          tile_size=256, tile_format="png")
        return out
    to_hips(image, out, tile_width=256, formats=("png",))
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer")
    image = _image_hips(_image(root / "image.fits"), root / "image_hips")
    rng = np.random.default_rng(1)
    n = 5000
    t = Table({"id": np.arange(n), "ra": RA + rng.uniform(-0.14, 0.14, n),
               "dec": DEC + rng.uniform(-0.14, 0.14, n), "mag": rng.uniform(12, 22, n)})
    cat = write_catalogue_hips(t, root / "cat_hips", order_by="mag", max_rows_per_tile=50)
    regions = Table({"ra": [RA, RA + 0.05], "dec": [DEC, DEC - 0.03],
                     "major": [30.0, 20.0], "minor": [15.0, 10.0], "pa": [30.0, 0.0]})
    return {"root": root, "image": image, "cat": cat, "regions": regions, "n": n}


@needs_aladin
def test_server_serves_files_and_refuses_the_rest(folders):
    view = view_hips(folders["image"], folders["cat"], folders["regions"], ra=RA, dec=DEC,
                     fov=0.3)
    base = view.local_url.rsplit("/view/", 1)[0]
    assert urllib.parse.urlparse(base).hostname == "127.0.0.1"
    page = requests.get(view.local_url, timeout=10)
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert '"catalogue": "../hips/' in page.text and "../aladin/aladin.js" in page.text
    js = requests.get(f"{base}/aladin/aladin.js", timeout=10)
    assert js.status_code == 200
    assert js.content == (aladin_lite_path() / "aladin.js").read_bytes()
    cat_url = view.config["catalogue"].replace("../", f"{base}/")
    props = requests.get(cat_url + "properties", timeout=10)
    assert props.status_code == 200
    assert props.text == (folders["cat"] / "properties").read_text()
    img_url = view.config["image"].replace("../", f"{base}/")
    assert requests.get(img_url + "properties", timeout=10).status_code == 200
    # missing files, unknown mounts and views: 404
    assert requests.get(cat_url + "Norder9/Dir0/Npix1.tsv", timeout=10).status_code == 404
    assert requests.get(f"{base}/hips/nope/properties", timeout=10).status_code == 404
    assert requests.get(f"{base}/view/0123abcd", timeout=10).status_code == 404
    assert requests.get(f"{base}/etc/passwd", timeout=10).status_code == 404
    # path traversal out of a HiPS root or the aladin folder is refused (raw requests,
    # so that no client normalises the dots away)
    secret = folders["root"] / "image.fits"
    for raw in (view.config["catalogue"][2:] + "../image.fits",
                view.config["catalogue"][2:] + "%2e%2e/image.fits",
                "/aladin/../../../../../../etc/passwd",
                "/aladin/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"):
        status, body = _raw_get(base, raw)
        assert status in (403, 404), (raw, status)
        assert secret.read_bytes()[:80] not in body


def _raw_get(base: str, path: str) -> tuple[int, bytes]:
    u = urllib.parse.urlparse(base)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n\r\n"
                  .encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_view_inputs_and_hub_url(folders, monkeypatch):
    if not HAS_ALADIN:
        monkeypatch.setenv("VANOTEBOOK_ALADIN_LITE", str(folders["root"] / "nowhere"))
        with pytest.raises(RuntimeError, match="npm install --prefix"):
            view_hips(folders["image"])
        return
    with pytest.raises(VanotebookInputError, match="image_hips"):
        view_hips()
    with pytest.raises(VanotebookInputError, match="catalogue_hips"):
        view_hips(catalogue_hips=folders["image"])  # an image HiPS as the catalogue
    with pytest.raises(VanotebookInputError, match="image_hips"):
        view_hips(folders["root"])  # no properties
    with pytest.raises(VanotebookInputError, match="regions"):
        view_hips(folders["image"], regions=Table({"x": [1.0]}))
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
    view = view_hips(folders["image"], ra=RA, dec=DEC)
    assert view.url == f"/user/alice/proxy/{view.port}/view/{view.id}"
    assert view.url in view._repr_html_()
    assert view.local_url.startswith("http://127.0.0.1:")


def test_missing_aladin_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("VANOTEBOOK_ALADIN_LITE", str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match=r"npm install --prefix .* aladin-lite@3\.8"):
        aladin_lite_path()


def test_regions_from_astropy_regions_and_ds9(folders):
    if not HAS_ALADIN and not REQUIRE:
        pytest.skip("aladin-lite npm package not installed")
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from regions import CircleSkyRegion, EllipseSkyRegion, Regions

    c = SkyCoord(RA * u.deg, DEC * u.deg)
    regs = Regions([CircleSkyRegion(c, 10 * u.arcsec),
                    EllipseSkyRegion(c, 20 * u.arcsec, 10 * u.arcsec, 45 * u.deg)])
    view = view_hips(folders["image"], regions=regs)
    shapes = view.config["regions"]
    assert [s["type"] for s in shapes] == ["circle", "ellipse"]
    assert shapes[0]["radius"] == pytest.approx(10 / 3600)
    ds9 = folders["root"] / "r.reg"
    regs.write(str(ds9), format="ds9")
    from_file = view_hips(folders["image"], regions=ds9).config["regions"]
    assert [s["type"] for s in from_file] == ["circle", "ellipse"]
    for got, want in zip(from_file, shapes, strict=True):
        assert set(got) == set(want)
        for key, value in want.items():
            if key != "type":  # DS9 text rounds the numbers
                assert got[key] == pytest.approx(value, rel=1e-6), key


@needs_aladin
@pytest.mark.skipif(not Path(CHROMIUM).exists() and not REQUIRE,
                    reason="Debian chromium is not installed (CI installs it and requires it)")
def test_aladin_draws_our_tiles_in_chromium(folders):
    from playwright.sync_api import sync_playwright

    view = view_hips(folders["image"], folders["cat"], folders["regions"], ra=RA, dec=DEC,
                     fov=0.35, image_options={"stretch": "linear"})
    requests_seen: list[str] = []
    responses: dict[str, int] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 800, "height": 600})
            page.on("request", lambda r: requests_seen.append(r.url))
            page.on("response", lambda r: responses.__setitem__(r.url, r.status))
            page.add_init_script("window.__csp = []; document.addEventListener("
                                 "'securitypolicyviolation', "
                                 "e => window.__csp.push(e.blockedURI));")
            page.goto(view.local_url)
            page.wait_for_function("window.vanotebook && (window.vanotebook.ready || "
                                   "window.vanotebook.error)", timeout=150_000)
            assert page.evaluate("window.vanotebook.error") is None
            # (c) catalogue tiles are fetched and their sources are in the layer
            page.wait_for_function("window.vanotebook.catalogueSources() > 100",
                                   timeout=150_000)
            n_sources = page.evaluate("window.vanotebook.catalogueSources()")
            # (a) image tiles fetched from our server and answered 200
            page.wait_for_function(
                "performance.getEntriesByType('resource').some(e => /Npix\\d+\\.png/"
                ".test(e.name))", timeout=150_000)
            page.wait_for_timeout(3000)
            shot = page.locator("#aladin canvas").first.screenshot()
            csp = page.evaluate("window.__csp")
            overlays = page.evaluate("window.vanotebook.overlay.overlayItems.length")
            if os.environ.get("VANOTEBOOK_VIEWER_SHOT"):
                page.screenshot(path=os.environ["VANOTEBOOK_VIEWER_SHOT"])
        finally:
            browser.close()
    image_tiles = [u for u in requests_seen if "/hips/" in u and u.endswith(".png")
                   and "/Npix" in u]
    cat_tiles = [u for u in requests_seen if "/hips/" in u and u.endswith(".tsv")]
    served = [u for u in image_tiles if responses.get(u) == 200]
    assert served, image_tiles[:5]
    for u in image_tiles:  # a 404 only for tiles outside the HiPS; still in flight at close: None
        status = responses.get(u)
        tile = Path(folders["image"]) / ("Norder" + u.split("/Norder", 1)[1])
        assert status in (200, 404, None), (u, status)
        assert (status == 200) == tile.exists() or status is None, (u, status)
    assert any("Allsky.tsv" in u for u in cat_tiles)
    assert any("/Npix" in u for u in cat_tiles)  # deeper tiles, loaded progressively
    assert all(responses.get(u) in (200, 404) for u in cat_tiles)
    assert 100 < n_sources <= folders["n"]
    assert overlays == 2
    # (b) the image is drawn: the canvas is not uniform
    import io

    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), float)
    assert pixels.std() > 5, pixels.std()
    assert np.unique(pixels).size > 20
    # (d) nothing left this machine, and Aladin did not even try (no CSP block)
    hosts = {urllib.parse.urlparse(u).hostname for u in requests_seen
             if not u.startswith(("data:", "blob:"))}
    assert hosts <= {"127.0.0.1", "localhost"}, hosts
    assert csp == [], csp


def test_panel_hips_viewer_state(folders):
    pytest.importorskip("panel")
    from vanotebook.dashboards import HiPSViewer

    viewer = HiPSViewer()
    assert viewer.url == "" and viewer._frame.object == ""
    if not HAS_ALADIN:
        viewer.image_hips = str(folders["image"])
        assert "npm install" in viewer.status
        return
    viewer.param.update(image_hips=str(folders["image"]), catalogue_hips=str(folders["cat"]),
                        ra=RA, dec=DEC, fov=0.5)
    assert viewer.url.startswith("http://127.0.0.1:")
    assert viewer.url in viewer._frame.object
    assert "image, catalogue" in viewer.status
    page = requests.get(viewer.url, timeout=10).text
    assert '"fov": 0.5' in page and '"catalogue": "../hips/' in page
    first = viewer.url
    viewer.fov = 2.0
    assert viewer.url != first and '"fov": 2.0' in requests.get(viewer.url, timeout=10).text
    viewer.catalogue_hips = str(folders["image"])  # not a catalogue HiPS
    assert "Cannot show it" in viewer.status and "catalogue_hips" in viewer.status
    assert viewer.__panel__() is not None
