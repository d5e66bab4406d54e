"""Tiles with overlap on Dask; each island is kept by the one tile that owns it.

The background and noise maps are global (box statistics are cheap), so
every tile sees the same S/N map as the whole image. A tile finds and fits
the islands in its extended area (core plus ``overlap``) and keeps those
whose brightest pixel lies in its core; an island that fits inside the
overlap is therefore found, complete and identical, exactly once.
"""

from __future__ import annotations

import numpy as np

__all__ = ["compact_pass", "run_tiled", "tile_slices"]


def tile_slices(shape, tile: int, overlap: int):
    """``(core, extended)`` slice pairs covering ``shape``."""
    ny, nx = shape
    out = []
    for y0 in range(0, ny, tile):
        for x0 in range(0, nx, tile):
            core = (slice(y0, min(ny, y0 + tile)), slice(x0, min(nx, x0 + tile)))
            ext = (slice(max(0, y0 - overlap), min(ny, y0 + tile + overlap)),
                   slice(max(0, x0 - overlap), min(nx, x0 + tile + overlap)))
            out.append((core, ext))
    return out


def compact_pass(sub, rms, *, seed, merge, min_pixels, psf_cov, max_components, peak_size,
                 iterations=40, xp=np, core=None, offset=(0, 0), full_shape=None, snr=None,
                 above=None, nested=False, fit_margin=1.0, chi2_scale=1.0):
    """Islands, peaks and fits of one image (or one tile); positions in global pixels.

    ``core`` = (y0, y1, x0, x1) in the tile's pixels: keep only islands whose
    peak lies there. ``snr`` and ``above`` (``snr >= merge``) are computed
    when not given. Islands are handled as a sparse list of their pixels
    after the labelling: no further pass over the whole image. Fits see each
    island grown by ``fit_margin`` PSF FWHM into the pixels of no island.
    """
    from ..units import FWHM_TO_SIGMA
    from ._fit import FLAGS, fit_islands
    from ._islands import island_pixels, peaks_in_islands

    if snr is None:
        with np.errstate(invalid="ignore", divide="ignore"):
            snr = np.where(rms > 0, sub / np.where(rms > 0, rms, 1.0), np.nan).astype(
                np.float32)
    idx, lab, n = island_pixels(xp.asarray(snr) if xp is not np else snr, seed=seed,
                                merge=merge, min_pixels=min_pixels, above=above)
    peaks = peaks_in_islands(snr, idx, lab, size=peak_size, threshold=seed)
    width = snr.shape[1]
    if core is not None and n:
        # owner test on each island's brightest pixel
        bl, py, px = _brightest_pixels(idx, lab, snr)
        y0, y1, x0, x1 = core
        own = (py >= y0) & (py < y1) & (px >= x0) & (px < x1)
        keep = np.zeros(n + 1, bool)
        keep[bl[own]] = True
        new = np.zeros(n + 1, np.int32)
        new[keep] = np.arange(1, int(keep.sum()) + 1)
        sel = keep[lab]
        idx, lab = idx[sel], new[lab[sel]]
        n = int(keep.sum())
        sel = keep[peaks[2]]
        peaks = (peaks[0][sel], peaks[1][sel], new[peaks[2][sel]])
    fpix = (idx, lab)
    if fit_margin > 0 and n:
        # fitted on the island grown by ``fit_margin`` PSF FWHM: only pixels above the
        # merge threshold (noise pushed up at the island's rim, the source's wings cut)
        # biased fluxes by +0.5 to +1.3 sigma and peaks by -0.7 sigma
        from ._islands import grow_islands

        fwhm = float(np.linalg.det(psf_cov)) ** 0.25 / FWHM_TO_SIGMA
        fpix = grow_islands(idx, lab, snr.shape, fit_margin * fwhm,
                            valid=np.isfinite(snr) & (rms > 0))
    comps = fit_islands(sub, rms, None, n, peaks, psf_cov=psf_cov,
                        max_components=max_components, iterations=iterations, xp=xp,
                        pixels=fpix, chi2_scale=chi2_scale)
    if nested and n and iterations > 0:
        from ._blobs import nested_refit

        comps = nested_refit(sub, rms, snr, idx, lab, comps, psf_cov=psf_cov,
                             threshold=seed, max_components=max_components, merge=merge,
                             iterations=iterations, xp=xp, fit_pixels=fpix)
    # island key = its brightest pixel in global raster order (same tiled or not)
    if len(comps["island"]):
        _, py, px = _brightest_pixels(idx, lab, snr)
        gy, gx = py + offset[0], px + offset[1]
        gwidth = full_shape[1] if full_shape is not None else width
        key = gy.astype(np.int64) * gwidth + gx
        isl_lab = comps["island"] + 1
        comps["island"] = key[comps["island"]]
        comps["params"][:, 1] += offset[1]
        comps["params"][:, 2] += offset[0]
        if full_shape is not None:
            # edge flag only for the real image border
            ys, xs = np.divmod(idx, width)
            ny_t, nx_t = snr.shape
            at_tile_edge = (ys == 0) | (xs == 0) | (ys == ny_t - 1) | (xs == nx_t - 1)
            at_image_edge = ((ys + offset[0] == 0) | (xs + offset[1] == 0)
                             | (ys + offset[0] == full_shape[0] - 1)
                             | (xs + offset[1] == full_shape[1] - 1))
            touch = np.zeros(n + 1, bool)
            touch_img = np.zeros(n + 1, bool)
            touch[lab[at_tile_edge]] = True
            touch_img[lab[at_image_edge]] = True
            comps["flags"] &= ~FLAGS["edge"]
            comps["flags"] |= np.where(touch_img[isl_lab], FLAGS["edge"], 0)
            comps["tile_cut"] = touch[isl_lab] & ~touch_img[isl_lab]
        order = np.lexsort((comps["component"], comps["island"]))
        comps = {k: v[order] for k, v in comps.items()}
    return comps


def run_tiled(sub, rms, *, tile: int, overlap: int, client, params: dict, snr=None,
              above=None):
    """Run `compact_pass` over overlapping tiles (on ``client``, or threads) and merge."""
    import dask

    tasks = []
    for core, ext in tile_slices(sub.shape, tile, overlap):
        c = (core[0].start - ext[0].start, core[0].stop - ext[0].start,
             core[1].start - ext[1].start, core[1].stop - ext[1].start)
        extra = {}
        if snr is not None:
            extra = {"snr": snr[ext], "above": above[ext] if above is not None else None}
        tasks.append(dask.delayed(compact_pass)(
            sub[ext], rms[ext], core=c, offset=(ext[0].start, ext[1].start),
            full_shape=sub.shape, **extra, **params))
    if client is not None:
        results = client.gather(client.compute(tasks))
    else:
        results = dask.compute(*tasks, scheduler="threads")
    results = [r for r in results if len(r["island"])]
    if not results:
        from ._fit import _empty_components

        return _empty_components()
    keys = results[0].keys() & set.intersection(*(set(r) for r in results))
    out = {k: np.concatenate([r[k] for r in results]) for k in keys}
    order = np.lexsort((out["component"], out["island"]))
    return {k: v[order] for k, v in out.items()}


def _brightest_pixels(idx, lab, snr: np.ndarray):
    """Per island (label order): its label and the row, column of its brightest pixel."""
    vals = np.nan_to_num(snr.ravel()[idx], nan=-np.inf)
    order = np.lexsort((-vals, lab))
    first = order[np.r_[True, lab[order][1:] != lab[order][:-1]]]
    py, px = np.divmod(idx[first], snr.shape[1])
    return lab[first], py, px
