"""One query across images and catalogues: region, band and epoch, against a hand count."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS

from vanotebook import VanotebookInputError
from vanotebook.archive import Archive

RA0, DEC0 = 210.0, -30.0


def _image(ra, dec, band, date):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [32, 32]
    w.wcs.cdelt = [-10 / 3600, 10 / 3600]
    h = w.to_header()
    h["FILTER"], h["DATE-OBS"], h["BUNIT"] = band, date, "MJy/sr"
    return fits.PrimaryHDU(np.ones((64, 64), np.float32), h)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    rng = np.random.default_rng(3)
    arc = Archive(tmp_path_factory.mktemp("search") / "arc")
    arc.add_images([_image(RA0, DEC0, "W1", "2010-06-01"), _image(RA0, DEC0, "G", "2016-01-01"),
                    _image(RA0 + 20, DEC0, "G", "2016-01-01")], survey="mixed")
    n = 4000
    gaia = Table({"ra": RA0 + rng.uniform(-0.5, 0.5, n), "dec": DEC0 + rng.uniform(-0.5, 0.5, n),
                  "obs_epoch": rng.uniform(2014.5, 2017.5, n), "g": rng.uniform(10, 20, n)})
    gaia["obs_epoch"].unit = u.yr
    arc.add_catalogue("gaia", gaia, epoch="obs_epoch", band=["G", "BP", "RP"])
    wise = Table({"ra": RA0 + rng.uniform(-0.5, 0.5, n), "dec": DEC0 + rng.uniform(-0.5, 0.5, n),
                  "mjd": rng.uniform(55200, 55600, n)})
    wise["mjd"].unit = u.d
    arc.add_catalogue("wise", wise, epoch="mjd", band="W1", wavelength=3.4 * u.um)
    far = Table({"ra": [RA0 + 90.0], "dec": [DEC0]})
    arc.add_catalogue("far", far, epoch=2000.0, band="G")
    return arc, gaia, wise


def _inside(table, radius_deg):
    sep = SkyCoord(table["ra"], table["dec"], unit="deg").separation(
        SkyCoord(RA0, DEC0, unit="deg"))
    return sep.deg <= radius_deg


def test_search_by_band_and_epoch_across_images_and_catalogues(archive):
    arc, gaia, _ = archive
    window = (Time("2015-01-01"), Time("2016-01-01"))
    found = arc.search((RA0, DEC0, 0.2 * u.deg), band="G", epoch=window)
    assert set(found.catalogues) == {"gaia"}  # wise is W1; far is outside the region
    assert list(found.images["band"]) == ["G"]  # the W1 image and the far G image are not
    years = np.asarray(gaia["obs_epoch"])
    lo, hi = (t.jyear for t in window)
    truth = _inside(gaia, 0.2) & (years >= lo) & (years <= hi)
    assert len(found.catalogues["gaia"]) == truth.sum() > 50
    assert set(np.round(found.catalogues["gaia"]["g"], 9)) == set(np.round(gaia["g"][truth], 9))


def test_epoch_selects_rows_in_mjd_and_whole_catalogues(archive):
    arc, _, wise = archive
    rows = arc.catalogue("wise").cone(RA0, DEC0, 0.3 * u.deg, epoch=(55300, 55400))
    truth = _inside(wise, 0.3) & (np.asarray(wise["mjd"]) >= 55300) & (
        np.asarray(wise["mjd"]) <= 55400)
    assert len(rows) == truth.sum() > 50
    assert arc.catalogue("wise").cone(RA0, DEC0, 0.3 * u.deg, epoch=(55300, 55400),
                                      lazy=True).compute().shape[0] == truth.sum()
    names = set(arc.catalogues(epoch=("2009-01-01", "2011-06-01"))["name"])
    assert names == {"wise"}
    assert set(arc.catalogues(band="w1")["name"]) == {"wise"}
    assert set(arc.catalogues(wavelength=(3 * u.um, 4 * u.um))["name"]) == {"wise"}
    assert set(arc.catalogues((RA0, DEC0, 1 * u.deg))["name"]) == {"gaia", "wise"}


def test_bad_search_inputs_are_named(archive):
    arc, _, _ = archive
    with pytest.raises(VanotebookInputError, match=r"^epoch: expected \(start, end\)"):
        arc.search((RA0, DEC0, 0.2 * u.deg), epoch=2016)
    with pytest.raises(VanotebookInputError, match=r"^band: expected a band name"):
        arc.catalogues(band=[3])
    with pytest.raises(VanotebookInputError, match=r"^epoch: expected None: catalogue"):
        Archive(arc.path).catalogue("gaia")  # has an epoch: fine
        arc.add_catalogue("plain", Table({"ra": [RA0], "dec": [DEC0]}))
        arc.catalogue("plain").cone(RA0, DEC0, 1 * u.deg, epoch=(0, 1))
