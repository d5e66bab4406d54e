"""Synthetic morphologies of radio and infrared sources, as sums of elliptical Gaussians.

Every class is drawn as a list of intrinsic Gaussian components in units of
the beam FWHM (offset, amplitude, two FWHMs and a position angle), so it can be
rendered at any pixel scale and beam: the convolution of a Gaussian with the
(Gaussian) beam is the Gaussian whose covariance is the sum of the two. The
demo sky draws its radio galaxies with `radio_galaxy`; the classifier's
training set draws every class with `draw`, rendered by `render` on a patch
with the survey's noise (white or correlated over the beam).

Classes (`CLASSES`):

point
    unresolved: the beam alone.
compact
    resolved but small: intrinsic FWHM 0.8-2 beams.
extended
    diffuse, irregular emission 3-8 beams across, low surface brightness.
fr2
    double-lobed and edge-brightened: two lobes with hotspots at their outer
    ends, 3-7 beams apart, a faint core or none.
fr1
    core-brightened: a bright core and two straight jets fading outwards.
bent
    head-tail (a bright head and one curved tail) or a wide/narrow-angle tail
    (a core and two tails bent to one side).
artefact
    not a source: a piece of a sidelobe ring or a stripe around a bright
    source, or a noise peak.
"""

from __future__ import annotations

import math

import numpy as np

from ..units import FWHM_TO_SIGMA

__all__ = ["CLASSES", "draw", "radio_galaxy", "render", "sidelobes"]

CLASSES = ("point", "compact", "extended", "fr2", "fr1", "bent", "artefact")

# component columns: dx, dy (beams), peak (of the intrinsic Gaussian convolved with the
# beam is computed at render time: this is the integrated flux in beam areas), major,
# minor (FWHM, beams), pa (radians, from +x towards +y)
_NCOL = 6


def _comp(dx, dy, flux, major, minor, pa) -> np.ndarray:
    return np.array([dx, dy, flux, major, minor, pa], float)


def _logu(rng, lo, hi):
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _peak_to_flux(peak: float, major: float, minor: float) -> float:
    """Flux (beam areas) of a component whose convolved peak is ``peak``."""
    return peak * math.sqrt((1 + major**2) * (1 + minor**2))


def _chain(rng, start, direction, length, n, amp0, amp1, width0, width1, bend=0.0):
    """Knots along a (possibly curving) path: a jet or a tail."""
    comps = []
    x, y = start
    phi = direction
    step = length / n
    for i in range(n):
        x += step * math.cos(phi)
        y += step * math.sin(phi)
        phi += bend / n
        f = i / max(n - 1, 1)
        amp = amp0 * (amp1 / amp0) ** f
        w = width0 + (width1 - width0) * f
        maj = max(step * 1.6, w)
        comps.append(_comp(x, y, _peak_to_flux(amp, maj, w), maj, w, phi))
    return comps


def radio_galaxy(kind: str, rng: np.random.Generator, peak: float, *,
                 size: float | None = None) -> np.ndarray:
    """Components of a radio galaxy of class ``kind`` ("fr2", "fr1" or "bent").

    Parameters
    ----------
    kind : {"fr2", "fr1", "bent"}
    rng : numpy.random.Generator
    peak : float
        Peak of its brightest component after convolution with the beam.
    size : float, optional
        Largest extent in beams; drawn when not given.

    Returns
    -------
    numpy.ndarray (k, 6)
        dx, dy (beams, about the core or the lobes' midpoint), flux (beam
        areas), major, minor (FWHM, beams), pa (radians).
    """
    pa = rng.uniform(0, 2 * math.pi)
    c, s = math.cos(pa), math.sin(pa)
    comps: list[np.ndarray] = []
    if kind == "fr2":
        size = size or rng.uniform(3.0, 7.0)
        for side in (1.0, -1.0):
            ratio = 1.0 if side > 0 else _logu(rng, 0.5, 1.0)
            hx = 0.5 * size * side
            hot = rng.uniform(0.3, 0.7)
            comps.append(_comp(hx, 0, _peak_to_flux(peak * ratio, hot, hot), hot, hot, 0))
            lobe_len, lobe_w = rng.uniform(1.0, 2.0), rng.uniform(0.7, 1.3)
            comps.append(_comp(hx - side * 0.55 * lobe_len, 0,
                               _peak_to_flux(0.45 * peak * ratio, lobe_len, lobe_w),
                               lobe_len, lobe_w, 0))
        core = rng.uniform(0.0, 0.15) * peak
        if core > 0:
            comps.append(_comp(0, 0, core, 0, 0, 0))
    elif kind == "fr1":
        size = size or rng.uniform(3.0, 7.0)
        comps.append(_comp(0, 0, peak, 0, 0, 0))
        for side, ratio in ((0.0, 1.0), (math.pi, _logu(rng, 0.5, 1.0))):
            comps += _chain(rng, (0.0, 0.0), side, 0.5 * size, 5, 0.55 * peak * ratio,
                            0.12 * peak * ratio, 0.3, 1.2)
    elif kind == "bent":
        size = size or rng.uniform(3.0, 7.0)
        comps.append(_comp(0, 0, peak, 0, 0, 0))
        sign = rng.choice([-1.0, 1.0])
        if rng.random() < 0.5:  # head-tail: one tail curving away
            comps += _chain(rng, (0.0, 0.0), 0.0, size, 7, 0.5 * peak, 0.1 * peak, 0.4, 1.3,
                            bend=sign * rng.uniform(0.6, 1.6))
        else:  # wide- or narrow-angle tail: two tails bent to the same side
            half = rng.uniform(0.25, 1.0)  # half the angle between the tails
            for d in (half, -half):
                comps += _chain(rng, (0.0, 0.0), d, 0.6 * size, 5, 0.5 * peak, 0.12 * peak,
                                0.35, 1.2, bend=-d * rng.uniform(0.3, 0.9))
    else:
        raise ValueError(kind)
    out = np.array(comps)
    x, y = out[:, 0].copy(), out[:, 1].copy()
    out[:, 0], out[:, 1] = c * x - s * y, s * x + c * y
    out[:, 5] += pa
    return out


def sidelobes(rng: np.random.Generator, peak: float) -> np.ndarray:
    """Sidelobes about a source of peak ``peak`` at the origin: a ring, a stripe or both.

    The ring (radius 2-6 beams, 2-10% of the peak, modulated in azimuth) and
    the stripe (a line of knots through the source, all positive or
    alternating in sign, as calibration errors make them) are what an
    imperfect deconvolution leaves around a bright source.
    """
    comps = []
    level = peak * rng.uniform(0.02, 0.1)
    kind = rng.choice(["ring", "stripe", "both"], p=[0.45, 0.3, 0.25])
    if kind in ("ring", "both"):
        radius = rng.uniform(2.0, 6.0)
        m = int(rng.integers(2, 6))
        ph0 = rng.uniform(0, 2 * math.pi)
        n = max(24, int(2 * math.pi * radius / 0.35))
        phis = np.linspace(0, 2 * math.pi, n, endpoint=False)
        mod = 0.6 + 0.4 * np.cos(m * phis + ph0)
        dl = 2 * math.pi * radius / n
        # a ring of width ~0.8 beam: overlapping knots whose sum peaks near ``level``
        for ph, md in zip(phis, mod, strict=True):
            comps.append(_comp(radius * math.cos(ph), radius * math.sin(ph),
                               level * md * dl / 1.06, 0.3, 0.3, 0))
    if kind in ("stripe", "both"):
        theta = rng.uniform(0, math.pi)
        period = rng.uniform(1.2, 5.0)
        alternate = rng.random() < 0.5
        amp = level * (0.5 if kind == "both" else 1.0)
        for side in (1.0, -1.0):
            for k in range(1, int(8 / period) + 2):
                r = side * (0.8 + k * period / (2 if alternate else 1))
                sign = (-1.0) ** k if alternate else 1.0
                comps.append(_comp(r * math.cos(theta), r * math.sin(theta),
                                   sign * amp * 0.92 ** (k - 1), 0.45 * period, 0.2, theta))
    return np.array(comps).reshape(-1, _NCOL)


def _artefact(rng):
    """A piece of the sidelobes of a bright source, or nothing (a noise peak).

    Returns (components, where the cut-out is centred in beams, or None).
    """
    if rng.random() < 0.3:
        return np.zeros((0, _NCOL)), None
    level = _logu(rng, 5.0, 30.0)  # the artefact's height, in sigmas
    bright = level / rng.uniform(0.03, 0.1)
    lobes = sidelobes(rng, bright)
    lobes = lobes[lobes[:, 2] > 0] if rng.random() < 0.3 else lobes
    comps = np.vstack([_comp(0, 0, bright, 0, 0, 0), lobes])
    # centred where a detection would be: on a knot of the pattern that stands 3 sigma
    # or more above the noise (the brighter ones, or any)
    pos = lobes[lobes[:, 2] > 0]
    above = pos[pos[:, 2] * level / max(pos[:, 2].max(), 1e-30) >= 3.0]
    pool = above if len(above) and rng.random() < 0.6 else pos
    if rng.random() < 0.4:
        pool = pool[np.argsort(pool[:, 2])[-max(1, len(pool) // 4):]]
    pick = pool[rng.integers(len(pool))]
    return comps, (float(pick[0]), float(pick[1]))


def draw(cls: str, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Components of one example of class ``cls`` and where its cut-out is centred.

    Returns
    -------
    components : numpy.ndarray (k, 6)
    centre : (dx, dy) in beams, or None for "the brightest noise peak" (an
        artefact that is a noise peak). Radio galaxies are centred where a
        detection puts a component: the core, a lobe or a knot.
    """
    if cls == "point":
        return np.array([_comp(0, 0, _logu(rng, 3.5, 500.0), 0, 0, 0)]), (0.0, 0.0)
    if cls == "compact":
        maj = rng.uniform(0.8, 2.0)
        mn = maj * rng.uniform(0.5, 1.0)
        peak = _logu(rng, 15.0, 500.0)
        return (np.array([_comp(0, 0, _peak_to_flux(peak, maj, mn), maj, mn,
                                rng.uniform(0, math.pi))]), (0.0, 0.0))
    if cls == "extended":
        n = int(rng.integers(3, 7))
        peak = _logu(rng, 4.0, 30.0)
        comps = []
        for _ in range(n):
            maj = rng.uniform(2.0, 4.5)
            mn = maj * rng.uniform(0.5, 1.0)
            comps.append(_comp(*rng.normal(0, 1.0, 2), _peak_to_flux(peak / 2.5, maj, mn),
                               maj, mn, rng.uniform(0, math.pi)))
        return np.array(comps), (0.0, 0.0)
    if cls in ("fr2", "fr1", "bent"):
        comps = radio_galaxy(cls, rng, _logu(rng, 10.0, 500.0))
        if cls == "fr2":  # a lobe's hotspot, or the midpoint
            pick = rng.choice([0, 2, -1]) if len(comps) > 4 else rng.choice([0, 2])
            centre = (0.0, 0.0) if pick == -1 else tuple(comps[pick, :2])
        else:  # the core mostly, sometimes a knot
            j = 0 if rng.random() < 0.7 else int(rng.integers(1, min(4, len(comps))))
            centre = tuple(comps[j, :2])
        return comps, centre
    if cls == "artefact":
        return _artefact(rng)
    raise ValueError(cls)


def render(comps: np.ndarray, shape: tuple[int, int], x0: float, y0: float,
           beam_fwhm_pix: float) -> np.ndarray:
    """Image of ``comps`` (offsets about pixel ``(x0, y0)``) convolved with a round beam.

    Parameters
    ----------
    comps : numpy.ndarray (k, 6)
        As `radio_galaxy` gives them, in beam units.
    shape : (ny, nx)
    x0, y0 : float
        Pixel position of the components' origin.
    beam_fwhm_pix : float
        The beam's FWHM in pixels.

    Returns
    -------
    numpy.ndarray (ny, nx) float32, in units of the components' peaks.
    """
    ny, nx = shape
    out = np.zeros(shape, np.float32)
    if len(comps) == 0:
        return out
    b = beam_fwhm_pix
    s2b = (b * FWHM_TO_SIGMA) ** 2
    for dx, dy, flux, maj, mn, pa in comps:
        sa = (maj * b * FWHM_TO_SIGMA) ** 2 + s2b
        sb = (mn * b * FWHM_TO_SIGMA) ** 2 + s2b
        c, s = math.cos(pa), math.sin(pa)
        cxx, cyy, cxy = c * c * sa + s * s * sb, s * s * sa + c * c * sb, c * s * (sa - sb)
        det = cxx * cyy - cxy * cxy
        peak = flux * s2b / math.sqrt(det)
        xc, yc = x0 + dx * b, y0 + dy * b
        r = 4.0 * math.sqrt(max(cxx, cyy))
        i0, i1 = max(0, int(yc - r)), min(ny, int(yc + r) + 2)
        j0, j1 = max(0, int(xc - r)), min(nx, int(xc + r) + 2)
        if i0 >= i1 or j0 >= j1:
            continue
        yy, xx = np.ogrid[i0:i1, j0:j1]
        u, v = xx - xc, yy - yc
        q = (cyy * u * u - 2 * cxy * u * v + cxx * v * v) / det
        out[i0:i1, j0:j1] += (peak * np.exp(-0.5 * q)).astype(np.float32)
    return out
