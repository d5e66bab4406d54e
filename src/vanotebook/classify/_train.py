"""Training, calibration and evaluation of the classifiers on the synthetic sets.

Three independent sets come from one seed (`_data.training_set` keys): 0
trains, 1 calibrates (the softmax temperature, then a logistic map of the
real probability's logit), 2 is held out for the figures. The peer,
gradient-boosted trees on morphological features (`_trees`), is trained on the
same set 0 and scored on the same set 2.
"""

from __future__ import annotations

import time

import numpy as np

from .. import __version__
from . import _cnn
from ._data import training_set
from ._model import Model
from ._morph import CLASSES

__all__ = ["calibration_table", "evaluate", "train_model"]


def _fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    def nll(log_t):
        s = z / np.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        return float(-(s[np.arange(len(y)), y] - np.log(np.exp(s).sum(axis=1))).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def _fit_real_calibration(p: np.ndarray, real: np.ndarray) -> tuple[tuple, tuple]:
    """The real probability's calibration: a logistic map of its logit (Platt scaling,
    two parameters), as the knots of a piecewise-linear map (`Model.real_calibration`).

    Two parameters keep it smooth where the calibration set is thin (the middle:
    about 1 cut-out in 20 lies between 0.1 and 0.9). An isotonic fit on the same set
    follows that set's noise there: on 28,000 other cut-outs it put the 0.6-0.7 bin
    0.09 off, against 0.01 for this map.
    """
    from scipy.optimize import minimize

    z = np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1 - 1e-7))
    t = np.asarray(real, float)

    def nll(w):
        s = w[0] * z + w[1]
        return float(np.mean(np.logaddexp(0.0, s) - t * s))

    a, b = minimize(nll, np.array([1.0, 0.0]), method="Nelder-Mead",
                    options={"xatol": 1e-6, "fatol": 1e-10}).x
    if not a > 0:
        msg = f"the calibration set gives a non-increasing map of the real probability ({a})"
        raise RuntimeError(msg)
    grid = np.linspace(-12.0, 12.0, 97)  # knots, even in logit
    x = np.r_[0.0, 1 / (1 + np.exp(-grid)), 1.0]
    y = np.r_[0.0, 1 / (1 + np.exp(-(a * grid + b))), 1.0]
    return tuple(float(v) for v in x), tuple(float(v) for v in y)


def train_model(*, seed: int = 0, n_per_class: int = 1500, epochs: int = 14,
                n_calibration: int = 6000, progress=None) -> Model:
    """Train and calibrate the network on the synthetic morphologies (`CLASSES`).

    Parameters
    ----------
    seed : int
        Every random draw (the sets, the initial weights, the batches): the
        same seed gives the same weights on the same machine.
    n_per_class, epochs : int
        Size of the training set per class, and passes over it.
    n_calibration : int
        Cut-outs per class of the calibration set.
    progress : callable, optional
        Gets ``(epoch, loss)`` after each epoch.

    Returns
    -------
    Model
    """
    t0 = time.perf_counter()
    X, y = training_set(n_per_class, seed, key=0)
    weights = _cnn.train(X, y, len(CLASSES), seed=seed, epochs=epochs, progress=progress)
    model = Model(CLASSES, weights)
    Xc, yc = training_set(n_calibration, seed, key=1)
    z = model.logits(Xc)
    model.temperature = _fit_temperature(z, yc)
    proba = model.probabilities(logits=z)
    spurious = [CLASSES.index(c) for c in model.spurious]
    model.real_calibration = _fit_real_calibration(1 - proba[:, spurious].sum(axis=1),
                                                   ~np.isin(yc, spurious))
    import jax
    import optax

    model.meta["training"] = {"seed": seed, "n_per_class": n_per_class, "epochs": epochs,
                              "n_calibration": n_calibration, "vanotebook": __version__,
                              "jax": jax.__version__, "optax": optax.__version__,
                              "seconds": round(time.perf_counter() - t0, 1)}
    return model


def calibration_table(p: np.ndarray, truth: np.ndarray, *, bins: int = 10) -> list[dict]:
    """Reliability diagram: per bin of predicted ``p``, its mean, the observed rate, the count."""
    edges = np.linspace(0, 1, bins + 1)
    k = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    out = []
    for i in range(bins):
        sel = k == i
        if sel.any():
            out.append({"lo": float(edges[i]), "hi": float(edges[i + 1]), "n": int(sel.sum()),
                        "predicted": float(p[sel].mean()),
                        "observed": float(truth[sel].mean())})
    return out


def evaluate(predicted: np.ndarray, truth: np.ndarray,
             classes: tuple[str, ...] = CLASSES) -> dict:
    """Accuracy, macro-F1, F1 per class and the confusion matrix (rows: truth)."""
    from sklearn.metrics import confusion_matrix, f1_score

    labels = np.arange(len(classes))
    f1 = f1_score(truth, predicted, labels=labels, average=None, zero_division=0)
    return {"accuracy": float((predicted == truth).mean()), "macro_f1": float(f1.mean()),
            "f1": {c: float(v) for c, v in zip(classes, f1, strict=True)},
            "confusion": confusion_matrix(truth, predicted, labels=labels).tolist()}
