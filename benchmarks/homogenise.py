"""homogenise against the peers' way: reproject_interp, then astropy.convolution to the
common beam, then the unit conversion by hand.

Workload: one ``n`` x ``n`` radio-like TAN image (Jy/beam, beam 10" x 6" at PA 30,
2" pixels, noise rms 1 mJy/beam, 300 point sources) regridded onto a grid rotated by
20 deg with 3" pixels and smoothed to a 20" round beam, in MJy/sr. Prints both times, the ratio,
and the largest difference in units of the output noise rms.

Run: ``python benchmarks/homogenise.py [--size 2048]``.
"""

from __future__ import annotations

import argparse
import math
import time

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from vanotebook.mosaic import homogenise
from vanotebook.units import Beam


def make_image(n: int, seed: int = 0) -> fits.PrimaryHDU:
    rng = np.random.default_rng(seed)
    pix = 2.0
    bmaj, bmin, bpa = 10.0, 6.0, 30.0
    data = rng.normal(0, 1e-3, (n, n))
    sx, sy = bmin / pix / 2.3548, bmaj / pix / 2.3548
    t = math.radians(bpa)
    r = 12
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    for x, y, f in zip(rng.uniform(r, n - r - 1, 300), rng.uniform(r, n - r - 1, 300),
                       rng.lognormal(-3, 1, 300), strict=True):
        ix, iy = int(x), int(y)
        dx, dy = xx + ix - x, yy + iy - y
        # PA from north (+y) towards east (-x)
        a = dx * math.cos(t) + dy * math.sin(t)
        b = -dx * math.sin(t) + dy * math.cos(t)
        data[iy - r:iy + r + 1, ix - r:ix + r + 1] += f * np.exp(
            -0.5 * ((a / sx) ** 2 + (b / sy) ** 2))
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [n / 2 + 0.5, n / 2 + 0.5]
    w.wcs.cdelt = [-pix / 3600, pix / 3600]
    h = w.to_header()
    h["BUNIT"] = "Jy/beam"
    h["BMAJ"], h["BMIN"], h["BPA"] = bmaj / 3600, bmin / 3600, bpa
    return fits.PrimaryHDU(data.astype(np.float32), h)


def target_grid(n: int) -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    m = int(n * 2 / 3 * 0.9)
    w.wcs.crpix = [m / 2 + 0.5, m / 2 + 0.5]
    c, s = math.cos(math.radians(20)), math.sin(math.radians(20))
    w.wcs.cd = np.array([[-c, s], [s, c]]) * 3 / 3600
    h = w.to_header()
    h["NAXIS"], h["NAXIS1"], h["NAXIS2"] = 2, m, m
    return h


def peers(hdu, header, target: Beam) -> np.ndarray:
    from astropy.convolution import Gaussian2DKernel, convolve_fft
    from reproject import reproject_interp

    beam = Beam.from_header(hdu.header)
    values, _ = reproject_interp(hdu, header, order="bilinear")
    kernel_beam = target.deconvolve(beam)
    w = WCS(header)
    pix = math.sqrt(abs(np.linalg.det(w.pixel_scale_matrix))) * 3600
    # the kernel's PA is from the grid's north; the grid is rotated by 20 deg
    theta = math.radians(kernel_beam.pa.to_value(u.deg) - 20 + 90)
    kernel = Gaussian2DKernel(kernel_beam.major.to_value(u.arcsec) / 2.3548 / pix,
                              kernel_beam.minor.to_value(u.arcsec) / 2.3548 / pix,
                              theta=theta)
    smoothed = convolve_fft(values, kernel, nan_treatment="fill", preserve_nan=True)
    # Jy/beam(in) -> Jy/sr -> MJy/sr: convolving a Jy/beam map keeps Jy per input beam
    return smoothed / beam.sr.to_value(u.sr) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    hdu = make_image(args.size)
    header = target_grid(args.size)
    target = Beam.circular(20 * u.arcsec)
    def run():
        return homogenise({"radio": [hdu]}, grid=header, resolution=target, unit="MJy/sr",
                          match_background=False)["radio"].values

    tc = time.perf_counter()
    run()  # the first call pays the imports and numba's compilation
    t0 = time.perf_counter()
    ours = run()
    t1 = time.perf_counter()
    peers(hdu, header, target)  # same for the peers
    tp = time.perf_counter()
    theirs = peers(hdu, header, target)
    t2 = time.perf_counter()
    mine, peer = t1 - t0, t2 - tp  # warm times
    both = np.isfinite(ours) & np.isfinite(theirs)
    edge = 20  # the convolutions treat the borders differently
    inner = np.zeros_like(both)
    inner[edge:-edge, edge:-edge] = True
    ok = both & inner
    rms = float(np.std(theirs[ok][np.abs(theirs[ok]) < 5 * np.std(theirs[ok])]))
    diff = float(np.nanmax(np.abs(ours - theirs)[ok])) / rms
    print(f"image {args.size}x{args.size} -> {header['NAXIS1']}x{header['NAXIS2']}, "
          "20\" round beam, MJy/sr")
    print(f"homogenise (first call)            {t0 - tc:8.2f} s")
    print(f"homogenise                         {mine:8.2f} s")
    print(f"reproject_interp + convolve_fft    {peer:8.2f} s   ratio (peers / ours) "
          f"{peer / mine:.2f}")
    print(f"largest difference: {diff:.3f} output rms over {ok.sum()} pixels")


if __name__ == "__main__":
    main()
