"""The calibrated probability that a detection is real (the catalogue's ``score``).

A random forest (scikit-learn, its trees kept as arrays) on each detection's fit (S/N, size, shape,
chi2, components), its neighbourhood (distance and brightness of the nearest
much brighter component) and the network's view of its cut-out
(`vanotebook.classify`: the real probability). It is trained on detections
in synthetic images with injected point sources plus artefacts (sidelobe-like
rings and stripes around bright sources) and, by detecting down to 3.5
sigma, plenty of noise peaks; a detection is real when it lies within 1.5
pixels of an injected source. Its probability is then calibrated (isotonic)
on the detections of other images. Features are dimensionless (sigmas, PSF
units), so one model serves any image. Training is reproducible from
``seed`` (`train_reliability`); the trained model ships with the package
(`RELIABILITY_MODEL`, about 100 kB), so nothing is trained at first use.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

__all__ = ["FEATURES", "RELIABILITY_MODEL", "classify_sources", "features", "reliability_model",
           "save_reliability", "train_reliability"]

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


RELIABILITY_MODEL = Path(__file__).parent / "models" / "reliability.npz"


def train_reliability(seed: int = 0, *, n_images: int = 30, n_calibration: int = 20) -> dict:
    """Train the reliability model of detections, and calibrate it.

    A random forest (scikit-learn: 50 trees, depth 8) on the detections of
    ``n_images`` synthetic images (the network's real probability of each
    cut-out is one of its features), then an isotonic calibration of its
    probability on the detections of ``n_calibration`` other images.
    Everything comes from ``seed``; `RELIABILITY_MODEL` is
    ``train_reliability(0)``. The trees are kept as flat arrays (no pickle).

    Returns
    -------
    dict of numpy arrays (what `save_reliability` writes): per node ``feature``,
    ``threshold``, ``left``, ``right`` (-1 at leaves) and ``value`` (the fraction
    of real detections), ``roots`` of the trees, and ``cal_x``, ``cal_y``.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.isotonic import IsotonicRegression

    from .._random import child_generators

    X, y = zip(*(_detections(rng) for rng in child_generators(seed, n_images, key=4)),
               strict=True)
    forest = RandomForestClassifier(n_estimators=50, max_depth=8, min_samples_leaf=3,
                                    random_state=seed, n_jobs=1)
    forest.fit(np.concatenate(X), np.concatenate(y))
    real = list(forest.classes_).index(True)
    parts: dict[str, list] = {k: [] for k in ("feature", "threshold", "left", "right",
                                              "value")}
    roots, offset = [], 0
    for est in forest.estimators_:
        t = est.tree_
        roots.append(offset)
        leaf = t.children_left < 0
        parts["feature"].append(np.where(leaf, 0, t.feature))
        parts["threshold"].append(t.threshold)
        parts["left"].append(np.where(leaf, -1, t.children_left + offset))
        parts["right"].append(np.where(leaf, -1, t.children_right + offset))
        v = t.value[:, 0, :]
        parts["value"].append(v[:, real] / v.sum(axis=1))
        offset += t.node_count
    model = {k: np.concatenate(v) for k, v in parts.items()}
    model["roots"] = np.asarray(roots)
    Xc, yc = zip(*(_detections(rng) for rng in child_generators(seed, n_calibration, key=5)),
                 strict=True)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(_raw(model, np.concatenate(Xc)), np.concatenate(yc).astype(float))
    model["cal_x"], model["cal_y"] = iso.X_thresholds_, iso.y_thresholds_
    dtypes = {"feature": np.int16, "left": np.int32, "right": np.int32, "roots": np.int32}
    return {k: np.asarray(v, dtypes.get(k, np.float64)) for k, v in model.items()}


def save_reliability(model: dict, path=RELIABILITY_MODEL) -> Path:
    """Write a reliability model (numpy .npz, no pickle), all or nothing."""
    import io
    import os

    buf = io.BytesIO()
    np.savez_compressed(buf, features=np.array(FEATURES), **model)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    return path


@functools.lru_cache(maxsize=1)
def reliability_model() -> dict:
    """The shipped reliability model (`train_reliability`'s arrays), loaded once."""
    with np.load(RELIABILITY_MODEL, allow_pickle=False) as npz:
        if tuple(npz["features"]) != FEATURES:
            raise RuntimeError(f"{RELIABILITY_MODEL} was made for other features: "
                               f"{tuple(npz['features'])}")
        return {k: npz[k] for k in npz.files if k != "features"}


def _raw(model: dict, feat: np.ndarray) -> np.ndarray:
    """The forest's mean probability: every tree walked for all rows at once."""
    feat = np.asarray(feat, np.float64)
    rows = np.arange(len(feat))
    total = np.zeros(len(feat))
    for root in model["roots"]:
        node = np.full(len(feat), root)
        while True:
            left = model["left"][node]
            inner = left >= 0
            if not inner.any():
                break
            go_left = feat[rows, model["feature"][node]] <= model["threshold"][node]
            node = np.where(inner, np.where(go_left, left, model["right"][node]), node)
        total += model["value"][node]
    return total / len(model["roots"])


def classify_sources(feat: np.ndarray, *, model: dict | None = None) -> np.ndarray:
    """Calibrated probability that each detection is real (0..1)."""
    if len(feat) == 0:
        return np.zeros(0)
    model = reliability_model() if model is None else model
    return np.interp(_raw(model, feat), model["cal_x"], model["cal_y"])
