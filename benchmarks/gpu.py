"""Every GPU path on the GPU and on the CPU, on the same inputs: one table of agreement and time.

    python benchmarks/gpu.py            # the issue's sizes (about 5 minutes on one H100)
    python benchmarks/gpu.py --small    # small sizes (a quick check; what CI-sized CPUs run)

Paths: the mosaic (bilinear reprojection and mean co-add; flux-conserving),
detection (background, islands and Gaussian fits), SOM epochs (45 epochs of
the 163,919-spectra workload), the cross-match (1e6 x 1e6 at 1 arcsec), the
cube moment kernel and the greybody fits. Each runs through the public API
(or, for the cube, its array-API kernel on CuPy arrays) with
``device="cpu"`` and ``device="gpu"``; agreement is the largest difference
relative to the largest CPU value, which float32 arithmetic keeps under
1e-4. Times are warm (the second call); the first call's is printed too.

Without a GPU (CuPy missing or no device) it says so plainly, measures the
CPU column only, and exits 0. On the lent GPU machines, whose image has CuPy
but not our dependencies, carry wheels: ``bash benchmarks/gpu_wheels.sh``
here writes them to ``.whl/``, then on the machine::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:src python3 benchmarks/gpu.py
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np


def gpu_present() -> tuple[bool, str]:
    """Whether CuPy sees a GPU, and what it is (or why not)."""
    try:
        import cupy
    except ImportError:
        return False, "CuPy is not installed"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, no device
        return False, f"CuPy sees no GPU ({type(exc).__name__}: {exc})"
    if n < 1:
        return False, "CuPy sees no GPU"
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return True, f"{name}, {props['totalGlobalMem'] / 2**30:.0f} GiB, CuPy {cupy.__version__}"


def _host(x: Any) -> np.ndarray:
    return np.asarray(x.get() if hasattr(x, "get") else x, float)


def agreement(cpu: Any, gpu: Any) -> float:
    """max |cpu - gpu| / max |cpu| over the finite values (NaN where they differ in shape)."""
    a, b = _host(cpu), _host(gpu)
    if a.shape != b.shape:
        return float("nan")
    same_nan = np.isnan(a) == np.isnan(b)
    if not same_nan.all():
        return float("inf")
    ok = np.isfinite(a)
    scale = float(np.max(np.abs(a[ok]))) if ok.any() else 1.0
    return float(np.max(np.abs(a[ok] - b[ok]))) / (scale or 1.0) if ok.any() else 0.0


# ----------------------------------------------------------------------------- the paths
def _mosaic(small: bool, method: str):
    import vanotebook
    from vanotebook.sky import demo_sky

    tiles = demo_sky(0, size=0.3 if small else 1.0).images("radio")

    def run(device: str):
        return vanotebook.mosaic(tiles, method=method, device=device, client=None,
                                 match_background=False)["mosaic"].values

    return f"4 radio tiles ({'0.3' if small else '1'} deg)", run


def _detect(small: bool):
    import vanotebook
    from vanotebook.sky import demo_sky

    tile = demo_sky(0, size=0.3 if small else 1.0).images("ir24")[0]

    def run(device: str):
        cat = vanotebook.detect(tile, device=device, client=None).catalogue
        return np.sort(np.asarray(cat["flux"].value if hasattr(cat["flux"], "value")
                                  else cat["flux"], float))

    return "an ir24 tile, defaults", run


def _som(small: bool):
    from vanotebook.sky import make_spectra
    from vanotebook.som import SOM

    n = 20_000 if small else None  # None: the 163,919-spectra workload
    spectra = make_spectra(n, seed=0)
    x = np.asarray(spectra.flux if hasattr(spectra, "flux") else spectra, np.float32)

    def run(device: str):
        som = SOM((16, 16), n_epochs=45, seed=0)
        som.fit(x, device=device)
        return som.prototypes

    return f"{len(x):,} x {x.shape[1]} spectra, 16x16, 45 epochs", run


def _xmatch(small: bool):
    import astropy.units as u

    from vanotebook import crossmatch
    from vanotebook.sky import catalogue_pair

    n = 100_000 if small else 1_000_000
    left, right = catalogue_pair(n, radius=1.0).to_tables()

    def run(device: str):
        pairs = crossmatch(left, right, radius=1 * u.arcsec, device=device, client=None)
        order = np.lexsort((np.asarray(pairs["source_id_right"]),
                            np.asarray(pairs["source_id_left"])))
        return np.asarray(pairs["separation"], float)[order]

    return f"{n:,} x {n:,} at 1 arcsec", run


def _cube(small: bool):
    from vanotebook.cube import _kernels as K

    nv, ny, nx = (128, 128, 128) if small else (512, 256, 256)
    rng = np.random.default_rng(0)
    v = np.linspace(-50, 50, nv)
    line = np.exp(-0.5 * ((v[:, None, None] - rng.normal(0, 10, (1, ny, nx))) / 4.0) ** 2)
    data = (line + rng.normal(0, 0.05, (nv, ny, nx))).astype(np.float32)
    dv = np.full(nv, v[1] - v[0])
    names = ("moment0", "moment1", "moment2")

    def run(device: str):
        if device == "gpu":
            import cupy as xp
        else:
            xp = np
        out = K.moment_maps(xp.asarray(data), xp.asarray(v), xp.asarray(dv), names)
        if device == "gpu":
            xp.cuda.Device().synchronize()
        return out

    return f"{nx}x{ny}x{nv} float32, moments 0-2", run


def _sed(small: bool):
    import astropy.units as u

    from vanotebook.sed import fit_greybody

    n = 5_000 if small else 200_000
    rng = np.random.default_rng(0)
    flux = np.array([[30.0, 850.0, 760.0, 410.0, 200.0]]) * rng.uniform(0.9, 1.1, (n, 5))
    waves = np.array([70.0, 160.0, 250.0, 350.0, 500.0]) * u.um

    def run(device: str):
        fit = fit_greybody(flux * u.Jy, 0.05 * flux * u.Jy, waves, distance=1 * u.kpc,
                           device=device)
        return np.asarray(fit["temperature"].value, float)

    return f"{n:,} sources x 5 bands, thin, free beta", run


PATHS: list[tuple[str, Callable[[bool], tuple[str, Callable[[str], Any]]]]] = [
    ("mosaic: bilinear + mean co-add", lambda s: _mosaic(s, "bilinear")),
    ("mosaic: flux-conserving", lambda s: _mosaic(s, "flux-conserving")),
    ("detection: background, islands, fits", _detect),
    ("SOM: 45 epochs", _som),
    ("cross-match", _xmatch),
    ("cube: moment kernel", _cube),
    ("SED: greybody fits", _sed),
]


def _timed(run: Callable[[str], Any], device: str) -> tuple[Any, float, float]:
    t0 = time.perf_counter()
    run(device)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = run(device)
    return out, first, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small inputs (a quick check)")
    parser.add_argument("--only", default="", help="run the paths whose name contains this")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest relative difference that counts as agreement")
    args = parser.parse_args(argv)
    has_gpu, what = gpu_present()
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]}, numpy {np.__version__}")
    if has_gpu:
        print(f"GPU: {what}")
    else:
        print(f"no GPU present: {what}. Only the CPU column is measured; the GPU paths did "
              f"not run.")
    rows = []
    for name, make in PATHS:
        if args.only and args.only not in name:
            continue
        try:
            size, run = make(args.small)
            cpu, cpu_first, cpu_warm = _timed(run, "cpu")
        except Exception as exc:
            rows.append((name, "", "", "", "", "", f"CPU error: {type(exc).__name__}: {exc}"))
            traceback.print_exc()
            continue
        if not has_gpu:
            rows.append((name, size, f"{cpu_warm:.3f} ({cpu_first:.2f})", "-", "-", "-",
                         "no GPU"))
            continue
        try:
            gpu, gpu_first, gpu_warm = _timed(run, "gpu")
        except Exception as exc:
            rows.append((name, size, f"{cpu_warm:.3f} ({cpu_first:.2f})", "-", "-", "-",
                         f"GPU error: {type(exc).__name__}: {exc}"))
            traceback.print_exc()
            continue
        diff = agreement(cpu, gpu)
        rows.append((name, size, f"{cpu_warm:.3f} ({cpu_first:.2f})",
                     f"{gpu_warm:.3f} ({gpu_first:.2f})", f"{cpu_warm / gpu_warm:.1f}x",
                     f"{diff:.1e}", "ok" if diff <= args.tolerance else "DIFFERS"))
    head = ("path", "input", "CPU s warm (first)", "GPU s warm (first)", "speed-up",
            "max rel diff", "verdict")
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    bad = [r for r in rows if r[-1] not in ("ok", "no GPU")]
    return 1 if bad and has_gpu else 0


if __name__ == "__main__":
    sys.exit(main())
