"""The SOM API: metrics against direct computation and MiniSom, seeds, Dask, labels, errors."""

from __future__ import annotations

import inspect
import json

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from vanotebook import Provenance, VanotebookInputError
from vanotebook.sky import make_spectra
from vanotebook.som import SOM, read_guasom


@pytest.fixture(scope="module")
def spectra():
    return make_spectra(3000, seed=5)


@pytest.fixture(scope="module")
def trained(spectra):
    return SOM((8, 8), n_epochs=15, radius0=4, radius_decay=8).fit(spectra.flux)


def _direct_errors(som, x):
    w = som.prototypes.reshape(som.n_units, -1).astype(np.float64)
    d = np.sqrt(((x[:, None, :].astype(np.float64) - w[None]) ** 2).sum(-1))
    order = np.argsort(d, axis=1)
    grid = som.grid_coordinates()
    step = np.hypot(*(grid[order[:, 0]] - grid[order[:, 1]]).T)
    return d, order, step


def test_qe_te_against_direct_computation(trained, spectra):
    x = spectra.flux[:800]
    d, order, step = _direct_errors(trained, x)
    assert trained.quantization_error(x) == pytest.approx(d.min(1).mean(), rel=1e-4)
    assert trained.topographic_error(x) == pytest.approx((step > 1.5).mean())
    np.testing.assert_array_equal(trained.bmu(x), order[:, 0])
    np.testing.assert_allclose(trained.transform(x), d, rtol=1e-3, atol=1e-3)
    # the last history entry is the final map's training-set QE/TE
    assert trained.history["qe"][-1] == pytest.approx(
        trained.quantization_error(spectra.flux), rel=1e-4)
    assert trained.history["te"][-1] == pytest.approx(trained.topographic_error(spectra.flux))
    np.testing.assert_array_equal(trained.train_hits, trained.hits(spectra.flux))


def test_metrics_match_minisom(trained, spectra):
    minisom = pytest.importorskip("minisom")
    x = spectra.flux[:800].astype(np.float64)
    peer = minisom.MiniSom(8, 8, x.shape[1])
    peer._weights = trained.prototypes.astype(np.float64)
    assert trained.quantization_error(x) == pytest.approx(peer.quantization_error(x), rel=1e-4)
    assert trained.topographic_error(x) == pytest.approx(peer.topographic_error(x))


def test_training_lowers_qe_and_history(trained):
    hist = trained.history
    assert len(hist) == 16 and list(hist["epoch"]) == list(range(16))
    assert hist["qe"][-1] < 0.5 * hist["qe"][0]
    np.testing.assert_allclose(hist["radius"][1:], 4 * np.exp(-np.arange(15) / 8))


def test_umatrix_direct(trained):
    u = trained.umatrix()
    w = trained.prototypes.astype(np.float64)
    r, c = 3, 5
    nbrs = [w[r + dr, c + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc]
    assert u[r, c] == pytest.approx(np.mean([np.linalg.norm(w[r, c] - v) for v in nbrs]),
                                    rel=1e-4)
    corner = np.mean([np.linalg.norm(w[0, 0] - w[a, b]) for a, b in ((0, 1), (1, 0), (1, 1))])
    assert u[0, 0] == pytest.approx(corner, rel=1e-4)


def test_determinism_from_seed(spectra):
    x = spectra.flux[:1000]
    for init in ("data", "pca", "random"):
        a = SOM((5, 6), n_epochs=5, init=init, seed=11).fit(x).prototypes
        b = SOM((5, 6), n_epochs=5, init=init, seed=11).fit(x).prototypes
        np.testing.assert_array_equal(a, b)
    c = SOM((5, 6), n_epochs=5, init="random", seed=12).fit(x).prototypes
    assert not np.allclose(a, c)


def test_many_partitions_equal_one(spectra):
    from distributed import Client, LocalCluster

    x = spectra.flux
    params = {"n_epochs": 8, "radius0": 3.0, "radius_decay": 6.0, "topology": "hexagonal"}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        one = SOM((6, 6), **params).fit(da.from_array(x, chunks=(-1, -1)), client=client)
        many = SOM((6, 6), **params).fit(da.from_array(x, chunks=(431, -1)), client=client)
    threaded = SOM((6, 6), **params).fit(da.from_array(x, chunks=(700, -1)))
    memory = SOM((6, 6), **params).fit(x)
    for other in (many, threaded, memory):
        np.testing.assert_allclose(other.prototypes, one.prototypes, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(other.history["qe"], one.history["qe"], rtol=1e-5)
        np.testing.assert_array_equal(other.train_hits, one.train_hits)


def test_label_purity_above_chance(spectra):
    x = spectra.flux
    som = SOM((10, 10), n_epochs=25, radius0=5, radius_decay=10).fit(x)
    lab = som.label(x, spectra.label)
    chance = max(spectra.class_counts().values()) / len(x)  # always guessing the largest class
    assert lab.purity_overall > chance + 0.25
    assert lab.hits.sum() == len(x) and lab.counts.sum() == len(x)
    # the majority label of a unit really is the most common class of its members
    best = som.bmu(x)
    unit = int(np.argmax(lab.hits.ravel()))
    names, n = np.unique(spectra.label[best == unit], return_counts=True)
    assert lab.labels.ravel()[unit] == names[np.argmax(n)]
    assert lab.purity.ravel()[unit] == pytest.approx(n.max() / n.sum())
    row = lab.per_class[lab.per_class["class"] == "K"][0]
    assert 0 <= row["purity"] <= 1 and row["n_samples"] == spectra.class_counts()["K"]


def test_outliers_are_largest_errors(trained, spectra):
    x = spectra.flux[:500]
    out = trained.outliers(x, 7)
    err = trained.transform(x).min(1)
    np.testing.assert_array_equal(out["index"], np.argsort(-err, kind="stable")[:7])
    assert np.all(np.diff(out["error"]) <= 0)


def test_table_and_parquet_inputs(spectra, tmp_path):
    x = spectra.flux[:1200]
    ref = SOM((4, 5), n_epochs=4).fit(x).prototypes
    table = spectra.to_table()[:1200]
    np.testing.assert_allclose(SOM((4, 5), n_epochs=4).fit(table, columns="flux").prototypes,
                               ref, rtol=1e-5)
    df = spectra.to_pandas().iloc[:1200]
    cols = [f"f{i:03d}" for i in range(x.shape[1])]
    np.testing.assert_allclose(SOM((4, 5), n_epochs=4).fit(df, columns=cols).prototypes, ref,
                               rtol=1e-5)
    path = tmp_path / "spectra.parquet"
    df.to_parquet(path)
    lazy = SOM((4, 5), n_epochs=4).fit(str(path), columns=cols)
    np.testing.assert_allclose(lazy.prototypes, ref, rtol=1e-4, atol=1e-5)
    lab = lazy.label(df, "label", columns=cols)
    assert lab.hits.sum() == 1200


def test_guasom_round_trip(trained, spectra, tmp_path):
    x = spectra.flux[:600]
    trained.label(x, spectra.label[:600])
    path = tmp_path / "map.json"
    trained.to_guasom(path, x, ids=spectra.source_id[:600])
    doc = json.loads(path.read_text())
    assert doc["dimensions"] == {"rows": 8, "cols": 8, "features": 120}
    assert len(doc["prototypes"]) == 64 and len(doc["samples"]["bmu"]) == 600
    back = read_guasom(path)
    np.testing.assert_array_equal(back.prototypes, trained.prototypes)
    np.testing.assert_array_equal(back.bmu(x), trained.bmu(x))
    np.testing.assert_array_equal(doc["samples"]["bmu"], trained.bmu(x))
    np.testing.assert_array_equal(back.train_hits, trained.hits(x))
    np.testing.assert_array_equal(back.labels.labels, trained.labels.labels)
    np.testing.assert_allclose(back.labels.purity, trained.labels.purity)
    assert (back.topology, back.shape, back.radius0) == ("rectangular", (8, 8), 4.0)
    np.testing.assert_allclose(back.history["qe"], trained.history["qe"])
    assert Provenance.from_dict(back.provenance).activity == "vanotebook.som.fit"
    with pytest.raises(FileExistsError):
        trained.to_guasom(path)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(VanotebookInputError, match="path"):
        read_guasom(bad)


def test_hexagonal_periodic_bubble_fit(spectra):
    x = spectra.flux[:1500]
    som = SOM((6, 8), topology="hexagonal", periodic=True, neighbourhood="bubble",
              radius0=3, n_epochs=10).fit(x)
    assert som.history["qe"][-1] < som.history["qe"][0]
    assert som.umatrix().shape == (6, 8)
    assert som.neighbours().sum(1).tolist() == [6] * 48


def test_early_stopping(spectra):
    som = SOM((5, 5), n_epochs=40, radius0=2, radius_decay=1e6).fit(spectra.flux, tol=1e-3)
    assert som.converged and len(som.history) < 41
    qe = np.asarray(som.history["qe"])
    assert abs(qe[-1] - qe[-2]) <= 1e-3 * qe[-2]


def test_provenance_and_progress(spectra):
    seen = []
    som = SOM((4, 4), n_epochs=3, seed=2).fit(spectra.flux[:400], progress=seen.append)
    assert [s["epoch"] for s in seen] == [1, 2, 3]
    prov = Provenance.from_dict(som.provenance)
    assert prov.parameters["shape"] == [4, 4] and prov.seed == 2


def test_bad_input_errors(spectra):
    x = spectra.flux[:300].copy()
    x[[3, 50, 51]] = np.nan
    with pytest.raises(VanotebookInputError, match=r"X: expected finite.*3 rows"):
        SOM((3, 3), n_epochs=2).fit(x)
    som = SOM((3, 3), n_epochs=2).fit(x, nan="drop")
    assert som.n_dropped == 3
    assert Provenance.from_dict(som.provenance).parameters["n_dropped"] == 3
    dsom = SOM((3, 3), n_epochs=2).fit(da.from_array(x, chunks=(100, -1)), nan="drop")
    assert dsom.n_dropped == 3
    np.testing.assert_allclose(dsom.prototypes, som.prototypes, rtol=1e-4, atol=1e-5)
    with pytest.raises(VanotebookInputError, match="X: expected finite"):
        SOM((3, 3), n_epochs=2).fit(da.from_array(x, chunks=(100, -1)))
    with pytest.raises(VanotebookInputError, match="X: expected a 2-D array"):
        SOM((3, 3)).fit(x[0])
    with pytest.raises(VanotebookInputError, match="X: expected at least one sample"):
        SOM((3, 3)).fit(x[:0])
    with pytest.raises(VanotebookInputError, match=r"shape: expected a map of at most 20 units"):
        SOM((5, 5)).fit(spectra.flux[:20])
    with pytest.raises(VanotebookInputError, match="nan"):
        SOM((3, 3)).fit(x, nan="ignore")
    with pytest.raises(VanotebookInputError, match="topology"):
        SOM((3, 3), topology="triangular")
    with pytest.raises(VanotebookInputError, match="shape"):
        SOM((3, 0))
    with pytest.raises(VanotebookInputError, match="columns"):
        SOM((3, 3)).fit(pd.DataFrame({"a": [1.0] * 20}))
    with pytest.raises(VanotebookInputError, match="X: expected 120 features"):
        som.bmu(x[:, :10])
    with pytest.raises(RuntimeError, match="fit"):
        SOM((3, 3)).umatrix()


def test_keyword_only():
    for func in (SOM.__init__, SOM.fit):
        params = list(inspect.signature(func).parameters.values())
        positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert positional in (["self", "shape"], ["self", "X"])


@pytest.mark.parametrize(("call", "argument"), [
    (lambda x: SOM((3, 3), n_epochs=2).fit(x, progress=3), "progress"),
    (lambda x: SOM((3, 3), n_epochs=2).fit(x, columns="a"), "columns"),
    (lambda x: SOM((3, 3), n_epochs=2).fit(x, tol="small"), "tol"),
    (lambda x: SOM((3, 3), n_epochs=2).fit(x, device="tpu"), "device"),
    (lambda x: SOM((3, 3), n_epochs=2).fit(x.astype(np.complex64)), "X"),
    (lambda x: SOM((3, 3), n_epochs=2).fit(
        pd.DataFrame({"a": ["x"] * 20, "b": np.arange(20.0)}), columns=["a", "b"]), "columns"),
    (lambda x: SOM((3, 3), n_epochs=2).fit(
        pd.DataFrame({"a": np.arange(20.0)}), columns=["a", "a"]), "columns"),
])
def test_more_bad_fit_calls_name_the_argument(spectra, call, argument, monkeypatch):
    """Each is refused with a named error before any epoch runs."""
    from vanotebook.som import _core

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(_core.SOM, "_train", no_training)
    with pytest.raises(VanotebookInputError) as info:
        call(spectra.flux[:200])
    assert info.value.argument == argument


def test_masked_feature_values_are_missing(spectra, tmp_path):
    """A blank cell (masked) is a missing value: dropped and counted, never the number
    stored under the mask (0 in a blank ECSV cell)."""
    from astropy.table import MaskedColumn, Table

    x = spectra.flux[:300, :4].astype(np.float64)
    table = Table({f"f{i}": MaskedColumn(x[:, i], mask=np.zeros(300, bool)) for i in range(4)})
    for row, col in ((5, 0), (6, 2), (6, 3), (40, 1)):
        table[f"f{col}"].data.data[row] = 0.0  # what a blank ECSV cell holds
        table[f"f{col}"].mask[row] = True
    cols = [f"f{i}" for i in range(4)]
    with pytest.raises(VanotebookInputError, match=r"X: expected finite.*3 rows"):
        SOM((3, 3), n_epochs=2).fit(table, columns=cols)
    som = SOM((3, 3), n_epochs=3).fit(table, columns=cols, nan="drop")
    assert som.n_dropped == 3
    keep = np.ones(300, bool)
    keep[[5, 6, 40]] = False
    ref = SOM((3, 3), n_epochs=3).fit(x[keep].astype(np.float32))
    np.testing.assert_allclose(som.prototypes, ref.prototypes, rtol=1e-5, atol=1e-6)
    path = tmp_path / "blank.ecsv"
    table.write(path)
    assert SOM((3, 3), n_epochs=3).fit(path, columns=cols, nan="drop").n_dropped == 3
