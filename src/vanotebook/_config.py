"""The defaults shared by every service: ``client``, ``device`` and chunking.

They live in the packaged ``vanotebook.yaml`` and are merged into
``dask.config`` once, as dask-gateway does, so users override them the usual
Dask way (``dask.config.set`` or ``DASK_VANOTEBOOK__IMAGE_CHUNK=4096``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.config
import yaml

__all__ = ["DEVICES", "get"]

DEVICES = ("auto", "cpu", "gpu")

_FILE = Path(__file__).with_name("vanotebook.yaml")
with _FILE.open() as _f:
    dask.config.update_defaults(yaml.safe_load(_f))


def get(key: str, default: Any = None) -> Any:
    """The configured value of ``vanotebook.<key>``."""
    return dask.config.get(f"vanotebook.{key}", default=default)
