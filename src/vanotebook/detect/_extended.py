"""Extended sources: segmentation of the residual map once compact sources are removed.

Steps (CAESAR-like):

1. residual = image - background - fitted compact components;
2. enhancement of diffuse emission: the S/N residual is smoothed by a
   Gaussian a few beams wide (a matched filter for broad emission) and its
   own noise is measured robustly, so thresholds are in smoothed sigmas;
3. segmentation: pixels above ``threshold`` smoothed sigmas, grown down to
   ``grow_threshold`` (within a few smoothing widths of the part above
   ``threshold``), are split into regions by a marker watershed
   (markers = local maxima a few beams apart), neighbouring regions separated
   by a shallow saddle are merged again (region merging), and regions whose
   core (above ``threshold``) is smaller than ``min_area`` beams, or whose
   flux is below ``min_flux_snr`` times its error, are dropped;
4. per region: total flux (residual summed over the region), its error,
   area, S/N and the outer contour as a polygon.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.table import QTable

from ._islands import ndimage_for

__all__ = ["segment_extended"]


def segment_extended(residual: np.ndarray, rms: np.ndarray, *, psf_sigma: float,
                     smooth: float = 2.0, threshold: float = 3.0, min_area: float = 5.0,
                     marker_distance: float = 4.0, merge_saddle: float | None = 0.5,
                     grow_threshold: float | None = 1.5, min_flux_snr: float = 5.0,
                     grow_radius: float | None = 2.5):
    """Segment diffuse emission in a residual map.

    Parameters
    ----------
    residual, rms : numpy arrays
        Residual (background and compact sources removed) and noise map.
    psf_sigma : float
        PSF/beam sigma in pixels.
    smooth : float
        Smoothing Gaussian sigma, in PSF sigmas.
    threshold : float
        Segmentation threshold in sigmas of the smoothed S/N map.
    min_area : float
        Smallest region, in PSF areas (2 pi sigma^2), counting its pixels above
        ``threshold``.
    grow_threshold : float or None
        Regions grow from the pixels above ``threshold`` down to this level
        (smoothed sigmas), so the faint outskirts count in the flux. None: no growth.
    grow_radius : float or None
        The growth reaches at most this many smoothing sigmas (``smooth *
        psf_sigma``, Chebyshev distance) beyond the pixels above ``threshold``:
        faint emission joined to a source only through its low outskirts (a
        background ripple, another source's wing) stays out of it. None: no limit.
    min_flux_snr : float
        Regions whose flux is below this many times its error are dropped
        (ripples of the noise or of the background, a few times the error at
        most; real diffuse sources on the demo sky have ten or more).
    marker_distance : float
        Watershed markers at least this many PSF sigmas apart.
    merge_saddle : float or None
        Region merging: neighbouring watershed regions are joined when the
        saddle between them (the highest level at which they touch) reaches
        this fraction of the lower of their two peaks, so a ring or a
        filament with several maxima stays one source. None: no merging.

    Returns
    -------
    segments : int array (0 = none), regions : list of dict
        One dict per region: ``npix, flux (pixel sum), flux_err, x, y, peak_snr, contour (xs, ys)``.
    """
    ndi = ndimage_for(residual)
    seg = segment_map(residual, rms, psf_sigma=psf_sigma, smooth=smooth, threshold=threshold,
                      min_area=min_area, marker_distance=marker_distance,
                      merge_saddle=merge_saddle, grow_threshold=grow_threshold,
                      grow_radius=grow_radius)
    if seg is None:
        return np.zeros(residual.shape, np.int32), []
    seg, z = seg
    psf_area = 2 * math.pi * psf_sigma**2
    from ._fused import box_slices, fused_for, label_boxes

    regions = []
    res0 = residual
    n_seg = int(seg.max())
    if isinstance(seg, np.ndarray) and fused_for(seg.shape):
        boxes = label_boxes(seg, n_seg)
        objects = [box_slices(boxes, k) for k in range(1, n_seg + 1)]
    else:
        objects = ndi.find_objects(seg)
    for i, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        m = seg[sl] == i
        vals = np.nan_to_num(res0[sl][m])
        yy, xx = np.nonzero(m)
        w = np.clip(vals, 0, None)
        wsum = w.sum() if w.sum() > 0 else 1.0
        cx = float((xx * w).sum() / wsum + sl[1].start)
        cy = float((yy * w).sum() / wsum + sl[0].start)
        # noise of a sum over correlated pixels: rms * sqrt(npix * psf area)
        flux_err = float(np.sqrt(np.sum(rms[sl][m] ** 2) * psf_area))
        if not vals.sum() >= min_flux_snr * flux_err:  # a noise or background ripple
            seg[sl][m] = 0
            continue
        from skimage.measure import find_contours

        cont = find_contours(np.pad(m, 1).astype(float), 0.5)
        c = max(cont, key=len)
        regions.append({
            "npix": int(m.sum()), "flux": float(vals.sum()), "flux_err": flux_err,
            "x": cx, "y": cy, "peak_snr": float(z[sl][m].max()),
            "contour": (c[:, 1] - 1 + sl[1].start, c[:, 0] - 1 + sl[0].start),
        })
        seg[sl][m] = len(regions)  # labels 1..k in region order (k <= i: no clash ahead)
    return seg, regions


def segment_map(residual: np.ndarray, rms: np.ndarray, *, psf_sigma: float,
                smooth: float = 2.0, threshold: float = 3.0, min_area: float = 5.0,
                marker_distance: float = 4.0, merge_saddle: float | None = 0.5,
                grow_threshold: float | None = 1.5, grow_radius: float | None = 2.5):
    """Label map of the regions kept by the size test, and the smoothed S/N map ``z``.

    The steps of `segment_extended` up to the per-region measurements; None when
    nothing passes ``threshold``. The work is kept to where the emission is:

    * the S/N map is float32 and smoothed into a float32 buffer;
    * watershed markers (local maxima ``marker_distance`` PSF sigmas apart) are
      tested only at the pixels above ``threshold`` (numba; else a maximum filter);
    * the grown mask is labelled into connected parts; a part with one marker
      pixel is one region as it is (the watershed of a single marker floods
      its whole part), and only parts with several markers are cut by the
      watershed and merged again, each in its own bounding box.
    """
    from ._fused import (
        box_slices,
        fused_for,
        gaussian_smooth,
        keep_near,
        label_boxes,
        local_peaks,
        snr_ratio,
        zscore_masks,
    )

    ndi = ndimage_for(residual)
    # compiled kernels: numpy only, images of `FUSED_PIXELS` or more
    fused = isinstance(residual, np.ndarray) and fused_for(residual.shape)
    sigma = smooth * psf_sigma
    if fused:
        z = gaussian_smooth(snr_ratio(residual, rms), sigma)
    else:
        finite = np.isfinite(residual) & (rms > 0)
        snr = np.where(finite, residual / np.where(rms > 0, rms, 1), 0).astype(np.float32)
        z = np.empty(snr.shape, np.float32)
        ndi.gaussian_filter(snr, sigma, output=z, mode="nearest")
        del snr
    valid = np.isfinite(residual) & (rms > 0)
    if not valid.all():
        _edge_normalise(z, valid, sigma, ndi, fused)
    # the smoothed map's own noise, from the measured pixels only: blank (NaN) areas
    # are zeros in ``z`` and would make the median absolute deviation far too small
    step = 2 if z.size > 1_000_000 else 1  # smooth map: a quarter is plenty
    sample = z[::step, ::step][valid[::step, ::step]]
    if not sample.size:
        return None
    med = float(np.median(sample))
    noise = 1.4826 * float(np.median(np.abs(sample - np.float32(med))))
    del sample
    if not valid.all():
        z[~valid] = np.float32(med)  # blank pixels: no seed, no growth
    if not np.isfinite(noise) or noise <= 0:
        return None
    grow = threshold if grow_threshold is None or grow_threshold >= threshold else grow_threshold
    if fused:
        seeds, grown = zscore_masks(z, med, noise, threshold, grow)
    else:
        z -= np.float32(med)
        z /= np.float32(noise)
        seeds, grown = z >= threshold, z >= grow
    sy, sx = np.nonzero(seeds)
    if not sy.size:
        return None
    size = max(3, int(2 * marker_distance * psf_sigma) | 1)
    if fused:
        is_peak = local_peaks(z, sy, sx, size)
    else:
        is_peak = (z == ndi.maximum_filter(z, size=size, mode="nearest"))[sy, sx]
    py, px = sy[is_peak], sx[is_peak]
    if grow_radius is not None and grow < threshold:
        # growth reaches at most ``grow_radius`` smoothing sigmas from the pixels above
        # ``threshold``: faint emission beyond (another source's wing, a background
        # ripple) joined only through the low outskirts stays out
        reach = max(1, round(grow_radius * sigma))
        if fused:
            keep_near(grown, seeds, reach)
        else:
            near = ndi.maximum_filter1d(seeds.view(np.uint8), 2 * reach + 1, axis=0)
            near = ndi.maximum_filter1d(near, 2 * reach + 1, axis=1)
            grown &= near.view(bool)
            del near
    del seeds
    # connected parts of the grown mask that hold a seed (connectivity 1, as the watershed)
    parts, n_parts = ndi.label(grown)
    del grown
    seed_part = parts[sy, sx]
    core = np.bincount(seed_part, minlength=n_parts + 1)  # pixels above ``threshold``
    core[0] = 0
    n_peaks = np.bincount(parts[py, px], minlength=n_parts + 1)
    psf_area = 2 * math.pi * psf_sigma**2
    min_core = min_area * psf_area
    # a part without a marker stays unlabelled (as in the watershed); a part with one
    # marker pixel is one region, kept if its core is large enough. The size test is on
    # each region's core (above ``threshold``), not its grown outskirts.
    single = (n_peaks == 1) & (core >= min_core)
    multi = np.flatnonzero((n_peaks > 1) & (core >= min_core))
    lut = np.zeros(n_parts + 1, np.int32)
    labels = int(single.sum())
    lut[single] = np.arange(1, labels + 1, dtype=np.int32)
    crops = []
    if multi.size:  # several markers: watershed and region merging in the part's box
        from skimage.segmentation import watershed

        if fused:
            boxes = label_boxes(parts, n_parts)
            objects = {int(p): box_slices(boxes, int(p)) for p in multi}
        else:
            objects = dict(enumerate(ndi.find_objects(parts), start=1))
        peak_of = _members(parts[py, px], multi)
        seed_of = _members(seed_part, multi)
        for p, pks, sds in zip(multi, peak_of, seed_of, strict=True):
            sl = objects[int(p)]
            y0, x0 = sl[0].start, sl[1].start
            part = parts[sl] == p
            pk = np.zeros(part.shape, bool)
            pk[py[pks] - y0, px[pks] - x0] = True
            markers, _ = ndi.label(pk)
            local = watershed(-z[sl], markers, mask=part)
            if merge_saddle is not None and local.max() > 1:
                local = merge_regions(local, z[sl], saddle=merge_saddle, peaks=pk)
            lcore = np.bincount(local[sy[sds] - y0, sx[sds] - x0],
                                minlength=int(local.max()) + 1)
            lkeep = lcore >= min_core
            lkeep[0] = False
            if not lkeep.any():
                continue
            relab = np.zeros(lcore.size, np.int32)
            relab[lkeep] = np.arange(labels + 1, labels + 1 + int(lkeep.sum()), dtype=np.int32)
            labels += int(lkeep.sum())
            crops.append((sl, part, relab[local]))
    if labels == 0:
        return None
    seg = lut[parts]
    del parts
    for sl, part, local in crops:
        seg[sl][part] = local[part]
    return seg, z


def _edge_normalise(z, valid, sigma, ndi, fused) -> None:
    """Divide ``z`` in place by its relative noise near blank areas.

    The smoothing takes blank pixels as 0, so near a NaN border (a rotated tile,
    a mosaic's edge) a smoothed pixel averages fewer noisy pixels and its noise is
    lower. For white noise its variance is the interior one times
    ``sum K^2 valid / sum K^2``: the valid mask smoothed by ``K^2``, a Gaussian of
    ``sigma / sqrt 2``. Dividing by the square root makes the edge pixels' noise
    the interior one, so one noise level (measured on the valid pixels) holds
    everywhere.
    """
    from ._fused import gaussian_smooth

    frac = valid.astype(np.float32)
    s2 = sigma / math.sqrt(2.0)
    frac = (gaussian_smooth(frac, s2) if fused
            else ndi.gaussian_filter(frac, s2, mode="nearest"))
    np.sqrt(np.maximum(frac, np.float32(1e-6)), out=frac)
    z /= frac


def _members(owner: np.ndarray, wanted: np.ndarray) -> list:
    """For each value in ``wanted``, the indices ``k`` with ``owner[k]`` equal to it."""
    order = np.argsort(owner, kind="stable")
    lo = np.searchsorted(owner[order], wanted, side="left")
    hi = np.searchsorted(owner[order], wanted, side="right")
    return [order[i:j] for i, j in zip(lo, hi, strict=True)]


def merge_regions(seg: np.ndarray, z: np.ndarray, *, saddle: float = 0.5,
                  peaks: np.ndarray | None = None) -> np.ndarray:
    """Join touching regions of ``seg`` whose saddle in ``z`` is >= ``saddle`` x the lower peak.

    The saddle of two regions is the highest ``min(z[p], z[q])`` over pairs of
    8-connected neighbouring pixels ``p``, ``q`` on either side of their border.
    Regions are merged in order of decreasing saddle (union-find), comparing
    with the peaks of the merged groups. Labels stay 1..k (raster order of the
    first label of each group). ``peaks``: the watershed's marker mask, where
    each region has its highest pixel (saves a pass over the regions).
    """
    n = int(seg.max())
    peak = np.full(n + 1, -np.inf)
    if peaks is None:
        inside = seg > 0
        np.maximum.at(peak, seg[inside], z[inside])
    else:  # each watershed region's highest pixel is its marker
        ys, xs = np.nonzero(peaks)
        np.maximum.at(peak, seg[ys, xs], z[ys, xs])
    pairs, levels = [], []
    ny, nx = seg.shape
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = seg[0:ny - dy, max(0, -dx):nx - max(0, dx)]
        b = seg[dy:ny, max(0, dx):nx - max(0, -dx) if dx < 0 else nx]
        za = z[0:ny - dy, max(0, -dx):nx - max(0, dx)]
        zb = z[dy:ny, max(0, dx):nx - max(0, -dx) if dx < 0 else nx]
        touch = (a != b) & (a > 0) & (b > 0)
        if touch.any():
            la, lb = a[touch], b[touch]
            pairs.append(np.c_[np.minimum(la, lb), np.maximum(la, lb)])
            levels.append(np.minimum(za[touch], zb[touch]))
    if not pairs:
        return seg
    pairs = np.concatenate(pairs)
    levels = np.concatenate(levels)
    key = pairs[:, 0].astype(np.int64) * (n + 1) + pairs[:, 1]
    order = np.lexsort((-levels, key))
    first = order[np.r_[True, key[order][1:] != key[order][:-1]]]  # highest level per pair
    pairs, levels = pairs[first], levels[first]
    parent = np.arange(n + 1)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for j in np.argsort(-levels):
        ra, rb = root(pairs[j, 0]), root(pairs[j, 1])
        if ra != rb and levels[j] >= saddle * min(peak[ra], peak[rb]):
            lo, hi = min(ra, rb), max(ra, rb)
            parent[hi] = lo
            peak[lo] = max(peak[lo], peak[hi])
    roots = np.array([root(i) for i in range(n + 1)])
    _, new = np.unique(roots, return_inverse=True)  # root 0 (background) -> 0
    return new[seg].astype(np.int32)


def extended_table(regions, *, wcs, factor, funit, pixel_area_arcsec2=None, catalogue=None):
    """QTable of extended regions (see `segment_extended`).

    ``factor`` (pixel sum -> flux) and ``pixel_area_arcsec2`` are scalars or one value
    per region (the pixel solid angle where the region is, on a non-conformal map).

    ``flux`` is the residual emission of the region; the compact components
    of ``catalogue`` lying in it (its ``extended_id`` column: bright knots of a
    filament or ring are fitted as compact components, and their flux leaves
    the residual with them; components of class "extended" are not removed
    from the residual and are not counted again) give ``n_compact`` and
    ``flux_compact``, and
    ``flux_total`` = ``flux + flux_compact``. An unrelated point source seen
    through the region counts in ``flux_compact`` too.
    """
    import astropy.units as u

    from ._catalogue import empty_extended

    t = empty_extended(None if funit is u.dimensionless_unscaled else funit, wcs is not None)
    if not regions:
        return t
    n = len(regions)
    x = np.array([r["x"] for r in regions])
    y = np.array([r["y"] for r in regions])
    if wcs is not None:
        c = wcs.celestial.pixel_to_world(x, y)
        c = c.icrs if hasattr(c, "icrs") else c
        ra, dec = c.ra.deg, c.dec.deg
    else:
        ra = dec = np.full(n, np.nan)
    npix = np.array([r["npix"] for r in regions])
    area = npix * (np.asarray(pixel_area_arcsec2) * u.arcsec**2
                   if pixel_area_arcsec2 is not None else u.pix**2)
    out = QTable()
    out["id"] = np.arange(n, dtype=np.int64)
    out["x"] = x * u.pix
    out["y"] = y * u.pix
    out["ra"] = ra * u.deg
    out["dec"] = dec * u.deg
    out["flux"] = np.array([r["flux"] for r in regions]) * factor * funit
    out["flux_err"] = np.array([r["flux_err"] for r in regions]) * factor * funit
    out["area"] = area
    out["npix"] = npix.astype(np.int64)
    out["snr"] = np.array([r["peak_snr"] for r in regions])
    n_comp = np.zeros(n, np.int64)
    f_comp = np.zeros(n)
    v_comp = np.zeros(n)
    if catalogue is not None and len(catalogue) and "extended_id" in catalogue.colnames:
        eid = np.asarray(catalogue["extended_id"])
        # components of class "extended" stay in the residual: already in ``flux``
        inside = (eid >= 0) & (np.asarray(catalogue["cls"]) != "extended")
        n_comp = np.bincount(eid[inside], minlength=n)[:n].astype(np.int64)
        f_comp = np.bincount(eid[inside], catalogue["flux"].value[inside], minlength=n)[:n]
        v_comp = np.bincount(eid[inside], catalogue["flux_err"].value[inside] ** 2,
                             minlength=n)[:n]
    out["n_compact"] = n_comp
    out["flux_compact"] = f_comp * out["flux"].unit
    out["flux_total"] = out["flux"] + out["flux_compact"]
    out["flux_total_err"] = np.sqrt(out["flux_err"].value ** 2 + v_comp) * out["flux"].unit
    cx = np.empty(n, dtype=object)
    cy = np.empty(n, dtype=object)
    for i, r in enumerate(regions):
        cx[i], cy[i] = r["contour"]
    out["contour_x"] = cx
    out["contour_y"] = cy
    return out
