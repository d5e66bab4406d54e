"""The sky model: point sources, extended sources, radio galaxies and diffuse emission.

Every source is a sum of elliptical Gaussian *components* in the tangent
plane of the field centre (x east, y north, degrees): a point source is one
delta component, an extended Gaussian one component, a ring or a filament a
chain of small components along its curve, and a radio galaxy (FRII lobes and
hotspots, FRI jets, bent or head-tail tails; `vanotebook.classify.radio_galaxy`)
the components of its class, drawn in units of the radio survey's beam. A
survey image is then exact to render: a Gaussian convolved with a Gaussian
beam is a Gaussian whose covariance is the sum. Diffuse emission is a
positive sum of plane waves, whose convolution with the beam only scales each
wave.

Spectra are power laws about a reference wavelength,
``S(λ) = S_ref (λ / λ_ref)^(-alpha)``. Radio galaxies have steep synchrotron
spectra (``alpha`` near -0.75, so ``S ∝ ν^-0.75``): bright in the radio survey,
far below the noise at 250 µm and 24 µm.

Every source has a morphological class ``morph`` (the classes of
`vanotebook.classify.CLASSES`): ``point``, ``extended`` for Gaussians, rings
and filaments (a survey's truth calls a Gaussian ``compact`` when it is small
against that survey's beam), and ``fr2``, ``fr1`` or ``bent`` for the radio
galaxies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from .._errors import VanotebookInputError, check_positive
from .._random import SeedLike, child_generators
from ..units import FWHM_TO_SIGMA
from ._geometry import from_tangent

__all__ = ["RADIO_GALAXY_CLASSES", "REF_WAVELENGTH_M", "SkyModel", "make_sky"]

RADIO_GALAXY_CLASSES = ("fr2", "fr1", "bent")

REF_WAVELENGTH_M = 1.0e-3  # the model's reference wavelength, 1 mm
_ARCSEC = 1.0 / 3600.0
DEFAULT_CENTER = (281.6, -2.6)  # ICRS; the Galactic plane near l = 30 deg, b = 0 deg


@dataclass(frozen=True)
class SkyModel:
    """A synthetic sky over a square field, with the truth of every source.

    Attributes
    ----------
    center : tuple of float
        Field centre (ICRS ra, dec; deg).
    size : float
        Side of the square field (deg), measured in the tangent plane.
    sources : astropy.table.Table
        One row per source: ``source_id``, ``kind`` (point, gaussian, ring,
        filament, radio_galaxy), ``morph`` (point, extended, fr2, fr1, bent),
        ``extended``, ``ra``, ``dec``, ``flux_ref`` (Jy at the reference
        wavelength), ``alpha`` (spectral index), ``major``, ``minor``
        (intrinsic FWHM, arcsec; 0 for points; for a radio galaxy the diameter
        of the circle about its position that holds it, and its full width
        across its axis), ``pa`` (deg east of north; a radio galaxy's axis),
        ``radius`` (rings, arcsec), ``length`` (filaments, arcsec). A radio
        galaxy's position is its core (FRI, bent) or the midpoint between its
        lobes (FRII).
    components : dict of numpy arrays
        The Gaussian components: ``source`` (row in `sources`), ``x``, ``y``
        (deg), ``frac`` (fraction of the source flux) and the covariance
        ``cxx``, ``cxy``, ``cyy`` (deg^2).
    diffuse : dict of numpy arrays
        Plane waves ``kx``, ``ky`` (rad/deg), ``phase``, ``amp`` (relative), and
        ``level`` (mean brightness at the reference wavelength, MJy/sr) and
        ``alpha`` (its spectral index).
    seed : int or None
        The seed it was made from.
    """

    center: tuple[float, float]
    size: float
    sources: Table
    components: dict[str, np.ndarray] = field(repr=False)
    diffuse: dict[str, np.ndarray] = field(repr=False)
    seed: int | None = None

    def flux(self, wavelength_m: float) -> np.ndarray:
        """Integrated flux density (Jy) of every source at a wavelength."""
        ratio = wavelength_m / REF_WAVELENGTH_M
        return np.asarray(self.sources["flux_ref"]) * ratio ** (-np.asarray(self.sources["alpha"]))

    def diffuse_brightness(self, x, y, wavelength_m: float, cov=None) -> np.ndarray:
        """Diffuse brightness (MJy/sr) at tangent-plane points, optionally smoothed by ``cov``."""
        d = self.diffuse
        level = float(d["level"]) * (wavelength_m / REF_WAVELENGTH_M) ** (-float(d["alpha"]))
        total = np.ones(np.shape(x))
        for kx, ky, ph, amp in zip(d["kx"], d["ky"], d["phase"], d["amp"], strict=True):
            damp = 1.0
            if cov is not None:
                damp = math.exp(-0.5 * (kx * kx * cov[0, 0] + 2 * kx * ky * cov[0, 1]
                                        + ky * ky * cov[1, 1]))
            total += amp * damp * np.cos(kx * x + ky * y + ph)
        return level * total


def _ring_or_filament_points(kind: str, major: float, rng_arc: np.ndarray, pa: float,
                             curvature: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (deg) along a ring of radius ``major`` or an arc filament of length ``major``."""
    if kind == "ring":
        t = rng_arc * 2 * math.pi
        u, v = major * np.cos(t), major * np.sin(t)
    else:
        s = (rng_arc - 0.5) * major  # arc length along the filament
        u, v = s, curvature * s * s  # a gentle parabola
    c, sn = math.cos(math.radians(pa)), math.sin(math.radians(pa))
    # u along the position angle (east of north): direction (east, north) = (sin pa, cos pa)
    return u * sn - v * c, u * c + v * sn


def make_sky(
    center: tuple[float, float] = DEFAULT_CENTER,
    size: float = 1.0,
    *,
    point_density: float = 200.0,
    extended_density: float = 12.0,
    radio_galaxy_density: float = 20.0,
    seed: SeedLike = 0,
) -> SkyModel:
    """Draw a synthetic sky model.

    Parameters
    ----------
    center : (float, float)
        Field centre, ICRS ra and dec in degrees.
    size : float
        Side of the square field in degrees (at most 20).
    point_density, extended_density : float
        Sources per square degree: compact (unresolved) and extended (split
        evenly between elliptical Gaussians, rings/bubbles and filaments).
    radio_galaxy_density : float
        Radio galaxies per square degree, split evenly between FRII, FRI and
        bent/head-tail. Each is 3-7 beams of the radio survey across, its
        brightest component 15-150 times the radio noise, and it is placed at
        least 5 radio beams away from every other source (a galaxy that finds
        no such place is left out).
    seed : int, SeedSequence or Generator
        The same seed gives the same sky.

    Returns
    -------
    SkyModel
    """
    if not (isinstance(center, tuple | list) and len(center) == 2
            and -90 <= float(center[1]) <= 90):
        raise VanotebookInputError("center", "(ra, dec) in degrees with -90 <= dec <= 90", center)
    size = check_positive("size", size)
    if size > 20:
        raise VanotebookInputError("size", "a field of at most 20 deg", size)
    if point_density < 0 or extended_density < 0 or radio_galaxy_density < 0:
        raise VanotebookInputError("point_density/extended_density/radio_galaxy_density",
                                   "densities >= 0",
                                   (point_density, extended_density, radio_galaxy_density))
    ra0, dec0 = float(center[0]) % 360.0, float(center[1])
    # child i depends only on (seed, key, i): the fourth stream leaves the first three as they were
    rng_pts, rng_ext, rng_diff, rng_rg = child_generators(seed, 4, key=1)
    area = size * size
    half = 0.5 * size

    # compact sources: number counts dN/dS ~ S^-1.7 between 0.5 mJy and 1 Jy
    n_pt = int(rng_pts.poisson(point_density * area))
    smin, smax, g = 0.5e-3, 1.0, 1.0 - 1.7
    uu = rng_pts.random(n_pt)
    flux_pt = (smin**g + uu * (smax**g - smin**g)) ** (1.0 / g)
    x_pt = rng_pts.uniform(-half, half, n_pt)
    y_pt = rng_pts.uniform(-half, half, n_pt)
    alpha_pt = rng_pts.normal(0.0, 0.12, n_pt)

    # extended sources: Gaussians, rings and filaments in equal numbers
    n_ext = int(rng_ext.poisson(extended_density * area))
    kinds_ext = np.array(["gaussian", "ring", "filament"])[np.arange(n_ext) % 3]
    rng_ext.shuffle(kinds_ext)
    margin = 0.1 * size
    x_ext = rng_ext.uniform(-half + margin, half - margin, n_ext)
    y_ext = rng_ext.uniform(-half + margin, half - margin, n_ext)
    flux_ext = 10 ** rng_ext.uniform(math.log10(0.02), math.log10(0.5), n_ext)
    alpha_ext = rng_ext.normal(0.3, 0.12, n_ext)
    pa_ext = rng_ext.uniform(0, 180, n_ext)
    major = np.where(kinds_ext == "gaussian", rng_ext.uniform(25, 100, n_ext), 0.0)
    minor = major * rng_ext.uniform(0.4, 1.0, n_ext)
    radius = np.where(kinds_ext == "ring", rng_ext.uniform(45, 120, n_ext), 0.0)
    length = np.where(kinds_ext == "filament", rng_ext.uniform(180, 480, n_ext), 0.0)
    width = rng_ext.uniform(10, 20, n_ext)  # FWHM of ring/filament cross-section (arcsec)
    curvature = rng_ext.uniform(-1.0, 1.0, n_ext)
    major = np.where(kinds_ext == "gaussian", major, np.where(kinds_ext == "ring",
                     2 * radius + width, length))
    minor = np.where(kinds_ext == "gaussian", minor, np.where(kinds_ext == "ring",
                     2 * radius + width, width))

    # radio galaxies, placed clear of everything above
    extent_ext = np.where(kinds_ext == "gaussian", major, 0.5 * major + width)  # arcsec
    rg = _radio_galaxies(rng_rg, radio_galaxy_density * area, half - margin,
                         np.concatenate([x_pt, x_ext]), np.concatenate([y_pt, y_ext]),
                         np.concatenate([np.zeros(n_pt), extent_ext]))
    n_rg = len(rg["kind"])

    # components
    comp = {k: [] for k in ("source", "x", "y", "frac", "cxx", "cxy", "cyy")}

    def add(src, x, y, frac, cov):
        n = np.size(x)
        comp["source"].append(np.full(n, src))
        comp["x"].append(np.atleast_1d(x))
        comp["y"].append(np.atleast_1d(y))
        comp["frac"].append(np.full(n, frac / n) if np.ndim(frac) == 0 else frac)
        for key, val in zip(("cxx", "cxy", "cyy"), (cov[0, 0], cov[0, 1], cov[1, 1]),
                            strict=True):
            comp[key].append(np.full(n, val) if np.ndim(val) == 0 else val)

    zero = np.zeros((2, 2))
    for i in range(n_pt):
        add(i, x_pt[i], y_pt[i], 1.0, zero)
    for j in range(n_ext):
        src = n_pt + j
        kind = kinds_ext[j]
        if kind == "gaussian":
            t = math.radians(pa_ext[j])
            rot = np.array([[math.sin(t), math.cos(t)], [math.cos(t), -math.sin(t)]])
            sig = np.diag([(major[j] * FWHM_TO_SIGMA * _ARCSEC) ** 2,
                           (minor[j] * FWHM_TO_SIGMA * _ARCSEC) ** 2])
            add(src, x_ext[j], y_ext[j], 1.0, rot @ sig @ rot.T)
            continue
        sigma = width[j] * FWHM_TO_SIGMA * _ARCSEC
        extent = (2 * math.pi * radius[j] if kind == "ring" else length[j]) * _ARCSEC
        n = max(8, math.ceil(extent / (0.7 * sigma)))
        arc = (np.arange(n) + 0.5) / n
        dx, dy = _ring_or_filament_points(
            kind, (radius[j] if kind == "ring" else length[j]) * _ARCSEC, arc, pa_ext[j],
            curvature[j] / max(length[j] * _ARCSEC, 1e-9),
        )
        add(src, x_ext[j] + dx, y_ext[j] + dy, 1.0, np.eye(2) * sigma * sigma)
    for g in range(n_rg):
        c = rg["components"][g]
        add(n_pt + n_ext + g, rg["x"][g] + c["x"], rg["y"][g] + c["y"], c["frac"],
            np.stack([np.stack([c["cxx"], c["cxy"]]), np.stack([c["cxy"], c["cyy"]])]))
    components = {k: np.concatenate(v) if v else np.zeros(0) for k, v in comp.items()}
    components["source"] = components["source"].astype(np.int64)

    # diffuse emission: a few plane waves with wavelengths 0.25-2 deg
    n_waves = 8
    lam = 10 ** rng_diff.uniform(math.log10(0.25), math.log10(2.0), n_waves)
    theta = rng_diff.uniform(0, 2 * math.pi, n_waves)
    k = 2 * math.pi / lam
    diffuse = {
        "kx": k * np.cos(theta), "ky": k * np.sin(theta),
        "phase": rng_diff.uniform(0, 2 * math.pi, n_waves),
        "amp": rng_diff.uniform(0.05, 0.12, n_waves),
        "level": np.float64(1.0), "alpha": np.float64(0.6),
    }

    x_all = np.concatenate([x_pt, x_ext, rg["x"]])
    y_all = np.concatenate([y_pt, y_ext, rg["y"]])
    ra, dec = from_tangent(x_all, y_all, ra0, dec0)
    n_all = n_pt + n_ext + n_rg
    zeros_rg = np.zeros(n_rg)
    sources = Table({
        "source_id": np.arange(n_all, dtype=np.int64),
        "kind": np.concatenate([np.full(n_pt, "point"), kinds_ext,
                                np.full(n_rg, "radio_galaxy")]).astype("U12"),
        "morph": np.concatenate([np.full(n_pt, "point"), np.full(n_ext, "extended"),
                                 rg["kind"]]).astype("U8"),
        "extended": np.concatenate([np.zeros(n_pt, bool), np.ones(n_ext + n_rg, bool)]),
        "ra": ra, "dec": dec,
        "x": x_all, "y": y_all,
        "flux_ref": np.concatenate([flux_pt, flux_ext, rg["flux_ref"]]),
        "alpha": np.concatenate([alpha_pt, alpha_ext, rg["alpha"]]),
        "major": np.concatenate([np.zeros(n_pt), major, rg["major"]]),
        "minor": np.concatenate([np.zeros(n_pt), minor, rg["minor"]]),
        "pa": np.concatenate([np.zeros(n_pt), pa_ext, rg["pa"]]),
        "radius": np.concatenate([np.zeros(n_pt), radius, zeros_rg]),
        "length": np.concatenate([np.zeros(n_pt), length, zeros_rg]),
    })
    units = {"ra": "deg", "dec": "deg", "x": "deg", "y": "deg", "flux_ref": "Jy",
             "major": "arcsec", "minor": "arcsec", "pa": "deg", "radius": "arcsec",
             "length": "arcsec"}
    for name, unit in units.items():
        sources[name].unit = unit
    sources.meta["reference_wavelength_m"] = REF_WAVELENGTH_M
    return SkyModel((ra0, dec0), float(size), sources, components, diffuse,
                    seed if isinstance(seed, int) else None)


def _radio_galaxies(rng: np.random.Generator, mean_number: float, half: float,
                    x_other: np.ndarray, y_other: np.ndarray,
                    extent_other: np.ndarray) -> dict:
    """Radio galaxies drawn by `vanotebook.classify.radio_galaxy` at the radio survey's beam.

    Parameters
    ----------
    rng : numpy.random.Generator
    mean_number : float
        Mean number of galaxies (Poisson).
    half : float
        Centres are drawn in ``[-half, half]^2`` (deg, tangent plane).
    x_other, y_other, extent_other : arrays
        Positions (deg) and radii (arcsec) of the other sources to keep clear of.

    Returns
    -------
    dict with per-galaxy ``kind``, ``x``, ``y`` (deg), ``flux_ref`` (Jy at the
    reference wavelength), ``alpha``, ``major``, ``minor`` (arcsec), ``pa``
    (deg east of north) and ``components`` (per galaxy: offsets ``x``, ``y``
    (deg), ``frac`` and the intrinsic covariance ``cxx``, ``cxy``, ``cyy`` (deg^2)).
    """
    from ..classify import radio_galaxy
    from ._surveys import SURVEYS

    radio = SURVEYS["radio"]
    beam = math.sqrt(radio.beam.major.to_value("arcsec") * radio.beam.minor.to_value("arcsec"))
    ratio = radio.wavelength_m / REF_WAVELENGTH_M
    n = int(rng.poisson(mean_number))
    kinds = np.array(RADIO_GALAXY_CLASSES)[np.arange(n) % 3]
    rng.shuffle(kinds)
    # shapes first (one stream of draws per galaxy), then places
    shapes = []
    for kind in kinds:
        peak = radio.noise * math.exp(rng.uniform(math.log(15.0), math.log(150.0)))  # Jy/beam
        comps = radio_galaxy(str(kind), rng, peak)
        alpha = float(np.clip(rng.normal(-0.75, 0.1), -1.0, -0.6))  # steep: synchrotron
        shapes.append((comps, alpha))
    clear = 5.0 * beam  # arcsec between a galaxy's edge and any other source
    xs, ys, radii = list(x_other), list(y_other), list(extent_other)
    out = {k: [] for k in ("kind", "x", "y", "flux_ref", "alpha", "major", "minor", "pa",
                           "components")}
    for kind, (comps, alpha) in zip(kinds, shapes, strict=True):
        dx, dy, flux, cmaj, cmin, cpa = comps.T
        # radius (arcsec) of the circle about the origin holding every component to its FWHM
        r_gal = float(np.max(np.hypot(dx, dy) + 0.5 * cmaj + 0.5)) * beam
        ox, oy, orad = np.asarray(xs), np.asarray(ys), np.asarray(radii)
        for _ in range(200):
            x, y = rng.uniform(-half, half, 2)
            d = np.hypot(ox - x, oy - y) * 3600.0
            if not len(d) or np.all(d > r_gal + orad + clear):
                break
        else:
            continue
        xs.append(x)
        ys.append(y)
        radii.append(r_gal)
        # component offsets: beams -> deg, dx east, dy north; pa from east towards north
        scale = beam / 3600.0
        c, s = np.cos(cpa), np.sin(cpa)
        sa = (cmaj * scale * FWHM_TO_SIGMA) ** 2
        sb = (cmin * scale * FWHM_TO_SIGMA) ** 2
        out["components"].append({
            "x": dx * scale, "y": dy * scale, "frac": flux / flux.sum(),
            "cxx": c * c * sa + s * s * sb, "cyy": s * s * sa + c * c * sb,
            "cxy": c * s * (sa - sb),
        })
        # the axis: the principal direction of the components' offsets
        _, v = np.linalg.eigh(np.cov(np.vstack([dx, dy]), aweights=flux, bias=True))
        ax, ay = v[:, 1]
        across = np.abs(-ay * dx + ax * dy) + 0.5 * cmin
        out["kind"].append(kind)
        out["x"].append(x)
        out["y"].append(y)
        out["alpha"].append(alpha)
        # flux.sum() is the radio flux density in Jy (a component of flux F peaks at F Jy/beam)
        out["flux_ref"].append(float(flux.sum()) * ratio ** alpha)
        out["major"].append(2.0 * r_gal)
        out["minor"].append(2.0 * float(np.max(across) + 0.5) * beam)
        out["pa"].append(math.degrees(math.atan2(ax, ay)) % 180.0)
    for k in ("x", "y", "flux_ref", "alpha", "major", "minor", "pa"):
        out[k] = np.asarray(out[k], float)
    out["kind"] = np.asarray(out["kind"], "U8")
    return out
