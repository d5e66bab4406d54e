"""Optional dependencies, as flags derived in one place.

Flags look for the package without importing it, so importing vanotebook
stays cheap; tests skip with ``pytest.mark.skipif(not HAS_X, ...)``.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from importlib.util import find_spec
from typing import Any

import numpy as np

__all__ = ["HAS_CUPY", "HAS_NUMBA", "HAS_PLAYWRIGHT", "HAS_PYVO", "cpu_threads", "namespace",
           "single_threaded_blas", "to_numpy"]


def _has(name: str) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False


HAS_CUPY = _has("cupy")
HAS_NUMBA = _has("numba")
HAS_PYVO = _has("pyvo")
HAS_PLAYWRIGHT = _has("playwright")


def to_numpy(array: Any) -> Any:
    """A host numpy array of an array from any namespace (numpy, CuPy, array-api-strict).

    None and plain numbers come back unchanged.
    """
    if array is None or isinstance(array, int | float | np.ndarray):
        return array
    if hasattr(array, "get") and type(array).__module__.startswith("cupy"):
        return array.get()
    try:
        return np.asarray(array)
    except (TypeError, ValueError, RuntimeError):  # strict arrays convert through DLPack
        return np.from_dlpack(array)


def namespace(*arrays: Any) -> Any:
    """The array namespace of ``arrays``: numpy itself for numpy arrays and numbers.

    numpy (>= 2.1) implements the array API, so numpy inputs skip
    `array_api_compat.array_namespace` and its wrapped namespace, whose first import
    (~50 ms) a fresh process would otherwise pay; other arrays (CuPy,
    array-api-strict) get theirs from ``array_api_compat``.
    """
    if all(a is None or isinstance(a, int | float | np.ndarray | np.generic) for a in arrays):
        return np
    from array_api_compat import array_namespace

    return array_namespace(*(a for a in arrays if a is not None))


def cpu_threads() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


_CONTROLLER: Any = None


def single_threaded_blas():
    """Context limiting BLAS to one thread (a no-op without threadpoolctl).

    OpenBLAS's float32 products change in the last bits with its thread count, and a
    Dask worker runs with one: kernels whose results must be the same bytes wherever
    they run (here, on a worker, in a rerun) run under it.
    """
    global _CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - scikit-learn brings it
        return nullcontext()
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")
