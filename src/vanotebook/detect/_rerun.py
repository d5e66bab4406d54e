"""Rerun adapter of the detection (imported by `vanotebook.provenance.rerun`)."""

from __future__ import annotations

import inspect
from typing import Any

from .._errors import VanotebookInputError
from ..provenance import Provenance, reproducible

__all__ = ["rerun_detect"]


@reproducible("vanotebook.detect")
def rerun_detect(output, *, image: str | None = None, seed: int = 0,
                 **parameters: Any) -> Provenance:
    """Detect again on the recorded image file with the recorded settings; write the
    products into the folder ``output`` and return the new record.

    Refused with `VanotebookInputError` when the image, a background or an rms map
    was an array in memory (nothing on disk to remake it from).
    """
    from pathlib import Path

    from . import detect

    if image is None:
        raise VanotebookInputError("record", "a vanotebook.detect product made from an image "
                                   "file", "a record whose image was in memory")
    if not Path(image).exists():
        raise VanotebookInputError("record", "a record whose input files still exist",
                                   f"missing: {image}")
    for name in ("background", "rms"):
        if parameters.get(name) == "array":
            raise VanotebookInputError("record", f"a product whose {name} was not an array "
                                       "in memory", f"{name} given as an array")
    allowed = set(inspect.signature(detect).parameters)
    kwargs = {k: v for k, v in parameters.items() if k in allowed}
    result = detect(image, seed=seed, **kwargs)
    result.write(output)
    return Provenance.from_dict(result.provenance)
