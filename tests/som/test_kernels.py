"""The array-API kernels give numpy's answers on array_api_strict arrays (float32 tolerance)."""

from __future__ import annotations

import array_api_strict as xps
import numpy as np
import pytest

from vanotebook._optional import HAS_NUMBA
from vanotebook.som import _kernels as k


def _np(a):
    """A numpy copy of an array_api_strict array."""
    return np.from_dlpack(a)


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 0.5, (700, 9)).astype(np.float32)
    w = rng.normal(1.0, 0.5, (12, 9))
    return x, w


def test_epoch_stats_strict_matches_numpy(data):
    x, w = data
    centre = x.mean(0).astype(np.float64)
    adj = k.adjacency(k.grid_distances(3, 4, "rectangular", False), "rectangular")
    xa, norms = k.prepare(x, centre)
    wa = k.prepare_prototypes(w - centre)
    ref = k.epoch_stats(xa, norms, wa, adj, chunk=100)
    sxa, snorms = k.prepare(xps.asarray(x), xps.asarray(centre))
    got = k.epoch_stats(sxa, snorms, xps.asarray(wa), xps.asarray(adj), chunk=100)
    np.testing.assert_allclose(_np(got["sums"]), ref["sums"], rtol=1e-5,
                               atol=1e-4)
    assert got["topo"] == ref["topo"] and got["n"] == ref["n"] == 700
    assert got["error"] == pytest.approx(ref["error"], rel=1e-5)


def test_epoch_stats_against_direct_loops(data):
    x, w = data
    centre = np.zeros(9)
    adj = k.adjacency(k.grid_distances(3, 4, "rectangular", False), "rectangular")
    xa, norms = k.prepare(x, centre)
    st = k.epoch_stats(xa, norms, k.prepare_prototypes(w), adj, chunk=64)
    d = np.sqrt(((x[:, None, :].astype(np.float64) - w[None]) ** 2).sum(-1))
    order = np.argsort(d, axis=1)
    best = order[:, 0]
    assert st["error"] / len(x) == pytest.approx(d.min(1).mean(), rel=1e-4)
    assert st["topo"] == int((~adj[best, order[:, 1]]).sum())
    direct = np.zeros((12, 10))
    for i, b in enumerate(best):
        direct[b, :9] += x[i]
        direct[b, 9] += 1
    np.testing.assert_allclose(st["sums"], direct, rtol=1e-5, atol=1e-4)


def test_segment_sum_and_update_strict(data):
    x, w = data
    best = np.random.default_rng(1).integers(0, 12, len(x))
    ref = k.segment_sum(best, x, 12)
    got = k.segment_sum(xps.asarray(best), xps.asarray(x), 12)
    np.testing.assert_allclose(_np(got), ref, rtol=1e-5, atol=1e-4)
    h = k.neighbourhood(k.grid_distances(3, 4, "hexagonal", True), 1.5, "gaussian")
    sums = np.column_stack([ref, np.bincount(best, minlength=12)]).astype(np.float64)
    new = k.update_prototypes(w, sums, h)
    got = k.update_prototypes(xps.asarray(w), xps.asarray(sums), xps.asarray(h))
    np.testing.assert_allclose(_np(got), new, rtol=1e-10)
    direct = (h @ sums[:, :9]) / (h @ sums[:, 9])[:, None]
    np.testing.assert_allclose(new, direct, rtol=1e-10)


def test_bubble_keeps_prototype_without_weight():
    w = np.arange(8.0).reshape(4, 2)
    sums = np.zeros((4, 3))
    sums[0] = [2.0, 4.0, 2.0]
    h = k.neighbourhood(k.grid_distances(1, 4, "rectangular", False), 0.5, "bubble")
    new = k.update_prototypes(w, sums, h)
    np.testing.assert_allclose(new[0], [1.0, 2.0])
    np.testing.assert_allclose(new[1:], w[1:])


def test_best_units_strict(data):
    x, w = data
    xa, norms = k.prepare(x, np.zeros(9))
    wa = k.prepare_prototypes(w)
    b, d2 = k.best_units(xa, norms, wa, chunk=50)
    sb, sd2 = k.best_units(*k.prepare(xps.asarray(x), xps.asarray(np.zeros(9))),
                           xps.asarray(wa), chunk=50)
    np.testing.assert_array_equal(_np(sb), b)
    np.testing.assert_allclose(_np(sd2), d2, rtol=1e-4, atol=1e-4)
    f, s = k.two_best_units(xps.asarray(xa), xps.asarray(wa))
    d = ((x[:, None, :].astype(np.float64) - w[None]) ** 2).sum(-1)
    order = np.argsort(d, axis=1)
    np.testing.assert_array_equal(_np(f), order[:, 0])
    np.testing.assert_array_equal(_np(s), order[:, 1])


def test_hexagonal_neighbour_distances():
    d = k.grid_distances(6, 6, "hexagonal", False)
    xy = k.grid_coordinates(6, 6, "hexagonal")
    adj = k.adjacency(d, "hexagonal")
    np.fill_diagonal(adj, False)
    unit = 2 * 6 + 2  # an interior unit on an even row
    nb = np.flatnonzero(adj[unit])
    assert len(nb) == 6
    np.testing.assert_allclose(d[unit, nb], 1.0)
    np.testing.assert_allclose(np.hypot(*(xy[nb] - xy[unit]).T), 1.0)
    assert set(nb) == {13, 15, 7, 8, 19, 20}  # odd rows are shifted half a unit right
    odd = 3 * 6 + 2
    assert set(np.flatnonzero(adj[odd])) == {19, 21, 14, 15, 26, 27}
    # a periodic hexagonal map: every unit has exactly 6 neighbours at distance 1
    dp = k.grid_distances(6, 8, "hexagonal", True)
    adjp = k.adjacency(dp, "hexagonal")
    np.fill_diagonal(adjp, False)
    assert (adjp.sum(1) == 6).all()
    np.testing.assert_allclose(dp[adjp], 1.0)
    # second-nearest ring of a hexagonal lattice is at sqrt(3)
    assert np.isclose(np.sort(np.unique(np.round(d[unit], 6)))[2], np.sqrt(3), atol=1e-6)


def test_rectangular_periodic_wraps():
    d = k.grid_distances(5, 7, "rectangular", True)
    assert d[0, 6] == pytest.approx(1.0)  # across the left/right edge
    assert d[0, 4 * 7] == pytest.approx(1.0)  # across the top/bottom edge
    adj = k.adjacency(d, "rectangular")
    np.fill_diagonal(adj, False)
    assert (adj.sum(1) == 8).all()


def test_radius_schedule():
    assert k.radius_at(0, 9, 16) == 9
    assert k.radius_at(16, 9, 16) == pytest.approx(9 / np.e)


# ----------------------------------------------------------------------------- CPU fast path
@pytest.mark.skipif(not HAS_NUMBA, reason="the fused CPU path needs numba")
@pytest.mark.parametrize("threads", [1, 2])
def test_fast_epoch_matches_reference_and_direct(data, threads):
    from vanotebook.som import _fast

    x, w = data
    w = w.copy()
    w[5] = w[2]  # a tie: both argmin and the fused scan must take the first unit
    centre = x.mean(0).astype(np.float64)
    adj = k.adjacency(k.grid_distances(3, 4, "hexagonal", False), "hexagonal")
    xa, norms = k.prepare(x, centre)
    wa = k.prepare_prototypes(w - centre)
    ref = k.epoch_stats(xa, norms, wa, adj, chunk=100)
    got = _fast.epoch_stats(xa, norms, wa, adj, chunk=64, slice_rows=128, threads=threads)
    np.testing.assert_allclose(got["sums"], ref["sums"], rtol=1e-5, atol=1e-4)
    assert got["topo"] == ref["topo"] and got["n"] == ref["n"] == 700
    assert got["error"] == pytest.approx(ref["error"], rel=1e-5)
    assert got["sq_error"] == pytest.approx(ref["sq_error"], rel=1e-5)
    # against a direct float64 computation
    d = np.sqrt(((x[:, None, :].astype(np.float64) - w[None]) ** 2).sum(-1))
    order = np.argsort(d, axis=1, kind="stable")
    assert (order[:, 0] != 5).all()
    np.testing.assert_array_equal(got["sums"][:, -1], np.bincount(order[:, 0], minlength=12))
    assert got["error"] / 700 == pytest.approx(d.min(1).mean(), rel=1e-4)
    # slices are fixed, so the thread count does not change a single bit
    one = _fast.epoch_stats(xa, norms, wa, adj, chunk=64, slice_rows=128, threads=1)
    np.testing.assert_array_equal(got["sums"], one["sums"])
    assert got["error"] == one["error"]


@pytest.mark.skipif(not HAS_NUMBA, reason="the fused CPU path needs numba")
def test_fast_epoch_options_and_edges(data):
    from vanotebook.som import _fast

    x, w = data
    xa, norms = k.prepare(x, np.zeros(9))
    wa = k.prepare_prototypes(w)
    ref = k.epoch_stats(xa, norms, wa, None, sums=False)
    got = _fast.epoch_stats(xa, norms, wa, None, sums=False, threads=2)
    assert got["sums"] is None and got["topo"] is None and ref["topo"] is None
    assert got["sq_error"] == pytest.approx(ref["sq_error"], rel=1e-5)
    # one unit: every row is its member, no topographic error (a unit is its own neighbour)
    one = k.prepare_prototypes(w[:1])
    adj1 = np.ones((1, 1), bool)
    st = _fast.epoch_stats(xa, norms, one, adj1)
    ref1 = k.epoch_stats(xa, norms, one, adj1)
    assert st["topo"] == ref1["topo"] == 0
    np.testing.assert_allclose(st["sums"], ref1["sums"], rtol=1e-5, atol=1e-4)
    empty = _fast.epoch_stats(xa[:0], norms[:0], wa, None)
    assert empty["n"] == 0 and empty["error"] == 0.0 and not empty["sums"].any()


def test_fast_prepare_matches_reference(data):
    from vanotebook.som import _fast

    x, _ = data
    centre = x.mean(0).astype(np.float64) + 0.25
    xa, norms = _fast.prepare(x, centre)
    ref_xa, ref_norms = k.prepare(x, centre)
    np.testing.assert_array_equal(xa, ref_xa)
    np.testing.assert_allclose(norms, ref_norms, rtol=1e-5)
    assert xa.dtype == norms.dtype == np.float32
