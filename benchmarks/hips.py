"""Image HiPS: vanotebook `to_hips` against reproject.hips and Aladin's Hipsgen.

The issue's workload: one 4096x4096 float32 TAN image at 1" pixels, noise of
rms 1 and 3,000 point sources. Each method makes the same HiPS (same deepest
order, 512-pixel tiles, bilinear): first FITS tiles only, then FITS + PNG
tiles + Allsky + MOC. Prints the times, the ratios, and how far our deepest
tiles are from reproject's in units of the noise rms.

Run: ``python benchmarks/hips.py [--size 4096] [--skip-reproject] [--skip-hipsgen]``.
Hipsgen is Debian's ``aladin`` package (``apt-get install aladin``); without it
that part is skipped.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS


def make_image(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, 1.0, (n, n)).astype(np.float32)
    r = 4
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    for x, y, f in zip(rng.uniform(r, n - r - 1, 3000), rng.uniform(r, n - r - 1, 3000),
                       rng.lognormal(3, 1, 3000), strict=True):
        ix, iy = int(x), int(y)
        stamp = f * np.exp(-((xx + ix - x) ** 2 + (yy + iy - y) ** 2) / (2 * 1.2**2))
        data[iy - r:iy + r + 1, ix - r:ix + r + 1] += stamp.astype(np.float32)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.1, 2.2]
    w.wcs.crpix = [n / 2 + 0.5, n / 2 + 0.5]
    w.wcs.cdelt = [-1 / 3600, 1 / 3600]
    return data, w


def timed(label: str, func, results: dict):
    t = time.perf_counter()
    out = func()
    results[label] = time.perf_counter() - t
    print(f"{label:<44} {results[label]:8.2f} s", flush=True)
    return out


def count(folder: Path, ext: str) -> int:
    return sum(1 for _ in folder.glob(f"Norder*/Dir*/Npix*.{ext}"))


def agreement(ours: Path, theirs: Path, order: int):
    diffs, n_tiles = [], 0
    for path in (theirs / f"Norder{order}").glob("Dir*/Npix*.fits"):
        mine = ours / path.relative_to(theirs)
        if not mine.exists():
            continue
        a, b = fits.getdata(path), fits.getdata(mine)
        both = np.isfinite(a) & np.isfinite(b)
        diffs.append((a - b)[both])
        n_tiles += 1
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    return n_tiles, float(np.abs(d).max()) if d.size else float("nan"), \
        float(np.sqrt(np.mean(d**2))) if d.size else float("nan"), d.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--skip-reproject", action="store_true")
    parser.add_argument("--skip-hipsgen", action="store_true")
    args = parser.parse_args()

    from vanotebook.mosaic import to_hips
    from vanotebook.mosaic._hips import choose_order

    data, w = make_image(args.size)
    order = choose_order(1 / 3600, 512)
    print(f"image {args.size}x{args.size} float32, 1\" TAN, noise rms 1, 3000 sources; "
          f"HiPS order {order}, 512-px tiles, bilinear")
    work = Path(tempfile.mkdtemp(prefix="hips-bench-"))
    results: dict[str, float] = {}
    try:
        (work / "in").mkdir()
        fits.writeto(work / "in" / "image.fits", data, w.to_header())
        # compile the numba kernel once (cached on disk afterwards), outside the timings
        to_hips((data[:64, :64], w), work / "warm", tile_width=64)

        h = timed("vanotebook to_hips, FITS tiles", lambda: to_hips(
            (data, w), work / "ours_fits", order=order, formats=("fits",)), results)
        print(f"    {h.n_tiles} tiles, orders 0-{h.order}")
        h = timed("vanotebook to_hips, FITS+PNG+Allsky+MOC", lambda: to_hips(
            (data, w), work / "ours_all", order=order), results)
        print(f"    {count(h.path, 'fits')} FITS + {count(h.path, 'png')} PNG tiles")
        timed("vanotebook to_hips, all, from the FITS file", lambda: to_hips(
            work / "in" / "image.fits", work / "ours_file", order=order), results)

        if not args.skip_reproject:
            from reproject import reproject_interp
            from reproject.hips import reproject_to_hips

            def rep(out, threads):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    reproject_to_hips((data, w), coord_system_out="equatorial",
                                      reproject_function=reproject_interp,
                                      output_directory=out, level=order, tile_size=512,
                                      threads=threads, order="bilinear")

            timed("reproject.hips, FITS tiles, serial", lambda: rep(work / "rep1", False),
                  results)
            timed("reproject.hips, FITS tiles, 2 threads", lambda: rep(work / "rep2", 2),
                  results)
            print(f"    {count(work / 'rep2', 'fits')} tiles")
            n, worst, rms, npix = agreement(work / "ours_fits", work / "rep2", order)
            print(f"agreement with reproject (order {order}, {n} tiles, {npix} pixels): "
                  f"max |diff| = {worst:.2e} x noise rms, rms diff = {rms:.2e} x noise rms")

        if not args.skip_hipsgen:
            if shutil.which("aladin") is None:
                print("Hipsgen: `aladin` not installed (apt-get install aladin); skipped")
            else:
                def hipsgen(out, *actions):
                    cmd = ["aladin", "-hipsgen", f"in={work / 'in'}", f"out={out}",
                           "creator_did=ivo://vanotebook/P/bench", f"order={order}", *actions]
                    run = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
                    if run.returncode != 0:
                        raise RuntimeError(run.stdout[-2000:] + run.stderr[-2000:])

                try:
                    timed("Hipsgen, FITS tiles (INDEX TILES)",
                          lambda: hipsgen(work / "hg1", "INDEX", "TILES"), results)
                    timed("Hipsgen, FITS+PNG+Allsky+MOC (default)",
                          lambda: hipsgen(work / "hg2"), results)
                    hg = work / "hg2"
                    print(f"    {count(hg, 'fits')} FITS + {count(hg, 'png')} PNG tiles, "
                          f"Allsky {(hg / 'Norder3' / 'Allsky.fits').exists()}, "
                          f"MOC {(hg / 'Moc.fits').exists()}")
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    print(f"Hipsgen failed to run ({exc!r:.300}); skipped")

        ours_fits = results["vanotebook to_hips, FITS tiles"]
        ours_all = results["vanotebook to_hips, FITS+PNG+Allsky+MOC"]
        print("\nratios (peer time / ours; targets: Hipsgen >= 2x, reproject 2 threads >= 5x)")
        for label, ours in (("reproject.hips, FITS tiles, serial", ours_fits),
                            ("reproject.hips, FITS tiles, 2 threads", ours_fits),
                            ("Hipsgen, FITS tiles (INDEX TILES)", ours_fits),
                            ("Hipsgen, FITS+PNG+Allsky+MOC (default)", ours_all)):
            if label in results:
                print(f"  {label:<44} {results[label] / ours:6.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
