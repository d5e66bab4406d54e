"""The defaults shared by every service: ``client``, ``device`` and chunking.

They live in the packaged ``vanotebook.yaml`` and are merged into
``dask.config`` once, as dask-gateway does, so users override them the usual
Dask way (``dask.config.set`` or ``DASK_VANOTEBOOK__IMAGE_CHUNK=4096``). The
merge happens at the first `get` (or `load`), not at import: a service that
runs in this process without Dask does not pay dask's import (~0.2 s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["DEVICES", "get", "load"]

DEVICES = ("auto", "cpu", "gpu")

_FILE = Path(__file__).with_name("vanotebook.yaml")
_LOADED = False


def load() -> None:
    """Merge the packaged defaults into ``dask.config`` (once; later calls do nothing)."""
    global _LOADED
    if not _LOADED:
        import dask.config
        import yaml

        with _FILE.open() as f:
            dask.config.update_defaults(yaml.safe_load(f))
        _LOADED = True


def get(key: str, default: Any = None) -> Any:
    """The configured value of ``vanotebook.<key>``."""
    load()
    import dask.config

    return dask.config.get(f"vanotebook.{key}", default=default)
