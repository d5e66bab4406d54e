"""Batch SOM: vanotebook vs somoclu vs MiniSom vs the two-GEMM BLAS limit, on one input.

The issue's workload: a 16×16 rectangular map of the 163,919 × 120 float32
demo spectra (`vanotebook.sky.make_spectra()`), 45 epochs, Gaussian
neighbourhood with radius0 = 9 shrinking as ``9 * exp(-t / 16)``.

* ours: ``SOM(...).fit(X)`` in this process (numpy + OpenBLAS);
* somoclu: the same initial codebook, ``radiuscooling="exponential"`` with
  ``radiusN = 9 * exp(-45 / 16)`` (somoclu's cooling is
  ``r0 * (rN / r0) ** (t / n_epochs)``, the same curve), ``std_coeff=1``
  (``h = exp(-d² / 2r²)``, ours) and no compact support; its final map's QE/TE
  are measured with the same code as ours;
* MiniSom: one online pass over the samples (``train``, sigma 9);
* the limit: per epoch the two float32 products a batch SOM needs,
  ``(N×D)(D×K)`` and ``(K×N)(N×D)`` (the faster of two layouts), × epochs.

Ours runs ``--repeat`` times (default 3; every run is printed, the ratios use
the median); the load average is printed next to every timing, because the
machine may be shared. ``cpu/wall`` is process CPU time over wall time: about
the core count when a run kept every core busy (somoclu uses OpenMP on all
cores by default; ours runs its row slices on a thread pool, one BLAS thread
each).

``--openblas-coretype SkylakeX`` sets ``OPENBLAS_CORETYPE`` before numpy
loads: OpenBLAS 0.3.31 does not recognise AMD Zen 5 and picks its AVX2
"Haswell" kernels, while the AVX-512 ones run float32 GEMM about twice as
fast there. It is a machine setting (it changes ours and the 2-GEMM limit,
not somoclu's own loops), so the default run leaves it alone.

Run ``python benchmarks/som.py`` (about 2 minutes on 2 cores) or ``--small``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if "--openblas-coretype" in sys.argv:  # must precede numpy's import
    os.environ["OPENBLAS_CORETYPE"] = sys.argv[sys.argv.index("--openblas-coretype") + 1]

import numpy as np

from vanotebook.sky import make_spectra
from vanotebook.som import SOM


def _gemm_limit(x: np.ndarray, k: int, epochs: int) -> float:
    w = np.random.default_rng(0).standard_normal((k, x.shape[1])).astype(np.float32)
    wt = np.ascontiguousarray(w.T)
    best = np.inf
    for layout in ("GtX", "XtG"):
        t0 = time.perf_counter()
        for _ in range(epochs):
            g = x @ wt
            _ = g.T @ x if layout == "GtX" else (x.T @ g).T
        best = min(best, time.perf_counter() - t0)
    return best


def _load() -> str:
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def _timed(func):
    """Run ``func()``; return (wall seconds, cpu/wall)."""
    c0, t0 = time.process_time(), time.perf_counter()
    func()
    wall = time.perf_counter() - t0
    return wall, (time.process_time() - c0) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="20,000 spectra, 10 epochs")
    parser.add_argument("--no-somoclu", action="store_true")
    parser.add_argument("--no-minisom", action="store_true")
    parser.add_argument("--openblas-coretype", metavar="NAME",
                        help="set OPENBLAS_CORETYPE (e.g. SkylakeX) before numpy loads")
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours (default 3)")
    args = parser.parse_args()
    n, epochs = (20_000, 10) if args.small else (None, 45)
    rows = cols = 16
    r0, decay = 9.0, 16.0
    spectra = make_spectra(n, seed=0)
    x, y = spectra.flux, spectra.label
    print(f"data: {x.shape[0]} x {x.shape[1]} float32, map {rows}x{cols}, {epochs} epochs, "
          f"r0={r0}, decay={decay}")

    from threadpoolctl import threadpool_info

    blas = [(i["internal_api"], i.get("architecture"), i["num_threads"])
            for i in threadpool_info() if i["user_api"] == "blas"]
    print(f"cores {len(os.sched_getaffinity(0))}, BLAS {blas}, {_load()}")

    # warm up: imports, numba cache (a pass of `MIN_WORK` rows x units or more), provenance
    SOM((16, 16), n_epochs=1).fit(x[:20_000])
    runs = []
    for _ in range(max(args.repeat, 1)):
        som = SOM((rows, cols), radius0=r0, radius_decay=decay, n_epochs=epochs, seed=0)
        wall, util = _timed(lambda som=som: som.fit(x, device="cpu"))
        runs.append(wall)
        print(f"ours run : {wall:8.2f} s   cpu/wall {util:.2f}   {_load()}")
    t_ours = float(np.median(runs))
    qe, te = som.history["qe"][-1], som.history["te"][-1]
    lab = som.label(x, y)
    print(f"ours     : {t_ours:8.2f} s   (median of {len(runs)}; min {min(runs):.2f})  "
          f"QE {qe:.4f}  TE {te:.4f}  label purity {lab.purity_overall:.3f}")

    t_limit = _gemm_limit(x, rows * cols, epochs)
    print(f"2-GEMM   : {t_limit:8.2f} s   (float32 BLAS limit, {epochs} epochs)   {_load()}")

    t_somoclu = None
    if not args.no_somoclu:
        try:
            import somoclu
        except ImportError as exc:
            print(f"somoclu  : not available ({exc})")
        else:
            rng = np.random.default_rng(0)
            mean, std = x.mean(0, dtype=np.float64), x.std(0, dtype=np.float64)
            init = (mean + 0.1 * std * rng.uniform(-1, 1, (rows * cols, x.shape[1])))
            peer = somoclu.Somoclu(cols, rows, initialcodebook=init.astype(np.float32).reshape(
                rows, cols, -1), compactsupport=False, std_coeff=1.0, verbose=0)
            omp = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]
            print(f"somoclu  : OpenMP threads {omp}")
            t_somoclu, util = _timed(lambda: peer.train(
                x, epochs=epochs, radius0=r0, radiusN=r0 * np.exp(-epochs / decay),
                radiuscooling="exponential", scale0=1.0, scaleN=1.0))
            ref = SOM((rows, cols)).set_prototypes(peer.codebook.reshape(rows * cols, -1))
            s_qe, s_te = ref.quantization_error(x), ref.topographic_error(x)
            s_lab = ref.label(x, y)
            print(f"somoclu  : {t_somoclu:8.2f} s   cpu/wall {util:.2f}   {_load()}")
            print(f"           QE {s_qe:.4f}  TE {s_te:.4f}  "
                  f"label purity {s_lab.purity_overall:.3f}")

    t_minisom = None
    if not args.no_minisom:
        try:
            from minisom import MiniSom
        except ImportError as exc:
            print(f"MiniSom  : not available ({exc})")
        else:
            peer = MiniSom(rows, cols, x.shape[1], sigma=r0, learning_rate=0.5, random_seed=0)
            t0 = time.perf_counter()
            peer.train(x, len(x))
            t_minisom = time.perf_counter() - t0
            m_qe = peer.quantization_error(x)
            print(f"MiniSom  : {t_minisom:8.2f} s   one online pass, QE {m_qe:.4f}")

    print("ratios:")
    print(f"  ours / 2-GEMM limit   = {t_ours / t_limit:.2f}  (target <= 1.3)")
    if t_somoclu:
        print(f"  somoclu / ours        = {t_somoclu / t_ours:.1f}x  (target >= 20; "
              f"{t_somoclu / max(runs):.1f}x to {t_somoclu / min(runs):.1f}x over the runs)")
    if t_minisom:
        print(f"  MiniSom 1 pass / ours = {t_minisom / t_ours:.1f}x")
    print("per-class purity (ours):")
    print(lab.per_class)
    from _fresh import first_call

    first_call("SOM (8 x 8, 2,000 spectra, 3 epochs)", FRESH_SETUP, FRESH_CALL)


#: a small map trained on the notebook's spectra (`_fresh`)
FRESH_SETUP = """
import numpy as np, astropy.units as u
from astropy.io import fits
from astropy.table import Table
x = np.random.default_rng(0).normal(size=(2000, 100)).astype(np.float32)
"""
FRESH_CALL = """
from vanotebook.som import SOM
SOM((8, 8), n_epochs=3, seed=0).fit(x)
"""

if __name__ == "__main__":
    main()
