"""Trained classifiers: the model file, its loader and its calibration.

The model file (``.npz``, numpy's zip of arrays, no pickle) holds

``meta``
    a JSON string: ``format`` ("vanotebook-classifier"), ``format_version``
    (1), ``kind`` ("cnn"), ``classes`` (the class map: output ``i`` is class
    ``classes[i]``), ``spurious`` (the classes that are not sources: the
    real probability is one minus their summed probability), ``input``
    (``size``, ``beam_pix``: the cut-out geometry of `_data.cutouts`),
    ``temperature`` (the logits are divided by it), ``real_calibration``
    (``[x, y]``: the calibrated real probability is the piecewise-linear
    interpolation of ``y`` at ``x``: `_train` makes it a logistic map of the logit), and
    free-form ``training`` and
    ``metrics`` records;
``c1_w`` ... ``d2_b``
    the float32 weights and biases of `_cnn.LAYERS`; the last layer has one
    output per class.

A model trained elsewhere (e.g. with a caesar-yolo-like class map) loads if it
follows this layout; `load_model` checks the class map against ``classes=``
when given and the weights against the class map, and names what differs.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._errors import VanotebookInputError
from . import _cnn, _infer
from ._data import BEAM_PIX, SIZE

__all__ = ["DEFAULT_MODEL", "FORMAT", "Model", "load_model"]

FORMAT = "vanotebook-classifier"
DEFAULT_MODEL = Path(__file__).parent / "models" / "default.npz"


@dataclass
class Model:
    """A trained cut-out classifier.

    Attributes
    ----------
    classes : tuple of str
        The class map.
    weights : dict of numpy arrays
        The network's weights (`_cnn.shapes`).
    spurious : tuple of str
        Classes that are not real sources.
    temperature : float
        Softmax temperature (calibration of the class probabilities).
    real_calibration : (x, y)
        Isotonic calibration of the real probability: knots ``x`` (raw
        probability, increasing) and their calibrated values ``y``.
    meta : dict
        ``training`` and ``metrics`` records, kept as they came.
    """

    classes: tuple[str, ...]
    weights: dict
    spurious: tuple[str, ...] = ("artefact",)
    temperature: float = 1.0
    real_calibration: tuple = ((0.0, 1.0), (0.0, 1.0))
    meta: dict = field(default_factory=dict)

    def logits(self, cut: np.ndarray) -> np.ndarray:
        """Uncalibrated logits (n, len(classes)) of cut-outs (n, SIZE, SIZE)."""
        return _infer.logits(self.weights, cut)

    def probabilities(self, cut: np.ndarray | None = None, *, logits=None) -> np.ndarray:
        """Calibrated class probabilities (n, len(classes))."""
        z = self.logits(cut) if logits is None else np.asarray(logits, float)
        z = z / self.temperature
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def real(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probability that each source is real, from class probabilities."""
        idx = [self.classes.index(c) for c in self.spurious]
        p = 1.0 - proba[:, idx].sum(axis=1) if idx else np.ones(len(proba))
        x, y = self.real_calibration
        return np.interp(p, x, y)

    def to_meta(self) -> dict:
        """The ``meta`` record of the model file."""
        return {"format": FORMAT, "format_version": 1, "kind": "cnn",
                "classes": list(self.classes), "spurious": list(self.spurious),
                "input": {"size": SIZE, "beam_pix": BEAM_PIX, "transform": "asinh(x / 3)"},
                "temperature": float(self.temperature),
                "real_calibration": [[float(v) for v in k] for k in self.real_calibration],
                **{k: v for k, v in self.meta.items() if k in ("training", "metrics")}}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model file (all or nothing: a temporary file renamed into place)."""
        path = Path(path)
        buf = io.BytesIO()
        np.savez_compressed(buf, meta=np.array(json.dumps(self.to_meta(), sort_keys=True)),
                            **{k: np.asarray(v, np.float32) for k, v in self.weights.items()})
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
        return path


def _check_classes(classes, argument):
    if (not isinstance(classes, list | tuple) or not classes
            or not all(isinstance(c, str) and c.isidentifier() for c in classes)
            or len(set(classes)) != len(classes)):
        raise VanotebookInputError(argument, "a class map: a list of distinct names that are "
                                   "identifiers (they become p_<class> columns)", classes)
    return tuple(classes)


def load_model(path: str | os.PathLike | None = None, *,
               classes: tuple[str, ...] | list[str] | None = None) -> Model:
    """Read a model file (default: the one shipped with vanotebook).

    Parameters
    ----------
    path : path-like, optional
        A ``.npz`` model file in the documented layout (module docstring).
    classes : sequence of str, optional
        The class map the caller expects; a file with another one is refused.

    Returns
    -------
    Model
    """
    if path is None:
        path = DEFAULT_MODEL
    if not isinstance(path, str | os.PathLike):
        raise VanotebookInputError("model", "a model file path or a Model", path)
    path = Path(path)
    if not path.is_file():
        raise VanotebookInputError("model", "an existing model file (.npz)", str(path))
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise VanotebookInputError("model", "a model file (numpy .npz)",
                                   f"{path.name}: {exc}") from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (KeyError, json.JSONDecodeError):
        raise VanotebookInputError("model", f"a {FORMAT} file with a JSON 'meta' entry",
                                   f"{path.name} without one") from None
    if meta.get("format") != FORMAT or meta.get("format_version") != 1:
        raise VanotebookInputError("model", f"format {FORMAT!r} version 1",
                                   f"{meta.get('format')!r} version {meta.get('format_version')}")
    got = _check_classes(meta.get("classes"), "model")
    if classes is not None:
        want = _check_classes(list(classes), "classes")
        if want != got:
            raise VanotebookInputError("model", f"a model with the class map {list(want)}",
                                       f"{path.name} with the class map {list(got)}")
    spurious = tuple(meta.get("spurious", ()))
    if not set(spurious) <= set(got):
        raise VanotebookInputError("model", f"'spurious' classes among {list(got)}",
                                   list(spurious))
    inp = meta.get("input", {})
    if inp.get("size") != SIZE or inp.get("beam_pix") != BEAM_PIX:
        raise VanotebookInputError("model", f"cut-outs of {SIZE} pixels at {BEAM_PIX} pixels "
                                   "per beam", inp)
    for key, shape in _cnn.shapes(len(got)).items():
        if key not in arrays or arrays[key].shape != shape:
            raise VanotebookInputError(
                "model", f"weights {key} of shape {shape} for {len(got)} classes",
                "missing" if key not in arrays else f"shape {arrays[key].shape}")
    weights = {k: arrays[k].astype(np.float32) for k in _cnn.shapes(len(got))}
    cal = meta.get("real_calibration", [[0.0, 1.0], [0.0, 1.0]])
    try:
        x, y = (np.asarray(k, float) for k in cal)
        ok = x.ndim == 1 and x.shape == y.shape and len(x) >= 2 and np.all(np.diff(x) >= 0)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise VanotebookInputError("model", "'real_calibration' as [x, y] with x increasing",
                                   cal)
    return Model(got, weights, spurious, float(meta.get("temperature", 1.0)),
                 (tuple(x), tuple(y)),
                 {k: meta[k] for k in ("training", "metrics") if k in meta})
