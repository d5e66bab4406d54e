"""The Virtual Observatory: query TAP and cone-search services, publish to a DaCHS server.

* `tap_search` and `cone_search` go through pyvo and return astropy Tables, like
  the archive's local queries; a server that does not answer gives an error
  naming its URL.
* `DaCHS` publishes a catalogue to a local DaCHS server (it writes the
  resource descriptor and the data under the server's inputs folder, imports
  it with ``dachs imp`` and reloads the server), after which the catalogue
  answers TAP (``<name>.main``) and SCS (``<url>/<name>/q/cone/scs.xml``);
  `DaCHS.publish_images` serves FITS images through SIAP v1 and SIA v2 /
  ObsTAP, and `DaCHS.publish` picks one of the two from the product.
* `sia_search` (image discovery, SIA v2 and SIAP v1) and `download_images`
  (into an `Archive`, with provenance) live in `_vo_images`.
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
from ._vo_images import download_images, sia_search

__all__ = ["DaCHS", "Published", "PublishedImages", "cone_search", "download_images",
           "sia_search", "tap_search"]

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


def rd_header(name: str, title: str, description: str, prov: Provenance, *, subject: str,
              kind: str) -> str:
    """The opening of a DaCHS resource descriptor: the resource and its metadata."""
    prov_text = escape(json.dumps({"activity": prov.activity, "digest": prov.digest}))
    return f"""<resource schema="{name}" resdir="{name}">
  <meta name="creationDate">{prov.started[:19]}Z</meta>
  <meta name="title">{escape(title)}</meta>
  <meta name="description">{escape(description or title)} Published by vanotebook
    (provenance {prov_text}).</meta>
  <meta name="creator">vanotebook</meta>
  <meta name="subject">{subject}</meta>
  <meta name="type">{kind}</meta>"""


@dataclass(frozen=True)
class Published:
    """A catalogue published on a DaCHS server."""

    name: str
    table: str
    tap_url: str
    scs_url: str
    rows: int
    provenance: Provenance


@dataclass(frozen=True)
class PublishedImages:
    """Images published on a DaCHS server (SIAP v1, SIA v2 and ObsTAP)."""

    name: str
    table: str
    sia_url: str
    siap_url: str
    tap_url: str
    files: tuple[str, ...]
    provenance: Provenance

    @property
    def images(self) -> int:
        return len(self.files)


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
                          description: str = "", reload: bool = True) -> Published:
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
        reload : bool
            Ask the server to reload its resources afterwards (``dachs serve
            reload``, which only the server's own account may do). Without it
            the server loads a new resource, or one whose descriptor changed,
            on its next request.

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
            if reload:
                self._run("serve", "reload")
        with atomic_path(folder / "provenance.json", overwrite=True) as tmp:
            tmp.write_text(prov.to_json())
        return Published(name, f"{name}.main", self.tap_url,
                         f"{self.url}/{name}/q/cone/scs.xml", len(table), prov)

    def sia_url(self, name: str, version: int = 2) -> str:
        """The SIA query URL of resource ``name``: v2 (``siap2.xml``) or SIAP v1 (``siap.xml``)."""
        from .._errors import check_choice

        check_choice("version", version, (1, 2))
        if version == 2:
            return f"{self.url}/{name}/q/siap2/siap2.xml"
        return f"{self.url}/{name}/q/siap/siap.xml?"

    def publish_images(self, images: Any, name: str, *, title: str | None = None,
                       survey: str | None = None, band: str | None = None,
                       collection: str | None = None,
                       description: str = "", reload: bool = True) -> PublishedImages:
        """Publish FITS images: afterwards they answer SIAP v1, SIA v2 and ObsTAP queries.

        The images are copied under the server's inputs folder
        (``<inputs>/<name>/data/``): FITS files byte for byte (so a download
        has the sha256 of the original), anything else written as FITS. The
        resource descriptor gives DaCHS the ICRS centre and edge polygon of
        each image (DaCHS alone would use the image's own frame), its survey,
        band, wavelength and date; it is imported with ``dachs imp`` and the
        server reloaded. ``ivoa.obscore`` is created first when missing.

        Parameters
        ----------
        images
            FITS paths, globs or folders; HDUs/HDULists, ``(array, WCS)``, a
            mosaic `xarray.Dataset` (written with `vanotebook.io.write_dataset`),
            or anything `vanotebook.io.parse_image` reads; or a list of these.
        name : str
            The resource's name: lower-case letters, digits and underscores
            (also its TAP schema, table ``<name>.main``); an existing one of
            that name is replaced.
        title, description : str
            Resource metadata.
        survey, band : str, optional
            Override the headers' ``SURVEY``/``TELESCOP`` and ``FILTER``/``BAND``.
        reload : bool
            As for `publish_catalogue`.
        collection : str, optional
            The ObsCore ``obs_collection`` for every image (default: each image's survey).

        Returns
        -------
        PublishedImages
        """
        from ..io import write_fits
        from ._images import load_images
        from ._vo_images import image_metadata, images_rd

        if not isinstance(name, str) or not _NAME.match(name):
            raise VanotebookInputError("name", "lower-case letters, digits and _ "
                                       "(starting with a letter)", name)
        for arg, value in (("survey", survey), ("band", band), ("collection", collection),
                           ("title", title)):
            if value is not None and not isinstance(value, str):
                raise VanotebookInputError(arg, "a string", value)
        if type(images).__name__ == "Dataset" and "mosaic" in getattr(images, "data_vars", {}):
            from ..io import write_dataset

            images = write_dataset(images)
        loaded = load_images(images)  # parses (and refuses bad input) before writing anything
        folder = self.inputs / name
        data_dir = folder / "data"
        params = {"name": name, "server": self.url, "survey": survey, "band": band,
                  "collection": collection}
        metadata: dict[str, dict[str, Any]] = {}
        with record("vanotebook.archive.publish_images", params) as prov:
            if data_dir.exists():  # a republication replaces the old files
                shutil.rmtree(data_dir)
            data_dir.mkdir(parents=True, exist_ok=True)
            for d in (folder, data_dir):  # the server runs as its own user
                d.chmod(0o755)
            copied: set[Path] = set()
            for k, (path, hdu, image, _argument) in enumerate(loaded):
                stem = f"{name}_{k:04d}"
                target = data_dir / f"{stem}.fits"
                if path is not None and hdu == 0 and path.suffix.lower() in (".fits", ".fit",
                                                                             ".fts"):
                    if path in copied:
                        continue
                    copied.add(path)
                    with atomic_path(target) as tmp:
                        shutil.copyfile(path, tmp)
                else:
                    write_fits(image.to_hdu(), target)
                target.chmod(0o644)
                prov.add_input(target)
                entry = image_metadata(image, survey=survey, band=band)
                entry["sha256"] = prov.inputs[-1]["sha256"]
                entry["source"] = None if path is None else str(path)
                metadata[stem] = entry
            rd = images_rd(name, metadata, title=title or name, description=description,
                           collection=collection, prov=prov)
            with atomic_path(folder / "q.rd", overwrite=True) as tmp:
                tmp.write_text(rd)
            self._ensure_obscore()
            self._run("imp", f"{name}/q")
            if reload:
                self._run("serve", "reload")
        with atomic_path(folder / "provenance.json", overwrite=True) as tmp:
            tmp.write_text(prov.to_json())
        files = tuple(str(data_dir / f"{stem}.fits") for stem in metadata)
        return PublishedImages(name, f"{name}.main", self.sia_url(name, 2),
                               self.sia_url(name, 1), self.tap_url, files, prov)

    def _ensure_obscore(self) -> None:
        """Create ``ivoa.obscore`` (``dachs imp //obscore``) when the server has none."""
        try:
            found = tap_search(self.tap_url, "SELECT table_name FROM tap_schema.tables "
                                             "WHERE table_name = 'ivoa.obscore'")
        except Exception:  # let dachs imp say what is wrong
            found = []
        if len(found) == 0:
            self._run("imp", "//obscore")

    def publish(self, product: Any, name: str, **kwargs: Any) -> Published | PublishedImages:
        """Publish a product: catalogues go to `publish_catalogue`, images to `publish_images`.

        Catalogue-like: an astropy Table/QTable, a pandas or dask DataFrame, a
        `~vanotebook.detect.DetectionResult` (its ``catalogue``), a match
        table, or a FITS-table/VOTable/ECSV/parquet file. Image-like: FITS
        image files, globs and folders, HDUs, ``(array, WCS)``, a mosaic
        Dataset or DataArray, or a list of these. Keyword arguments go to the
        chosen method.
        """
        kind = _product_kind(product)
        if kind == "catalogue":
            if hasattr(product, "catalogue") and not isinstance(product, Table):
                product = product.catalogue
            return self.publish_catalogue(product, name, **kwargs)
        return self.publish_images(product, name, **kwargs)

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
        return f"""{rd_header(name, title, description, prov, subject="catalogs", kind="Catalog")}
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


_TABLE_SUFFIXES = (".parquet", ".pq", ".ecsv", ".csv", ".vot", ".votable", ".xml")


def _product_kind(product: Any) -> str:
    """``"catalogue"`` or ``"images"``; a named error for anything else."""
    kind = type(product).__name__
    module = type(product).__module__
    if isinstance(product, Table) or kind in ("DataFrame", "QTable") or (
            module.startswith("pyarrow") and kind == "Table"):
        return "catalogue"
    if kind == "DetectionResult" or (hasattr(product, "catalogue") and isinstance(
            getattr(product, "catalogue", None), Table)):
        return "catalogue"
    if isinstance(product, dict):
        return "catalogue"
    if isinstance(product, str | Path):
        text = str(product)
        low = text.lower()
        if low.endswith(_TABLE_SUFFIXES) or (Path(text).is_dir() and any(
                Path(text).glob("*.parquet"))):
            return "catalogue"
        if low.endswith((".fits", ".fit", ".fts", ".fits.gz")) and Path(text).is_file():
            from astropy.io import fits

            try:
                with fits.open(text, memmap=False) as hdul:
                    first = next((h for h in hdul if h.data is not None), None)
            except OSError as exc:
                raise VanotebookInputError("product", "a FITS file", text) from exc
            if first is not None and not first.is_image:
                return "catalogue"
        return "images"
    return "images"
