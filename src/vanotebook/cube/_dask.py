"""The thin Dask layer: cut a cube into blocks with the whole spectral axis, map a kernel.

A block holds every channel of a patch of sky, so each moment map pixel is made
by one task; blocks are sized by bytes (``chunks=None``) or given as the side of
square patches. Work runs on the client when there is one, else on Dask's
threaded scheduler in this process. FITS paths arrive as dask arrays of
`FitsCubeReader` regions, so no task holds more than its block.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import check_positive

__all__ = ["BLOCK_BYTES", "compute", "spatial_blocks"]

#: Bytes of input per block when ``chunks`` is not given.
BLOCK_BYTES = 16 << 20


class _Blocks:
    """An in-memory array seen through ``__getitem__`` only: dask's ``from_array``
    copies anything with a ``copy`` method (a pass over the whole cube); the kernels
    read their blocks as views and never write them."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.shape = tuple(data.shape)
        self.dtype = data.dtype
        self.ndim = data.ndim

    def __getitem__(self, key):
        return self.data[key]


def spatial_blocks(data: Any, chunks: int | None = None, *, spectral: int | None = None):
    """``data`` as a dask array with ``spectral`` channels (default all) per block.

    ``chunks`` is the side of square sky patches; by default whole rows are
    taken, as many as fit in `BLOCK_BYTES`.
    """
    import dask.array as da

    nv, ny, nx = (int(n) for n in data.shape)
    itemsize = np.dtype(getattr(data, "dtype", np.float32)).itemsize
    nvb = nv if spectral is None else max(1, min(int(spectral), nv))
    budget = BLOCK_BYTES
    if not isinstance(data, da.Array):  # in memory: enough blocks for every thread
        import os

        budget = min(budget, max(1 << 20, nv * ny * nx * itemsize // (4 * (os.cpu_count() or 1))))
    if chunks is None:
        per_row = nvb * nx * itemsize
        rows = budget // max(per_row, 1)
        if rows >= 1:
            cy, cx = min(int(rows), ny), nx
        else:
            side = max(1, int(np.sqrt(budget / (nvb * itemsize))))
            cy, cx = min(side, ny), min(side, nx)
    else:
        side = check_positive("chunks", chunks, integer=True)
        cy, cx = min(side, ny), min(side, nx)
    if isinstance(data, da.Array):
        return data.rechunk((nvb, cy, cx))
    # name=False: no sha1 of the pixels to name the graph (0.25 s for 128 MiB)
    source = _Blocks(data) if hasattr(data, "copy") else data
    return da.from_array(source, chunks=(nvb, cy, cx), asarray=False, name=False,
                         meta=np.empty((0, 0, 0), dtype=data.dtype))


def compute(array: Any, client=None, progress=None) -> np.ndarray:
    """Compute a dask array on ``client`` (or threads here) into numpy.

    ``progress(fraction)`` is called with the fraction of the array's blocks
    done, as each one finishes (from this thread with a client, from a worker
    thread of the threaded scheduler without one).
    """
    if progress is not None:
        out = _with_progress(array, client, progress)
    elif client is not None:
        out = client.compute(array, sync=True)
    else:
        out = array.compute(scheduler="threads")
    if hasattr(out, "get"):  # CuPy blocks come back to the host
        out = out.get()
    return np.asarray(out)


def _with_progress(array: Any, client, progress) -> np.ndarray:
    """`compute`, block by block, telling ``progress`` the fraction of blocks done."""
    import threading

    from dask.core import flatten

    keys = set(flatten(array.__dask_keys__()))
    total = max(len(keys), 1)
    progress(0.0)
    if client is not None:
        from distributed import as_completed

        blocks = array.to_delayed()
        futures = client.compute(list(blocks.ravel()))
        where = {f.key: i for i, f in enumerate(futures)}
        parts: list[Any] = [None] * len(futures)
        for done, future in enumerate(as_completed(futures, loop=client.loop), start=1):
            part = future.result()
            parts[where[future.key]] = part.get() if hasattr(part, "get") else part
            progress(done / total)
        grid = np.empty(blocks.shape, dtype=object)
        for i, part in enumerate(parts):
            grid.flat[i] = np.asarray(part)
        return np.block(grid.tolist())
    from dask.callbacks import Callback

    lock, count = threading.Lock(), [0]

    class _Blocks(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if key in keys:
                with lock:
                    count[0] += 1
                    done = count[0]
                progress(done / total)

    with _Blocks():
        return array.compute(scheduler="threads")
