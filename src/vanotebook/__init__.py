"""vanotebook: a Jupyter-first science gateway for astronomers.

The public API a notebook needs is reachable from here; each service lives in
its own subpackage (`vanotebook.sky`, `vanotebook.io`, `vanotebook.mosaic`,
`vanotebook.detect`, `vanotebook.som`, `vanotebook.xmatch`, ...), which keeps
the rest of its API. ``vanotebook.mosaic(...)`` and ``vanotebook.detect(...)``
call the services' main functions (the subpackages are callable).

Services are imported on first use, so ``import vanotebook`` (which every
Dask worker does to run a task) stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ._errors import VanotebookInputError
from .provenance import Provenance, rerun

__version__ = "0.1.0"

# name -> (module, attribute); attribute None means the (callable) subpackage itself
_LAZY: dict[str, tuple[str, str | None]] = {
    "connect": (".cluster", "connect"),
    "mosaic": (".mosaic", None),
    "detect": (".detect", None),
    "homogenise": (".mosaic", "homogenise"),
    "cutout": (".mosaic", "cutout"),
    "SOM": (".som", "SOM"),
    "crossmatch": (".xmatch", "crossmatch"),
    "crossmatch_many": (".xmatch", "crossmatch_many"),
    "fit_greybody": (".sed", "fit_greybody"),
    "build_seds": (".sed", "build_seds"),
}

__all__ = [
    "SOM",
    "Provenance",
    "VanotebookInputError",
    "__version__",
    "build_seds",
    "connect",
    "crossmatch",
    "crossmatch_many",
    "cutout",
    "detect",
    "fit_greybody",
    "homogenise",
    "mosaic",
    "rerun",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = import_module(module_name, __name__)
        return module if attr is None else getattr(module, attr)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
