"""fit_greybody: recovery of injected truth, honest errors, censoring, distances, references."""

from __future__ import annotations

import inspect

import astropy.units as u
import numpy as np
import pytest

from vanotebook._errors import VanotebookInputError
from vanotebook.sed import FLAGS, fit_greybody

D = 1 * u.kpc


def _v(col):
    return np.asarray(getattr(col, "value", col), np.float64)


def _pulls(fit, name, truth):
    return (_v(fit[name]) - truth) / _v(fit[f"{name}_err"])


# ----------------------------------------------------------------------------- recovery
def test_recovers_thin_free_beta(synth):
    t, m, b = synth.population(400, seed=2)
    flux, err = synth.observe(synth.greybody(t, m, b), rel=0.03, seed=3)
    fit = fit_greybody(flux, err, synth.bands, distance=D)
    assert np.median(np.abs(_v(fit["temperature"]) / t - 1)) < 0.03
    assert np.median(np.abs(_v(fit["mass"]) / m - 1)) < 0.08
    assert np.median(np.abs(_v(fit["beta"]) - b)) < 0.08
    assert np.all(fit["flags"] & FLAGS["not_converged"] == 0)
    assert fit["temperature"].unit == u.K and fit["mass"].unit == u.Msun
    assert 0.55 < np.median(fit["chi2_red"]) < 0.85  # dof 2: median of chi2_2 / 2 = 0.69


def test_recovers_thin_fixed_beta(synth):
    t, m, b = synth.population(300, seed=4, beta=1.8)
    flux, err = synth.observe(synth.greybody(t, m, b), rel=0.05, seed=5)
    fit = fit_greybody(flux, err, synth.bands, distance=D, beta=1.8)
    assert "beta_err" not in fit.colnames
    assert np.all(fit["beta"] == 1.8)
    assert np.median(np.abs(_v(fit["temperature"]) / t - 1)) < 0.02
    assert np.median(np.abs(_v(fit["mass"]) / m - 1)) < 0.05


def test_errors_are_honest_pulls_normal(synth):
    """Over 2,000 sources the pulls of T, M and beta have mean ~0 and width ~1."""
    t, m, b = synth.population(2000, seed=6)
    flux, err = synth.observe(synth.greybody(t, m, b), rel=0.03, seed=7)
    fit = fit_greybody(flux, err, synth.bands, distance=D)
    for name, truth in (("temperature", t), ("mass", m), ("beta", b)):
        pull = _pulls(fit, name, truth)
        assert abs(np.mean(pull)) < 0.1, name
        assert 0.9 < np.std(pull) < 1.1, name
        assert 0.9 < np.mean(np.abs(pull) < 1) / 0.6827 < 1.1, name


def test_wrong_error_weighting_would_show(synth):
    """Errors scale with the stated errors: doubling them doubles T's error (no chi2 rescaling)."""
    t, m, b = synth.population(50, seed=8)
    flux, err = synth.observe(synth.greybody(t, m, b), rel=0.03, seed=9)
    one = fit_greybody(flux, err, synth.bands, distance=D)
    two = fit_greybody(flux, 2 * err, synth.bands, distance=D)
    ratio = _v(two["temperature_err"]) / _v(one["temperature_err"])
    np.testing.assert_allclose(np.median(ratio), 2.0, rtol=0.05)


def test_heteroscedastic_errors_are_weighted(synth):
    """A band with a 10x larger error counts less: with it biased, the fit barely moves."""
    t, m, b = np.array([18.0]), np.array([100.0]), np.array([1.8])
    s = synth.greybody(t, m, b)
    err = 0.02 * s
    bad = s.copy()
    bad[0, 0] *= 1.5  # 70 um off by 50%...
    err[0, 0] *= 25.0  # ...but with an error to match
    fit = fit_greybody(bad * u.Jy, err * u.Jy, synth.bands, distance=D, beta=1.8)
    assert abs(_v(fit["temperature"])[0] / 18.0 - 1) < 0.01


def test_thick_with_size(synth):
    """Optically thick sources (tau = 1 near 100-200 um): recovered; a thin fit is biased."""
    n = 200
    t, m, b = synth.population(n, seed=10, beta=2.0)
    m = 10 ** np.random.default_rng(11).uniform(1.7, 2.3, n)  # tau = 1 at ~100-200 um
    size = 20 * u.arcsec
    s = synth.greybody(t, m, b, model="thick", size=size)
    flux, err = synth.observe(s, rel=0.03, seed=12)
    fit = fit_greybody(flux, err, synth.bands, distance=D, beta=2.0, model="thick", size=size)
    assert np.median(np.abs(_v(fit["temperature"]) / t - 1)) < 0.03
    assert np.median(np.abs(_v(fit["mass"]) / m - 1)) < 0.1
    lam0 = _v(fit["lambda0"])
    assert 80 < np.median(lam0) < 400
    thin = fit_greybody(flux, err, synth.bands, distance=D, beta=2.0)
    assert np.median(_v(thin["temperature"]) / t) < 0.9  # thin fits of thick sources are cold
    pull = _pulls(fit, "temperature", t)
    assert 0.8 < np.std(pull) < 1.2
    b_free = synth.population(n, seed=10)[2]
    flux, err = synth.observe(synth.greybody(t, m, b_free, model="thick", size=size), rel=0.03,
                              seed=12)
    free = fit_greybody(flux, err, synth.bands, distance=D, model="thick", size=size)
    assert np.median(np.abs(_v(free["temperature"]) / t - 1)) < 0.03
    assert np.median(np.abs(_v(free["beta"]) - b_free)) < 0.08
    assert 0.8 < np.std(_pulls(free, "beta", b_free)) < 1.2


def test_thick_with_lambda0(synth):
    n = 200
    t, m, b = synth.population(n, seed=13, beta=2.0)
    lam0 = 150 * u.um
    s = synth.greybody(t, m, b, model="thick", lambda0=lam0)
    flux, err = synth.observe(s, rel=0.03, seed=14)
    fit = fit_greybody(flux, err, synth.bands, distance=D, beta=2.0, model="thick",
                       lambda0=lam0)
    assert np.median(np.abs(_v(fit["temperature"]) / t - 1)) < 0.03
    assert np.median(np.abs(_v(fit["mass"]) / m - 1)) < 0.1
    assert fit["size"].unit == u.arcsec and np.all(_v(fit["size"]) > 0)


# ----------------------------------------------------------------------------- censoring
def _three_band_source(synth):
    """T = 15 K seen at 160-500 um only (fixed beta), and its 70 um flux."""
    t, m, b = np.array([15.0]), np.array([50.0]), np.array([2.0])
    s = synth.greybody(t, m, b)
    err = 0.1 * s
    rng = np.random.default_rng(3)
    obs = s + err * rng.standard_normal(s.shape)
    obs[0, 0] = np.nan
    return s, obs, err


def test_upper_limit_pulls_the_fit_the_right_way(synth):
    _s, obs, err = _three_band_source(synth)
    free = fit_greybody(obs * u.Jy, err * u.Jy, synth.bands, distance=D, beta=2.0)
    t_free = _v(free["temperature"])[0]
    s70 = synth.greybody(_v(free["temperature"]), _v(free["mass"]), 2.0)[0, 0]
    assert np.isfinite(t_free) and free["n_bands"][0] == 4
    # a 70 um limit at a third of the unconstrained fit's 70 um flux (1 sigma = limit / 3)
    lim = s70 / 3
    flux = obs.copy()
    error = err.copy()
    flux[0, 0], error[0, 0] = lim, lim / 3
    upper = np.array([[True, False, False, False, False]])
    cen = fit_greybody(flux * u.Jy, error * u.Jy, synth.bands, distance=D, beta=2.0,
                       upper_limit=upper)
    t_cen = _v(cen["temperature"])[0]
    assert t_cen < t_free - 0.5 * _v(free["temperature_err"])[0]  # colder, significantly
    s70_cen = synth.greybody(t_cen, _v(cen["mass"]), 2.0)[0, 0]
    assert s70_cen < lim + 2 * lim / 3  # the model now respects the limit
    assert cen["n_upper"][0] == 1 and cen["flags"][0] & FLAGS["upper_limits"]
    # the violated limit is a penalty in the likelihood: chi2 grows by more than the
    # detections' share alone would allow
    chi2_free = free["chi2_red"][0] * (4 - 2)
    chi2_cen = cen["chi2_red"][0] * (5 - 2)
    resid = (obs[0, 1:] - synth.greybody(t_cen, _v(cen["mass"]), 2.0)[0, 1:]) / err[0, 1:]
    assert chi2_cen > np.sum(resid**2) + 0.5 and chi2_cen > chi2_free
    assert cen["n_bands"][0] == 5
    # a loose limit (100x above the model) leaves the fit as it was
    flux[0, 0], error[0, 0] = 100 * s70, 100 * s70 / 3
    loose = fit_greybody(flux * u.Jy, error * u.Jy, synth.bands, distance=D, beta=2.0,
                         upper_limit=upper)
    np.testing.assert_allclose(_v(loose["temperature"]), t_free, rtol=1e-3)
    # a 3-sigma limit at 3x the model: censored it hardly moves T; taken as a detection of
    # that flux it would drag T up -- censoring is not a flux
    flux[0, 0], error[0, 0] = 3 * s70, s70
    cen3 = fit_greybody(flux * u.Jy, error * u.Jy, synth.bands, distance=D, beta=2.0,
                        upper_limit=upper)
    det = fit_greybody(flux * u.Jy, error * u.Jy, synth.bands, distance=D, beta=2.0)
    t_err = _v(free["temperature_err"])[0]
    shift_cen = abs(_v(cen3["temperature"])[0] - t_free)
    shift_det = _v(det["temperature"])[0] - t_free
    assert shift_cen < 0.3 * t_err
    assert shift_det > 0.5 * t_err and shift_det > 3 * shift_cen


def test_upper_limit_above_model_is_not_a_mask(synth):
    """A limit just above the model still constrains the fit from above (censored, not masked)."""
    _s, obs, err = _three_band_source(synth)
    free = fit_greybody(obs * u.Jy, err * u.Jy, synth.bands, distance=D, beta=2.0)
    s70 = synth.greybody(_v(free["temperature"]), _v(free["mass"]), 2.0)[0, 0]
    flux, error = obs.copy(), err.copy()
    flux[0, 0], error[0, 0] = 1.2 * s70, 0.4 * s70
    upper = np.array([True, False, False, False, False])
    cen = fit_greybody(flux * u.Jy, error * u.Jy, synth.bands, distance=D, beta=2.0,
                       upper_limit=upper)
    assert _v(cen["temperature"])[0] < _v(free["temperature"])[0]
    assert _v(cen["temperature_err"])[0] < _v(free["temperature_err"])[0]


# ----------------------------------------------------------------------------- scalings, gaps
def test_distance_scaling(synth):
    t, m, b = synth.population(30, seed=15)
    flux, err = synth.observe(synth.greybody(t, m, b), rel=0.03, seed=16)
    near = fit_greybody(flux, err, synth.bands, distance=1 * u.kpc)
    far = fit_greybody(flux, err, synth.bands, distance=3000 * u.pc)
    np.testing.assert_allclose(_v(far["temperature"]), _v(near["temperature"]), rtol=1e-6)
    np.testing.assert_allclose(_v(far["mass"]) / _v(near["mass"]), 9.0, rtol=1e-6)
    np.testing.assert_allclose(_v(far["luminosity"]) / _v(near["luminosity"]), 9.0, rtol=1e-6)
    # per-source distances
    d = np.where(np.arange(30) % 2, 1.0, 3.0) * u.kpc
    mixed = fit_greybody(flux, err, synth.bands, distance=d)
    np.testing.assert_allclose(_v(mixed["mass"])[::2], _v(far["mass"])[::2], rtol=1e-6)
    np.testing.assert_allclose(_v(mixed["mass"])[1::2], _v(near["mass"])[1::2], rtol=1e-6)


def test_luminosity_matches_analytic_thin(synth):
    """L = 4 pi M kappa0 nu0^-beta (2h/c^2) (kT/h)^(4+beta) Gamma(4+beta) zeta(4+beta)."""
    from astropy import constants as c
    from scipy.special import gamma, zeta

    t, m, b = np.array([20.0, 12.0]), np.array([100.0, 10.0]), np.array([2.0, 1.5])
    s = synth.greybody(t, m, b)
    fit = fit_greybody(s * u.Jy, 0.01 * s * u.Jy, synth.bands, distance=D)
    tt = _v(fit["temperature"]) * u.K
    bb = _v(fit["beta"])
    mm = _v(fit["mass"]) * u.Msun
    x = (c.k_B * tt / c.h).to(u.Hz)
    lum = (4 * np.pi * mm * synth.kappa0 * (x / synth.nu0.to(u.Hz)) ** bb * 2 * c.h / c.c**2
           * x**4 * gamma(4 + bb) * zeta(4 + bb)).to(u.Lsun)
    np.testing.assert_allclose(_v(fit["luminosity"]), lum.value, rtol=2e-3)


def test_bands_missing_at_random(synth):
    t, m, b = synth.population(400, seed=17, beta=2.0)
    flux, err = synth.observe(synth.greybody(t, m, b), rel=0.03, seed=18)
    rng = np.random.default_rng(19)
    f = flux.value.copy()
    f[rng.random(f.shape) < 0.25] = np.nan
    fit = fit_greybody(f * u.Jy, err, synth.bands, distance=D, beta=2.0)
    n_ok = np.sum(np.isfinite(f), axis=1)
    np.testing.assert_array_equal(fit["n_bands"], n_ok)
    few = n_ok < 2
    assert np.all((fit["flags"][few] & FLAGS["few_bands"]) > 0)
    assert np.all(np.isnan(_v(fit["temperature"])[few]))
    ok = n_ok >= 4
    assert np.median(np.abs(_v(fit["temperature"])[ok] / t[ok] - 1)) < 0.03
    pull = _pulls(fit, "temperature", t)[n_ok >= 3]
    assert 0.8 < np.std(pull) < 1.25


def test_colour_correction(synth):
    """Fluxes measured through a band response (factors K): giving K recovers the truth."""
    t, m, b = synth.population(100, seed=20, beta=2.0)
    k = np.array([1.05, 0.95, 1.0, 1.02, 1.03])
    flux, err = synth.observe(synth.greybody(t, m, b) * k, rel=0.01, seed=21)
    plain = fit_greybody(flux, err, synth.bands, distance=D, beta=2.0)
    corr = fit_greybody(flux, err, synth.bands, distance=D, beta=2.0, colour_correction=k)
    assert (np.median(np.abs(_v(corr["temperature"]) / t - 1))
            < 0.5 * np.median(np.abs(_v(plain["temperature"]) / t - 1)))
    calls = []

    def cc(wavelength, temperature, beta):
        calls.append(temperature)
        return np.broadcast_to(k, (len(temperature), len(wavelength)))

    func = fit_greybody(flux, err, synth.bands, distance=D, beta=2.0, colour_correction=cc)
    np.testing.assert_allclose(_v(func["temperature"]), _v(corr["temperature"]), rtol=1e-6)
    assert len(calls) == 3 and calls[0].unit == u.K


# ----------------------------------------------------------------------------- references
def test_agrees_with_scipy_curve_fit(synth):
    """Same data, scipy's curve_fit on (T, M, beta) with absolute sigma: same answers."""
    from scipy.optimize import curve_fit

    t, m, b = synth.population(15, seed=22)
    flux, err = synth.observe(synth.greybody(t, m, b), rel=0.05, seed=23)
    ours = fit_greybody(flux, err, synth.bands, distance=D)
    for i in range(15):
        def model(_, tt, mm, bb):
            return synth.greybody(np.array([tt]), np.array([mm]), np.array([bb]))[0]

        p0 = [_v(ours["temperature"])[i] * 1.1, _v(ours["mass"])[i] * 0.8, 1.8]
        popt, pcov = curve_fit(model, np.zeros(5), flux.value[i], p0=p0, sigma=err.value[i],
                               absolute_sigma=True, maxfev=20000)
        perr = np.sqrt(np.diag(pcov))
        np.testing.assert_allclose([_v(ours[c])[i] for c in ("temperature", "mass", "beta")],
                                   popt, rtol=2e-4)
        np.testing.assert_allclose(
            [_v(ours[c])[i] for c in ("temperature_err", "mass_err", "beta_err")], perr,
            rtol=2e-3)


def test_mcmc_agrees_with_lsq(synth):
    t, m, b = synth.population(3, seed=24)
    flux, err = synth.observe(synth.greybody(t, m, b), rel=0.02, seed=25)
    lsq = fit_greybody(flux, err, synth.bands, distance=D)
    mc = fit_greybody(flux, err, synth.bands, distance=D, method="mcmc", mcmc_steps=1200,
                      mcmc_burn=400, seed=1)
    for name in ("temperature", "mass", "beta"):
        diff = np.abs(_v(mc[name]) - _v(lsq[name])) / _v(lsq[f"{name}_err"])
        assert np.all(diff < 0.35), (name, diff)
        ratio = _v(mc[f"{name}_err"]) / _v(lsq[f"{name}_err"])
        assert np.all((ratio > 0.8) & (ratio < 1.25)), (name, ratio)
    assert mc.meta["samples"].shape[0] == 3
    again = fit_greybody(flux, err, synth.bands, distance=D, method="mcmc", mcmc_steps=1200,
                         mcmc_burn=400, seed=1)
    np.testing.assert_array_equal(_v(again["temperature"]), _v(mc["temperature"]))


def test_dask_equals_local(synth):
    from distributed import Client, LocalCluster

    t, m, b = synth.population(240, seed=26)
    flux, err = synth.observe(synth.greybody(t, m, b), rel=0.03, seed=27)
    local = fit_greybody(flux, err, synth.bands, distance=D)
    seen = []
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        dist = fit_greybody(flux, err, synth.bands, distance=D, chunks=50, client=client,
                            progress=lambda done, total: seen.append((done, total)))
    for c in local.colnames:
        np.testing.assert_allclose(_v(dist[c]), _v(local[c]), rtol=1e-12, err_msg=c)
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)


def test_kernels_on_array_api_strict(synth):
    import array_api_strict as xps

    from vanotebook.sed import _kernels as K

    t, m, b = synth.population(20, seed=28)
    flux, err = synth.observe(synth.greybody(t, m, b), rel=0.03, seed=29)
    nu = synth.bands.to_value(u.Hz, equivalencies=u.spectral())
    ln_a = np.full((20, 1), K.LN_MSUN - np.log(D.to_value(u.m) ** 2))
    cen = np.zeros((20, 5), bool)
    cen[:, 0] = True
    args = (flux.value, err.value, np.ones((20, 5), bool), cen, np.log(nu), ln_a)
    ref = K.fit_batch(*args, K.ModelSpec())
    got = K.fit_batch(*(xps.asarray(a) for a in args), K.ModelSpec())
    for key in ("p", "cov", "fmin"):
        np.testing.assert_allclose(np.asarray(got[key]), ref[key], rtol=1e-6, atol=1e-12)


# ----------------------------------------------------------------------------- bad input
@pytest.fixture
def good(synth):
    t, m, b = synth.population(4, seed=30)
    flux, err = synth.observe(synth.greybody(t, m, b))
    return flux, err


def test_named_errors(synth, good):
    flux, err = good
    with pytest.raises(VanotebookInputError, match="wavelength: expected at least 3 bands"):
        fit_greybody(flux[:, :2], err[:, :2], synth.bands[:2], distance=D)
    fit_greybody(flux[:, :2], err[:, :2], synth.bands[:2], distance=D, beta=2.0)  # 2 free: ok
    with pytest.raises(VanotebookInputError, match="error: expected non-negative"):
        fit_greybody(flux, -err, synth.bands, distance=D)
    with pytest.raises(VanotebookInputError, match="wavelength: expected a Quantity"):
        fit_greybody(flux, err, synth.bands.value, distance=D)
    with pytest.raises(VanotebookInputError, match="distance: expected a Quantity"):
        fit_greybody(flux, err, synth.bands, distance=1000.0)
    with pytest.raises(VanotebookInputError, match="distance: expected a Quantity"):
        fit_greybody(flux, err, synth.bands, distance=1 * u.Jy)
    with pytest.raises(VanotebookInputError, match="flux: expected a Quantity"):
        fit_greybody(flux.value, err, synth.bands, distance=D)
    with pytest.raises(VanotebookInputError, match="model"):
        fit_greybody(flux, err, synth.bands, distance=D, model="grey")
    with pytest.raises(VanotebookInputError, match="size/lambda0"):
        fit_greybody(flux, err, synth.bands, distance=D, model="thick")
    with pytest.raises(VanotebookInputError, match="flux: expected shape"):
        fit_greybody(flux, err, synth.bands[:4], distance=D)
    with pytest.raises(VanotebookInputError, match="upper_limit"):
        fit_greybody(flux, err, synth.bands, distance=D, upper_limit=np.ones(3, bool))
    with pytest.raises(VanotebookInputError, match="progress"):
        fit_greybody(flux, err, synth.bands, distance=D, progress="yes")
    with pytest.raises(VanotebookInputError, match="device"):
        fit_greybody(flux, err, synth.bands, distance=D, device="tpu")
    with pytest.raises(VanotebookInputError, match="mcmc_walkers"):
        fit_greybody(flux, err, synth.bands, distance=D, method="mcmc", mcmc_walkers=4)
    with pytest.raises(VanotebookInputError, match="error: expected positive errors"):
        fit_greybody(flux, 0 * err, synth.bands, distance=D)


def test_progress_bar_and_callback(synth, good):
    flux, err = good
    seen = []
    fit_greybody(flux, err, synth.bands, distance=D, chunks=2,
                 progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 2), (1, 2), (2, 2)]
    fit_greybody(flux, err, synth.bands, distance=D, progress=True)  # a tqdm bar, no error


def test_options_are_keyword_only():
    sig = inspect.signature(fit_greybody)
    positional = [p.name for p in sig.parameters.values()
                  if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["flux", "error", "wavelength"]


def test_one_source_1d(synth, good):
    flux, err = good
    fit = fit_greybody(flux[0], err[0], synth.bands, distance=D)
    assert len(fit) == 1
    from vanotebook.provenance import Provenance

    prov = Provenance.from_dict(fit.meta["provenance"])
    assert prov.activity == "vanotebook.sed.fit_greybody"


def test_greybody_sed_reproduces_the_model(synth):
    from vanotebook.sed import greybody_sed

    t, m, b = synth.population(5, seed=31)
    s = synth.greybody(t, m, b)
    for kw in ({}, {"model": "thick", "size": 20 * u.arcsec},
               {"model": "thick", "lambda0": 150 * u.um}):
        fit = fit_greybody(s * u.Jy, 0.05 * s * u.Jy, synth.bands, distance=D, **kw)
        model, lo, hi = greybody_sed(fit, synth.bands, n_samples=200)
        ref = synth.greybody(_v(fit["temperature"]), _v(fit["mass"]), _v(fit["beta"]), **kw)
        np.testing.assert_allclose(model.to_value(u.Jy), ref, rtol=1e-9)
        assert np.all((lo <= model * 1.0001) & (model <= hi * 1.0001))
