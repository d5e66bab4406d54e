"""Catalogue HiPS: every row once, bounded tiles, brightest first, right cells."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import cdshealpix.nested as cn
import numpy as np
import pytest
from astropy.coordinates import Latitude, Longitude
from astropy.table import Table

from vanotebook._errors import VanotebookInputError
from vanotebook.archive import Archive
from vanotebook.archive._hips import assign_orders, read_hips_tile, write_catalogue_hips


def _table(n=30_000, seed=3, patch=(10.0, 14.0, -2.0, 2.0)):
    rng = np.random.default_rng(seed)
    t = Table({"source_id": np.arange(n, dtype=np.int64),
               "ra": rng.uniform(patch[0], patch[1], n),
               "dec": rng.uniform(patch[2], patch[3], n),
               "mag": rng.permutation(n) * 1e-3 + 10.0,  # unique: a total order
               "flux": rng.lognormal(0, 1, n)})
    # a dense knot, so that some cells need deep orders
    t["ra"][:3000] = 12.0 + rng.normal(0, 0.01, 3000)
    t["dec"][:3000] = 0.5 + rng.normal(0, 0.01, 3000)
    return t


def _tiles(out: Path) -> Table:
    """Every tile's rows with their (order, cell) taken from the file names."""
    rows = []
    for path in sorted(out.glob("Norder*/Dir*/Npix*.tsv")):
        k = int(path.parts[-3][6:])
        pix = int(path.stem[4:])
        t = read_hips_tile(path)
        t["_order"] = k
        t["_cell"] = pix
        first = path.read_text().splitlines()[0]
        assert first.startswith("# Completeness = ")
        assert int(first.split("=")[1].split("/")[0]) == len(t)
        rows.append(t)
    from astropy.table import vstack

    return vstack(rows)


def _cells(ra, dec, order):
    return np.asarray(cn.lonlat_to_healpix(Longitude(np.asarray(ra) * u.deg),
                                           Latitude(np.asarray(dec) * u.deg),
                                           np.asarray(order, np.uint8)), np.int64)


@pytest.fixture(scope="module")
def table():
    return _table()


@pytest.fixture(scope="module")
def hips(table, tmp_path_factory):
    out = tmp_path_factory.mktemp("hips") / "cat"
    write_catalogue_hips(table, out, order_by="mag", max_rows_per_tile=100)
    return out


def test_every_row_exactly_once_and_bounded(table, hips):
    tiles = _tiles(hips)
    ids = np.sort(np.asarray(tiles["source_id"]))
    assert np.array_equal(ids, np.sort(table["source_id"]))  # all, and none twice
    _, counts = np.unique(np.stack([tiles["_order"], tiles["_cell"]]), axis=1,
                          return_counts=True)
    assert counts.max() <= 100
    props = dict(line.split(" = ", 1) for line in (hips / "properties").read_text().splitlines())
    assert props["dataproduct_type"] == "catalog"
    assert props["hips_frame"] == "equatorial"
    assert int(props["hips_cat_nrows"]) == len(table)
    assert int(props["hips_order"]) == tiles["_order"].max()
    assert int(props["hips_order_min"]) == 1
    for path in ("Metadata.xml", "Moc.fits", "Norder1/Allsky.tsv", "Norder2/Allsky.tsv"):
        assert (hips / path).is_file()


def test_tiles_are_in_their_healpix_cell(hips):
    tiles = _tiles(hips)
    cells = _cells(tiles["ra"], tiles["dec"], tiles["_order"])
    assert np.array_equal(cells, np.asarray(tiles["_cell"]))
    # Allsky files hold exactly the order-1 and order-2 tiles
    for k in (1, 2):
        allsky = read_hips_tile(hips / f"Norder{k}" / "Allsky.tsv")
        assert sorted(allsky["source_id"]) == sorted(tiles["source_id"][tiles["_order"] == k])


def test_shallower_rows_are_brighter_than_deeper_ones(table, hips):
    tiles = _tiles(hips)
    order = np.asarray(tiles["_order"])
    mag = np.asarray(tiles["mag"])
    for k in range(1, order.max()):
        shallow = order == k
        deeper = order > k
        # rows deeper in the same order-k cell are all fainter than the order-k rows there
        c_sh = _cells(tiles["ra"][shallow], tiles["dec"][shallow], np.full(shallow.sum(), k))
        c_dp = _cells(tiles["ra"][deeper], tiles["dec"][deeper], np.full(deeper.sum(), k))
        for c in np.unique(c_sh):
            below = mag[deeper][c_dp == c]
            if below.size:
                assert mag[shallow][c_sh == c].max() < below.min()
    # and a cell's tile lists rows brightest first
    path = next(iter(sorted(hips.glob("Norder5/Dir*/Npix*.tsv"))))
    mags = np.asarray(read_hips_tile(path)["mag"])
    assert np.all(np.diff(mags) >= 0)


def test_matches_a_brute_force_assignment(table, hips):
    """The same orders as a plain loop over orders and cells (no partitions)."""
    tiles = _tiles(hips)
    got = dict(zip(tiles["source_id"].tolist(), tiles["_order"].tolist(), strict=True))
    order = np.argsort(table["mag"])
    ra, dec = np.asarray(table["ra"])[order], np.asarray(table["dec"])[order]
    ids = np.asarray(table["source_id"])[order]
    left = np.ones(len(table), bool)
    expect = {}
    for k in range(1, 15):
        cells = _cells(ra, dec, np.full(ra.size, k))
        seen: dict[int, int] = {}
        for i in np.flatnonzero(left):
            c = int(cells[i])
            if seen.get(c, 0) < 100:
                seen[c] = seen.get(c, 0) + 1
                expect[int(ids[i])] = k
                left[i] = False
        if not left.any():
            break
    assert got == expect


def test_descending_and_input_order(tmp_path):
    t = _table(4000, seed=5)
    out = write_catalogue_hips(t, tmp_path / "desc", order_by="flux", descending=True,
                               max_rows_per_tile=50)
    tiles = _tiles(out)
    top = tiles[tiles["_order"] == 1]
    assert set(top["source_id"]) <= set(np.argsort(-t["flux"])[:50 * 2])
    assert tiles["flux"][tiles["_order"] == 1].min() >= np.sort(t["flux"])[::-1][99]
    out2 = write_catalogue_hips(t, tmp_path / "plain", max_rows_per_tile=50)
    tiles2 = _tiles(out2)
    first = tiles2[tiles2["_order"] == 1]
    # input order: the first rows of the table come first
    assert first["source_id"].max() < 200


def test_dask_and_archive_inputs_give_the_same_tiles(table, hips, tmp_path):
    import dask.dataframe as dd

    df = dd.from_pandas(table.to_pandas(), npartitions=7)
    out = write_catalogue_hips(df, tmp_path / "dask", order_by="mag", max_rows_per_tile=100)
    arch = Archive(tmp_path / "archive")
    arch.add_catalogue("cat", table, max_rows=4000)
    cat = arch.catalogue("cat")
    assert cat.pixels.size > 1
    out2 = write_catalogue_hips(cat, tmp_path / "arch", order_by="mag", max_rows_per_tile=100)
    ref = sorted(p.relative_to(hips) for p in hips.rglob("*.tsv"))
    for other in (out, out2):
        files = sorted(p.relative_to(other) for p in other.rglob("*.tsv"))
        assert files == ref
        for rel in ref:
            a, b = read_hips_tile(hips / rel), read_hips_tile(other / rel)
            assert list(a["source_id"]) == list(b["source_id"]), rel
            assert np.allclose(a["ra"], b["ra"])


def test_parquet_path_and_columns(table, tmp_path):
    from vanotebook.io import write_table

    path = write_table(table, tmp_path / "cat.parquet")
    out = write_catalogue_hips(path, tmp_path / "pq", order_by="mag", max_rows_per_tile=500,
                               columns=["source_id"])
    tile = read_hips_tile(next(out.glob("Norder3/Dir*/*.tsv")))
    assert tile.colnames == ["ra", "dec", "source_id"]
    assert "pos.eq.ra;meta.main" in (out / "Metadata.xml").read_text()


def test_max_order_holds_the_rest(table, tmp_path):
    out = write_catalogue_hips(table, tmp_path / "mo", order_by="mag", max_rows_per_tile=100,
                               max_order=4)
    tiles = _tiles(out)
    assert tiles["_order"].max() == 4
    assert len(tiles) == len(table)


def test_bad_input(table, tmp_path):
    out = tmp_path / "bad"
    with pytest.raises(VanotebookInputError, match="order_by"):
        write_catalogue_hips(table, out, order_by="nope")
    with pytest.raises(VanotebookInputError, match="ra"):
        write_catalogue_hips(table, out, ra="lon")
    with pytest.raises(VanotebookInputError, match="max_rows_per_tile"):
        write_catalogue_hips(table, out, max_rows_per_tile=0)
    with pytest.raises(VanotebookInputError, match="max_order"):
        write_catalogue_hips(table, out, max_order=1)
    with pytest.raises(VanotebookInputError, match="catalogue"):
        write_catalogue_hips(object(), out)
    bad = table.copy()
    bad["dec"][5] = 95.0
    with pytest.raises(VanotebookInputError, match="dec"):
        write_catalogue_hips(bad, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no partial folder left


def test_failure_leaves_no_partial_folder(table, tmp_path):
    import dask.dataframe as dd

    pdf = table.to_pandas()
    pdf.loc[25_000, "dec"] = np.nan  # found only when a later partition is read
    df = dd.from_pandas(pdf, npartitions=6)
    out = tmp_path / "partial"
    with pytest.raises(VanotebookInputError, match="finite"):
        write_catalogue_hips(df, out, order_by="mag")
    assert list(tmp_path.iterdir()) == []
    # an existing HiPS is kept when the new one fails
    write_catalogue_hips(table[:100], out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(VanotebookInputError):
        write_catalogue_hips(df, out, overwrite=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    with pytest.raises(FileExistsError):
        write_catalogue_hips(table[:100], out)


def test_assign_orders_kernel():
    rng = np.random.default_rng(0)
    h = rng.integers(0, 12 * 4**29, 5000, dtype=np.int64)
    o = assign_orders(h, first=1, last=6, limit=10, dump=False)
    for k in range(1, 7):
        cells = h[o == k] >> (2 * (29 - k))
        if cells.size:
            assert np.unique(cells, return_counts=True)[1].max() <= 10
    assert (assign_orders(h, first=1, last=3, limit=10) >= 1).all()



_MEMORY_SCRIPT = r"""
import sys
from pathlib import Path

import dask
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

dask.config.set({"vanotebook.partition-rows": 50_000})
from vanotebook.archive._hips import write_catalogue_hips

root = Path(sys.argv[1])


def parquet(path, n):
    rng = np.random.default_rng(2)
    writer = None
    for start in range(0, n, 50_000):
        cols = {"id": np.arange(start, start + 50_000), "ra": rng.uniform(10, 30, 50_000),
                "dec": rng.uniform(-10, 10, 50_000)}
        cols.update({f"f{i}": rng.normal(size=50_000) for i in range(5)})
        t = pa.table(cols)
        writer = writer or pq.ParquetWriter(path, t.schema)
        writer.write_table(t)
    writer.close()


def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024


parquet(root / "small.parquet", 50_000)
write_catalogue_hips(root / "small.parquet", root / "warm", order_by="f0")  # imports, jit
for n in sys.argv[2:]:
    parquet(root / f"{n}.parquet", int(n))
    before = status("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to now
    write_catalogue_hips(root / f"{n}.parquet", root / f"hips{n}", order_by="f0")
    print(status("VmHWM") - before)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_parquet_input_is_never_held_whole(tmp_path):
    """Peak memory of a parquet input does not grow with the input (chunked, per pixel)."""
    import subprocess
    import sys

    small, large = 200_000, 1_000_000
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path), str(small),
                           str(large)], capture_output=True, text=True, check=True)
    extra_small, extra_large = (int(v) for v in proc.stdout.split()[-2:])
    grown = (large - small) * 8 * 8  # eight 8-byte columns more in memory, if held whole
    assert extra_large - extra_small < 0.25 * grown, (extra_small / 2**20,
                                                     extra_large / 2**20)
    tiles = _tiles(tmp_path / f"hips{large}")
    assert len(tiles) == large and np.unique(tiles["id"]).size == large
