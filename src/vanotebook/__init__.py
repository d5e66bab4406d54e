"""vanotebook: a Jupyter-first science gateway for astronomers.

The public API a notebook needs is re-exported here; each service lives in
its own subpackage (`vanotebook.sky`, `vanotebook.io`, `vanotebook.xmatch`,
`vanotebook.detect`, `vanotebook.mosaic`, ...), which keeps the rest of its
API. Note that ``vanotebook.detect`` and ``vanotebook.mosaic`` are the
functions; ``from vanotebook.detect import SourceFinder`` still reaches the
subpackage.
"""

from __future__ import annotations

from ._errors import VanotebookInputError
from .cluster import connect
from .detect import detect
from .mosaic import cutout, homogenise, mosaic
from .provenance import Provenance, rerun
from .som import SOM
from .xmatch import crossmatch, crossmatch_many

__version__ = "0.1.0"

__all__ = [
    "SOM",
    "Provenance",
    "VanotebookInputError",
    "__version__",
    "connect",
    "crossmatch",
    "crossmatch_many",
    "cutout",
    "detect",
    "homogenise",
    "mosaic",
    "rerun",
]
