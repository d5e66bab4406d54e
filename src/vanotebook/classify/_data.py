"""Cut-outs in beam units, and the synthetic training and test sets.

A cut-out is the image around a position, resampled so that the beam's FWHM
is `BEAM_PIX` pixels and divided by the local noise: `SIZE` pixels are
``SIZE / BEAM_PIX`` beams whatever the survey, so one model serves any image
(as the reliability features are dimensionless). The training set goes
through the very same function, on patches rendered at the survey's own pixel
scale with its noise (white, or correlated over the beam as in interferometric
maps), so the network sees what inference gives it.
"""

from __future__ import annotations

import math

import numpy as np

from .._errors import VanotebookInputError
from .._random import SeedLike, child_generators
from ..units import FWHM_TO_SIGMA
from ._morph import CLASSES, _logu, draw, render, sidelobes

__all__ = ["BEAM_PIX", "FWHM_RANGE", "SIZE", "cutouts", "training_set"]

SIZE = 32
BEAM_PIX = 2.0
FWHM_RANGE = (1.5, 8.0)  # beam FWHM in image pixels the models are trained for


def cutouts(image: np.ndarray, x, y, *, fwhm_pix, rms=1.0) -> np.ndarray:
    """Cut-outs of ``image`` centred on pixel positions ``(x, y)``, in beam units and sigmas.

    Parameters
    ----------
    image : numpy.ndarray (ny, nx)
        Background-subtracted pixels; NaN (blank) reads as 0.
    x, y : array_like
        Pixel positions (0-based, x along columns).
    fwhm_pix : float or array_like
        The beam (PSF) FWHM in pixels, one for all or one per position; within
        `FWHM_RANGE`.
    rms : float or array_like
        The noise at each position.

    Returns
    -------
    numpy.ndarray (n, SIZE, SIZE) float32
        Pixels in units of the noise, ``BEAM_PIX`` pixels per beam FWHM.
    """
    from scipy.ndimage import map_coordinates

    x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    if x.shape != y.shape or x.ndim != 1:
        raise VanotebookInputError("x, y", "1-D positions of the same length",
                                   f"shapes {x.shape} and {y.shape}")
    fwhm = np.broadcast_to(np.asarray(fwhm_pix, float), x.shape)
    lo, hi = FWHM_RANGE
    if len(fwhm) and not (np.all(np.isfinite(fwhm)) and fwhm.min() >= lo and fwhm.max() <= hi):
        bad = fwhm[~(np.isfinite(fwhm) & (fwhm >= lo) & (fwhm <= hi))][0]
        raise VanotebookInputError("fwhm_pix", f"a beam FWHM between {lo} and {hi} pixels "
                                   "(resample the image first)", float(bad))
    rms = np.broadcast_to(np.asarray(rms, float), x.shape)
    if len(rms) and not np.all(np.isfinite(rms) & (rms > 0)):
        raise VanotebookInputError("rms", "positive finite noise at every position",
                                   float(rms[~(np.isfinite(rms) & (rms > 0))][0]))
    img = np.nan_to_num(np.asarray(image, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    off = np.arange(SIZE) - (SIZE - 1) / 2.0
    step = fwhm / BEAM_PIX
    yy = y[:, None, None] + off[None, :, None] * step[:, None, None]
    xx = x[:, None, None] + off[None, None, :] * step[:, None, None]
    yy, xx = np.broadcast_arrays(yy, xx)
    out = map_coordinates(img, [yy.ravel(), xx.ravel()], order=1, mode="constant", cval=0.0)
    return (out.reshape(len(x), SIZE, SIZE) / rms[:, None, None]).astype(np.float32)


def _noise(rng, shape, fwhm, correlated):
    from scipy.ndimage import gaussian_filter

    n = rng.normal(0.0, 1.0, shape).astype(np.float32)
    if correlated:
        n = gaussian_filter(n, fwhm * FWHM_TO_SIGMA)
        n /= n.std()
    return n


def _surroundings(rng, cls, peak):
    """What else is in a cut-out of a real source: its own sidelobes when it is bright, a
    bright neighbour with its sidelobes, faint unrelated sources (all in beams)."""
    parts = []
    if peak > 50 and rng.random() < 0.5:
        parts.append(sidelobes(rng, peak))
    if rng.random() < 0.2:
        bright = _logu(rng, 100.0, 1000.0)
        r, phi = rng.uniform(3.0, 7.0), rng.uniform(0, 2 * math.pi)
        near = np.vstack([[[0, 0, bright, 0, 0, 0]], sidelobes(rng, bright)])
        near[:, :2] += (r * math.cos(phi), r * math.sin(phi))
        parts.append(near)
    for _ in range(rng.integers(0, 3) if rng.random() < 0.3 else 0):
        r, phi = rng.uniform(2.5, 8.0), rng.uniform(0, 2 * math.pi)
        parts.append(np.array([[r * math.cos(phi), r * math.sin(phi), _logu(rng, 5.0, 100.0),
                                0, 0, 0]]))
    return parts


def _example(cls: str, rng: np.random.Generator) -> np.ndarray:
    fwhm = math.exp(rng.uniform(math.log(FWHM_RANGE[0]), math.log(6.0)))
    comps, centre = draw(cls, rng)
    half = math.ceil(0.5 * SIZE * fwhm / BEAM_PIX) + 4
    shape = (2 * half + 1, 2 * half + 1)
    correlated = rng.random() < 0.5
    img = _noise(rng, shape, fwhm, correlated)
    if centre is None:  # a noise peak: the highest pixel near the middle
        m = max(2, int(fwhm))
        win = img[half - m:half + m + 1, half - m:half + m + 1]
        iy, ix = np.unravel_index(np.argmax(win), win.shape)
        cx, cy = half - m + ix, half - m + iy
    else:
        cx = half + rng.uniform(-0.5, 0.5)
        cy = half + rng.uniform(-0.5, 0.5)
        ox, oy = cx - centre[0] * fwhm, cy - centre[1] * fwhm
        obj = render(comps, shape, ox, oy, fwhm)
        img += obj
        if cls != "artefact":
            for part in _surroundings(rng, cls, float(obj.max())):
                img += render(part, shape, ox, oy, fwhm)
    return cutouts(img, [cx], [cy], fwhm_pix=fwhm)[0]


def training_set(n_per_class: int, seed: SeedLike = 0, *, key: int = 0,
                 classes: tuple[str, ...] = CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` synthetic cut-outs of each class, and their class indices.

    Parameters
    ----------
    n_per_class : int
    seed : int
        Example ``i`` of class ``c`` depends only on ``(seed, key, c, i)``.
    key : int
        Separates independent sets from one seed (training 0, validation 1, test 2).

    Returns
    -------
    X : numpy.ndarray (n, SIZE, SIZE) float32, in sigmas
    y : numpy.ndarray (n,) int, indices into ``classes``
    """
    X, y = [], []
    for c, cls in enumerate(classes):
        for rng in child_generators(seed, n_per_class, key=1000 * key + c):
            X.append(_example(cls, rng))
            y.append(c)
    return np.stack(X), np.asarray(y)
