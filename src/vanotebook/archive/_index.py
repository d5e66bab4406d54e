"""The archive's index: an embedded DuckDB file holding metadata only.

Tables
------
``images``
    One row per ingested image (HDU): path, sha256, survey, band, wavelength,
    epoch, unit, beam, pixel scale, frame, size, centre and the footprint MOC
    (ASCII serialisation) at ``footprint_order``; for cubes, the spectral
    coverage (`SPECTRAL_DDL`; added to archives made before it by `create`).
``image_cells``
    ``(sha256, hdu, cell)``: the footprint's cells at `INDEX_ORDER`, the
    coarse join that finds candidate images for a region.
``catalogues``
    One row per catalogue: its folder, coordinate columns, epoch, partition
    order, row count, columns and units.
``catalogue_partitions``
    ``(name, norder, npix, num_rows)``, as HATS' ``partition_info.csv``.
``ingests``
    Provenance of every ingestion: activity, parameters, inputs with sha256,
    outputs, and the full `vanotebook.provenance.Provenance` record as JSON.

Concurrency: a writer holds an exclusive ``flock`` on ``archive.lock`` for
the whole ingestion (released by the kernel if the process dies, so a killed
writer never leaves a stale lock); a second writer gets `ArchiveLockedError`.
Readers open the DuckDB file read-only for the duration of one query, retrying
for a while when a writer is committing.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["INDEX_FILE", "INDEX_ORDER", "LOCK_FILE", "SCHEMA_VERSION", "SPECTRAL_DDL",
           "ArchiveLockedError", "connect", "image_columns", "write_lock"]

INDEX_FILE = "index.duckdb"
LOCK_FILE = "archive.lock"
INDEX_ORDER = 6
"""HEALPix order of the ``image_cells`` join (cells about 0.9 deg wide)."""
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS archive_info (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS images (
    sha256 VARCHAR NOT NULL, hdu INTEGER NOT NULL, path VARCHAR NOT NULL,
    relpath VARCHAR, stored BOOLEAN NOT NULL,
    survey VARCHAR, telescope VARCHAR, band VARCHAR, wavelength_m DOUBLE,
    epoch_mjd DOUBLE, date_obs VARCHAR, unit VARCHAR,
    beam_major_arcsec DOUBLE, beam_minor_arcsec DOUBLE, beam_pa_deg DOUBLE,
    pixel_scale_arcsec DOUBLE, frame VARCHAR, naxis1 INTEGER, naxis2 INTEGER,
    ra_center DOUBLE, dec_center DOUBLE, radius_deg DOUBLE,
    footprint_order INTEGER, footprint VARCHAR, area_deg2 DOUBLE,
    ingest_id VARCHAR, naxis3 INTEGER, spectral_ctype VARCHAR, spectral_convention VARCHAR,
    velocity_min_kms DOUBLE, velocity_max_kms DOUBLE, wavelength_min_m DOUBLE,
    wavelength_max_m DOUBLE, PRIMARY KEY (sha256, hdu));
CREATE TABLE IF NOT EXISTS image_cells (sha256 VARCHAR, hdu INTEGER, cell BIGINT);
CREATE TABLE IF NOT EXISTS catalogues (
    name VARCHAR PRIMARY KEY, folder VARCHAR NOT NULL, ra VARCHAR, dec VARCHAR,
    epoch VARCHAR, norder INTEGER, n_rows BIGINT, columns VARCHAR, units VARCHAR,
    meta VARCHAR, ingest_id VARCHAR);
CREATE TABLE IF NOT EXISTS catalogue_partitions (
    name VARCHAR, norder INTEGER, npix BIGINT, num_rows BIGINT, sha256 VARCHAR);
CREATE TABLE IF NOT EXISTS ingests (
    ingest_id VARCHAR PRIMARY KEY, activity VARCHAR, started VARCHAR, ended VARCHAR,
    parameters VARCHAR, inputs VARCHAR, outputs VARCHAR, provenance VARCHAR);
"""


#: Columns added after the first schema, with their types: `create` adds them to older
#: archives, and readers of an older read-only archive see them as NULL.
SPECTRAL_DDL = {"naxis3": "INTEGER", "spectral_ctype": "VARCHAR",
                "spectral_convention": "VARCHAR", "velocity_min_kms": "DOUBLE",
                "velocity_max_kms": "DOUBLE", "wavelength_min_m": "DOUBLE",
                "wavelength_max_m": "DOUBLE"}


class ArchiveLockedError(RuntimeError):
    """Another process is writing to the archive (it holds ``archive.lock``)."""


@contextlib.contextmanager
def write_lock(root: Path) -> Iterator[None]:
    """Hold the archive's exclusive write lock, or raise `ArchiveLockedError` at once."""
    import fcntl

    path = Path(root) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            msg = (f"the archive {root} is being written by {holder}; wait for it to finish "
                   f"(only one writer at a time; readers are fine)")
            raise ArchiveLockedError(msg) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def connect(root: Path, *, read_only: bool = True, timeout: float = 30.0):
    """Open the index, retrying while another process holds DuckDB's own file lock."""
    import duckdb

    path = str(Path(root) / INDEX_FILE)
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            return duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def create(root: Path) -> None:
    """Create the schema (idempotent); call under `write_lock`."""
    con = connect(root, read_only=False)
    try:
        con.execute(SCHEMA)
        for name, kind in SPECTRAL_DDL.items():
            con.execute(f"ALTER TABLE images ADD COLUMN IF NOT EXISTS {name} {kind}")
        con.execute("INSERT OR IGNORE INTO archive_info VALUES ('schema_version', ?)",
                    [str(SCHEMA_VERSION)])
    finally:
        con.close()


def image_columns(con) -> set[str]:
    """The columns the ``images`` table of an open index has."""
    return {r[1] for r in con.execute("PRAGMA table_info('images')").fetchall()}
