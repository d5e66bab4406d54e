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


def spatial_blocks(data: Any, chunks: int | None = None, *, spectral: int | None = None):
    """``data`` as a dask array with ``spectral`` channels (default all) per block.

    ``chunks`` is the side of square sky patches; by default whole rows are
    taken, as many as fit in `BLOCK_BYTES`.
    """
    import dask.array as da

    nv, ny, nx = (int(n) for n in data.shape)
    itemsize = np.dtype(getattr(data, "dtype", np.float32)).itemsize
    nvb = nv if spectral is None else max(1, min(int(spectral), nv))
    if chunks is None:
        per_row = nvb * nx * itemsize
        rows = BLOCK_BYTES // max(per_row, 1)
        if rows >= 1:
            cy, cx = min(int(rows), ny), nx
        else:
            side = max(1, int(np.sqrt(BLOCK_BYTES / (nvb * itemsize))))
            cy, cx = min(side, ny), min(side, nx)
    else:
        side = check_positive("chunks", chunks, integer=True)
        cy, cx = min(side, ny), min(side, nx)
    if isinstance(data, da.Array):
        return data.rechunk((nvb, cy, cx))
    return da.from_array(data, chunks=(nvb, cy, cx), asarray=False)


def compute(array: Any, client=None) -> np.ndarray:
    """Compute a dask array on ``client`` (or threads here) into numpy."""
    if client is not None:
        out = client.compute(array, sync=True)
    else:
        out = array.compute(scheduler="threads")
    if hasattr(out, "get"):  # CuPy blocks come back to the host
        out = out.get()
    return np.asarray(out)
