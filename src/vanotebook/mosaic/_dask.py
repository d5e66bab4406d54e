"""The thin Dask layer: the output grid cut into blocks, each block one task.

Every block task runs `combine_block` on the tiles that touch it, reading
only the part of each input it needs (inputs given as FITS paths stay on
disk, `FitsSource`), so worker memory is bounded by one block plus those
parts, whatever the mosaic's size. In memory the blocks are gathered and laid
out (`assemble`); `write_zarr` has each task write its own chunk of the store,
and `write_fits` streams stripes of blocks; both write under a temporary name
that is renamed only when the whole product is written. `Tracker` reports the
fraction of blocks done to a callback, or shows Dask's progress bar.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..io import atomic_dir
from ._coadd import combine_block

__all__ = ["Tracker", "assemble", "block_tasks", "block_windows", "compute_blocks",
           "fill_in_process",
           "gpu_annotations", "init_zarr", "write_fits", "write_zarr"]


def block_windows(shape: tuple[int, int], chunk: int) -> list[list[tuple[int, int, int, int]]]:
    """Rows of output blocks ``(y0, y1, x0, x1)`` of side ``chunk``."""
    ny, nx = shape
    return [[(y, min(y + chunk, ny), x, min(x + chunk, nx)) for x in range(0, nx, chunk)]
            for y in range(0, ny, chunk)]


def _overlaps(window, bbox) -> bool:
    return not (bbox[1] <= window[0] or bbox[0] >= window[1] or bbox[3] <= window[2]
                or bbox[2] >= window[3])


def block_tasks(tiles, shape: tuple[int, int], *, chunk: int, combine: str, method: str,
                device: str, centre, token: str, sink: str | None = None):
    """Rows of ``(window, delayed)``, one task per output block.

    Each task runs `combine_block` on the tiles touching its block and returns
    the ``(3, h, w)`` float32 block, or, with ``sink`` (a zarr store made by
    `init_zarr`), writes it there and returns None, so nothing but the block
    itself is ever held by a worker. With ``device="gpu"`` the tasks ask for the
    worker resource ``GPU=1``.
    """
    import dask

    refs = [dask.delayed(t, name=f"mosaic-tile-{token}-{k}", traverse=False)
            for k, t in enumerate(tiles)]
    func = dask.delayed(combine_block if sink is None else _write_zarr_block, pure=True)
    annotations = gpu_annotations(device)
    rows = []
    with dask.annotate(**annotations):
        for row in block_windows(shape, chunk):
            cells = []
            for w in row:
                used = [r for r, t in zip(refs, tiles, strict=True) if _overlaps(w, t.bbox)]
                args = (w, used, combine, method, device, centre)
                if sink is not None:
                    args = (*args, sink)
                cells.append((w, func(*args, dask_key_name=f"{BLOCK_PREFIX}{token}-{w[0]}-{w[2]}")))
            rows.append(cells)
    return rows


BLOCK_PREFIX = "mosaic-block-"


def gpu_annotations(device: str) -> dict:
    """Dask annotations of the block tasks: the ``GPU`` worker resource on "gpu"."""
    return {"resources": {"GPU": 1}} if device == "gpu" else {}


class Tracker:
    """Progress over a known number of blocks: a callback ``f(fraction)`` and/or a bar.

    ``progress`` is False (nothing), True (Dask's bar: ``distributed.progress``
    with a client, ``dask.diagnostics.ProgressBar`` in-process) or a callable
    taking the fraction of blocks done, in [0, 1] (called from a worker thread).
    """

    def __init__(self, total: int, progress=False):
        self.total = max(int(total), 1)
        self.done = 0
        self.show = progress is True
        self.callback = progress if callable(progress) else None
        self._lock = threading.Lock()

    def step(self, n: int = 1) -> None:
        with self._lock:  # blocks finish on several threads: keep the fractions in order
            self.done += n
            if self.callback is not None:
                self.callback(min(self.done / self.total, 1.0))

    def local(self):
        """Context for an in-process compute: counts finished block tasks."""
        import contextlib

        from dask.callbacks import Callback

        tracker = self
        stack = contextlib.ExitStack()
        if self.show:
            from dask.diagnostics import ProgressBar

            stack.enter_context(ProgressBar())
        if self.callback is not None:
            class _Count(Callback):
                def _posttask(self, key, result, dsk, state, worker_id):
                    if str(key).startswith(BLOCK_PREFIX):
                        tracker.step()

            stack.enter_context(_Count())
        return stack


def compute_blocks(delayeds: list, client, tracker: Tracker | None = None) -> list:
    """Compute block tasks on the client (as futures), or with threads in this process."""
    import dask

    tracker = tracker or Tracker(len(delayeds))
    if client is None:
        with tracker.local():
            return list(dask.compute(*delayeds, scheduler="threads"))
    futures = client.compute(list(delayeds))
    if tracker.show:
        from distributed import progress as dask_progress

        bar = dask_progress(futures)  # a text bar in a terminal (it waits), a widget in Jupyter
        if bar is not None:
            from IPython.display import display

            display(bar)
    if tracker.callback is not None:
        from distributed import as_completed

        for _ in as_completed(futures):
            tracker.step()
    return client.gather(futures)


def fill_in_process(tiles, shape: tuple[int, int], *, chunk: int, combine: str, method: str,
                    device: str, centre, tracker: Tracker | None = None,
                    threads: int | None = None) -> np.ndarray:
    """The ``(3, ny, nx)`` mosaic computed in this process, without Dask.

    A thread pool runs the blocks; each writes straight into its part of one
    preallocated array (the fused numpy kernel releases the GIL), so nothing is
    copied or concatenated afterwards.
    """
    from concurrent.futures import ThreadPoolExecutor

    from ._coadd import _combine_fused, fused_path

    out = np.empty((3, *shape), np.float32)
    windows = [w for row in block_windows(shape, chunk) for w in row]
    tracker = tracker or Tracker(len(windows))
    fused = fused_path(combine, method, device)
    bar = None
    if tracker.show:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(windows), desc="mosaic blocks")

    def run(w):
        y0, y1, x0, x1 = w
        used = [t for t in tiles if _overlaps(w, t.bbox)]
        if fused:
            _combine_fused(used, w, combine=combine, method=method, centre=centre, out=out)
        else:
            out[:, y0:y1, x0:x1] = combine_block(w, used, combine, method, device, centre)
        tracker.step()
        if bar is not None:
            bar.update()

    threads = threads or os.cpu_count() or 1
    try:
        if threads == 1 or len(windows) == 1:
            for w in windows:
                run(w)
        else:
            with ThreadPoolExecutor(min(threads, len(windows))) as pool:
                list(pool.map(run, windows))
    finally:
        if bar is not None:
            bar.close()
    return out


def assemble(rows, results: list) -> np.ndarray:
    """The ``(3, ny, nx)`` array of computed blocks laid out as ``rows``."""
    it = iter(results)
    return np.concatenate([np.concatenate([next(it) for _ in row], axis=2) for row in rows],
                          axis=1)


def write_fits(rows, shape, header, path: str | os.PathLike, *, client, prov,
               overwrite: bool = False, tracker: Tracker | None = None) -> Path:
    """Write the mosaic, weight and coverage to FITS, one stripe of blocks at a time.

    The primary HDU streams stripe by stripe; weight and coverage go through a
    temporary memory map and are streamed after it. Memory stays at one
    stripe; the file appears under its name only when complete.
    """
    from astropy.io import fits

    from ..io import atomic_path

    ny, nx = shape
    with atomic_path(path, overwrite=overwrite) as tmp, \
            tempfile.TemporaryDirectory(dir=Path(path).parent) as scratch:
        side = np.lib.format.open_memmap(Path(scratch) / "side.npy", mode="w+",
                                         dtype=np.float32, shape=(2, ny, nx))
        primary = fits.Header()
        primary["SIMPLE"] = True
        primary["BITPIX"] = -32
        primary["NAXIS"] = 2
        primary["NAXIS1"] = nx
        primary["NAXIS2"] = ny
        primary["EXTEND"] = True
        for card in header.cards:
            if card.keyword not in primary and card.keyword not in ("COMMENT", "HISTORY", ""):
                primary[card.keyword] = (card.value, card.comment)
        for key, value, comment in prov.header_cards():
            primary[key] = (value, comment)
        tmp.unlink()
        hdu = fits.StreamingHDU(str(tmp), primary)
        for row in rows:
            y, y1 = row[0][0][0], row[0][0][1]
            part = assemble([row], compute_blocks([d for _, d in row], client, tracker))
            hdu.write(np.ascontiguousarray(part[0], dtype=">f4"))
            side[:, y:y1] = part[1:]
        hdu.close()
        for k, name in enumerate(("WEIGHT", "COVERAGE")):
            ext = fits.Header()
            ext["XTENSION"] = "IMAGE"
            ext["BITPIX"] = -32
            ext["NAXIS"] = 2
            ext["NAXIS1"] = nx
            ext["NAXIS2"] = ny
            ext["PCOUNT"] = 0
            ext["GCOUNT"] = 1
            ext["EXTNAME"] = name
            ext.update(fits.Header([c for c in header.cards
                                    if c.keyword.startswith(("CTYPE", "CRVAL", "CRPIX", "CDELT",
                                                             "CUNIT", "PC", "CD", "RADESYS",
                                                             "EQUINOX", "LONPOLE", "LATPOLE"))]))
            hdu = fits.StreamingHDU(str(tmp), ext)
            for row in rows:
                y, y1 = row[0][0][0], row[0][0][1]
                hdu.write(np.ascontiguousarray(side[k, y:y1], dtype=">f4"))
            hdu.close()
        del side
        with fits.open(tmp, mode="append") as hdul:
            hdul.append(prov.to_hdu())
    return Path(path)


def init_zarr(path: Path, shape: tuple[int, int], *, chunk: int, attrs: dict) -> None:
    """An empty mosaic store at ``path``: ``mosaic``, ``weight`` (float32) and ``coverage``
    (int16) of ``shape`` in ``chunk``-square chunks, and the Dataset attrs; no data written."""
    import dask.array as da
    import xarray as xr

    def empty(dtype):
        return da.zeros(shape, dtype=dtype, chunks=(chunk, chunk))

    ds = xr.Dataset({"mosaic": (("y", "x"), empty(np.float32),
                                {"header": attrs["header"], "unit": attrs["unit"]}),
                     "weight": (("y", "x"), empty(np.float32)),
                     "coverage": (("y", "x"), empty(np.int16))}, attrs=attrs)
    encoding = {"coverage": {"_FillValue": None}}
    ds.to_zarr(path, mode="w", compute=False, consolidated=False, encoding=encoding)


def _write_zarr_block(window, tiles, combine, method, device, centre, sink) -> None:
    """Compute one block and write it into the store ``sink``; nothing is returned."""
    import zarr

    block = combine_block(window, tiles, combine, method, device, centre)
    y0, y1, x0, x1 = window
    for k, name in enumerate(("mosaic", "weight", "coverage")):
        arr = zarr.open_array(str(sink), path=name, mode="r+")
        arr[y0:y1, x0:x1] = block[k].astype(arr.dtype)


def write_zarr(shape, path: str | os.PathLike, *, chunk: int, attrs: dict, client, make_rows,
               overwrite: bool = False, tracker: Tracker | None = None) -> Path:
    """Write the mosaic to zarr block by block (each task writes its own chunk).

    The store is made under a temporary name beside ``path``, filled by the block
    tasks (``make_rows(sink)`` builds them), and renamed only when every block is written.
    """
    path = Path(path)
    with atomic_dir(path, overwrite=overwrite) as tmp:
        init_zarr(tmp, shape, chunk=chunk, attrs=attrs)
        rows = make_rows(str(tmp))
        compute_blocks([d for row in rows for _, d in row], client, tracker)
    return path
