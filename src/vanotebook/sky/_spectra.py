"""Synthetic labelled low-resolution spectra that mimic the Gaia DR3 BP/RP validation set.

Gaia DR3 published low-resolution BP/RP ("XP") spectrophotometry, 330-1050 nm at
a resolving power of roughly 30-100. `make_spectra` draws a deterministic stand-in
for its labelled validation set: by default 163,919 spectra in the class
proportions of `GAIA_XP_CLASS_COUNTS`, for training and testing self-organising
maps without the real data.

Each spectrum is a Planck continuum at the star's effective temperature times
class-typical features: Balmer lines and jump peaking in A stars, the Ca II
triplet in G/K, TiO bands in M, pressure-broadened Balmer lines in white dwarfs,
Hα/Hβ emission in emission-line stars, C2 Swan and CN bands in carbon stars; a
binary is the sum of a hot and a cool star. Features are smoothed to an
XP-like resolution (FWHM 3 nm at 330 nm to 18 nm at 1050 nm, plus the pixel
width), reddened with ``A_λ = A_V (λ / 550 nm)^-1.5``, normalised to mean 1 and
given Gaussian noise at a per-spectrum S/N. The shapes are schematic, not a fit to
Gaia data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import log_ndtr, ndtr, voigt_profile

from .._errors import VanotebookInputError, check_positive
from .._random import SeedLike, child_generators

if TYPE_CHECKING:
    import pandas as pd
    from astropy.table import Table

__all__ = ["CLASS_DESCRIPTIONS", "GAIA_XP_CLASS_COUNTS", "SpectraSet", "make_spectra",
           "spectra_wavelength"]  # fmt: skip

GAIA_XP_CLASS_COUNTS: dict[str, int] = {
    "O": 1077, "B": 11434, "A": 30392, "F": 32467, "G": 30011, "K": 40219, "M": 5067,
    "WD": 2887, "ELS": 7428, "C": 1393, "BIN": 1544,
}  # fmt: skip
"""Spectra per class in the Gaia DR3 XP validation set (163,919 in all)."""
CLASS_DESCRIPTIONS: dict[str, str] = {
    "O": "O-type star", "B": "B-type star", "A": "A-type star", "F": "F-type star",
    "G": "G-type star", "K": "K-type star", "M": "M-type star", "WD": "white dwarf",
    "ELS": "emission-line star", "C": "carbon star", "BIN": "physical binary",
}  # fmt: skip
"""Human-readable name of each class code."""

_KEY = 0x5BEC  # child-generator key reserved for spectra
_TEFF = {"O": (30e3, 50e3), "B": (10e3, 30e3), "A": (7.5e3, 10e3), "F": (6e3, 7.5e3),
         "G": (5.2e3, 6e3), "K": (3.7e3, 5.2e3), "M": (2.4e3, 3.7e3), "WD": (8e3, 40e3),
         "ELS": (10e3, 25e3), "C": (2.5e3, 3.5e3), "BIN": (7e3, 15e3)}  # fmt: skip
_COMPANION_TEFF = (3e3, 5e3)  # cool star of a binary
_HC_K = 1.438776877e7  # h c / k_B in nm K
_BALMER = np.array([656.28, 486.13, 434.05, 410.17])  # Hα, Hβ, Hγ, Hδ
_BALMER_EW = np.array([1.2, 1.4, 1.4, 1.3])  # nm, for an A0 dwarf
_WD_EW = np.array([8.0, 14.0, 12.0, 10.0])  # nm, for a cool DA white dwarf
_BALMER_JUMP = 364.6
_CA_TRIPLET, _CA_EW = np.array([849.8, 854.2, 866.2]), np.array([0.15, 0.35, 0.3])
_TIO, _TIO_TAU = np.array([615.9, 705.3, 758.9, 843.2]), np.array([0.4, 0.8, 0.7, 0.6])
_SWAN, _SWAN_TAU = np.array([473.7, 516.5, 563.5]), np.array([0.8, 1.0, 0.9])  # to violet
_CN, _CN_TAU = np.array([787.5, 914.0]), np.array([0.6, 0.5])  # degraded to the red
_BACKGROUND = 0.05  # noise floor, in units of the mean flux


def spectra_wavelength(n_samples: int = 120) -> np.ndarray:
    """Wavelength grid of the synthetic spectra.

    Parameters
    ----------
    n_samples : int, default 120
        Number of samples, at least 10.

    Returns
    -------
    numpy.ndarray
        ``n_samples`` wavelengths in nm, evenly spaced from 330 to 1050 inclusive.
    """
    n_samples = check_positive("n_samples", n_samples, integer=True)
    if n_samples < 10:
        raise VanotebookInputError("n_samples", "an integer >= 10", n_samples)
    return np.linspace(330.0, 1050.0, n_samples)


def _sigma(wl: np.ndarray, centre: float | np.ndarray) -> np.ndarray:
    """Gaussian sigma (nm) of the instrument plus pixel response at ``centre``."""
    fwhm = 3.0 + 15.0 * (centre - 330.0) / 720.0
    return np.sqrt((fwhm / 2.3548) ** 2 + (wl[1] - wl[0]) ** 2 / 12.0)


def _lines(wl: np.ndarray, centres: np.ndarray, gamma: float | np.ndarray) -> np.ndarray:
    """Unit-area Voigt profiles (per nm), intrinsic Lorentzian HWHM ``gamma``, shape (k, m)."""
    c = centres[:, None]
    return voigt_profile(wl - c, _sigma(wl, c), gamma)


def _bands(wl: np.ndarray, heads: np.ndarray, length: float, direction: int) -> np.ndarray:
    """Molecular bands: 1 at each head, decaying over ``length`` nm away from it, smoothed.

    ``direction`` is +1 for bands degraded to the red, -1 to the violet. The profile is
    an exponential tail convolved with the Gaussian resolution (exponentially modified
    Gaussian), shape (k, m).
    """
    s = _sigma(wl, heads)[:, None]
    x = direction * (wl - heads[:, None])
    return np.exp(-x / length + s**2 / (2 * length**2) + log_ndtr(x / s - s / length))


def _bump(teff: np.ndarray, peak: float, width_dex: float) -> np.ndarray:
    return np.exp(-0.5 * (np.log10(teff / peak) / width_dex) ** 2)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, size: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _planck(wl: np.ndarray, teff: np.ndarray) -> np.ndarray:
    """Planck B_λ(T) up to a constant, shape (n, m)."""
    return 1.0 / (wl**5 * np.expm1(_HC_K / (wl * teff[:, None])))


def _stellar_depth(wl: np.ndarray, teff: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Optical depth of normal-star features: Balmer lines and jump, Ca II triplet, TiO."""
    balmer, ca = _bump(teff, 9500.0, 0.13), _bump(teff, 4800.0, 0.12)
    tio = np.clip((3900.0 - teff) / 1300.0, 0.0, 1.0)
    amp = np.hstack([balmer[:, None] * _BALMER_EW, 0.6 * balmer[:, None],
                     ca[:, None] * _CA_EW, tio[:, None] * _TIO_TAU])  # fmt: skip
    amp *= rng.lognormal(0.0, 0.15, amp.shape)
    jump = ndtr((_BALMER_JUMP - wl) / _sigma(wl, _BALMER_JUMP))
    profiles = np.vstack([_lines(wl, _BALMER, 1.0), jump, _lines(wl, _CA_TRIPLET, 0.2),
                          _bands(wl, _TIO, 30.0, +1)])  # fmt: skip
    return amp @ profiles


def _white_dwarf_depth(wl: np.ndarray, teff: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pressure-broadened Balmer lines (Lorentzian HWHM 3-6 nm) and a Balmer jump."""
    strength = (0.4 + 0.6 * _bump(teff, 12e3, 0.2)) * rng.lognormal(0.0, 0.15, teff.size)
    gamma = rng.uniform(3.0, 6.0, (teff.size, 1))
    depth = 0.4 * strength[:, None] * ndtr((_BALMER_JUMP - wl) / _sigma(wl, _BALMER_JUMP))
    for centre, ew in zip(_BALMER, _WD_EW, strict=True):
        sigma = _sigma(wl, centre)
        depth += ew * strength[:, None] * voigt_profile(wl - centre, sigma, gamma)
    return depth


def _carbon_depth(wl: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """C2 Swan bands (degraded to the violet) and red CN bands."""
    tau = rng.uniform(0.5, 1.2, (size, 1))
    amp = np.hstack([tau * _SWAN_TAU, tau * _CN_TAU]) * rng.lognormal(0.0, 0.15, (size, 5))
    return amp @ np.vstack([_bands(wl, _SWAN, 15.0, -1), _bands(wl, _CN, 30.0, +1)])


def _unit_mean(flux: np.ndarray) -> np.ndarray:
    return flux / flux.mean(axis=1, keepdims=True)


def _class_spectra(
    code: str, wl: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise-free, unreddened spectra, primary and secondary Teff of ``size`` stars."""
    teff, teff2 = _log_uniform(rng, *_TEFF[code], size), np.full(size, np.nan)
    if code == "WD":
        model = _planck(wl, teff) * np.exp(-_white_dwarf_depth(wl, teff, rng))
    elif code == "C":
        model = _planck(wl, teff) * np.exp(-_carbon_depth(wl, size, rng))
    elif code == "BIN":
        teff2 = _log_uniform(rng, *_COMPANION_TEFF, size)
        hot, cool = (_unit_mean(_planck(wl, t) * np.exp(-_stellar_depth(wl, t, rng)))
                     for t in (teff, teff2))  # fmt: skip
        cool_share = rng.uniform(0.25, 0.75, (size, 1))
        model = (1.0 - cool_share) * hot + cool_share * cool
    else:
        model = _planck(wl, teff) * np.exp(-_stellar_depth(wl, teff, rng))
        if code == "ELS":  # net Hα emission of 2-12 nm equivalent width, Hβ a quarter of it
            ew = _log_uniform(rng, 2.0, 12.0, size)[:, None] * np.array([1.0, 0.25])
            model *= 1.0 + ew @ _lines(wl, _BALMER[:2], 0.3)
    return model, teff, teff2


def _class_sizes(n: int | None, counts: Mapping[str, int] | None) -> dict[str, int]:
    classes = tuple(GAIA_XP_CLASS_COUNTS)
    if counts is not None:
        if not isinstance(counts, Mapping):
            raise VanotebookInputError("counts", "a dict of class code -> count", counts)
        unknown = [code for code in counts if code not in GAIA_XP_CLASS_COUNTS]
        if unknown:
            raise VanotebookInputError("counts", f"class codes from {classes}", unknown[0])
        sizes = {c: counts.get(c, 0) for c in classes}
        if any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0
               for v in sizes.values()) or sum(sizes.values()) == 0:  # fmt: skip
            raise VanotebookInputError("counts", "non-negative integer counts, not all 0", counts)
        if n is not None and n != sum(sizes.values()):
            raise VanotebookInputError("n", f"None or sum(counts) = {sum(sizes.values())}", n)
        return {c: int(v) for c, v in sizes.items()}
    if n is None:
        return dict(GAIA_XP_CLASS_COUNTS)
    n = check_positive("n", n, integer=True)
    if n < len(classes):
        raise VanotebookInputError("n", f"an integer >= {len(classes)} (one per class)", n)
    quota = n * np.array(list(GAIA_XP_CLASS_COUNTS.values())) / sum(GAIA_XP_CLASS_COUNTS.values())
    base = np.maximum(np.floor(quota).astype(np.int64), 1)
    short = n - int(base.sum())
    if short > 0:  # largest remainders first
        base[np.argsort(np.floor(quota) - quota, kind="stable")[:short]] += 1
    for _ in range(-short):  # the minimum of one each overshot: take from the largest
        base[np.argmax(base)] -= 1
    return dict(zip(classes, base.tolist(), strict=True))


@dataclass(frozen=True, eq=False)
class SpectraSet:
    """Labelled synthetic XP-like spectra, one row per star, rows in random order.

    Attributes
    ----------
    wavelength : numpy.ndarray
        Wavelength grid in nm, shape ``(n_samples,)``.
    flux : numpy.ndarray
        float32 flux, shape ``(n, n_samples)``; each noise-free spectrum has mean 1.
    flux_error : numpy.ndarray
        float32 one-sigma Gaussian noise of ``flux``, same shape.
    label : numpy.ndarray
        Class codes (keys of `GAIA_XP_CLASS_COUNTS`), shape ``(n,)``.
    teff : numpy.ndarray
        float32 effective temperature in K (the hot star of a binary).
    teff2 : numpy.ndarray
        float32 temperature of a binary's cool companion in K, NaN for single stars.
    extinction : numpy.ndarray
        float32 V-band extinction ``A_V`` in mag applied to the spectrum.
    source_id : numpy.ndarray
        int64 row identifiers ``0 ... n-1``.
    """

    wavelength: np.ndarray
    flux: np.ndarray
    flux_error: np.ndarray
    label: np.ndarray
    teff: np.ndarray
    teff2: np.ndarray
    extinction: np.ndarray
    source_id: np.ndarray

    def __len__(self) -> int:
        return len(self.label)

    def _scalars(self) -> dict[str, np.ndarray]:
        return {"source_id": self.source_id, "label": self.label, "teff": self.teff,
                "teff2": self.teff2, "extinction": self.extinction}  # fmt: skip

    def to_table(self) -> Table:
        """An astropy `~astropy.table.Table`, flux and flux_error as 2-D columns.

        The wavelength grid (nm) is in ``table.meta["wavelength_nm"]``.
        """
        from astropy.table import Table

        table = Table({**self._scalars(), "flux": self.flux, "flux_error": self.flux_error})
        table["teff"].unit = table["teff2"].unit = "K"
        table["extinction"].unit = "mag"
        table.meta["wavelength_nm"] = self.wavelength.tolist()
        return table

    def to_pandas(self) -> pd.DataFrame:
        """A DataFrame of the scalar columns then one flux column per sample, ``f000``...."""
        import pandas as pd

        names = [f"f{i:03d}" for i in range(self.flux.shape[1])]
        return pd.concat(
            [pd.DataFrame(self._scalars()), pd.DataFrame(self.flux, columns=names)], axis=1
        )

    def class_counts(self) -> dict[str, int]:
        """Spectra per class present, in the order of `GAIA_XP_CLASS_COUNTS`."""
        codes, sizes = np.unique(self.label, return_counts=True)
        found = dict(zip(codes.tolist(), sizes.tolist(), strict=True))
        return {c: found[c] for c in GAIA_XP_CLASS_COUNTS if c in found}


def make_spectra(
    n: int | None = None,
    *,
    counts: Mapping[str, int] | None = None,
    n_samples: int = 120,
    snr: float = 50.0,
    seed: SeedLike = 0,
) -> SpectraSet:
    """Draw a deterministic labelled set of synthetic Gaia-XP-like spectra.

    Parameters
    ----------
    n : int, optional
        Total number of spectra, at least one per class; the class counts of
        `GAIA_XP_CLASS_COUNTS` are scaled to it (largest remainders, at least one per
        class). Default: exactly `GAIA_XP_CLASS_COUNTS` (163,919 spectra).
    counts : dict of str to int, optional
        Spectra per class code, overriding `n` (which, if given, must equal the sum).
    n_samples : int, default 120
        Samples per spectrum on `spectra_wavelength` (330-1050 nm), at least 10.
    snr : float, default 50
        Median signal-to-noise per sample at the mean flux; each spectrum's S/N
        scatters around it (lognormal, sigma 0.3 in ln S/N). The noise is
        ``sqrt((f + 0.05) / 1.05) / S/N`` for noise-free flux ``f``, a photon term plus
        a floor. ``numpy.inf`` gives noise-free spectra (and zero ``flux_error``).
    seed : int, numpy SeedSequence or Generator, default 0
        Same seed, same spectra; noise comes from its own stream, so ``snr=inf`` with
        the same seed gives the noise-free versions of the same stars.

    Returns
    -------
    SpectraSet
        Rows shuffled; ``source_id`` is ``0 ... n-1``.

    Raises
    ------
    VanotebookInputError
        For an unknown class code, ``n`` below the number of classes, ``n_samples``
        below 10 or a non-positive ``snr``.
    """
    wl = spectra_wavelength(n_samples)
    snr = check_positive("snr", snr)
    sizes = _class_sizes(n, counts)
    total = sum(sizes.values())
    gens = child_generators(seed, len(GAIA_XP_CLASS_COUNTS) + 2, key=_KEY)
    where = np.empty(total, np.int64)
    where[gens[0].permutation(total)] = np.arange(total)  # row of the i-th star drawn
    flux = np.empty((total, wl.size), np.float32)
    label = np.empty(total, "<U3")
    teff, teff2, extinction = (np.empty(total, np.float32) for _ in range(3))
    start = 0
    for k, (code, size) in enumerate(sizes.items()):
        if size == 0:
            continue
        rows, start, rng = where[start : start + size], start + size, gens[2 + k]
        model, teff[rows], teff2[rows] = _class_spectra(code, wl, size, rng)
        a_v = np.minimum(rng.exponential(0.1 if code == "WD" else 0.5, size), 3.0)
        model *= 10.0 ** (-0.4 * a_v[:, None] * (wl / 550.0) ** -1.5)
        flux[rows], label[rows], extinction[rows] = _unit_mean(model), code, a_v
    noise = gens[1]
    snr_each = (snr * noise.lognormal(0.0, 0.3, total)).astype(np.float32)
    error = np.sqrt((flux + _BACKGROUND) / (1.0 + _BACKGROUND)) / snr_each[:, None]
    if np.isfinite(snr):
        flux += error * noise.standard_normal(flux.shape, dtype=np.float32)
    source_id = np.arange(total, dtype=np.int64)
    return SpectraSet(wl, flux, error, label, teff, teff2, extinction, source_id)
