"""Mosaics of real distorted headers and flux-conserving regrids, us and reproject side by
side in one process: time ratio and agreement.

* SIP: a 1024 x 1024 corner of the Palomar Transient Factory CCD frame that ships with
  astropy (``siponly.hdr``, SIP order 4, ~95 arcsec of distortion), bilinear, against
  ``reproject_interp``.
* flux-conserving: a 512 x 512 tile onto a 2x finer grid rotated by 30 deg, against
  ``reproject_exact``.

Run: ``python benchmarks/mosaic_real.py [--size N]``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from astropy.io import fits
from astropy.utils.data import get_pkg_data_filename
from astropy.wcs import WCS


def _ptf(size: int):
    path = get_pkg_data_filename("data/siponly.hdr", package="astropy.wcs.tests")
    h = fits.Header.fromfile(path, sep="", endcard=False, padding=False)
    h["CRPIX1"] -= 2048 - size
    h["CRPIX2"] -= 4096 - size
    h["NAXIS1"] = h["NAXIS2"] = size
    return h


def _timed(f):
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from reproject import reproject_exact, reproject_interp

    from vanotebook.mosaic import mosaic

    n = args.size
    h = _ptf(n)
    small = np.zeros((64, 64), np.float32)  # warm up both (imports, numba's cache)
    mosaic([(small, _ptf(64))], match_background=False)
    mosaic([(small, _ptf(64))], match_background=False, method="flux-conserving")
    reproject_interp((small, _ptf(64)), WCS(_ptf(64)), shape_out=(64, 64))
    data = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    ds, t_us = _timed(lambda: mosaic([(data, h)], match_background=False))
    grid = WCS(fits.Header.fromstring(ds.attrs["header"]))
    (ref, fp), t_them = _timed(lambda: reproject_interp((data, h), grid,
                                                        shape_out=ds["mosaic"].shape))
    both = (fp > 0) & np.isfinite(ds["mosaic"].values)
    diff = np.max(np.abs(ds["mosaic"].values - ref)[both])
    print(f"SIP bilinear {n}x{n}: us {t_us:.2f} s, reproject_interp {t_them:.2f} s, "
          f"ratio {t_them / t_us:.2f}; max |diff| {diff:.2e}"
          f" (noise 1), pixels {both.sum()} / {(fp > 0).sum()}")

    m = n // 2
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [30, 40], [m / 2, m / 2], [-1e-3, 1e-3]
    tile = np.random.default_rng(1).normal(size=(m, m)).astype(np.float32)
    out = WCS(naxis=2)
    out.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    k = int(m * 2.9)
    out.wcs.crval, out.wcs.crpix, out.wcs.cdelt = [30, 40], [k / 2, k / 2], [-5e-4, 5e-4]
    a = np.radians(30)
    out.wcs.pc = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    ds, t_us = _timed(lambda: mosaic([(tile, w)], wcs=out, shape=(k, k),
                                     method="flux-conserving", match_background=False))
    (ref, fp), t_them = _timed(lambda: reproject_exact((tile, w), out, shape_out=(k, k)))
    foot = fp > 0
    ours = ds["mosaic"].values
    print(f"flux-conserving {m}x{m} -> {k}x{k} (2x finer, 30 deg): us {t_us:.2f} s, "
          f"reproject_exact {t_them:.2f} s, ratio {t_them / t_us:.2f}; holes "
          f"{int((~np.isfinite(ours[foot])).sum())} of {int(foot.sum())}, max |diff| "
          f"{np.nanmax(np.abs(ours - ref)[foot]):.2e} (output noise rms 0.5)")


if __name__ == "__main__":
    main()
