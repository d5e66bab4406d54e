"""The job store: one SQLite file, so a restart of the service loses no job."""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FINAL", "PHASES", "Job", "JobStore", "utcnow"]

PHASES = ("PENDING", "QUEUED", "EXECUTING", "COMPLETED", "ERROR", "ABORTED", "UNKNOWN",
          "HELD", "SUSPENDED", "ARCHIVED")
FINAL = ("COMPLETED", "ERROR", "ABORTED", "ARCHIVED")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, pipeline TEXT NOT NULL, phase TEXT NOT NULL,
    run_id TEXT, parameters TEXT NOT NULL, created TEXT NOT NULL, started TEXT, ended TEXT,
    destruction TEXT NOT NULL, execution_duration INTEGER NOT NULL, error TEXT,
    results TEXT NOT NULL, progress TEXT, seq INTEGER NOT NULL)
"""


def utcnow() -> _dt.datetime:
    """Now, in UTC, to the millisecond."""
    now = _dt.datetime.now(_dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _text(t: _dt.datetime | None) -> str | None:
    return None if t is None else t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time(s: str | None) -> _dt.datetime | None:
    return None if s is None else _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


@dataclass
class Job:
    """One job, as the store holds it."""

    id: str
    owner: str
    pipeline: str
    phase: str
    parameters: dict[str, str]
    created: _dt.datetime
    destruction: _dt.datetime
    execution_duration: int
    run_id: str | None = None
    started: _dt.datetime | None = None
    ended: _dt.datetime | None = None
    error: str | None = None
    results: dict[str, str] = field(default_factory=dict)
    progress: str | None = None


class JobStore:
    """Jobs in ``<folder>/jobs.sqlite``, their files in ``<folder>/<id>/``.

    Parameters
    ----------
    folder : path
        The service's state folder (made 0700).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        self._lock = threading.RLock()
        self._con = sqlite3.connect(self.folder / "jobs.sqlite", check_same_thread=False,
                                    isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute(_SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def workdir(self, job_id: str) -> Path:
        """The folder of a job's uploads and results."""
        path = self.folder / job_id
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    # -- writing -----------------------------------------------------------
    def create(self, owner: str, pipeline: str, parameters: dict[str, str], *,
               run_id: str | None, lifetime_s: int, execution_duration: int) -> Job:
        now = utcnow()
        job = Job(uuid.uuid4().hex[:16], owner, pipeline, "PENDING", parameters, now,
                  now + _dt.timedelta(seconds=lifetime_s), execution_duration, run_id)
        with self._tx() as con:
            seq = con.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            con.execute("INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (job.id, owner, pipeline, job.phase, run_id, json.dumps(parameters),
                         _text(now), None, None, _text(job.destruction), execution_duration,
                         None, "{}", None, seq))
        return job

    def update(self, job_id: str, **changes: Any) -> None:
        """Set columns of a job (times as datetimes, dicts as JSON)."""
        cols, values = [], []
        for key, value in changes.items():
            if isinstance(value, _dt.datetime):
                value = _text(value)
            elif isinstance(value, dict):
                value = json.dumps(value)
            cols.append(f"{key} = ?")
            values.append(value)
        with self._tx() as con:
            con.execute(f"UPDATE jobs SET {', '.join(cols)} WHERE id = ?", (*values, job_id))

    def move(self, job_id: str, from_phases: tuple[str, ...], to: str, **changes: Any) -> bool:
        """Change the phase only from one of ``from_phases`` (atomically); whether it did."""
        with self._tx() as con:
            row = con.execute("SELECT phase FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row[0] not in from_phases:
                return False
        self.update(job_id, phase=to, **changes)
        return True

    def delete(self, job_id: str) -> None:
        import shutil

        with self._tx() as con:
            con.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        shutil.rmtree(self.folder / job_id, ignore_errors=True)

    # -- reading -----------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._con.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def jobs(self, owner: str | None = None, pipeline: str | None = None, *,
             phases: list[str] | None = None) -> list[Job]:
        sql, args = "SELECT * FROM jobs WHERE 1 = 1", []
        if owner is not None:
            sql += " AND owner = ?"
            args.append(owner)
        if pipeline is not None:
            sql += " AND pipeline = ?"
            args.append(pipeline)
        if phases:
            sql += f" AND phase IN ({', '.join('?' * len(phases))})"
            args.extend(phases)
        with self._lock:
            rows = self._con.execute(sql + " ORDER BY seq", args).fetchall()
        return [_job(r) for r in rows]


def _job(row: tuple) -> Job:
    (jid, owner, pipeline, phase, run_id, params, created, started, ended, destruction,
     duration, error, results, progress, _seq) = row
    return Job(jid, owner, pipeline, phase, json.loads(params), _time(created),
               _time(destruction), int(duration), run_id, _time(started), _time(ended),
               error, json.loads(results), progress)
