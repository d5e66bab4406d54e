"""Parameter errors of Gaussian fits on images whose noise is correlated (Condon 1997).

A least-squares fit weighted by ``1 / rms**2`` takes the pixels as independent.
In an interferometric image (and any smoothed or regridded map) the noise is
correlated over the beam, so the fit's covariance is too small: several times
for a point source, by the beam's area in pixels for a source much larger than
it. Condon (1997, PASP 109, 166; eq. 41) gives the effective signal-to-noise
of each parameter for noise made by smoothing white noise with a Gaussian of
FWHM ``theta_N``::

    rho^2 = (theta_M theta_m / 4 theta_N^2) (1 + theta_N^2/theta_M^2)^alpha_M
            (1 + theta_N^2/theta_m^2)^alpha_m (A / sigma)^2

with ``(alpha_M, alpha_m)`` = (3/2, 3/2) for the peak (and the flux), (5/2, 1/2)
for the position along the major axis and the major axis, (1/2, 5/2) for the
position along the minor axis, the minor axis and the PA. For independent
pixels the same errors follow from ``rho^2 = pi sigma_M sigma_m (A / sigma)^2``
(eq. 21, pixels of unit area), which is what the fit's covariance holds, so the
ratio of the two is the factor by which the correlated noise inflates each
variance. It is applied to the fit's own covariance (which also knows about
blends, fixed shapes and the pixels the fit saw), never below 1.

The noise is given by its correlation function, a Gaussian of covariance
``N`` (pixels^2; for an interferometric image the beam's): the smoothing kernel
of Condon's ``theta_N`` then has covariance ``N / 2``. In the frame where that
kernel is round with unit sigma the factor reads::

    f = 2 pi sqrt(det N) / ((1 + 1/s_M^2)^alpha_M (1 + 1/s_m^2)^alpha_m)

where ``s_M, s_m`` are the source's sigmas in that frame; ``2 pi sqrt(det N)``
is the noise correlation area in pixels, the limit for a source much larger
than the beam.

The factors used are those of the linearised least-squares estimate itself,
``F^-1 J^T C J F^-1`` against ``F^-1`` (``F = J^T J``, ``J`` the model's
derivatives sampled on the pixels around the component, ``C`` the noise
correlation: `sandwich_factors`). For the peak of a fit with every parameter
free they are Condon's eq. 41 exactly (`inflation_factors`, checked in the
tests); for the centre they are larger (1.5x for a beam-sized source, where
Condon's position factor leaves position pulls of 1.2), and they hold as well
for components whose shape was held at the PSF's (a matched filter, whose
variance grows by 4/3 of the beam area in pixels for a beam-sized source), and
for the flux (Condon's eq. 42 structure: the axes' errors no longer cancel the
peak's).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ALPHAS", "inflate", "inflation_factors", "sandwich_factors"]

ALPHAS = {"amp": (1.5, 1.5), "major": (2.5, 0.5), "minor": (0.5, 2.5)}


def inflation_factors(src_cov: np.ndarray, noise_cov: np.ndarray) -> dict[str, np.ndarray]:
    """Variance factors ``f >= 1`` for the peak, major-axis and minor-axis parameters,
    and ``size_term``, the factor of the axes' squared relative errors in the flux's.

    Parameters
    ----------
    src_cov : (n, 2, 2)
        Fitted source covariances (sigma^2) in pixels.
    noise_cov : (2, 2) or (n, 2, 2)
        Covariance of the noise correlation function, in pixels (zeros: white noise).
    """
    src_cov = np.asarray(src_cov, float)
    n = src_cov.shape[0]
    noise_cov = np.broadcast_to(np.asarray(noise_cov, float), (n, 2, 2))
    det_n = np.linalg.det(noise_cov)
    ones = {k: np.ones(n) for k in ALPHAS}
    ones["size_term"] = np.zeros(n)
    ok = (det_n > 0) & np.isfinite(src_cov).all(axis=(1, 2))
    if not ok.any():
        return ones
    kern = 0.5 * noise_cov[ok]
    w, v = np.linalg.eigh(kern)
    t = np.einsum("nij,nj,nkj->nik", v, 1.0 / np.sqrt(w), v)  # kern^(-1/2)
    s = np.einsum("nij,njk,nlk->nil", t, src_cov[ok], t)
    lam = np.linalg.eigvalsh(s)  # ascending: minor, major
    s_m2, s_maj2 = np.clip(lam[:, 0], 1e-12, None), np.clip(lam[:, 1], 1e-12, None)
    area = 2 * math.pi * np.sqrt(det_n[ok])
    out = {}
    for key, (a_maj, a_min) in ALPHAS.items():
        f = np.ones(n)
        f[ok] = np.maximum(area / ((1 + 1 / s_maj2) ** a_maj * (1 + 1 / s_m2) ** a_min), 1.0)
        out[key] = f
    # Condon's eq. 42 for the integrated flux: (theta_N^2 / theta_M theta_m) times the
    # squared relative errors of the two axes adds to the peak's (0 for white noise)
    out["size_term"] = np.zeros(n)
    out["size_term"][ok] = 1.0 / np.sqrt(s_maj2 * s_m2)
    return out


def sandwich_factors(params: np.ndarray, noise_cov, free: np.ndarray) -> dict:
    """Variance factors of each parameter and of the flux for correlated noise.

    Parameters
    ----------
    params : (n, 6)
        Components ``(A, x0, y0, a, b, c)`` (only the shape matters).
    noise_cov : (2, 2) or (n, 2, 2)
        Covariance of the noise correlation function, pixels.
    free : bool (n,)
        Whether the component's shape was fitted (else peak and centre only).

    Returns
    -------
    dict with ``params`` (n, 6) variance factors (1 for held parameters) and
    ``flux`` (n,), each ``sandwich / independent-pixel`` variance, never below 1.
    """
    from scipy.signal import fftconvolve

    from ._fit import _model_and_jac

    params = np.asarray(params, float)
    n = params.shape[0]
    noise_cov = np.broadcast_to(np.asarray(noise_cov, float), (n, 2, 2))
    fp = np.ones((n, 6))
    ff = np.ones(n)
    memo: dict = {}  # shapes repeat (every faint source has the PSF's): one sum per shape
    for i in range(n):
        amp, _, _, a, b, c = params[i]
        det = a * c - b * b
        nc = noise_cov[i]
        if not (det > 0 and amp > 0 and np.isfinite(params[i]).all()
                and np.linalg.det(nc) > 0):
            continue
        src = np.array([[c, -b], [-b, a]]) / det
        scale = np.sqrt(np.linalg.det(nc))
        key = (bool(free[i]), *np.round(50 * src.ravel()[[0, 1, 3]] / scale),
               *np.round(50 * nc.ravel()[[0, 1, 3]] / scale), round(50 * np.log(scale)))
        if key in memo:  # the same shape to 2%
            fp[i], ff[i] = memo[key]
            continue
        reach = np.sqrt(max(np.linalg.eigvalsh(src).max(), np.linalg.eigvalsh(nc).max()))
        r = min(int(np.ceil(4 * reach)), 60)
        t = np.arange(-r, r + 1, dtype=float)
        yy, xx = np.meshgrid(t, t, indexing="ij")
        p = np.array([[[amp, 0.0, 0.0, a, b, c]]])
        _, jac = _model_and_jac(np, xx.reshape(1, -1), yy.reshape(1, -1), p)
        jac = jac[0]
        cols = np.arange(6) if free[i] else np.arange(3)
        jac = jac[:, cols]
        ni = np.linalg.inv(nc)
        rk = min(r, int(np.ceil(4 * np.sqrt(np.linalg.eigvalsh(nc).max()))))
        tk = np.arange(-rk, rk + 1, dtype=float)
        d = np.stack(np.meshgrid(tk, tk, indexing="ij")[::-1], -1)  # (x, y)
        kern = np.exp(-0.5 * np.einsum("...i,ij,...j->...", d, ni, d))
        cj = np.stack([fftconvolve(jac[:, k].reshape(xx.shape), kern, mode="same").ravel()
                       for k in range(len(cols))], 1)
        finv = np.linalg.inv(jac.T @ jac)
        sand = finv @ (jac.T @ cj) @ finv
        fp[i, cols] = np.maximum(np.diag(sand) / np.diag(finv), 1.0)
        # flux 2 pi A / sqrt(det): its gradient in (A, x0, y0, a, b, c)
        g = np.array([1.0 / amp, 0.0, 0.0, -0.5 * c / det, b / det, -0.5 * a / det])[cols]
        ff[i] = max(float(g @ sand @ g) / float(g @ finv @ g), 1.0)
        memo[key] = (fp[i].copy(), ff[i])
    return {"params": fp, "flux": ff}


def inflate(params: np.ndarray, cov: np.ndarray, noise_cov) -> tuple[np.ndarray, np.ndarray]:
    """The fit covariances ``cov`` (n, 6, 6) of components ``params`` inflated for
    correlated noise, and the flux's variance factor (see `sandwich_factors`).

    Each covariance entry ``(i, j)`` is scaled by ``sqrt(f_i f_j)``: the fit's own
    covariance (which knows about blends and the pixels the fit saw) keeps its
    correlations. Components whose shape was held have no shape covariance.
    """
    free = (np.abs(np.diagonal(cov, axis1=1, axis2=2)[:, 3:]) > 0).any(axis=1)
    f = sandwich_factors(params, noise_cov, free)
    s = np.sqrt(f["params"])
    return cov * s[:, :, None] * s[:, None, :], f["flux"]
