"""GUASOM-compatible JSON export and import of a trained map.

GUASOM's Python tools ("SOM Train" and "GUASOM Preprocess") exchange one JSON
document per map. The schema written and read here (version 1):

.. code-block:: text

    {
      "format": "guasom-som",            # fixed
      "version": 1,
      "dimensions": {"rows": R, "cols": C, "features": D},
      "topology": "rectangular" | "hexagonal",
      "periodic": false,
      "neighbourhood": "gaussian" | "bubble",
      "training": {"radius0": 9.0, "radius_decay": 16.0, "n_epochs": 45,
                   "init": "data", "seed": 0, "epochs_run": 45, "converged": false,
                   "n_dropped": 0,
                   "history": [{"epoch": 0, "radius": null, "qe": ..., "te": ...}, ...]},
      "prototypes": [[w_0 ... w_D-1], ...],   # R*C rows, unit k = row * C + col
      "neurons": [{"id": k, "row": r, "col": c, "hits": h,
                   "label": "A" | null, "purity": 0.93 | null}, ...],
      "samples": {"id": [...], "bmu": [...], "qe": [...]} | null,
      "provenance": {...} | null           # vanotebook.provenance record of the fit
    }

``hits`` come from the samples given to the export (else from training),
``label``/``purity`` from the last `SOM.label` call (null where a unit is
empty or the map is unlabelled), ``samples`` only when samples are given.
Non-finite numbers are written as null. The file is written atomically.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import VanotebookInputError

if TYPE_CHECKING:
    from ._core import SOM

__all__ = ["FORMAT", "VERSION", "read_guasom", "write_guasom"]

FORMAT = "guasom-som"
VERSION = 1


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def guasom_dict(som: SOM, X: Any = None, *, ids: Any = None, columns: Any = None
                ) -> dict[str, Any]:  # fmt: skip
    """The JSON document of `som` as a dict (see the module for the schema)."""
    som._require_fit()
    samples = None
    if X is not None:
        best, err = som._errors(X, columns)
        ids = np.arange(len(best)) if ids is None else np.asarray(ids)
        if ids.shape != best.shape:
            raise VanotebookInputError("ids", f"one id per sample ({len(best)})", ids)
        samples = {"id": ids.tolist(), "bmu": best.tolist(), "qe": err.tolist()}
        hits = np.bincount(best, minlength=som.n_units)
    elif som.train_hits is not None:
        hits = som.train_hits.ravel()
    else:
        hits = np.zeros(som.n_units, np.int64)
    labels = som.labels
    neurons = []
    for unit in range(som.n_units):
        r, c = divmod(unit, som.cols)
        label = purity = None
        if labels is not None and labels.labels[r, c] != "":
            label, purity = str(labels.labels[r, c]), _clean(labels.purity[r, c])
        neurons.append({"id": unit, "row": r, "col": c, "hits": int(hits[unit]),
                        "label": label, "purity": purity})  # fmt: skip
    history = [{key: (_clean(v) if isinstance(v, float) else v) for key, v in h.items()}
               for h in som._history]  # fmt: skip
    params = som.params()
    return {
        "format": FORMAT,
        "version": VERSION,
        "dimensions": {"rows": som.rows, "cols": som.cols, "features": int(som._w.shape[1])},
        "topology": som.topology,
        "periodic": som.periodic,
        "neighbourhood": som.neighbourhood,
        "training": {"radius0": som.radius0, "radius_decay": som.radius_decay,
                     "n_epochs": som.n_epochs, "init": som.init, "seed": params["seed"],
                     "epochs_run": max(len(som._history) - 1, 0), "converged": som.converged,
                     "n_dropped": som.n_dropped, "history": history},
        "prototypes": som.prototypes.reshape(som.n_units, -1).astype(float).tolist(),
        "neurons": neurons,
        "samples": samples,
        "provenance": _reproducible(som.provenance),
    }


def _reproducible(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The fit's record without times, host or outputs, so a rerun writes the same bytes."""
    if record is None:
        return None
    from ..provenance import Provenance

    return Provenance.from_dict(record).reproducible_dict()


def write_guasom(som: SOM, path: str | os.PathLike, X: Any = None, *, ids: Any = None,
                 columns: Any = None, overwrite: bool = False) -> Path:
    """Write `som` (and, with ``X``, each sample's BMU) as GUASOM JSON at ``path``."""
    from ..io import atomic_path

    doc = guasom_dict(som, X, ids=ids, columns=columns)
    text = json.dumps(doc, allow_nan=False)
    with atomic_path(path, overwrite=overwrite) as tmp:
        Path(tmp).write_text(text)
    if som.provenance is not None:
        export_record(som, path, X, ids=ids, columns=columns).write_sidecar(path)
    return Path(path)


def export_record(som: SOM, path: Any, X: Any = None, *, ids: Any = None, columns: Any = None):
    """The fit's record with the export's inputs (``export``, ``label``) and its output."""
    from ..provenance import Provenance
    from ._core import _columns_json, _path_of

    prov = Provenance.from_dict(som.provenance)
    prov.parameters = dict(prov.parameters)
    prov.parameters["export"] = {"X": _path_of(X), "in_memory": X is not None and _path_of(X)
                                 is None, "ids": ids is not None,
                                 "columns": _columns_json(columns)}  # fmt: skip
    prov.parameters["label"] = som._label_record
    prov.outputs = []
    prov.add_output(path)
    return prov


def _need(doc: dict[str, Any], key: str, path: Any) -> Any:
    if key not in doc:
        raise VanotebookInputError("path", f"GUASOM JSON with a {key!r} entry", str(path))
    return doc[key]


def read_guasom(path: str | os.PathLike) -> SOM:
    """Read a GUASOM JSON map back into a `SOM` (prototypes, history, hits, labels)."""
    from ._core import SOM, SOMLabels

    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise VanotebookInputError("path", "a readable GUASOM JSON file", str(path)) from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise VanotebookInputError("path", f"JSON with format {FORMAT!r}", str(path))
    dims = _need(doc, "dimensions", path)
    train = doc.get("training", {})
    seed = train.get("seed", 0)
    som = SOM((int(dims["rows"]), int(dims["cols"])), topology=doc.get("topology", "rectangular"),
              periodic=bool(doc.get("periodic", False)),
              neighbourhood=doc.get("neighbourhood", "gaussian"),
              radius0=train.get("radius0", 9.0), radius_decay=train.get("radius_decay", 16.0),
              n_epochs=train.get("n_epochs", 45), init=train.get("init", "data"),
              seed=seed if isinstance(seed, int) else 0)  # fmt: skip
    protos = np.asarray(_need(doc, "prototypes", path), dtype=np.float64)
    if protos.shape != (som.n_units, int(dims["features"])):
        raise VanotebookInputError("path", "prototypes of shape (rows * cols, features)",
                                   f"shape {protos.shape}")  # fmt: skip
    som.set_prototypes(protos)
    som._history = [{key: (float("nan") if v is None else v) for key, v in h.items()}
                    for h in train.get("history", [])]  # fmt: skip
    som.converged = bool(train.get("converged", False))
    som.n_dropped = int(train.get("n_dropped", 0))
    som.provenance = doc.get("provenance")
    neurons = sorted(_need(doc, "neurons", path), key=lambda n: n["id"])
    hits = np.array([n.get("hits", 0) for n in neurons], dtype=np.int64).reshape(som.shape)
    som.train_hits = hits
    if any(n.get("label") is not None for n in neurons):
        labels = np.array([n.get("label") or "" for n in neurons]).reshape(som.shape)
        purity = np.array([np.nan if n.get("purity") is None else n["purity"]
                           for n in neurons]).reshape(som.shape)  # fmt: skip
        classes = np.unique(labels[labels != ""])
        som.labels = SOMLabels(labels, purity, hits, classes, None, float("nan"), None)
    samples = doc.get("samples")
    som.samples = samples  # type: ignore[attr-defined]
    return som
