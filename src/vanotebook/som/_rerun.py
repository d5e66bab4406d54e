"""Rerun adapter of a SOM fit and its GUASOM export (imported by `vanotebook.provenance.rerun`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._errors import VanotebookInputError
from ..provenance import Provenance, reproducible

__all__ = ["rerun_fit"]


def _refuse(why: str) -> None:
    raise VanotebookInputError("record", "a vanotebook.som.fit map fitted, labelled and "
                               "exported from files on disk", why)


def _need_file(path: str) -> None:
    if not Path(path).exists():
        raise VanotebookInputError("record", "a record whose input files still exist",
                                   f"missing: {path}")


@reproducible("vanotebook.som.fit")
def rerun_fit(output, *, shape, topology, periodic, neighbourhood, radius0, radius_decay,
              n_epochs, init, seed, tol, nan, device, X=None, columns=None,
              export: dict | None = None, label: dict | None = None,
              **_: Any) -> Provenance:
    """Fit the recorded map on the recorded file, label and export it as recorded.

    ``output`` is the new GUASOM JSON. A map fitted, labelled or exported with
    data in memory is refused with `VanotebookInputError`.
    """
    from ._core import SOM

    if X is None:
        _refuse("a record whose training data were in memory")
    if export is None:
        _refuse("a fit record without its GUASOM export (made before exports were recorded)")
    if export.get("in_memory") or export.get("ids"):
        _refuse("a record whose export samples or ids were in memory")
    if label is not None and (label.get("X") is None or label.get("y") is None):
        _refuse("a record whose labels came from data in memory")
    for path in (X, export.get("X"), (label or {}).get("X")):
        if path is not None:
            _need_file(path)
    som = SOM(tuple(shape), topology=topology, periodic=periodic, neighbourhood=neighbourhood,
              radius0=radius0, radius_decay=radius_decay, n_epochs=n_epochs, init=init,
              seed=seed)
    som.fit(X, columns=columns, tol=tol, nan=nan, device=device)
    if label is not None:
        som.label(label["X"], label["y"], columns=label.get("columns"))
    som.to_guasom(output, export.get("X"), columns=export.get("columns"))
    return Provenance.read(f"{output}.prov.json")
