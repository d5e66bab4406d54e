from __future__ import annotations

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import QTable, Table
from astropy.wcs import WCS

from vanotebook import VanotebookInputError
from vanotebook.io import (
    Image,
    atomic_path,
    parquet_units,
    parse_catalogue,
    parse_image,
    parse_images,
    read_catalogue,
    write_fits,
    write_table,
)


def test_parse_image_every_form(image_form):
    form, value, data, header = image_form
    image = parse_image(value)
    assert isinstance(image, Image)
    np.testing.assert_array_equal(np.asarray(image.data), data)
    ref = WCS(header)
    # the same pixel maps to the same sky position
    assert np.allclose(image.celestial.pixel_to_world_values(10.5, 20.0),
                       ref.pixel_to_world_values(10.5, 20.0))
    assert image.frame == "icrs"
    if form == "array_wcs":  # a bare WCS carries neither unit nor beam
        assert image.unit is None
        assert image.beam is None
    else:
        assert image.unit == u.Jy / u.beam
        assert image.beam is not None
        assert image.beam.major.to_value(u.arcsec) == pytest.approx(15.0)
        assert image.beam.pa.to_value(u.deg) == pytest.approx(30.0)
    assert image.pixel_scale.to_value(u.arcsec) == pytest.approx(4.0, rel=1e-6)


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (42, "FITS path"),
        ("/no/such/file.fits", "existing FITS file"),
        ((np.zeros((4, 4)), "not a wcs"), "(array, WCS)"),
        ((np.zeros(4), WCS(naxis=2)), "two or more dimensions"),
        (fits.HDUList([fits.PrimaryHDU()]), "image HDU"),
        ((np.zeros((4, 4)), fits.Header({"CTYPE1": "FREQ", "CTYPE2": "STOKES"})), "celestial"),
    ],
)
def test_parse_image_bad_input_names_argument_and_forms(bad, fragment):
    with pytest.raises(VanotebookInputError) as info:
        parse_image(bad, argument="images[3]")
    msg = str(info.value)
    assert msg.startswith("images[3]: expected")
    assert fragment in msg
    assert isinstance(info.value, ValueError)


def test_parse_image_not_fits_file(tmp_path):
    path = tmp_path / "junk.fits"
    path.write_text("not fits at all")
    with pytest.raises(VanotebookInputError, match="readable FITS"):
        parse_image(path)


def test_parse_images_glob_folder_and_list(tmp_path, sky):
    tiles = sky.images("fir250")
    for k, hdul in enumerate(tiles):
        hdul.writeto(tmp_path / f"t{k}.fits")
    (tmp_path / "notes.txt").write_text("not an image")
    assert len(parse_images(tmp_path)) == len(tiles)
    assert len(parse_images(str(tmp_path / "t*.fits"))) == len(tiles)
    assert len(parse_images(tiles)) == len(tiles)
    with pytest.raises(VanotebookInputError, match="images: expected a pattern"):
        parse_images(str(tmp_path / "none*.fits"))
    with pytest.raises(VanotebookInputError, match=r"images\[1\]: expected"):
        parse_images([tiles[0], "nope"])


def test_image_to_hdu_roundtrip(radio_tile):
    image = parse_image(radio_tile)
    hdu = image.to_hdu()
    np.testing.assert_array_equal(hdu.data, radio_tile[0].data)
    assert hdu.header["BUNIT"] == "Jy/beam"


# -------------------------------------------------------------------- catalogues
@pytest.fixture
def table():
    t = Table({"ra": [10.0, 359.5, 0.2], "dec": [-89.0, 0.0, 45.0], "mag": [12.0, 13.5, 20.1]})
    t["ra"].unit = t["dec"].unit = u.deg
    t["mag"].unit = u.mag
    return t


CATALOGUE_FORMS = ["table", "qtable", "pandas", "dask", "fits", "votable", "ecsv", "parquet",
                   "parquet_dir"]


@pytest.mark.parametrize("form", CATALOGUE_FORMS)
def test_parse_catalogue_every_form(form, table, tmp_path):
    if form == "table":
        value = table
    elif form == "qtable":
        value = QTable(table)
    elif form == "pandas":
        value = table.to_pandas()
    elif form == "dask":
        import dask.dataframe as dd

        value = dd.from_pandas(table.to_pandas(), npartitions=2)
    elif form == "parquet_dir":
        folder = tmp_path / "cat"
        write_table(table[:2], folder / "part0.parquet")
        write_table(table[2:], folder / "part1.parquet")
        value = folder
    else:
        suffix = {"fits": "fits", "votable": "vot", "ecsv": "ecsv", "parquet": "parquet"}[form]
        value = write_table(table, tmp_path / f"cat.{suffix}")
    out = parse_catalogue(value)
    if form == "dask":
        out = Table.from_pandas(out.compute())
    assert len(out) == 3
    np.testing.assert_allclose(np.asarray(out["ra"]), [10.0, 359.5, 0.2])
    np.testing.assert_allclose(np.asarray(out["mag"]), [12.0, 13.5, 20.1])
    if form in ("table", "qtable", "fits", "votable", "ecsv", "parquet", "parquet_dir"):
        assert out["mag"].unit == u.mag


def test_parse_catalogue_lazy_parquet(table, tmp_path):
    path = write_table(table, tmp_path / "c.parquet")
    lazy = parse_catalogue(path, lazy=True)
    assert type(lazy).__module__.startswith("dask")
    assert parquet_units(path)["mag"] == "mag"
    assert len(lazy.compute()) == 3


def test_parse_catalogue_converts_angle_units(table):
    table["dec"] = table["dec"].quantity.to(u.arcmin)
    out = parse_catalogue(table)
    assert out["dec"].unit == u.deg
    assert out["dec"][0] == pytest.approx(-89.0)


def test_parse_catalogue_bad_input(table):
    with pytest.raises(VanotebookInputError, match=r"ra: expected a column of catalogue.*'RA'"):
        parse_catalogue(table, ra="RA")
    with pytest.raises(VanotebookInputError, match="dec: expected degrees within"):
        bad = table.copy()
        bad["dec"][0] = 95.0
        parse_catalogue(bad)
    with pytest.raises(VanotebookInputError, match="an astropy Table, a pandas"):
        parse_catalogue([1, 2, 3])
    with pytest.raises(VanotebookInputError, match="path: expected an existing catalogue"):
        parse_catalogue("missing.parquet")
    with pytest.raises(VanotebookInputError, match="mag: expected an angle column"):
        parse_catalogue(table, dec="mag")
    df = pd.DataFrame({"x": [1.0]})
    with pytest.raises(VanotebookInputError, match="columns: x"):
        parse_catalogue(df)


# -------------------------------------------------------------------- atomic writing
def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "product.fits"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_write_fits_failure_keeps_old_file(tmp_path, radio_tile, monkeypatch):
    target = write_fits(radio_tile, tmp_path / "p.fits")
    before = target.read_bytes()

    def half_write(self, path, **kwargs):
        with open(path, "wb") as f:
            f.write(b"SIMPLE  =                    T")
        raise OSError("disk full")

    monkeypatch.setattr(fits.HDUList, "writeto", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_fits(radio_tile, target, overwrite=True)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.fits"]


def test_write_refuses_to_clobber(tmp_path, table):
    path = write_table(table, tmp_path / "t.ecsv")
    with pytest.raises(FileExistsError):
        write_table(table, path)
    write_table(table, path, overwrite=True)
    assert len(read_catalogue(path)) == 3
    with pytest.raises(VanotebookInputError, match=r"path: expected a \.fits"):
        write_table(table, tmp_path / "t.txt")


def test_atomic_dir_all_or_nothing(tmp_path):
    from vanotebook.io import atomic_dir

    target = tmp_path / "layout"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    assert target.stat().st_mode & 0o777 != 0o700  # readable by a server running as another user
    with pytest.raises(FileExistsError), atomic_dir(target):
        pass
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["layout"]


def test_write_dataset_refuses_what_is_not_a_mosaic(tmp_path):
    import xarray as xr

    from vanotebook.io import write_dataset

    not_mosaic = xr.Dataset({"flux": (("y", "x"), np.zeros((4, 4)))})
    with pytest.raises(VanotebookInputError, match=r"^dataset: expected a mosaic Dataset "
                                                   r"\(data variables mosaic, weight, coverage"):
        write_dataset(not_mosaic, tmp_path / "x.fits")
    with pytest.raises(VanotebookInputError, match=r"^dataset: expected a mosaic xarray"):
        write_dataset(np.zeros((4, 4)), tmp_path / "x.fits")
    assert not list(tmp_path.iterdir())


def test_write_dataset_writes_what_the_mosaic_holds(tmp_path, radio_tile):
    from vanotebook.io import write_dataset
    from vanotebook.mosaic import from_fits, mosaic

    ds = mosaic([radio_tile])
    hdul = write_dataset(ds, tmp_path / "m.fits")
    assert [h.name for h in hdul] == ["PRIMARY", "WEIGHT", "COVERAGE", "PROVENANCE"]
    back = from_fits(tmp_path / "m.fits")
    np.testing.assert_array_equal(np.asarray(back["mosaic"]), np.asarray(ds["mosaic"],
                                                                          np.float32))
    np.testing.assert_array_equal(np.asarray(back["coverage"]), np.asarray(ds["coverage"]))


def test_parquet_with_nulls_reads_as_masked_numbers(tmp_path):
    """Nulls in numeric parquet columns are masked values of the column's type."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vanotebook.io import read_catalogue

    pq.write_table(pa.table({"ra": pa.array([10.0, None, 12.0]), "dec": [1.0, 2.0, 3.0],
                             "n": pa.array([1, None, 3], pa.int64()),
                             "name": pa.array(["a", None, "c"])}), tmp_path / "c.parquet")
    table = read_catalogue(tmp_path / "c.parquet")
    assert table["ra"].dtype.kind == "f" and list(table["ra"].mask) == [False, True, False]
    assert table["n"].dtype.kind == "i" and table["n"].mask[1]
    assert table["name"][0] == "a" and table["name"].mask[1]
    parsed = parse_catalogue(tmp_path / "c.parquet")
    assert np.isnan(parsed["ra"][1]) and parsed["ra"][2] == 12.0


def test_votables_are_written_without_the_c_tabledata_writer(tmp_path):
    """astropy's C TABLEDATA writer corrupts memory (astropy issue 20419): this table
    crashed the process one run in two; written as BINARY2, ten writes read back equal."""
    import subprocess
    import sys

    script = f"""
import numpy as np
from astropy.table import Table
from vanotebook.io import write_table
from vanotebook.sky import demo_sky
left, _ = demo_sky(0, size=0.3, n_catalogue=200, n_spectra=10).catalogues.chunk(0)
t = Table.from_pandas(left)
for i in range(10):
    p = write_table(t, {str(tmp_path)!r} + f"/c{{i}}.vot")
    back = Table.read(p)
    assert all(np.array_equal(back[c], t[c]) for c in t.colnames)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
