"""The archive on inputs as astronomers hold them: rotated DS9 boxes, blank cells, FITS tables.

Each test checks against a peer (astropy-regions' own ``contains``) or against
the values written, on data made here.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import MaskedColumn, Table
from astropy.wcs import WCS
from regions import RectangleSkyRegion, Regions

from vanotebook import VanotebookInputError
from vanotebook.archive import Archive
from vanotebook.io import parse_catalogue

RA0, DEC0 = 150.0, 20.0


def _tan_wcs(ra: float, dec: float, scale_deg: float = 1 / 3600, *,
             axes: tuple[str, str] = ("RA", "DEC")) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = [f"{axes[0]:-<5}TAN", f"{axes[1]:-<5}TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [0.0, 0.0]
    w.wcs.cdelt = [-scale_deg, scale_deg]
    return w


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """A dense uniform catalogue over about 1.2 x 1.2 deg around (150, 20)."""
    rng = np.random.default_rng(42)
    n = 60_000
    half = 0.6
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(DEC0 - half)),
                                           np.sin(np.radians(DEC0 + half)), n)))
    ra = RA0 + rng.uniform(-half, half, n) / np.cos(np.radians(DEC0))
    table = Table({"id": np.arange(n), "ra": ra, "dec": dec})
    arc = Archive(tmp_path_factory.mktemp("real") / "arc")
    cat = arc.add_catalogue("field", table, max_rows=5_000, row_group_rows=1024)
    return table, cat


def _ids(table: Table) -> set[int]:
    return {int(i) for i in table["id"]}


def _truth(table: Table, region: RectangleSkyRegion, wcs: WCS | None = None) -> set[int]:
    pts = SkyCoord(table["ra"], table["dec"], unit="deg")
    inside = region.contains(pts, _tan_wcs(RA0, DEC0) if wcs is None else wcs)
    return {int(i) for i in table["id"][inside]}


def _box(angle: float, width=3000 * u.arcsec, height=90 * u.arcsec) -> RectangleSkyRegion:
    return RectangleSkyRegion(SkyCoord(RA0 * u.deg, DEC0 * u.deg), width, height,
                              angle=angle * u.deg)


@pytest.mark.parametrize("angle", [30.0, -30.0, 0.0, 90.0, 115.0])
def test_rotated_box_selects_what_astropy_regions_contains(field, angle):
    table, cat = field
    region = _box(angle)
    truth = _truth(table, region)
    assert len(truth) > 500
    got = _ids(cat.region(region))
    assert got == truth
    if angle in (30.0, -30.0):
        mirror = _truth(table, _box(-angle))
        assert len(truth & mirror) < len(truth) / 5  # the mirror image is another area


def test_ds9_box_string_selects_what_astropy_regions_contains(field):
    table, cat = field
    (region,) = Regions.parse(f'icrs; box({RA0}, {DEC0}, 3000", 90", 30)', format="ds9")
    assert region.angle.to_value(u.deg) == pytest.approx(30.0)
    truth = _truth(table, region)
    assert _ids(cat.region(region)) == truth
    assert truth != _truth(table, _box(-30.0))


def test_galactic_box_turns_from_galactic_longitude(field):
    """A galactic box's angle is measured in its own frame (as in DS9's ``galactic; box``).

    regions measures from the north of the WCS it is given, so the peer here is
    regions with a galactic TAN WCS at the centre.
    """
    table, cat = field
    c = SkyCoord(RA0 * u.deg, DEC0 * u.deg).galactic
    region = RectangleSkyRegion(c, 2400 * u.arcsec, 120 * u.arcsec, angle=30 * u.deg)
    wcs = _tan_wcs(c.l.deg, c.b.deg, axes=("GLON", "GLAT"))
    truth = _truth(table, region, wcs)
    assert len(truth) > 500
    assert _ids(cat.region(region)) == truth


def _image(path, ra: float, dec: float) -> None:
    w = _tan_wcs(ra, dec, 2 / 3600)
    w.wcs.crpix = [10.5, 10.5]
    hdu = fits.PrimaryHDU(np.ones((20, 20), np.float32), w.to_header())
    hdu.header["BUNIT"] = "Jy/beam"
    hdu.writeto(path)


def test_rotated_box_finds_images_on_its_own_axis(tmp_path):
    """Small images at the far ends of the +30 deg box and of its mirror image."""
    center = SkyCoord(RA0 * u.deg, DEC0 * u.deg)
    # regions: the width axis at `angle` from +RA... measured towards north, i.e. PA = angle - 90
    on_axis = [center.directional_offset_by((30 - 90) * u.deg, s * 0.35 * u.deg)
               for s in (1, -1)]
    mirror = [center.directional_offset_by((-30 - 90) * u.deg, s * 0.35 * u.deg)
              for s in (1, -1)]
    for k, c in enumerate(on_axis + mirror):
        _image(tmp_path / f"im{k}.fits", c.ra.deg, c.dec.deg)
    arc = Archive(tmp_path / "arc")
    arc.add_images(str(tmp_path / "im*.fits"))
    names = {p.rsplit("/", 1)[-1] for p in arc.images(_box(30.0))["path"]}
    assert names == {"im0.fits", "im1.fits"}
    names = {p.rsplit("/", 1)[-1] for p in arc.images(_box(-30.0))["path"]}
    assert names == {"im2.fits", "im3.fits"}


# ----------------------------------------------------------------------------- masked coordinates
def _with_blanks(unit: str | None) -> Table:
    t = Table(masked=True)
    t["ra"] = MaskedColumn([10.0, 11.0, 12.0, 13.0, 14.0],
                           mask=[False, True, False, True, False], unit=unit)
    t["dec"] = MaskedColumn([5.0, 6.0, 7.0, 8.0, 9.0],
                            mask=[False, True, True, False, False], unit=unit)
    t["flux"] = [1.0, 2.0, 3.0, 4.0, 5.0]
    return t


@pytest.mark.parametrize("unit", ["deg", None, "arcsec"])
@pytest.mark.parametrize("form", ["table", "ecsv"])
def test_masked_coordinates_are_refused_with_their_count(tmp_path, unit, form):
    table = _with_blanks(unit)
    if unit == "arcsec":
        for name in ("ra", "dec"):
            table[name] = MaskedColumn(table[name].data * 3600, mask=table[name].mask,
                                       unit="arcsec")
    data = table
    if form == "ecsv":
        data = tmp_path / "blank.ecsv"
        table.write(data)
        assert '""' in data.read_text()  # the blanks are blank cells in the file
    arc = Archive(tmp_path / "arc")
    with pytest.raises(VanotebookInputError, match="3 missing") as info:
        arc.add_catalogue("blank", data)
    assert info.value.argument == "ra"
    assert "blank" not in list(arc.catalogues()["name"])  # nothing stored, nothing at (0, 0)
    # the same rows without the blanks go in, and nothing lies at (0, 0)
    keep = ~(np.ma.getmaskarray(table["ra"]) | np.ma.getmaskarray(table["dec"]))
    cat = arc.add_catalogue("kept", table[keep])
    assert len(cat.region((0.0, 0.0, 1 * u.deg))) == 0
    assert len(cat.region((12.0, 7.0, 30 * u.deg))) == 2


def test_null_coordinates_in_arrow_and_pandas_are_counted(tmp_path):
    import pandas as pd
    import pyarrow as pa

    arc = Archive(tmp_path / "arc")
    arrow = pa.table({"ra": pa.array([10.0, None, 12.0]), "dec": pa.array([5.0, None, None])})
    with pytest.raises(VanotebookInputError, match="2 missing"):
        arc.add_catalogue("arrow", arrow)
    frame = arrow.to_pandas(types_mapper={pa.float64(): pd.Float64Dtype()}.get)
    with pytest.raises(VanotebookInputError, match="2 missing"):
        arc.add_catalogue("frame", frame)


def test_masked_table_without_masked_values_is_taken_whole(tmp_path):
    t = Table(masked=True)
    t["ra"] = MaskedColumn([10.0, 11.0], unit="deg")
    t["dec"] = MaskedColumn([5.0, 6.0], unit="deg")
    arc = Archive(tmp_path / "arc")
    cat = arc.add_catalogue("whole", t)
    got = cat.region((10.5, 5.5, 2 * u.deg))
    assert sorted(got["ra"]) == [10.0, 11.0]
    assert len(cat.region((0.0, 0.0, 1 * u.deg))) == 0


@pytest.mark.parametrize("unit", ["deg", "arcsec", None])
def test_parse_catalogue_makes_masked_coordinates_missing(unit):
    table = _with_blanks(unit)
    if unit == "arcsec":
        for name in ("ra", "dec"):
            table[name] = MaskedColumn(table[name].data * 3600, mask=table[name].mask,
                                       unit="arcsec")
    out = parse_catalogue(table)
    ra = np.asarray(out["ra"], float)
    dec = np.asarray(out["dec"], float)
    missing = ~(np.isfinite(ra) & np.isfinite(dec))
    assert missing.tolist() == [False, True, True, True, False]
    assert not np.any((ra == 0) & (dec == 0))
    np.testing.assert_allclose(ra[~missing], [10.0, 14.0])


# ----------------------------------------------------------------------------- FITS tables
def _fits_table() -> Table:
    rng = np.random.default_rng(3)
    n = 500
    return Table({"ra": rng.uniform(149.5, 150.5, n), "dec": rng.uniform(19.5, 20.5, n),
                  "flux": rng.lognormal(0, 1, n).astype(np.float64),
                  "n_obs": rng.integers(-1000, 1000, n).astype(np.int32),
                  "name": [f"SRC{i:05d}" for i in range(n)]},
                 units={"ra": "deg", "dec": "deg", "flux": "mJy"})


@pytest.mark.parametrize("form", ["path", "table"])
def test_fits_binary_table_round_trips(tmp_path, form):
    original = _fits_table()
    path = tmp_path / "t.fits"
    original.write(path)
    data = path if form == "path" else Table.read(path)
    assert not Table.read(path)["ra"].dtype.isnative  # big-endian, as FITS stores it
    arc = Archive(tmp_path / "arc")
    cat = arc.add_catalogue("fitscat", data)
    got = cat.region((150.0, 20.0, 2 * u.deg))
    assert len(got) == len(original)
    got = got[np.argsort(np.asarray(got["name"]).astype(str))]
    for name in ("ra", "dec", "flux", "n_obs"):
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(original[name]))
        assert np.asarray(got[name]).dtype == original[name].dtype
    assert [str(s) for s in got["name"]] == list(original["name"])
    assert got["flux"].unit == u.mJy and got["ra"].unit == u.deg
