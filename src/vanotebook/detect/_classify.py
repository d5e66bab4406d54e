"""The calibrated probability that a detection is real (the catalogue's ``score``).

A random forest (scikit-learn) on each detection's fit (S/N, size, shape,
chi2, components), its neighbourhood (distance and brightness of the nearest
much brighter component) and the network's view of its cut-out
(`vanotebook.classify`: the real probability). It is trained on detections
in synthetic images with injected point sources plus artefacts (sidelobe-like
rings and stripes around bright sources) and, by detecting down to 3.5
sigma, plenty of noise peaks; a detection is real when it lies within 1.5
pixels of an injected source. Its probability is then calibrated (isotonic)
on the detections of other images. Features are dimensionless (sigmas, PSF
units), so one model serves any image. Training is reproducible from
``seed``, takes a few seconds on first use and is cached per process.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["FEATURES", "classify_sources", "features", "reliability_model"]

FEATURES = ("log_snr", "size_ratio", "axis_ratio", "chi2_red", "n_components", "island_beams",
            "log_neighbour_dist", "log_neighbour_ratio", "size_bound", "cnn_logit_real")


def features(comps: dict, *, psf_cov: np.ndarray, rms_at: np.ndarray,
             cnn_real: np.ndarray) -> np.ndarray:
    """Feature matrix (n, len(FEATURES)) from fitted components in pixel units.

    ``cnn_real`` is the network's (`vanotebook.classify`) real probability of
    each component's cut-out.
    """
    p = comps["params"]
    n = len(p)
    if n == 0:
        return np.zeros((0, len(FEATURES)))
    amp, x, y, a, b, c = (p[:, i] for i in range(6))
    det = np.clip(a * c - b * b, 1e-300, None)
    psf_det = float(np.linalg.det(psf_cov))
    size_ratio = np.sqrt(1.0 / det) / np.sqrt(psf_det)
    t = 0.5 * (a + c)
    d = np.sqrt(0.25 * (a - c) ** 2 + b * b)
    axis = np.sqrt(np.clip(t - d, 1e-300, None) / np.clip(t + d, 1e-300, None))
    snr = amp / np.where(rms_at > 0, rms_at, np.inf)
    psf_sigma = psf_det**0.25
    from scipy.spatial import cKDTree

    pos = np.c_[x, y]
    k = min(n, 9)
    dist, idx = cKDTree(pos).query(pos, k=k)
    dist, idx = np.atleast_2d(dist), np.atleast_2d(idx)
    brighter = amp[idx] > 3.0 * amp[:, None]
    brighter[:, 0] = False
    dnb = np.where(brighter, dist, np.inf).min(axis=1)
    jnb = np.where(brighter, dist, np.inf).argmin(axis=1)
    ratio = np.where(np.isfinite(dnb), amp[idx[np.arange(n), jnb]] / amp, 1.0)
    dnb = np.where(np.isfinite(dnb), dnb, 1e3 * psf_sigma)
    from ._fit import FLAGS

    return np.stack([
        np.log10(np.clip(snr, 1e-3, None)), np.log10(size_ratio), axis,
        np.log10(np.clip(comps["chi2_red"], 1e-3, None)), comps["n_components"],
        np.log10(comps["npix"] / (2 * np.pi * psf_sigma**2)),
        np.log10(dnb / psf_sigma), np.log10(ratio),
        (comps["flags"] & FLAGS["size_bound"]) > 0,
        np.log(np.clip(cnn_real, 1e-4, 1 - 1e-4) / np.clip(1 - cnn_real, 1e-4, 1 - 1e-4)),
    ], axis=1).astype(float)


def _detections(rng):
    """Features and truth of the detections in one synthetic image with artefacts."""
    from scipy.spatial import cKDTree

    from ..classify import classify_cutouts, cutouts
    from ..units import FWHM_TO_SIGMA
    from ._background import background_maps
    from ._fit import fit_islands
    from ._islands import find_islands, local_peaks
    from ._synth import injected_image

    fwhm = float(rng.uniform(2.5, 5.0))
    img, truth = injected_image((320, 320), int(rng.integers(60, 140)), fwhm=fwhm,
                                snr_range=(2.0, 400.0), artefacts=True, seed=rng,
                                background=float(rng.uniform(-5, 5)))
    s = fwhm * FWHM_TO_SIGMA
    psf_cov = np.eye(2) * s * s
    bkg, rms, _ = background_maps(img, box=48)
    sub = img - bkg
    snr = sub / rms
    labels, n = find_islands(snr, seed=3.5, merge=2.5, min_pixels=3)
    peaks = local_peaks(snr, labels, size=3, threshold=3.5)
    comps = fit_islands(sub, rms, labels, n, peaks, psf_cov=psf_cov, max_components=3,
                        max_pixels=300, iterations=25)
    if len(comps["island"]) == 0:
        return np.zeros((0, len(FEATURES))), np.zeros(0, bool)
    p = comps["params"]
    rms_at = rms[np.clip(np.round(p[:, 2]).astype(int), 0, 319),
                 np.clip(np.round(p[:, 1]).astype(int), 0, 319)]
    _, real, _ = classify_cutouts(cutouts(sub, p[:, 1], p[:, 2], fwhm_pix=fwhm, rms=rms_at),
                                  device="cpu")
    d, _ = cKDTree(np.c_[truth["x"], truth["y"]]).query(p[:, 1:3])
    return features(comps, psf_cov=psf_cov, rms_at=rms_at, cnn_real=real), d < 1.5


@functools.lru_cache(maxsize=4)
def reliability_model(seed: int = 0, n_images: int = 6):
    """Train (once per seed, cached) the reliability classifier of detections, and calibrate it.

    A random forest on the detections of ``n_images`` synthetic images (the
    network's real probability of each cut-out is one of its features), then
    an isotonic calibration of its probability on the detections of as many
    other images.

    Returns
    -------
    (sklearn RandomForestClassifier, sklearn IsotonicRegression)
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.isotonic import IsotonicRegression

    from .._random import child_generators

    X, y = zip(*(_detections(rng) for rng in child_generators(seed, n_images, key=4)),
               strict=True)
    model = RandomForestClassifier(n_estimators=100, max_depth=10, min_samples_leaf=3,
                                   random_state=seed, n_jobs=1)
    model.fit(np.concatenate(X), np.concatenate(y))
    Xc, yc = zip(*(_detections(rng) for rng in child_generators(seed, n_images, key=5)),
                 strict=True)
    raw = _real_column(model, np.concatenate(Xc))
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(raw, np.concatenate(yc).astype(float))
    return model, iso


def _real_column(model, feat):
    proba = model.predict_proba(feat)
    return proba[:, list(model.classes_).index(True)] if True in model.classes_ \
        else np.zeros(len(feat))


def classify_sources(feat: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Calibrated probability that each detection is real (0..1)."""
    if len(feat) == 0:
        return np.zeros(0)
    model, iso = reliability_model(seed)
    return iso.predict(_real_column(model, feat))
