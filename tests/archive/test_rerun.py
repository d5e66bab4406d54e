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


def test_a_saved_product_keeps_how_it_was_made(tmp_path):
    """A table made by a service (its record in ``meta["provenance"]``, as the dashboards'
    "Save to my archive" hands it over) keeps that record in the archive's own: as an
    input, by its digest, whole. It still cannot rerun (its data were in memory), and
    a table without a record gets no such input. Mutation: the record not passed on
    (`_made_from` returning nothing): the archive's record has no input."""
    from vanotebook.detect import detect
    from vanotebook.detect._synth import injected_image
    from vanotebook.provenance import Provenance

    img, _ = injected_image((96, 96), 6, seed=1, min_separation=8.0)
    cat = detect(img, psf_fwhm=3.0, extended=False, classify=False).catalogue
    cat["ra"], cat["dec"] = 10 + cat["x"].value / 1e3, cat["y"].value / 1e3
    made = Provenance.from_dict(cat.meta["provenance"])
    arc = Archive(tmp_path / "arc")
    arc.add_catalogue("found", cat)
    record = arc.provenance("found")
    assert record.inputs == [{"sha256": made.digest,
                              "provenance": Provenance.from_dict(made.to_dict()).__dict__}]
    assert record.inputs[0]["provenance"]["activity"] == made.activity
    assert Provenance.from_dict(record.to_dict()).inputs == record.inputs  # round trip
    with pytest.raises(VanotebookInputError, match="made from files"):
        rerun(record, tmp_path / "again")
    arc.add_catalogue("bare", Table({"ra": [1.0], "dec": [2.0]}))
    assert arc.provenance("bare").inputs == []


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
