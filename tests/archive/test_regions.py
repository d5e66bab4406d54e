from __future__ import annotations

import array_api_strict as xps
import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from mocpy import MOC
from regions import CircleSkyRegion, PolygonSkyRegion, RectangleSkyRegion

from vanotebook import VanotebookInputError
from vanotebook.archive import parse_region
from vanotebook.archive._catalogue import healpix29
from vanotebook.archive._regions import cone_contains, polygon_contains


def _sky(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))


def _near(ra, dec, radius, n, seed=1):
    """Points clustered around a centre, many close to the radius."""
    rng = np.random.default_rng(seed)
    c = SkyCoord(ra * u.deg, dec * u.deg)
    pa = rng.uniform(0, 360, n) * u.deg
    sep = radius * np.sqrt(rng.uniform(0, 4, n))
    p = c.directional_offset_by(pa, sep)
    return p.ra.deg, p.dec.deg


CONES = [(0.0, 90.0, 2 * u.deg), (77.0, -90.0, 30 * u.arcmin), (0.01, 0.0, 1 * u.arcmin),
         (359.99, 10.0, 6 * u.arcmin), (180.0, 89.9, 1 * u.deg), (10.0, -45.0, 20 * u.deg),
         (359.5, -89.8, 1 * u.deg)]


@pytest.mark.parametrize(("ra", "dec", "radius"), CONES)
def test_cone_is_exact_against_astropy_and_cover_is_conservative(ra, dec, radius):
    pr, pd = _near(ra, dec, radius, 20_000)
    reg = parse_region((ra, dec, radius))
    truth = SkyCoord(pr * u.deg, pd * u.deg).separation(SkyCoord(ra * u.deg, dec * u.deg)) \
        <= radius
    got = reg.contains(pr, pd)
    assert truth.sum() > 100
    np.testing.assert_array_equal(got, truth)
    for order in (3, 8, 12) if radius < 1 * u.deg else (3, 6, 8):
        cells = reg.cells(order)
        pix = healpix29(pr[truth], pd[truth]) >> (2 * (29 - order))
        assert np.isin(pix, cells).all()
        assert cells.size < 12 * 4**order  # it is a cover, not the whole sky


def test_polygon_matches_an_independent_half_space_test():
    # a convex quadrilateral across RA 0/360, vertices counter-clockwise seen from outside
    verts = np.array([[355.0, -5.0], [5.0, -5.0], [6.0, 4.0], [354.0, 5.0]])
    pr, pd = _near(0.0, 0.0, 5 * u.deg, 50_000)
    got = parse_region(verts).contains(pr, pd)
    v = SkyCoord(verts[:, 0], verts[:, 1], unit="deg").cartesian.xyz.value.T
    p = SkyCoord(pr, pd, unit="deg").cartesian.xyz.value.T
    inside = np.ones(pr.size, bool)
    for i in range(4):
        normal = np.cross(v[i], v[(i + 1) % 4])
        inside &= p @ normal >= 0
    assert 1000 < got.sum() < pr.size
    np.testing.assert_array_equal(got, inside)
    pix = healpix29(pr[got], pd[got]) >> (2 * (29 - 9))
    assert np.isin(pix, parse_region(verts).cells(9)).all()


def test_polygon_around_the_pole():
    verts = [[0, 85], [90, 85], [180, 85], [270, 85]]
    pr, pd = _sky(200_000, 2)
    got = parse_region(verts).contains(pr, pd)
    # the great-circle square around the pole: inside iff on the inner side of each edge
    v = SkyCoord([a for a, _ in verts], [b for _, b in verts], unit="deg").cartesian.xyz.value.T
    p = SkyCoord(pr, pd, unit="deg").cartesian.xyz.value.T
    inside = np.ones(pr.size, bool)
    for i in range(4):
        inside &= p @ np.cross(v[i], v[(i + 1) % 4]) >= 0
    assert inside.sum() > 50
    np.testing.assert_array_equal(got, inside)


def test_sky_regions_and_moc():
    c = SkyCoord(30 * u.deg, 0.5 * u.deg, frame="galactic")
    circle = parse_region(CircleSkyRegion(c, 10 * u.arcmin))
    assert circle.kind == "cone"
    assert circle.center[0] == pytest.approx(c.icrs.ra.deg)
    pr, pd = _near(c.icrs.ra.deg, c.icrs.dec.deg, 10 * u.arcmin, 5000)
    truth = SkyCoord(pr, pd, unit="deg").separation(c) <= 10 * u.arcmin
    np.testing.assert_array_equal(circle.contains(pr, pd), truth)

    rect = parse_region(RectangleSkyRegion(SkyCoord(10, 20, unit="deg"), 2 * u.deg, 1 * u.deg))
    assert rect.kind == "polygon"
    assert rect.contains(np.array([10.0, 10.0, 12.0]), np.array([20.0, 20.4, 20.0])).tolist() \
        == [True, True, False]
    poly = parse_region(PolygonSkyRegion(SkyCoord([0, 2, 1], [0, 0, 2], unit="deg")))
    assert poly.contains(np.array([1.0, 1.0]), np.array([0.5, 3.0])).tolist() == [True, False]

    moc = MOC.from_cone(lon=10 * u.deg, lat=10 * u.deg, radius=1 * u.deg, max_depth=9)
    reg = parse_region(moc)
    pr, pd = _near(10, 10, 1 * u.deg, 5000)
    np.testing.assert_array_equal(reg.contains(pr, pd),
                                  moc.contains_lonlat(pr * u.deg, pd * u.deg))


def test_kernels_run_on_array_api_strict():
    pr, pd = _near(359.9, 60.0, 1 * u.deg, 2000)
    ref = cone_contains(pr, pd, (359.9, 60.0), 1.0)
    got = cone_contains(xps.asarray(pr), xps.asarray(pd), (359.9, 60.0), 1.0)
    np.testing.assert_array_equal(np.asarray(got), ref)
    verts = np.array([[359.0, 59.0], [1.0, 59.0], [0.5, 61.0]])
    ref = polygon_contains(pr, pd, verts)
    got = polygon_contains(xps.asarray(pr), xps.asarray(pd), verts)
    np.testing.assert_array_equal(np.asarray(got), ref)
    assert ref.any() and not ref.all()


@pytest.mark.parametrize(("region", "argument", "expected"), [
    ((10.0, 20.0, 1.0), "radius", "angle Quantity"),
    ((10.0, 95.0, 1 * u.deg), "dec", r"\[-90, 90\]"),
    ((10.0, 20.0, 1 * u.m), "radius", "angle Quantity"),
    ("a string", "region", "cone"),
    ([[0, 0], [1, 1]], "region", "cone"),
    ([[0, 0], [1, 91], [2, 0]], "region", r"\[-90, 90\]"),
])
def test_bad_regions_are_named(region, argument, expected):
    with pytest.raises(VanotebookInputError, match=f"^{argument}: expected .*{expected}"):
        parse_region(region)
