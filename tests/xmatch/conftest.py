"""Shared test data of the cross-match tests."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table


def _three_catalogues(n: int, seed: int, side: float, sigma: float = 0.3) -> dict[str, Table]:
    """A primary of ``n`` sources; 60% of them again in each of two more catalogues (with
    ``sigma`` arcsec errors per axis, ``truth`` naming the primary row), padded with field
    sources (the model of ``benchmarks/xmatch_nway.py``)."""
    rng = np.random.default_rng(seed)
    ra0, dec0 = 150 + rng.uniform(0, side, n), rng.uniform(0, side, n)

    def measured(rows):
        off = rng.normal(0, sigma / 3600, (2, rows.size))
        return ra0[rows] + off[0] / np.cos(np.radians(dec0[rows])), dec0[rows] + off[1]

    ra, dec = measured(np.arange(n))
    cats = {"a": Table({"id": np.arange(n), "ra": ra, "dec": dec,
                        "error": np.full(n, sigma) * u.arcsec})}
    for name in "bc":
        rows = np.flatnonzero(rng.random(n) < 0.6)
        mra, mdec = measured(rows)
        k = n - rows.size
        cats[name] = Table({"ra": np.r_[mra, 150 + rng.uniform(0, side, k)],
                            "dec": np.r_[mdec, rng.uniform(0, side, k)],
                            "error": np.full(n, sigma) * u.arcsec,
                            "truth": np.r_[rows, np.full(k, -1)]})
    return cats


@pytest.fixture(scope="session")
def three_catalogues():
    """`_three_catalogues`: ``three_catalogues(n, seed=..., side=...)``."""
    return _three_catalogues
