"""Self-organising maps: batch SOM on numpy, CuPy or Dask, metrics, labels, GUASOM JSON.

>>> from vanotebook.som import SOM
>>> som = SOM((16, 16), radius0=9, radius_decay=16.0, n_epochs=45).fit(flux)  # doctest: +SKIP
>>> som.history, som.umatrix(), som.label(flux, classes)                        # doctest: +SKIP

The Bokeh views (`umatrix_figure`, `hits_figure`, `label_figure`,
`isometric_figure`, `neuron_figure`) are imported on first use; the dashboard
is `vanotebook.dashboards.SOMDashboard`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ._core import SOM, SOMLabels
from ._guasom import read_guasom, write_guasom

_VIEWS = ("hits_figure", "isometric_figure", "label_figure", "neuron_figure", "scale_values",
          "umatrix_figure")

__all__ = ["SOM", "SOMLabels", "read_guasom", "write_guasom", *_VIEWS]


def __getattr__(name: str) -> Any:
    if name in _VIEWS:
        return getattr(import_module("._views", __name__), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
