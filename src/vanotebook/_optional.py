"""Optional dependencies, as flags derived in one place.

Flags look for the package without importing it, so importing vanotebook
stays cheap; tests skip with ``pytest.mark.skipif(not HAS_X, ...)``.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

import numpy as np

__all__ = ["HAS_CUPY", "HAS_NUMBA", "HAS_PLAYWRIGHT", "HAS_PYVO", "namespace", "to_numpy"]


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
