"""Ingestions rerun from their records, in a fresh process, to the same bytes."""

from __future__ import annotations

import subprocess
import sys

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from vanotebook import VanotebookInputError
from vanotebook.archive import Archive
from vanotebook.provenance import rerun


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "vanotebook.cli", "rerun", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def archive(tmp_path):
    rng = np.random.default_rng(5)
    table = Table({"ra": rng.uniform(10, 11, 5000), "dec": rng.uniform(-1, 1, 5000),
                   "flux": rng.lognormal(size=5000), "epoch": np.full(5000, 2016.0)})
    table["flux"].unit = u.mJy
    table.write(tmp_path / "cat.ecsv")
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [10.5, 0], [16, 16], [-1e-3, 1e-3]
    h = w.to_header()
    h["BUNIT"] = "DN"
    fits.PrimaryHDU(rng.normal(size=(32, 32)).astype(np.float32), h).writeto(
        tmp_path / "im.fits")
    arc = Archive(tmp_path / "arc")
    arc.add_catalogue("cat", tmp_path / "cat.ecsv", epoch="epoch", band="G", max_rows=1000)
    arc.add_images(tmp_path / "im.fits", survey="mine", unit="adu")
    return arc


def test_catalogue_ingestion_reruns_to_the_same_partitions(archive, tmp_path):
    done = _cli(archive.path, tmp_path / "again", "--catalogue", "cat")
    assert done.returncode == 0, done.stderr
    assert "same sha256 as recorded" in done.stdout
    old, new = archive.provenance("cat"), Archive(tmp_path / "again").provenance("cat")
    assert sorted(o["sha256"] for o in old.outputs) == sorted(o["sha256"] for o in new.outputs)
    assert len(old.outputs) > 1  # several partitions, each the same bytes
    assert Archive(tmp_path / "again").catalogues()["band"][0] == "g"


def test_image_ingestion_reruns_to_the_same_index(archive, tmp_path):
    ingest = archive.ingests()
    image_id = next(i for i, a in zip(ingest["ingest_id"], ingest["activity"], strict=True)
                    if a == "vanotebook.archive.add_images")
    done = _cli(archive.path, tmp_path / "again", "--ingest", image_id)
    assert done.returncode == 0, done.stderr
    again = Archive(tmp_path / "again").images()
    assert list(again["unit"]) == ["adu"] and list(again["survey"]) == ["mine"]


def test_a_changed_input_is_refused(archive, tmp_path):
    record = archive.provenance("cat")
    path = record.inputs[0]["path"]
    Table.read(path)[:10].write(path, overwrite=True)
    with pytest.raises(RuntimeError, match="changed since the product was made"):
        rerun(record, tmp_path / "again")


def test_in_memory_ingestion_cannot_rerun(tmp_path):
    arc = Archive(tmp_path / "arc")
    arc.add_catalogue("mem", Table({"ra": [1.0, 2.0], "dec": [3.0, 4.0]}))
    with pytest.raises(VanotebookInputError, match=r"^record: expected a vanotebook.archive."
                                                   r"add_catalogue product made from files"):
        rerun(arc.provenance("mem"), tmp_path / "again")
    done = _cli(arc.path, tmp_path / "again")
    assert done.returncode != 0 and "--catalogue NAME or --ingest ID" in done.stderr


def test_catalogue_hips_reruns_to_the_same_tiles(archive, tmp_path):
    out = archive.catalogue("cat").to_hips(tmp_path / "hips", order_by="flux",
                                           descending=True, max_rows_per_tile=200)
    done = _cli(out / "provenance.json", tmp_path / "hips2")
    assert done.returncode == 0, done.stderr
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert len(files) > 5
    for rel in files:
        if rel.name != "provenance.json":
            assert (out / rel).read_bytes() == (tmp_path / "hips2" / rel).read_bytes(), rel
