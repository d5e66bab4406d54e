"""The peer model: gradient-boosted trees (scikit-learn) on morphological features of cut-outs.

Features are measured on the same cut-outs the network sees (beam units,
sigmas): the central S/N; the shape of the island above 3 sigma that holds
the centre (area in beams, axis ratio, solidity, Euler number, how far its
peak and its flux centroid lie from the centre); its radial profile; the
number of other islands, and the distance and brightness of the brightest
one; the peaks inside the central island (how many, their spread) and how
bent the island is (its flux centroid off the line through its two
brightest peaks).
"""

from __future__ import annotations

import numpy as np

from ._data import BEAM_PIX, SIZE

__all__ = ["FEATURES", "features", "fit_trees"]

FEATURES = ("log_snr_centre", "log_snr_max", "log_area", "axis_ratio", "solidity", "euler",
            "peak_offset", "centroid_offset", "r1", "r2", "r4", "r6", "n_islands",
            "other_dist", "other_ratio", "n_peaks", "peak_spread", "bend", "log_flux",
            "concentration", "neg_fraction")


def _one(c: np.ndarray) -> list[float]:
    from scipy import ndimage
    from skimage.measure import regionprops

    mid = (SIZE - 1) / 2.0
    ic = SIZE // 2
    centre = float(c[ic - 1:ic + 1, ic - 1:ic + 1].max())
    mask = c > 3.0
    lab, n = ndimage.label(mask)
    sub = lab[ic - 2:ic + 2, ic - 2:ic + 2]
    near = c[ic - 2:ic + 2, ic - 2:ic + 2]
    own = int(sub[sub > 0][np.argmax(near[sub > 0])]) if (sub > 0).any() else 0
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    r = np.hypot(xx - mid, yy - mid) / BEAM_PIX
    prof = [float(c[(r >= a) & (r < a + 1)].mean()) for a in (1, 2, 4, 6)]
    feat = [np.log10(max(centre, 0.1)), np.log10(max(float(c.max()), 0.1))]
    if own:
        isl = lab == own
        rp = regionprops(isl.astype(np.uint8), intensity_image=np.clip(c, 0, None))[0]
        area = rp.area / (1.1331 * BEAM_PIX**2)
        axis = rp.axis_minor_length / max(rp.axis_major_length, 1e-6)
        w = np.where(isl, np.clip(c, 0, None), 0)
        flux = w.sum()
        cy, cx = (w * yy).sum() / flux, (w * xx).sum() / flux
        py, px = np.unravel_index(np.argmax(w), w.shape)
        # peaks inside the island
        mx = ndimage.maximum_filter(w, size=3)
        pk = np.argwhere((w == mx) & isl & (w > 5.0))
        vals = w[pk[:, 0], pk[:, 1]] if len(pk) else np.zeros(0)
        spread = float(np.hypot(*(pk - pk.mean(0)).T).max()) / BEAM_PIX if len(pk) > 1 else 0.0
        bend = 0.0
        if len(pk) >= 2:
            a, b = pk[np.argsort(vals)[-2:]]
            d = b - a
            norm = np.hypot(*d)
            if norm > 0:
                bend = abs(d[1] * (cy - a[0]) - d[0] * (cx - a[1])) / norm / BEAM_PIX
        conc = float(w[max(py - 2, 0):py + 3, max(px - 2, 0):px + 3].sum() / flux)
        feat += [np.log10(area), axis, rp.solidity, rp.euler_number,
                 np.hypot(px - mid, py - mid) / BEAM_PIX, np.hypot(cx - mid, cy - mid) / BEAM_PIX]
        own_stats = (len(pk), spread, bend, np.log10(flux), conc)
    else:
        feat += [-2.0, 1.0, 1.0, 1, 0.0, 0.0]
        own_stats = (0, 0.0, 0.0, -1.0, 0.0)
    feat += prof
    others = [k for k in range(1, n + 1) if k != own]
    feat.append(len(others))
    if others:
        peaks = ndimage.maximum(c, lab, others)
        pos = ndimage.maximum_position(c, lab, others)
        j = int(np.argmax(peaks))
        feat += [np.hypot(pos[j][1] - mid, pos[j][0] - mid) / BEAM_PIX,
                 np.log10(max(peaks[j], 0.1) / max(centre, 0.1))]
    else:
        feat += [SIZE / BEAM_PIX, -3.0]
    feat += list(own_stats)
    feat.append(float((c < -3.0).mean()))
    return feat


def features(X: np.ndarray) -> np.ndarray:
    """Morphological features (n, len(FEATURES)) of cut-outs ``X`` (n, SIZE, SIZE)."""
    if len(X) == 0:
        return np.zeros((0, len(FEATURES)))
    return np.asarray([_one(np.asarray(c, float)) for c in X], float)


def fit_trees(X: np.ndarray, y: np.ndarray, *, seed: int = 0):
    """A `sklearn.ensemble.HistGradientBoostingClassifier` on the features of ``X``."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, max_leaf_nodes=31,
                                           l2_regularization=1e-3, random_state=seed,
                                           early_stopping=False)
    model.fit(features(X), y)
    return model
