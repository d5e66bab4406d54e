"""Provenance: what made a product, written beside it, and how to make it again.

A `Provenance` record holds the activity (a registered function), its
parameters and seed, the inputs and outputs with their sha256, the software
versions, and the start and end times. It is written two ways:

* into FITS products, as ``PROV*`` header cards plus a ``PROVENANCE``
  binary-table HDU carrying the record as JSON;
* as a JSON sidecar (``<product>.prov.json``) shaped like W3C PROV-JSON
  (``entity``, ``activity``, ``used``, ``wasGeneratedBy``).

The FITS form leaves out the times and the host, so re-running an activity
with the same inputs and seed writes the same bytes; the sidecar keeps them.
`rerun` does that re-run, for functions registered with `reproducible`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib
import json
import platform
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._errors import VanotebookInputError

__all__ = [
    "Provenance",
    "inputs_on_disk",
    "record",
    "reproducible",
    "rerun",
    "sha256_file",
    "software_versions",
]

_REGISTRY: dict[str, Callable[..., Any]] = {}
_WITH_RECORD: set[str] = set()
_PACKAGES = ("vanotebook", "numpy", "scipy", "astropy", "reproject", "dask", "distributed")
_PROV_HDU = "PROVENANCE"


def sha256_file(path: str | Path, *, block: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def software_versions() -> dict[str, str]:
    """Versions of Python and the packages a product's numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass
class Provenance:
    """The record of how one product was made.

    Parameters
    ----------
    activity : str
        Name of the registered activity (see `reproducible`).
    parameters : dict
        JSON-serialisable keyword arguments of the activity, output excluded.
    seed : int or None
        The seed, when the activity is random.
    inputs, outputs : list of dict
        ``{"path", "sha256"}`` of each file read and written (paths as given).
    versions : dict
        Software versions (`software_versions`).
    started, ended : str
        ISO 8601 UTC times.
    """

    activity: str
    parameters: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    inputs: list[dict[str, str]] = field(default_factory=list)
    outputs: list[dict[str, str]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=software_versions)
    started: str = field(default_factory=_now)
    ended: str | None = None
    host: str = field(default_factory=platform.node)

    # -- building ---------------------------------------------------------
    def add_input(self, path: str | Path) -> None:
        """Record a file read, with its sha256."""
        self.inputs.append({"path": str(path), "sha256": sha256_file(path)})

    def add_output(self, path: str | Path) -> None:
        """Record a file written, with its sha256."""
        self.outputs.append({"path": str(path), "sha256": sha256_file(path)})

    def finish(self) -> Provenance:
        """Stamp the end time; returns self."""
        self.ended = _now()
        return self

    # -- the deterministic part ------------------------------------------
    def reproducible_dict(self) -> dict[str, Any]:
        """The record without times, host or outputs: equal for equal re-runs."""
        return {
            "activity": self.activity,
            "parameters": self.parameters,
            "seed": self.seed,
            "inputs": [{"sha256": i["sha256"]} for i in self.inputs],
            "versions": self.versions,
        }

    @property
    def digest(self) -> str:
        """sha256 of `reproducible_dict`: two products with the same digest were made alike."""
        return hashlib.sha256(_canonical(self.reproducible_dict()).encode()).hexdigest()

    # -- JSON (PROV-JSON-like) -------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A W3C PROV-JSON-like dictionary (plus a ``vanotebook`` block to read it back)."""
        act = f"vanotebook:activity/{self.digest[:16]}"
        entities = {}
        used, generated = {}, {}
        for kind, items in (("input", self.inputs), ("output", self.outputs)):
            for n, item in enumerate(items):
                eid = f"vanotebook:{kind}/{item['sha256'][:16]}"
                # records embedded in FITS keep only checksums (the bytes don't name paths)
                label = item.get("path", f"sha256:{item['sha256']}")
                entities[eid] = {"prov:label": label, "vanotebook:sha256": item["sha256"]}
                rel = {"prov:activity": act, "prov:entity": eid}
                (used if kind == "input" else generated)[f"_:{kind}{n}"] = rel
        return {
            "prefix": {"vanotebook": "https://github.com/vanotebook/vanotebook#"},
            "entity": entities,
            "activity": {
                act: {
                    "prov:type": self.activity,
                    "prov:startTime": self.started,
                    "prov:endTime": self.ended,
                    "vanotebook:parameters": self.parameters,
                    "vanotebook:seed": self.seed,
                    "vanotebook:host": self.host,
                }
            },
            "agent": {"vanotebook:software": {"vanotebook:versions": self.versions}},
            "used": used,
            "wasGeneratedBy": generated,
            "vanotebook": asdict(self),
        }

    def to_json(self, **kwargs: Any) -> str:
        """The record as PROV-JSON-like text."""
        return json.dumps(self.to_dict(), indent=kwargs.pop("indent", 1), default=str, **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        """Read a record back from `to_dict` output (or its ``vanotebook`` block)."""
        body = data.get("vanotebook", data)
        try:
            return cls(**body)
        except TypeError as exc:
            raise VanotebookInputError(
                "record", "a vanotebook provenance dictionary", data
            ) from exc

    @classmethod
    def from_json(cls, text: str) -> Provenance:
        """Read a record from JSON text."""
        return cls.from_dict(json.loads(text))

    def write_sidecar(self, product: str | Path) -> Path:
        """Write ``<product>.prov.json`` beside a product (atomically); return its path."""
        from .io import atomic_path

        path = Path(f"{product}.prov.json")
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(self.to_json())
        return path

    @classmethod
    def read(cls, path: str | Path) -> Provenance:
        """Read a record from a JSON sidecar or from a FITS file's provenance HDU."""
        path = Path(path)
        if path.suffix == ".json":
            return cls.from_json(path.read_text())
        from astropy.io import fits

        with fits.open(path) as hdul:
            if _PROV_HDU not in hdul:
                raise VanotebookInputError("path", "a FITS file with a PROVENANCE HDU", str(path))
            return cls.from_json(hdul[_PROV_HDU].data["record"][0])

    # -- FITS --------------------------------------------------------------
    def header_cards(self) -> list[tuple[str, Any, str]]:
        """``PROV*`` cards for a product header (deterministic: no times).

        ``PROVDIG`` is the sha256 of the reproducible record and ``PROVIN<n>``
        the sha256 of each input (no room is left for comments on those).
        """
        cards = [
            # a long activity name leaves no room for a comment in an 80-character card
            ("PROVACT", self.activity,
             "vanotebook activity that made this" if len(self.activity) <= 30 else ""),
            ("PROVDIG", self.digest, ""),
            ("PROVVER", self.versions.get("vanotebook", "?"), "vanotebook version"),
        ]
        if self.seed is not None:
            cards.append(("PROVSEED", int(self.seed), "random seed"))
        for n, item in enumerate(self.inputs[:99]):
            cards.append((f"PROVIN{n}", item["sha256"], ""))
        return cards

    def to_hdu(self):
        """A ``PROVENANCE`` binary-table HDU with the reproducible record as JSON."""
        import numpy as np
        from astropy.io import fits

        text = _canonical(self.reproducible_dict() | {"started": None, "ended": None,
                                                        "host": "", "outputs": []})
        col = fits.Column(name="record", format=f"{max(len(text), 1)}A",
                          array=np.array([text]))
        hdu = fits.BinTableHDU.from_columns([col], name=_PROV_HDU)
        return hdu

    def attach(self, hdul) -> None:
        """Add the cards to the primary header and the ``PROVENANCE`` HDU to an HDUList."""
        for key, value, comment in self.header_cards():
            hdul[0].header[key] = (value, comment)
        if _PROV_HDU in hdul:
            del hdul[_PROV_HDU]
        hdul.append(self.to_hdu())


@contextlib.contextmanager
def record(
    activity: str, parameters: dict[str, Any] | None = None, *, seed: int | None = None
) -> Iterator[Provenance]:
    """Context manager that times an activity and yields its `Provenance` to fill in."""
    prov = Provenance(activity=activity, parameters=dict(parameters or {}), seed=seed)
    try:  # fail before the work, not when the record is written
        json.dumps(prov.parameters)
    except (TypeError, ValueError) as exc:
        raise VanotebookInputError("parameters", "JSON-serialisable values",
                                   prov.parameters) from exc
    yield prov
    prov.finish()


def reproducible(name: str, *, with_record: bool = False
                 ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function as an activity that `rerun` may call by name.

    The function must take the output location as its first argument and
    the recorded parameters as keywords (plus ``seed`` when one was
    recorded), and return its `Provenance`. A service registers its
    activities in ``vanotebook.<service>._rerun`` (imported by `rerun` on
    demand) or in the module that defines them. A record is refused by the
    adapter, with `VanotebookInputError`, when it cannot be remade (inputs in
    memory: see `inputs_on_disk`). With ``with_record`` the adapter is called
    as ``func(output, record, **parameters)``, for activities whose inputs
    are the record's input files rather than a parameter.
    """

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = func
        if with_record:
            _WITH_RECORD.add(name)
        return func

    return register


def _import_activity(activity: str) -> None:
    """Import what registers ``activity``: its package and that package's ``_rerun``.

    ``vanotebook.mosaic.homogenise`` imports ``vanotebook.mosaic.homogenise``
    (when it is a module), ``vanotebook.mosaic`` and ``vanotebook.mosaic._rerun``
    (when they exist), so a service keeps its rerun adapters in a private
    ``_rerun`` module and the core never names a service.
    """
    parts = activity.split(".")
    if parts[0] != "vanotebook" or activity in _REGISTRY:
        return
    for n in range(len(parts), 1, -1):
        prefix = ".".join(parts[:n])
        for name in (prefix, f"{prefix}._rerun"):
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name is None or not name.startswith(exc.name):
                    raise  # a real missing dependency inside the module
        if activity in _REGISTRY:
            return


def inputs_on_disk(record: Provenance) -> list[Path]:
    """The recorded input files, refusing a record made from data in memory.

    A rerun adapter calls this first: a product whose inputs were arrays
    (no paths recorded) or whose files are gone cannot be remade.
    """
    files = [item for item in record.inputs if item.get("path")]
    if not files:  # (an input without a path is a product made in memory)
        raise VanotebookInputError(
            "record", f"a {record.activity} product made from files on disk",
            "a record without input files (its inputs were in memory)")
    paths = [Path(item["path"]) for item in files]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise VanotebookInputError("record", "a record whose input files still exist",
                                   f"missing: {missing[:5]}")
    return paths


def rerun(record: Provenance | str | Path | dict, output: str | Path, *,
          check: bool = True) -> Provenance:
    """Make a product again from its provenance record.

    Parameters
    ----------
    record : Provenance, dict, or path to a sidecar JSON / FITS product
        The record of the product to remake.
    output : path
        Where the new product goes (the activity's first argument).
    check : bool
        Refuse to run when a recorded input file still exists at its path
        but its sha256 changed, and, after the run, compare the new
        outputs' sha256 with the recorded ones (raising `RuntimeError` on a
        mismatch).

    Returns
    -------
    Provenance
        The new run's record.
    """
    if isinstance(record, str | Path):
        record = Provenance.read(record)
    elif isinstance(record, dict):
        record = Provenance.from_dict(record)
    elif not isinstance(record, Provenance):
        raise VanotebookInputError(
            "record", "a Provenance, a dict, or a path to a .prov.json or FITS file", record
        )
    _import_activity(record.activity)
    func = _REGISTRY.get(record.activity)
    if func is None:
        raise VanotebookInputError(
            "record", f"a registered activity (one of {sorted(_REGISTRY)})", record.activity
        )
    if check:
        for item in record.inputs:
            if not item.get("path"):  # a FITS product's record names inputs by sha256 only
                continue
            p = Path(item["path"])
            if p.exists() and sha256_file(p) != item["sha256"]:
                msg = f"input {p} changed since the product was made (sha256 differs)"
                raise RuntimeError(msg)
    kwargs = dict(record.parameters)
    if record.seed is not None:
        kwargs["seed"] = record.seed
    new = func(output, record, **kwargs) if record.activity in _WITH_RECORD else \
        func(output, **kwargs)
    if check and isinstance(new, Provenance):
        old = sorted(o["sha256"] for o in record.outputs)
        got = sorted(o["sha256"] for o in new.outputs)
        if old and old != got:
            msg = (f"rerun of {record.activity} made different outputs: "
                   f"{len(set(old) ^ set(got))} sha256 values differ")
            raise RuntimeError(msg)
    return new
