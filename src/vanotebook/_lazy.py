"""Make a service subpackage callable as its main function.

``vanotebook.detect`` and ``vanotebook.mosaic`` are both a subpackage and the
function a notebook calls. Giving the module object a ``__call__`` makes
``vanotebook.detect(image)`` work whichever was imported first, without
importing every service when ``vanotebook`` is imported (Dask workers import
the package to unpickle a task, and should not pay for the others).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ["make_callable"]


def make_callable(module_name: str, func: Callable[..., Any]) -> None:
    """Let the module ``module_name`` be called as ``func`` (same docs and signature)."""
    module = sys.modules[module_name]

    class CallableModule(types.ModuleType):
        __call__ = staticmethod(func)

    CallableModule.__doc__ = func.__doc__
    module.__class__ = CallableModule
