"""Match probabilities: Budavári & Szalay (2008) Bayes factors, priors from densities.

Two catalogues
--------------
A left source has a true counterpart in the right catalogue with probability
``q`` (the *completeness*). The counterpart's offset is Gaussian with the
summed positional covariance of both sources, density ``f`` per steradian
(``f = B / 4 pi`` with ``B`` the Bayes factor of Budavári & Szalay 2008,
generalised to per-axis errors). Unrelated right sources are a Poisson field
of density ``rho`` per steradian. For a left source with candidates ``j``
inside the radius (where a counterpart falls with probability ``F``)::

    P_j = q f_j / (rho (1 - q F) + q sum_k f_k)

``rho`` is the right density (every right source other than a left source's own
counterpart is unrelated to it), ``q`` is fitted
to the data by expectation-maximisation, so the prior needs no tuning: it
is set by the source densities, as in the paper.

N catalogues
------------
`nway_bayes_factor` is the N-way factor of Budavári & Szalay (eq. 19 with
circular errors); `_nway` weighs every combination of one candidate (or none)
per catalogue with it, in the spirit of NWAY (Salvato et al. 2018).

All functions take arrays of any array-API library (numpy, CuPy).
"""

from __future__ import annotations

import math

from .._optional import namespace

__all__ = [
    "fit_completeness",
    "gaussian_density",
    "nway_bayes_factor",
    "pair_posteriors",
]


def gaussian_density(dx, dy, var_x, var_y):
    """Density per steradian of a 2-D Gaussian offset (radians; variances in rad^2).

    Equal to the two-catalogue Bayes factor of Budavári & Szalay (2008) over
    4 pi when ``var_x == var_y``.
    """
    xp = namespace(dx, dy, var_x, var_y)
    return xp.exp(-0.5 * (dx * dx / var_x + dy * dy / var_y)) / (
        2.0 * math.pi * xp.sqrt(var_x * var_y)
    )


def inside_fraction(var, radius_rad: float):
    """Probability a circular Gaussian offset of variance ``var`` per axis lies within radius."""
    xp = namespace(var)
    return 1.0 - xp.exp(-0.5 * radius_rad * radius_rad / var)


def fit_completeness(f_sum, n_rows: int, rho: float, f_in: float, *,
                     iterations: int = 200, tol: float = 1e-10) -> float:
    """Fit ``q``, the fraction of left sources with a counterpart, by EM.

    Parameters
    ----------
    f_sum : array
        ``sum_k f_k`` for each left row with at least one candidate.
    n_rows : int
        All left rows (those without candidates included).
    rho : float
        Right source density per steradian.
    f_in : float
        Fraction of counterparts expected inside the radius.
    """
    xp = namespace(f_sum)
    if n_rows == 0:
        return 0.0
    q = 0.5
    n_empty = n_rows - f_sum.shape[0]
    for _ in range(iterations):
        field = rho
        den = field * (1.0 - q * f_in)
        e_cand = q * (f_sum + (1.0 - f_in) * field) / (den + q * f_sum)
        e_empty = q * (1.0 - f_in) * field / den
        new = float(xp.sum(e_cand) + n_empty * e_empty) / n_rows
        new = min(max(new, 1e-9), 1.0 - 1e-9)
        if abs(new - q) < tol:
            return new
        q = new
    return q


def pair_posteriors(f, f_sum, q: float, rho: float, f_in):
    """Posterior that each candidate is the true counterpart of its left source.

    ``f`` is each pair's Gaussian density, ``f_sum`` the sum over that left
    source's candidates (same shape as ``f``).
    """
    return q * f / (rho * (1.0 - q * f_in) + q * f_sum)


def nway_bayes_factor(psi2, weights):
    """Budavári & Szalay (2008) N-way Bayes factor with circular errors.

    Parameters
    ----------
    psi2 : list of arrays
        Squared separations (rad^2) of every pair ``(i, j), i < j``, in
        ``itertools.combinations(range(n), 2)`` order.
    weights : list of arrays
        ``1 / sigma_i^2`` (rad^-2) for each of the ``n`` catalogues.

    Returns
    -------
    array
        ``B = 2^(n-1) prod w / sum w * exp(-sum_{i<j} w_i w_j psi_ij^2 / (2 sum w))``;
        the density of the configuration per steradian^(n-1) is ``B / (4 pi)^(n-1)``.
    """
    from itertools import combinations

    xp = namespace(*weights)
    n = len(weights)
    total = weights[0]
    prod = weights[0]
    for w in weights[1:]:
        total = total + w
        prod = prod * w
    expo = xp.zeros_like(total)
    for (i, j), p2 in zip(combinations(range(n), 2), psi2, strict=True):
        expo = expo + weights[i] * weights[j] * p2
    return 2.0 ** (n - 1) * prod / total * xp.exp(-expo / (2.0 * total))
