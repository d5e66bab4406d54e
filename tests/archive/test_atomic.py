"""An ingestion that fails or is killed halfway leaves the archive as it was; locks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table

from vanotebook.archive import Archive, ArchiveLockedError
from vanotebook.archive._index import write_lock
from vanotebook.provenance import sha256_file

TABLES = ("images", "image_cells", "catalogues", "catalogue_partitions", "ingests")


def _table(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    return Table({"id": np.arange(n), "ra": rng.uniform(0, 360, n),
                  "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
                  "v": rng.normal(size=n)})


def _snapshot(arc: Archive) -> tuple[dict, dict]:
    files = {p.relative_to(arc.path).as_posix(): sha256_file(p)
             for p in arc.path.rglob("*") if p.is_file()
             and not p.name.startswith(("index.duckdb", "archive.lock"))}
    index = {t: arc.sql(f"SELECT * FROM {t}").pformat(max_lines=-1, max_width=-1)
             for t in TABLES}
    for t in TABLES:  # row order is not part of the state
        index[t] = sorted(index[t])
    return files, index


@pytest.fixture
def filled(tmp_path, sky):
    arc = Archive(tmp_path / "arc")
    arc.add_catalogue("first", _table(), max_rows=2000)
    arc.add_images(sky.images("radio")[:2])
    return arc


def test_failure_while_writing_partitions_leaves_nothing(filled, monkeypatch):
    import vanotebook.archive._catalogue as cat

    before = _snapshot(filled)
    calls = []
    real = cat._write_partition

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(cat, "_write_partition", failing)
    with pytest.raises(OSError, match="disk full"):
        filled.add_catalogue("second", _table(seed=1), max_rows=2000)
    assert len(calls) >= 3
    assert _snapshot(filled) == before
    assert _snapshot(Archive(filled.path)) == before


def test_failure_at_commit_leaves_nothing(filled, monkeypatch, sky):
    before = _snapshot(filled)

    def failing(self, statements):
        raise RuntimeError("power cut")

    monkeypatch.setattr(Archive, "_commit", failing)
    with pytest.raises(RuntimeError, match="power cut"):
        filled.add_catalogue("first", _table(seed=2), max_rows=2000, overwrite=True)
    with pytest.raises(RuntimeError, match="power cut"):
        filled.add_images(sky.images("radio")[2:])
    assert _snapshot(filled) == before


KILL = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from astropy.table import Table
    import vanotebook.archive._archive as A
    import vanotebook.archive._catalogue as C
    where = sys.argv[2]
    if where == "write":
        real, count = C._write_partition, [0]
        def die(*a, **k):
            count[0] += 1
            if count[0] == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a, **k)
        C._write_partition = die
    else:  # after the folder is renamed into place, before the index commit
        def die(self, statements):
            os.kill(os.getpid(), signal.SIGKILL)
        A.Archive._commit = die
    rng = np.random.default_rng(3)
    n = 20000
    t = Table({"id": np.arange(n), "ra": rng.uniform(0, 360, n),
               "dec": rng.uniform(-90, 90, n), "v": rng.normal(size=n)})
    A.Archive(sys.argv[1]).add_catalogue("killed", t, max_rows=2000)
""")


@pytest.mark.parametrize("where", ["write", "commit"])
def test_killed_ingestion_leaves_the_archive_as_before(filled, where):
    before = _snapshot(filled)
    proc = subprocess.run([sys.executable, "-c", KILL, str(filled.path), where],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    leftovers = list((filled.path / "catalogues").iterdir())
    assert len(leftovers) > 1  # the dead writer left files behind ...
    reopened = Archive(filled.path)  # ... which the next opening removes
    assert _snapshot(reopened) == before
    assert reopened.catalogue("first").n_rows == 20_000


def test_second_writer_gets_a_clear_error(filled, sky):
    with write_lock(filled.path):
        with pytest.raises(ArchiveLockedError, match="being written by pid"):
            filled.add_catalogue("other", _table(), max_rows=2000)
        with pytest.raises(ArchiveLockedError):
            filled.add_images(sky.images("radio")[3])
        # readers still work while a writer holds the lock
        assert len(filled.catalogue("first").cone(10.0, 10.0, 5 * u.deg)) > 0
    filled.add_catalogue("other", _table(seed=4), max_rows=2000)  # free again


READ = textwrap.dedent("""
    import sys, time
    import astropy.units as u
    from vanotebook.archive import Archive
    arc = Archive(sys.argv[1])
    total = 0
    t0 = time.time()
    while time.time() - t0 < 1.5:
        total += len(arc.catalogue("first").cone(10.0, 10.0, 20 * u.deg))
        total += len(arc.images())
        total += int(arc.sql("SELECT count(*) AS n FROM first")["n"][0])
    print(total)
""")


def test_two_readers_at_once(filled):
    procs = [subprocess.Popen([sys.executable, "-c", READ, str(filled.path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONWARNINGS": "error"})
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert int(out) > 0
