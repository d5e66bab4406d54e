"""The pipelines the job service runs, each declared once.

A `Pipeline` names its parameters (type, unit, default, documentation;
files are uploaded or referenced by URL) and its results; the UWS service,
its documentation and the clients read this declaration. Its ``run`` takes
the parsed parameters and a work folder and returns the result files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import VanotebookInputError

__all__ = ["PIPELINES", "Param", "Pipeline", "register"]


@dataclass(frozen=True)
class Param:
    """One parameter of a pipeline.

    Parameters
    ----------
    kind : {"float", "int", "bool", "str", "file"}
        How the text of the request is read; a ``file`` is an upload under
        the parameter's name (or an ``http(s)`` URL).
    doc : str
        What it means, with its unit.
    default : optional
        Used when the request leaves it out; required when None and
        ``required``.
    unit : str
        The unit of a number (documentation and clients).
    required : bool
    """

    kind: str
    doc: str
    default: Any = None
    unit: str = ""
    required: bool = False

    def parse(self, name: str, text: str | None) -> Any:
        """The value of ``text`` (None: the default), or a named error."""
        if text is None or text == "":
            if self.required:
                raise VanotebookInputError(name, f"a value ({self.doc})", "nothing")
            return self.default
        try:
            if self.kind == "float":
                return float(text)
            if self.kind == "int":
                return int(text)
        except ValueError as exc:
            raise VanotebookInputError(name, f"a{'n integer' if self.kind == 'int' else ' number'}"
                                       f" ({self.doc})", text) from exc
        if self.kind == "bool":
            low = text.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise VanotebookInputError(name, "true or false", text)
            return low in ("true", "1", "yes")
        return text


@dataclass(frozen=True)
class Pipeline:
    """A service as a job: its parameters, its results, and how to run it."""

    name: str
    doc: str
    params: dict[str, Param]
    results: dict[str, str]
    run: Callable[[dict[str, Any], Path, Callable[[str], None]], dict[str, Path]] = \
        field(repr=False)

    def parse(self, values: dict[str, str], *, partial: bool = False) -> dict[str, Any]:
        """Every parameter's value from the request's text, refusing unknown names.

        Files are ``upload:<name>`` references to an upload (the service
        resolves them to paths before the run); with ``partial`` (a job being
        made) missing required parameters are allowed.
        """
        unknown = sorted(k for k in values if k.lower() not in self.params)
        if unknown:
            raise VanotebookInputError(unknown[0], f"a parameter of {self.name} "
                                       f"({', '.join(self.params)})", values[unknown[0]])
        lowered = {k.lower(): v for k, v in values.items()}
        out = {}
        for k, p in self.params.items():
            if p.kind == "file" and k in lowered and partial and \
                    not lowered[k].startswith("upload:"):
                raise VanotebookInputError(k, "a file uploaded under this name "
                                           "(multipart/form-data)", lowered[k])
            if partial and k not in lowered:
                continue
            out[k] = lowered[k] if p.kind == "file" and k in lowered else \
                p.parse(k, lowered.get(k))
        return out


PIPELINES: dict[str, Pipeline] = {}


def register(pipeline: Pipeline) -> Pipeline:
    """Add a pipeline to `PIPELINES` (the service offers it at ``/<name>/jobs``)."""
    PIPELINES[pipeline.name] = pipeline
    return pipeline


# ----------------------------------------------------------------------------- pipelines
def _detect(params: dict[str, Any], work: Path, say: Callable[[str], None]) -> dict[str, Path]:
    import vanotebook
    from vanotebook.io import write_table

    say("detecting")
    options = {k: params[k] for k in ("seed_threshold", "merge_threshold", "min_pixels")}
    result = vanotebook.detect(params["image"], **options)  # the path: its record reruns
    say(f"writing {len(result.catalogue)} sources")
    paths = result.write(work / "detect")
    catalogue = write_table(result.catalogue, work / "catalogue.vot")
    out = {"catalogue": catalogue, "regions": paths["regions"], "residual": paths["residual"]}
    prov = next((p for p in (work / "detect").glob("*.prov.json")), None)
    if prov is not None:
        out["provenance"] = prov
    return out


register(Pipeline(
    name="detect",
    doc="Compact and extended sources of one image (vanotebook.detect).",
    params={
        "image": Param("file", "the image: a FITS file with a celestial WCS", required=True),
        "seed_threshold": Param("float", "peak S/N that seeds a source", 5.0, "sigma"),
        "merge_threshold": Param("float", "S/N down to which a source grows", 2.6, "sigma"),
        "min_pixels": Param("int", "fewest pixels in a source", 5, "pix"),
    },
    results={"catalogue": "the sources (VOTable)", "regions": "DS9 regions",
             "residual": "the image less the fitted sources (FITS)",
             "provenance": "how it was made (PROV-JSON)"},
    run=_detect,
))


def _sleep(params: dict[str, Any], work: Path, say: Callable[[str], None]) -> dict[str, Path]:
    import time

    steps = max(1, int(params["seconds"] * 10))
    for i in range(steps):
        time.sleep(0.1)
        if i % 10 == 0:
            say(f"{i / 10:.0f} of {params['seconds']:g} s")
    out = work / "slept.txt"
    out.write_text(f"slept {params['seconds']} s\n")
    return {"log": out}


register(Pipeline(
    name="sleep",
    doc="Wait a while and report progress: for checking a job service end to end.",
    params={"seconds": Param("float", "how long", 1.0, "s")},
    results={"log": "what it did"},
    run=_sleep,
))
