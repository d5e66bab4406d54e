"""Issue 20: the N-way match on Dask partitions with margins equals the in-memory one."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import dask
import dask.dataframe as dd
import numpy as np
import pytest

from vanotebook import VanotebookInputError, healpix
from vanotebook.provenance import Provenance, rerun
from vanotebook.xmatch import _core, _dask, crossmatch_many

RADIUS = 1.5 * u.arcsec




@pytest.fixture(scope="module")
def cats(three_catalogues):
    return three_catalogues(20_000, seed=3, side=1.0)


@pytest.fixture(scope="module")
def memory(cats):
    return crossmatch_many(cats, radius=RADIUS)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


def _lazy(cats, parts=(3, 4, 2)):
    return {n: dd.from_pandas(t.to_pandas(), npartitions=k)
            for (n, t), k in zip(cats.items(), parts, strict=True)}


def _assert_same(mem, got):
    """The same rows, in the same order, the same counterparts, the same probabilities."""
    assert len(mem) == len(got) > 10_000
    np.testing.assert_array_equal(np.asarray(mem["id_a"]), np.asarray(got["id_a"]))
    for n in "bc":
        np.testing.assert_array_equal(np.asarray(mem[f"truth_{n}"].filled(-9)),
                                      np.asarray(_filled(got[f"truth_{n}"])))
        np.testing.assert_allclose(np.asarray(mem[f"separation_{n}"].filled(-1)),
                                   np.asarray(_filled(got[f"separation_{n}"], -1)), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(mem["probability"]), np.asarray(got["probability"]),
                               rtol=1e-9)
    np.testing.assert_allclose(np.asarray(mem["p_any"]), np.asarray(got["p_any"]), rtol=1e-9)


def _filled(col, fill=-9):
    if hasattr(col, "filled"):
        return col.filled(fill)
    return col.fillna(fill).to_numpy()  # pandas, from the parquet parts


def _border_primaries(out, order: int) -> int:
    """Result rows whose chosen counterpart lies in another pixel than the primary."""
    pa = healpix.pixel_index(np.asarray(out["ra_a"]), np.asarray(out["dec_a"]), order)
    n = 0
    for c in "bc":
        ok = ~np.asarray(out[f"ra_{c}"].mask)
        pc = healpix.pixel_index(np.asarray(out[f"ra_{c}"].filled(0)),
                                 np.asarray(out[f"dec_{c}"].filled(0)), order)
        n += int((ok & (pc != pa)).sum())
    return n


def test_dask_partitions_equal_in_memory(cats, memory, client, monkeypatch):
    """3 x 20,000 rows split into many HEALPix partitions on a two-process cluster: the
    same rows, counterparts and probabilities (rtol 1e-9) as in memory, including
    primaries whose counterpart sits across a partition border; the whole catalogues
    are never gathered here (`_weigh_many`, the in-memory path, is not taken); progress
    counts partitions; and the result is calibrated against the catalogues' truth."""
    def gathered(*args, **kw):
        raise AssertionError("the catalogues were gathered on the client")

    monkeypatch.setattr(_core, "_weigh_many", gathered)
    calls = []
    with dask.config.set({"vanotebook.partition-rows": 2500}):
        out = crossmatch_many(_lazy(cats), radius=RADIUS, client=client,
                              progress=lambda d, t: calls.append((d, t)))
    parts = out.meta["partitions"]
    assert parts >= 4
    assert calls[0] == (0, 2 * parts) and calls[-1] == (2 * parts, 2 * parts)
    assert len(calls) == 2 * parts + 1
    _assert_same(memory, out)
    for n in "bc":
        assert out.meta["completeness"][n] == pytest.approx(memory.meta["completeness"][n],
                                                            rel=1e-9)
    assert _border_primaries(out, out.meta["order"]) >= 10  # 18 here
    assert Provenance.from_dict(out.meta["provenance"]).activity == \
        "vanotebook.xmatch.crossmatch_many"
    both = ~out["truth_b"].mask & ~out["truth_c"].mask
    ok = (np.asarray(out["truth_b"].filled(-2)) == np.asarray(out["id_a"])) & (
        np.asarray(out["truth_c"].filled(-2)) == np.asarray(out["id_a"]))
    p = np.asarray(out["probability"])
    hi = both & (p > 0.8)
    assert hi.sum() > 3000 and abs(ok[hi].mean() - p[hi].mean()) < 0.05


def test_folder_output_is_written_partition_by_partition(cats, memory, client, tmp_path,
                                                         monkeypatch):
    """With ``output=<folder>`` each partition's rows are written as they are weighed (one
    part at a time through this process), read back with units, and equal the in-memory
    result; the record lists every part."""
    import json

    import pyarrow.parquet as pq

    from vanotebook.io import read_catalogue

    written = []
    real = _dask._write_nway_part

    def spy(table, folder, number, meta):
        written.append((number, len(table)))
        real(table, folder, number, meta)

    monkeypatch.setattr(_dask, "_write_nway_part", spy)
    folder = tmp_path / "nway"
    with dask.config.set({"vanotebook.partition-rows": 2500}):
        lazy = crossmatch_many(_lazy(cats), radius=RADIUS, client=client, output=folder)
    assert isinstance(lazy, dd.DataFrame)
    parts = sorted(folder.glob("part-*.parquet"))
    assert len(parts) == len(written) >= 4
    assert len({n for n, _ in written}) == len(written)
    assert max(rows for _, rows in written) < len(memory) / 2  # never the whole result
    got = lazy.compute().reset_index(drop=True)
    got = got.sort_values("id_a", kind="stable").reset_index(drop=True)
    _assert_same(memory, got)
    whole = read_catalogue(folder)
    assert len(whole) == len(memory) and whole["separation_b"].unit == u.arcsec
    numbers = json.loads(pq.read_schema(parts[0]).metadata[b"vanotebook.meta"])
    assert numbers["COMPL1"] == pytest.approx(memory.meta["completeness"]["b"], rel=1e-9)
    assert numbers["NPARTS"] >= 4
    prov = Provenance.read(Path(f"{folder}.prov.json"))
    assert sorted(Path(o["path"]).name for o in prov.outputs) == [p.name for p in parts]


def test_folder_output_is_all_or_nothing(cats, tmp_path, monkeypatch):
    """A failing part write leaves no folder; an existing folder is refused before any work."""
    small = {n: t[:6000] for n, t in cats.items()}
    calls = []
    real = _dask._write_part

    def failing(out, folder, number):
        calls.append(number)
        if len(calls) == 2:
            raise OSError("disk full")
        real(out, folder, number)

    monkeypatch.setattr(_dask, "_write_part", failing)
    with dask.config.set({"vanotebook.partition-rows": 1500}), \
            pytest.raises(OSError, match="disk full"):
        crossmatch_many(_lazy(small), radius=RADIUS, output=tmp_path / "nway")
    assert list(tmp_path.iterdir()) == []

    def no_work(*args, **kw):
        raise AssertionError("work started")

    monkeypatch.setattr(_dask, "crossmatch_many_dask", no_work)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(VanotebookInputError) as info:
        crossmatch_many(_lazy(small), radius=RADIUS, output=tmp_path / "taken")
    assert info.value.argument == "output"


def test_partitioned_folder_product_reruns_to_the_same_bytes(cats, tmp_path):
    """HEALPix-partitioned catalogue folders (read lazily) into a folder product: its
    record reruns (`vanotebook.provenance.rerun`) to the same parts, byte for byte."""
    paths = {n: healpix.write_partitioned(t[:8000], tmp_path / n, order=4)
             for n, t in cats.items()}
    product = tmp_path / "nway"
    with dask.config.set({"vanotebook.partition-rows": 2000}):
        crossmatch_many(paths, radius=RADIUS, output=product)
        parts = sorted(product.glob("part-*.parquet"))
        record = Path(f"{product}.prov.json")
        prov = Provenance.read(record)
        assert len(parts) >= 2 and len(prov.outputs) == len(parts)
        assert len(prov.inputs) > 3  # every file of the three folders
        new = rerun(record, tmp_path / "again")  # compares the outputs' sha256 too
    again = sorted((tmp_path / "again").glob("part-*.parquet"))
    assert [p.name for p in again] == [p.name for p in parts]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(again, parts, strict=True))
    assert new.activity == "vanotebook.xmatch.crossmatch_many"


def test_bad_lazy_input_is_refused_before_work(cats, monkeypatch):
    """A lazy catalogue without errors, or an empty one, gets the in-memory path's named
    errors; the missing errors before any Dask work."""
    small = {n: t[:3000] for n, t in cats.items()}
    lazy = _lazy(small)
    lazy["c"] = lazy["c"].drop(columns=["error"])
    real = _dask.crossmatch_many_dask

    def no_work(*args, **kw):
        raise AssertionError("work started")

    monkeypatch.setattr(_dask, "crossmatch_many_dask", no_work)
    with pytest.raises(VanotebookInputError, match="'c'") as info:
        crossmatch_many(lazy, radius=RADIUS)
    assert info.value.argument == "errors"
    monkeypatch.setattr(_dask, "crossmatch_many_dask", real)
    lazy = _lazy(small)
    lazy["b"] = lazy["b"][lazy["b"]["ra"] < 0]
    with pytest.raises(VanotebookInputError) as info:
        crossmatch_many(lazy, radius=RADIUS)
    assert info.value.argument == "catalogues['b']"
