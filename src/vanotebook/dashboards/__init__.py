"""Panel dashboards, one per service, plus the gateway app that tabs them together.

Each dashboard is a `param`-based `panel.viewable.Viewer` that only calls the
public API; it holds no science code. They are imported lazily, so
``import vanotebook`` does not import Panel.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "ArchivePicker": "._archive",
    "CubeDashboard": "._cube",
    "DetectDashboard": "._detect",
    "HiPSViewer": "._hips",
    "JobsDashboard": "._jobs",
    "MosaicDashboard": "._mosaic",
    "SEDDashboard": "._sed",
    "SOMDashboard": "._som",
    "XmatchDashboard": "._xmatch",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
