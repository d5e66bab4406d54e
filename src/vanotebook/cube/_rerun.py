"""Rerun adapter of the cube moments (imported by `vanotebook.provenance.rerun`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import astropy.units as u

from .._errors import VanotebookInputError
from ..provenance import Provenance, reproducible

__all__ = ["rerun_moments"]


@reproducible("vanotebook.cube.moments")
def rerun_moments(output, *, cube: str | None, orders: list[str], velocity: list[float],
                  mask: Any, convention: str, rest_hz: float | None, chunks: int | None,
                  **_: Any) -> Provenance:
    """Compute the recorded moments of the recorded cube file again, into ``output``.

    A product made from a cube in memory (no path recorded) or whose file is
    gone, or one made with a mask array, is refused with `VanotebookInputError`.
    """
    from ._core import moments

    if cube is None:
        raise VanotebookInputError("record", "a vanotebook.cube.moments product made from "
                                   "a FITS file", "a record whose cube was in memory")
    if not Path(cube).exists():
        raise VanotebookInputError("record", "a record whose input file still exists",
                                   f"missing: {cube}")
    if mask == "array":
        raise VanotebookInputError("record", "a product made without a mask array",
                                   "a record with mask='array'")
    ds = moments(cube, tuple(orders), velocity=(velocity[0] * u.km / u.s,
                                                velocity[1] * u.km / u.s),
                 mask=mask, convention=convention,
                 rest=None if rest_hz is None else rest_hz * u.Hz, chunks=chunks,
                 output=output)
    return Provenance.from_dict(ds.attrs["provenance"])
