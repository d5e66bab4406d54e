"""Greybody models and the batched Levenberg-Marquardt fit: pure array code, no Dask.

Everything here works on plain floating arrays of shape ``(n_sources, n_bands)``
in fixed internal units (frequency in Hz, temperature in K, mass in solar
masses, flux density in Jy) and is written against the array API
(`array_api_compat`), so the same functions run on numpy and CuPy arrays (the
tests feed them ``array-api-strict`` arrays).

The parameters of every source are ``p = (ln T, ln M, beta)``. The fit
minimises, for all sources at once,

    F = sum_detected ((S - m) / sigma)^2  -  2 sum_censored ln Phi((S_lim - m) / sigma)

(a Gaussian likelihood for detections, the probability that a measurement fell
below its limit for upper limits), with Gauss-Newton curvature and a
Levenberg-Marquardt damping per source. The covariance of the free parameters is
``2 H^-1`` at the minimum (the Fisher matrix of the Gaussian terms, the observed
curvature of the censored ones), *not* rescaled by the reduced chi-square.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from array_api_compat import array_namespace

__all__ = [
    "BOUNDS",
    "ModelSpec",
    "fit_batch",
    "log_model",
    "log_ndtr",
    "luminosity",
    "objective",
]

H_PLANCK = 6.62607015e-34  # J s
K_BOLTZMANN = 1.380649e-23  # J / K
C_LIGHT = 299792458.0  # m / s
M_SUN = 1.98840987e30  # kg
L_SUN = 3.828e26  # W
LN_2H_C2 = math.log(2 * H_PLANCK / C_LIGHT**2)
LN_H_K = math.log(H_PLANCK / K_BOLTZMANN)
LN_JY = math.log(1e26)  # W m^-2 Hz^-1 -> Jy
LN_MSUN = math.log(M_SUN)
#: hard limits of the fitted parameters: (ln T), (ln M), beta
BOUNDS = {"ln_t": (math.log(3.0), math.log(500.0)), "ln_m": (-60.0, 60.0), "beta": (0.0, 4.0)}
MODELS = ("thin", "thick_size", "thick_lambda0")


@dataclass(frozen=True)
class ModelSpec:
    """Which greybody, in internal constants.

    Attributes
    ----------
    model : {"thin", "thick_size", "thick_lambda0"}
    ln_nu0 : float
        ln of the opacity's reference frequency [Hz].
    ln_kappa0 : float
        ln of the opacity at ``nu0`` [m^2 / kg].
    """

    model: str = "thin"
    ln_nu0: float = math.log(1e12)
    ln_kappa0: float = math.log(0.01)


# ----------------------------------------------------------------------------- special functions
_ERFC_C = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807,
           -1.13520398, 1.48851587, -0.82215223, 0.17087277)


def _log_erfc_pos(x, xp):
    """ln erfc(x) for x >= 0 (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7).

    Computed in log space, so it stays finite where erfc underflows.
    """
    t = 1.0 / (1.0 + 0.5 * x)
    poly = xp.zeros_like(x) + _ERFC_C[-1]
    for c in _ERFC_C[-2::-1]:
        poly = poly * t + c
    return xp.log(t) - x * x + poly


def log_ndtr(z):
    """ln Phi(z), the log of the standard normal CDF, finite for any finite z."""
    xp = array_namespace(z)
    x = -z / math.sqrt(2.0)
    ax = xp.abs(x)
    le = _log_erfc_pos(ax, xp)
    below = math.log(0.5) + le  # z <= 0: Phi = erfc(|x|) / 2
    above = xp.log1p(-0.5 * xp.exp(le))  # z > 0: Phi = 1 - erfc(|x|) / 2
    return xp.where(x >= 0, below, above)


def _log_expm1(x, xp):
    """ln(exp(x) - 1) for x > 0, without overflow."""
    return x + xp.log(-xp.expm1(-x))


def _log_one_minus_exp(tau, ln_tau, xp):
    """ln(1 - exp(-tau)), also where tau underflows (then ~ ln tau - tau / 2)."""
    small = tau < 1e-10
    safe = xp.where(small, 1.0, tau)
    return xp.where(small, ln_tau - tau / 2, xp.log(-xp.expm1(-safe)))


def _thick_h(tau, xp):
    """d ln(1 - e^-tau) / d ln tau = tau e^-tau / (1 - e^-tau), without overflow."""
    small = tau < 1e-10
    safe = xp.where(small, 1.0, tau)
    return xp.where(small, 1.0 - tau / 2, safe * xp.exp(-safe) / (-xp.expm1(-safe)))


# ----------------------------------------------------------------------------- models
def log_model(p, ln_nu, ln_a, spec: ModelSpec, *, ln_omega=None, ln_nu_tau=None,
              ln_cc=None, jacobian: bool = True):
    """ln S_nu [Jy] and its derivatives with respect to ``(ln T, ln M, beta)``.

    Parameters
    ----------
    p : array (n, 3)
        ``ln T [K]``, ``ln M [Msun]``, ``beta`` per source.
    ln_nu : array (n, b) or (b,)
        ln frequency [Hz] of each band.
    ln_a : array (n, 1)
        ``ln(M_sun kappa0 / d^2)`` without kappa0: ``ln M_sun - ln d^2`` with d in m.
    spec : ModelSpec
    ln_omega : array (n, 1), optional
        ln source solid angle [sr] (``thick_size``).
    ln_nu_tau : array (n, 1), optional
        ln of the frequency where tau = 1 [Hz] (``thick_lambda0``).
    ln_cc : array (n, b), optional
        ln of multiplicative colour corrections of the model.

    Returns
    -------
    (ln_s, jac)
        ``ln_s`` (n, b) and ``jac`` (n, b, 3) = d ln S / d p (None when not
        ``jacobian``).
    """
    xp = array_namespace(p)
    ln_t, ln_m, beta = p[:, 0:1], p[:, 1:2], p[:, 2:3]
    x = xp.exp(LN_H_K + ln_nu - ln_t)
    ln_b = LN_2H_C2 + 3.0 * ln_nu - _log_expm1(x, xp)
    g = x / (-xp.expm1(-x))  # d ln B / d ln T
    big_l = ln_nu - spec.ln_nu0
    one = xp.ones_like(x)
    if spec.model == "thin":
        ln_s = ln_m + ln_a + spec.ln_kappa0 + beta * big_l + ln_b + LN_JY
        d_m, d_beta = one, big_l + 0.0 * x
    elif spec.model == "thick_size":
        ln_tau = ln_m + ln_a + spec.ln_kappa0 + beta * big_l - ln_omega
        tau = xp.exp(ln_tau)
        ln_s = ln_omega + ln_b + _log_one_minus_exp(tau, ln_tau, xp) + LN_JY
        h = _thick_h(tau, xp)
        d_m, d_beta = h, h * big_l
    elif spec.model == "thick_lambda0":
        ln_tau = beta * (ln_nu - ln_nu_tau)
        tau = xp.exp(ln_tau)
        ln_omega_ = ln_m + ln_a + spec.ln_kappa0 + beta * (ln_nu_tau - spec.ln_nu0)
        ln_s = ln_omega_ + ln_b + _log_one_minus_exp(tau, ln_tau, xp) + LN_JY
        h = _thick_h(tau, xp)
        d_m, d_beta = one, (ln_nu_tau - spec.ln_nu0) + h * (ln_nu - ln_nu_tau)
    else:  # pragma: no cover - checked by the caller
        msg = f"unknown model {spec.model!r}"
        raise ValueError(msg)
    if ln_cc is not None:
        ln_s = ln_s + ln_cc
    if not jacobian:
        return ln_s, None
    jac = xp.stack([g, d_m * one, d_beta * one], axis=-1)
    return ln_s, jac


def objective(ln_s, jac, flux, sigma, used, censored, *, any_censored: bool = True):
    """F (n,), its gradient (n, 3) and Gauss-Newton curvature (n, 3, 3) in ``p``.

    ``used`` marks the terms in the likelihood, ``censored`` those among them that
    are upper limits (``flux`` then holds the limit). With ``jac`` None only F is
    computed (gradient and curvature None); ``any_censored=False`` skips the
    censored terms' special functions (for blocks without upper limits).
    """
    xp = array_namespace(ln_s)
    m = xp.exp(ln_s)
    s = xp.where(used, sigma, 1.0)
    z = xp.where(used, (flux - m) / s, 0.0)
    det = used & ~censored
    cen = used & censored
    if any_censored:
        ln_phi = log_ndtr(z)
        lam = xp.exp(-0.5 * z * z - 0.5 * math.log(2 * math.pi) - ln_phi)  # phi / Phi
        f_i = xp.where(det, z * z, xp.where(cen, -2.0 * ln_phi, 0.0))
    else:
        lam = z
        f_i = xp.where(det, z * z, 0.0)
    if jac is None:
        return xp.sum(f_i, axis=1), None, None
    dfdm = xp.where(det, -2.0 * z / s, xp.where(cen, 2.0 * lam / s, 0.0))
    w = xp.where(det, 2.0 / (s * s), xp.where(cen, 2.0 * lam * (z + lam) / (s * s), 0.0))
    jm = jac * m[..., None]
    grad = xp.sum(dfdm[..., None] * jm, axis=1)
    curv = xp.matmul(xp.permute_dims(jm * w[..., None], (0, 2, 1)), jm)
    return xp.sum(f_i, axis=1), grad, curv


def _clip(p, free, xp):
    lo = xp.asarray([BOUNDS["ln_t"][0], BOUNDS["ln_m"][0], BOUNDS["beta"][0]], dtype=p.dtype)
    hi = xp.asarray([BOUNDS["ln_t"][1], BOUNDS["ln_m"][1], BOUNDS["beta"][1]], dtype=p.dtype)
    return xp.clip(p, lo, hi)


def _take(a, free, axis, xp):
    return xp.take(a, xp.asarray(free), axis=axis)


_GRID_T = [math.log(4.0) + i * (math.log(400.0) - math.log(4.0)) / 23 for i in range(24)]
_GRID_BETA = [0.5 + 0.5 * i for i in range(7)]


def _common(a, xp) -> bool:
    return a is None or bool(xp.all(a == a[0:1, :]))


def _start(flux, sigma, used, censored, ln_nu, ln_a, spec, beta0, free_beta, extra, xp):
    """A grid start over (T, beta): each node's best amplitude for the detections.

    When the model's shape is the same for every source (one beta or beta free, one
    tau = 1 wavelength; the thick model with a size starts from the thin shape), the
    chi-square of every source at every node is two matrix products; otherwise a
    coarser grid is evaluated source by source.
    """
    ln_cc = extra.get("ln_cc")
    if (ln_nu.ndim == 1 and (free_beta or _common(beta0, xp))
            and _common(extra.get("ln_nu_tau"), xp)):
        return _start_shared(flux, sigma, used, censored, ln_nu, ln_a, spec, beta0,
                             free_beta, extra, ln_cc, xp)
    return _start_loop(flux, sigma, used, censored, ln_nu, ln_a, spec, beta0, free_beta,
                       extra, xp)


def _start_shared(flux, sigma, used, censored, ln_nu, ln_a, spec, beta0, free_beta, extra,
                  ln_cc, xp):
    dt = flux.dtype
    betas = _GRID_BETA if free_beta else [None]
    lt, bt = [], []
    for b in betas:
        for t in _GRID_T:
            lt.append(t)
            bt.append(b)
    g = len(lt)
    lt_a = xp.asarray(lt, dtype=dt)
    bt_a = (xp.asarray(bt, dtype=dt) if free_beta
            else xp.zeros((g,), dtype=dt) + beta0[0, 0])
    pg = xp.stack([lt_a, xp.zeros((g,), dtype=dt), bt_a], axis=1)
    kind = "thin" if spec.model == "thick_size" else spec.model
    nu_tau = extra.get("ln_nu_tau")
    kw = {} if nu_tau is None else {"ln_nu_tau": xp.zeros((g, 1), dtype=dt) + nu_tau[0, 0]}
    ln_sg, _ = log_model(pg, ln_nu, xp.zeros((g, 1), dtype=dt),
                         ModelSpec(kind, spec.ln_nu0, spec.ln_kappa0), **kw, jacobian=False)
    c = xp.max(ln_sg, axis=1, keepdims=True)
    sg = xp.exp(ln_sg - c)  # (g, b)
    det = used & ~censored
    k = xp.exp(ln_cc) if ln_cc is not None else xp.ones_like(flux)
    w = xp.where(det, (k / sigma) ** 2, 0.0)
    y = xp.where(det, flux / k, 0.0)
    num = xp.matmul(w * y, xp.permute_dims(sg, (1, 0)))  # (n, g)
    den = xp.matmul(w, xp.permute_dims(sg * sg, (1, 0)))
    gain = xp.where((num > 0) & (den > 0), num * num / xp.where(den > 0, den, 1.0), -1.0)
    best = xp.argmax(gain, axis=1)
    num_b = xp.take_along_axis(num, best[:, None], axis=1)[:, 0]
    den_b = xp.take_along_axis(den, best[:, None], axis=1)[:, 0]
    amp = xp.where((num_b > 0) & (den_b > 0), num_b / xp.where(den_b > 0, den_b, 1.0), 1e-30)
    ln_m = xp.log(amp) - ln_a[:, 0] - xp.take(c[:, 0], best)
    beta_col = xp.take(bt_a, best) if free_beta else beta0[:, 0]
    p = xp.stack([xp.take(lt_a, best), ln_m, beta_col], axis=1)
    return _clip(p, None, xp)


def _start_loop(flux, sigma, used, censored, ln_nu, ln_a, spec, beta0, free_beta, extra, xp):
    n = flux.shape[0]
    temps = [math.log(v) for v in (5, 7, 9, 11, 13, 15, 17, 20, 23, 27, 32, 38, 45, 55, 70,
                                   90, 120, 160, 220, 300)]
    betas = [1.2, 1.8, 2.4] if free_beta else [None]
    best_f = xp.full((n,), math.inf, dtype=flux.dtype)
    best_p = xp.zeros((n, 3), dtype=flux.dtype)
    det = used & ~censored
    any_cen = bool(xp.any(censored))
    for b in betas:
        bcol = beta0 if b is None else xp.full((n, 1), b, dtype=flux.dtype)
        for lt in temps:
            p = xp.concat([xp.full((n, 1), lt, dtype=flux.dtype),
                           xp.zeros((n, 1), dtype=flux.dtype), bcol], axis=1)
            if spec.model == "thick_size":  # start from the thin shape's amplitude
                thin = ModelSpec("thin", spec.ln_nu0, spec.ln_kappa0)
                ln_s, _ = log_model(p, ln_nu, ln_a, thin, ln_cc=extra.get("ln_cc"),
                                    jacobian=False)
            else:
                ln_s, _ = log_model(p, ln_nu, ln_a, spec, **extra, jacobian=False)
            shape = xp.exp(ln_s)
            wgt = xp.where(det, 1.0 / (sigma * sigma), 0.0)
            num = xp.sum(wgt * xp.where(det, flux, 0.0) * shape, axis=1)
            den = xp.sum(wgt * shape * shape, axis=1)
            amp = xp.where((num > 0) & (den > 0), num / xp.where(den > 0, den, 1.0), 1e-30)
            p = xp.concat([p[:, 0:1], xp.log(amp)[:, None], bcol], axis=1)
            p = _clip(p, None, xp)
            ln_s, _ = log_model(p, ln_nu, ln_a, spec, **extra, jacobian=False)
            f, _, _ = objective(ln_s, None, flux, sigma, used, censored,
                                any_censored=any_cen)
            better = f < best_f
            best_f = xp.where(better, f, best_f)
            best_p = xp.where(better[:, None], p, best_p)
    return best_p


def fit_batch(flux, sigma, used, censored, ln_nu, ln_a, spec: ModelSpec, *, beta=None,
              ln_omega=None, ln_nu_tau=None, ln_cc=None, max_iter: int = 100,
              tol: float = 1e-10):
    """Fit every source at once; batched Levenberg-Marquardt.

    Parameters
    ----------
    flux, sigma : arrays (n, b)
        Flux densities (or limits) and 1-sigma errors [Jy]; anything where
        ``used`` is False is ignored.
    used, censored : bool arrays (n, b)
    ln_nu : array (b,) or (n, b)
    ln_a : array (n, 1)
        ``ln M_sun - ln d^2`` (d in m).
    spec : ModelSpec
    beta : array (n, 1), optional
        Fixed beta per source; free when None.
    ln_omega, ln_nu_tau, ln_cc
        As for `log_model`.

    Returns
    -------
    dict
        ``p`` (n, 3), ``cov`` (n, 3, 3) (zero rows/columns for fixed beta),
        ``fmin`` (n,), ``n_iter`` (n,), ``converged`` (n,) and ``at_bound`` (n,).
    """
    xp = array_namespace(flux)
    n = flux.shape[0]
    free_beta = beta is None
    free = [0, 1, 2] if free_beta else [0, 1]
    k = len(free)
    extra = {"ln_omega": ln_omega, "ln_nu_tau": ln_nu_tau, "ln_cc": ln_cc}
    beta0 = beta if beta is not None else xp.full((n, 1), 2.0, dtype=flux.dtype)
    p = _start(flux, sigma, used, censored, ln_nu, ln_a, spec, beta0, free_beta, extra, xp)
    any_cen = bool(xp.any(censored))
    ln_s, jac = log_model(p, ln_nu, ln_a, spec, **extra)
    f, grad, curv = objective(ln_s, jac, flux, sigma, used, censored, any_censored=any_cen)
    mu = xp.full((n,), 1e-3, dtype=flux.dtype)
    done = xp.zeros((n,), dtype=xp.bool)
    n_iter = xp.zeros((n,), dtype=xp.int32)
    eye = xp.eye(k, dtype=flux.dtype)
    for _ in range(max_iter):
        g = _take(grad, free, 1, xp)
        c = _take(_take(curv, free, 1, xp), free, 2, xp)
        diag = xp.sum(c * eye, axis=-1)
        damp = (mu[:, None] * (diag + 1e-12))[:, :, None] * eye
        step = xp.linalg.solve(c + damp + 1e-300 * eye, -g[..., None])[..., 0]
        step = xp.where(xp.isfinite(step), step, 0.0)
        step = xp.clip(step, -2.0, 2.0)  # at most a factor e^2 in T or M per iteration
        full = xp.zeros((n, 3), dtype=flux.dtype)
        for j, idx in enumerate(free):
            full = full + step[:, j:j + 1] * xp.asarray(
                [1.0 if i == idx else 0.0 for i in range(3)], dtype=flux.dtype)
        trial = _clip(p + full, free, xp)
        ln_s_t, jac_t = log_model(trial, ln_nu, ln_a, spec, **extra)
        f_t, grad_t, curv_t = objective(ln_s_t, jac_t, flux, sigma, used, censored,
                                        any_censored=any_cen)
        ok = (f_t <= f) & xp.isfinite(f_t) & ~done
        small = xp.isfinite(f_t) & (xp.abs(f - f_t) <= tol * (1.0 + f))
        p = xp.where(ok[:, None], trial, p)
        grad = xp.where(ok[:, None], grad_t, grad)
        curv = xp.where(ok[:, None, None], curv_t, curv)
        fn = xp.where(ok, f_t, f)
        n_iter = n_iter + xp.astype(~done, xp.int32)
        done = done | small | (mu > 1e12)
        f = fn
        mu = xp.where(ok, xp.clip(mu / 3.0, 1e-9, None), mu * 4.0)
        if bool(xp.all(done)):
            break
    c = _take(_take(curv, free, 1, xp), free, 2, xp)
    cov_free = 2.0 * xp.linalg.inv(c + 1e-300 * eye)
    cov = xp.zeros((n, 3, 3), dtype=flux.dtype)
    for a, ia in enumerate(free):
        for b, ib in enumerate(free):
            sel = xp.asarray([[1.0 if (i == ia and j == ib) else 0.0 for j in range(3)]
                              for i in range(3)], dtype=flux.dtype)
            cov = cov + cov_free[:, a:a + 1, b:b + 1] * sel
    lo = xp.asarray([BOUNDS["ln_t"][0], BOUNDS["beta"][0]], dtype=flux.dtype)
    hi = xp.asarray([BOUNDS["ln_t"][1], BOUNDS["beta"][1]], dtype=flux.dtype)
    tb = xp.stack([p[:, 0], p[:, 2]], axis=1)
    near = (xp.abs(tb - lo) < 1e-6) | (xp.abs(tb - hi) < 1e-6)
    at_bound = near[:, 0] | (near[:, 1] & free_beta)
    return {"p": p, "cov": cov, "fmin": f, "n_iter": n_iter, "converged": done,
            "at_bound": at_bound}


def luminosity(p, cov, ln_a, spec: ModelSpec, *, ln_omega=None, ln_nu_tau=None,
               d2=None, n_grid: int = 80):
    """Bolometric luminosity [Lsun] of the fitted model and its 1-sigma error.

    ``L = 4 pi d^2 * integral S_nu dnu``, by the trapezoid rule in ln nu on a grid
    that follows each source's temperature (``h nu / k T`` from 0.02 to 50, where
    all but ~1e-6 of a greybody's power lies); the error propagates ``cov``
    through ``d ln L / d p``, from the same model derivatives. ``d2`` is ``d^2``
    [m^2] per source, shape (n, 1).
    """
    xp = array_namespace(p)
    lo, hi = math.log(0.02), math.log(50.0)
    dx = (hi - lo) / (n_grid - 1)
    ln_x = xp.asarray([lo + dx * i for i in range(n_grid)], dtype=p.dtype)
    ln_nu = p[:, 0:1] - LN_H_K + ln_x[None, :]
    ln_s, jac = log_model(p, ln_nu, ln_a, spec, ln_omega=ln_omega, ln_nu_tau=ln_nu_tau)
    wts = xp.asarray([0.5 if i in (0, n_grid - 1) else 1.0 for i in range(n_grid)],
                     dtype=p.dtype) * dx
    integrand = xp.exp(ln_s + ln_nu) * 1e-26 * wts  # S_nu nu dln(nu) [W m^-2]
    total = xp.sum(integrand, axis=1)
    dlnl = xp.sum(integrand[..., None] * jac, axis=1) / total[:, None]
    var = xp.sum(dlnl[:, :, None] * cov * dlnl[:, None, :], axis=(1, 2))
    lum = 4 * math.pi * d2[:, 0] * total / L_SUN
    return lum, lum * xp.sqrt(xp.clip(var, 0.0, None))
