"""The PSF of an image without a beam, from its compact, isolated, bright sources.

Bright peaks (S/N above ``threshold``) with no other significant peak near
them are each fitted with an elliptical Gaussian (plus a constant) in a
window of four times their own sigma. Resolved sources are
larger than the PSF, so the estimate is the median covariance of the
smaller half of them (the PSF-sized ones in any field with stars or
unresolved sources); with fewer than ``min_sources`` such peaks there is
no estimate and the caller says what it assumes instead.
"""

from __future__ import annotations

import numpy as np

__all__ = ["estimate_psf"]


def _fit(stamp: np.ndarray) -> np.ndarray | None:
    """The (x, y) covariance of a 2-D Gaussian (plus a constant) fitted to ``stamp``."""
    from scipy.optimize import least_squares

    ny, nx = stamp.shape
    y, x = np.mgrid[:ny, :nx]
    peak = float(stamp[ny // 2, nx // 2])
    if peak <= 0:
        return None
    s0 = max(0.5, float(np.sqrt(max((stamp > peak / 2).sum(), 1) / (2 * np.pi * np.log(2)))))

    def resid(p):
        a, cx, cy, l11, l21, l22, c = p
        L = np.array([[l11, 0.0], [l21, l22]])
        prec = L @ L.T  # the inverse covariance, positive by construction
        dx, dy = x - cx, y - cy
        q = prec[0, 0] * dx * dx + 2 * prec[0, 1] * dx * dy + prec[1, 1] * dy * dy
        return (a * np.exp(-0.5 * q) + c - stamp).ravel()

    start = [peak, nx // 2, ny // 2, 1 / s0, 0.0, 1 / s0, 0.0]
    try:
        fit = least_squares(resid, start, method="lm", max_nfev=400)
    except (ValueError, np.linalg.LinAlgError):
        return None
    a, cx, cy, l11, l21, l22, _c = fit.x
    if not fit.success or a <= 0 or abs(cx - nx // 2) > 2 or abs(cy - ny // 2) > 2:
        return None
    L = np.array([[l11, 0.0], [l21, l22]])
    prec = L @ L.T
    if np.linalg.det(prec) <= 0:
        return None
    return np.linalg.inv(prec)


def estimate_psf(sub: np.ndarray, rms: np.ndarray, *, threshold: float = 20.0,
                 min_sources: int = 5, max_sources: int = 300) -> np.ndarray | None:
    """The PSF's (x, y) pixel covariance, or None when too few sources show it.

    Parameters
    ----------
    sub : array
        The background-subtracted image.
    rms : array
        Its noise map.
    threshold : float
        S/N of the peaks measured.
    min_sources : int
        Fewest isolated bright peaks for an estimate.
    max_sources : int
        The brightest this many are measured.
    """
    from scipy.ndimage import maximum_filter

    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(np.isfinite(sub) & (rms > 0), sub / rms, -np.inf)
    half = 7
    peaks = (z == maximum_filter(z, size=2 * half + 1, mode="nearest")) & (z > threshold)
    # isolated: no other 5-sigma peak within 3 * half pixels
    faint = (z == maximum_filter(z, size=5, mode="nearest")) & (z > 5.0)
    ys, xs = np.nonzero(peaks)
    if ys.size < min_sources:
        return None
    order = np.argsort(z[ys, xs])[::-1][:max_sources]
    fy, fx = np.nonzero(faint)
    covs, sizes = [], []
    ny, nx = sub.shape
    for y, x in zip(ys[order], xs[order], strict=True):
        near = (np.abs(fy - y) <= 3 * half) & (np.abs(fx - x) <= 3 * half)
        if near.sum() > 1:
            continue
        # the window: 4 sigma of the source, from its area above half its peak
        peak = sub[y, x]
        box = sub[max(0, y - 3 * half):y + 3 * half + 1, max(0, x - 3 * half):x + 3 * half + 1]
        s0 = np.sqrt(max(np.count_nonzero(box > peak / 2), 1) / (2 * np.pi * np.log(2)))
        r = max(5, int(np.ceil(4 * s0)))
        if y - r < 0 or x - r < 0 or y + r >= ny or x + r >= nx:
            continue
        stamp = sub[y - r:y + r + 1, x - r:x + r + 1]
        cov = _fit(stamp) if np.isfinite(stamp).all() else None
        if cov is not None:
            covs.append(cov)
            sizes.append(np.linalg.det(cov))
    if len(covs) < min_sources:
        return None
    keep = np.argsort(sizes)[: max(min_sources, len(sizes) // 2)]
    return np.median(np.asarray(covs)[keep], axis=0)
