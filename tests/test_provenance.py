from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits

from vanotebook import Provenance, VanotebookInputError, rerun
from vanotebook.provenance import record, reproducible, sha256_file, software_versions


@pytest.fixture
def prov(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("input data")
    with record("vanotebook.tests.double", {"factor": 2, "name": "x"}, seed=7) as p:
        p.add_input(src)
    return p


def test_record_fields(prov):
    assert prov.activity == "vanotebook.tests.double"
    assert prov.parameters == {"factor": 2, "name": "x"}
    assert prov.seed == 7
    assert prov.inputs[0]["sha256"] == sha256_file(prov.inputs[0]["path"])
    assert prov.ended is not None and prov.ended >= prov.started
    versions = software_versions()
    assert {"python", "numpy", "astropy", "vanotebook"} <= set(versions)
    assert prov.versions == versions


def test_json_round_trip_and_prov_shape(prov, tmp_path):
    data = json.loads(prov.to_json())
    assert {"prefix", "entity", "activity", "used", "wasGeneratedBy", "agent"} <= set(data)
    (act,) = data["activity"].values()
    assert act["prov:type"] == "vanotebook.tests.double"
    assert act["vanotebook:parameters"] == {"factor": 2, "name": "x"}
    assert len(data["used"]) == 1
    back = Provenance.from_json(prov.to_json())
    assert back == prov
    sidecar = prov.write_sidecar(tmp_path / "product.fits")
    assert sidecar.name == "product.fits.prov.json"
    assert Provenance.read(sidecar) == prov


def test_digest_ignores_times_but_not_parameters(prov):
    other = Provenance.from_dict(prov.to_dict())
    other.started, other.ended, other.host = "1999", "2000", "elsewhere"
    assert other.digest == prov.digest
    other.parameters = {**prov.parameters, "factor": 3}
    assert other.digest != prov.digest


def test_fits_cards_and_hdu_round_trip(prov, tmp_path):
    hdul = fits.HDUList([fits.PrimaryHDU(np.zeros((8, 8), np.float32))])
    prov.attach(hdul)
    path = tmp_path / "p.fits"
    hdul.writeto(path)
    with fits.open(path) as f:
        hdr = f[0].header
        assert hdr["PROVACT"] == prov.activity
        assert hdr["PROVDIG"] == prov.digest
        assert hdr["PROVSEED"] == 7
        assert hdr["PROVIN0"] == prov.inputs[0]["sha256"]
    back = Provenance.read(path)
    assert back.reproducible_dict() == {**prov.reproducible_dict(),
                                        "inputs": [{"sha256": prov.inputs[0]["sha256"]}]}
    assert back.digest == prov.digest
    # attaching twice keeps one PROVENANCE HDU
    prov.attach(hdul)
    assert sum(h.name == "PROVENANCE" for h in hdul) == 1


def test_read_bad_inputs(tmp_path):
    path = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.zeros((2, 2))).writeto(path)
    with pytest.raises(VanotebookInputError, match="PROVENANCE HDU"):
        Provenance.read(path)
    with pytest.raises(VanotebookInputError, match="record: expected a vanotebook provenance"):
        Provenance.from_dict({"nonsense": 1})
    with pytest.raises(VanotebookInputError, match="record: expected a Provenance"):
        rerun(42, tmp_path / "out")


def test_unregistered_activity_is_refused(prov, tmp_path):
    prov.activity = "os.system"
    with pytest.raises(VanotebookInputError, match="a registered activity"):
        rerun(prov, tmp_path / "out")


@reproducible("vanotebook.tests.scaled_image")
def _scaled_image(output, *, scale: float, seed: int) -> Provenance:
    with record("vanotebook.tests.scaled_image", {"scale": scale}, seed=seed) as p:
        data = np.random.default_rng(seed).normal(size=(16, 16)).astype(np.float32) * scale
        hdul = fits.HDUList([fits.PrimaryHDU(data)])
        p.attach(hdul)
        hdul.writeto(output)
        p.add_output(output)
    return p


def test_rerun_gives_same_bytes_and_detects_changes(tmp_path):
    first = _scaled_image(tmp_path / "a.fits", scale=2.0, seed=3)
    first.write_sidecar(tmp_path / "a.fits")
    again = rerun(tmp_path / "a.fits.prov.json", tmp_path / "b.fits")
    assert (tmp_path / "a.fits").read_bytes() == (tmp_path / "b.fits").read_bytes()
    assert again.digest == first.digest
    # rerun straight from the FITS product's own PROVENANCE HDU
    rerun(tmp_path / "a.fits", tmp_path / "c.fits", check=False)
    assert (tmp_path / "c.fits").read_bytes() == (tmp_path / "a.fits").read_bytes()
    # a record whose output hash does not match what the activity makes is reported
    tampered = Provenance.from_dict(first.to_dict())
    tampered.outputs[0]["sha256"] = "0" * 64
    with pytest.raises(RuntimeError, match="different outputs"):
        rerun(tampered, tmp_path / "d.fits")


def test_rerun_refuses_changed_inputs(prov, tmp_path):
    prov.activity = "vanotebook.tests.scaled_image"
    prov.parameters = {"scale": 1.0}
    with open(prov.inputs[0]["path"], "a") as f:
        f.write("changed")
    with pytest.raises(RuntimeError, match="changed since the product was made"):
        rerun(prov, tmp_path / "out.fits")


def test_record_refuses_unserialisable_parameters():
    with (pytest.raises(VanotebookInputError, match="parameters: expected JSON"),
          record("x", {"f": object()})):
        pass
