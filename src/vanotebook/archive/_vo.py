"""The Virtual Observatory: query TAP and cone-search services, publish to a DaCHS server.

* `tap_search` and `cone_search` go through pyvo and return astropy Tables, like
  the archive's local queries; a server that does not answer gives an error
  naming its URL.
* `DaCHS` publishes a catalogue to a local DaCHS server (it writes the
  resource descriptor and the data under the server's inputs folder, imports
  it with ``dachs imp`` and reloads the server), after which the catalogue
  answers TAP (``<name>.main``) and SCS (``<url>/<name>/q/cone/scs.xml``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import astropy.units as u
import numpy as np
from astropy.table import Table

from .._errors import VanotebookInputError
from ..io import atomic_path, parse_catalogue
from ..provenance import Provenance, record

__all__ = ["DaCHS", "Published", "cone_search", "tap_search"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_SQL_TYPES = {"i": "bigint", "u": "bigint", "b": "boolean", "U": "text", "S": "text"}


def _unreachable(url: str, exc: Exception) -> VanotebookInputError | None:
    """A named error when ``exc`` says the server did not answer; None otherwise."""
    text = f"{type(exc).__name__} {exc}"
    if any(k in text for k in ("ConnectionError", "Connection refused", "Failed to establish",
                               "Max retries exceeded", "timed out")):
        return VanotebookInputError("url", "a VO service that answers", f"{url} ({exc})")
    return None


def tap_search(url: str, adql: str, *, maxrec: int | None = None) -> Table:
    """Run an ADQL query on a TAP service; return an astropy Table."""
    import pyvo
    import requests

    try:
        return pyvo.dal.TAPService(url).search(adql, maxrec=maxrec).to_table()
    except (requests.ConnectionError, pyvo.dal.DALAccessError) as exc:
        named = _unreachable(url, exc)
        if named is not None:
            raise named from exc
        raise


def cone_search(url: str, ra: float, dec: float, radius: u.Quantity) -> Table:
    """Simple Cone Search: the rows within ``radius`` (an angle Quantity) of (ra, dec) deg."""
    import pyvo
    import requests

    if not isinstance(radius, u.Quantity) or radius.unit.physical_type != "angle":
        raise VanotebookInputError("radius", "an angle Quantity such as 1 * u.arcmin", radius)
    try:
        return pyvo.dal.SCSService(url).search((ra, dec), radius.to_value(u.deg)).to_table()
    except (requests.ConnectionError, pyvo.dal.DALAccessError) as exc:
        named = _unreachable(url, exc)
        if named is not None:
            raise named from exc
        raise


@dataclass(frozen=True)
class Published:
    """A catalogue published on a DaCHS server."""

    name: str
    table: str
    tap_url: str
    scs_url: str
    rows: int
    provenance: Provenance


class DaCHS:
    """A local DaCHS server that vanotebook can publish to.

    Parameters
    ----------
    url : str
        The server's root URL (TAP is at ``<url>/tap``).
    inputs : path
        The server's inputs folder (``/var/gavo/inputs`` on Debian).
    command : str
        The ``dachs`` command.
    """

    def __init__(self, url: str = "http://localhost:8080", *,
                 inputs: str | Path = "/var/gavo/inputs", command: str = "dachs") -> None:
        self.url = url.rstrip("/")
        self.inputs = Path(inputs)
        self.command = command

    @property
    def tap_url(self) -> str:
        return f"{self.url}/tap"

    def _run(self, *args: str) -> str:
        exe = shutil.which(self.command)
        if exe is None:
            raise VanotebookInputError("command", "the dachs command on PATH", self.command)
        out = subprocess.run([exe, *args], cwd=self.inputs, capture_output=True, text=True,
                             check=False, timeout=600)
        if out.returncode != 0:
            msg = f"dachs {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-2000:]}"
            raise RuntimeError(msg)
        return out.stdout

    def publish_catalogue(self, catalogue: Any, name: str, *, ra: str = "ra", dec: str = "dec",
                          id: str | None = None, title: str | None = None,
                          description: str = "") -> Published:
        """Publish a catalogue: afterwards it answers TAP and SCS queries.

        Parameters
        ----------
        catalogue
            Anything `vanotebook.io.parse_catalogue` reads (in memory).
        name : str
            The resource's name: lower-case letters, digits and underscores.
            It becomes the TAP schema (table ``<name>.main``); an existing one
            of that name is replaced.
        ra, dec : str
            Coordinate columns, degrees ICRS (named ``ra``/``dec`` on the server).
        id : str, optional
            A unique integer column; by default a row number ``id`` is added.
        title, description : str
            Resource metadata.

        Returns
        -------
        Published
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise VanotebookInputError("name", "lower-case letters, digits and _ "
                                       "(starting with a letter)", name)
        table = Table(parse_catalogue(catalogue, ra=ra, dec=dec))
        if len(table) == 0:
            raise VanotebookInputError("catalogue", "at least one row", "an empty table")
        if (ra, dec) != ("ra", "dec"):
            table.rename_columns([ra, dec], ["ra", "dec"])
        if id is None:
            if "id" in table.colnames:
                table.rename_column("id", "id_orig")
            table.add_column(np.arange(1, len(table) + 1, dtype=np.int64), name="id", index=0)
        elif id != "id":
            table.rename_column(id, "id")
        ids = np.asarray(table["id"])
        if ids.dtype.kind not in "iu" or len(np.unique(ids)) != len(ids):
            raise VanotebookInputError("id", "a column of unique integers", "id")
        columns = []
        for col in table.colnames:
            if not re.match(r"^[a-z_][a-z0-9_]*$", col.lower()):
                raise VanotebookInputError("catalogue", "column names usable in SQL", col)
            if table[col].ndim > 1:
                raise VanotebookInputError("catalogue", "scalar columns", f"{col} is 2-D")
            kind = np.asarray(table[col]).dtype.kind
            sql = _SQL_TYPES.get(kind, "real" if np.asarray(table[col]).dtype.itemsize == 4
                                 else "double precision")
            unit = str(table[col].unit) if table[col].unit is not None else ""
            columns.append((col.lower(), sql, unit))
        table.rename_columns(table.colnames, [c[0] for c in columns])
        folder = self.inputs / name
        data = folder / "data" / f"{name}.fits"
        with record("vanotebook.archive.publish", {"name": name, "server": self.url}) as prov:
            data.parent.mkdir(parents=True, exist_ok=True)
            for d in (folder, data.parent):  # the server runs as its own user
                d.chmod(0o755)
            with atomic_path(data, overwrite=True) as tmp:
                table.meta.clear()
                table.write(tmp, format="fits", overwrite=True)
            prov.add_input(data)
            with atomic_path(folder / "q.rd", overwrite=True) as tmp:
                tmp.write_text(self._rd(name, columns, title or name, description, prov))
            self._run("imp", f"{name}/q")
            self._run("serve", "reload")
        with atomic_path(folder / "provenance.json", overwrite=True) as tmp:
            tmp.write_text(prov.to_json())
        return Published(name, f"{name}.main", self.tap_url,
                         f"{self.url}/{name}/q/cone/scs.xml", len(table), prov)

    def unpublish(self, name: str) -> None:
        """Drop a published resource and its files."""
        if not _NAME.match(name or ""):
            raise VanotebookInputError("name", "a published resource name", name)
        if (self.inputs / name / "q.rd").exists():
            self._run("drop", f"{name}/q")
            shutil.rmtree(self.inputs / name)

    def _rd(self, name: str, columns: list[tuple[str, str, str]], title: str,
            description: str, prov: Provenance) -> str:
        def column(col: str, sql: str, unit: str) -> str:
            ucd = {"id": "meta.id;meta.main", "ra": "pos.eq.ra;meta.main",
                   "dec": "pos.eq.dec;meta.main"}.get(col, "")
            required = ' required="True"' if col == "id" else ""
            return (f'    <column name="{col}" type="{sql}" unit="{escape(unit)}" '
                    f'ucd="{ucd}" description="{escape(col)}" verbLevel="1"{required}/>')

        cols = "\n".join(column(*c) for c in columns)
        prov_text = escape(json.dumps({"activity": prov.activity, "digest": prov.digest}))
        return f"""<resource schema="{name}" resdir="{name}">
  <meta name="creationDate">{prov.started[:19]}Z</meta>
  <meta name="title">{escape(title)}</meta>
  <meta name="description">{escape(description or title)} Published by vanotebook
    (provenance {prov_text}).</meta>
  <meta name="creator">vanotebook</meta>
  <meta name="subject">catalogs</meta>
  <meta name="type">Catalog</meta>
  <table id="main" onDisk="True" mixin="//scs#q3cindex" adql="True">
    <primary>id</primary>
    <stc>Position ICRS "ra" "dec"</stc>
{cols}
  </table>
  <data id="import">
    <sources pattern="data/{name}.fits"/>
    <fitsTableGrammar/>
    <make table="main"><rowmaker idmaps="*"/></make>
  </data>
  <service id="cone" allowed="form,scs.xml">
    <meta name="shortName">{name[:16]}</meta>
    <scsCore queriedTable="main"><FEED source="//scs#coreDescs"/></scsCore>
  </service>
</resource>
"""
