"""The CPU fast path of one batch-SOM epoch: float32 GEMM blocks plus one fused numba scan.

`._kernels.epoch_stats` is the reference (array API: numpy, CuPy,
``array_api_strict``). For numpy rows with numba installed, `epoch_stats`
here returns the same dict to float32 tolerance, faster:

* rows go in blocks of ``chunk`` (2048) rows; one GEMM per block writes the
  scores transposed, ``waᵀ @ xaᵀ`` (``K × chunk``), into a per-thread buffer,
  so the scan that follows reads them while they are still in cache;
* one numba pass over the block finds every row's best and second-best unit
  together, unit by unit across contiguous rows as branch-free (vectorised)
  selects — first occurrence on ties, exactly as ``argmin``; a per-row
  scan with branches costs several times more once the map is trained and
  the branches stop being predictable — then adds the squared and plain
  distance to the BMU, the topographic-error count, and the row to its BMU's
  float64 numerator/count sums: no ``argmin`` twice, no masked copy, no
  one-hot matrix;
* the rows are cut into fixed slices of ``slice_rows`` rows; each slice keeps
  its own sums (the exact batch algorithm: a partition's per-unit sums) and
  the slices are added in order, so the answer does not depend on how many
  threads ran them. With ``threads > 1`` the slices run on a thread pool,
  each thread calling a single-threaded BLAS (GEMM and scan both release the
  GIL); one BLAS call per block on all cores syncs its threads every block and
  suffers badly when other processes share the cores.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .._optional import HAS_NUMBA, cpu_threads, single_threaded_blas

__all__ = ["available", "cpu_threads", "epoch_stats", "prepare", "single_threaded_blas"]

CHUNK = 2048
SLICE_ROWS = 8192

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()
_BUFFERS = threading.local()


#: Rows times units of one pass below which the array-API kernel runs instead (numpy):
#: there it takes at most a few ms per epoch (2000 x 64 in 1.5 ms here, as fast as this
#: path), less than the ~1 s that a fresh process pays once to import numba and load
#: the compiled scan (the first call of a small map, #20)
MIN_WORK = 1 << 22


def available(xa: Any, units: int | None = None) -> bool:
    """Whether the fast path runs on these prepared rows (numpy, numba installed) for a
    map of ``units`` units: not for a pass of fewer than `MIN_WORK` rows times units. The
    choice depends on the sizes only, so the same input always takes the same path."""
    if not (HAS_NUMBA and type(xa) is np.ndarray):
        return False
    return units is None or xa.shape[0] * units >= MIN_WORK


def _pool(threads: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or threads != _POOL_SIZE:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(threads, thread_name_prefix="vanotebook-som")
            _POOL_SIZE = threads
        return _POOL


def _buffer(size: int) -> np.ndarray:
    """This thread's flat float32 score buffer of at least ``size`` values."""
    buf = getattr(_BUFFERS, "buf", None)
    if buf is None or buf.size < size:
        buf = _BUFFERS.buf = np.empty(size, dtype=np.float32)
    return buf


def prepare(x: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`._kernels.prepare` for numpy rows without temporaries: ``[x - centre, 1]`` and
    ``||x - centre||²`` (float32), written straight into the output."""
    n, d = x.shape
    xa = np.empty((n, d + 1), dtype=np.float32)
    np.subtract(x, np.asarray(centre, dtype=np.float32), out=xa[:, :d], dtype=np.float32)
    xa[:, d] = 1.0
    norms = np.einsum("ij,ij->i", xa[:, :d], xa[:, :d])
    return xa, norms


def _run_slice(xa, norms, wat, adj, lo, hi, chunk, sums, acc, flags):
    sums[...] = 0.0
    acc[...] = 0.0
    from ._scan import scan  # numba's import and kernel load: only when the path runs

    k = wat.shape[0]
    buf = _buffer(chunk * k)
    for start in range(lo, hi, chunk):
        stop = min(start + chunk, hi)
        block = buf[: k * (stop - start)].reshape(k, stop - start)  # contiguous, for BLAS
        np.matmul(wat, xa[start:stop].T, out=block)
        scan(block, xa[start:stop], norms[start:stop], adj, sums, acc, flags[0], flags[1])


def epoch_stats(xa, norms, wa, adjacent=None, *, sums: bool = True, chunk: int | None = None,
                slice_rows: int | None = None, threads: int = 1) -> dict[str, Any]:
    """`._kernels.epoch_stats` for numpy rows, fused (see the module notes).

    Parameters
    ----------
    xa, norms, wa, adjacent, sums
        As for `._kernels.epoch_stats` (numpy arrays; ``xa`` float32).
    chunk : int, optional
        Rows per GEMM block (default 2048).
    slice_rows : int, optional
        Rows per slice with its own sums (default 8192); fixed, so the result
        does not depend on ``threads``.
    threads : int
        Slices run on this many threads (1: in the calling thread, BLAS as set).

    Returns
    -------
    dict
        ``sums`` (K, D + 1) float64 or None, ``sq_error``, ``error``, ``topo``
        (None without ``adjacent``), ``n``.
    """
    xa = np.ascontiguousarray(xa, dtype=np.float32)
    norms = np.ascontiguousarray(norms, dtype=np.float32)
    wat = np.ascontiguousarray(np.asarray(wa, dtype=np.float32).T)
    n, k = xa.shape[0], wat.shape[0]
    chunk = int(chunk or CHUNK)
    slice_rows = max(int(slice_rows or SLICE_ROWS), chunk)
    want_topo = adjacent is not None
    adj = (np.ascontiguousarray(adjacent, dtype=np.bool_) if want_topo
           else np.ones((1, 1), dtype=np.bool_))  # fmt: skip
    flags = (bool(sums), want_topo)
    bounds = [*range(0, n, slice_rows), n]
    m = max(len(bounds) - 1, 0)
    part_sums = np.empty((m, k, xa.shape[1]) if sums else (m, 1, 1), dtype=np.float64)
    part_acc = np.empty((m, 3), dtype=np.float64)

    def job(i: int) -> None:
        _run_slice(xa, norms, wat, adj, bounds[i], bounds[i + 1], chunk, part_sums[i],
                   part_acc[i], flags)  # fmt: skip

    threads = max(1, min(int(threads), m))
    if threads == 1:
        for i in range(m):
            job(i)
    else:
        with single_threaded_blas():
            list(_pool(threads).map(job, range(m)))
    acc = part_acc.sum(axis=0) if m else np.zeros(3)
    total = None
    if sums:
        total = part_sums.sum(axis=0) if m else np.zeros((k, xa.shape[1]))
    return {"sums": total, "sq_error": float(acc[0]), "error": float(acc[1]),
            "topo": int(acc[2]) if want_topo else None, "n": n}  # fmt: skip
