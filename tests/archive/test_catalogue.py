from __future__ import annotations

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table

from vanotebook import VanotebookInputError
from vanotebook.archive import Archive, parse_region
from vanotebook.healpix import partition_path

# points where queries are hard: both poles, RA 0/360, and a dense patch
HARD = [(0.0, 90.0), (123.0, -90.0), (0.0, 0.0), (359.999, 30.0), (0.001, -60.0),
        (180.0, 89.95), (45.0, 10.0)]


def _catalogue(n=120_000, seed=0):
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    # crowd points near the hard places, some within arcseconds of them
    k = n // 2 // len(HARD)
    for i, (r, d) in enumerate(HARD):
        c = SkyCoord(r * u.deg, d * u.deg)
        p = c.directional_offset_by(rng.uniform(0, 360, k) * u.deg,
                                    2 * u.deg * rng.uniform(0, 1, k) ** 2)
        ra[i * k:(i + 1) * k] = p.ra.deg
        dec[i * k:(i + 1) * k] = p.dec.deg
    t = Table({"id": np.arange(n), "ra": ra, "dec": dec, "mag": rng.normal(18, 1, n),
               "flag": rng.integers(0, 3, n).astype(np.int16),
               "name": np.array([f"s{i}" for i in range(n)])})
    t["ra"].unit = t["dec"].unit = u.deg
    t["mag"].unit = u.mag
    return t


@pytest.fixture(scope="module")
def table():
    return _catalogue()


@pytest.fixture(scope="module")
def archive(tmp_path_factory, table):
    arc = Archive(tmp_path_factory.mktemp("a") / "arc")
    arc.add_catalogue("cat", table, max_rows=20_000, epoch=2016.0, row_group_rows=500)
    return arc


def _brute(table, ra, dec, radius):
    sep = SkyCoord(table["ra"], table["dec"]).separation(SkyCoord(ra * u.deg, dec * u.deg))
    return set(table["id"][sep <= radius].tolist())


@pytest.mark.parametrize(("ra", "dec"), HARD)
@pytest.mark.parametrize("radius", [3 * u.arcsec, 1 * u.arcmin, 6 * u.arcmin, 1 * u.deg])
def test_cone_equals_brute_force(archive, table, ra, dec, radius):
    cat = archive.catalogue("cat")
    got = cat.cone(ra, dec, radius)
    assert set(got["id"].tolist()) == _brute(table, ra, dec, radius)
    assert len(got) == len(set(got["id"]))  # no row twice


def test_query_reads_only_the_partitions_of_its_cells(archive, table):
    cat = archive.catalogue("cat")
    assert cat.pixels.size > 30
    reg = parse_region((45.0, 10.0, 6 * u.arcmin))
    got = cat.region(reg)
    files = {p for p, _ in cat.last_read}
    cells = reg.cells(cat.order)
    assert files == {partition_path(cat.path / "dataset", cat.order, p)
                     for p in cat.pixels if p in cells}
    assert len(files) <= 4 < cat.pixels.size
    # and within those files, only some row groups
    import pyarrow.parquet as pq

    read = sum(pq.ParquetFile(p).metadata.row_group(g).num_rows
               for p, rgs in cat.last_read for g in rgs)
    assert len(got) <= read < sum(pq.ParquetFile(p).metadata.num_rows for p in files)


def test_columns_units_and_provenance(archive, table):
    cat = archive.catalogue("cat")
    got = cat.cone(0.0, 0.0, 30 * u.arcmin)
    assert got.colnames == ["id", "ra", "dec", "mag", "flag", "name"]
    assert got["mag"].unit == u.mag and got["ra"].unit == u.deg
    assert got["name"].dtype.kind in "UO" and got["flag"].dtype == np.int16
    row = table[table["id"] == got["id"][0]][0]
    assert got["name"][0] == row["name"] and got["mag"][0] == row["mag"]
    prov = got.meta["provenance"]
    assert prov["parameters"]["catalogue"] == "cat"
    assert all(len(i["sha256"]) == 64 for i in prov["inputs"])
    only = cat.cone(0.0, 0.0, 30 * u.arcmin, columns=["id", "mag"])
    assert only.colnames == ["id", "mag"]
    empty = cat.cone(90.0, 45.0, 1 * u.arcsec)
    assert len(empty) == 0 and empty.colnames == got.colnames
    assert cat.epoch == 2016.0


def test_regions_polygon_moc_and_lazy(archive, table):
    from mocpy import MOC

    cat = archive.catalogue("cat")
    verts = np.array([[359.0, -1.0], [1.0, -1.0], [1.0, 1.0], [359.0, 1.0]])
    got = cat.region(verts)
    reg = parse_region(verts)
    assert set(got["id"]) == set(table["id"][reg.contains(np.asarray(table["ra"]),
                                                          np.asarray(table["dec"]))])
    moc = MOC.from_cone(lon=0 * u.deg, lat=90 * u.deg, radius=1 * u.deg, max_depth=10)
    got = cat.region(moc)
    inside = moc.contains_lonlat(np.asarray(table["ra"]) * u.deg,
                                 np.asarray(table["dec"]) * u.deg)
    assert set(got["id"]) == set(table["id"][inside]) and inside.sum() > 100
    lazy = cat.cone(359.999, 30.0, 1 * u.deg, lazy=True)
    assert type(lazy).__module__.startswith("dask")
    eager = cat.cone(359.999, 30.0, 1 * u.deg)
    df = lazy.compute()
    assert sorted(df["id"]) == sorted(eager["id"]) and lazy.npartitions == len(cat.last_read)
    assert cat.to_dask().shape[0].compute() == len(table)


def test_chunked_parquet_ingest_equals_in_memory(tmp_path, archive, table):
    # a parquet file read 5,000 rows at a time (as a file larger than memory would be)
    path = tmp_path / "big.parquet"
    from vanotebook.io import write_table

    write_table(table, path)
    arc = Archive(tmp_path / "arc2")
    chunked = arc.add_catalogue("chunked", path, max_rows=20_000, chunk_rows=5000,
                               row_group_rows=500)
    whole = archive.catalogue("cat")
    assert chunked.order == whole.order
    assert np.array_equal(chunked.pixels, whole.pixels)
    for pix in whole.pixels[:: max(1, whole.pixels.size // 10)]:
        a = pd.read_parquet(partition_path(whole.path / "dataset", whole.order, pix))
        b = pd.read_parquet(partition_path(chunked.path / "dataset", chunked.order, pix))
        pd.testing.assert_frame_equal(a, b)
    # provenance records the input file's sha256
    from vanotebook.provenance import sha256_file

    ing = arc.ingests()
    assert sha256_file(path) in ing["inputs"][0]
    # the same rows from a dask DataFrame and from a list of chunks
    import dask.dataframe as dd

    df = table.to_pandas()
    ddf = dd.from_pandas(df, npartitions=7)
    from_dask = arc.add_catalogue("dask", ddf, max_rows=20_000)
    assert from_dask.n_rows == len(table) and np.array_equal(from_dask.pixels, whole.pixels)
    parts = [table[i:i + 30_000] for i in range(0, len(table), 30_000)]
    listed = arc.add_catalogue("listed", parts, max_rows=20_000)
    got = listed.cone(0.0, 0.0, 1 * u.deg)
    assert set(got["id"]) == _brute(table, 0.0, 0.0, 1 * u.deg)


@pytest.mark.filterwarnings("ignore:The inplace keyword in NestedFrame:Warning")
def test_lsdb_opens_the_layout_and_agrees(archive, table):
    lsdb = pytest.importorskip("lsdb")
    cat = archive.catalogue("cat")
    theirs = lsdb.open_catalog(cat.path).cone_search(ra=0.0, dec=0.0, radius_arcsec=1800)
    got = cat.cone(0.0, 0.0, 30 * u.arcmin)
    assert set(theirs.compute()["id"]) == set(got["id"])


def test_sql_over_catalogues_and_index(archive, table):
    res = archive.sql("SELECT count(*) AS n, sum(flag) AS s FROM cat")
    assert res["n"][0] == len(table) and res["s"][0] == table["flag"].sum()
    res = archive.sql("SELECT name, n_rows FROM catalogues")
    assert list(res["name"]) == ["cat"] and res["n_rows"][0] == len(table)
    res = archive.sql("SELECT id FROM cat WHERE mag > ? ORDER BY id", [21.0])
    assert list(res["id"]) == sorted(table["id"][table["mag"] > 21.0])
    import duckdb

    with pytest.raises(duckdb.Error):
        archive.sql("DELETE FROM catalogues")  # read-only
    assert archive.catalogue("cat").n_rows == len(table)


def test_bad_catalogue_inputs_are_named(tmp_path, table):
    arc = Archive(tmp_path / "arc")
    with pytest.raises(VanotebookInputError, match=r"^ra: expected a column"):
        arc.add_catalogue("x", Table({"alpha": [1.0], "dec": [2.0]}))
    with pytest.raises(VanotebookInputError, match=r"^dec: expected a column"):
        arc.add_catalogue("x", Table({"alpha": [1.0], "delta": [2.0]}), ra="alpha")
    bad = Table({"ra": [1.0, 2.0], "dec": [10.0, 91.0]})
    with pytest.raises(VanotebookInputError, match=r"^dec: expected degrees within"):
        arc.add_catalogue("x", bad)
    with pytest.raises(VanotebookInputError, match=r"^name: expected"):
        arc.add_catalogue("images", table)
    with pytest.raises(VanotebookInputError, match=r"^name: expected a catalogue of this"):
        arc.catalogue("nope")
    arc.add_catalogue("small", table[:100])
    with pytest.raises(VanotebookInputError, match=r"^name: expected a new catalogue name"):
        arc.add_catalogue("small", table[:10])
    with pytest.raises(VanotebookInputError, match=r"^radius: expected an angle Quantity"):
        arc.catalogue("small").cone(1.0, 2.0, 3.0)
    with pytest.raises(VanotebookInputError, match=r"^dec: expected declinations within"):
        arc.catalogue("small").cone(1.0, -91.0, 3 * u.arcmin)
    replaced = arc.add_catalogue("small", table[:10], overwrite=True)
    assert replaced.n_rows == 10
    assert len(list((arc.path / "catalogues").iterdir())) == 1  # the old folder is gone


def test_cone_radius_is_keyword_free_but_options_keyword_only(archive):
    cat = archive.catalogue("cat")
    with pytest.raises(TypeError):
        cat.cone(0.0, 0.0, 1 * u.arcmin, ["id"])
