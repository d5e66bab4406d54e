from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from vanotebook import VanotebookInputError
from vanotebook.archive import Archive
from vanotebook.io import parse_image
from vanotebook.provenance import sha256_file
from vanotebook.sky import SURVEYS


@pytest.fixture(scope="module")
def files(tmp_path_factory, sky):
    root = tmp_path_factory.mktemp("img")
    paths = []
    for key in SURVEYS:
        for k, hdul in enumerate(sky.images(key)):
            path = root / key / f"{key}_{k}.fits"
            path.parent.mkdir(exist_ok=True)
            hdul.writeto(path)
            paths.append(path)
    return root, paths


@pytest.fixture(scope="module")
def archive(tmp_path_factory, files):
    root, _ = files
    arc = Archive(tmp_path_factory.mktemp("a") / "arc")
    arc.add_images(str(root / "*" / "*.fits"))
    return arc


def test_metadata_comes_from_the_headers(archive, files):
    _, paths = files
    table = archive.images()
    assert len(table) == len(paths)
    by_path = dict(zip(table["path"], table, strict=True))
    for path in paths:
        row = by_path[str(path.resolve())]
        header = fits.getheader(path)
        image = parse_image(path)
        assert row["sha256"] == sha256_file(path)
        assert row["survey"] == header["SURVEY"] and row["band"] == header["FILTER"]
        assert row["wavelength_m"] == pytest.approx(header["WAVELEN"])
        assert row["epoch_mjd"] == pytest.approx(Time(header["DATE-OBS"]).mjd)
        assert u.Unit(row["unit"]) == image.unit
        assert row["beam_major_arcsec"] == pytest.approx(header["BMAJ"] * 3600)
        assert row["beam_pa_deg"] == pytest.approx(header["BPA"])
        assert row["pixel_scale_arcsec"] == pytest.approx(image.pixel_scale.to_value(u.arcsec))
        assert row["frame"] == image.frame
        assert (row["naxis1"], row["naxis2"]) == (header["NAXIS1"], header["NAXIS2"])
    assert table["wavelength_m"].unit == u.m


def test_same_files_twice_change_nothing(archive, files):
    _root, paths = files
    before = archive.sql("SELECT * FROM images ORDER BY sha256")
    n_ingests = len(archive.ingests())
    again = archive.add_images(paths)
    assert not again["added"].any() and len(again) == len(paths)
    after = archive.sql("SELECT * FROM images ORDER BY sha256")
    assert len(archive.ingests()) == n_ingests
    assert before.pformat(max_lines=-1, max_width=-1) == after.pformat(max_lines=-1, max_width=-1)


def test_query_never_misses_an_overlapping_image(archive, files):
    _, paths = files
    rng = np.random.default_rng(5)
    table = archive.images()
    centre = SkyCoord(table["ra_center"].mean(), table["dec_center"].mean(), unit="deg")
    grids = {}
    for path in paths:  # every pixel edge and a dense grid inside
        image = parse_image(path)
        ny, nx = image.shape
        xs, ys = np.meshgrid(np.linspace(-0.5, nx - 0.5, 300),
                             np.linspace(-0.5, ny - 0.5, 300))
        grids[path] = image.celestial.pixel_to_world(xs.ravel(), ys.ravel()).icrs
    for trial in range(25):
        # a small cone somewhere around the field, sometimes just off an edge
        p = centre.directional_offset_by(rng.uniform(0, 360) * u.deg,
                                         rng.uniform(0, 1.0) * u.deg)
        radius = rng.choice([5, 30, 300]) * u.arcsec
        got = set(archive.images((p.ra.deg, p.dec.deg, radius))["path"])
        for path in paths:  # brute force: does any part of the image fall in the cone?
            if (grids[path].separation(p) <= radius).any():
                assert str(path.resolve()) in got, (trial, path)
    # and a cone far away finds nothing
    far = centre.directional_offset_by(0 * u.deg, 5 * u.deg)
    assert len(archive.images((far.ra.deg, far.dec.deg, 10 * u.arcmin))) == 0


def test_filters(archive):
    all_ = archive.images()
    radio = archive.images(survey="radio")
    assert len(radio) == 4 and set(radio["band"]) == {"L"}
    assert len(archive.images(band=["24um", "L"])) == 8
    t = Time(all_["epoch_mjd"].min(), format="mjd")
    first = archive.images(epoch=(t - 1 * u.day, t + 1 * u.day))
    assert set(first["epoch_mjd"]) == {t.mjd}
    ir = archive.images(wavelength=(20 * u.um, 30 * u.um))
    assert set(ir["band"]) == {"24um"}
    ghz = archive.images(wavelength=(1 * u.GHz, 2 * u.GHz))
    assert set(ghz["band"]) == {"L"}
    with pytest.raises(VanotebookInputError, match=r"^epoch: expected"):
        archive.images(epoch="yesterday")


def test_in_memory_images_are_stored(tmp_path, sky):
    arc = Archive(tmp_path / "arc")
    hdu = sky.images("radio")[0][0]
    got = arc.add_images([hdu, (hdu.data, WCS(hdu.header))])
    assert got["added"][0]
    stored = arc.images()
    assert len(stored) == 2 and all(stored["stored"])
    for path, sha in zip(stored["path"], stored["sha256"], strict=True):
        assert sha256_file(path) == sha
        np.testing.assert_array_equal(fits.getdata(path), hdu.data)


def test_bad_images_are_named(tmp_path):
    arc = Archive(tmp_path / "arc")
    text = tmp_path / "notes.fits"
    text.write_text("not a FITS file at all")
    with pytest.raises(VanotebookInputError, match=r"^images\[0\]: expected a.*FITS"):
        arc.add_images(text)
    nowcs = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(np.zeros((10, 10), np.float32)).writeto(nowcs)
    with pytest.raises(VanotebookInputError, match=r"celestial WCS"):
        arc.add_images(nowcs)
    spectral = WCS(naxis=2)
    spectral.wcs.ctype = ["FREQ", "STOKES"]
    with pytest.raises(VanotebookInputError, match=r"celestial WCS"):
        arc.add_images((np.zeros((4, 4)), spectral))
    with pytest.raises(VanotebookInputError, match="pattern"):
        arc.add_images(str(tmp_path / "none*.fits"))
    assert len(arc.images()) == 0
    assert not (arc.path / "images").exists() or not list((arc.path / "images").iterdir())


def _tan_image(ra, dec, npix=200, scale=0.01):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(npix + 1) / 2, (npix + 1) / 2]
    w.wcs.cdelt = [-scale, scale]
    header = w.to_header()
    header["BUNIT"] = "Jy/beam"
    return fits.PrimaryHDU(np.zeros((npix, npix), np.float32), header)


@pytest.mark.parametrize(("ra", "dec"), [(0.0, 90.0), (0.3, 10.0), (359.5, -89.2)])
def test_footprints_at_the_poles_and_across_ra_zero(tmp_path, ra, dec):
    arc = Archive(tmp_path / "arc")
    hdu = _tan_image(ra, dec)
    arc.add_images(hdu)
    image = parse_image(hdu)
    xs, ys = np.meshgrid(np.linspace(-0.5, 199.5, 200), np.linspace(-0.5, 199.5, 200))
    sky = image.celestial.pixel_to_world(xs.ravel(), ys.ravel())
    rng = np.random.default_rng(3)
    inside = outside = 0
    centre = SkyCoord(ra * u.deg, dec * u.deg)
    for k in range(40):  # cones around the edges of the 2-degree image, in and out
        p = centre.directional_offset_by(rng.uniform(0, 360) * u.deg,
                                         rng.uniform(0.9, 1.6) * u.deg)
        radius = rng.choice([2, 60, 600]) * u.arcsec
        overlaps = (sky.separation(p) <= radius).any()
        found = len(arc.images((p.ra.deg, p.dec.deg, radius)))
        if overlaps:
            assert found == 1, (k, p, radius)
            inside += 1
        else:
            outside += found == 0
    assert inside > 3 and outside > 3
