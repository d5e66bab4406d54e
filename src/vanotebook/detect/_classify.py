"""The calibrated probability that a detection is real (the catalogue's ``score``).

A random forest (scikit-learn, its trees kept as arrays) on each detection's fit (S/N,
size, shape, chi2, components), its neighbourhood (distance and brightness of the
nearest much brighter component; the signal on the rest of the ring through it about
that neighbour, and at its mirror point, as a sidelobe would have) and the network's
view of its cut-out (`vanotebook.classify`: the real probability). It is trained on
`detect`'s own detections (its defaults) in synthetic images with injected point
sources plus artefacts (sidelobe-like rings and stripes around bright sources); a
detection is real when it lies within 1.5 pixels of an injected source. Its
probability is then calibrated (isotonic) on the detections of other images. Features
are dimensionless (sigmas, PSF units), so one model serves any image. Training is
reproducible from ``seed`` (`train_reliability`); the trained model ships with the
package (`RELIABILITY_MODEL`, about 100 kB), so nothing is trained at first use.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

__all__ = ["FEATURES", "RELIABILITY_MODEL", "classify_sources", "features", "reliability_model",
           "save_reliability", "train_reliability"]

FEATURES = ("log_snr", "size_ratio", "axis_ratio", "chi2_red", "n_components", "island_beams",
            "log_neighbour_dist", "log_neighbour_ratio", "size_bound", "cnn_logit_real",
            "ring_ratio", "mirror_ratio")


def features(comps: dict, *, psf_cov: np.ndarray, rms_at: np.ndarray,
             cnn_real: np.ndarray, sub: np.ndarray, rms: np.ndarray) -> np.ndarray:
    """Feature matrix (n, len(FEATURES)) from fitted components in pixel units.

    ``cnn_real`` is the network's (`vanotebook.classify`) real probability of
    each component's cut-out; ``sub`` and ``rms`` are the background-subtracted
    image and its noise map, read at a few points around each detection's
    brighter neighbour (`_sidelobe_ratios`).
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
    near = np.isfinite(dnb) & (dnb < 25 * psf_sigma)
    ring, mirror = _sidelobe_ratios(sub, rms, pos, pos[idx[np.arange(n), jnb]], snr, near,
                                    psf_sigma)
    dnb = np.where(np.isfinite(dnb), dnb, 1e3 * psf_sigma)
    from ._fit import FLAGS

    return np.stack([
        np.log10(np.clip(snr, 1e-3, None)), np.log10(size_ratio), axis,
        np.log10(np.clip(comps["chi2_red"], 1e-3, None)), comps["n_components"],
        np.log10(comps["npix"] / (2 * np.pi * psf_sigma**2)),
        np.log10(dnb / psf_sigma), np.log10(ratio),
        (comps["flags"] & FLAGS["size_bound"]) > 0,
        np.log(np.clip(cnn_real, 1e-4, 1 - 1e-4) / np.clip(1 - cnn_real, 1e-4, 1 - 1e-4)),
        ring, mirror,
    ], axis=1).astype(float)


def _sidelobe_ratios(sub: np.ndarray, rms: np.ndarray, pos: np.ndarray, centre: np.ndarray,
                     snr: np.ndarray, near: np.ndarray, psf_sigma: float):
    """Where a detection would be a sidelobe of its brighter neighbour: the signal on the
    rest of its ring and at its mirror point, as fractions of its own S/N.

    A sidelobe (a ring or a stripe in a radio map made with calibration errors, or the
    dirty beam's own) belongs to the bright source's pattern: a ring goes on around the
    source at the same radius, and an interferometer's beam is point-symmetric, so the
    same signal sits on the opposite side. A real source beside a bright one has
    neither. ``ring`` is the median S/N on the circle through the detection about
    ``centre`` (leaving out 3 PSF sigmas of arc on either side of the detection);
    ``mirror`` is the mean S/N over the 3x3 pixels at the detection mirrored through
    ``centre``. Both are divided by the detection's S/N, and are 0 where ``near`` is
    False (no brighter neighbour within reach) or the points fall off the image.
    """
    n = len(pos)
    ring, mirror = np.zeros(n), np.zeros(n)
    ny, nx = sub.shape

    def s_n(py, px):
        noise = rms[py, px]
        return np.where(noise > 0, sub[py, px] / np.where(noise > 0, noise, 1), 0.0)

    for i in np.flatnonzero(near):
        cx, cy = centre[i]
        dx, dy = pos[i, 0] - cx, pos[i, 1] - cy
        r = float(np.hypot(dx, dy))
        if r <= 0:
            continue
        m = max(16, int(2 * np.pi * r / psf_sigma))
        phi = np.arctan2(dy, dx) + np.linspace(0, 2 * np.pi, m, endpoint=False)
        gap = np.abs(np.angle(np.exp(1j * (phi - phi[0]))))
        phi = phi[gap > 3 * psf_sigma / r]
        px = np.round(cx + r * np.cos(phi)).astype(int)
        py = np.round(cy + r * np.sin(phi)).astype(int)
        inside = (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
        if inside.sum() >= max(4, len(phi) // 4):
            px, py = px[inside], py[inside]
            ring[i] = np.median(s_n(py, px)) / snr[i]
        mx, my = round(float(cx - dx)), round(float(cy - dy))
        if 1 <= mx < nx - 1 and 1 <= my < ny - 1:
            box = np.s_[my - 1:my + 2, mx - 1:mx + 2]
            mirror[i] = np.mean(s_n(*box)) / snr[i]
    return ring, mirror


def _detections(rng):
    """Features and truth of the detections in one synthetic image with artefacts.

    The detections are `detect`'s own, with its defaults (no extended segmentation),
    so the model learns from what it will score.
    """
    from scipy.spatial import cKDTree

    from . import detect
    from ._synth import injected_image

    fwhm = float(rng.uniform(2.5, 5.0))
    img, truth = injected_image((320, 320), int(rng.integers(60, 140)), fwhm=fwhm,
                                snr_range=(2.0, 400.0), artefacts=True, seed=rng,
                                background=float(rng.uniform(-5, 5)))
    global _SCORING
    _SCORING = False
    try:
        res = detect(img, psf_fwhm=fwhm, extended=False, device="cpu")
    finally:
        _SCORING = True
    cat = res.catalogue
    if len(cat) == 0:
        return np.zeros((0, len(FEATURES))), np.zeros(0, bool)
    d, _ = cKDTree(np.c_[truth["x"], truth["y"]]).query(np.c_[cat["x"].value, cat["y"].value])
    return res._score_features, d < 1.5


# False while `train_reliability` collects features: `detect` then scores nothing (NaN),
# so a model being remade never depends on the one it replaces
_SCORING = True


RELIABILITY_MODEL = Path(__file__).parent / "models" / "reliability.npz"


def train_reliability(seed: int = 0, *, n_images: int = 60, n_calibration: int = 30) -> dict:
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
    if not _SCORING:
        return np.full(len(feat), np.nan)
    model = reliability_model() if model is None else model
    return np.interp(_raw(model, feat), model["cal_x"], model["cal_y"])
