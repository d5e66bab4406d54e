"""Optional dependencies, as flags derived in one place.

Flags look for the package without importing it, so importing vanotebook
stays cheap; tests skip with ``pytest.mark.skipif(not HAS_X, ...)``.
"""

from __future__ import annotations

from importlib.util import find_spec

__all__ = ["HAS_CUPY", "HAS_NUMBA", "HAS_PLAYWRIGHT", "HAS_PYVO"]


def _has(name: str) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False


HAS_CUPY = _has("cupy")
HAS_NUMBA = _has("numba")
HAS_PYVO = _has("pyvo")
HAS_PLAYWRIGHT = _has("playwright")
