"""Cube benchmark: vanotebook.cube vs spectral-cube (numpy and dask modes) and pvextractor.

The issue's workload: moments 0, 1 and 2 of a 256 x 256 x 512 float32 cube
(a Gaussian line with a velocity gradient, noise, a few NaNs), each moment
computed by both on the same cube in this process, then a PV slice along a
three-vertex path (a 5-pixel-wide polygon path and a line path) against
pvextractor's ``extract_pv_slice``. Warm times are the best of ``--repeat``
runs after a warm-up; the first call in a fresh process (imports included)
is timed in a subprocess.

    python benchmarks/cube.py            # the full workload
    python benchmarks/cube.py --small    # 128 x 128 x 256, seconds
    python benchmarks/cube.py --big      # also a FITS cube 4x a worker's memory, on Dask
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import subprocess
import sys
import time
import warnings

import numpy as np


def make(nv: int, ny: int, nx: int, seed: int = 0):
    """``(data, header)``: a line whose centre moves across the field, plus noise."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    v = -50.0 + 0.25 * np.arange(nv)
    vc = 10.0 * (np.arange(nx) / nx - 0.5)[None, :] + 2.0 * np.sin(np.arange(ny) / 20.0)[:, None]
    amp = 1.0 + np.exp(-((np.arange(ny)[:, None] - ny / 2) ** 2 +
                         (np.arange(nx)[None, :] - nx / 3) ** 2) / (ny * nx / 20))
    data = np.empty((nv, ny, nx), np.float32)
    for k in range(nv):  # plane by plane: no float64 cube
        data[k] = amp * np.exp(-0.5 * ((v[k] - vc) / 4.0) ** 2)
    data += rng.normal(0, 0.05, data.shape).astype(np.float32)
    data[:, :2, :2] = np.nan
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"], h["CTYPE3"] = "RA---TAN", "DEC--TAN", "VRAD"
    h["CUNIT1"], h["CUNIT2"], h["CUNIT3"] = "deg", "deg", "km/s"
    h["CRVAL1"], h["CRVAL2"], h["CRVAL3"] = 83.8, -5.4, float(v[0])
    h["CRPIX1"], h["CRPIX2"], h["CRPIX3"] = nx / 2, ny / 2, 1.0
    h["CDELT1"], h["CDELT2"], h["CDELT3"] = -2 / 3600, 2 / 3600, 0.25
    h["BUNIT"], h["SPECSYS"] = "K", "LSRK"
    return data, h


def best(func, repeat: int):
    times, value = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        value = func()
        times.append(time.perf_counter() - t)
    return min(times), value


FRESH = """
import time, sys
t = time.perf_counter()
sys.path.insert(0, {bench!r})
from cube import make
data, header = make({nv}, {ny}, {nx})
t_make = time.perf_counter() - t
t = time.perf_counter()
from astropy.wcs import WCS
from vanotebook.cube import moments
moments((data, WCS(header)), (0, 1, 2))
print(time.perf_counter() - t)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="128 x 128 x 256")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big", action="store_true", help="also a cube 4x a worker's memory")
    parser.add_argument("--memory-limit", type=int, default=600,
                        help="MiB per worker (--big; numba loaded, a worker idles near 320)")
    args = parser.parse_args()
    nv, ny, nx = (256, 128, 128) if args.small else (512, 256, 256)
    from astropy import units as u
    from astropy.io import fits
    from astropy.wcs import WCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pvextractor import Path, extract_pv_slice
        from spectral_cube import SpectralCube

    from vanotebook.cube import moments, pv_slice

    data, header = make(nv, ny, nx)
    wcs = WCS(header)
    print(f"workload: moments 0-2 of a {nx} x {ny} x {nv} float32 cube "
          f"({data.nbytes / 2**20:.0f} MiB); {os.cpu_count()} cores")
    moments((data[:, :16, :16], wcs), (0, 1, 2))  # warm-up: imports, the thread pool
    t_ours, ours = best(lambda: moments((data, wcs), (0, 1, 2)), args.repeat)
    res = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kms = u.km / u.s
        sc = SpectralCube(data=data * u.K, wcs=wcs).with_spectral_unit(kms)
        scd = SpectralCube(data=data * u.K, wcs=wcs, use_dask=True).with_spectral_unit(kms)

        def peer(cube):
            return [cube.moment(order=k, axis=0) for k in (0, 1, 2)]

        res["spectral-cube (numpy mode)"], ref = best(lambda: peer(sc), args.repeat)
        res["spectral-cube (dask mode)"], refd = best(lambda: peer(scd), args.repeat)
    for k in range(3):
        a = ours[f"moment{k}"].values
        for r in (ref, refd):
            np.testing.assert_allclose(a, np.asarray(r[k].value), rtol=1e-4, atol=1e-6,
                                       equal_nan=True)
    print("moment maps equal spectral-cube's (both modes, rtol 1e-4)")
    print(f"{'vanotebook.cube.moments (warm)':<36s} {t_ours:8.3f} s")
    for label, t in res.items():
        print(f"{label:<36s} {t:8.3f} s   ratio {t / t_ours:6.1f}x")
    bench = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", FRESH.format(bench=bench, nv=nv, ny=ny, nx=nx)],
                         capture_output=True, text=True, check=True)
    print(f"{'first call in a fresh process':<36s} {float(out.stdout.split()[-1]):8.3f} s "
          "(imports included, cube made before)")
    # PV slices
    hdu = fits.PrimaryHDU(data, header)
    path = [(10.0, 20.0), (ny * 0.6, nx * 0.5), (nx - 12.0, ny - 30.0)]
    print(f"\nPV slice along {len(path)} vertices ({len(path) - 1} segments)")
    for width, label in ((5, "width 5 px (polygons)"), (None, "line, cubic spline")):
        t_pv, pv = best(lambda w=width: pv_slice((data, wcs), path, width=w), args.repeat)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            t_ref, ref_pv = best(lambda w=width: extract_pv_slice(hdu, Path(path, width=w)),
                                 args.repeat)
        np.testing.assert_allclose(pv.values, ref_pv.data, rtol=1e-5, atol=1e-6,
                                   equal_nan=True)
        print(f"  {label:<28s} ours {t_pv:7.3f} s  pvextractor {t_ref:7.3f} s  "
              f"ratio {t_ref / t_pv:6.1f}x  (equal)")
    if args.big:
        big(args.memory_limit)
    print(f"\ntarget: >= 8x spectral-cube on moments 0-2; "
          f"got {min(res.values()) / t_ours:.1f}x (the slower mode "
          f"{max(res.values()) / t_ours:.1f}x)")


def big(limit_mib: int) -> None:
    """Moments 0-1 of a FITS cube 4.1x one worker's memory, block by block on a LocalCluster."""
    import tempfile
    from pathlib import Path

    from astropy.io import fits
    from distributed import Client, LocalCluster
    from distributed.diagnostics import MemorySampler

    from vanotebook.cube import moments

    limit = limit_mib * 2**20
    nx = ny = 1024
    nv = int(np.ceil(4.1 * limit / (nx * ny * 4)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.fits"
        _, h = make(4, 8, 8)
        header = fits.Header()
        header["SIMPLE"], header["BITPIX"], header["NAXIS"] = True, -32, 3
        header["NAXIS1"], header["NAXIS2"], header["NAXIS3"] = nx, ny, nv
        for key, value in h.items():
            if not key.startswith(("NAXIS", "SIMPLE", "BITPIX", "EXTEND")):
                header[key] = value
        stream = fits.StreamingHDU(path, header)
        rng = np.random.default_rng(1)
        v = -50.0 + 0.25 * np.arange(nv)
        for k in range(nv):
            plane = np.exp(-0.5 * ((v[k] + 50 - nv * 0.125) / 4.0) ** 2) + \
                rng.normal(0, 0.05, (ny, nx))
            stream.write(plane.astype(">f4"))
        stream.close()
        size = path.stat().st_size
        sampler = MemorySampler()
        with LocalCluster(n_workers=1, threads_per_worker=1, memory_limit=limit,
                          dashboard_address=None, worker_dashboard_address=None,
                          silence_logs=logging.ERROR) as cluster, \
                Client(cluster) as client:
            t = time.perf_counter()
            with sampler.sample("big", client=client, interval=0.2):
                moments(str(path), (0, 1), client=client)
            dt = time.perf_counter() - t
        peak = float(sampler.to_pandas()["big"].max())
        print(f"\nbig: {size / 2**30:.2f} GiB FITS cube, {size / limit:.1f}x a "
              f"{limit_mib} MiB worker: moments 0-1 in {dt:.1f} s "
              f"({size / dt / 2**20:.0f} MiB/s), worker memory peak {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
