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

__all__ = ["FILE_KINDS", "PIPELINES", "PLUGINS", "Param", "Pipeline", "register"]

FILE_KINDS = ("file", "files", "table")


@dataclass(frozen=True)
class Param:
    """One parameter of a pipeline.

    Parameters
    ----------
    kind : {"float", "int", "bool", "str", "file", "files", "table"}
        How the text of the request is read. ``file`` (one), ``files`` (one
        or more) and ``table`` (a catalogue) are uploads under the
        parameter's name, URLs or archive references (`vanotebook.jobs._refs`).
    doc : str
        What it means, with its unit.
    default : optional
        Used when the request leaves it out; required when None and
        ``required``.
    unit : str
        The unit of a number (documentation and clients).
    required : bool
    choices : tuple of str
        The values a ``str`` may take (empty: any).
    """

    kind: str
    doc: str
    default: Any = None
    unit: str = ""
    required: bool = False
    choices: tuple[str, ...] = ()

    @property
    def is_file(self) -> bool:
        """An upload, URL or archive reference (resolved in the job's process)."""
        return self.kind in FILE_KINDS

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
        if self.is_file:
            from ._refs import check_reference

            check_reference(name, text)
        elif self.choices and text not in self.choices:
            raise VanotebookInputError(name, f"one of {', '.join(self.choices)}", text)
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

        File parameters stay text (checked: an upload, a URL or an archive
        reference; `resolve` reads them in the job); with ``partial`` (a job
        being made) missing required parameters are allowed.
        """
        unknown = sorted(k for k in values if k.lower() not in self.params)
        if unknown:
            raise VanotebookInputError(unknown[0], f"a parameter of {self.name} "
                                       f"({', '.join(self.params)})", values[unknown[0]])
        lowered = {k.lower(): v for k, v in values.items()}
        out = {}
        for k, p in self.params.items():
            if partial and k not in lowered:
                continue
            out[k] = p.parse(k, lowered.get(k))
        return out

    def resolve(self, params: dict[str, Any], work: Path) -> dict[str, Any]:
        """``params`` with each file parameter read: paths, or a table (in the job)."""
        from ._refs import resolve

        return {k: resolve(k, v, work, many=self.params[k].kind == "files")
                if self.params[k].is_file and isinstance(v, str) else v
                for k, v in params.items()}


PIPELINES: dict[str, Pipeline] = {}
#: modules outside this package whose pipelines were registered (the hub's): each
#: job's process imports them too, so it knows every pipeline the service offers
PLUGINS: list[str] = []


def register(pipeline: Pipeline) -> Pipeline:
    """Add (or replace) a pipeline in `PIPELINES`: the service offers it at ``/<name>/jobs``.

    A pipeline declared outside `vanotebook.jobs` (the gateway's ``publish``)
    names its module in `PLUGINS`, so the jobs' processes import it as well.
    """
    PIPELINES[pipeline.name] = pipeline
    module = getattr(pipeline.run, "__module__", "")
    if module and not module.startswith(__package__) and module not in PLUGINS:
        PLUGINS.append(module)
    return pipeline


# the services' pipelines register themselves on import
from . import _pipelines  # noqa: E402, F401
