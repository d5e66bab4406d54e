"""Images without a beam: the PSF comes from their stars, so resolved sources stay whole."""

from __future__ import annotations

import numpy as np
import pytest

import vanotebook
from vanotebook.detect._psf import estimate_psf


def _field(seed: int, psf_sigma: float, *, n: int = 512, stars: int = 40,
           resolved: int = 0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, :n]
    image = rng.normal(size=(n, n)).astype(np.float32)
    truth = []
    cells = [(cy, cx) for cy in range(32, n - 32, 48) for cx in range(32, n - 32, 48)]
    rng.shuffle(cells)
    for k, (cy, cx) in enumerate(cells[: stars + resolved]):
        s = psf_sigma if k < stars else rng.uniform(2.0, 5.0) * psf_sigma / 1.2
        a = rng.uniform(40, 400)
        image += (a * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))).astype(np.float32)
        truth.append((cx, cy, s, k >= stars))
    return image, truth


@pytest.mark.parametrize("sigma", [1.0, 1.8, 3.0])
def test_psf_estimate_matches_the_stars(sigma):
    image, _ = _field(1, sigma, resolved=10)
    cov = estimate_psf(image, np.ones_like(image))
    assert np.sqrt(np.diag(cov)) == pytest.approx([sigma, sigma], rel=0.05)
    result = vanotebook.detect(image, client=None)
    assert result.catalogue.meta["psf"] == "estimated from the image"
    assert result.catalogue.meta["psf_fwhm_pix"] == pytest.approx(2.3548 * sigma, rel=0.05)


def test_resolved_sources_are_one_source_each_without_a_beam():
    """Stars of sigma 1.2 px and single sources of 2-5 px sigma: nothing is split."""
    image, truth = _field(2, 1.2, stars=25, resolved=40)
    cat = vanotebook.detect(image, client=None).catalogue
    xy = np.c_[np.asarray(cat["x"]), np.asarray(cat["y"])]
    per_source = []
    for cx, cy, s, _ in truth:
        near = np.hypot(xy[:, 0] - cx, xy[:, 1] - cy) < 3 * s + 3
        per_source.append(int(near.sum()))
    assert sum(c == 1 for c in per_source) >= 0.95 * len(truth), per_source


def test_too_few_stars_say_what_is_assumed():
    image = np.random.default_rng(3).normal(size=(256, 256)).astype(np.float32)
    assert estimate_psf(image, np.ones_like(image)) is None
    assert vanotebook.detect(image, client=None).catalogue.meta["psf"] == "assumed 3 pixels"


def test_stars_are_points_without_a_beam():
    """Stars of 3 px sigma (a 7 px PSF) are points, not 'resolved' against a 3 px guess."""
    image, _ = _field(4, 3.0, stars=30, resolved=0, n=768)
    cat = vanotebook.detect(image, client=None).catalogue
    bright = cat[np.asarray(cat["peak"]) / np.asarray(cat["rms"]) > 20] if "peak" in \
        cat.colnames else cat
    classes = list(bright["cls"])
    assert classes.count("point") >= 0.9 * len(classes), classes
