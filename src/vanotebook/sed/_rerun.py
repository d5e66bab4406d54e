"""Rerun adapter of the SED builder (imported by `vanotebook.provenance.rerun`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import astropy.units as u

from .._errors import VanotebookInputError
from ..provenance import Provenance, reproducible

__all__ = ["rerun_build_seds"]


@reproducible("vanotebook.sed.build_seds")
def rerun_build_seds(output, *, method: str, bands: list[str], nsigma: float,
                     wavelength_um: dict[str, float], radius_arcsec: float | None, flux: str,
                     flux_err: str, box: int | None, calibration: Any,
                     limits_jy: dict[str, float], sources: str | None,
                     inputs: dict[str, str | None], ra: str, dec: str, errors: Any,
                     **_: Any) -> Provenance:
    """Build the recorded SEDs again, from the recorded files, into ``output``.

    A product whose sources or any band's catalogue or map was in memory, or whose
    files are gone, is refused with `VanotebookInputError`.
    """
    from ..xmatch._core import errors_from_json
    from ._build import build_seds

    paths = {"sources": sources, **{f"band {b!r}": inputs.get(b) for b in bands}}
    for what, path in paths.items():
        if path is None:
            raise VanotebookInputError(
                "record", "a vanotebook.sed.build_seds product made from files",
                f"a record whose {what} was in memory")
        if not Path(path).exists():
            raise VanotebookInputError("record", "a record whose input files still exist",
                                       f"missing: {path}")
    kw: dict[str, Any] = {}
    items = {b: inputs[b] for b in bands}
    if method == "crossmatch":
        kw["catalogues"] = items
        kw["radius"] = radius_arcsec * u.arcsec
    else:
        kw["images"] = items
    out = build_seds(sources, wavelengths={b: wavelength_um[b] * u.um for b in bands},
                     flux=flux, flux_err=flux_err, nsigma=nsigma, calibration=calibration,
                     limits={b: v * u.Jy for b, v in limits_jy.items()} or None,
                     errors=errors_from_json(errors), ra=ra, dec=dec, box=box,
                     output=output, **kw)
    return Provenance.from_dict(out.meta["provenance"])
