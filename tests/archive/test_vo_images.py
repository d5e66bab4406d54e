"""Images through the VO: publish demo tiles to a real DaCHS, find them with SIA, download them.

The same images go into a local `Archive`; every SIA answer (v2 and SIAP v1,
through pyvo) is compared image by image with `Archive.images` for the same
region, and both with a brute-force test over the images' pixels. CI starts
DaCHS and sets VANOTEBOOK_REQUIRE_DACHS=1, so these tests fail there rather
than skip.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from mocpy import MOC

from vanotebook import VanotebookInputError
from vanotebook.archive import Archive, parse_region
from vanotebook.archive._vo import DaCHS, _product_kind, download_images, sia_search
from vanotebook.archive._vo_images import parse_s_region
from vanotebook.provenance import sha256_file
from vanotebook.sky import demo_sky

CONE = (281.35, -2.85, 8 * u.arcmin)  # overlaps radio tile 0 and the Galactic fir250 tile


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """Three radio tiles (ICRS SIN) as files and one fir250 tile (Galactic TAN) in memory."""
    sky = demo_sky(0, size=0.5, n_catalogue=1000)
    folder = tmp_path_factory.mktemp("tiles")
    paths = []
    for i, hdul in enumerate(sky.observe("radio").tiles[:3]):
        hdul.writeto(folder / f"radio{i}.fits")
        paths.append(folder / f"radio{i}.fits")
    fir = sky.observe("fir250").tiles[0]
    return paths, fir


@pytest.fixture(scope="module")
def published(tiles, tmp_path_factory, dachs_url):
    paths, fir = tiles
    inputs = [str(p) for p in paths] + [fir]
    local = Archive(tmp_path_factory.mktemp("local") / "archive")
    local.add_images(inputs)
    name = f"vn_{uuid.uuid4().hex[:8]}"
    server = DaCHS(dachs_url)
    pub = server.publish(inputs, name, title="demo tiles")  # dispatches to publish_images
    yield pub, local, paths
    server.unpublish(name)


def _brute_force(local: Archive, region) -> dict[str, float]:
    """Per image (keyed by sha256): does any pixel-edge sample fall in the region."""
    reg = parse_region(region)
    out = {}
    for row in local.images():
        with fits.open(row["path"]) as hdul:
            header = hdul[0].header
        wcs = WCS(header).celestial
        nx, ny = header["NAXIS1"], header["NAXIS2"]
        xs, ys = np.meshgrid(np.linspace(-0.5, nx - 0.5, 300), np.linspace(-0.5, ny - 0.5, 300))
        sky = wcs.pixel_to_world(xs.ravel(), ys.ravel()).icrs
        out[str(row["sha256"])] = bool(np.any(reg.contains(sky.ra.deg, sky.dec.deg)))
    return out


def _key(pub, table: Table) -> list[str]:
    """sha256 of each answer row, from the published file its access URL names."""
    by_name = {Path(i["path"]).name: i["sha256"] for i in pub.provenance.inputs}
    return [by_name[str(p).rsplit("/", 1)[-1]] for p in table["access_url"]]


REGIONS = {
    "cone": lambda: CONE,
    # (edges at least 4' from the images they miss: the archive's footprints are conservative
    # by up to a few HEALPix cells, the server's polygons are exact)
    "polygon": lambda: np.array([[281.33, -2.77], [281.37, -2.77], [281.37, -2.73],
                                 [281.33, -2.73]]),
    "moc": lambda: MOC.from_cone(lon=281.62 * u.deg, lat=-2.95 * u.deg, radius=2 * u.arcmin,
                                 max_depth=11),
}


@pytest.mark.dachs
@pytest.mark.e2e
@pytest.mark.parametrize("version", [2, 1])
@pytest.mark.parametrize("kind", list(REGIONS))
def test_sia_answers_match_local_archive_image_by_image(published, version, kind):
    pub, local, _ = published
    region = REGIONS[kind]()
    truth = _brute_force(local, region)
    expected = {k for k, v in truth.items() if v}
    assert 0 < len(expected) < len(truth)  # the region overlaps some images, not all
    remote = sia_search(pub.sia_url if version == 2 else pub.siap_url, region, version=version)
    mine = local.images(region)
    assert set(mine["sha256"]) == expected
    assert sorted(_key(pub, remote)) == sorted(expected)
    # the same images, with the same metadata and footprints
    by_sha = {str(r["sha256"]): r for r in mine}
    for sha, row in zip(_key(pub, remote), remote, strict=True):
        ours = by_sha[sha]
        here = SkyCoord(ours["ra_center"], ours["dec_center"], unit="deg")
        there = SkyCoord(row["ra_center"], row["dec_center"], unit="deg")
        assert here.separation(there) < 0.01 * u.arcsec
        assert row["survey"] == ours["survey"]
        assert row["naxis1"] == ours["naxis1"] and row["naxis2"] == ours["naxis2"]
        assert row["pixel_scale_arcsec"] == pytest.approx(ours["pixel_scale_arcsec"], rel=1e-6)
        assert row["epoch_mjd"] == pytest.approx(ours["epoch_mjd"])
        assert row["wavelength_m"] == pytest.approx(ours["wavelength_m"], rel=1e-6)
        assert row["radius_deg"] == pytest.approx(ours["radius_deg"], rel=1e-3)
        if version == 1:
            assert row["band"] == ours["band"] and row["sha256"] == sha
        a = MOC.from_string(str(row["footprint"]), format="ascii")
        b = MOC.from_string(str(ours["footprint"]), format="ascii")
        overlap = a.intersection(b).sky_fraction / a.union(b).sky_fraction
        assert overlap > 0.97
        assert row["area_deg2"] == pytest.approx(ours["area_deg2"], rel=0.03)
        # the server's polygon has the image's corners on it (ICRS, even for Galactic tiles)
        poly = parse_s_region(row["s_region"])
        with fits.open(ours["path"]) as hdul:
            h = hdul[0].header
        corners = WCS(h).celestial.pixel_to_world([-0.5, h["NAXIS1"] - 0.5],
                                                 [-0.5, h["NAXIS2"] - 0.5]).icrs
        verts = SkyCoord(poly[:, 0], poly[:, 1], unit="deg")
        for corner in corners:
            assert corner.separation(verts).min() < 0.01 * u.arcsec


@pytest.mark.dachs
@pytest.mark.e2e
@pytest.mark.parametrize("version", [2, 1])
def test_wavelength_and_epoch_filters_match_local(published, version):
    pub, local, _ = published
    url = pub.sia_url if version == 2 else pub.siap_url
    wide = (281.5, -2.7, 1 * u.deg)
    radio = (15 * u.cm, 30 * u.cm)
    got = sia_search(url, wide, wavelength=radio, version=version)
    mine = local.images(wide, wavelength=radio)
    assert len(mine) == 3 and sorted(_key(pub, got)) == sorted(mine["sha256"])
    epoch = ("2010-01-01", "2012-01-01")  # the fir250 tile only (MJD 55440)
    got = sia_search(url, wide, epoch=epoch, version=version)
    mine = local.images(wide, epoch=epoch)
    assert len(mine) == 1 and _key(pub, got) == list(mine["sha256"])
    named = sia_search(url, wide, survey="HIGAL", version=version)
    assert _key(pub, named) == list(local.images(wide, survey="HIGAL")["sha256"])


@pytest.mark.dachs
@pytest.mark.e2e
def test_download_into_archive_same_bytes_with_provenance(published, tmp_path):
    pub, local, paths = published
    found = sia_search(pub.sia_url, CONE)
    one = found[[str(p).endswith("_0000.fits") for p in found["access_url"]]]
    assert len(one) == 1  # radio tile 0, published from a file byte for byte
    arc = Archive(tmp_path / "downloads")
    got = download_images(one, arc)
    assert list(got["added"]) == [True]
    original = sha256_file(paths[0])
    assert got["sha256"][0] == original == sha256_file(got["path"][0])
    indexed = arc.images(CONE)
    assert list(indexed["sha256"]) == [original]
    assert indexed["survey"][0] == local.images(CONE, survey="RADIO")["survey"][0]
    prov = json.loads(Path(f"{got['path'][0]}.prov.json").read_text())["vanotebook"]
    assert prov["parameters"]["service"] == pub.sia_url
    assert prov["parameters"]["access_url"] == one["access_url"][0]
    assert prov["parameters"]["query"]["region"]["kind"] == "cone"
    assert prov["outputs"][0]["sha256"] == original
    again = download_images(one, arc)  # the same bytes twice change nothing
    assert list(again["added"]) == [False] and len(arc.images()) == 1
    assert len(arc.ingests()) == 1


def test_unreachable_service_is_named(tmp_path):
    for version in (1, 2):
        with pytest.raises(VanotebookInputError,
                           match=r"url: expected a VO service.*127\.0\.0\.1:9"):
            sia_search("http://127.0.0.1:9/x/siap2.xml", CONE, version=version)
    table = Table({"access_url": ["http://127.0.0.1:9/img.fits"]})
    arc = Archive(tmp_path / "arc")
    with pytest.raises(VanotebookInputError, match=r"127\.0\.0\.1:9/img\.fits"):
        download_images(table, arc)
    assert len(arc.images()) == 0
    assert not list((arc.path / "vo").iterdir())  # no half-written download


def test_bad_input_is_named(tmp_path, tiles, dachs_url):
    with pytest.raises(VanotebookInputError, match="version: expected"):
        sia_search("http://127.0.0.1:9/siap2.xml", CONE, version=3)
    with pytest.raises(VanotebookInputError, match="radius: expected an angle"):
        sia_search("http://127.0.0.1:9/siap2.xml", (10.0, 10.0, 0.1))
    with pytest.raises(VanotebookInputError, match="band: expected band names"):
        sia_search("http://127.0.0.1:9/siap2.xml", CONE, band=(1 * u.um, 2 * u.um))
    with pytest.raises(VanotebookInputError, match="url: expected an http"):
        sia_search("localhost:8080/siap2.xml", CONE)
    with pytest.raises(VanotebookInputError, match="results: expected a table with an "
                                                   "access_url"):
        download_images(Table({"path": ["x"]}), tmp_path / "arc")
    server = DaCHS(dachs_url, inputs=tmp_path / "inputs")
    (tmp_path / "inputs").mkdir()
    with pytest.raises(VanotebookInputError, match="name: expected lower-case"):
        server.publish_images(tiles[0], "Bad-Name")
    notfits = tmp_path / "x.fits"
    notfits.write_text("not FITS")
    with pytest.raises(VanotebookInputError, match=r"images\[0\]: expected a FITS file"):
        server.publish_images([str(notfits)], "ok_name")
    assert not any((tmp_path / "inputs").iterdir())  # nothing written for refused input


def test_publish_dispatches_on_the_product(tmp_path, tiles):
    paths, fir = tiles
    table = Table({"ra": [1.0, 2.0], "dec": [0.0, 1.0]})
    table.write(tmp_path / "cat.fits")
    assert _product_kind(table) == "catalogue"
    assert _product_kind(table.to_pandas()) == "catalogue"
    assert _product_kind(str(tmp_path / "cat.fits")) == "catalogue"
    assert _product_kind(str(paths[0])) == "images"
    assert _product_kind([str(p) for p in paths]) == "images"
    assert _product_kind(fir) == "images"


@pytest.mark.parametrize("text, n", [
    ("Polygon ICRS 1 2 3 4 5 6", 3), ("POLYGON 1.5 2 3 4e0 5 6 7 8", 4),
    ("{(0.1d , 0.2d),(0.3d , 0.2d),(0.3d , 0.4d)}", 3)])
def test_parse_s_region_forms(text, n):
    poly = parse_s_region(text)
    assert poly.shape == (n, 2)
    assert parse_s_region("Circle ICRS 10 20 0.5") == (10.0, 20.0, 0.5)
    assert parse_s_region(np.array([10.0, 20.0, 0.5])) == (10.0, 20.0, 0.5)
    assert parse_s_region("") is None
