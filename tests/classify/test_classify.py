"""The morphology classifier: accuracy per class and calibration on held-out synthetic
cut-outs, reproducibility from a seed, model files and their class maps, cut-out geometry,
and inference on Dask workers."""

from __future__ import annotations

import numpy as np
import pytest

from vanotebook import VanotebookInputError
from vanotebook.classify import (
    CLASSES,
    Model,
    calibration_table,
    classify,
    classify_cutouts,
    cutouts,
    evaluate,
    get_model,
    load_model,
    render,
    train_model,
    training_set,
)
from vanotebook.units import FWHM_TO_SIGMA


@pytest.fixture(scope="module")
def held_out():
    """The held-out set (key 2): never seen in training (key 0) or calibration (key 1)."""
    return training_set(1000, 0, key=2)


@pytest.fixture(scope="module")
def shipped_predictions(held_out):
    proba, real, _ = classify_cutouts(held_out[0])
    return proba, real


def test_shipped_model_reaches_macro_f1_on_held_out_cutouts(held_out, shipped_predictions):
    _, y = held_out
    proba, _ = shipped_predictions
    ev = evaluate(proba.argmax(axis=1), y)
    print("macro-F1", round(ev["macro_f1"], 4), {k: round(v, 3) for k, v in ev["f1"].items()})
    assert ev["macro_f1"] >= 0.9
    assert min(ev["f1"].values()) >= 0.85
    # the model file says how it was trained and what it scored
    assert get_model().meta["training"]["seed"] == 0
    assert get_model().meta["metrics"]["macro_f1"] >= 0.9


def test_real_probability_is_calibrated(held_out, shipped_predictions):
    """In the bins of the calibrated real probability that hold 50 cut-outs or more, the
    fraction of real sources is within 0.035 of the mean probability (the issue asks
    0.05), and the expected calibration error over all bins is at most 0.004. (Of the
    7,000 held-out cut-outs about 230 fall between 0.2 and 0.8, under 50 a bin: too few
    to test a bin to 0.05 here. On 28,000 other cut-outs (`training_set(4000, 0, key=6)`,
    20 minutes) every bin is within 0.05: worst -0.050 at 0.2-0.3 (n = 240), where the
    isotonic map shipped before was 0.092 off at 0.6-0.7 (n = 117); see
    `test_real_calibration_is_smooth_where_the_set_is_thin`.) Mutation: no calibration
    (identity knots, temperature 1): 0.046 in the 0.8-0.9 bin, ECE 0.0046."""
    _, y = held_out
    _, real = shipped_predictions
    truth = y != CLASSES.index("artefact")
    table = calibration_table(real, truth)
    print(table)
    populated = [b for b in table if b["n"] >= 50]
    assert len(populated) >= 4
    for b in populated:
        assert abs(b["observed"] - b["predicted"]) <= 0.035, b
    ece = sum(b["n"] * abs(b["observed"] - b["predicted"]) for b in table) / len(real)
    print("expected calibration error", ece)
    assert ece <= 0.004


def test_real_calibration_is_smooth_where_the_set_is_thin():
    """The real probability's calibration map is fitted on a set whose middle is thin
    (2.7% of 40,000 scores between 0.1 and 0.9, as for the network's cut-outs): a
    logistic map of the logit (two parameters) recovers a known miscalibration there
    to 0.02. Mutation: an isotonic fit on the same set (the map shipped before): 0.11
    off; no calibration: 0.16 off."""
    from vanotebook.classify._train import _fit_real_calibration

    rng = np.random.default_rng(0)
    n = 40_000
    z = np.where(rng.random(n) < 0.5, rng.normal(-7, 2.5, n), rng.normal(7, 2.5, n))

    def truth(logit):
        return 1 / (1 + np.exp(-(0.7 * logit + 0.4)))

    real = rng.random(n) < truth(z)
    x, y = _fit_real_calibration(1 / (1 + np.exp(-z)), real)
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0)
    assert (x[0], y[0], x[-1], y[-1]) == (0.0, 0.0, 1.0, 1.0)
    logits = np.linspace(-2.2, 2.2, 50)  # p from 0.1 to 0.9
    got = np.interp(1 / (1 + np.exp(-logits)), x, y)
    assert np.abs(got - truth(logits)).max() <= 0.02


def test_same_seed_same_weights_and_predictions():
    kw = {"n_per_class": 40, "epochs": 2, "n_calibration": 20}
    a = train_model(seed=3, **kw)
    b = train_model(seed=3, **kw)
    c = train_model(seed=4, **kw)
    for key in a.weights:
        np.testing.assert_array_equal(a.weights[key], b.weights[key])
    assert any(not np.array_equal(a.weights[k], c.weights[k]) for k in a.weights)
    X, _ = training_set(10, 9, key=2)
    np.testing.assert_array_equal(a.probabilities(X), b.probabilities(X))
    assert a.temperature == b.temperature and a.real_calibration == b.real_calibration


@pytest.mark.slow
def test_training_from_the_seed_gives_the_shipped_model(held_out, shipped_predictions):
    """The shipped weights are what `train_model(seed=0)` makes (a few minutes on 2 cores):
    identical on the machine that trained them; on another CPU, XLA's rounding differs
    and the training drifts (on an AMD EPYC machine: weights up to 0.20 apart, 96.8% of
    the held-out cut-outs given the same class, at the same macro-F1 >= 0.9). The same
    seed gives the same weights on one machine (`test_same_seed_same_weights_and_
    predictions`)."""
    model = train_model(seed=0, n_calibration=100)  # the weights do not depend on it
    X, y = held_out
    proba = model.probabilities(X)
    agree = (proba.argmax(axis=1) == shipped_predictions[0].argmax(axis=1)).mean()
    print("agreement with the shipped model", agree,
          "max weight difference", max(float(np.abs(model.weights[k] - get_model().weights[k])
                                             .max()) for k in model.weights))
    assert agree >= 0.95
    assert evaluate(proba.argmax(axis=1), y)["macro_f1"] >= 0.9


def test_model_files_and_their_class_maps(tmp_path):
    model = get_model()
    path = model.save(tmp_path / "mine.npz")
    again = load_model(path, classes=CLASSES)
    for key in model.weights:
        np.testing.assert_array_equal(again.weights[key], model.weights[key])
    # another class map (caesar-yolo-like, 5 classes) with weights of its size loads ...
    yolo = ("spurious", "compact", "extended", "extended_multisland", "flagged")
    from vanotebook.classify._cnn import init

    other = Model(yolo, init(len(yolo), 1), spurious=("spurious", "flagged"))
    other_path = other.save(tmp_path / "yolo.npz")
    loaded = load_model(other_path)
    assert loaded.classes == yolo and loaded.spurious == ("spurious", "flagged")
    # ... but not where our classes are expected
    with pytest.raises(VanotebookInputError, match=r"^model: expected a model with the class "
                                                   r"map \['point'.*got .*yolo.npz.*spurious"):
        load_model(other_path, classes=CLASSES)
    # weights that do not fit the class map, a file that is not a model, no file
    bad = Model(CLASSES, init(5, 0))
    with pytest.raises(VanotebookInputError, match=r"^model: expected weights d2_w of shape "
                                                   r"\(64, 7\) for 7 classes, got .*\(64, 5\)"):
        load_model(bad.save(tmp_path / "bad.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(VanotebookInputError, match=r"^model: expected a model file"):
        load_model(tmp_path / "junk.npz")
    with pytest.raises(VanotebookInputError, match=r"^model: expected an existing model file"):
        load_model(tmp_path / "none.npz")
    with pytest.raises(VanotebookInputError, match=r"^classes: expected a class map"):
        load_model(path, classes=["point", "point"])
    assert not list(tmp_path.glob(".*.part"))  # saving is all or nothing


def test_the_users_model_gives_its_own_columns(tmp_path):
    yolo = ("spurious", "compact", "extended")
    from vanotebook.classify._cnn import init

    path = Model(yolo, init(3, 2), spurious=("spurious",)).save(tmp_path / "m.npz")
    img = np.random.default_rng(0).normal(0, 1, (80, 80)).astype(np.float32)
    img += render(np.array([[0, 0, 50.0, 0, 0, 0]]), img.shape, 40, 40, 3.0)
    from astropy.table import Table

    out = classify(img, Table({"x": [40.0], "y": [40.0]}), fwhm_pix=3.0, rms=1.0, model=path)
    assert {"p_spurious", "p_compact", "p_extended", "class", "score"} <= set(out.colnames)
    assert out["class"][0] in yolo
    np.testing.assert_allclose(out["p_spurious"] + out["p_compact"] + out["p_extended"], 1,
                               rtol=1e-5)
    np.testing.assert_allclose(out["score"], 1 - out["p_spurious"], rtol=1e-5)


def test_cutouts_are_in_beam_units_and_sigmas():
    """A point source of peak 40 sigma, beam 5 px, at a fractional pixel: the cut-out has the
    beam at 2 px FWHM, centred, with peak 40 (rms 2 divides an 80-count peak)."""
    fwhm = 5.0
    img = render(np.array([[0, 0, 80.0, 0, 0, 0]]), (128, 128), 60.3, 70.6, fwhm)
    cut = cutouts(img, [60.3], [70.6], fwhm_pix=fwhm, rms=2.0)[0]
    c = (cut.shape[0] - 1) / 2
    yy, xx = np.mgrid[0:cut.shape[0], 0:cut.shape[1]]
    want = 40 * np.exp(-0.5 * ((xx - c) ** 2 + (yy - c) ** 2) / (2.0 * FWHM_TO_SIGMA) ** 2)
    np.testing.assert_allclose(cut, want, atol=0.04 * 40)
    with pytest.raises(VanotebookInputError, match=r"^fwhm_pix: expected a beam FWHM between "
                                                   r"1.5 and 8.0 pixels.*got float 12.0"):
        cutouts(img, [1.0], [1.0], fwhm_pix=12.0)
    with pytest.raises(VanotebookInputError, match=r"^rms: expected positive finite noise"):
        cutouts(img, [1.0], [1.0], fwhm_pix=3.0, rms=0.0)
    with pytest.raises(VanotebookInputError, match=r"^x, y: expected 1-D positions"):
        cutouts(img, [1.0, 2.0], [1.0], fwhm_pix=3.0)
    with pytest.raises(VanotebookInputError, match=r"^cut: expected cut-outs of shape"):
        classify_cutouts(np.zeros((2, 16, 16)))


def test_beam_units_make_the_class_independent_of_the_pixel_scale():
    """The same FRII seen at 1.8 and 6 pixels per beam is classed the same: the cut-out is in
    beam units (mutation: cut-outs in native pixels, fwhm/BEAM_PIX -> 1, fails)."""
    from vanotebook.classify import radio_galaxy

    rng = np.random.default_rng(11)
    wins = 0
    for _ in range(10):
        comps = radio_galaxy("fr2", rng, 60.0, size=5.0)
        got = []
        for fwhm in (1.8, 6.0):
            n = int(20 * fwhm) + 10
            img = np.random.default_rng(1).normal(0, 1, (n, n)).astype(np.float32)
            img += render(comps, img.shape, n / 2, n / 2, fwhm)
            got.append(classify_cutouts(cutouts(img, [n / 2], [n / 2], fwhm_pix=fwhm))[0])
        wins += all(CLASSES[p.argmax()] == "fr2" for p in got)
    assert wins >= 9


@pytest.mark.slow
def test_inference_on_workers_equals_inference_here_with_progress():
    from distributed import Client, LocalCluster

    X, _ = training_set(30, 5, key=2)
    here, real_here, _ = classify_cutouts(X)
    seen = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0", worker_dashboard_address=None) as lc, \
            Client(lc) as client:
        there, real_there, platform = classify_cutouts(X, client=client, batch=50,
                                                       progress=seen.append)
    np.testing.assert_allclose(there, here, atol=1e-5)
    np.testing.assert_allclose(real_there, real_here, atol=1e-5)
    assert platform == "cpu"
    assert len(seen) == 5 and seen == sorted(seen) and seen[-1] == 1.0


def test_array_api_forward_pass_equals_the_jax_network():
    """Inference runs without JAX (`_infer`, written once against the array API): its
    logits equal the JAX network's (`_cnn`, which trains the weights) on the shipped
    weights, in numpy and in array-api-strict (the stand-in for CuPy). Mutations: the
    stencil's offsets transposed (dy, dx swapped), the dense layer fed channel-first
    instead of JAX's NHWC order, or no ReLU after a convolution: differences of order 1
    or more."""
    import array_api_strict as xps

    from vanotebook.classify import _cnn, _infer

    X, _ = training_set(8, 1, key=2)
    weights = get_model().weights
    ref = _cnn.logits(weights, X)
    got = _infer.logits(weights, X, chunk=17)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=2e-4 * float(np.abs(ref).max()))
    strict = _infer.logits(weights, X[:9], xp=xps)
    np.testing.assert_allclose(strict, got[:9], rtol=1e-5, atol=1e-4)
    assert _infer.logits(weights, X[:0]).shape == (0, len(CLASSES))


def test_a_classified_detection_never_starts_jax():
    """The job service's fork server warms itself with a classified detection and then
    forks every job: JAX's thread pools do not survive a fork (the jobs deadlocked), so
    inference must not load JAX. In a fresh process, the gateway's warm-up (detections
    of the demo sky, classified) leaves ``jax`` out of ``sys.modules``. Mutation: the
    batches' logits through `_cnn` (JAX) again: jax is loaded."""
    import subprocess
    import sys

    code = ("import sys; from vanotebook.hub._warm import warm; warm(); "
            "print('jax' in sys.modules, 'jaxlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)
    assert done.stdout.split() == ["False", "False"]
