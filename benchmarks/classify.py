"""Classifier benchmark: the network (numpy inference) vs boosted trees on morphological features.

Both are trained on the same synthetic training set (seed 0, key 0) and scored
on the same held-out set (key 2): accuracy, macro-F1 and F1 per class, and
cut-outs classified per second on the CPU (the trees' time includes measuring
their features, as inference must). The network is the shipped model (the
default, as the better of the two); the trees are trained here. The first
call in a fresh process (imports, loading the model, compiling) runs in a
subprocess.

    python benchmarks/classify.py              # 1500 per class to train, 500 held out
    python benchmarks/classify.py --small      # 300 / 100
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np

FIRST_CALL = """
import time, numpy as np
t0 = time.perf_counter()
from vanotebook.classify import classify_cutouts, training_set
X, _ = training_set(20, 1, key=2)
classify_cutouts(X)
print(time.perf_counter() - t0)
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args(argv)
    n_train, n_test = (300, 100) if args.small else (1500, 500)
    from vanotebook.classify import CLASSES, classify_cutouts, evaluate, get_model, training_set
    from vanotebook.classify._trees import features, fit_trees

    first = float(subprocess.run([sys.executable, "-c", FIRST_CALL], capture_output=True,
                                 text=True, check=True).stdout.split()[-1])
    X, y = training_set(n_train, 0, key=0)
    Xt, yt = training_set(n_test, 0, key=2)
    t0 = time.perf_counter()
    trees = fit_trees(X, y, seed=0)
    t_fit = time.perf_counter() - t0
    classify_cutouts(Xt[:64])  # warm: compiled
    rows = []
    for name, run in (("network (numpy, shipped)", lambda: classify_cutouts(Xt)[0].argmax(1)),
                      ("boosted trees (sklearn)", lambda: trees.predict(features(Xt)))):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            pred = run()
            times.append(time.perf_counter() - t0)
        ev = evaluate(np.asarray(pred), yt)
        rows.append((name, len(Xt) / min(times), ev))
    print(f"training set {n_train} x {len(CLASSES)} classes, held out {n_test} x "
          f"{len(CLASSES)}; trees trained in {t_fit:.1f} s here; the network in "
          f"{get_model().meta['training'].get('seconds', '?')} s when it was made")
    print(f"{'model':26s} {'cut-outs/s':>11s} {'accuracy':>9s} {'macro-F1':>9s}  "
          + " ".join(f"{c[:8]:>8s}" for c in CLASSES))
    for name, rate, ev in rows:
        print(f"{name:26s} {rate:11.0f} {ev['accuracy']:9.4f} {ev['macro_f1']:9.4f}  "
              + " ".join(f"{ev['f1'][c]:8.3f}" for c in CLASSES))
    print(f"speed ratio network/trees: {rows[0][1] / rows[1][1]:.1f}x; "
          f"first call in a fresh process (imports, model, compile, 140 cut-outs): {first:.2f} s")
    print("confusion matrix of the network (rows: truth, columns: predicted):")
    for c, row in zip(CLASSES, rows[0][2]["confusion"], strict=True):
        print(f"  {c:9s} " + " ".join(f"{v:5d}" for v in row))


if __name__ == "__main__":
    main()
