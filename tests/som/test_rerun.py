"""A SOM product (fit, labels, GUASOM export) reruns from its record to the same bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from vanotebook import VanotebookInputError
from vanotebook.provenance import Provenance, rerun
from vanotebook.sky import make_spectra
from vanotebook.som import SOM


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    folder = tmp_path_factory.mktemp("som_rerun")
    s = make_spectra(600, seed=3)
    table = Table({"flux": s.flux[:, ::6].astype(np.float64), "label": s.label})
    table.write(folder / "spectra.fits")
    return folder / "spectra.fits", s


def _cli_rerun(record: Path, output: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vanotebook.cli", "rerun", str(record),
                           str(output)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("with_labels", [True, False])
def test_guasom_product_reruns_to_the_same_bytes(catalogue, tmp_path, with_labels):
    path, _ = catalogue
    som = SOM((4, 5), n_epochs=6, radius0=3, seed=11, init="pca").fit(path, columns="flux")
    if with_labels:
        som.label(path, "label", columns="flux")
    product = som.to_guasom(tmp_path / "map.json", path, columns="flux")
    record = Path(f"{product}.prov.json")
    prov = Provenance.read(record)
    assert prov.activity == "vanotebook.som.fit" and prov.seed == 11
    assert [i["path"] for i in prov.inputs] == [str(path)] and len(prov.outputs) == 1
    doc = json.loads(product.read_text())
    assert doc["provenance"]["activity"] == "vanotebook.som.fit"
    assert "started" not in doc["provenance"]  # no times in the product
    assert (doc["neurons"][0]["label"] is not None) == with_labels
    again = tmp_path / "again.json"
    done = _cli_rerun(record, again)
    assert done.returncode == 0, done.stderr[-2000:]
    assert again.read_bytes() == product.read_bytes()


def test_maps_from_memory_are_refused(catalogue, tmp_path):
    path, s = catalogue
    x = s.flux[:, ::6]
    som = SOM((3, 3), n_epochs=2).fit(x)
    som.to_guasom(tmp_path / "a.json")
    with pytest.raises(VanotebookInputError, match="in memory") as info:
        rerun(tmp_path / "a.json.prov.json", tmp_path / "a2.json")
    assert info.value.argument == "record"
    som = SOM((3, 3), n_epochs=2).fit(path, columns="flux")
    som.label(x, s.label)  # labels from memory
    som.to_guasom(tmp_path / "b.json")
    with pytest.raises(VanotebookInputError, match="labels"):
        rerun(tmp_path / "b.json.prov.json", tmp_path / "b2.json")
    som = SOM((3, 3), n_epochs=2).fit(path, columns="flux")
    som.to_guasom(tmp_path / "c.json", x)  # samples from memory
    with pytest.raises(VanotebookInputError, match="samples"):
        rerun(tmp_path / "c.json.prov.json", tmp_path / "c2.json")
    assert not any((tmp_path / n).exists() for n in ("a2.json", "b2.json", "c2.json"))


def test_map_trained_on_dask_partitions_reruns(catalogue, tmp_path):
    """A parquet input trains on Dask partitions; the rerun (another process, default
    partition size) writes the same bytes."""
    import dask
    import pandas as pd

    _, s = catalogue
    cols = [f"f{i}" for i in range(12)]
    pd.DataFrame(s.flux[:, ::10][:, :12], columns=cols).to_parquet(tmp_path / "x.parquet",
                                                                   row_group_size=100)
    with dask.config.set({"vanotebook.partition-rows": 150}):
        som = SOM((4, 4), n_epochs=4, seed=2).fit(tmp_path / "x.parquet", columns=cols)
    product = som.to_guasom(tmp_path / "m.json")
    done = _cli_rerun(Path(f"{product}.prov.json"), tmp_path / "m2.json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "m2.json").read_bytes() == product.read_bytes()
