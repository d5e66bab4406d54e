"""Synthetic photometry for the SED tests, made independently of the fit's kernels.

Fluxes come from astropy's `BlackBody` and the greybody formulas written out
with units here, so a wrong constant or convention in `vanotebook.sed` shows.
"""

from __future__ import annotations

from types import SimpleNamespace

import astropy.units as u
import numpy as np
import pytest
from astropy.modeling.physical_models import BlackBody

HIGAL = np.array([70.0, 160.0, 250.0, 350.0, 500.0]) * u.um
KAPPA0 = 0.1 * u.cm**2 / u.g
NU0 = 1 * u.THz


def greybody(temperature, mass, beta, wavelength=HIGAL, *, distance=1 * u.kpc, model="thin",
             size=None, lambda0=None):
    """S_nu [Jy], shape (n, b), for per-source T [K], M [Msun], beta."""
    t = np.atleast_1d(temperature)[:, None] * u.K
    m = np.atleast_1d(mass)[:, None] * u.Msun
    b = np.atleast_1d(beta)[:, None]
    d = np.atleast_1d(distance.to(u.m))
    d = d[:, None] if d.size > 1 else d
    nu = wavelength.to(u.Hz, equivalencies=u.spectral())[None, :]
    bnu = BlackBody(temperature=t, scale=1.0 * u.Jy / u.sr)(nu)  # Jy / sr
    kappa = KAPPA0 * (nu / NU0).to_value(u.one) ** b
    if model == "thin":
        s = (m * kappa * bnu * u.sr / d**2).to(u.Jy)
    elif size is not None:
        omega = np.pi * (np.atleast_1d(size.to_value(u.rad))[:, None] / 2) ** 2 * u.sr
        tau = (m * kappa / (d**2 * omega / u.sr)).to_value(u.one)
        s = (omega * bnu * -np.expm1(-tau)).to(u.Jy)
    else:
        nu_tau = lambda0.to(u.Hz, equivalencies=u.spectral())
        tau = (nu / nu_tau).to_value(u.one) ** b
        omega = (m * KAPPA0 * (nu_tau / NU0).to_value(u.one) ** b / d**2).to_value(u.one) * u.sr
        s = (omega * bnu * -np.expm1(-tau)).to(u.Jy)
    return s.value


def population(n, seed=0, *, beta=None):
    rng = np.random.default_rng(seed)
    t = rng.uniform(10.0, 35.0, n)
    m = 10 ** rng.uniform(1.0, 3.0, n)
    b = rng.uniform(1.5, 2.3, n) if beta is None else np.full(n, float(beta))
    return t, m, b


def observe(s, rel=0.05, seed=1):
    rng = np.random.default_rng(seed)
    err = rel * s
    return (s + err * rng.standard_normal(s.shape)) * u.Jy, err * u.Jy


@pytest.fixture(scope="session")
def synth():
    """The helpers above, for tests (conftest modules are not importable by name)."""
    return SimpleNamespace(greybody=greybody, population=population, observe=observe,
                           bands=HIGAL, kappa0=KAPPA0, nu0=NU0)
