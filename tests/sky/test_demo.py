from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.table import Table

from vanotebook import Provenance, VanotebookInputError, rerun
from vanotebook.io import parse_catalogue, parse_image
from vanotebook.provenance import sha256_file
from vanotebook.sky import SURVEYS, demo_sky, read_spectra, write_demo_data, write_spectra

SMALL = {"size": 0.4, "n_catalogue": 4000, "n_spectra": 1500}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("d") / "demo"
    messages = []
    prov = write_demo_data(out, seed=11, progress=messages.append, **SMALL)
    return out, prov, messages


def test_layout_manifest_and_hashes(demo_dir):
    out, prov, messages = demo_dir
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*")
               if p.is_file() and p.relative_to(out).parts[0] != "archive"}
    assert on_disk == listed | {"manifest.json", "provenance.json"}
    for item in manifest["files"]:
        assert sha256_file(out / item["path"]) == item["sha256"]
        assert (out / item["path"]).stat().st_size == item["bytes"]
    for key in SURVEYS:
        assert len(list((out / "images" / key).glob("*.fits"))) == 4
        assert (out / "truth" / f"{key}_sources.ecsv").is_file()
        assert (out / "truth" / f"{key}_offsets.ecsv").is_file()
    assert any("radio" in m for m in messages)
    assert Provenance.read(out / "provenance.json").digest == prov.digest


def test_written_data_loads_through_the_parsers(demo_dir):
    out, _, _ = demo_dir
    image = parse_image(out / "images" / "ir24" / "ir24_tile0.fits")
    assert image.frame == "galactic"
    assert image.data.dtype == np.float32
    left = parse_catalogue(out / "catalogues" / "left.parquet")
    right = parse_catalogue(out / "catalogues" / "right.parquet")
    assert len(left) == 4000
    matched = right[right["truth_left_id"] >= 0]
    assert set(matched["truth_left_id"]) <= set(left["source_id"])
    assert str(left["ra_error"].unit) == "arcsec"
    truth = Table.read(out / "truth" / "radio_sources.ecsv")
    assert truth["flux"].unit == "Jy"
    assert truth["peak"].unit == "Jy / beam"


def test_same_seed_same_bytes_via_rerun(demo_dir, tmp_path):
    out, prov, _ = demo_dir
    again = rerun(out / "provenance.json", tmp_path / "again")
    assert again.digest == prov.digest
    for item in prov.outputs:
        assert (tmp_path / "again" / item["path"]).read_bytes() == \
            (out / item["path"]).read_bytes()


def test_other_seed_other_data(demo_dir, tmp_path):
    out, _, _ = demo_dir
    write_demo_data(tmp_path / "other", seed=12, surveys=["radio"], **SMALL)
    a = parse_image(out / "images" / "radio" / "radio_tile0.fits").data
    b = parse_image(tmp_path / "other" / "images" / "radio" / "radio_tile0.fits").data
    assert a.shape == b.shape
    assert not np.array_equal(a, b)


def test_failure_leaves_nothing(tmp_path, monkeypatch):
    import vanotebook.sky._demo as demo

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(demo, "write_spectra", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_demo_data(tmp_path / "demo", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_clobber_and_bad_survey(demo_dir, tmp_path):
    out, _, _ = demo_dir
    with pytest.raises(FileExistsError):
        write_demo_data(out, **SMALL)
    with pytest.raises(VanotebookInputError, match="surveys: expected keys among"):
        write_demo_data(tmp_path / "x", surveys=["xray"], **SMALL)
    with pytest.raises(VanotebookInputError, match="seed: expected a non-negative integer"):
        demo_sky(-1)


def test_spectra_parquet_round_trip(tmp_path):
    spectra = demo_sky(3, n_spectra=300).spectra
    path = write_spectra(spectra, tmp_path / "s.parquet")
    back = read_spectra(path)
    np.testing.assert_array_equal(back.flux, spectra.flux)
    np.testing.assert_array_equal(back.label, spectra.label)
    np.testing.assert_array_equal(back.wavelength, spectra.wavelength)
    with pytest.raises(VanotebookInputError, match="path: expected a parquet file written"):
        Table({"a": [1]}).write(tmp_path / "t.parquet")
        read_spectra(tmp_path / "t.parquet")


def test_demo_archive_indexes_the_written_files(demo_dir):
    import astropy.units as u

    from vanotebook.archive import Archive

    out, _, _ = demo_dir
    arc = Archive(out / "archive")
    images = arc.images()
    assert len(images) == 4 * len(SURVEYS) + 2  # the tiles and the two line cubes
    on_disk = {str(p.resolve()) for p in (out / "images").rglob("*.fits")}
    on_disk |= {str(p.resolve()) for p in (out / "cubes").glob("*.fits")}
    assert set(images["path"]) == on_disk
    for path, sha in zip(images["path"], images["sha256"], strict=True):
        assert sha256_file(path) == sha
    left = parse_catalogue(out / "catalogues" / "left.parquet")
    cat = arc.catalogue("left")
    assert cat.n_rows == len(left)
    c = (float(np.median(left["ra"])), float(np.median(left["dec"])))
    got = cat.cone(c[0], c[1], 3 * u.arcmin)
    from astropy.coordinates import SkyCoord

    sep = SkyCoord(left["ra"], left["dec"], unit="deg").separation(
        SkyCoord(c[0], c[1], unit="deg"))
    assert set(got["source_id"]) == set(left["source_id"][sep <= 3 * u.arcmin])


def test_demo_without_archive(tmp_path):
    write_demo_data(tmp_path / "d", surveys=["radio"], archive=False, **SMALL)
    assert not (tmp_path / "d" / "archive").exists()
