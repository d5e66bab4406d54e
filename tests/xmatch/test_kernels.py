"""The array-API kernels give the same answers on array-api-strict as on numpy."""

from __future__ import annotations

import array_api_strict as xps
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from vanotebook._optional import HAS_NUMBA
from vanotebook.xmatch import _kernels as K
from vanotebook.xmatch import _probability as P


def _pair(n=500):
    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    ra2, dec2 = ra + rng.normal(0, 1e-3, n), np.clip(dec + rng.normal(0, 1e-3, n), -90, 90)
    return ra, dec, np.mod(ra2, 360), dec2


def test_kernels_on_array_api_strict_match_numpy():
    ra, dec, ra2, dec2 = _pair()
    a, b = K.unit_vectors(ra, dec), K.unit_vectors(ra2, dec2)
    sa, sb = K.unit_vectors(xps.asarray(ra), xps.asarray(dec)), K.unit_vectors(
        xps.asarray(ra2), xps.asarray(dec2))
    np.testing.assert_allclose(np.asarray(sa), a, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(K.separation(sa, sb)), K.separation(a, b), rtol=1e-5)
    dx, dy = K.tangent_offsets(sa, sb)
    ndx, ndy = K.tangent_offsets(a, b)
    np.testing.assert_allclose(np.asarray(dx), ndx, rtol=1e-5, atol=1e-12)
    var = np.full(ra.size, 1e-11)
    f = P.gaussian_density(dx, dy, xps.asarray(var), xps.asarray(var))
    np.testing.assert_allclose(np.asarray(f), P.gaussian_density(ndx, ndy, var, var), rtol=1e-5)
    pm = np.full(ra.size, 100.0)
    r1, d1 = K.propagate(xps.asarray(ra), xps.asarray(dec), xps.asarray(pm), xps.asarray(-pm),
                         10.0)
    r2, d2 = K.propagate(ra, dec, pm, -pm, 10.0)
    np.testing.assert_allclose(np.asarray(d1), d2, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(r1), r2, rtol=1e-9)


def test_separation_equals_astropy():
    ra, dec, ra2, dec2 = _pair()
    sep = K.separation(K.unit_vectors(ra, dec), K.unit_vectors(ra2, dec2))
    ref = SkyCoord(ra, dec, unit="deg").separation(SkyCoord(ra2, dec2, unit="deg")).rad
    np.testing.assert_allclose(sep, ref, rtol=1e-9)


@pytest.mark.filterwarnings("ignore:ERFA function \"pmsafe\" yielded:erfa.ErfaWarning")
def test_propagation_equals_astropy_apply_space_motion():
    import astropy.units as u
    from astropy.time import Time

    ra, dec, _, _ = _pair(200)
    rng = np.random.default_rng(1)
    pmra, pmdec = rng.normal(0, 300, (2, ra.size))
    c = SkyCoord(ra * u.deg, dec * u.deg, pm_ra_cosdec=pmra * u.mas / u.yr,
                 pm_dec=pmdec * u.mas / u.yr, obstime=Time(2016.0, format="jyear"))
    ref = c.apply_space_motion(new_obstime=Time(2000.0, format="jyear"))
    r, d = K.propagate(ra, dec, pmra, pmdec, -16.0)
    got = SkyCoord(r, d, unit="deg")
    assert got.separation(ref).to_value(u.mas).max() < 0.1


def test_nway_factor_reduces_to_two_way():
    w1, w2 = np.array([4.0]), np.array([1.0])
    psi2 = [np.array([0.3])]
    b = P.nway_bayes_factor(psi2, [w1, w2])
    var = 1 / w1 + 1 / w2
    np.testing.assert_allclose(b, 2 / var * np.exp(-psi2[0] / (2 * var)))


def _clustered_sky(rng, n):
    """Uniform sky plus dense clumps at both poles and across RA 0/360."""
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    m = n // 4
    ra = np.concatenate([ra, rng.uniform(0, 360, 2 * m), np.mod(rng.normal(0, 2e-3, m), 360)])
    dec = np.concatenate([dec, 90 - rng.uniform(0, 5e-3, m), -90 + rng.uniform(0, 5e-3, m),
                          rng.normal(-30, 2e-3, m)])
    return ra, dec


@pytest.mark.skipif(not HAS_NUMBA, reason="the grid engine needs numba")
@pytest.mark.parametrize("radius_arcsec", [0.01, 2.0, 30.0, 36_000.0])
def test_grid_and_numpy_engines_give_search_around_sky_pairs(radius_arcsec):
    import astropy.units as u
    from astropy.coordinates import search_around_sky

    rng = np.random.default_rng(int(radius_arcsec * 100))
    n = 400 if radius_arcsec > 1000 else 3000
    lra, ldec = _clustered_sky(rng, n)
    rra, rdec = _clustered_sky(rng, n)
    if radius_arcsec < 1:  # companions closer than the tiny radius
        rra = np.concatenate([rra, np.mod(lra + 1e-6, 360)])
        rdec = np.concatenate([rdec, ldec])
    chord = K.angle_to_chord(np.radians(radius_arcsec / 3600))
    grid = K.pairs_within(lra, ldec, rra, rdec, chord, engine="grid")
    numpy_ = K.pairs_within(lra, ldec, rra, rdec, chord, engine="numpy")
    np.testing.assert_array_equal(grid[0], numpy_[0])  # same pairs, same order
    np.testing.assert_array_equal(grid[1], numpy_[1])
    np.testing.assert_allclose(grid[2], numpy_[2], rtol=0, atol=1e-15)
    np.testing.assert_allclose(grid[4], numpy_[4], rtol=1e-9, atol=1e-24)  # squared chords
    # which are those of the pairs' vectors, and give astropy's separations
    d2 = np.sum((grid[2][grid[0]] - grid[3][grid[1]]) ** 2, axis=1)
    np.testing.assert_allclose(grid[4], d2, rtol=1e-12, atol=0)
    sep = SkyCoord(lra[grid[0]], ldec[grid[0]], unit="deg").separation(
        SkyCoord(rra[grid[1]], rdec[grid[1]], unit="deg")).rad
    np.testing.assert_allclose(K.chord_to_angle(np.sqrt(grid[4])), sep, rtol=1e-9, atol=1e-15)
    i1, i2, _, _ = search_around_sky(SkyCoord(lra, ldec, unit="deg"),
                                     SkyCoord(rra, rdec, unit="deg"), radius_arcsec * u.arcsec)
    assert set(zip(grid[0], grid[1], strict=True)) == set(zip(i1, i2, strict=True))
    assert len(i1) > 50
    # within a left row the pairs come nearest first
    d = np.sum((grid[2][grid[0]] - grid[3][grid[1]]) ** 2, axis=1)
    same = grid[0][1:] == grid[0][:-1]
    assert (d[1:][same] >= d[:-1][same]).all()


@pytest.mark.parametrize("engine", ["grid", "numpy"])
def test_pairs_within_empty_sides(engine):
    if engine == "grid" and not HAS_NUMBA:
        pytest.skip("the grid engine needs numba")
    one = np.array([10.0])
    for args in ((one[:0], one[:0], one, one), (one, one, one[:0], one[:0])):
        li, ri, lxyz, rxyz, d2 = K.pairs_within(*args, 1e-5, engine=engine)
        assert li.size == ri.size == d2.size == 0 and lxyz.shape[1] == rxyz.shape[1] == 3


@pytest.mark.parametrize("crowded", [False, True], ids=["uniform", "local-density"])
def test_nway_weighing_on_arrays_equals_the_combination_loop(crowded):
    """`_nway.best_combinations` weighs every combination of every primary at once; a
    loop over `itertools.product` per primary with `nway_bayes_factor` (the formula of
    Budavari & Szalay 2008) gives the same choice, probability and p_any. Up to four
    candidates per catalogue, three other catalogues, unequal errors. With ``crowded``,
    each member's density is the local one: the field (rho - q rho_primary) plus q times
    the Gaussian terms of the other primaries around it, written out here per pair.
    Mutations: the pairwise (exponential) term of the Bayes factor dropped, the density
    1/rho left out, the (4 pi)^(members) normalisation left out, or this primary's own
    term left in the local density: each fails it."""
    import math
    from itertools import product

    from vanotebook.xmatch import _nway

    rng = np.random.default_rng(3)
    arcsec = np.pi / 180 / 3600
    n_p, sizes = 300, (500, 400, 450)
    ra_p, dec_p = rng.uniform(10, 10.05, n_p), rng.uniform(-5, -4.95, n_p)
    if crowded:  # primaries in close pairs (2 p and 2 p + 1), each the other's candidates'
        ra_p[1::2] = ra_p[0::2] + rng.normal(0, 1.5 / 3600, n_p // 2)
        dec_p[1::2] = dec_p[0::2] + rng.normal(0, 1.5 / 3600, n_p // 2)
    xyz = [np.asarray(K.unit_vectors(ra_p, dec_p))]
    sigma = [rng.uniform(0.2, 0.6, n_p) * arcsec]
    cands = []
    pairs = []
    for size in sizes:
        host = rng.integers(0, n_p, size)
        off = rng.normal(0, 1.5 / 3600, (2, size))
        xyz.append(np.asarray(K.unit_vectors(ra_p[host] + off[0], dec_p[host] + off[1])))
        sigma.append(rng.uniform(0.2, 0.8, size) * arcsec)
        # each primary's candidates: up to 4 rows of this catalogue near it
        p_rows, o_rows = [], []
        for p in range(n_p):
            mine = (host == p) | ((host == (p ^ 1)) if crowded else False)
            near = np.flatnonzero(mine)[: rng.integers(0, 5)]
            p_rows += [p] * near.size
            o_rows += list(near)
        perm = rng.permutation(len(p_rows))  # any order in, sorted by primary inside
        pairs.append((np.asarray(p_rows)[perm], np.asarray(o_rows)[perm]))
        cands.append(_nway.Candidates(*pairs[-1], n_p))
    priors, rho = [0.7, 0.4, 0.55], [3e9, 5e9, 4e9]
    rho_p = 2e9
    primaries = np.unique(np.concatenate([p for p, _ in pairs]))

    def gauss(p, k, r):  # the 2-D Gaussian of a primary and a candidate, per sr
        s2 = sigma[0][p] ** 2 + sigma[k][r] ** 2
        d = float(K.separation(xyz[0][p], xyz[k][r]))
        return math.exp(-d * d / (2 * s2)) / (2 * math.pi * s2)

    crowd = None
    if crowded:
        crowd = []
        for k, (pr, o) in enumerate(pairs, start=1):
            c = np.zeros(sizes[k - 1])
            for a, b in zip(pr, o, strict=True):
                c[b] += gauss(a, k, b)
            crowd.append(c)
    choice, prob, p_any = _nway.best_combinations(primaries, cands, xyz, sigma, priors, rho,
                                                  crowd, rho_p if crowded else None)
    assert len(primaries) > 200 and (choice >= 0).sum(axis=1).max() == 3
    for i, p in enumerate(primaries):
        options = [[-1, *(int(c) for c in o[pr == p])] for pr, o in pairs]
        weights, combos = [], []
        for combo in product(*options):
            w, members = 1.0, [(0, p)]
            for k, c in enumerate(combo):
                density = rho[k]
                if crowded and c >= 0:
                    field = max(rho[k] - priors[k] * rho_p, 0.05 * rho[k])
                    density = field + priors[k] * max(crowd[k][c] - gauss(p, k + 1, c), 0.0)
                w *= priors[k] / density if c >= 0 else 1 - priors[k]
                if c >= 0:
                    members.append((k + 1, c))
            if len(members) > 1:
                vecs = [xyz[k][r] for k, r in members]
                psi2 = [float(K.separation(vecs[a], vecs[b])) ** 2
                        for a in range(len(vecs)) for b in range(a + 1, len(vecs))]
                ws = [np.float64(1 / sigma[k][r] ** 2) for k, r in members]
                w *= float(P.nway_bayes_factor(psi2, ws)) / (4 * np.pi) ** (len(members) - 1)
            weights.append(w)
            combos.append(combo)
        weights = np.asarray(weights) / np.sum(weights)
        j = int(np.argmax(weights[1:])) + 1
        assert tuple(choice[i]) == combos[j]
        assert prob[i] == pytest.approx(weights[j], rel=1e-9, abs=1e-12)
        assert p_any[i] == pytest.approx(1 - weights[0], rel=1e-9, abs=1e-12)


@pytest.mark.skipif(not HAS_NUMBA, reason="the grid engine needs numba")
def test_auto_engine_takes_numpy_below_grid_rows(monkeypatch):
    """Small matches never load numba (its one-time cost in a fresh process is ~0.9 s,
    more than the numpy join takes there); the choice depends on the sizes only, so a rerun
    takes the same path. Both paths give the same pairs."""
    rng = np.random.default_rng(2)
    ra, dec = rng.uniform(0, 0.1, 500), rng.uniform(0, 0.1, 500)
    chord = K.angle_to_chord(np.radians(20 / 3600))
    grid, used = K._pairs_grid, []
    monkeypatch.setattr(K, "_pairs_grid", lambda *a: used.append(1) or grid(*a))
    small = K.pairs_within(ra, dec, ra[::-1], dec[::-1], chord)
    assert used == []
    monkeypatch.setattr(K, "GRID_ROWS", 999)
    large = K.pairs_within(ra, dec, ra[::-1], dec[::-1], chord)
    assert used == [1]
    np.testing.assert_array_equal(small[0], large[0])
    np.testing.assert_array_equal(small[1], large[1])


def test_numpy_join_in_small_steps_gives_the_same_pairs(monkeypatch):
    """The numpy join holds a bounded number of candidates at once; cut into steps of
    a few candidates (single rows with more than a step included), it gives the same
    pairs in the same order. Mutation: the steps overlapping or skipping a row fails it."""
    rng = np.random.default_rng(5)
    lra, ldec = _clustered_sky(rng, 800)
    rra, rdec = _clustered_sky(rng, 900)
    chord = K.angle_to_chord(np.radians(60 / 3600))
    whole = K.pairs_within(lra, ldec, rra, rdec, chord, engine="numpy")
    monkeypatch.setattr(K, "_NUMPY_STEP", 5)
    steps = K.pairs_within(lra, ldec, rra, rdec, chord, engine="numpy")
    assert whole[0].size > 100
    np.testing.assert_array_equal(whole[0], steps[0])
    np.testing.assert_array_equal(whole[1], steps[1])
