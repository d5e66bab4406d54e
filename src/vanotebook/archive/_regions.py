"""The one region argument of the archive: cones, sky regions, polygons and MOCs.

`parse_region` turns what an astronomer holds -- a cone ``(ra, dec, radius)``,
an astropy-regions sky region, the vertices of a polygon, or a `mocpy.MOC` --
into a `Region`. A region gives two things:

* `Region.cells` / `Region.ranges`: the HEALPix cells (NESTED) that cover it,
  at a chosen order. The cover is conservative: a superset, never a subset,
  so a query that reads only those cells never misses a row.
* `Region.contains`: the exact membership test applied to the rows read.

Cones are tested with the chord length between unit vectors (exact at
arcsecond radii, at the poles and across RA 0/360). Polygons have
great-circle edges (as in mocpy and the IVOA's STC-S); a point is inside when
it is inside the planar polygon of the gnomonic projection centred on the
polygon, which maps great circles to straight lines, so the test is exact for
any simple polygon smaller than a hemisphere. A MOC contains the points of its
cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord

from .._errors import VanotebookInputError
from ..healpix import MAX_ORDER

__all__ = ["REGION_FORMS", "Region", "cone_contains", "parse_region", "polygon_contains"]

REGION_FORMS = ("a cone (ra, dec, radius) with radius an angle Quantity, an astropy-regions sky "
                "region (circle, polygon, rectangle), polygon vertices (SkyCoord or (N, 2) "
                "degrees), or a mocpy.MOC")


# ----------------------------------------------------------------------------- kernels
def _xp(x: Any):
    from array_api_compat import array_namespace

    return array_namespace(x)


def _unit_vectors(ra: Any, dec: Any):
    xp = _xp(ra)
    r = ra * (np.pi / 180.0)
    d = dec * (np.pi / 180.0)
    cd = xp.cos(d)
    return cd * xp.cos(r), cd * xp.sin(r), xp.sin(d)


def cone_contains(ra: Any, dec: Any, center: tuple[float, float], radius_deg: float):
    """Exact cone test: ``separation(point, center) <= radius`` (array-API kernel).

    Uses the chord between unit vectors, ``|p - c| <= 2 sin(r / 2)``, which keeps
    full precision at small radii (unlike ``cos(sep) >= cos(r)``).
    """
    x, y, z = _unit_vectors(ra, dec)
    cr, cd = np.deg2rad(center[0]), np.deg2rad(center[1])
    cx, cy, cz = (float(np.cos(cd) * np.cos(cr)), float(np.cos(cd) * np.sin(cr)),
                  float(np.sin(cd)))
    chord2 = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2
    limit = float((2.0 * np.sin(np.deg2rad(radius_deg) / 2.0)) ** 2)
    return chord2 <= limit


def _tangent_basis(center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning the plane tangent to the sphere at ``center``."""
    ref = np.array([0.0, 0.0, 1.0]) if abs(center[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(ref, center)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(center, e1)


def polygon_contains(ra: Any, dec: Any, vertices: np.ndarray):
    """Exact test for a spherical polygon with great-circle edges (array-API kernel).

    ``vertices`` is an ``(N, 2)`` array of ICRS degrees. Points and vertices are
    projected gnomonically about the vertices' mean direction (great circles
    become straight lines), then tested with the even-odd rule.
    """
    xp = _xp(ra)
    v = np.asarray(vertices, float)
    vx, vy, vz = _unit_vectors(v[:, 0], v[:, 1])
    vec = np.stack([vx, vy, vz], axis=1)
    center = vec.sum(axis=0)
    center /= np.linalg.norm(center)
    e1, e2 = _tangent_basis(center)
    vw = vec @ center
    px_v, py_v = (vec @ e1) / vw, (vec @ e2) / vw
    center, e1, e2 = ([float(c) for c in vec3] for vec3 in (center, e1, e2))
    x, y, z = _unit_vectors(ra, dec)
    w = x * center[0] + y * center[1] + z * center[2]
    front = w > 0
    safe = xp.where(front, w, xp.ones_like(w))
    px = (x * e1[0] + y * e1[1] + z * e1[2]) / safe
    py = (x * e2[0] + y * e2[1] + z * e2[2]) / safe
    inside = xp.zeros_like(front)
    n = v.shape[0]
    for i in range(n):
        x1, y1 = float(px_v[i]), float(py_v[i])
        x2, y2 = float(px_v[(i + 1) % n]), float(py_v[(i + 1) % n])
        if y1 == y2:
            continue
        crosses = (y1 > py) != (y2 > py)
        xcross = x1 + (py - y1) * ((x2 - x1) / (y2 - y1))
        inside = inside ^ (crosses & (px < xcross))
    return inside & front


# ----------------------------------------------------------------------------- regions
@dataclass(frozen=True)
class Region:
    """A sky region in ICRS degrees: a cone, a polygon or a MOC.

    Attributes
    ----------
    kind : {"cone", "polygon", "moc"}
    center : (float, float)
        Cone centre (ra, dec) in degrees (cones only).
    radius : float
        Cone radius in degrees (cones only).
    vertices : ndarray
        ``(N, 2)`` polygon vertices in degrees (polygons only).
    moc : mocpy.MOC
        The MOC (MOCs only).
    """

    kind: str
    center: tuple[float, float] | None = None
    radius: float | None = None
    vertices: np.ndarray | None = None
    moc: Any = None

    def contains(self, ra: Any, dec: Any):
        """Exact membership of positions (degrees, ICRS); an array of bool."""
        if self.kind == "cone":
            return cone_contains(ra, dec, self.center, self.radius)
        if self.kind == "polygon":
            return polygon_contains(ra, dec, self.vertices)
        from astropy.coordinates import Latitude, Longitude

        ra, dec = np.asarray(ra, float), np.asarray(dec, float)
        if ra.size == 0:
            return np.zeros(ra.shape, bool)
        return np.asarray(self.moc.contains_lonlat(Longitude(ra * u.deg),
                                                   Latitude(dec * u.deg)), bool)

    def to_moc(self, order: int):
        """A `mocpy.MOC` at ``order`` covering the region (a superset)."""
        from astropy.coordinates import Latitude, Longitude
        from mocpy import MOC

        order = int(min(max(order, 0), MAX_ORDER))
        if self.kind == "cone":
            return MOC.from_cone(lon=Longitude(self.center[0] * u.deg),
                                 lat=Latitude(self.center[1] * u.deg),
                                 radius=self.radius * u.deg, max_depth=order, delta_depth=2)
        if self.kind == "polygon":
            coords = SkyCoord(self.vertices[:, 0], self.vertices[:, 1], unit="deg")
            moc = MOC.from_polygon_skycoord(coords, max_depth=order)
            # mocpy's polygon cover is cell-centre based at the edges: grow it by one ring
            return moc.add_neighbours()
        if self.moc.max_order > order:
            return self.moc.degrade_to_order(order)
        return self.moc

    def ranges(self, order: int) -> np.ndarray:
        """Covering ``[start, stop)`` ranges of order-29 NESTED indices, shape (K, 2)."""
        return np.asarray(self.to_moc(order).to_depth29_ranges, np.int64).reshape(-1, 2)

    def cells(self, order: int) -> np.ndarray:
        """Sorted NESTED cells at ``order`` that cover the region (a superset)."""
        order = int(order)
        shift = 2 * (MAX_ORDER - order)
        rng = self.ranges(order)
        if rng.size == 0:
            return np.zeros(0, np.int64)
        first, last = rng[:, 0] >> shift, (rng[:, 1] - 1) >> shift
        counts = last - first + 1
        base = np.repeat(first - np.cumsum(counts) + counts, counts)
        return np.unique(np.arange(counts.sum()) + base)

    def query_order(self) -> int:
        """A HEALPix order whose cells are about a tenth of the region's size."""
        if self.kind == "cone":
            size = self.radius
        elif self.kind == "polygon":
            c = SkyCoord(self.vertices[:, 0], self.vertices[:, 1], unit="deg")
            size = max(c[0].separation(c).max().deg / 2, 1e-6)
        else:
            return int(min(self.moc.max_order, 14))
        order = int(np.clip(np.floor(np.log2(58.6 / max(size, 1e-7) * 2.5)), 0, 18))
        return order

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (for provenance and table metadata)."""
        if self.kind == "cone":
            return {"kind": "cone", "ra": self.center[0], "dec": self.center[1],
                    "radius_deg": self.radius}
        if self.kind == "polygon":
            return {"kind": "polygon", "vertices": self.vertices.tolist()}
        return {"kind": "moc", "moc": self.moc.to_string(format="ascii")}


def _angle_deg(value: Any, argument: str) -> float:
    if isinstance(value, u.Quantity):
        if value.unit.physical_type != "angle" or value.size != 1:
            raise VanotebookInputError(argument, "an angle (degrees or a Quantity)", value)
        return float(value.to_value(u.deg))
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise VanotebookInputError(argument, "an angle (degrees or a Quantity)", value)
    return float(value)


def _check_dec(dec: np.ndarray | float, argument: str = "dec") -> None:
    d = np.atleast_1d(np.asarray(dec, float))
    if not np.all(np.isfinite(d)) or d.min(initial=0) < -90 or d.max(initial=0) > 90:
        raise VanotebookInputError(argument, "declinations within [-90, 90] deg", dec)


def make_cone(ra: Any, dec: Any, radius: Any) -> Region:
    """A cone region; ``radius`` must be an angle Quantity."""
    if not isinstance(radius, u.Quantity) or radius.unit.physical_type != "angle" or (
        radius.size != 1
    ):
        raise VanotebookInputError("radius", "an angle Quantity such as 1 * u.arcmin", radius)
    r = float(radius.to_value(u.deg))
    if not (0 < r <= 180):
        raise VanotebookInputError("radius", "an angle in (0, 180] deg", radius)
    ra_deg, dec_deg = _angle_deg(ra, "ra"), _angle_deg(dec, "dec")
    _check_dec(dec_deg)
    if not np.isfinite(ra_deg):
        raise VanotebookInputError("ra", "a finite right ascension", ra)
    return Region("cone", center=(ra_deg % 360.0, dec_deg), radius=r)


def _polygon(coords: SkyCoord, argument: str) -> Region:
    coords = coords.icrs
    if coords.size < 3:
        raise VanotebookInputError(argument, "a polygon with at least 3 vertices", coords)
    verts = np.column_stack([coords.ra.deg, coords.dec.deg])
    return Region("polygon", vertices=verts)


def parse_region(region: Any, *, argument: str = "region") -> Region:
    """Turn any accepted region form into a `Region`.

    Parameters
    ----------
    region
        ``(ra, dec, radius)`` (ra/dec in degrees or angle Quantities, radius an
        angle Quantity), or a SkyCoord centre with a radius ``(SkyCoord, radius)``;
        an astropy-regions ``CircleSkyRegion``, ``PolygonSkyRegion`` or
        ``RectangleSkyRegion`` (any celestial frame); polygon vertices as a
        SkyCoord or an ``(N, 2)`` array of ICRS degrees; a `mocpy.MOC`; or a `Region`.
    argument : str
        Name used in error messages.

    Returns
    -------
    Region
    """
    if isinstance(region, Region):
        return region
    module = type(region).__module__
    name = type(region).__name__
    if module.startswith("mocpy"):
        if name != "MOC":
            raise VanotebookInputError(argument, REGION_FORMS, region)
        return Region("moc", moc=region)
    if module.startswith("regions"):
        if name == "CircleSkyRegion":
            c = region.center.icrs
            return make_cone(c.ra.deg, c.dec.deg, region.radius)
        if name == "PolygonSkyRegion":
            return _polygon(region.vertices, argument)
        if name == "RectangleSkyRegion":
            return _rectangle(region)
        raise VanotebookInputError(argument, REGION_FORMS, f"a {name}")
    if isinstance(region, SkyCoord):
        return _polygon(region, argument)
    if isinstance(region, tuple | list) and len(region) == 2 and isinstance(region[0], SkyCoord):
        c = region[0].icrs
        return make_cone(c.ra.deg, c.dec.deg, region[1])
    if isinstance(region, tuple | list) and len(region) == 3 and not np.ndim(region[0]):
        return make_cone(*region)
    if isinstance(region, tuple | list | np.ndarray):
        try:
            verts = np.asarray(region, float)
        except (TypeError, ValueError) as exc:
            raise VanotebookInputError(argument, REGION_FORMS, region) from exc
        if verts.ndim != 2 or verts.shape[1] != 2 or verts.shape[0] < 3:
            raise VanotebookInputError(argument, REGION_FORMS, region)
        _check_dec(verts[:, 1], argument)
        return Region("polygon", vertices=np.column_stack([verts[:, 0] % 360.0, verts[:, 1]]))
    raise VanotebookInputError(argument, REGION_FORMS, region)


def _rectangle(region: Any) -> Region:
    """A sky rectangle as the great-circle polygon through its four corners.

    astropy-regions' (and DS9's) convention: the width axis lies along the
    longitude axis at ``angle = 0`` and turns anti-clockwise on the sky as
    displayed (north up, east left), i.e. towards north from *west*: its
    position angle is ``angle - 90 deg``. regions tests membership in the
    pixel frame, where the box is a plane rectangle in the tangent plane at
    the centre; the corners are therefore placed gnomonically in that plane
    (in the centre's own frame), and the great circles through them are the
    straight edges of that rectangle, so the test agrees with regions'
    ``contains`` for a TAN WCS at the centre.
    """
    c = region.center
    w = np.tan(region.width.to_value(u.rad) / 2)
    h = np.tan(region.height.to_value(u.rad) / 2)
    pa = region.angle.to_value(u.rad) - np.pi / 2  # position angle of the width axis
    width_axis = np.array([np.sin(pa), np.cos(pa)])  # (east, north) in the tangent plane
    height_axis = np.array([np.cos(pa), -np.sin(pa)])
    offsets = np.array([sx * w * width_axis + sy * h * height_axis
                        for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
    east, north = offsets[:, 0], offsets[:, 1]
    # a tangent-plane point (east, north) is the direction (1, east, north) in the offset
    # frame centred on c (x towards c, y east, z north)
    lon = np.arctan2(east, 1.0)
    lat = np.arctan2(north, np.hypot(1.0, east))
    corners = SkyCoord(lon * u.rad, lat * u.rad, frame=c.skyoffset_frame())
    return _polygon(SkyCoord(corners.transform_to(c.frame)), "region")
