"""`Archive`: an embedded store of images and catalogues in one folder.

Layout::

    ARCHIVE/
      index.duckdb          the index (metadata only; see `_index`)
      archive.lock          the writers' lock
      catalogues/NAME-ID/   one HATS-style folder per catalogue (see `_catalogue`)
      images/SHA256.fits    images given in memory (files on disk stay where they are)

Every ingestion is atomic: the new files are written under temporary names,
renamed into place, and recorded in one DuckDB transaction. If the process
dies between the rename and the commit, the next writer (or the next
`Archive` opened while nobody writes) removes whatever the index does not
name, so the archive is exactly as before the ingestion.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import VanotebookInputError, check_positive
from ..provenance import Provenance, sha256_file
from ..units import fits_string, parse_unit
from . import _index
from ._catalogue import Catalogue, write_catalogue
from ._epochs import epoch_range, values_to_mjd
from ._images import SPECTRAL_COLUMNS, image_record, load_images
from ._index import ArchiveLockedError, connect, write_lock
from ._regions import parse_region

__all__ = ["Archive", "ArchiveLockedError"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_RESERVED = {"images", "image_cells", "catalogues", "catalogue_partitions", "ingests",
             "archive_info"}
_IMAGE_COLUMNS = ["path", "sha256", "hdu", "survey", "telescope", "band", "wavelength_m",
                  "epoch_mjd", "date_obs", "unit", "beam_major_arcsec", "beam_minor_arcsec",
                  "beam_pa_deg", "pixel_scale_arcsec", "frame", "naxis1", "naxis2",
                  "ra_center", "dec_center", "radius_deg", "area_deg2", "footprint_order",
                  "footprint", "stored", "ingest_id", *SPECTRAL_COLUMNS]
_IMAGE_UNITS = {"velocity_min_kms": "km/s", "velocity_max_kms": "km/s",
                "wavelength_min_m": "m", "wavelength_max_m": "m",
                "wavelength_m": "m", "epoch_mjd": "d", "beam_major_arcsec": "arcsec",
                "beam_minor_arcsec": "arcsec", "beam_pa_deg": "deg",
                "pixel_scale_arcsec": "arcsec", "ra_center": "deg", "dec_center": "deg",
                "radius_deg": "deg", "area_deg2": "deg2"}


def _to_table(result) -> Any:
    """A DuckDB result as an astropy Table (NULLs become masked entries)."""
    from astropy.table import MaskedColumn, Table

    names = [d[0] for d in result.description or []]
    data = result.fetchnumpy() if names else {}
    table = Table()
    for name in names:
        col = data[name]
        if isinstance(col, np.ma.MaskedArray):
            col = MaskedColumn(col) if col.mask.any() else col.filled()
        table[name] = col
    return table


class Archive:
    """An archive of images and catalogues in a folder, indexed by an embedded DuckDB.

    Parameters
    ----------
    path : path
        The archive folder; created (with an empty index) when missing.
    create : bool
        Create the archive when the folder has none (default True).

    Examples
    --------
    >>> arc = Archive("my_archive")                                   # doctest: +SKIP
    >>> arc.add_images("data/images/*.fits")                          # doctest: +SKIP
    >>> arc.add_catalogue("gaia", "gaia.parquet")                     # doctest: +SKIP
    >>> arc.images((281.4, -2.8, 0.2 * u.deg), band="24um")           # doctest: +SKIP
    >>> arc.catalogue("gaia").cone(281.4, -2.8, 6 * u.arcmin)         # doctest: +SKIP
    >>> arc.sql("SELECT survey, count(*) FROM images GROUP BY survey")  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = True) -> None:
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise VanotebookInputError("path", "a folder for the archive", str(root))
        index = root / _index.INDEX_FILE
        if not index.exists():
            if not create:
                raise VanotebookInputError("path", "an existing archive folder", str(root))
            root.mkdir(parents=True, exist_ok=True)
            with write_lock(root):
                _index.create(root)
        self.path = root.resolve()
        if not os.access(self.path, os.W_OK):
            return  # a read-only archive (the shared one, for its readers): only its writer tidies
        try:  # tidy after a writer that died; skipped while someone writes
            with write_lock(self.path):
                self._recover()
                con = connect(self.path, read_only=True)
                try:
                    old = not set(_index.SPECTRAL_DDL) <= _index.image_columns(con)
                finally:
                    con.close()
                if old:  # an archive made before cubes were indexed: add their columns
                    _index.create(self.path)
        except ArchiveLockedError:
            pass

    def __repr__(self) -> str:
        return f"Archive({str(self.path)!r})"

    # ------------------------------------------------------------------ internals
    def _recover(self) -> None:
        """Remove what no committed ingestion names (call under the write lock)."""
        con = connect(self.path, read_only=True)
        try:
            folders = {r[0] for r in con.execute("SELECT folder FROM catalogues").fetchall()}
            stored = {r[0] for r in con.execute(
                "SELECT relpath FROM images WHERE stored").fetchall()}
        finally:
            con.close()
        cat_dir = self.path / "catalogues"
        if cat_dir.is_dir():
            for entry in cat_dir.iterdir():
                if f"catalogues/{entry.name}" not in folders:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        for part in (self.path / "vo").glob(".*.part"):  # downloads killed mid-way
            part.unlink(missing_ok=True)
        img_dir = self.path / "images"
        if img_dir.is_dir():
            for entry in img_dir.iterdir():
                if f"images/{entry.name}" not in stored:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def _resolve(self, path: str, relpath: str | None) -> str:
        if relpath:
            candidate = self.path / relpath
            if candidate.exists():
                return str(candidate.resolve())
        return path

    def _commit(self, statements: Callable[[Any], None]) -> None:
        con = connect(self.path, read_only=False)
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                statements(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            con.close()

    def _query(self, sql: str, params: Sequence[Any] | None = None):
        con = connect(self.path, read_only=True)
        try:
            return _to_table(con.execute(sql, params or []))
        finally:
            con.close()

    @staticmethod
    def _provenance(activity: str, parameters: dict, inputs: list[dict],
                    outputs: list[dict]) -> Provenance:
        prov = Provenance(activity, parameters)
        prov.inputs.extend(inputs)
        prov.outputs.extend(outputs)
        return prov.finish()

    # ------------------------------------------------------------------ images
    def add_images(self, images: Any, *, survey: str | None = None, band: str | None = None,
                   unit: Any = None, source: dict | None = None,
                   progress: Callable[[str], None] | None = None):
        """Index images: FITS paths, globs, folders, or anything `vanotebook.io` parses.

        Files on disk are referenced where they are (by path and sha256); images
        given in memory are written into the archive as ``images/SHA256.fits``.
        An image already in the archive (same sha256 and HDU) is skipped, so
        ingesting the same file twice changes nothing.

        Parameters
        ----------
        images
            A path, glob pattern or folder of FITS files, an HDU/HDUList,
            ``(array, WCS)``, an `xarray.DataArray` with its header, or a list
            of any of these.
        survey, band : str, optional
            Override the header's ``SURVEY``/``TELESCOP`` and ``FILTER``/``BAND``.
        unit : str or astropy unit, optional
            The pixel unit of every image, overriding ``BUNIT`` (for units
            astropy cannot read, e.g. ``mag E(B-V)`` given as ``"mag"``).
            Images referenced on disk keep their file; the archive records
            the unit and images it stores carry it as ``BUNIT``.
        source : dict, optional
            Where the images came from (e.g. a VO service and its query), kept
            in the ingestion's provenance.
        progress : callable, optional
            Called with a message per image.

        Returns
        -------
        astropy.table.Table
            One row per input image: ``path``, ``sha256``, ``hdu``, ``added``.

        Raises
        ------
        VanotebookInputError
            A file that is not FITS, an image with no celestial WCS; nothing is written.
        ArchiveLockedError
            When another process is writing to the archive.
        """
        from astropy.table import Table

        say = progress or (lambda _m: None)
        loaded = load_images(images, unit=unit)
        (self.path / "images").mkdir(exist_ok=True)
        with write_lock(self.path):
            known = {(r[0], r[1]) for r in connect_rows(self.path,
                                                        "SELECT sha256, hdu FROM images")}
            records, rows, temps, finals = [], [], [], []
            hashes: dict[Path, str] = {}
            try:
                for path, hdu, image, argument in loaded:
                    stored = path is None
                    if stored:
                        from ..io import write_fits

                        tmp = self.path / "images" / f".{uuid.uuid4().hex}.fits.part"
                        write_fits(image.to_hdu(), tmp, overwrite=True)
                        temps.append(tmp)
                        sha = sha256_file(tmp)
                        where = self.path / "images" / f"{sha}.fits"
                    else:
                        if path not in hashes:
                            hashes[path] = sha256_file(path)
                        sha, where = hashes[path], path.resolve()
                    key = (sha, hdu)
                    rows.append((str(where), sha, hdu, key not in known))
                    if key in known:
                        continue
                    known.add(key)
                    try:
                        relpath = os.path.relpath(where, self.path)
                    except ValueError:  # another drive
                        relpath = None
                    rec = image_record(image, path=str(where), sha256=sha, hdu=hdu,
                                       stored=stored, survey=survey, band=band,
                                       argument=argument)
                    rec.values["relpath"] = Path(relpath).as_posix() if relpath else None
                    records.append(rec)
                    if stored:
                        finals.append((temps[-1], where))
                    say(f"image {len(records)}: {where.name}")
                if not records:
                    return Table(rows=rows or None, names=("path", "sha256", "hdu", "added"),
                                 dtype=(str, str, int, bool))
                ingest_id = uuid.uuid4().hex[:16]
                inputs = [{"path": r.values["path"], "sha256": r.values["sha256"]}
                          for r in records]
                params = {"survey": survey, "band": band,
                          **({"unit": fits_string(parse_unit(unit))} if unit is not None else {}),
                          **({"source": source} if source else {})}
                outputs = [{"path": f"index/images/{r.values['sha256'][:16]}/{r.values['hdu']}",
                            "sha256": _record_digest(r.values)} for r in records]
                prov = self._provenance("vanotebook.archive.add_images", params, inputs, outputs)
                moved = []
                try:
                    for tmp, final in finals:
                        if not final.exists():
                            os.replace(tmp, final)
                            moved.append(final)
                    self._commit(lambda con: _insert_images(con, records, ingest_id, prov))
                except BaseException:
                    for final in moved:
                        final.unlink(missing_ok=True)
                    raise
            finally:
                for tmp in temps:
                    tmp.unlink(missing_ok=True)
        table = Table(rows=rows, names=("path", "sha256", "hdu", "added"),
                      dtype=(str, str, int, bool))
        table.meta["ingest_id"] = ingest_id
        return table

    def provenance(self, name: str | None = None, *, ingest: str | None = None) -> Provenance:
        """The record of an ingestion: of catalogue ``name``, or of the ``ingest`` id.

        `vanotebook.provenance.rerun` remakes it into another archive
        (``vanotebook rerun ARCHIVE --catalogue NAME NEW_ARCHIVE`` on the
        command line); `ingests` lists every id.
        """
        if (name is None) == (ingest is None):
            raise VanotebookInputError("name", "a catalogue name or ingest=, not both",
                                       (name, ingest))
        if name is not None:
            rows = connect_rows(self.path, "SELECT ingest_id FROM catalogues WHERE name = ?",
                                [name])
            if not rows:
                self.catalogue(name)  # raises, naming the catalogues there are
            ingest = rows[0][0]
        rows = connect_rows(self.path, "SELECT provenance FROM ingests WHERE ingest_id = ?",
                            [ingest])
        if not rows:
            raise VanotebookInputError("ingest", "an ingest id of this archive (see ingests())",
                                       ingest)
        return Provenance.from_json(rows[0][0])

    def images(self, region: Any = None, *, band: str | Sequence[str] | None = None,
               survey: str | Sequence[str] | None = None, epoch: Any = None,
               wavelength: Any = None, velocity: Any = None, cubes: bool | None = None):
        """The images (and cubes) that overlap ``region``, with their metadata and footprints.

        Parameters
        ----------
        region
            Any region `parse_region` accepts (cone, sky region, polygon, MOC);
            None lists every image.
        band : str or list of str, optional
            Keep images whose band is one of these (case-insensitive).
        survey : str or list of str, optional
            Keep images whose survey name contains one of these (case-insensitive).
        epoch : (start, end), optional
            Keep images observed between ``start`` and ``end`` (astropy Time,
            ISO strings or MJD numbers; either may be None).
        wavelength : (min, max) Quantity, optional
            Keep images whose wavelength lies in the range (any spectral unit),
            and cubes whose channels overlap it.
        velocity : Quantity or (min, max) Quantity, optional
            Keep cubes whose channels cover this velocity (or overlap the range),
            in each cube's own Doppler convention (``spectral_convention``;
            radio for frequency axes). Images without a velocity axis are left out.
        cubes : bool, optional
            True: only cubes (images with a spectral axis); False: only 2-D
            images (what mosaics and detection take); None: both.

        Returns
        -------
        astropy.table.Table
            One row per image (HDU): path, sha256, metadata, ``footprint`` (a
            MOC in ASCII; `mocpy.MOC.from_string` reads it), and for cubes
            ``naxis3``, ``spectral_ctype``, ``spectral_convention`` and the
            coverage ``velocity_min_kms``/``velocity_max_kms`` and
            ``wavelength_min_m``/``wavelength_max_m`` (masked for images).
        """
        from astropy.table import Table

        where, params = [], []
        if band is not None:
            bands = [band] if isinstance(band, str) else list(band)
            where.append("lower(band) IN (" + ", ".join("?" * len(bands)) + ")")
            params.extend(b.lower() for b in bands)
        if survey is not None:
            surveys = [survey] if isinstance(survey, str) else list(survey)
            where.append("(" + " OR ".join("lower(survey) LIKE ?" for _ in surveys) + ")")
            params.extend(f"%{s.lower()}%" for s in surveys)
        if epoch is not None:
            lo, hi = epoch_range(epoch)
            if lo is not None:
                where.append("epoch_mjd >= ?")
                params.append(lo)
            if hi is not None:
                where.append("epoch_mjd <= ?")
                params.append(hi)
        reg = None if region is None else parse_region(region)
        vrange = None if velocity is None else _velocity_range(velocity)
        con = connect(self.path, read_only=True)
        try:
            have = _index.image_columns(con)
            select = [c if c in have else f"NULL AS {c}" for c in _IMAGE_COLUMNS]
            if wavelength is not None:
                lo, hi = _wavelength_range(wavelength)
                if "wavelength_min_m" in have:  # cubes: their channels overlap the range
                    where.append("COALESCE(wavelength_max_m, wavelength_m) >= ? AND "
                                 "COALESCE(wavelength_min_m, wavelength_m) <= ?")
                else:
                    where.append("wavelength_m BETWEEN ? AND ?")
                params.extend([lo, hi])
            if cubes is not None and "naxis3" in have:
                where.append("naxis3 IS NOT NULL" if cubes else "naxis3 IS NULL")
            elif cubes:
                where.append("FALSE")
            if vrange is not None:
                if "velocity_min_kms" not in have:
                    where.append("FALSE")
                else:
                    where.append("velocity_max_kms >= ? AND velocity_min_kms <= ?")
                    params.extend(vrange)
            sql = f"SELECT {', '.join(select)}, relpath FROM images"
            if reg is not None:
                import pyarrow as pa

                cells = reg.cells(_index.INDEX_ORDER)
                con.register("_query_cells", pa.table({"cell": cells}))
                where.append("(sha256, hdu) IN (SELECT sha256, hdu FROM image_cells "
                             "JOIN _query_cells USING (cell))")
            if where:
                sql += " WHERE " + " AND ".join(where)
            table = _to_table(con.execute(sql + " ORDER BY survey, path, hdu", params))
        finally:
            con.close()
        if len(table) == 0:
            table = Table(names=_IMAGE_COLUMNS,
                          dtype=[str, str, int, str, str, str, float, float, str, str, float,
                                 float, float, float, str, int, int, float, float, float,
                                 float, int, str, bool, str, *SPECTRAL_COLUMNS.values()])
        else:
            table["path"] = [self._resolve(p, r) for p, r in zip(table["path"],
                                                                  table["relpath"],
                                                                  strict=True)]
            del table["relpath"]
            if reg is not None:
                mocs: dict[int, Any] = {}
                keep = np.array([_overlaps(reg, fp, int(o), mocs) for fp, o in
                                 zip(table["footprint"], table["footprint_order"],
                                     strict=True)], bool)
                table = table[keep]
        for name, unit in _IMAGE_UNITS.items():
            table[name].unit = unit
        table.meta["provenance"] = {
            "activity": "vanotebook.archive.images", "archive": str(self.path),
            "parameters": {"region": None if reg is None else reg.describe(),
                           "band": band, "survey": survey, "epoch": str(epoch),
                           "wavelength": str(wavelength), "velocity": str(velocity)},
            "inputs": [{"path": p, "sha256": s} for p, s in zip(table["path"], table["sha256"],
                                                                  strict=True)],
        }
        return table

    # ------------------------------------------------------------------ catalogues
    def add_catalogue(self, name: str, data: Any, *, ra: str = "ra", dec: str = "dec",
                      epoch: str | float | None = None, order: int | None = None,
                      max_rows: int | None = None, chunk_rows: int | None = None,
                      row_group_rows: int = 8192, overwrite: bool = False,
                      description: str | None = None,
                      band: str | Sequence[str] | None = None, wavelength: Any = None,
                      progress: Callable[[str], None] | None = None,
                      client: Any = None) -> Catalogue:
        """Add a catalogue as HEALPix-partitioned parquet (HATS layout; LSDB opens it).

        Parameters
        ----------
        name : str
            Catalogue name: a letter then letters, digits or ``_`` (it is also
            the table name in `sql`).
        data
            An astropy Table/QTable, a pandas or dask DataFrame, a pyarrow
            Table, a catalogue file (FITS, VOTable, ECSV, parquet), parquet
            files or a folder of them, or an iterable of tables. Parquet files,
            dask DataFrames and iterables are read chunk by chunk, so they may
            be larger than memory.
        ra, dec : str
            Coordinate columns (ICRS degrees, or angle units on the columns).
        epoch : str or float, optional
            An epoch column name, or the catalogue's epoch (e.g. 2016.0).
        order : int, optional
            HEALPix order of the partitions (default: the coarsest order whose
            partitions hold at most ``max_rows`` rows).
        max_rows : int, optional
            Largest partition (default: the configured ``partition-rows``).
        chunk_rows : int, optional
            Rows read at a time from large inputs (default ``max_rows``).
        row_group_rows : int
            Rows per parquet row group; queries read only the row groups their
            cells touch, so small groups make small cones fast.
        overwrite : bool
            Replace a catalogue of the same name.
        description : str, optional
            Stored with the catalogue.
        band : str or list of str, optional
            The band(s) the catalogue measures (e.g. ``["G", "BP", "RP"]``),
            for `catalogues` and `search` to select by.
        wavelength : Quantity or (min, max) Quantities, optional
            The wavelength (range) the catalogue covers, any spectral unit.
        progress : callable, optional
            Called with a message before each step.
        client : distributed.Client, optional
            Computes the partitions of a dask DataFrame input (default: the
            current client, else in-process).

        Returns
        -------
        Catalogue
            The new catalogue, ready to query.
        """
        from .. import _config

        if not isinstance(name, str) or not _NAME.match(name) or name.lower() in _RESERVED:
            raise VanotebookInputError(
                "name", "a letter then up to 63 letters, digits or '_' (not an index table)",
                name)
        max_rows = int(max_rows or _config.get("partition-rows", 1_000_000))
        check_positive("max_rows", max_rows, integer=True)
        chunk_rows = int(chunk_rows or max_rows)
        check_positive("chunk_rows", chunk_rows, integer=True)
        check_positive("row_group_rows", row_group_rows, integer=True)
        if order is not None and (isinstance(order, bool) or not isinstance(
                order, int | np.integer) or not 0 <= order <= 20):
            raise VanotebookInputError("order", "an integer HEALPix order in [0, 20]", order)
        if epoch is not None and not isinstance(epoch, str | int | float):
            raise VanotebookInputError("epoch", "a column name or a number (e.g. 2016.0)",
                                       epoch)
        meta = {"description": description, "band": _bands(band),
                "wavelength_m": _wavelengths(wavelength)}
        if isinstance(epoch, int | float):
            meta["epoch_mjd"] = [float(values_to_mjd([epoch], None)[0])] * 2
        cat_dir = self.path / "catalogues"
        cat_dir.mkdir(exist_ok=True)
        with write_lock(self.path):
            old = connect_rows(self.path, "SELECT folder FROM catalogues WHERE name = ?", [name])
            if old and not overwrite:
                raise VanotebookInputError("name", "a new catalogue name (or overwrite=True)",
                                           name)
            ingest_id = uuid.uuid4().hex[:16]
            tmp = cat_dir / f".{name}-{ingest_id}.part"
            final = cat_dir / f"{name}-{ingest_id}"
            try:
                info = write_catalogue(data, tmp, name=name, ra=ra, dec=dec, order=order,
                                       max_rows=max_rows, chunk_rows=chunk_rows,
                                       row_group_rows=int(row_group_rows), progress=progress,
                                       client=client)
                if isinstance(epoch, str) and epoch not in info["columns"]:
                    raise VanotebookInputError("epoch", "a column of the catalogue or a number",
                                               epoch)
                if isinstance(epoch, str):
                    meta["epoch_mjd"] = _column_epochs(tmp / "dataset", epoch,
                                                       info["units"].get(epoch))
                parts = info["partitions"]
                from ..healpix import partition_path

                sums = [sha256_file(partition_path(tmp / "dataset", o, p))
                        for o, p in zip(parts["Norder"], parts["Npix"], strict=True)]
                inputs = [{"path": str(Path(p).resolve()), "sha256": sha256_file(p)}
                          for p in info["inputs"]]
                outputs = [{"path": f"catalogues/{final.name}/"
                            f"{partition_path('dataset', o, p).as_posix()}", "sha256": s}
                           for o, p, s in zip(parts["Norder"], parts["Npix"], sums, strict=True)]
                params = {"name": name, "ra": ra, "dec": dec, "epoch": epoch,
                          "order": info["order"], "max_rows": max_rows,
                          "source": type(data).__name__ if not inputs else "files",
                          **{k: meta[k] for k in ("band", "wavelength_m") if meta[k]}}
                made = _made_from(data)  # how an in-memory product was made, if it says
                prov = self._provenance("vanotebook.archive.add_catalogue", params,
                                        inputs + made, outputs)
                os.replace(tmp, final)
                try:
                    self._commit(lambda con: _insert_catalogue(
                        con, name, f"catalogues/{final.name}", ra, dec, epoch, info, sums,
                        meta, ingest_id, prov))
                except BaseException:
                    shutil.rmtree(final, ignore_errors=True)
                    raise
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp)
            for (folder,) in old:
                shutil.rmtree(self.path / folder, ignore_errors=True)
        return self.catalogue(name)

    def catalogue(self, name: str) -> Catalogue:
        """The catalogue ``name``, to query with ``.cone`` / ``.region``."""
        con = connect(self.path, read_only=True)
        try:
            row = con.execute("SELECT folder, ra, dec, epoch, norder, n_rows, columns, units "
                              "FROM catalogues WHERE name = ?", [name]).fetchone()
            if row is None:
                names = [r[0] for r in con.execute(
                    "SELECT name FROM catalogues ORDER BY name").fetchall()]
                raise VanotebookInputError(
                    "name", f"a catalogue of this archive ({', '.join(names) or 'none yet'})",
                    name)
            parts = con.execute("SELECT npix, sha256 FROM catalogue_partitions WHERE name = ? "
                                "ORDER BY npix", [name]).fetchall()
        finally:
            con.close()
        folder, ra, dec, epoch, order, n_rows, columns, units = row
        return Catalogue(name, self.path / folder, order=order, n_rows=n_rows,
                         columns=json.loads(columns), units=json.loads(units), ra=ra, dec=dec,
                         epoch=None if epoch is None else json.loads(epoch),
                         pixels=np.array([p for p, _ in parts], np.int64),
                         checksums={int(p): s for p, s in parts}, archive=str(self.path))

    def catalogues(self, region: Any = None, *, band: str | Sequence[str] | None = None,
                   epoch: Any = None, wavelength: Any = None):
        """The catalogues of the archive, optionally those that can answer a query.

        Parameters
        ----------
        region
            Keep catalogues with rows in partitions that overlap it (any form
            `parse_region` accepts).
        band : str or list of str, optional
            Keep catalogues that measure one of these bands (case-insensitive;
            a catalogue added without ``band`` has none).
        epoch : (start, end), optional
            Keep catalogues with epochs in the range (Time, ISO or MJD).
        wavelength : (min, max) Quantity, optional
            Keep catalogues whose wavelength range overlaps it.

        Returns
        -------
        astropy.table.Table
            name, n_rows, norder, ra, dec, epoch, columns, folder, band,
            wavelength_min/max (m), epoch_min/max (MJD), description.
        """
        table = self._query("SELECT name, n_rows, norder, ra, dec, epoch, columns, folder, meta "
                            "FROM catalogues ORDER BY name")
        metas = [json.loads(m or "{}") for m in table["meta"]]
        del table["meta"]
        table["band"] = [",".join(m.get("band") or []) for m in metas]
        for key, col in (("wavelength_m", "wavelength"), ("epoch_mjd", "epoch")):
            table[f"{col}_min"] = [(m.get(key) or [np.nan, np.nan])[0] for m in metas]
            table[f"{col}_max"] = [(m.get(key) or [np.nan, np.nan])[1] for m in metas]
        table["description"] = [m.get("description") or "" for m in metas]
        keep = np.ones(len(table), bool)
        if band is not None:
            wanted = set(_bands(band))
            keep &= [bool(wanted & set(_bands(b.split(",") if b else None)))
                     for b in table["band"]]
        if epoch is not None:
            lo, hi = epoch_range(epoch)
            lo = -np.inf if lo is None else lo
            hi = np.inf if hi is None else hi
            keep &= (np.asarray(table["epoch_max"]) >= lo) & (np.asarray(table["epoch_min"]) <= hi)
        if wavelength is not None:
            lo, hi = _wavelength_range(wavelength)
            keep &= ((np.asarray(table["wavelength_max"]) >= lo)
                     & (np.asarray(table["wavelength_min"]) <= hi))
        if region is not None:
            reg = parse_region(region)
            keep &= [keep[i] and self.catalogue(n).overlaps(reg)
                     for i, n in enumerate(table["name"])]
        return table[keep]

    def search(self, region: Any, *, band: str | Sequence[str] | None = None,
               survey: str | Sequence[str] | None = None, epoch: Any = None,
               wavelength: Any = None, columns: Sequence[str] | None = None) -> ArchiveSearch:
        """Everything in a region, band and epoch: the images and the catalogue rows.

        Parameters
        ----------
        region
            Any region `parse_region` accepts (a cone, a sky region, a MOC).
        band, epoch, wavelength
            As for `images` and `catalogues`; for a catalogue with an epoch
            column, ``epoch`` also selects its rows.
        survey : str or list of str, optional
            Images only (see `images`).
        columns : list of str, optional
            Catalogue columns to return where present (default all).

        Returns
        -------
        ArchiveSearch
            ``images`` (a Table as `images` returns) and ``catalogues`` (name
            to the Table of its rows in the region, for every catalogue that
            passes the filters, empty ones included).
        """
        reg = parse_region(region)
        images = self.images(reg, band=band, survey=survey, epoch=epoch, wavelength=wavelength)
        found = {}
        for name in self.catalogues(reg, band=band, epoch=epoch, wavelength=wavelength)["name"]:
            cat = self.catalogue(name)
            cols = None if columns is None else [c for c in columns if c in cat.columns]
            found[str(name)] = cat.region(reg, columns=cols, epoch=epoch)
        return ArchiveSearch(images, found)

    def ingests(self):
        """Every ingestion with its provenance (inputs' sha256, parameters, outputs)."""
        return self._query("SELECT * FROM ingests ORDER BY started")

    # ------------------------------------------------------------------ SQL
    def sql(self, query: str, params: Sequence[Any] | None = None):
        """Run DuckDB SQL over the archive: the index tables and every catalogue.

        The index tables are ``images``, ``image_cells``, ``catalogues``,
        ``catalogue_partitions`` and ``ingests``; each catalogue is a view of
        its own name over its parquet partitions (with ``_healpix_29``). The
        connection is read-only.

        Returns
        -------
        astropy.table.Table
        """
        if not isinstance(query, str):
            raise VanotebookInputError("query", "an SQL string", query)
        con = connect(self.path, read_only=True)
        try:
            for name, folder in con.execute("SELECT name, folder FROM catalogues").fetchall():
                files = (self.path / folder / "dataset" / "Norder=*" / "Dir=*" /
                         "*.parquet").as_posix().replace("'", "''")
                con.execute(f"CREATE TEMP VIEW \"{name}\" AS SELECT * FROM "
                            f"read_parquet('{files}', hive_partitioning = false)")
            return _to_table(con.execute(query, params or []))
        finally:
            con.close()


def connect_rows(root: Path, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
    con = connect(root, read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _insert_images(con, records, ingest_id: str, prov: Provenance) -> None:
    import pyarrow as pa

    cols = ["sha256", "hdu", "path", "relpath", "stored", "survey", "telescope", "band",
            "wavelength_m", "epoch_mjd", "date_obs", "unit", "beam_major_arcsec",
            "beam_minor_arcsec", "beam_pa_deg", "pixel_scale_arcsec", "frame", "naxis1",
            "naxis2", "ra_center", "dec_center", "radius_deg", "footprint_order", "footprint",
            "area_deg2", *SPECTRAL_COLUMNS]
    for rec in records:
        rec.values["ingest_id"] = ingest_id
    con.executemany(
        f"INSERT INTO images ({', '.join(cols)}, ingest_id) VALUES "
        f"({', '.join('?' * (len(cols) + 1))})",
        [[r.values[c] for c in cols] + [ingest_id] for r in records])
    cells = pa.table({
        "sha256": pa.array(np.concatenate([[r.values["sha256"]] * r.cells.size
                                           for r in records]).astype(str)),
        "hdu": pa.array(np.concatenate([np.full(r.cells.size, r.values["hdu"], np.int32)
                                        for r in records])),
        "cell": pa.array(np.concatenate([r.cells for r in records]).astype(np.int64)),
    })
    con.register("_new_cells", cells)
    con.execute("INSERT INTO image_cells SELECT sha256, hdu, cell FROM _new_cells")
    con.unregister("_new_cells")
    _insert_ingest(con, ingest_id, prov)


def _insert_catalogue(con, name, folder, ra, dec, epoch, info, sums, meta, ingest_id,
                      prov) -> None:
    import pyarrow as pa

    con.execute("DELETE FROM catalogues WHERE name = ?", [name])
    con.execute("DELETE FROM catalogue_partitions WHERE name = ?", [name])
    con.execute("INSERT INTO catalogues VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [name, folder, ra, dec, None if epoch is None else json.dumps(epoch),
                 info["order"], info["n_rows"], json.dumps(info["columns"]),
                 json.dumps(info["units"]), json.dumps(meta), ingest_id])
    parts = info["partitions"]
    con.register("_new_parts", pa.table({
        "name": pa.array([name] * len(parts)), "norder": pa.array(parts["Norder"], pa.int32()),
        "npix": pa.array(parts["Npix"], pa.int64()),
        "num_rows": pa.array(parts["num_rows"], pa.int64()), "sha256": pa.array(sums)}))
    con.execute("INSERT INTO catalogue_partitions SELECT * FROM _new_parts")
    con.unregister("_new_parts")
    _insert_ingest(con, ingest_id, prov)


def _made_from(data: Any) -> list[dict]:
    """The record of how an in-memory table was made (``data.meta["provenance"]``, as
    vanotebook's services leave it), as an input of the archive's own record: by its
    digest, with the whole record beside it. Empty when the table carries none."""
    meta = getattr(data, "meta", None)
    rec = meta.get("provenance") if isinstance(meta, dict) else None
    if isinstance(rec, str):
        try:
            rec = json.loads(rec)
        except ValueError:
            return []
    if not isinstance(rec, dict):
        return []
    try:
        made = Provenance.from_dict(rec)
    except VanotebookInputError:
        return []
    return [{"sha256": made.digest, "provenance": asdict(made)}]


def _insert_ingest(con, ingest_id: str, prov: Provenance) -> None:
    con.execute("INSERT INTO ingests VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [ingest_id, prov.activity, prov.started, prov.ended,
                 json.dumps(prov.parameters), json.dumps(prov.inputs),
                 json.dumps(prov.outputs), prov.to_json()])


def _overlaps(reg, footprint: str, order: int, cache: dict[int, Any]) -> bool:
    from mocpy import MOC

    if order not in cache:
        cache[order] = reg.to_moc(order)
    moc = MOC.from_string(footprint, format="ascii")
    return not moc.intersection(cache[order]).empty()


def _wavelength_range(wavelength: Any) -> tuple[float, float]:
    import astropy.units as u

    try:
        lo, hi = wavelength
        vals = sorted(float(q.to_value(u.m, equivalencies=u.spectral())) for q in (lo, hi))
    except (TypeError, ValueError, AttributeError, u.UnitConversionError) as exc:
        raise VanotebookInputError("wavelength", "(min, max) spectral Quantities, e.g. "
                                   "(20 * u.um, 30 * u.um)", wavelength) from exc
    return vals[0], vals[1]


def _velocity_range(velocity: Any) -> tuple[float, float]:
    """``(min, max)`` km/s of a velocity Quantity or a pair of them."""
    import astropy.units as u

    expected = "a velocity Quantity or (min, max) of them, e.g. (-20 * u.km / u.s, 40 * u.km / u.s)"
    try:
        q = u.Quantity(velocity)
        kms = np.atleast_1d(q.to_value(u.km / u.s)).astype(float)
    except (TypeError, ValueError, u.UnitsError) as exc:
        raise VanotebookInputError("velocity", expected, velocity) from exc
    if kms.size not in (1, 2) or not np.all(np.isfinite(kms)):
        raise VanotebookInputError("velocity", expected, velocity)
    return float(kms.min()), float(kms.max())


def _bands(band: Any) -> list[str]:
    """Band names, lower-cased, from a string or a list of strings."""
    if band is None:
        return []
    items = [band] if isinstance(band, str) else band
    try:
        items = list(items)
    except TypeError as exc:
        raise VanotebookInputError("band", "a band name or a list of them", band) from exc
    if not all(isinstance(b, str) and b.strip() for b in items):
        raise VanotebookInputError("band", "a band name or a list of them", band)
    return [b.strip().lower() for b in items]


def _wavelengths(wavelength: Any) -> list[float] | None:
    """A wavelength or (min, max) as metres, or None."""
    import astropy.units as u

    if wavelength is None:
        return None
    if isinstance(wavelength, u.Quantity) and wavelength.isscalar:
        wavelength = (wavelength, wavelength)
    lo, hi = _wavelength_range(wavelength)
    return [lo, hi]


def _column_epochs(dataset: Path, column: str, unit: str | None) -> list[float] | None:
    """The MJD range of an epoch column over a written catalogue."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    values = ds.dataset(str(dataset), format="parquet").to_table(columns=[column]).column(0)
    lo, hi = pc.min(values).as_py(), pc.max(values).as_py()
    if lo is None:
        return None
    mjd = values_to_mjd([lo, hi], unit, argument="epoch")
    return [float(mjd[0]), float(mjd[1])]


class ArchiveSearch:
    """What `Archive.search` found: ``images`` (Table) and ``catalogues`` (name: Table)."""

    def __init__(self, images: Any, catalogues: dict[str, Any]) -> None:
        self.images = images
        self.catalogues = catalogues

    def __repr__(self) -> str:
        rows = ", ".join(f"{k}: {len(v)}" for k, v in self.catalogues.items()) or "none"
        return f"ArchiveSearch({len(self.images)} images; catalogue rows {rows})"


def _record_digest(values: dict[str, Any]) -> str:
    """sha256 of what the index records about an image, wherever the file lies."""
    import hashlib

    kept = {k: v for k, v in values.items() if k not in ("path", "relpath", "stored")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()
