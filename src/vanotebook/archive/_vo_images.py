"""Images in the Virtual Observatory: SIA search, downloads into an archive, DaCHS publishing.

* `sia_search` asks an SIA v2 (ObsCore) or SIAP v1 service for the images that
  overlap a region -- the same region argument as `Archive.images` -- and
  returns them in the archive's own column layout (``path`` is the
  ``access_url``), plus the VO columns (``access_url``, ``s_region``,
  ``em_min``/``em_max``, ``t_min``/``t_max``...). Where the protocol cannot say
  the region exactly (SIAP v1 has only boxes; no SIA version takes a MOC), the
  service is asked for a covering shape and the answer is cut to the images
  whose footprint overlaps the region.
* `download_images` fetches the images of such a result into an archive, each
  file written atomically with a provenance record naming the service and
  the query, then indexes them with `Archive.add_images`.
* `images_rd` and `image_metadata` make the resource descriptor with which
  `DaCHS.publish_images` serves FITS images through SIAP v1 (``//siap#pgs``)
  and SIA v2 (``//obscore#publishSIAP`` and a per-resource SIA v2 service).
  DaCHS computes footprints in the image's own frame; we give it ICRS
  polygons computed here, so Galactic images are placed right.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import astropy.units as u
import numpy as np
from astropy.table import MaskedColumn, Table

from .._errors import VanotebookInputError, check_choice
from ..io import Image, atomic_path
from ..provenance import Provenance, sha256_file
from ._regions import Region, parse_region

__all__ = ["download_images", "image_metadata", "images_rd", "sia_search"]

_DEG2 = 41252.96124941927  # square degrees on the sphere
_VO_COLUMNS = ["access_url", "access_format", "access_estsize", "s_region", "em_min", "em_max",
               "t_min", "t_max", "obs_publisher_did", "service"]


# ----------------------------------------------------------------------------- footprints
def edge_polygon(image: Image, per_side: int = 4) -> np.ndarray:
    """ICRS ``(N, 2)`` degrees along the outer pixel edges of ``image``, counter-clockwise.

    ``per_side`` points per edge (corners included once), so images in
    projections whose edges are not great circles keep their shape.
    """
    ny, nx = image.shape[-2], image.shape[-1]
    t = np.linspace(0.0, 1.0, per_side + 1)[:-1]
    x0, x1, y0, y1 = -0.5, nx - 0.5, -0.5, ny - 0.5
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full(t.size, x1), x1 - (x1 - x0) * t,
                         np.full(t.size, x0)])
    ys = np.concatenate([np.full(t.size, y0), y0 + (y1 - y0) * t, np.full(t.size, y1),
                         y1 - (y1 - y0) * t])
    sky = image.celestial.pixel_to_world(xs, ys).icrs
    poly = np.column_stack([sky.ra.deg, sky.dec.deg])
    if not np.all(np.isfinite(poly)):
        raise VanotebookInputError("images", "an image whose edges map to the sky",
                                   "a WCS with invalid edge positions")
    if _signed_area(poly) < 0:  # pgsphere and STC-S want counter-clockwise on the sky
        poly = poly[::-1]
    return poly


def _signed_area(poly: np.ndarray) -> float:
    """Signed area of the polygon in its gnomonic projection (> 0: counter-clockwise on sky)."""
    ra, dec = np.deg2rad(poly[:, 0]), np.deg2rad(poly[:, 1])
    v = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    c = v.sum(axis=0)
    c /= np.linalg.norm(c)
    ref = np.array([0.0, 0.0, 1.0]) if abs(c[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    east = np.cross(ref, c)
    east /= np.linalg.norm(east)
    north = np.cross(c, east)
    w = v @ c
    x, y = (v @ east) / w, (v @ north) / w
    # looking at the sky from inside, east is to the left: flip x to get sky orientation
    return float(0.5 * np.sum(-x * np.roll(y, -1) + np.roll(x, -1) * y))


def _footprint_order(size_deg: float) -> int:
    from ..healpix import pixel_resolution
    from ._images import FOOTPRINT_MAX_ORDER
    from ._index import INDEX_ORDER

    order = INDEX_ORDER
    while order < FOOTPRINT_MAX_ORDER and pixel_resolution(order + 1).to_value(u.deg) >= (
            size_deg / 200):
        order += 1
    return order


def _polygon_moc(poly: np.ndarray, order: int):
    from astropy.coordinates import SkyCoord
    from mocpy import MOC

    moc = MOC.from_polygon_skycoord(SkyCoord(poly[:, 0], poly[:, 1], unit="deg"),
                                    max_depth=order)
    return moc.add_neighbours()  # conservative, like the archive's own footprints


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def parse_s_region(value: Any) -> np.ndarray | tuple[float, float, float] | None:
    """An ObsCore ``s_region`` as ``(N, 2)`` polygon degrees, ``(ra, dec, r)`` circle or None.

    Accepts STC-S strings (``Polygon ICRS ...``, ``Circle ICRS ...``, with or
    without a frame), DALI polygon/circle float arrays, and pgsphere text
    (``{(1.2d, 3.4d), ...}``).
    """
    if value is None or (np.ma.isMaskedArray(value) and np.all(value.mask)):
        return None
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str):
        arr = np.asarray(np.ma.filled(value, np.nan) if np.ma.isMaskedArray(value) else value,
                         float).ravel()
        arr = arr[np.isfinite(arr)]
        if arr.size == 3:
            return float(arr[0]), float(arr[1]), float(arr[2])
        if arr.size >= 6 and arr.size % 2 == 0:
            return arr.reshape(-1, 2)
        return None
    text = value.strip()
    if not text:
        return None
    if text.startswith("{") or text.startswith("<"):  # pgsphere spoly / scircle text
        nums = [float(x) for x in re.findall(_NUM, text)]
        scale = 1.0 if "d" in text else 180.0 / np.pi
        if text.startswith("<") and len(nums) == 3:
            return nums[0] * scale, nums[1] * scale, nums[2] * scale
        return np.asarray(nums, float).reshape(-1, 2) * scale if len(nums) >= 6 else None
    words = text.split()
    shape = words[0].lower()
    nums = [float(x) for x in re.findall(_NUM, " ".join(
        w for w in words[1:] if not re.match(r"^[A-Za-z]", w)))]
    if shape == "circle" and len(nums) == 3:
        return nums[0], nums[1], nums[2]
    if shape == "polygon" and len(nums) >= 6 and len(nums) % 2 == 0:
        return np.asarray(nums, float).reshape(-1, 2)
    if shape in ("box", "position"):
        return None
    return None


def _shape_moc(shape: Any, order: int):
    from astropy.coordinates import Latitude, Longitude
    from mocpy import MOC

    if isinstance(shape, tuple):
        return MOC.from_cone(lon=Longitude(shape[0] * u.deg), lat=Latitude(shape[1] * u.deg),
                             radius=shape[2] * u.deg, max_depth=order, delta_depth=2)
    return _polygon_moc(shape, order)


# ----------------------------------------------------------------------------- search
def _bounding_cone(reg: Region) -> tuple[float, float, float]:
    """A cone (ra, dec, radius deg) that contains the region."""
    if reg.kind == "cone":
        return reg.center[0], reg.center[1], reg.radius
    from astropy.coordinates import SkyCoord

    if reg.kind == "polygon":
        v = reg.vertices
        rad = np.deg2rad(v)
        vec = np.column_stack([np.cos(rad[:, 1]) * np.cos(rad[:, 0]),
                               np.cos(rad[:, 1]) * np.sin(rad[:, 0]), np.sin(rad[:, 1])])
        c = vec.sum(axis=0)
        c /= np.linalg.norm(c)
        centre = SkyCoord(np.degrees(np.arctan2(c[1], c[0])) % 360,
                          np.degrees(np.arcsin(np.clip(c[2], -1, 1))), unit="deg")
        r = float(centre.separation(SkyCoord(v[:, 0], v[:, 1], unit="deg")).deg.max())
        # great-circle edges bulge at most as far as their vertices for small polygons;
        # add a little so the covering cone never clips them
        return float(centre.ra.deg), float(centre.dec.deg), min(r * 1.01 + 1e-6, 180.0)
    centre = SkyCoord(reg.moc.barycenter()).icrs
    r = float(reg.moc.largest_distance_from_coo_to_vertices(centre).to_value(u.deg))
    return float(centre.ra.deg), float(centre.dec.deg), min(r * 1.01 + 1e-6, 180.0)


def _unreachable_error(url: str, exc: Exception) -> VanotebookInputError | None:
    from ._vo import _unreachable

    return _unreachable(url, exc)


def _time_range(epoch: Any) -> tuple[Any, Any]:
    from astropy.time import Time

    from ._epochs import epoch_range

    lo, hi = epoch_range(epoch)
    return (Time(lo if lo is not None else 0.0, format="mjd"),
            Time(hi if hi is not None else 1e6, format="mjd"))


def sia_search(url: str, region: Any, *, band: str | Sequence[str] | None = None,
               wavelength: Any = None, epoch: Any = None, survey: str | Sequence[str] | None = None,
               version: int = 2, maxrec: int | None = None, timeout: float = 60.0) -> Table:
    """Find the images that overlap ``region`` on an SIA service (v2 or SIAP v1).

    Parameters
    ----------
    url : str
        The service's query URL (``.../siap2.xml`` or ``.../siap.xml?``), or an
        SIA v2 base URL whose capabilities name it.
    region
        Any region `parse_region` accepts: a cone ``(ra, dec, radius)``, an
        astropy-regions sky region, polygon vertices or a `mocpy.MOC`. Cones
        and polygons go to SIA v2 as ``CIRCLE``/``POLYGON``; a MOC (and, for
        SIAP v1, every region) is sent as a covering shape and the answer cut
        to the images whose footprints overlap the region.
    band : str or list of str, optional
        Band names, as `Archive.images` takes them (case-insensitive), matched
        against the ``band`` column where the service gives one (SIAP v1's
        ``bandpass_id``).
    wavelength : (min, max) spectral Quantities, optional
        The wavelength range (SIA v2 ``BAND``; applied to the answer for SIAP v1).
    epoch : (start, end), optional
        Observation dates: astropy Time, ISO strings or MJD, either may be None
        (SIA v2 ``TIME``; applied to the answer for SIAP v1, which has none).
    survey : str or list of str, optional
        Keep images whose survey (``obs_collection``) contains one of these.
    version : {2, 1}
        SIA v2 (ObsCore results) or SIAP v1.
    maxrec : int, optional
        The most records the service should return.
    timeout : float
        Seconds to wait for the service.

    Returns
    -------
    astropy.table.Table
        The columns of `Archive.images` (``path`` is the access URL, ``sha256``
        empty unless the service gives it, ``footprint`` a MOC in ASCII made from
        ``s_region``), then ``access_url``, ``access_format``, ``access_estsize``,
        ``s_region`` (STC-S), ``em_min``/``em_max`` [m], ``t_min``/``t_max`` [MJD],
        ``obs_publisher_did`` and ``service``. ``meta["provenance"]`` names the
        service and the query.

    Raises
    ------
    VanotebookInputError
        Bad region, band, epoch or version; or a service that does not answer
        (the message names its URL).
    """
    import pyvo
    import requests

    check_choice("version", version, (1, 2))
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise VanotebookInputError("url", "an http(s) URL of an SIA service", url)
    reg = parse_region(region)
    names = None if band is None else [band] if isinstance(band, str) else list(band)
    if names is not None and not all(isinstance(b, str) for b in names):
        raise VanotebookInputError("band", "band names (str), as Archive.images takes them; "
                                   "use wavelength= for a range", band)
    wl = None
    if wavelength is not None:
        from ._archive import _wavelength_range

        wl = _wavelength_range(wavelength)
    times = None if epoch is None else _time_range(epoch)
    if maxrec is not None and (isinstance(maxrec, bool) or not isinstance(maxrec, int)
                               or maxrec < 1):
        raise VanotebookInputError("maxrec", "a positive integer", maxrec)
    session = requests.Session()
    session.request = _with_timeout(session.request, timeout)
    exact = False
    query: dict[str, Any] = {"version": version}
    try:
        if version == 2:
            if reg.kind == "cone":
                pos: Any = (reg.center[0], reg.center[1], reg.radius)
                exact = True
            elif reg.kind == "polygon":
                pos = tuple(float(x) for x in reg.vertices.ravel())
                exact = True
            else:
                pos = _bounding_cone(reg)
            query.update(pos=list(pos))
            kwargs: dict[str, Any] = {}
            if wl is not None:
                kwargs["band"] = (wl[0] * u.m, wl[1] * u.m)
                query["band_m"] = list(wl)
            if times is not None:
                kwargs["time"] = times
                query["time_mjd"] = [times[0].mjd, times[1].mjd]
            check = not (url.endswith(".xml") or "?" in url)
            service = pyvo.dal.SIA2Service(url, session=session, check_baseurl=check)
            result = service.search(pos=pos, maxrec=maxrec, **kwargs)
            table = _from_obscore(result.to_table(), url)
        else:
            ra, dec, r = _bounding_cone(reg)
            size = 2 * r
            query.update(pos=[ra, dec], size=size)
            service = pyvo.dal.SIAService(url, session=session)
            result = service.search(pos=(ra, dec), size=size, intersect="OVERLAPS",
                                    maxrec=maxrec)
            table = _from_siap1(result, url)
    except (requests.RequestException, pyvo.dal.DALServiceError, pyvo.dal.DALAccessError,
            pyvo.dal.DALFormatError) as exc:
        named = _unreachable_error(url, exc)
        if named is not None:
            raise named from exc
        raise
    keep = np.ones(len(table), bool)
    if not exact and len(table):
        keep &= _overlapping(table, reg)
    if names is not None:
        bands = {b.lower() for b in names}
        col = table["band"]
        keep &= np.array([(not np.ma.is_masked(b)) and str(b).lower() in bands for b in col],
                         bool)
    if survey is not None:
        wanted = [survey] if isinstance(survey, str) else list(survey)
        keep &= np.array([(not np.ma.is_masked(s)) and any(w.lower() in str(s).lower()
                                                             for w in wanted)
                          for s in table["survey"]], bool)
    if wl is not None and version == 1:  # SIAP v1 has no spectral constraint
        lo = np.ma.filled(np.ma.asarray(table["em_min"], float), np.nan)
        hi = np.ma.filled(np.ma.asarray(table["em_max"], float), np.nan)
        mid = np.ma.filled(np.ma.asarray(table["wavelength_m"], float), np.nan)
        lo, hi = np.where(np.isfinite(lo), lo, mid), np.where(np.isfinite(hi), hi, mid)
        keep &= (hi >= wl[0]) & (lo <= wl[1])
    if times is not None and version == 1:
        ep = np.ma.filled(np.ma.asarray(table["epoch_mjd"], float), np.nan)
        keep &= (ep >= times[0].mjd) & (ep <= times[1].mjd)
    table = table[keep]
    table.meta["provenance"] = {
        "activity": "vanotebook.archive.sia_search", "service": url,
        "parameters": {"region": reg.describe(), "band": band, "wavelength": str(wavelength),
                       "epoch": str(epoch), "survey": survey, "maxrec": maxrec,
                       "query": query},
    }
    return table


def _with_timeout(request: Callable, timeout: float) -> Callable:
    def call(*args: Any, **kwargs: Any):
        kwargs.setdefault("timeout", timeout)
        return request(*args, **kwargs)

    return call


def _overlapping(table: Table, reg: Region) -> np.ndarray:
    """Which rows' footprints overlap the region (footprints are conservative MOCs)."""
    from mocpy import MOC

    cache: dict[int, Any] = {}
    out = np.zeros(len(table), bool)
    for i, (fp, order) in enumerate(zip(table["footprint"], table["footprint_order"],
                                        strict=True)):
        if np.ma.is_masked(fp) or not str(fp):
            out[i] = True  # no footprint: keep what the service chose
            continue
        order = int(order)
        if order not in cache:
            cache[order] = reg.to_moc(order)
        out[i] = not MOC.from_string(str(fp), format="ascii").intersection(cache[order]).empty()
    return out


def _col(table: Table, name: str) -> np.ndarray | None:
    for candidate in (name, name.upper(), name.lower()):
        if candidate in table.colnames:
            return table[candidate]
    return None


def _empty_archive_table(n: int) -> Table:
    from ._archive import _IMAGE_COLUMNS
    from ._images import SPECTRAL_COLUMNS

    kinds = {**SPECTRAL_COLUMNS, "hdu": int, "naxis1": int, "naxis2": int,
             "footprint_order": int, "stored": bool,
             "wavelength_m": float, "epoch_mjd": float, "beam_major_arcsec": float,
             "beam_minor_arcsec": float, "beam_pa_deg": float, "pixel_scale_arcsec": float,
             "ra_center": float, "dec_center": float, "radius_deg": float,
             "area_deg2": float}
    table = Table()
    for name in _IMAGE_COLUMNS + _VO_COLUMNS:
        kind = kinds.get(name, float if name in ("em_min", "em_max", "t_min", "t_max") else
                         int if name == "access_estsize" else str)
        if kind is str:
            table[name] = MaskedColumn(np.full(n, "", dtype=object), mask=np.ones(n, bool))
        elif kind is bool:
            table[name] = np.zeros(n, bool)
        else:
            table[name] = MaskedColumn(np.zeros(n, kind), mask=np.ones(n, bool))
    return table


def _set(table: Table, name: str, values: Any) -> None:
    if values is None:
        return
    arr = values if np.ma.isMaskedArray(values) else np.ma.asarray(values)
    data = np.ma.getdata(arr)
    mask = np.ma.getmaskarray(arr)
    col = table[name]
    if col.dtype == object:
        vals = [None if m else (v.decode() if isinstance(v, bytes) else str(v))
                for v, m in zip(data, mask, strict=True)]
        mask = mask | np.array([v in (None, "") for v in vals], bool)
        table[name] = MaskedColumn(np.array([v or "" for v in vals], dtype=object), mask=mask)
    else:
        try:
            num = np.asarray(data, dtype=col.dtype)
        except (TypeError, ValueError):
            return
        if num.dtype.kind == "f":
            mask = mask | ~np.isfinite(num)
        table[name] = MaskedColumn(num, mask=mask)


def _finish(table: Table, shapes: list[Any], url: str) -> Table:
    """Footprints, centres and radii from each row's shape; units; object to str."""
    from astropy.coordinates import SkyCoord

    fps, orders, areas, radii, regions = [], [], [], [], []
    for i, shape in enumerate(shapes):
        if shape is None:
            fps.append("")
            orders.append(0)
            areas.append(np.nan)
            radii.append(np.nan)
            regions.append("")
            continue
        if isinstance(shape, tuple):
            size = 2 * shape[2]
            centre = SkyCoord(shape[0], shape[1], unit="deg")
            radius = shape[2]
            regions.append(f"Circle ICRS {float(shape[0])!r} {float(shape[1])!r} "
                           f"{float(shape[2])!r}")
        else:
            pts = SkyCoord(shape[:, 0], shape[:, 1], unit="deg")
            if not np.ma.is_masked(table["ra_center"][i]):
                centre = SkyCoord(float(table["ra_center"][i]), float(table["dec_center"][i]),
                                  unit="deg")
            else:
                c = pts.cartesian.xyz.value.mean(axis=1)
                centre = SkyCoord(x=c[0], y=c[1], z=c[2], representation_type="cartesian",
                                  frame="icrs")
                centre = SkyCoord(centre.spherical.lon, centre.spherical.lat, frame="icrs")
            radius = float(centre.separation(pts).deg.max())
            size = 2 * radius
            regions.append("Polygon ICRS " + " ".join(f"{float(v)!r}" for v in shape.ravel()))
        order = _footprint_order(size)
        moc = _shape_moc(shape, order)
        fps.append(moc.to_string(format="ascii"))
        orders.append(order)
        areas.append(float(moc.sky_fraction * _DEG2))
        radii.append(radius)
        if np.ma.is_masked(table["ra_center"][i]):
            table["ra_center"][i] = float(centre.ra.deg)
            table["dec_center"][i] = float(centre.dec.deg)
    n = len(shapes)
    _set(table, "footprint", np.ma.array(fps, mask=[not f for f in fps], dtype=object))
    table["footprint_order"] = np.asarray(orders, int) if n else np.zeros(0, int)
    _set(table, "area_deg2", np.asarray(areas, float))
    _set(table, "radius_deg", np.asarray(radii, float))
    _set(table, "s_region", np.ma.array(regions, mask=[not r for r in regions], dtype=object))
    _set(table, "service", np.full(n, url, dtype=object))
    _set(table, "frame", np.full(n, "icrs", dtype=object))
    table["stored"] = np.zeros(n, bool)
    for name in table.colnames:
        if table[name].dtype == object:
            col = table[name]
            table[name] = MaskedColumn(np.asarray(np.ma.getdata(col), str),
                                       mask=np.ma.getmaskarray(col))
    from ._archive import _IMAGE_UNITS

    for name, unit in {**_IMAGE_UNITS, "em_min": "m", "em_max": "m", "t_min": "d",
                       "t_max": "d", "access_estsize": "kbyte"}.items():
        table[name].unit = unit
    return table


def _iso(mjd: np.ndarray) -> np.ma.MaskedArray:
    from astropy.time import Time

    mjd = np.ma.filled(np.ma.asarray(mjd, float), np.nan)
    out = np.array(["" if not np.isfinite(m) else Time(m, format="mjd").isot[:10]
                    for m in mjd], dtype=object)
    return np.ma.array(out, mask=~np.isfinite(mjd))


def _from_obscore(raw: Table, url: str) -> Table:
    """An ObsCore (SIA v2) answer in the archive's layout."""
    n = len(raw)
    table = _empty_archive_table(n)
    for ours, theirs in (("path", "access_url"), ("survey", "obs_collection"),
                         ("telescope", "facility_name"), ("ra_center", "s_ra"),
                         ("dec_center", "s_dec"), ("naxis1", "s_xel1"), ("naxis2", "s_xel2"),
                         ("pixel_scale_arcsec", "s_pixel_scale"), ("epoch_mjd", "t_min"),
                         ("access_url", "access_url"), ("access_format", "access_format"),
                         ("access_estsize", "access_estsize"), ("em_min", "em_min"),
                         ("em_max", "em_max"), ("t_min", "t_min"), ("t_max", "t_max"),
                         ("obs_publisher_did", "obs_publisher_did")):
        _set(table, ours, _col(raw, theirs))
    if np.all(np.ma.getmaskarray(table["pixel_scale_arcsec"])):
        _set(table, "pixel_scale_arcsec", _col(raw, "s_resolution"))
    em = np.ma.array([table["em_min"], table["em_max"]], float)
    _set(table, "wavelength_m", em.mean(axis=0) if n else np.zeros(0))
    _set(table, "date_obs", _iso(table["epoch_mjd"]))
    _set(table, "hdu", np.zeros(n, int))
    regions = _col(raw, "s_region")
    shapes = [None if regions is None else parse_s_region(regions[i]) for i in range(n)]
    return _finish(table, shapes, url)


def _from_siap1(result: Any, url: str) -> Table:
    """A SIAP v1 answer in the archive's layout (footprint from a coverage column or WCS)."""
    from astropy.wcs import WCS

    raw = result.to_table()
    n = len(raw)
    table = _empty_archive_table(n)
    recs = list(result)
    urls = np.array([r.getdataurl() or "" for r in recs], dtype=object)
    _set(table, "path", urls)
    _set(table, "access_url", urls)
    _set(table, "access_format", np.array([r.format or "" for r in recs], dtype=object))
    _set(table, "ra_center", np.array([np.nan if r.pos is None else r.pos.ra.deg
                                       for r in recs], float))
    _set(table, "dec_center", np.array([np.nan if r.pos is None else r.pos.dec.deg
                                        for r in recs], float))
    _set(table, "band", _field(result, raw, "VOX:BandPass_ID"))
    _set(table, "telescope", _field(result, raw, "INST_ID"))
    for ours, theirs in (("sha256", "sha256"), ("survey", "survey")):
        _set(table, ours, _col(raw, theirs))
    lo, hi = _field(result, raw, "VOX:BandPass_LoLimit"), _field(result, raw,
                                                                    "VOX:BandPass_HiLimit")
    ref = _field(result, raw, "VOX:BandPass_RefValue")
    _set(table, "em_min", lo)
    _set(table, "em_max", hi)
    _set(table, "wavelength_m", ref)
    mjd = _field(result, raw, "VOX:Image_MJDateObs")
    _set(table, "epoch_mjd", mjd)
    _set(table, "t_min", mjd)
    _set(table, "t_max", mjd)
    _set(table, "date_obs", _iso(table["epoch_mjd"]))
    _set(table, "access_estsize", _field(result, raw, "VOX:Image_FileSize"))
    if table["access_estsize"].dtype.kind in "iu":  # v1 gives bytes; ObsCore kbytes
        table["access_estsize"] = table["access_estsize"] // 1024
    shapes: list[Any] = []
    naxes, scales = [], []
    coverage = _col(raw, "coverage") if _col(raw, "coverage") is not None else _col(raw,
                                                                                   "s_region")
    for i, rec in enumerate(recs):
        naxis = rec.naxis
        try:
            nx, ny = (int(naxis[0].value), int(naxis[1].value)) if naxis is not None else (0, 0)
        except (TypeError, IndexError, AttributeError):
            nx = ny = 0
        naxes.append((nx, ny))
        scale = rec.scale
        # SIAP v1 gives degrees per pixel (pyvo may carry it as deg / pix)
        scales.append(np.nan if scale is None else float(np.mean(np.abs(
            np.asarray(getattr(scale, "value", scale), float)))) * 3600.0)
        shape = None if coverage is None else parse_s_region(coverage[i])
        if shape is None and nx and ny:
            shape = _siap1_wcs_polygon(rec, nx, ny, WCS)
        shapes.append(shape)
    if n:
        _set(table, "naxis1", np.array([a for a, _ in naxes], int))
        _set(table, "naxis2", np.array([b for _, b in naxes], int))
        table["naxis1"].mask |= table["naxis1"] == 0
        table["naxis2"].mask |= table["naxis2"] == 0
        _set(table, "pixel_scale_arcsec", np.array(scales, float))
    _set(table, "hdu", np.zeros(n, int))
    return _finish(table, shapes, url)


def _field(result: Any, raw: Table, ucd: str) -> np.ndarray | None:
    name = result.fieldname_with_ucd(ucd)
    return None if name is None or name not in raw.colnames else raw[name]


def _siap1_wcs_polygon(rec: Any, nx: int, ny: int, wcs_class: Any) -> np.ndarray | None:
    """The image edges from SIAP v1's WCS fields (projection, refpixel, refvalue, CD)."""
    try:
        proj = rec.coord_projection
        crpix = np.asarray(rec.coord_refpixel, float)
        crval = np.asarray(u.Quantity(rec.coord_refvalue, u.deg).value, float)
        cd = np.asarray(rec.cdmatrix, float).reshape(2, 2)
    except (TypeError, ValueError, AttributeError):
        return None
    if proj is None or not np.all(np.isfinite(crpix)) or not np.all(np.isfinite(cd)):
        return None
    w = wcs_class(naxis=2)
    w.wcs.ctype = [f"RA---{str(proj)[:3]}", f"DEC--{str(proj)[:3]}"]
    w.wcs.crpix, w.wcs.crval, w.wcs.cd = crpix, crval, cd
    image = Image(np.zeros((ny, nx), np.float32), w, w.to_header(), None, None)
    try:
        return edge_polygon(image)
    except VanotebookInputError:
        return None


# ----------------------------------------------------------------------------- download
def download_images(results: Table, archive: Any, *, timeout: float = 120.0,
                    progress: Callable[[str], None] | None = None) -> Table:
    """Fetch the images of an `sia_search` result into an archive and index them.

    Each ``access_url`` is downloaded to a temporary file in the archive's
    ``vo/`` folder, checked to be FITS, renamed to ``vo/SHA256.fits`` (so a
    second download of the same bytes changes nothing) with a provenance
    sidecar ``vo/SHA256.fits.prov.json`` naming the service, the query and the
    URL; then the files are indexed with `Archive.add_images` (grouped by the
    result's survey and band, which override the headers').

    Parameters
    ----------
    results : astropy.table.Table
        An `sia_search` answer, or any table with an ``access_url`` column.
    archive : Archive or path
        The archive to add the images to.
    timeout : float
        Seconds to wait for each download.
    progress : callable, optional
        Called with a message per image.

    Returns
    -------
    astropy.table.Table
        One row per image: ``access_url``, ``path`` (in the archive), ``sha256``,
        ``hdu`` and ``added`` (False when the archive already held it).

    Raises
    ------
    VanotebookInputError
        A table without ``access_url``, a URL that does not answer, or a
        download that is not a FITS image; nothing is indexed then.
    """
    import requests
    from astropy.io import fits

    from ._archive import Archive

    if not isinstance(results, Table) or "access_url" not in results.colnames:
        raise VanotebookInputError("results", "a table with an access_url column (from "
                                   "sia_search)", type(results).__name__)
    arc = archive if isinstance(archive, Archive) else Archive(archive)
    say = progress or (lambda _m: None)
    folder = arc.path / "vo"
    folder.mkdir(exist_ok=True)
    meta = results.meta.get("provenance", {})
    service = meta.get("service")
    groups: dict[tuple[str | None, str | None], list[Path]] = {}
    fetched = []
    for i, row in enumerate(results):
        url = row["access_url"]
        if np.ma.is_masked(url) or not str(url).strip():
            raise VanotebookInputError(f"results[{i}]", "a row with an access_url", "none")
        url = str(url)
        say(f"download {i + 1}/{len(results)}: {url}")
        tmp = folder / f".{os.getpid()}-{i}.fits.part"
        try:
            with atomic_path(tmp, overwrite=True) as part:
                try:
                    with requests.get(url, stream=True, timeout=timeout) as resp:
                        resp.raise_for_status()
                        with open(part, "wb") as fh:
                            for block in resp.iter_content(1 << 20):
                                fh.write(block)
                except requests.RequestException as exc:
                    named = _unreachable_error(url, exc)
                    if named is not None:
                        raise named from exc
                    raise VanotebookInputError("access_url", "a URL that serves the image",
                                               f"{url} ({exc})") from exc
                try:
                    with fits.open(part, memmap=False) as hdul:
                        hdul.verify("silentfix")
                except OSError as exc:
                    raise VanotebookInputError("access_url", "a FITS image", url) from exc
            sha = sha256_file(tmp)
            final = folder / f"{sha}.fits"
            if final.exists():
                tmp.unlink()
            else:
                os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        prov = Provenance("vanotebook.archive.download_images",
                          {"service": service or url, "access_url": url,
                           "query": meta.get("parameters")})
        prov.inputs.append({"path": url, "sha256": sha})
        prov.outputs.append({"path": f"vo/{final.name}", "sha256": sha})
        prov.finish().write_sidecar(final)
        survey = _text(row, "survey")
        band = _text(row, "band")
        groups.setdefault((survey, band), []).append(final)
        fetched.append((url, final, sha))
    added: dict[str, Any] = {}
    for (survey, band), paths in groups.items():
        got = arc.add_images([str(p) for p in paths], survey=survey, band=band,
                             source={"service": service, "query": meta.get("parameters")})
        for row in got:
            added[Path(str(row["path"])).name] = row
    out = Table(names=("access_url", "path", "sha256", "hdu", "added"),
                dtype=(str, str, str, int, bool))
    for url, final, sha in fetched:
        row = added.get(final.name)
        out.add_row((url, str(final), sha, 0 if row is None else int(row["hdu"]),
                     bool(row is not None and row["added"])))
    out.meta["provenance"] = {"activity": "vanotebook.archive.download_images",
                              "service": service, "query": meta.get("parameters"),
                              "outputs": [{"path": str(f), "sha256": s} for _, f, s in fetched]}
    return out


def _text(row: Any, name: str) -> str | None:
    if name not in row.colnames:
        return None
    value = row[name]
    if np.ma.is_masked(value) or not str(value).strip():
        return None
    return str(value)


# ----------------------------------------------------------------------------- DaCHS RD
def image_metadata(image: Image, *, survey: str | None, band: str | None) -> dict[str, Any]:
    """What the resource descriptor tells DaCHS about one image (ICRS, as the archive sees it)."""
    from ._images import image_record

    rec = image_record(image, path="", sha256="", hdu=0, stored=False, survey=survey, band=band,
                       argument="images")
    v = rec.values
    poly = edge_polygon(image)
    header = image.header
    title = header.get("OBJECT") or v["survey"] or "image"
    return {"center": [v["ra_center"], v["dec_center"]], "polygon": poly.tolist(),
            "title": str(title), "instrument": v["telescope"] or header.get("INSTRUME"),
            "mjd": v["epoch_mjd"], "band": v["band"], "wavelength": v["wavelength_m"],
            "survey": v["survey"], "unit": v["unit"]}


def images_rd(name: str, metadata: dict[str, dict[str, Any]], *, title: str,
              description: str, collection: str | None, prov: Provenance) -> str:
    """The resource descriptor serving ``data/*.fits`` through SIAP v1 and SIA v2."""
    meta_py = escape(repr(json.loads(json.dumps(metadata))))  # a Python literal for DaCHS
    from ._vo import rd_header

    first = next(iter(metadata.values()))
    ra, dec = first["center"]
    collection_sql = ("survey" if collection is None else
                      "'" + collection.replace("'", "''") + "'")
    return f"""{rd_header(name, title, description, prov, subject="images", kind="Survey")}
  <table id="main" onDisk="True" mixin="//siap#pgs" adql="True">
    <mixin collectionName={quoteattr(collection_sql)} calibLevel="3"
      >//obscore#publishSIAP</mixin>
    <column name="survey" type="text" ucd="meta.id;obs" verbLevel="15"
      description="Survey the image belongs to"/>
    <column name="sha256" type="text" ucd="meta.checksum" verbLevel="15"
      description="sha256 of the FITS file"/>
  </table>
  <data id="import">
    <sources pattern="data/*.fits"/>
    <fitsProdGrammar qnd="True">
      <rowfilter procDef="//products#define">
        <bind key="table">"\\schema.main"</bind>
      </rowfilter>
    </fitsProdGrammar>
    <make table="main">
      <rowmaker>
        <var key="vn">{meta_py}[\\srcstem]</var>
        <apply procDef="//siap#setMeta">
          <bind key="title">@vn["title"]</bind>
          <bind key="instrument">@vn["instrument"]</bind>
          <bind key="dateObs">@vn["mjd"]</bind>
          <bind key="bandpassId">@vn["band"]</bind>
          <bind key="bandpassRefval">@vn["wavelength"]</bind>
          <bind key="bandpassLo">@vn["wavelength"]</bind>
          <bind key="bandpassHi">@vn["wavelength"]</bind>
        </apply>
        <apply procDef="//siap#computePGS"/>
        <apply name="icrs_footprint">
          <code>
            from gavo.utils import pgsphere
            m = vars["vn"]
            result["centerAlpha"], result["centerDelta"] = m["center"]
            result["coverage"] = pgsphere.SPoly(
              [pgsphere.SPoint.fromDegrees(a, d) for a, d in m["polygon"]])
            result["survey"] = m["survey"]
            result["sha256"] = m["sha256"]
          </code>
        </apply>
      </rowmaker>
    </make>
  </data>
  <service id="siap" allowed="form,siap.xml">
    <meta name="shortName">{escape(name[:16])}</meta>
    <meta name="sia.type">Pointed</meta>
    <meta name="testQuery.pos.ra">{ra!r}</meta>
    <meta name="testQuery.pos.dec">{dec!r}</meta>
    <meta name="testQuery.size.ra">0.1</meta>
    <meta name="testQuery.size.dec">0.1</meta>
    <dbCore queriedTable="main">
      <condDesc original="//siap#protoInput"/>
      <condDesc original="//siap#humanInput"/>
    </dbCore>
  </service>
  <service id="siap2" allowed="form,siap2.xml">
    <meta name="shortName">{escape(name[:16])}</meta>
    <meta name="sia.type">Pointed</meta>
    <dbCore queriedTable="//obscore#ObsCore">
      <FEED source="//siap2#parameters"/>
      <condDesc combining="True">
        <phraseMaker>
          <code>
            yield "source_table = '{name}.main'"
          </code>
        </phraseMaker>
      </condDesc>
    </dbCore>
  </service>
</resource>
"""
