"""Rerun adapter of the cross-match (imported by `vanotebook.provenance.rerun`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import astropy.units as u

from .._errors import VanotebookInputError
from ..provenance import Provenance, reproducible

__all__ = ["rerun_crossmatch", "rerun_crossmatch_many"]


def _check_inputs(activity: str, paths: dict[str, str | None]) -> None:
    for side, path in paths.items():
        if path is None:
            raise VanotebookInputError(
                "record", f"a {activity} product made from catalogue files",
                f"a record whose {side} catalogue was in memory")
        if not Path(path).exists():
            raise VanotebookInputError("record", "a record whose input files still exist",
                                       f"missing: {path}")


@reproducible("vanotebook.xmatch.crossmatch")
def rerun_crossmatch(output, *, left: str | None, right: str | None, radius_arcsec: float,
                     how: str, k: int, ra: str, dec: str, errors: Any, epoch: Any,
                     suffixes: list[str], nan: str, prior: float | None, device: str,
                     **_: Any) -> Provenance:
    """Match the recorded catalogue files again, with the recorded options, into ``output``.

    A product matched from tables in memory (no path recorded for a side) or whose
    files are gone is refused with `VanotebookInputError`.
    """
    from ._core import crossmatch, errors_from_json

    _check_inputs("vanotebook.xmatch.crossmatch", {"left": left, "right": right})
    crossmatch(left, right, radius=radius_arcsec * u.arcsec, how=how, k=k, ra=ra, dec=dec,
               errors=errors_from_json(errors), epoch=epoch, suffixes=tuple(suffixes),
               nan=nan, prior=prior, device=device, output=output)
    return Provenance.read(f"{output}.prov.json")  # a folder's lazy result has no meta


@reproducible("vanotebook.xmatch.crossmatch_many")
def rerun_crossmatch_many(output, *, catalogues: dict[str, str | None], radius_arcsec: float,
                          ra: str, dec: str, errors: Any, epoch: Any, nan: str, device: str,
                          **_: Any) -> Provenance:
    """The N-way match of the recorded catalogue files again, into ``output`` (a file, or
    a folder of parquet parts when the record's output was one)."""
    from ._core import crossmatch_many, errors_from_json

    _check_inputs("vanotebook.xmatch.crossmatch_many", catalogues)
    crossmatch_many(dict(catalogues), radius=radius_arcsec * u.arcsec, ra=ra, dec=dec,
                    errors=errors_from_json(errors), epoch=epoch, nan=nan, device=device,
                    output=output)
    return Provenance.read(f"{output}.prov.json")  # a folder's lazy result has no meta
