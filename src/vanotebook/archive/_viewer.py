"""A local HiPS viewer: Aladin Lite v3 served from this machine, never from a CDN.

One tornado server per process, on a free loopback port, in a daemon thread.
It serves:

* ``/aladin/...``          the files of the ``aladin-lite`` npm package (its ``dist``);
* ``/hips/<name>/...``     the HiPS folders given to `view_hips` (image and catalogue);
* ``/view/<id>``           a page that builds the Aladin view: the image HiPS as the
                           survey, the catalogue HiPS as a progressive catalogue,
                           the regions as overlays.

Aladin Lite is GPL-3 and vanotebook is BSD-3, so it is not shipped: it is
installed once with ``npm install --prefix ~/.cache/vanotebook/aladin-lite
aladin-lite@3.8`` (or found through ``VANOTEBOOK_ALADIN_LITE``). The page is
served with a Content-Security-Policy that allows only this server, so even
an Aladin feature that would call a CDS service cannot leave the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import VanotebookInputError

__all__ = ["ALADIN_INSTALL", "HiPSView", "aladin_lite_path", "find_hips", "framing",
           "hips_server", "view_hips"]

ALADIN_VERSION = "3.8"
ALADIN_CACHE = Path("~/.cache/vanotebook/aladin-lite").expanduser()
ALADIN_INSTALL = (f"npm install --prefix {ALADIN_CACHE} aladin-lite@{ALADIN_VERSION}")
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval' "
       "'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self' data: blob:; worker-src 'self' blob:; font-src 'self' data:")


def aladin_lite_path() -> Path:
    """The folder holding Aladin Lite's ``aladin.js``.

    ``VANOTEBOOK_ALADIN_LITE`` (the file, its ``dist`` folder or the npm
    prefix) wins; else ``~/.cache/vanotebook/aladin-lite``.

    Raises
    ------
    RuntimeError
        When it is not installed; the message gives the install command.
    """
    env = os.environ.get("VANOTEBOOK_ALADIN_LITE")
    base = Path(env).expanduser() if env else ALADIN_CACHE
    for cand in (base, base / "dist", base / "node_modules" / "aladin-lite" / "dist"):
        if cand.is_file() and cand.name == "aladin.js":
            return cand.parent
        if (cand / "aladin.js").is_file():
            return cand
    where = f"VANOTEBOOK_ALADIN_LITE={env}" if env else str(ALADIN_CACHE)
    msg = (f"Aladin Lite is not installed (looked in {where}). Install it once with: "
           f"{ALADIN_INSTALL}")
    raise RuntimeError(msg)


# ----------------------------------------------------------------------------- server
class _Server:
    def __init__(self) -> None:
        self.mounts: dict[str, Path] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self, aladin_dir: Path) -> None:
        self.aladin_dir = aladin_dir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        thread = threading.Thread(target=self._run, name="vanotebook-hips-server", daemon=True)
        thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            app = _make_app(self)
            app.listen(self.port, address="127.0.0.1")
        except BaseException as exc:  # pragma: no cover - reported to start()
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()

    def mount(self, folder: Path) -> str:
        folder = Path(folder).resolve()
        with self.lock:
            for name, path in self.mounts.items():
                if path == folder:
                    return name
            name = f"{len(self.mounts)}-{_slug(folder.name)}"
            self.mounts[name] = folder
            return name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:40] or "hips"


def _make_app(server: _Server):
    import tornado.web

    class Static(tornado.web.StaticFileHandler):
        def set_extra_headers(self, path: str) -> None:
            self.set_header("Cache-Control", "no-cache")
            self.set_header("Access-Control-Allow-Origin", "*")

    class HiPSFiles(Static):
        async def get(self, name: str, path: str, include_body: bool = True) -> None:
            root = server.mounts.get(name)
            if root is None:
                raise tornado.web.HTTPError(404)
            self.root = str(root)
            await super().get(path, include_body)

        async def head(self, name: str, path: str) -> None:  # type: ignore[override]
            await self.get(name, path, include_body=False)

    class Page(tornado.web.RequestHandler):
        def get(self, view_id: str) -> None:
            config = server.views.get(view_id)
            if config is None:
                raise tornado.web.HTTPError(404)
            template = (Path(__file__).parent / "static" / "viewer.html").read_text()
            text = json.dumps(config).replace("</", "<\\/")
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.set_header("Content-Security-Policy", CSP)
            self.set_header("Cache-Control", "no-cache")
            self.write(template.replace("__CONFIG__", text))

    return tornado.web.Application([
        (r"/aladin/(.*)", Static, {"path": str(server.aladin_dir)}),
        (r"/hips/([^/]+)/(.*)", HiPSFiles, {"path": "/nonexistent"}),
        (r"/view/([0-9a-f]+)", Page),
    ])


_SERVER: _Server | None = None
_SERVER_LOCK = threading.Lock()


def hips_server() -> _Server:
    """The process's viewer server, started on first use."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None:
            server = _Server()
            server.start(aladin_lite_path())
            _SERVER = server
        return _SERVER


# ----------------------------------------------------------------------------- regions
def _regions(regions: Any) -> list[dict[str, Any]]:
    """Detection regions as simple shapes for Aladin (degrees)."""
    if regions is None:
        return []
    import astropy.units as u

    if isinstance(regions, str | os.PathLike) or hasattr(regions, "regions") or \
            type(regions).__module__.startswith("regions"):
        from regions import Regions

        if isinstance(regions, str | os.PathLike):
            text = str(regions)
            if Path(text).exists():
                regions = Regions.read(text, format="ds9")
            elif "(" in text:
                regions = Regions.parse(text, format="ds9")
            else:
                raise VanotebookInputError("regions", "a DS9 region file or text", text)
        items = list(regions) if not hasattr(regions, "center") else [regions]
        out = []
        for r in items:
            kind = type(r).__name__
            if not hasattr(r, "center") and hasattr(r, "vertices") and "Sky" in kind:
                v = r.vertices.icrs
                out.append({"type": "polygon", "vertices": [[float(a), float(b)] for a, b in
                            zip(v.ra.deg, v.dec.deg, strict=True)]})
                continue
            if "Sky" not in kind:
                raise VanotebookInputError("regions", "sky regions (not pixel regions)", kind)
            c = r.center.icrs
            if kind == "CircleSkyRegion":
                out.append({"type": "circle", "ra": c.ra.deg, "dec": c.dec.deg,
                            "radius": r.radius.to_value(u.deg)})
            elif kind == "EllipseSkyRegion":
                out.append({"type": "ellipse", "ra": c.ra.deg, "dec": c.dec.deg,
                            "a": r.width.to_value(u.deg) / 2, "b": r.height.to_value(u.deg) / 2,
                            "theta": r.angle.to_value(u.deg)})
            elif kind == "PolygonSkyRegion":
                v = r.vertices.icrs
                out.append({"type": "polygon", "vertices": [[float(a), float(b)] for a, b in
                            zip(v.ra.deg, v.dec.deg, strict=True)]})
            else:
                raise VanotebookInputError("regions", "circle, ellipse or polygon sky regions",
                                           kind)
        return out
    if hasattr(regions, "colnames"):
        t = regions
        for col in ("ra", "dec"):
            if col not in t.colnames:
                raise VanotebookInputError("regions", "a table with ra, dec, major, minor, pa "
                                           "columns", t.colnames)

        def deg(col: str, default_unit: Any) -> np.ndarray:
            q = t[col]
            unit = getattr(q, "unit", None) or default_unit
            return (np.asarray(q, float) * u.Unit(unit)).to_value(u.deg)

        ra, dec = deg("ra", u.deg), deg("dec", u.deg)
        if {"major", "minor"} <= set(t.colnames):  # FWHM axes, PA east of north
            a = deg("minor", u.arcsec) / 2
            b = deg("major", u.arcsec) / 2
            pa = deg("pa", u.deg) if "pa" in t.colnames else np.zeros(len(t))
        elif "radius" in t.colnames:
            a = b = deg("radius", u.arcsec)
            pa = np.zeros(len(t))
        else:
            raise VanotebookInputError("regions", "a table with major and minor (or radius) "
                                       "columns", t.colnames)
        return [{"type": "ellipse", "ra": float(r), "dec": float(d), "a": float(x),
                 "b": float(y), "theta": float(p)}
                for r, d, x, y, p in zip(ra, dec, a, b, pa, strict=True)
                if np.isfinite([r, d, x, y, p]).all()]
    raise VanotebookInputError("regions", "astropy-regions sky regions, a DS9 file or text, "
                               "or a Table with ra, dec, major, minor, pa", regions)


# ----------------------------------------------------------------------------- views
def _hips_folder(folder: Any, argument: str, kind: str) -> Path:
    path = Path(folder)
    props = path / "properties"
    if not props.is_file():
        raise VanotebookInputError(argument, "a HiPS folder (with a properties file)", str(path))
    text = props.read_text()
    is_cat = any(line.replace(" ", "").startswith("dataproduct_type=catalog")
                 for line in text.splitlines())
    if (kind == "catalog") != is_cat:
        raise VanotebookInputError(argument, f"{'a catalogue' if kind == 'catalog' else 'an image'}"
                                   " HiPS", f"{path} ({'catalogue' if is_cat else 'image'})")
    return path


class HiPSView:
    """One viewer page: ``.url`` and a Jupyter display (an IFrame).

    Attributes
    ----------
    url : str
        The page, through jupyter-server-proxy when ``JUPYTERHUB_SERVICE_PREFIX``
        is set (``{prefix}proxy/{port}/view/{id}``), else the loopback address.
    local_url : str
        The loopback address (for a browser on this machine, and tests).
    config : dict
        What the page draws.
    """

    def __init__(self, view_id: str, config: dict[str, Any], server: _Server, *,
                 width: int | str = "100%", height: int = 500) -> None:
        self.id = view_id
        self.config = config
        self.port = server.port
        self.local_url = f"{server.url}/view/{view_id}"
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
        if prefix:
            self.url = f"{prefix.rstrip('/')}/proxy/{server.port}/view/{view_id}"
        else:
            self.url = self.local_url
        self.width, self.height = width, height

    def __repr__(self) -> str:
        return f"HiPSView({self.url!r})"

    def iframe(self) -> str:
        """The HTML of an iframe showing the page."""
        from html import escape

        width = self.width if isinstance(self.width, str) else f"{self.width}px"
        return (f'<iframe src="{escape(self.url)}" style="width:{width};height:{self.height}px;'
                f'border:0" allowfullscreen></iframe>')

    def _repr_html_(self) -> str:
        return self.iframe()


def view_hips(image_hips: str | os.PathLike | None = None,
              catalogue_hips: str | os.PathLike | None = None, regions: Any = None, *,
              ra: float | None = None, dec: float | None = None, fov: float = 1.0,
              projection: str = "TAN", image_options: dict | None = None,
              catalogue_color: str = "#ffcc00", regions_color: str = "#33ff66",
              height: int = 500) -> HiPSView:
    """Show HiPS folders in Aladin Lite, served from this machine.

    Parameters
    ----------
    image_hips : path, optional
        An image HiPS folder (e.g. from `vanotebook.mosaic.to_hips`): the survey.
    catalogue_hips : path, optional
        A catalogue HiPS folder (`write_catalogue_hips`): a progressive layer.
    regions : optional
        Detection regions drawn as overlays: astropy-regions sky regions (or a
        `regions.Regions`), a DS9 file or text, or a Table with ``ra``, ``dec``,
        ``major``, ``minor`` (FWHM, arcsec when unitless) and ``pa`` (deg).
    ra, dec : float, optional
        Initial centre in degrees (default: the HiPS's ``hips_initial_ra/dec``).
    fov : float
        Initial field of view in degrees.
    projection : str
        Aladin projection ("TAN", "SIN", "AIT", ...).
    image_options : dict, optional
        Options for the image layer (e.g. ``{"colormap": "viridis", "stretch": "asinh"}``).
    catalogue_color, regions_color : str
        Colours of the catalogue and region layers.
    height : int
        Iframe height in pixels.

    Returns
    -------
    HiPSView
        Displays as an IFrame in Jupyter; ``.url`` is the page.
    """
    if image_hips is None and catalogue_hips is None and regions is None:
        raise VanotebookInputError("image_hips", "at least one of image_hips, catalogue_hips, "
                                   "regions", None)
    image = _hips_folder(image_hips, "image_hips", "image") if image_hips else None
    cat = _hips_folder(catalogue_hips, "catalogue_hips", "catalog") if catalogue_hips else None
    shapes = _regions(regions)
    from .._errors import check_positive

    check_positive("fov", fov)
    if ra is None or dec is None:
        guess = _initial(image or cat, shapes)
        ra = guess[0] if ra is None else ra
        dec = guess[1] if dec is None else dec
    if not -90 <= float(dec) <= 90:
        raise VanotebookInputError("dec", "degrees within [-90, 90]", dec)
    server = hips_server()
    config: dict[str, Any] = {"ra": float(ra), "dec": float(dec), "fov": float(fov),
                              "projection": projection, "image": None, "catalogue": None,
                              "image_options": image_options or None,
                              "catalogue_color": catalogue_color,
                              "catalogue_name": cat.name if cat else None,
                              "regions": shapes, "regions_color": regions_color}
    if image is not None:
        config["image"] = f"../hips/{server.mount(image)}/"
    if cat is not None:
        config["catalogue"] = f"../hips/{server.mount(cat)}/"
    view_id = uuid.uuid4().hex
    server.views[view_id] = config
    return HiPSView(view_id, config, server, height=height)


def _properties(folder: Path) -> dict[str, str]:
    out = {}
    for line in (folder / "properties").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _initial(folder: Path | None, shapes: list[dict]) -> tuple[float, float]:
    if folder is not None:
        p = _properties(folder)
        try:
            return float(p["hips_initial_ra"]), float(p["hips_initial_dec"])
        except (KeyError, ValueError):
            pass
    for s in shapes:
        if "ra" in s:
            return s["ra"], s["dec"]
    return 0.0, 0.0


# ----------------------------------------------------------------------------- choosing views
def find_hips(root: str | os.PathLike) -> dict[str, dict[str, str]]:
    """The HiPS folders in ``root`` (it, its subfolders and theirs), by kind and title.

    Parameters
    ----------
    root : path
        A folder; missing is the same as empty.

    Returns
    -------
    dict
        ``{"image": {title: folder}, "catalogue": {title: folder}}``, titles
        from ``obs_title`` (the folder's name when missing or taken), sorted.
    """
    root = Path(root)
    found: dict[str, dict[str, str]] = {"image": {}, "catalogue": {}}
    if not root.is_dir():
        return found
    props = [root / "properties", *root.glob("*/properties"), *root.glob("*/*/properties")]
    for path in sorted(p for p in props if p.is_file()):
        meta = _properties(path.parent)
        kind = "catalogue" if meta.get("dataproduct_type") == "catalog" else "image"
        title = meta.get("obs_title") or path.parent.name
        if title in found[kind]:
            title = f"{title} ({path.parent.name})"
        found[kind][title] = str(path.parent)
    return {kind: dict(sorted(titles.items())) for kind, titles in found.items()}


def framing(ra: Any, dec: Any, *, centre: tuple[float, float] | None = None,
            margin: float = 1.5, min_fov: float = 1 / 60) -> tuple[float, float, float]:
    """A view's centre and field of view that show every one of these sky positions.

    Parameters
    ----------
    ra, dec : array-like
        ICRS positions in degrees (non-finite ones are left out).
    centre : (float, float), optional
        The centre in degrees; by default the positions' mean direction (the
        normalised mean of their unit vectors, right across RA 0 and the poles).
    margin : float
        The field of view over the positions' diameter about the centre (1.5:
        a view 3:2 or squarer still holds them all).
    min_fov : float
        The smallest field of view in degrees (one position alone gets it).

    Returns
    -------
    ra, dec, fov : float
        Degrees; ``fov`` is at most 180.

    Raises
    ------
    VanotebookInputError
        No finite position, or positions whose mean direction is undefined.
    """
    ra_r = np.radians(np.asarray(ra, float).ravel())
    dec_r = np.radians(np.asarray(dec, float).ravel())
    ok = np.isfinite(ra_r) & np.isfinite(dec_r)
    if ra_r.shape != dec_r.shape or not ok.any():
        raise VanotebookInputError("ra", "at least one finite position (ra, dec of the same "
                                   "length)", f"{ok.sum()} finite of {ra_r.size} ra, "
                                   f"{dec_r.size} dec")
    ra_r, dec_r = ra_r[ok], dec_r[ok]
    xyz = np.stack([np.cos(dec_r) * np.cos(ra_r), np.cos(dec_r) * np.sin(ra_r), np.sin(dec_r)])
    if centre is None:
        mean = xyz.mean(axis=1)
        norm = float(np.linalg.norm(mean))
        if norm < 1e-9:
            raise VanotebookInputError("ra", "positions with a mean direction", "positions "
                                       "spread evenly over the sky")
        c = mean / norm
    else:
        a, d = np.radians(float(centre[0])), np.radians(float(centre[1]))
        c = np.array([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])
    ra0 = float(np.degrees(np.arctan2(c[1], c[0])) % 360.0)
    ra0 = 0.0 if ra0 >= 360.0 else ra0  # a tiny negative angle rounds to 360
    dec0 = float(np.degrees(np.arcsin(np.clip(c[2], -1.0, 1.0))))
    # chord -> angle: accurate for tiny separations, where arccos of a dot product is not
    chord = np.linalg.norm(xyz - c[:, None], axis=0)
    radius = float(np.degrees(2 * np.arcsin(np.clip(chord.max() / 2, 0.0, 1.0))))
    return ra0, dec0, float(min(max(2 * radius * margin, min_fov), 180.0))
