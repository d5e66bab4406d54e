"""Greybody benchmark: vanotebook's batched fit vs a per-source scipy curve_fit loop.

The issue's workload: 5,000 sources with Hi-GAL photometry (70, 160, 250, 350,
500 um; 5% errors), T in 10-35 K, M in 10-1000 Msun, beta in 1.5-2.3, free beta,
optically thin, at 1 kpc. Both run in this process on the same fluxes; the peer
is `scipy.optimize.curve_fit` (Levenberg-Marquardt, absolute sigma) on a numpy
greybody, started from T = 20 K, beta = 2 and the mass that matches 250 um. The
first call in a fresh process (imports included) runs in a subprocess.

    python benchmarks/sed.py            # 5,000 sources
    python benchmarks/sed.py --rows 500
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings

import numpy as np

H, K, C = 6.62607015e-34, 1.380649e-23, 299792458.0
MSUN, KPC = 1.98840987e30, 3.0856775814913673e19
WAVE_UM = np.array([70.0, 160.0, 250.0, 350.0, 500.0])
NU = C / (WAVE_UM * 1e-6)
KAPPA0, NU0 = 0.01, 1e12  # m^2/kg at 1 THz (0.1 cm^2/g)


def greybody(nu, t, m, beta, d=KPC):
    """S_nu [Jy] of the thin greybody (numpy, broadcasting)."""
    bnu = 2 * H * nu**3 / C**2 / np.expm1(H * nu / (K * t))
    return m * MSUN * KAPPA0 * (nu / NU0) ** beta * bnu / d**2 * 1e26


def make(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = rng.uniform(10, 35, n)
    m = 10 ** rng.uniform(1, 3, n)
    beta = rng.uniform(1.5, 2.3, n)
    s = greybody(NU[None, :], t[:, None], m[:, None], beta[:, None])
    err = 0.05 * s
    return s + err * rng.standard_normal(s.shape), err, (t, m, beta)


def ours(flux, err):
    import astropy.units as u

    from vanotebook.sed import fit_greybody

    out = fit_greybody(flux * u.Jy, err * u.Jy, WAVE_UM * u.um, distance=1 * u.kpc)
    return out["temperature"].value, out["mass"].value, np.asarray(out["beta"])


def curve_fit_loop(flux, err):
    from scipy.optimize import curve_fit

    n = flux.shape[0]
    t, m, b = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    failed = 0
    for i in range(n):
        m0 = flux[i, 2] / greybody(NU[2], 20.0, 1.0, 2.0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                popt, _ = curve_fit(lambda nu, tt, mm, bb: greybody(nu, tt, mm, bb), NU,
                                    flux[i], p0=[20.0, m0, 2.0], sigma=err[i],
                                    absolute_sigma=True, maxfev=2000)
            t[i], m[i], b[i] = popt
        except RuntimeError:
            failed += 1
    return t, m, b, failed


_FRESH = """
import time
t0 = time.perf_counter()
import numpy as np, astropy.units as u
from vanotebook.sed import fit_greybody
rng = np.random.default_rng(0)
f = np.array([[30., 850., 760., 410., 200.]]) * rng.uniform(0.95, 1.05, (1000, 5))
w = np.array([70., 160., 250., 350., 500.]) * u.um
fit_greybody(f * u.Jy, 0.05 * f * u.Jy, w, distance=1 * u.kpc)
first = time.perf_counter() - t0
t1 = time.perf_counter()
fit_greybody(f * u.Jy, 0.05 * f * u.Jy, w, distance=1 * u.kpc)
print(first, time.perf_counter() - t1)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="sources")
    args = parser.parse_args()
    import os

    flux, err, (t, m, beta) = make(args.rows)
    print(f"workload: {args.rows:,} sources x 5 bands, thin greybody, free beta, 5% errors; "
          f"{os.cpu_count()} cores")
    ours(flux[:100], err[:100])  # warm: imports
    t0 = time.perf_counter()
    tv, mv, bv = ours(flux, err)
    dt_ours = time.perf_counter() - t0
    print(f"vanotebook fit_greybody (warm)        {dt_ours:8.2f} s  "
          f"{args.rows / dt_ours:9.0f} sources/s")
    t0 = time.perf_counter()
    tc, mc, bc, failed = curve_fit_loop(flux, err)
    dt_ref = time.perf_counter() - t0
    print(f"scipy curve_fit, one call per source  {dt_ref:8.2f} s  "
          f"{args.rows / dt_ref:9.0f} sources/s  ({failed} failed to converge)")
    for label, (a, b_, c_) in (("vanotebook", (tv, mv, bv)), ("curve_fit", (tc, mc, bc))):
        ok = np.isfinite(a)
        print(f"  {label:<11s} median |dT|/T = {np.nanmedian(np.abs(a[ok] / t[ok] - 1)):.4f}  "
              f"median |dM|/M = {np.nanmedian(np.abs(b_[ok] / m[ok] - 1)):.4f}  "
              f"median |dbeta| = {np.nanmedian(np.abs(c_[ok] - beta[ok])):.4f}")
    same = np.isfinite(tc)
    agree = np.median(np.abs(tv[same] / tc[same] - 1))
    print(f"  median |T_ours / T_curve_fit - 1| = {agree:.2e} over {same.sum()} sources")
    done = subprocess.run([sys.executable, "-c", _FRESH], capture_output=True, text=True,
                          check=True)
    first, warm = map(float, done.stdout.split())
    print(f"fit_greybody of 1,000 sources, first call in a fresh process (imports included): "
          f"{first:.2f} s; warm {warm:.3f} s")
    print(f"\nratio (curve_fit loop / vanotebook): {dt_ref / dt_ours:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()
