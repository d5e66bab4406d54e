"""Compiled numba kernels for the users' and workers' accounts, without recompiling.

numba caches compiled kernels next to their module (``__pycache__``) only
where that folder is writable; other accounts fall back to an empty cache of
their own and compile every kernel again: seconds of CPU in every new kernel
and worker, which on a shared machine is everyone's CPU. The hub (root)
keeps a *seed*: the package's own cache, in the layout numba uses for
``NUMBA_CACHE_DIR``, completed by one warm-up run as root. Each account gets
a private copy (its own files, so no account can plant a cached kernel that
another one loads) and ``NUMBA_CACHE_DIR`` pointing at it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["copy_cache", "seed_cache", "warm_seed"]

_KINDS = (".nbi", ".nbc")


def _subpath(source_dir: Path) -> str:
    """numba's folder name for a source folder under ``NUMBA_CACHE_DIR``."""
    path = os.path.abspath(source_dir)
    return "_".join([os.path.split(path)[-1], hashlib.sha1(path.encode()).hexdigest()])


def seed_cache(package: Path, seed: Path) -> int:
    """Copy the package's in-tree numba cache into ``seed`` (``NUMBA_CACHE_DIR`` layout).

    Returns the number of files copied (those missing or older in the seed).
    """
    n = 0
    for pycache in Path(package).rglob("__pycache__"):
        files = [f for f in pycache.iterdir() if f.suffix in _KINDS]
        if not files:
            continue
        target = seed / _subpath(pycache.parent)
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            dest = target / f.name
            if not dest.exists() or dest.stat().st_mtime < f.stat().st_mtime:
                shutil.copy2(f, dest)
                n += 1
    return n


def warm_seed(seed: Path) -> subprocess.Popen:
    """Complete the seed in the background: the warm-up run as this (root) process's account."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(seed))
    proc = subprocess.Popen([sys.executable, "-c",
                             "from vanotebook.hub._warm import warm; warm()"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    # reaped when it ends (no zombie under the hub, no warning for a dropped Popen)
    threading.Thread(target=proc.wait, daemon=True, name="numba-seed-warm-up").start()
    return proc


def copy_cache(seed: Path, dest: Path, uid: int = -1, gid: int = -1) -> int:
    """Copy the seed's files missing in ``dest`` (0700 folders, 0600 files, owned by uid)."""
    n = 0
    if not seed.is_dir():
        return 0
    for folder in [seed, *(p for p in seed.rglob("*") if p.is_dir())]:
        target = dest / folder.relative_to(seed)
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        if uid >= 0:
            os.chown(target, uid, gid)
        for f in folder.iterdir():
            out = target / f.name
            if f.suffix not in _KINDS or (out.exists() and
                                          out.stat().st_mtime >= f.stat().st_mtime):
                continue
            tmp = out.with_name(f".{f.name}.tmp")
            shutil.copy2(f, tmp)
            os.chmod(tmp, 0o600)
            if uid >= 0:
                os.chown(tmp, uid, gid)
            os.replace(tmp, out)
            n += 1
    return n
