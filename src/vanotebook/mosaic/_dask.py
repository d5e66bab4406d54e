"""The thin Dask layer: the output grid cut into blocks, each block one task.

Every block task runs `combine_block` on the tiles that touch it, so worker
memory is bounded by one block plus those tiles, whatever the mosaic's
size. The blocks become a dask array; `write_fits` and `write_zarr` compute
it stripe by stripe (or chunk by chunk) into a temporary name that is
renamed only when the whole product is written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ._coadd import combine_block

__all__ = ["block_windows", "lazy_blocks", "write_fits", "write_zarr"]


def block_windows(shape: tuple[int, int], chunk: int) -> list[list[tuple[int, int, int, int]]]:
    """Rows of output blocks ``(y0, y1, x0, x1)`` of side ``chunk``."""
    ny, nx = shape
    return [[(y, min(y + chunk, ny), x, min(x + chunk, nx)) for x in range(0, nx, chunk)]
            for y in range(0, ny, chunk)]


def _overlaps(window, bbox) -> bool:
    return not (bbox[1] <= window[0] or bbox[0] >= window[1] or bbox[3] <= window[2]
                or bbox[2] >= window[3])


def lazy_blocks(tiles, shape: tuple[int, int], *, chunk: int, combine: str, method: str,
                device: str, centre, token: str):
    """A ``(3, ny, nx)`` float32 dask array: mosaic, weight and coverage, one task per block."""
    import dask
    import dask.array as da

    refs = [dask.delayed(t, name=f"mosaic-tile-{token}-{k}", traverse=False)
            for k, t in enumerate(tiles)]
    func = dask.delayed(combine_block, pure=True)
    annotations = {"resources": {"GPU": 1}} if device == "gpu" else {}
    rows = []
    with dask.annotate(**annotations):
        for row in block_windows(shape, chunk):
            cells = []
            for w in row:
                used = [r for r, t in zip(refs, tiles, strict=True) if _overlaps(w, t.bbox)]
                task = func(w, used, combine, method, device, centre,
                            dask_key_name=f"mosaic-block-{token}-{w[0]}-{w[2]}")
                cells.append(da.from_delayed(task, (3, w[1] - w[0], w[3] - w[2]),
                                             dtype=np.float32))
            rows.append(cells)
    return da.block(rows)


def _scheduler_kwargs(client) -> dict:
    return {} if client is not None else {"scheduler": "threads"}


def compute(arrays, client):
    """Compute dask arrays on the client, or with threads in this process."""
    import dask

    if client is not None:
        futures = client.compute(list(arrays))
        return client.gather(futures)
    return list(dask.compute(*arrays, **_scheduler_kwargs(None)))


def write_fits(stack, header, path: str | os.PathLike, *, chunk: int, client, prov,
               overwrite: bool = False) -> Path:
    """Write the mosaic, weight and coverage to FITS, one stripe of blocks at a time.

    The primary HDU streams stripe by stripe; weight and coverage go through a
    temporary memory map and are streamed after it. Memory stays at one
    stripe; the file appears under its name only when complete.
    """
    from astropy.io import fits

    from ..io import atomic_path

    ny, nx = stack.shape[1:]
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
        for y in range(0, ny, chunk):
            (part,) = compute([stack[:, y:y + chunk]], client)
            hdu.write(np.ascontiguousarray(part[0], dtype=">f4"))
            side[:, y:y + chunk] = part[1:]
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
            for y in range(0, ny, chunk):
                hdu.write(np.ascontiguousarray(side[k, y:y + chunk], dtype=">f4"))
            hdu.close()
        del side
        with fits.open(tmp, mode="append") as hdul:
            hdul.append(prov.to_hdu())
    return Path(path)


def write_zarr(dataset, path: str | os.PathLike, *, client, overwrite: bool = False) -> Path:
    """Write a dask-backed Dataset to zarr chunk by chunk, under a temporary name first."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        delayed = dataset.to_zarr(tmp, mode="w", compute=False, consolidated=False)
        if client is not None:
            client.compute(delayed).result()
        else:
            delayed.compute(scheduler="threads")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path
