"""Tests of the synthetic Gaia-XP-like labelled spectra (`vanotebook.sky._spectra`).

The physics tests measure features the way an astronomer would (colours, equivalent
widths against a local continuum, blackbody fits) and compare classes, rather than
checking numbers copied from the generator's own output.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from vanotebook._errors import VanotebookInputError
from vanotebook.sky._spectra import (
    CLASS_DESCRIPTIONS,
    GAIA_XP_CLASS_COUNTS,
    SpectraSet,
    make_spectra,
    spectra_wavelength,
)

N = 5000
HC_K = 1.438776877e7  # h c / k_B in nm K
SEQUENCE = ["O", "B", "A", "F", "G", "K", "M"]


@pytest.fixture(scope="module")
def noisy() -> SpectraSet:
    return make_spectra(N, seed=7)


@pytest.fixture(scope="module")
def clean() -> SpectraSet:
    return make_spectra(N, seed=7, snr=np.inf)


def _select(spectra: SpectraSet, code: str) -> tuple[np.ndarray, np.ndarray]:
    keep = spectra.label == code
    assert keep.sum() >= 20, code
    return spectra.flux[keep].astype(float), spectra.flux_error[keep].astype(float)


def _continuum(wl: np.ndarray, flux: np.ndarray, windows: list[tuple[float, float]]):
    """Power law fitted to ``flux`` in the line-free ``windows``, evaluated on ``wl``."""
    side = np.zeros(wl.size, bool)
    for lo, hi in windows:
        side |= (wl > lo) & (wl < hi)
    design = np.column_stack([np.ones(side.sum()), np.log(wl[side])])
    coef, *_ = np.linalg.lstsq(design, np.log(np.clip(flux[:, side], 1e-6, None)).T, rcond=None)
    return np.exp(coef[0][:, None] + coef[1][:, None] * np.log(wl))


def _equivalent_width(spectra, code, lo, hi, windows) -> np.ndarray:
    """Equivalent width (nm, positive for absorption) over ``lo..hi`` of each ``code`` star."""
    flux, _ = _select(spectra, code)
    wl = spectra.wavelength
    inside = (wl >= lo) & (wl <= hi)
    cont = _continuum(wl, flux, windows)
    return (1.0 - flux[:, inside] / cont[:, inside]).sum(axis=1) * (wl[1] - wl[0])


def _blue_red(spectra: SpectraSet) -> np.ndarray:
    wl = spectra.wavelength
    return spectra.flux[:, wl < 500].mean(axis=1) / spectra.flux[:, wl > 750].mean(axis=1)


# ---------------------------------------------------------------- counts and layout


def test_class_counts_match_the_gaia_validation_set():
    assert list(GAIA_XP_CLASS_COUNTS) == [*SEQUENCE, "WD", "ELS", "C", "BIN"]
    assert list(GAIA_XP_CLASS_COUNTS.values()) == [
        1077, 11434, 30392, 32467, 30011, 40219, 5067, 2887, 7428, 1393, 1544
    ]  # fmt: skip
    assert sum(GAIA_XP_CLASS_COUNTS.values()) == 163_919
    assert list(CLASS_DESCRIPTIONS) == list(GAIA_XP_CLASS_COUNTS)
    assert "white dwarf" in CLASS_DESCRIPTIONS["WD"].lower()
    assert "emission" in CLASS_DESCRIPTIONS["ELS"].lower()
    assert "carbon" in CLASS_DESCRIPTIONS["C"].lower()
    assert "binary" in CLASS_DESCRIPTIONS["BIN"].lower()


def test_full_default_set_has_exact_counts_and_float32_flux():
    spectra = make_spectra()
    assert len(spectra) == 163_919
    assert spectra.class_counts() == GAIA_XP_CLASS_COUNTS
    assert spectra.flux.shape == spectra.flux_error.shape == (163_919, 120)
    assert spectra.flux.dtype == spectra.flux_error.dtype == np.float32
    assert np.all(np.isfinite(spectra.flux)) and np.all(spectra.flux_error > 0)
    np.testing.assert_array_equal(spectra.source_id, np.arange(163_919))


def test_wavelength_grid():
    wl = spectra_wavelength()
    assert wl.shape == (120,) and wl[0] == 330.0 and wl[-1] == 1050.0
    np.testing.assert_allclose(np.diff(wl), 720.0 / 119)
    assert spectra_wavelength(10).size == 10


@pytest.mark.parametrize("n", [11, 12, 50, 997, N, 163_919, 250_001])
def test_scaling_with_n_keeps_every_class_and_the_total(n):
    spectra = make_spectra(n, n_samples=10)
    counts = spectra.class_counts()
    assert list(counts) == list(GAIA_XP_CLASS_COUNTS)
    assert sum(counts.values()) == len(spectra) == n
    assert min(counts.values()) >= 1
    if n >= 5000:  # no class is held up by the minimum of one: largest remainders
        total = sum(GAIA_XP_CLASS_COUNTS.values())
        for code, size in counts.items():
            assert abs(size - n * GAIA_XP_CLASS_COUNTS[code] / total) < 1
    if n == 163_919:
        assert counts == GAIA_XP_CLASS_COUNTS


def test_counts_override_and_rows_are_shuffled():
    spectra = make_spectra(counts={"WD": 300, "G": 200}, n_samples=20)
    assert spectra.class_counts() == {"G": 200, "WD": 300}
    changes = np.count_nonzero(spectra.label[1:] != spectra.label[:-1])
    assert changes > 150  # grouped rows would change label once
    assert spectra.flux.shape == (500, 20) and spectra.wavelength.shape == (20,)


def test_fields_shapes_and_dtypes(noisy):
    n, m = noisy.flux.shape
    assert (n, m) == (N, 120) and len(noisy) == N
    assert noisy.flux.dtype == noisy.flux_error.dtype == np.float32
    for name in ("teff", "teff2", "extinction"):
        assert getattr(noisy, name).shape == (N,) and getattr(noisy, name).dtype == np.float32
    assert noisy.source_id.dtype == np.int64
    np.testing.assert_array_equal(noisy.source_id, np.arange(N))
    assert set(noisy.label.tolist()) == set(GAIA_XP_CLASS_COUNTS)


def test_same_seed_same_bytes_other_seed_differs(noisy):
    again = make_spectra(N, seed=7)
    for name in ("wavelength", "flux", "flux_error", "label", "teff", "teff2", "extinction"):
        a, b = getattr(noisy, name), getattr(again, name)
        assert a.tobytes() == b.tobytes(), name
    other = make_spectra(N, seed=8)
    assert not np.array_equal(other.flux, noisy.flux)
    assert not np.array_equal(other.label, noisy.label)


def test_temperatures_and_extinction_follow_the_class_ranges(noisy):
    ranges = {"O": (30e3, 50e3), "B": (10e3, 30e3), "A": (7.5e3, 10e3), "F": (6e3, 7.5e3),
              "G": (5.2e3, 6e3), "K": (3.7e3, 5.2e3), "M": (2.4e3, 3.7e3), "WD": (8e3, 40e3),
              "ELS": (10e3, 25e3), "C": (2.5e3, 3.5e3), "BIN": (7e3, 15e3)}  # fmt: skip
    for code, (lo, hi) in ranges.items():
        teff = noisy.teff[noisy.label == code]
        assert teff.min() >= lo * 0.999 and teff.max() <= hi * 1.001, code
    binary = noisy.label == "BIN"
    assert np.all(np.isnan(noisy.teff2[~binary]))
    assert np.all(noisy.teff2[binary] < noisy.teff[binary])
    assert np.all((noisy.teff2[binary] >= 2999) & (noisy.teff2[binary] <= 5001))
    assert noisy.extinction.min() >= 0 and 0.1 < np.median(noisy.extinction) < 1.5


def test_table_and_dataframe(noisy):
    table = noisy.to_table()
    assert isinstance(table, Table) and len(table) == N
    assert table.colnames == [
        "source_id", "label", "teff", "teff2", "extinction", "flux", "flux_error"
    ]  # fmt: skip
    assert table["flux"].shape == (N, 120)
    np.testing.assert_allclose(table.meta["wavelength_nm"], noisy.wavelength)
    assert isinstance(table.meta["wavelength_nm"], list)
    frame = noisy.to_pandas()
    assert isinstance(frame, pd.DataFrame) and len(frame) == N
    assert {"source_id", "label", "teff", "teff2", "extinction"} <= set(frame.columns)
    assert [c for c in frame.columns if c.startswith("f")] == [f"f{i:03d}" for i in range(120)]
    np.testing.assert_array_equal(frame["f042"].to_numpy(), noisy.flux[:, 42])


# ---------------------------------------------------------------- noise


def test_noise_matches_flux_error(noisy, clean):
    np.testing.assert_allclose(clean.flux.mean(axis=1), 1.0, rtol=1e-5)
    assert np.all(clean.flux_error == 0)
    np.testing.assert_array_equal(noisy.label, clean.label)  # same stars, noise apart
    pull = (noisy.flux.astype(float) - clean.flux) / noisy.flux_error
    assert abs(pull.mean()) < 0.01
    assert 0.9 < pull.std() < 1.1
    per_spectrum = np.median(clean.flux / noisy.flux_error, axis=1)
    assert 25 < np.median(per_spectrum) < 100  # around snr=50 ...
    assert np.std(np.log(per_spectrum)) > 0.1  # ... but varying from star to star


# ---------------------------------------------------------------- physics


def test_colour_follows_the_temperature_sequence(noisy):
    colour = _blue_red(noisy)
    medians = [np.median(colour[noisy.label == code]) for code in SEQUENCE]
    assert np.all(np.diff(medians) < 0), dict(zip(SEQUENCE, medians, strict=True))
    assert np.median(colour[noisy.label == "WD"]) > medians[SEQUENCE.index("G")]
    assert np.median(colour[noisy.label == "C"]) < medians[SEQUENCE.index("K")]


def test_extinction_reddens(clean):
    keep = clean.label == "A"  # narrow Teff range, so extinction dominates the colour
    colour = np.log(_blue_red(clean)[keep])
    assert np.corrcoef(colour, clean.extinction[keep])[0, 1] < -0.7


def test_balmer_lines_peak_in_a_stars(noisy):
    windows = [(455, 468), (510, 535)]
    ew = {c: np.median(_equivalent_width(noisy, c, 474, 498, windows)) for c in SEQUENCE}
    assert ew["A"] > ew["F"] > ew["G"]
    assert ew["A"] > ew["O"] and ew["A"] > 0.5  # A dwarfs: Hβ EW of about 1 nm


def test_white_dwarf_balmer_lines_are_much_deeper_than_in_g_stars(noisy):
    for lo, hi, windows in [(466, 506, [(455, 462), (520, 545)]),  # Hβ
                            (424, 444, [(418, 424), (455, 462)])]:  # Hγ  # fmt: skip
        wd = np.median(_equivalent_width(noisy, "WD", lo, hi, windows))
        g = np.median(_equivalent_width(noisy, "G", lo, hi, windows))
        assert wd > 2.0 and wd > 3 * max(g, 0.3), (lo, wd, g)


def test_emission_line_stars_have_h_alpha_above_the_continuum(noisy):
    wl = noisy.wavelength
    k = np.argmin(np.abs(wl - 656.28))
    fractions = {}
    for code in ("ELS", "B"):
        flux, error = _select(noisy, code)
        cont = _continuum(wl, flux, [(600, 630), (685, 720)])
        excess = (flux[:, k] - cont[:, k]) / error[:, k]
        fractions[code] = np.mean(excess > 3)
        if code == "B":
            assert np.median(excess) < 0.5
    assert fractions["ELS"] > 0.9 and fractions["B"] < 0.05, fractions


def test_carbon_stars_show_swan_band_depressions(noisy):
    windows = [(518, 528), (566, 590)]
    swan = {c: np.median(_equivalent_width(noisy, c, 540, 560, windows)) / 20 for c in "KC"}
    assert swan["C"] > 0.1 and swan["C"] > swan["K"] + 0.1, swan  # mean fractional depth


def test_m_stars_show_tio_bands(noisy):
    windows = [(640, 700), (1000, 1050)]
    tio = {c: np.median(_equivalent_width(noisy, c, 710, 730, windows)) / 20 for c in "KM"}
    assert tio["M"] > 0.1 and tio["M"] > tio["K"] + 0.1, tio


def test_binaries_are_not_single_blackbodies(noisy):
    wl = noisy.wavelength
    temps = np.geomspace(2000, 80000, 160)
    a_v = np.arange(0.0, 3.01, 0.1)
    bb = 1.0 / (wl**5 * np.expm1(HC_K / (wl * temps[:, None])))
    reddening = 10 ** (-0.4 * a_v[:, None] * (wl / 550.0) ** -1.5)
    models = (bb[:, None, :] * reddening[None]).reshape(-1, wl.size)
    models /= models.mean(axis=1, keepdims=True)
    mask = wl > 375  # no Balmer jump, no lines: the continuum shape alone
    for centre in (656.28, 486.13, 434.05, 410.17, 854.2):
        mask &= np.abs(wl - centre) > 20
    reduced = {}
    for code in ("G", "A", "BIN"):
        flux, error = _select(noisy, code)
        w = mask / error**2  # best scale per model, chi^2 = sum w f^2 - (sum w f m)^2 / sum w m^2
        chi2 = (w * flux**2).sum(1)[:, None] - ((w * flux) @ models.T) ** 2 / (w @ (models**2).T)
        reduced[code] = np.median(chi2.min(axis=1)) / mask.sum()
    assert reduced["G"] < 2 and reduced["A"] < 2, reduced  # single stars: a blackbody fits
    assert reduced["BIN"] > 5 * reduced["G"] and reduced["BIN"] > 5, reduced


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n": 5}, "n"),
        ({"n": 0}, "n"),
        ({"n": 2.5}, "n"),
        ({"counts": {"X": 3}}, "counts"),
        ({"counts": {"G": -1}}, "counts"),
        ({"counts": {"G": 0}}, "counts"),
        ({"counts": {"G": 1.5}}, "counts"),
        ({"n": 10, "counts": {"G": 5}}, "n"),
        ({"n": 100, "n_samples": 9}, "n_samples"),
        ({"n": 100, "snr": 0}, "snr"),
        ({"n": 100, "snr": -1.0}, "snr"),
        ({"n": 100, "snr": float("nan")}, "snr"),
        ({"n": 100, "seed": -1}, "seed"),
    ],
)
def test_bad_input_names_the_argument(kwargs, argument):
    with pytest.raises(VanotebookInputError) as info:
        make_spectra(**kwargs)
    assert info.value.argument == argument
    assert isinstance(info.value, ValueError)


def test_bad_wavelength_samples():
    with pytest.raises(VanotebookInputError, match="n_samples"):
        spectra_wavelength(9)
