"""The thin Dask layer: the output grid cut into blocks, each block one task.

Every block task runs `combine_block` on the tiles that touch it, reading
only the part of each input it needs (inputs given as FITS paths stay on
disk, `FitsSource`), so worker memory is bounded by one block plus those
parts, whatever the mosaic's size. In memory the blocks are gathered and laid
out (`assemble`); `write_zarr` has each task write its own chunk of the store,
and `write_fits` streams stripes of blocks; both write under a temporary name
that is renamed only when the whole product is written. `Tracker` reports the
fraction of blocks done to a callback, or shows Dask's progress bar.

Workers that run as another account (the gateway's) may not read the caller's
FITS files nor write into the caller's folders (`vanotebook._remote`). Then
`stream_blocks` runs the same block tasks with the inputs sent by value: this
process reads, for each block, the box of each input it samples (a
`PixelRegion`), a few blocks ahead of the workers, and the blocks come back
as they finish, to be written here (`write_zarr`, `write_fits`). The numbers
are those of the path-reading tasks.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..io import atomic_dir
from ._coadd import combine_block
from ._kernels import LazySource, input_box

__all__ = ["PixelRegion", "Tracker", "assemble", "block_tasks", "block_windows",
           "compute_blocks", "fill_in_process", "gpu_annotations", "init_zarr",
           "stream_blocks", "workers_reach_inputs", "write_fits", "write_zarr"]


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

        for _ in as_completed(futures, loop=client.loop):
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
    fused = fused_path(combine, method, device, tiles)
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


# ----------------------------------------------------------------------------- by value
class PixelRegion(LazySource):
    """A box of a lazy input, read by the caller and sent with the task.

    It keeps the input's full ``shape``, so the kernels index it exactly as they
    index the input (`_kernels.input_box`); asking for pixels outside the box
    sent is an error, never a silent NaN.
    """

    def __init__(self, pixels: np.ndarray, y0: int, x0: int, shape: tuple[int, int], dtype):
        self.pixels = np.asarray(pixels)
        self.y0, self.x0 = int(y0), int(x0)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        ys, xs = key
        y0, y1, _ = ys.indices(self.shape[0])
        x0, x1, _ = xs.indices(self.shape[1])
        h, w = self.pixels.shape
        if y0 < self.y0 or x0 < self.x0 or y1 > self.y0 + h or x1 > self.x0 + w:
            msg = (f"pixels {(y0, y1, x0, x1)} asked of a region holding "
                   f"{(self.y0, self.y0 + h, self.x0, self.x0 + w)}")
            raise IndexError(msg)
        return self.pixels[y0 - self.y0:y1 - self.y0, x0 - self.x0:x1 - self.x0]

    def __repr__(self) -> str:
        h, w = self.pixels.shape
        return f"PixelRegion({self.y0}:{self.y0 + h}, {self.x0}:{self.x0 + w} of {self.shape})"


def workers_reach_inputs(client, tiles) -> bool:
    """Whether the workers of ``client`` can read every input the tiles read lazily (True
    with no client, or when every input is in memory)."""
    from .._remote import workers_can_read

    paths = [t.data.path for t in tiles if isinstance(t.data, LazySource)
             and getattr(t.data, "path", None)]
    return workers_can_read(client, paths)


def _reads_whole(method: str, device: str) -> bool:
    """Whether a block reads its inputs whole (drizzle, GPU, no numba), not just a box."""
    from .._optional import HAS_NUMBA

    return method == "flux-conserving" or device == "gpu" or not HAS_NUMBA


def _region(tile, window) -> PixelRegion:
    """The part of a lazy tile's input that the block ``window`` samples, read here."""
    from ._coadd import _intersect

    by0, by1, bx0, bx1 = _intersect(window, tile.bbox)
    y0, y1, x0, x1 = input_box(tile, np.arange(by0, by1), np.arange(bx0, bx1))
    data = tile.data
    return PixelRegion(data[y0:y1, x0:x1], y0, x0, data.shape, data.dtype)


def _block_by_value(window, tiles, regions, combine, method, device, centre) -> np.ndarray:
    """`combine_block` on tiles whose lazy inputs came as `PixelRegion` boxes."""
    from dataclasses import replace

    used = [t if r is None else replace(t, data=r) for t, r in zip(tiles, regions, strict=True)]
    return combine_block(window, used, combine, method, device, centre)


def stream_blocks(tiles, windows, *, client, combine: str, method: str, device: str, centre,
                  by_value: bool, tracker: Tracker | None = None):
    """Yield ``(window, block)`` for every window, as the workers finish them.

    With ``by_value`` the workers open no file: each lazy input is read here, for
    each block only the box it samples (the whole input once, scattered, where
    the kernels read inputs whole), a few blocks ahead of the workers
    (`vanotebook._remote.bounded_map`). Without it the tiles go as they are
    (inputs the workers can read), and only the writing happens here.
    """
    from dataclasses import replace

    from .._remote import bounded_map

    tracker = tracker or Tracker(len(windows))
    whole = _reads_whole(method, device)
    lazy = [by_value and isinstance(t.data, LazySource) for t in tiles]
    sent = []
    for t, lz in zip(tiles, lazy, strict=True):
        if lz:
            t = replace(t, data=np.asarray(t.data[:, :]) if whole else None)
        sent.append(t)
    refs = client.scatter(sent, hash=False)
    boxed = [lz and not whole for lz in lazy]

    def jobs():
        for w in windows:
            used = [k for k, t in enumerate(tiles) if _overlaps(w, t.bbox)]
            regions = [_region(tiles[k], w) if boxed[k] else None for k in used]
            yield (w, [refs[k] for k in used], regions, combine, method, device, centre)

    bar = None
    if tracker.show:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(windows), desc="mosaic blocks")
    try:
        for i, block in bounded_map(client, _block_by_value, jobs(),
                                    **gpu_annotations(device)):
            tracker.step()
            if bar is not None:
                bar.update()
            yield windows[i], block
    finally:
        if bar is not None:
            bar.close()


def _stripes(rows, client, tracker, stream):
    """Each stripe (row of blocks) as a ``(3, h, nx)`` array, top to bottom."""
    if stream is None:
        for row in rows:
            yield assemble([row], compute_blocks([d for _, d in row], client, tracker))
        return
    blocks = stream([w for row in rows for w, _ in row])
    done: dict = {}
    for row in rows:
        need = [w for w, _ in row]
        while any(w not in done for w in need):
            w, block = next(blocks)
            done[w] = block
        yield np.concatenate([done.pop(w) for w in need], axis=2)


def write_fits(rows, shape, header, path: str | os.PathLike, *, client, prov,
               overwrite: bool = False, tracker: Tracker | None = None,
               stream=None) -> Path:
    """Write the mosaic, weight and coverage to FITS, one stripe of blocks at a time.

    The primary HDU streams stripe by stripe; weight and coverage go through a
    temporary memory map and are streamed after it. Memory stays at one
    stripe (plus the blocks finished ahead of it); the file appears under its
    name only when complete. The blocks are ``rows``' tasks, or, given
    ``stream`` (``stream(windows)`` yields ``(window, block)``, `stream_blocks`),
    the blocks it yields.
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
        for row, part in zip(rows, _stripes(rows, client, tracker, stream), strict=True):
            y, y1 = row[0][0][0], row[0][0][1]
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


_ZARR_VARIABLES = ("mosaic", "weight", "coverage")


def _zarr_arrays(sink) -> list:
    import zarr

    return [zarr.open_array(str(sink), path=name, mode="r+") for name in _ZARR_VARIABLES]


def _put_block(arrays, window, block) -> None:
    y0, y1, x0, x1 = window
    for k, arr in enumerate(arrays):
        arr[y0:y1, x0:x1] = block[k].astype(arr.dtype)


def _write_zarr_block(window, tiles, combine, method, device, centre, sink) -> None:
    """Compute one block and write it into the store ``sink``; nothing is returned."""
    block = combine_block(window, tiles, combine, method, device, centre)
    _put_block(_zarr_arrays(sink), window, block)


def write_zarr(shape, path: str | os.PathLike, *, chunk: int, attrs: dict, client, make_rows,
               overwrite: bool = False, tracker: Tracker | None = None, stream=None,
               by_value: bool = False) -> Path:
    """Write the mosaic to zarr block by block.

    The store is made under a temporary name beside ``path`` and renamed only
    when every block is written. In this process, or where the workers can
    read the inputs and write into the store, each block task writes its own
    chunk (``make_rows(sink)`` builds them); otherwise (``by_value``, or a store
    the workers' account cannot write) the blocks of ``stream(windows)``
    (`stream_blocks`) are written here as they come back.
    """
    from .._remote import workers_can_write

    path = Path(path)
    with atomic_dir(path, overwrite=overwrite) as tmp:
        init_zarr(tmp, shape, chunk=chunk, attrs=attrs)
        if client is None or (not by_value and workers_can_write(client, tmp / "mosaic")):
            rows = make_rows(str(tmp))
            compute_blocks([d for row in rows for _, d in row], client, tracker)
        else:
            arrays = _zarr_arrays(tmp)
            windows = [w for row in block_windows(shape, chunk) for w in row]
            for window, block in stream(windows):
                _put_block(arrays, window, block)
    return path
