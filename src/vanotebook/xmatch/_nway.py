"""The N-way weighing of `crossmatch_many`, on arrays: every combination at once.

For each primary source, every combination of one candidate (or none) from
each other catalogue is one row of flat arrays, built by expanding the
primaries catalogue by catalogue (the last catalogue varies fastest, as
`itertools.product` orders them; a primary's first combination is "no
counterpart anywhere"). Each row's log-weight is the priors' term plus the
Budavári & Szalay (2008) Bayes factor of its members (`_probability`),
computed once per membership pattern; weights are normalised per primary.
No Python loop runs per source.

A candidate that is no counterpart is, in NWAY's model, a source of the
catalogue's mean density ``rho``. But a catalogue's sources include the
counterparts of the *other* primaries, crowded around them: a candidate
beside another primary is most likely that primary's, and two such
candidates from two catalogues agree with each other, which the uniform
model can only explain as one source with this primary (overconfident
triples, #20). So each member's ``1 / rho`` is ``1 / rho_local``: the field
density (``rho - q rho_primary``, at least `FIELD_FLOOR` of ``rho``) plus
``q`` times the Gaussian terms of every other primary within the radius of
it (`crowding`, summed over the whole primary catalogue).
"""

from __future__ import annotations

import math

import numpy as np

from . import _kernels as K

__all__ = ["Candidates", "best_combinations", "crowding", "gaussian_terms"]

_LOG_4PI = math.log(4 * math.pi)
#: the smallest field density, as a fraction of the catalogue's density (a catalogue
#: whose sources would all be counterparts still has room for an unrelated one)
FIELD_FLOOR = 0.05


def gaussian_terms(a, b, s2):
    """The 2-D Gaussian density (per steradian) of the separation of unit vectors ``a``
    and ``b`` for a variance ``s2`` (rad^2) per axis."""
    d = K.separation(a, b)
    return np.exp(-d * d / (2.0 * s2)) / (2.0 * math.pi * s2)


def crowding(primary_rows, other_rows, xyz_primary, xyz_other, sigma_primary, sigma_other,
             n_other: int) -> np.ndarray:
    """Per row of an other catalogue: the `gaussian_terms` of every primary within the
    radius of it (the candidate pairs ``primary_rows``, ``other_rows``), summed."""
    pr, orow = np.asarray(primary_rows, np.int64), np.asarray(other_rows, np.int64)
    g = gaussian_terms(xyz_primary[pr], xyz_other[orow],
                       sigma_primary[pr] ** 2 + sigma_other[orow] ** 2)
    return np.bincount(orow, weights=g, minlength=n_other)


class Candidates:
    """The candidates of one other catalogue per primary row (CSR: sorted by primary)."""

    def __init__(self, primary_rows: np.ndarray, other_rows: np.ndarray, n_primary: int):
        order = np.argsort(primary_rows, kind="stable")
        self.rows = np.asarray(other_rows, np.int64)[order]
        self.count = np.bincount(np.asarray(primary_rows, np.int64), minlength=n_primary)
        self.start = np.zeros(n_primary + 1, np.int64)
        np.cumsum(self.count, out=self.start[1:])


def _expand(combo_p: np.ndarray, choices: list[np.ndarray], cand: Candidates):
    """Each combination times (none + each candidate of ``cand`` for its primary)."""
    rep = 1 + cand.count[combo_p]
    new_p = np.repeat(combo_p, rep)
    first = np.repeat(np.cumsum(rep) - rep, rep)
    j = np.arange(new_p.size) - first
    opt = np.full(new_p.size, -1, np.int64)
    has = j > 0
    opt[has] = cand.rows[cand.start[new_p[has]] + j[has] - 1]
    return new_p, [np.repeat(c, rep) for c in choices] + [opt]


def _log_bayes_factor(vectors: list[np.ndarray], weights: list[np.ndarray]) -> np.ndarray:
    """ln of the N-way Bayes factor of members with unit vectors and weights 1/sigma^2."""
    n = len(vectors)
    total = np.sum(weights, axis=0)
    expo = np.zeros_like(total)
    for i in range(n):
        for j in range(i + 1, n):
            psi = K.separation(vectors[i], vectors[j])
            expo += weights[i] * weights[j] * psi * psi
    return ((n - 1) * math.log(2.0) + np.sum(np.log(weights), axis=0) - np.log(total)
            - expo / (2.0 * total))


def best_combinations(primaries: np.ndarray, cands: list[Candidates], xyz: list[np.ndarray],
                      sigma: list[np.ndarray], priors: list[float], rho: list[float],
                      crowd: list[np.ndarray] | None = None, rho_primary: float | None = None):
    """The most probable non-empty combination of each primary row in ``primaries``.

    Parameters
    ----------
    primaries : ndarray of int
        Primary rows, increasing, each with at least one candidate somewhere.
    cands : list of Candidates
        One per other catalogue.
    xyz, sigma : list of ndarray
        Unit vectors (n, 3) and circular errors (radians) of the primary
        catalogue first, then of each other catalogue.
    priors, rho : list of float
        Each other catalogue's completeness (fraction of primaries with a
        counterpart there) and density (per steradian).
    crowd : list of ndarray, optional
        Each other catalogue's `crowding` (over all its rows); with
        ``rho_primary`` (the primary's density), a member is weighed against
        the local density around it rather than ``rho`` (see the module notes).

    Returns
    -------
    choice : ndarray (len(primaries), len(cands)) of int
        The chosen row of each other catalogue, -1 for none.
    probability : ndarray
        The posterior of that combination.
    p_any : ndarray
        The posterior that the primary has any counterpart.
    """
    combo_p, choices = np.asarray(primaries, np.int64), []
    for cand in cands:
        combo_p, choices = _expand(combo_p, choices, cand)
    if combo_p.size == 0:
        empty = np.zeros(0)
        return np.zeros((0, len(cands)), np.int64), empty, empty
    present = np.stack([c >= 0 for c in choices], axis=1)
    logw = np.zeros(combo_p.size)
    with np.errstate(divide="ignore"):
        for k, (q, r) in enumerate(zip(priors, rho, strict=True)):
            fitted = bool(np.isfinite(q))
            q = min(max(float(q), 1e-12), 1 - 1e-12) if fitted else 0.5
            logw += np.where(present[:, k], math.log(q) - math.log(r), math.log(1 - q))
            if crowd is not None and rho_primary is not None and fitted:
                m = np.flatnonzero(present[:, k])
                p_rows, o_rows = combo_p[m], choices[k][m]
                own = gaussian_terms(xyz[0][p_rows], xyz[k + 1][o_rows],
                                     sigma[0][p_rows] ** 2 + sigma[k + 1][o_rows] ** 2)
                field = max(r - q * rho_primary, FIELD_FLOOR * r)
                local = field + q * np.maximum(crowd[k][o_rows] - own, 0.0)
                logw[m] += math.log(r) - np.log(local)
    # the Bayes factor, per membership pattern (which other catalogues are present)
    pattern = present @ (1 << np.arange(len(cands)))
    for bits in np.unique(pattern):
        if bits == 0:
            continue
        sel = np.flatnonzero(pattern == bits)
        members = [k for k in range(len(cands)) if bits >> k & 1]
        vectors = [xyz[0][combo_p[sel]]] + [xyz[k + 1][choices[k][sel]] for k in members]
        weights = [1.0 / sigma[0][combo_p[sel]] ** 2] + [
            1.0 / sigma[k + 1][choices[k][sel]] ** 2 for k in members]
        logw[sel] += _log_bayes_factor(vectors, weights) - len(members) * _LOG_4PI
    # normalised per primary: the groups are contiguous, each opening with "none"
    starts = np.flatnonzero(np.r_[True, combo_p[1:] != combo_p[:-1]])
    group = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, combo_p.size]))
    w = np.exp(logw - np.maximum.reduceat(logw, starts)[group])
    p = w / np.add.reduceat(w, starts)[group]
    p_any = 1.0 - p[starts]
    masked = p.copy()
    masked[starts] = -1.0
    best = masked == np.maximum.reduceat(masked, starts)[group]
    at = np.flatnonzero(best)
    at = at[np.unique(group[at], return_index=True)[1]]  # the first best of each group
    choice = np.stack([c[at] for c in choices], axis=1)
    return choice, p[at], p_any
