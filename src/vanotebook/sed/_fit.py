"""`fit_greybody`: input checks, units, the local / Dask dispatch, MCMC, the result table."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import QTable

from .._errors import VanotebookInputError, check_choice, check_positive
from . import _kernels as K

__all__ = ["FLAGS", "METHODS", "MODELS", "FitSpec", "fit_greybody", "greybody_sed", "validate"]

MODELS = ("thin", "thick")
METHODS = ("lsq", "mcmc")
#: bits of the ``flags`` column
FLAGS = {"few_bands": 1, "at_bound": 2, "not_converged": 4, "upper_limits": 8, "poor_fit": 16}
DEFAULT_CHUNK = 20_000  # sources per Dask partition
_FLUX = u.Jy
_POOR_FIT_P = 1e-3


@dataclass
class FitSpec:
    """The validated inputs of one fit, in internal units (checked before any work)."""

    flux: np.ndarray  # (n, b) Jy
    sigma: np.ndarray  # (n, b) Jy
    used: np.ndarray  # (n, b) bool
    censored: np.ndarray  # (n, b) bool
    wavelength: u.Quantity  # (b,)
    ln_nu: np.ndarray  # (b,)
    d_m: np.ndarray  # (n,) distance in m
    beta: np.ndarray | None  # (n,) fixed, or None (free)
    model: str  # thin, thick_size, thick_lambda0
    kspec: K.ModelSpec
    ln_omega: np.ndarray | None  # (n,)
    ln_nu_tau: np.ndarray | None  # (n,)
    colour: Any  # None, (n, b) factors, or a callable
    method: str
    n_free: int
    params: dict
    device: str = "cpu"


def _as_quantity(value: Any, argument: str, physical: str, *, equivalencies=None):
    if not isinstance(value, u.Quantity):
        raise VanotebookInputError(argument, f"a Quantity ({physical})", value)
    try:
        value.to(_unit_for(physical), equivalencies=equivalencies or [])
    except u.UnitConversionError as exc:
        raise VanotebookInputError(argument, f"a Quantity ({physical})",
                                   f"units of {value.unit}") from exc
    return value


def _unit_for(physical: str) -> u.UnitBase:
    return {"wavelength or frequency": u.m, "flux density": u.Jy, "length": u.m,
            "area per mass": u.m**2 / u.kg, "angle": u.rad}[physical]


def _per_source(value: Any, n: int, argument: str, expected: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise VanotebookInputError(argument, f"{expected}: one value or one per source ({n})",
                                   value)
    return arr


def validate(flux, error, wavelength, *, distance, beta, upper_limit, model, kappa0, nu0,
             size, lambda0, colour_correction, method) -> FitSpec:
    """Check every input and convert it to internal units; raises `VanotebookInputError`."""
    check_choice("model", model, MODELS)
    check_choice("method", method, METHODS)
    wavelength = _as_quantity(wavelength, "wavelength", "wavelength or frequency",
                              equivalencies=u.spectral())
    wavelength = np.atleast_1d(wavelength.to(u.um, equivalencies=u.spectral()))
    if wavelength.ndim != 1 or not np.all(np.isfinite(wavelength.value)) or np.any(
            wavelength.value <= 0):
        raise VanotebookInputError("wavelength", "positive finite wavelengths, one per band",
                                   wavelength)
    nb = wavelength.size
    flux = _as_quantity(flux, "flux", "flux density")
    error = _as_quantity(error, "error", "flux density")
    f = np.atleast_2d(flux.to_value(_FLUX)).astype(np.float64)
    s = np.atleast_2d(error.to_value(_FLUX)).astype(np.float64)
    if f.ndim != 2 or f.shape[1] != nb:
        raise VanotebookInputError("flux", f"shape (n_sources, {nb}) (one column per "
                                   "wavelength)", flux)
    if s.shape != f.shape:
        raise VanotebookInputError("error", f"the shape of flux {f.shape}", error)
    n = f.shape[0]
    n_free = 3 if beta is None else 2
    if nb < n_free:
        raise VanotebookInputError(
            "wavelength", f"at least {n_free} bands for {n_free} free parameters "
            f"(T, M{', beta' if beta is None else ''})", f"{nb} band(s)")
    if np.any(s < 0):
        raise VanotebookInputError("error", "non-negative 1-sigma errors",
                                   f"{int(np.sum(s < 0))} negative value(s)")
    if upper_limit is None:
        cen = np.zeros_like(f, dtype=bool)
    else:
        cen = np.asarray(upper_limit)
        if cen.dtype != bool:
            raise VanotebookInputError("upper_limit", "None or a boolean array", upper_limit)
        try:
            cen = np.broadcast_to(cen, f.shape).copy()
        except ValueError as exc:
            raise VanotebookInputError("upper_limit", f"booleans of shape {f.shape}",
                                       upper_limit) from exc
    used = np.isfinite(f) & np.isfinite(s)
    if np.any(used & (s == 0)):
        raise VanotebookInputError("error", "positive errors where a flux is given",
                                   f"{int(np.sum(used & (s == 0)))} zero error(s)")
    distance = _as_quantity(distance, "distance", "length")
    d_m = _per_source(distance.to_value(u.m), n, "distance", "a distance")
    if not np.all(np.isfinite(d_m) & (d_m > 0)):
        raise VanotebookInputError("distance", "positive finite distances", distance)
    if beta is not None:
        if isinstance(beta, u.Quantity | bool):
            raise VanotebookInputError("beta", "None (free) or a number", beta)
        beta = _per_source(beta, n, "beta", "a dust emissivity index")
        lo, hi = K.BOUNDS["beta"]
        if not np.all((beta >= lo) & (beta <= hi)):
            raise VanotebookInputError("beta", f"values in [{lo}, {hi}]", beta)
    kappa0 = _as_quantity(kappa0, "kappa0", "area per mass")
    check_positive("kappa0", float(kappa0.to_value(u.m**2 / u.kg)))
    nu0 = _as_quantity(nu0, "nu0", "wavelength or frequency", equivalencies=u.spectral())
    nu0_hz = float(nu0.to_value(u.Hz, equivalencies=u.spectral()))
    check_positive("nu0", nu0_hz)
    ln_omega = ln_nu_tau = None
    kind = "thin"
    if model == "thick":
        if (size is None) == (lambda0 is None):
            raise VanotebookInputError("size/lambda0", "exactly one of size (the source's "
                                       "angular diameter) or lambda0 (where tau = 1) for "
                                       "model='thick'", {"size": size, "lambda0": lambda0})
        if size is not None:
            size = _as_quantity(size, "size", "angle")
            theta = _per_source(size.to_value(u.rad), n, "size", "an angular diameter")
            if not np.all(theta > 0):
                raise VanotebookInputError("size", "positive angular diameters", size)
            ln_omega = np.log(math.pi * (theta / 2) ** 2)
            kind = "thick_size"
        else:
            lambda0 = _as_quantity(lambda0, "lambda0", "wavelength or frequency",
                                   equivalencies=u.spectral())
            nu_tau = _per_source(lambda0.to_value(u.Hz, equivalencies=u.spectral()), n,
                                 "lambda0", "a wavelength")
            if not np.all(nu_tau > 0):
                raise VanotebookInputError("lambda0", "positive wavelengths", lambda0)
            ln_nu_tau = np.log(nu_tau)
            kind = "thick_lambda0"
    elif size is not None or lambda0 is not None:
        raise VanotebookInputError("model", "'thick' when size or lambda0 is given", model)
    colour = colour_correction
    if colour is not None and not callable(colour):
        cc = np.asarray(colour, dtype=np.float64)
        try:
            cc = np.broadcast_to(cc, f.shape).copy()
        except ValueError as exc:
            raise VanotebookInputError("colour_correction", f"None, factors of shape ({nb},) "
                                       f"or {f.shape}, or a callable", colour) from exc
        if not np.all(np.isfinite(cc) & (cc > 0)):
            raise VanotebookInputError("colour_correction", "positive finite factors", colour)
        colour = cc
    params = {"model": model, "beta": None if beta is None else beta.tolist(),
              "kappa0_m2_kg": float(kappa0.to_value(u.m**2 / u.kg)), "nu0_hz": nu0_hz,
              "wavelength_um": wavelength.to_value(u.um).tolist(), "method": method,
              "n_sources": n,
              "colour_correction": ("callable" if callable(colour) else
                                    None if colour is None else "factors")}
    kspec = K.ModelSpec(kind, math.log(nu0_hz), math.log(float(kappa0.to_value(u.m**2 / u.kg))))
    f = np.where(used, f, 0.0)
    s = np.where(used, s, 1.0)
    ln_nu = np.log(wavelength.to_value(u.Hz, equivalencies=u.spectral()))
    return FitSpec(f, s, used, cen & used, wavelength, ln_nu, d_m, beta, kind, kspec,
                   ln_omega, ln_nu_tau, colour, method, n_free, params)


def fit_block(flux, sigma, used, censored, ln_nu, d_m, kspec, beta=None, ln_omega=None,
              ln_nu_tau=None, ln_cc=None, device: str = "cpu") -> dict[str, np.ndarray]:
    """Fit one block of sources (numpy in, numpy out): the task of a Dask partition.

    With ``device="gpu"`` the kernels run on CuPy arrays (the same array-API code).
    """
    n = flux.shape[0]
    xp = np
    if device == "gpu":  # pragma: no cover - needs a GPU
        import cupy as xp

    def col(a):
        return None if a is None else xp.asarray(np.asarray(a, np.float64).reshape(n, 1))

    def arr(a):
        return None if a is None else xp.asarray(a)

    ln_a = col(K.LN_MSUN - np.log(d_m**2))
    extra = {"ln_omega": col(ln_omega), "ln_nu_tau": col(ln_nu_tau)}
    out = K.fit_batch(arr(flux), arr(sigma), arr(used), arr(censored), arr(ln_nu), ln_a, kspec,
                      beta=col(beta), ln_cc=arr(ln_cc), **extra)
    lum, lum_err = K.luminosity(out["p"], out["cov"], ln_a, kspec, d2=col(d_m**2), **extra)
    out["luminosity"], out["luminosity_err"] = lum, lum_err
    if xp is not np:  # pragma: no cover - needs a GPU
        out = {k: xp.asnumpy(v) for k, v in out.items()}
    return out


def _blocks(spec: FitSpec, chunks: int):
    n = spec.flux.shape[0]
    for lo in range(0, n, chunks):
        sl = slice(lo, min(n, lo + chunks))
        yield sl


def _block_args(spec: FitSpec, sl: slice, ln_cc) -> tuple[tuple, dict]:
    def cut(a):
        return None if a is None else a[sl]

    args = (spec.flux[sl], spec.sigma[sl], spec.used[sl], spec.censored[sl], spec.ln_nu,
            spec.d_m[sl], spec.kspec)
    kw = {"beta": cut(spec.beta), "ln_omega": cut(spec.ln_omega),
          "ln_nu_tau": cut(spec.ln_nu_tau), "ln_cc": cut(ln_cc), "device": spec.device}
    return args, kw


def _run(spec: FitSpec, fit_rows: np.ndarray, ln_cc, *, chunks: int, client, steps):
    """Fit the rows ``fit_rows`` in partitions of ``chunks`` sources: on ``client`` or here."""
    sub = FitSpec(**{**spec.__dict__})
    for name in ("flux", "sigma", "used", "censored", "d_m", "beta", "ln_omega", "ln_nu_tau"):
        value = getattr(spec, name)
        if value is not None:
            setattr(sub, name, value[fit_rows])
    ln_cc = None if ln_cc is None else ln_cc[fit_rows]
    slices = list(_blocks(sub, chunks)) if len(fit_rows) else []
    total = len(slices)
    if steps is not None:
        steps(0, max(total, 1))
    results: list[dict | None] = [None] * total
    if client is not None and total:
        from distributed import as_completed

        futures = {}
        for i, sl in enumerate(slices):
            args, kw = _block_args(sub, sl, ln_cc)
            res = {"resources": {"GPU": 1}} if kw["device"] == "gpu" else {}
            futures[client.submit(fit_block, *args, **kw, pure=False, **res)] = i
        for done, fut in enumerate(as_completed(futures, loop=client.loop), start=1):
            results[futures[fut]] = fut.result()
            if steps is not None:
                steps(done, total)
    else:
        for i, sl in enumerate(slices):
            args, kw = _block_args(sub, sl, ln_cc)
            results[i] = fit_block(*args, **kw)
            if steps is not None:
                steps(i + 1, total)
    if steps is not None and not total:
        steps(1, 1)
    if not results:
        return None
    return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


def _mcmc(spec: FitSpec, rows: np.ndarray, lsq: dict, ln_cc, *, steps: int, walkers: int,
          burn: int, seed: int, progress) -> dict[str, np.ndarray]:
    """emcee posteriors, one source at a time (walkers evaluated as one batch)."""
    import emcee

    free = [0, 1, 2] if spec.beta is None else [0, 1]
    k = len(free)
    rng = np.random.default_rng(seed)
    lo = np.array([K.BOUNDS["ln_t"][0], K.BOUNDS["ln_m"][0], K.BOUNDS["beta"][0]])[free]
    hi = np.array([K.BOUNDS["ln_t"][1], K.BOUNDS["ln_m"][1], K.BOUNDS["beta"][1]])[free]
    n = len(rows)
    med = np.full((n, 3), np.nan)
    cov = np.full((n, 3, 3), np.nan)
    keep = min(500, (steps - burn) * walkers)
    samples = np.full((n, keep, k), np.nan)
    for j, row in enumerate(rows):
        beta_fixed = None if spec.beta is None else spec.beta[row]

        def log_prob(theta, row=row, beta_fixed=beta_fixed):
            m = theta.shape[0]
            p = np.empty((m, 3))
            p[:, free] = theta
            if beta_fixed is not None:
                p[:, 2] = beta_fixed

            def rep(a, m=m, row=row):
                return np.repeat(a[row:row + 1], m, axis=0)

            ln_a = np.full((m, 1), K.LN_MSUN - math.log(spec.d_m[row] ** 2))
            extra = {"ln_omega": None if spec.ln_omega is None else
                     np.full((m, 1), spec.ln_omega[row]),
                     "ln_nu_tau": None if spec.ln_nu_tau is None else
                     np.full((m, 1), spec.ln_nu_tau[row]),
                     "ln_cc": None if ln_cc is None else rep(ln_cc)}
            ln_s, jac = K.log_model(p, spec.ln_nu, ln_a, spec.kspec, **extra)
            f, _, _ = K.objective(ln_s, jac, rep(spec.flux), rep(spec.sigma), rep(spec.used),
                                  rep(spec.censored))
            inside = np.all((theta >= lo) & (theta <= hi), axis=1)
            return np.where(inside & np.isfinite(f), -0.5 * f, -np.inf)

        start = lsq["p"][j, free]
        c = lsq["cov"][j][np.ix_(free, free)]
        scale = np.sqrt(np.clip(np.diag(c), 1e-8, 0.25)) if np.all(np.isfinite(c)) else \
            np.full(k, 0.05)
        p0 = start + 0.1 * scale * rng.standard_normal((walkers, k))
        p0 = np.clip(p0, lo + 1e-6, hi - 1e-6)
        sampler = emcee.EnsembleSampler(walkers, k, log_prob, vectorize=True)
        sampler.random_state = np.random.RandomState(int(rng.integers(2**31))).get_state()
        sampler.run_mcmc(p0, steps, progress=False)
        chain = sampler.get_chain(discard=burn, flat=True)
        full = np.empty((chain.shape[0], 3))
        full[:, free] = chain
        full[:, 2] = full[:, 2] if beta_fixed is None else beta_fixed
        med[j] = np.median(full, axis=0)
        lin = np.column_stack([np.exp(full[:, 0]), np.exp(full[:, 1]), full[:, 2]])
        cov[j] = np.cov(lin, rowvar=False)
        samples[j] = chain[rng.choice(chain.shape[0], keep, replace=False)]
        if progress is not None:
            progress(j + 1, n)
    return {"p": med, "cov_linear": cov, "samples": samples}


def fit_greybody(
    flux: u.Quantity,
    error: u.Quantity,
    wavelength: u.Quantity,
    *,
    distance: u.Quantity,
    beta: float | np.ndarray | None = None,
    upper_limit: np.ndarray | None = None,
    model: str = "thin",
    kappa0: u.Quantity = 0.1 * u.cm**2 / u.g,
    nu0: u.Quantity = 1 * u.THz,
    size: u.Quantity | None = None,
    lambda0: u.Quantity | None = None,
    colour_correction: np.ndarray | Callable[..., Any] | None = None,
    method: str = "lsq",
    mcmc_steps: int = 1500,
    mcmc_walkers: int = 16,
    mcmc_burn: int = 500,
    seed: int = 0,
    chunks: int | None = None,
    client=None,
    device: str = "auto",
    progress: bool | Callable[[int, int], None] | None = None,
) -> QTable:
    """Fit greybodies to the SEDs of many sources at once.

    The optically thin model is ``S_nu = M kappa_nu B_nu(T) / d^2`` with
    ``kappa_nu = kappa0 (nu / nu0)^beta`` (``kappa0 = 0.1 cm^2/g`` at 1 THz: the
    Hi-GAL convention for the gas mass, a gas-to-dust ratio of 100 included). The
    thick model is ``S_nu = Omega B_nu(T) (1 - exp(-tau_nu))`` with
    ``tau_nu = M kappa_nu / (d^2 Omega)``: give the source's angular diameter
    ``size`` (``Omega = pi size^2 / 4``; the wavelength where ``tau = 1`` is then
    fitted, column ``lambda0``), or ``lambda0`` (then ``tau_nu = (nu / nu_lambda0)^beta``
    and the size follows from the mass, column ``size``).

    Every source is fitted at once by a batched Levenberg-Marquardt on
    ``(ln T, ln M, beta)`` from a grid start; upper limits enter the likelihood
    as censored terms, ``-2 ln Phi((S_lim - S_model) / sigma)``; errors come from
    the covariance at the minimum, not rescaled by the reduced chi-square (it is
    reported, so a user may).

    Parameters
    ----------
    flux, error : Quantity, shape (n_sources, n_bands) or (n_bands,)
        Flux densities and 1-sigma errors (any flux-density unit). NaN (in
        either) marks a band missing for a source. Where ``upper_limit`` is
        True, ``flux`` is the limit (e.g. 3 sigma) and ``error`` the 1-sigma noise.
    wavelength : Quantity, shape (n_bands,)
        Band wavelengths (or frequencies).
    distance : Quantity
        One distance, or one per source.
    beta : float, array or None
        Fixed emissivity index (one, or one per source); None fits it.
    upper_limit : bool array, optional
        Which entries are upper limits (shape of ``flux``, or ``(n_bands,)``).
    model : {"thin", "thick"}
    kappa0 : Quantity
        Opacity at ``nu0`` (area per mass).
    nu0 : Quantity
        Reference frequency (or wavelength) of ``kappa0``.
    size, lambda0 : Quantity, optional
        For ``model="thick"``: exactly one of them (see above).
    colour_correction : array or callable, optional
        Factors multiplying the monochromatic model in each band, shape
        ``(n_bands,)`` or ``(n_sources, n_bands)``, or a callable
        ``f(wavelength, temperature, beta) -> (n_sources, n_bands)`` factors
        (temperature a Quantity per source), re-evaluated at the fitted
        temperature (three passes).
    method : {"lsq", "mcmc"}
        "mcmc" samples each source's posterior with emcee (flat priors in
        ``ln T``, ``ln M`` and ``beta`` within the fit's bounds), started at the
        least-squares answer; values are posterior medians, errors posterior
        standard deviations; thinned samples in ``meta["samples"]``.
    mcmc_steps, mcmc_walkers, mcmc_burn : int
        emcee's chain length, walkers and discarded steps.
    seed : int
        Seed of the MCMC.
    chunks : int, optional
        Sources per Dask partition (default 20,000); with a ``client`` (or a
        default one) partitions are fitted on the cluster.
    client : distributed.Client, optional
        The cluster; default: the current client when there is more than one
        partition, else this process.
    device : {"auto", "cpu", "gpu"}
        Array backend of the least-squares kernels (CuPy on "gpu"; on a cluster,
        "gpu" partitions ask for a worker with the ``GPU`` resource). The MCMC
        runs on the CPU.
    progress : bool or callable, optional
        True shows a tqdm bar of the partitions (MCMC: sources) done; a callable is
        called as ``progress(done, total)``.

    Returns
    -------
    astropy.table.QTable
        One row per source: ``temperature``, ``temperature_err`` [K], ``mass``,
        ``mass_err`` [Msun], ``beta`` (and ``beta_err`` when free),
        ``luminosity``, ``luminosity_err`` [Lsun] (4 pi d^2 times the model's
        integral over 1 GHz - 300 THz), ``lambda0`` [um] or ``size`` [arcsec]
        (thick model), ``chi2_red``, ``n_bands`` (bands in the likelihood),
        ``n_upper`` and ``flags`` (bits of `FLAGS`: ``few_bands`` -- fewer bands
        than free parameters, not fitted, NaN --; ``at_bound``; ``not_converged``;
        ``upper_limits``; ``poor_fit`` -- chi-square probability below 1e-3).
        ``meta`` holds the model, constants and the provenance.

    Raises
    ------
    VanotebookInputError
        Before any work: fewer bands than free parameters, negative errors,
        wavelengths, fluxes or a distance without units, a bad option.
    """
    from ..cluster import devices, get_client
    from ..provenance import record

    spec = validate(flux, error, wavelength, distance=distance, beta=beta,
                    upper_limit=upper_limit, model=model, kappa0=kappa0, nu0=nu0, size=size,
                    lambda0=lambda0, colour_correction=colour_correction, method=method)
    if progress is not None and progress is not False:
        from ..xmatch._core import Steps, check_progress  # the shared progress helpers

        check_progress(progress)
    chunks = DEFAULT_CHUNK if chunks is None else check_positive("chunks", chunks, integer=True)
    if method == "mcmc":
        for name, val in (("mcmc_steps", mcmc_steps), ("mcmc_walkers", mcmc_walkers)):
            check_positive(name, val, integer=True)
        if not (isinstance(mcmc_burn, int) and 0 <= mcmc_burn < mcmc_steps):
            raise VanotebookInputError("mcmc_burn", f"an integer in [0, {mcmc_steps})",
                                       mcmc_burn)
        if mcmc_walkers < 2 * spec.n_free:
            raise VanotebookInputError("mcmc_walkers", f">= {2 * spec.n_free} (twice the "
                                       "free parameters)", mcmc_walkers)
    n = spec.flux.shape[0]
    n_used = spec.used.sum(axis=1)
    fit_rows = np.flatnonzero(n_used >= spec.n_free)
    n_parts = -(-len(fit_rows) // chunks)
    client = get_client(client) if (client is not None or n_parts > 1) else None
    spec.device = devices(device, client)[1]  # on a cluster, where the partitions run
    steps = Steps(progress, "greybody fits") if progress else None
    params = {**spec.params, "chunks": chunks, "device": spec.device,
              "mcmc": {"steps": mcmc_steps, "walkers": mcmc_walkers, "burn": mcmc_burn}
              if method == "mcmc" else None}
    with record("vanotebook.sed.fit_greybody", params,
                seed=seed if method == "mcmc" else None) as prov:
        ln_cc = None if spec.colour is None or callable(spec.colour) else np.log(spec.colour)
        passes = 3 if callable(spec.colour) else 1
        res = None
        for _ in range(passes):
            if callable(spec.colour):
                temp = np.full(n, 20.0)
                bet = np.full(n, 2.0) if spec.beta is None else spec.beta.copy()
                if res is not None:
                    temp[fit_rows] = np.exp(res["p"][:, 0])
                    bet[fit_rows] = res["p"][:, 2]
                cc = np.asarray(spec.colour(spec.wavelength, temp * u.K, bet), np.float64)
                cc = np.broadcast_to(cc, spec.flux.shape)
                if not np.all(np.isfinite(cc) & (cc > 0)):
                    raise VanotebookInputError("colour_correction", "a callable giving "
                                               "positive finite factors", spec.colour)
                ln_cc = np.log(cc)
            res = _run(spec, fit_rows, ln_cc, chunks=chunks, client=client, steps=steps)
        if steps is not None:
            steps.close()
        mc = None
        if method == "mcmc" and len(fit_rows):
            mc_steps = Steps(progress, "MCMC sources") if progress else None
            mc = _mcmc(spec, fit_rows, res, ln_cc, steps=mcmc_steps, walkers=mcmc_walkers,
                       burn=mcmc_burn, seed=seed, progress=mc_steps)
            if mc_steps is not None:
                mc_steps.close()
    table = _table(spec, res, mc, fit_rows, n, n_used)
    table.meta["provenance"] = prov.to_dict()
    if mc is not None:
        table.meta["samples"] = mc["samples"]
    return table


def _table(spec: FitSpec, res, mc, rows, n, n_used) -> QTable:
    from scipy.special import chdtrc  # chi-square survival function (lighter than stats)

    free_beta = spec.beta is None
    p = np.full((n, 3), np.nan)
    cov = np.full((n, 3, 3), np.nan)
    fmin = np.full(n, np.nan)
    flags = np.zeros(n, np.int32)
    lum = np.full(n, np.nan)
    lum_err = np.full(n, np.nan)
    if res is not None:
        p[rows], cov[rows], fmin[rows] = res["p"], res["cov"], res["fmin"]
        lum[rows], lum_err[rows] = res["luminosity"], res["luminosity_err"]
        flags[rows] |= np.where(res["at_bound"], FLAGS["at_bound"], 0)
        flags[rows] |= np.where(res["converged"], 0, FLAGS["not_converged"])
    few = n_used < spec.n_free
    flags |= np.where(few, FLAGS["few_bands"], 0)
    n_up = spec.censored.sum(axis=1)
    flags |= np.where(n_up > 0, FLAGS["upper_limits"], 0)
    dof = n_used - spec.n_free
    with np.errstate(invalid="ignore", divide="ignore"):
        chi2_red = np.where(dof > 0, fmin / np.where(dof > 0, dof, 1), np.nan)
        prob = np.where(dof > 0, chdtrc(np.where(dof > 0, dof, 1), fmin), 1.0)
    flags |= np.where(np.isfinite(fmin) & (prob < _POOR_FIT_P), FLAGS["poor_fit"], 0)
    temp, mass = np.exp(p[:, 0]), np.exp(p[:, 1])
    t_err = temp * np.sqrt(cov[:, 0, 0])
    m_err = mass * np.sqrt(cov[:, 1, 1])
    b_err = np.sqrt(cov[:, 2, 2])
    bet = p[:, 2]
    if mc is not None:
        temp[rows], mass[rows], bet[rows] = (np.exp(mc["p"][:, 0]), np.exp(mc["p"][:, 1]),
                                             mc["p"][:, 2])
        t_err[rows] = np.sqrt(mc["cov_linear"][:, 0, 0])
        m_err[rows] = np.sqrt(mc["cov_linear"][:, 1, 1])
        b_err[rows] = np.sqrt(mc["cov_linear"][:, 2, 2])
    out = QTable()
    out["temperature"] = temp * u.K
    out["temperature_err"] = t_err * u.K
    out["mass"] = mass * u.Msun
    out["mass_err"] = m_err * u.Msun
    out["beta"] = bet
    if free_beta:
        out["beta_err"] = b_err
    out["luminosity"] = lum * u.Lsun
    out["luminosity_err"] = lum_err * u.Lsun
    ln_a = K.LN_MSUN - np.log(spec.d_m**2)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if spec.model == "thick_size":
            ln_nu_tau = spec.kspec.ln_nu0 - (p[:, 1] + ln_a + spec.kspec.ln_kappa0
                                             - spec.ln_omega) / bet
            out["lambda0"] = (K.C_LIGHT / np.exp(ln_nu_tau) * u.m).to(u.um)
            out["size"] = (2 * np.sqrt(np.exp(spec.ln_omega) / math.pi) * u.rad).to(u.arcsec)
        elif spec.model == "thick_lambda0":
            ln_omega = (p[:, 1] + ln_a + spec.kspec.ln_kappa0
                        + bet * (spec.ln_nu_tau - spec.kspec.ln_nu0))
            out["size"] = (2 * np.sqrt(np.exp(ln_omega) / math.pi) * u.rad).to(u.arcsec)
            out["lambda0"] = (K.C_LIGHT / np.exp(spec.ln_nu_tau) * u.m).to(u.um)
    out["distance"] = (spec.d_m * u.m).to(u.pc)
    out["covariance"] = cov  # of (ln T, ln M, beta); zeros for a fixed beta
    out["chi2_red"] = chi2_red
    out["n_bands"] = n_used.astype(np.int32)
    out["n_upper"] = n_up.astype(np.int32)
    out["flags"] = flags
    out.meta.update({"model": spec.model, "kind": spec.model,
                     "kappa0_m2_kg": spec.params["kappa0_m2_kg"],
                     "nu0_hz": spec.params["nu0_hz"], "method": spec.method,
                     "wavelength_um": spec.params["wavelength_um"], "flags": dict(FLAGS)})
    return out


def greybody_sed(fit: QTable, wavelength: u.Quantity, *, n_samples: int = 0, seed: int = 0
                 ) -> tuple[u.Quantity, u.Quantity | None, u.Quantity | None]:
    """The fitted greybodies of a `fit_greybody` table at any wavelengths.

    Parameters
    ----------
    fit : QTable
        A `fit_greybody` result (its rows, or a subset of them).
    wavelength : Quantity
        Where to evaluate the model, shape (n_wave,).
    n_samples : int
        With more than 0, also the 16th and 84th percentiles of the model over that
        many draws from each source's fit covariance (in ``ln T``, ``ln M``,
        ``beta``): the uncertainty band.
    seed : int
        Seed of the draws.

    Returns
    -------
    (flux, lower, upper)
        Quantities in Jy of shape (n_sources, n_wave); ``lower``/``upper`` None
        without samples.
    """
    wavelength = _as_quantity(wavelength, "wavelength", "wavelength or frequency",
                              equivalencies=u.spectral())
    if not isinstance(fit, QTable) or "covariance" not in fit.colnames:
        raise VanotebookInputError("fit", "a fit_greybody() table", fit)
    kind = fit.meta.get("kind", "thin")
    kspec = K.ModelSpec(kind, math.log(fit.meta["nu0_hz"]), math.log(fit.meta["kappa0_m2_kg"]))
    ln_nu = np.log(np.atleast_1d(wavelength.to_value(u.Hz, equivalencies=u.spectral())))
    n = len(fit)
    d_m = fit["distance"].to_value(u.m)
    base = np.column_stack([np.log(fit["temperature"].to_value(u.K)),
                            np.log(fit["mass"].to_value(u.Msun)),
                            np.asarray(fit["beta"], np.float64)])
    extra: dict[str, Any] = {}
    if kind == "thick_size":
        extra["ln_omega"] = np.log(math.pi * (fit["size"].to_value(u.rad) / 2) ** 2)
    elif kind == "thick_lambda0":
        extra["ln_nu_tau"] = np.log(fit["lambda0"].to_value(u.Hz, equivalencies=u.spectral()))

    def evaluate(p, reps=1):
        ln_a = np.repeat(K.LN_MSUN - np.log(d_m**2), reps)[:, None]
        ex = {k: np.repeat(v, reps)[:, None] for k, v in extra.items()}
        with np.errstate(invalid="ignore", over="ignore"):
            ln_s, _ = K.log_model(p, ln_nu, ln_a, kspec, **ex, jacobian=False)
        return np.exp(ln_s)

    flux = evaluate(base) * u.Jy
    if n_samples <= 0:
        return flux, None, None
    check_positive("n_samples", n_samples, integer=True)
    rng = np.random.default_rng(seed)
    cov = np.nan_to_num(np.asarray(fit["covariance"], np.float64))
    vals, vecs = np.linalg.eigh(cov)
    z = rng.standard_normal((n, n_samples, 3)) * np.sqrt(np.clip(vals, 0, None))[:, None, :]
    draws = base[:, None, :] + np.einsum("nij,nsj->nsi", vecs, z)
    model = evaluate(draws.reshape(n * n_samples, 3), n_samples).reshape(n, n_samples, -1)
    lo, hi = np.nanpercentile(model, [16, 84], axis=1)
    return flux, lo * u.Jy, hi * u.Jy
