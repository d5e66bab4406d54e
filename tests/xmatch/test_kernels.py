"""The array-API kernels give the same answers on array-api-strict as on numpy."""

from __future__ import annotations

import array_api_strict as xps
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

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
