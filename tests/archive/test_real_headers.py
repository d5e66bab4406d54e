"""Images and catalogues as real files carry them: layouts, units and beams that
astropy, CASA, AIPS and VizieR write, each read to the value the file means.

Real files are the ones astropy ships (a DSS plate, SIP headers); the CASA
``BEAMS`` table, the AIPS ``HISTORY`` beam and the VizieR sexagesimal columns
are made here exactly as those programs write them.
"""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.utils.data import get_pkg_data_filename
from astropy.wcs import WCS

from vanotebook import VanotebookInputError
from vanotebook.archive import Archive
from vanotebook.io import parse_catalogue, parse_image, parse_images
from vanotebook.units import Beam, fits_string, parse_unit


def _header(ra=150.0, dec=20.0, n=32, scale=2 / 3600) -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [n / 2, n / 2]
    w.wcs.cdelt = [-scale, scale]
    return w.to_header()


def _ingested(archive: Archive) -> list[tuple[str, int]]:
    rows = archive.sql("SELECT path, hdu FROM images ORDER BY path, hdu")
    return [(str(p), int(h)) for p, h in zip(rows["path"], rows["hdu"], strict=True)]


# ------------------------------------------------------------------ file layouts
def test_hdulist_with_empty_primary_is_one_image(tmp_path):
    """The usual layout (empty primary, image in extension 1) as an in-memory HDUList."""
    data = np.arange(32 * 32, dtype=float).reshape(32, 32)
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, _header(), name="SCI")])
    images = parse_images(hdul)
    assert len(images) == 1
    np.testing.assert_array_equal(images[0].data, data)
    archive = Archive(tmp_path / "arc")
    result = archive.add_images(hdul, survey="x")
    assert len(result) == 1 and bool(result["added"][0])


def test_archive_indexes_sky_images_only(tmp_path):
    """A file with a sky image, a 2D non-celestial HDU and mosaic WEIGHT/COVERAGE maps."""
    sky = np.ones((32, 32))
    spectrum2d = fits.ImageHDU(np.ones((8, 100)), name="SPEC2D")
    spectrum2d.header["CTYPE1"], spectrum2d.header["CTYPE2"] = "WAVE", "LINEAR"
    hdul = fits.HDUList([
        fits.PrimaryHDU(sky, _header()),
        fits.ImageHDU(np.ones((32, 32)), _header(), name="WEIGHT"),
        fits.ImageHDU(np.ones((32, 32), np.int16), _header(), name="COVERAGE"),
        spectrum2d,
    ])
    hdul.writeto(tmp_path / "mosaic.fits")
    archive = Archive(tmp_path / "arc")
    archive.add_images(tmp_path / "mosaic.fits")
    assert _ingested(archive) == [(str((tmp_path / "mosaic.fits").resolve()), 0)]
    nothing = fits.HDUList([fits.PrimaryHDU(), spectrum2d.copy()])
    nothing.writeto(tmp_path / "spectrum.fits")
    with pytest.raises(VanotebookInputError, match=r"^images\[0\]: expected a FITS file with an "
                                                   r"image HDU with celestial WCS"):
        archive.add_images(tmp_path / "spectrum.fits")


def test_compressed_tiles_in_a_folder_are_read(tmp_path):
    data = np.random.default_rng(1).normal(size=(32, 32)).astype(np.float32)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, _header())]).writeto(
        tmp_path / "tile.fits.fz")
    fits.PrimaryHDU(data, _header(151.0)).writeto(tmp_path / "plain.fits")
    images = parse_images(tmp_path)
    assert len(images) == 2
    archive = Archive(tmp_path / "arc")
    archive.add_images(tmp_path)
    assert len(_ingested(archive)) == 2


def test_dss_plate_with_nonstandard_card_is_ingested(tmp_path):
    """A real DSS cut-out from astropy's test data (its SKEW card is not FITS-standard)."""
    path = get_pkg_data_filename("data/dss.14.29.56-62.41.05.fits.gz",
                                 package="astropy.wcs.tests")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = parse_image(path)
        archive = Archive(tmp_path / "arc")
        archive.add_images(path)
        truth = WCS(fits.getheader(path)).pixel_to_world(49.5, 49.5)
    row = archive.images()
    got = SkyCoord(row["ra_center"][0], row["dec_center"][0], unit="deg")
    assert got.separation(truth) < 0.1 * u.arcsec
    assert image.shape == (100, 100)


# ------------------------------------------------------------------------ units
@pytest.mark.parametrize(("bunit", "unit"), [
    ("ELECTRONS/S", u.electron / u.s), ("counts", u.ct), ("ADU", u.adu), ("KELVIN", u.K),
    ("DN", u.DN), ("DN/s", u.DN / u.s), ("electron/s", u.electron / u.s),
    ("JY/BEAM", u.Jy / u.beam), ("MJy/sr", u.MJy / u.sr),
])
def test_bunit_spellings_of_real_headers(bunit, unit):
    assert parse_unit(bunit) == unit
    assert parse_unit(fits_string(unit)) == unit  # what we write reads back


def test_unreadable_bunit_is_refused_unless_given(tmp_path):
    header = _header()
    header["BUNIT"] = "mag E(B-V)"
    hdu = fits.PrimaryHDU(np.ones((32, 32)), header)
    with pytest.raises(VanotebookInputError, match=r"BUNIT: expected a unit astropy "
                                                   r"understands \(or give unit= explicitly\)"):
        parse_image(hdu)
    assert parse_image(hdu, unit="mag").unit == u.mag
    archive = Archive(tmp_path / "arc")
    archive.add_images(hdu, unit="mag", survey="sfd")
    assert archive.images()["unit"][0] == "mag"
    stored = fits.getheader(archive.images()["path"][0])
    assert parse_unit(stored["BUNIT"]) == u.mag  # the stored copy says what the archive says


# ------------------------------------------------------------------------ beams
def test_aips_history_beam_when_bmaj_is_zero():
    header = _header()
    header["BMAJ"], header["BMIN"], header["BPA"] = 0.0, 0.0, 0.0
    header.add_history("AIPS   CLEAN BMAJ=  1.3889E-03 BMIN=  1.1111E-03 BPA=  45.00")
    header.add_history("AIPS   CLEAN BMAJ=  2.7778E-03 BMIN=  1.3889E-03 BPA= -30.00")
    beam = parse_image(fits.PrimaryHDU(np.ones((32, 32)), header)).beam
    assert beam.major.to_value(u.arcsec) == pytest.approx(10.0, rel=1e-4)  # the last card
    assert beam.minor.to_value(u.arcsec) == pytest.approx(5.0, rel=1e-4)
    assert beam.pa.to_value(u.deg) == pytest.approx(150.0)
    del header["HISTORY"]
    assert parse_image(fits.PrimaryHDU(np.ones((32, 32)), header)).beam is None


def test_nonsense_beams_are_refused():
    header = _header()
    header["BMAJ"], header["BMIN"] = -1e-3, 1e-3
    with pytest.raises(VanotebookInputError, match=r"^BMAJ/BMIN: expected positive"):
        Beam.from_header(header)


def _casa_beams(major_arcsec, minor_arcsec, pa_deg) -> fits.BinTableHDU:
    n = len(major_arcsec)
    cols = [fits.Column("BMAJ", "E", unit="arcsec", array=major_arcsec),
            fits.Column("BMIN", "E", unit="arcsec", array=minor_arcsec),
            fits.Column("BPA", "E", unit="deg", array=pa_deg),
            fits.Column("CHAN", "J", array=np.arange(n)), fits.Column("POL", "J",
                                                                       array=np.zeros(n))]
    hdu = fits.BinTableHDU.from_columns(cols, name="BEAMS")
    hdu.header["NCHAN"], hdu.header["NPOL"] = n, 1
    return hdu


def test_casa_beams_table_gives_the_beam(tmp_path):
    header = _header()
    header["BUNIT"] = "Jy/beam"
    fits.HDUList([fits.PrimaryHDU(np.ones((32, 32)), header),
                  _casa_beams([6.0], [4.0], [20.0])]).writeto(tmp_path / "casa.fits")
    beam = parse_image(tmp_path / "casa.fits").beam
    assert beam.major.to_value(u.arcsec) == pytest.approx(6.0)
    assert beam.minor.to_value(u.arcsec) == pytest.approx(4.0)
    assert beam.pa.to_value(u.deg) == pytest.approx(20.0)
    fits.HDUList([fits.PrimaryHDU(np.ones((32, 32)), header),
                  _casa_beams([6.0, 7.0], [4.0, 4.0], [20.0, 20.0])]).writeto(
        tmp_path / "varying.fits")
    with pytest.raises(VanotebookInputError, match="one beam for every plane"):
        parse_image(tmp_path / "varying.fits")


# ------------------------------------------------------------------- catalogues
def _vizier_text() -> Table:
    """RAJ2000/DEJ2000 as VizieR writes them in text: hours and degrees, with a blank."""
    return Table({"RAJ2000": ["00 42 44.33", "05 35 17.3", "", "23:59:59.9"],
                  "DEJ2000": ["+41 16 07.5", "-05 23 28", "", "-00:00:01"]})


def test_sexagesimal_columns_are_hours_and_degrees(tmp_path):
    table = parse_catalogue(_vizier_text(), ra="RAJ2000", dec="DEJ2000")
    truth = SkyCoord(["00h42m44.33s +41d16m07.5s", "05h35m17.3s -05d23m28s",
                      "23h59m59.9s -00d00m01s"])
    got = SkyCoord(np.asarray(table["RAJ2000"])[[0, 1, 3]],
                   np.asarray(table["DEJ2000"])[[0, 1, 3]], unit="deg")
    assert np.all(got.separation(truth) < 1e-6 * u.arcsec)
    assert np.isnan(table["RAJ2000"][2])  # blank cell: missing, not (0, 0)
    degrees = Table({"ra": ["10.5", "11.0"], "dec": ["-3.25", "4"]})
    np.testing.assert_allclose(parse_catalogue(degrees)["ra"], [10.5, 11.0])
    flagged = Table({"ra": ["10:30:00"], "dec": ["+20:00:00"]})
    flagged["ra"].unit = u.deg  # the column says degrees: 10.5 deg, not 157.5
    assert parse_catalogue(flagged)["ra"][0] == pytest.approx(10.5)
    archive = Archive(tmp_path / "arc")
    cat = archive.add_catalogue("viz", _vizier_text()[[0, 1, 3]], ra="RAJ2000", dec="DEJ2000")
    found = cat.cone(10.684708, 41.26875, 2 * u.arcsec)
    assert len(found) == 1


def test_unparseable_text_coordinates_are_named():
    with pytest.raises(VanotebookInputError, match=r"^ra: expected coordinates in degrees or "
                                                   r"sexagesimal text"):
        parse_catalogue(Table({"ra": ["north-ish"], "dec": ["10"]}))


def test_empty_catalogue_is_refused_before_anything_is_written(tmp_path):
    archive = Archive(tmp_path / "arc")
    empty = Table({"ra": np.array([], float), "dec": np.array([], float)})
    with pytest.raises(VanotebookInputError, match=r"^data: expected a catalogue with at least "
                                                   r"one row"):
        archive.add_catalogue("empty", empty)
    assert not list((archive.path / "catalogues").glob("*")) if (
        archive.path / "catalogues").exists() else True
    assert len(archive.catalogues()) == 0
