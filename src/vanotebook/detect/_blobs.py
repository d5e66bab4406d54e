"""Multi-scale Laplacian-of-Gaussian blobs: nested sources inside large islands.

A faint compact knot sitting on diffuse emission (or a close companion of a
brighter source) makes one island with no local maximum of its own. Once the
island's components are fitted, the knot is left in the residual, where it
stands out in the scale-normalised LoG response at the beam scale.
`nested_refit` finds those blobs and refits the island with them as extra
components (bounded, and kept only when the fit improves enough).
"""

from __future__ import annotations

import numpy as np

from ._islands import ndimage_for

__all__ = ["log_blobs", "nested_refit"]


def log_blobs(image: np.ndarray, sigmas, *, threshold: float, mask: np.ndarray | None = None,
              per_scale: bool = False):
    """Scale-space maxima of ``-sigma**2 * LoG(image)``.

    Parameters
    ----------
    image : numpy array
        Signal-to-noise map (NaN-free).
    sigmas : sequence of float
        Gaussian scales in pixels, increasing.
    threshold : float
        Minimum normalised response (in the image's units).
    mask : bool array, optional
        Only maxima where ``mask`` is True are returned.
    per_scale : bool
        Maxima in space at each scale (3 x 3 pixels) rather than in scale
        space: a compact source on the slope of a broader one is a maximum at
        its own scale even where the broad one dominates the larger scales.

    Returns
    -------
    (y, x, sigma, response) : numpy arrays
    """
    ndi = ndimage_for(image)
    sigmas = np.asarray(sigmas, dtype=float)
    cube = np.stack([-(s**2) * ndi.gaussian_laplace(image, s, mode="nearest") for s in sigmas])
    mx = ndi.maximum_filter(cube, size=(1 if per_scale else 3, 3, 3), mode="nearest")
    peak = (cube == mx) & (cube >= threshold)
    if mask is not None:
        peak &= mask[None]
    k, y, x = np.nonzero(peak)
    return y, x, sigmas[k], cube[k, y, x]


def nested_refit(sub: np.ndarray, rms: np.ndarray, snr: np.ndarray, idx, lab, comps: dict,
                 *, psf_cov, threshold: float, max_components: int, merge: float = 2.6,
                 iterations: int = 40, xp=np, min_gain: float = 25.0, fit_pixels=None):
    """Nested sources: compact LoG blobs left in an island's fit residual become components.

    Only islands larger than a single point source of their peak S/N would
    make (by more than a PSF area) are searched: a point source of peak
    ``P`` fills ``2 pi sigma^2 ln(P / merge)`` pixels above the merge
    threshold. In each, the fitted components are subtracted and the
    residual S/N searched for maxima in space of the LoG response at 0.7, 1
    and 1.4 PSF sigmas, of at least ``threshold / 2`` (a point source of peak
    ``P`` gives ``P / 2`` at the PSF scale) and farther than 1.5 PSF sigmas
    from every fitted component. The strongest become extra seeds, up to
    ``max_components`` per island; the island is refitted and the new fit
    kept when its chi-square drops by at least ``min_gain`` per added component.

    Parameters
    ----------
    sub, rms, snr : numpy arrays
        Background-subtracted image, noise and S/N maps.
    idx, lab : from `island_pixels`.
    comps : dict
        `fit_islands` output for these islands (island = label - 1).
    fit_pixels : (idx, lab), optional
        The pixels ``comps`` were fitted on (the islands grown by a margin), on
        which the refits are made too, so that their chi-squares compare.

    Returns
    -------
    dict
        ``comps`` with the refitted islands replaced, sorted by island and component.
    """
    from ._fit import fit_islands, gaussian_image

    if idx.size == 0 or len(comps["island"]) == 0:
        return comps
    ny, nx = snr.shape
    n = int(lab.max())
    counts = np.bincount(lab, minlength=n + 1)[1:]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    top = np.maximum.reduceat(snr.ravel()[idx], starts)
    psf_sigma = float(np.linalg.det(psf_cov)) ** 0.25
    psf_area = 2.0 * np.pi * psf_sigma**2
    expected = psf_area * np.log(np.maximum(top / merge, 1.0))
    ncomp = np.bincount(comps["island"], minlength=n)
    candidates = np.flatnonzero((counts > expected + psf_area) & (ncomp < max_components))
    if candidates.size == 0:
        return comps
    sigmas = psf_sigma * np.array([0.7, 1.0, 1.4])
    margin = int(np.ceil(3 * sigmas[-1]))
    min_dist2 = (1.5 * psf_sigma) ** 2
    rows_of = np.split(np.arange(len(comps["island"])),
                       np.cumsum(np.bincount(comps["island"], minlength=n))[:-1])
    new_y, new_x, new_lab, chosen = [], [], [], []
    for i in candidates:
        rows = rows_of[i]
        params = comps["params"][rows]
        ys, xs = np.divmod(idx[starts[i]:starts[i] + counts[i]], nx)
        y0, y1 = max(0, ys.min() - margin), min(ny, ys.max() + margin + 1)
        x0, x1 = max(0, xs.min() - margin), min(nx, xs.max() + margin + 1)
        local = params.copy()
        local[:, 1] -= x0
        local[:, 2] -= y0
        model = np.asarray(gaussian_image((y1 - y0, x1 - x0), local), dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            res = (sub[y0:y1, x0:x1] - model) / rms[y0:y1, x0:x1]
        res = np.nan_to_num(res, nan=0.0, posinf=0.0, neginf=0.0)
        mask = np.zeros(res.shape, bool)
        mask[ys - y0, xs - x0] = True
        by, bx, _, resp = log_blobs(res, sigmas, threshold=0.5 * threshold, mask=mask,
                                    per_scale=True)
        if by.size == 0:
            continue
        cy, cx = list(params[:, 2]), list(params[:, 1])
        room = max_components - len(rows)
        added = []
        for j in np.argsort(-resp):
            if room == 0:
                break
            yj, xj = by[j] + y0, bx[j] + x0
            if min((yj - a) ** 2 + (xj - b) ** 2 for a, b in zip(cy, cx, strict=True)) \
                    <= min_dist2:
                continue
            cy.append(yj)
            cx.append(xj)
            added.append((yj, xj))
            room -= 1
        if not added:
            continue
        chosen.append(i)
        # seeds: the fitted centres (rounded) and the new blobs
        for a, b in list(zip(params[:, 2], params[:, 1], strict=True)) + added:
            new_y.append(int(np.clip(round(a), 0, ny - 1)))
            new_x.append(int(np.clip(round(b), 0, nx - 1)))
            new_lab.append(len(chosen))
    if not chosen:
        return comps
    chosen = np.asarray(chosen)
    relabel = np.zeros(n + 1, np.int32)
    relabel[chosen + 1] = np.arange(1, chosen.size + 1, dtype=np.int32)
    f_idx, f_lab = fit_pixels if fit_pixels is not None else (idx, lab)
    sel = relabel[f_lab] > 0
    p_y, p_x, p_lab = np.asarray(new_y), np.asarray(new_x), np.asarray(new_lab, np.int32)
    order = np.lexsort((-sub[p_y, p_x], p_lab))
    refit = fit_islands(sub, rms, None, chosen.size, (p_y[order], p_x[order], p_lab[order]),
                        psf_cov=psf_cov, max_components=max_components,
                        iterations=iterations, xp=xp,
                        pixels=(f_idx[sel], relabel[f_lab[sel]]))
    refit["island"] = chosen[refit["island"]]
    # keep a refit only where the added components pay for themselves in chi-square
    def chi2(c, isl):
        first = np.searchsorted(c["island"], isl) if len(c["island"]) else isl
        k = c["n_components"][first]
        return c["chi2_red"][first] * np.maximum(c["npix"][first] - 6 * k, 1), k

    o = np.argsort(comps["island"], kind="stable")
    comps = {key: v[o] for key, v in comps.items()}
    o = np.argsort(refit["island"], kind="stable")
    refit = {key: v[o] for key, v in refit.items()}
    old_chi2, old_k = chi2(comps, chosen)
    new_chi2, new_k = chi2(refit, chosen)
    accept = chosen[(old_chi2 - new_chi2) >= min_gain * np.maximum(new_k - old_k, 1)]
    if accept.size == 0:
        return comps
    keep_old = ~np.isin(comps["island"], accept)
    take_new = np.isin(refit["island"], accept)
    out = {key: np.concatenate([comps[key][keep_old], refit[key][take_new]]) for key in comps}
    order = np.lexsort((out["component"], out["island"]))
    return {key: v[order] for key, v in out.items()}
