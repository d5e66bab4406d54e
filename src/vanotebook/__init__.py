"""vanotebook: a Jupyter-first science gateway for astronomers.

The public API a notebook needs is re-exported here; each service lives in
its own subpackage (`vanotebook.sky`, `vanotebook.io`, ...).
"""

from __future__ import annotations

from ._errors import VanotebookInputError
from .cluster import connect
from .provenance import Provenance, rerun

__version__ = "0.1.0"

__all__ = ["Provenance", "VanotebookInputError", "__version__", "connect", "rerun"]
