"""A cross-match product reruns from its record to the same bytes, in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from vanotebook import VanotebookInputError, healpix
from vanotebook.provenance import Provenance, rerun
from vanotebook.sky import catalogue_pair
from vanotebook.xmatch import crossmatch


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("xmatch_rerun")
    left, right = catalogue_pair(3000, radius=0.2, true_fraction=0.6, seed=4).to_tables()
    left.write(folder / "left.ecsv")
    right.write(folder / "right.parquet")
    return folder, left, right


def _cli_rerun(record: Path, output: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vanotebook.cli", "rerun", str(record),
                           str(output)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("suffix", "options"), [
    (".fits", {"how": "all", "errors": 0.3 * u.arcsec}),
    (".ecsv", {"how": "k", "k": 2, "radius": 2 * u.arcsec, "epoch": False}),
    (".parquet", {}),
])
def test_product_reruns_to_the_same_bytes(files, tmp_path, suffix, options):
    folder, _left, _right = files
    product = tmp_path / f"pairs{suffix}"
    out = crossmatch(folder / "left.ecsv", folder / "right.parquet", output=product, **options)
    assert len(out) > 500
    record = Path(f"{product}.prov.json")
    prov = Provenance.read(record)
    assert prov.activity == "vanotebook.xmatch.crossmatch"
    assert len(prov.inputs) == 2 and len(prov.outputs) == 1
    # the file holds the pairs the call returned
    back = Table.read(product, **({"hdu": "PAIRS"} if suffix == ".fits" else {}))
    assert len(back) == len(out)
    np.testing.assert_array_equal(back["source_id_left"], out["source_id_left"])
    np.testing.assert_allclose(back["separation"], out["separation"])
    again = tmp_path / f"again{suffix}"
    done = _cli_rerun(record, again)
    assert done.returncode == 0, done.stderr[-2000:]
    assert again.read_bytes() == product.read_bytes()
    if suffix == ".fits":
        with fits.open(product) as hdul:
            assert hdul[0].header["PROVACT"] == "vanotebook.xmatch.crossmatch"
            assert "PROVENANCE" in hdul


def test_partitioned_inputs_rerun(files, tmp_path):
    folder, _left, right = files
    part = healpix.write_partitioned(right, tmp_path / "right_hpx", order=5)
    product = tmp_path / "pairs.parquet"
    crossmatch(folder / "left.ecsv", part, output=product)
    record = Path(f"{product}.prov.json")
    assert len(Provenance.read(record).inputs) > 2  # every file of the folder
    new = rerun(record, tmp_path / "again.parquet")
    assert (tmp_path / "again.parquet").read_bytes() == product.read_bytes()
    assert new.outputs[0]["sha256"] == Provenance.read(record).outputs[0]["sha256"]


def test_partitioned_folder_product_reruns_to_the_same_bytes(files, tmp_path):
    """A folder output (no suffix) from a partitioned catalogue: one parquet part per
    partition, each recorded, and the rerun writes the same parts, byte for byte."""
    folder, _left, right = files
    part = healpix.write_partitioned(right, tmp_path / "right_hpx", order=5)
    product = tmp_path / "pairs"
    crossmatch(folder / "left.ecsv", part, output=product)
    parts = sorted(product.glob("part-*.parquet"))
    record = Path(f"{product}.prov.json")
    assert parts and len(Provenance.read(record).outputs) == len(parts)
    rerun(record, tmp_path / "again")
    again = sorted((tmp_path / "again").glob("part-*.parquet"))
    assert [p.name for p in again] == [p.name for p in parts]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(again, parts, strict=True))


def test_in_memory_product_is_refused_by_rerun(files, tmp_path):
    folder, left, _right = files
    product = tmp_path / "pairs.ecsv"
    crossmatch(left, folder / "right.parquet", output=product)
    with pytest.raises(VanotebookInputError, match="in memory") as info:
        rerun(Path(f"{product}.prov.json"), tmp_path / "again.ecsv")
    assert info.value.argument == "record"
    assert not (tmp_path / "again.ecsv").exists()


def test_output_is_checked_before_work(files, tmp_path):
    _folder, left, right = files
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for bad in (tmp_path / "pairs.txt", tmp_path / "full"):
        with pytest.raises(VanotebookInputError) as info:
            crossmatch(left, right, output=bad)
        assert info.value.argument == "output"
    (tmp_path / "taken.ecsv").write_text("x")
    with pytest.raises(VanotebookInputError, match="overwrite"):
        crossmatch(left, right, output=tmp_path / "taken.ecsv")


def test_record_parameters_are_json(files, tmp_path):
    folder, _left, _right = files
    product = tmp_path / "pairs.ecsv"
    crossmatch(folder / "left.ecsv", folder / "right.parquet", output=product,
               errors={"left": 0.2 * u.arcsec, "right": ("ra_error", "dec_error")})
    params = json.loads(Path(f"{product}.prov.json").read_text())["vanotebook"]["parameters"]
    assert params["errors"] == {"left": {"value": 0.2, "unit": "arcsec"},
                                "right": ["ra_error", "dec_error"]}
    assert params["left"] == str((folder / "left.ecsv").resolve())




def test_nway_product_reruns_to_the_same_bytes(tmp_path, three_catalogues):
    """`crossmatch_many(output=...)` writes the result with its record; the record reruns
    to the same bytes in a fresh process."""
    from vanotebook.xmatch import crossmatch_many

    cats = three_catalogues(3000, seed=5, side=0.5)
    paths = {}
    for name, table in cats.items():
        paths[name] = tmp_path / f"{name}.parquet"
        table.write(paths[name])
    product = tmp_path / "nway.fits"
    out = crossmatch_many(paths, radius=1.5 * u.arcsec, output=product)
    assert len(out) > 1000
    prov = Provenance.read(Path(f"{product}.prov.json"))
    assert prov.activity == "vanotebook.xmatch.crossmatch_many"
    assert len(prov.inputs) == 3
    assert Provenance.from_dict(out.meta["provenance"]).activity == prov.activity
    back = Table.read(product, hdu="PAIRS")
    np.testing.assert_allclose(back["probability"], out["probability"])
    assert back.meta["COMPL1"] == pytest.approx(out.meta["completeness"]["b"])
    again = tmp_path / "again.fits"
    done = _cli_rerun(Path(f"{product}.prov.json"), again)
    assert done.returncode == 0, done.stderr[-2000:]
    assert again.read_bytes() == product.read_bytes()
    with pytest.raises(VanotebookInputError, match="output"):  # before any work
        crossmatch_many(paths, radius=1.5 * u.arcsec, output=product)
