"""The GPU paths agree with the CPU (float32 tolerance) where CuPy sees a GPU.

Marked ``gpu``; skipped where there is none (CI, this project's machines): the
same paths, at the issue's sizes, are what ``benchmarks/gpu.py`` times on a
lent GPU machine. Without a GPU, the CPU half still runs here, so a path
that breaks on the CPU is caught.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "vanotebook_gpu_benchmark", Path(__file__).parents[1] / "benchmarks" / "gpu.py")
gpu_bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(gpu_bench)
HAS_GPU, WHAT = gpu_bench.gpu_present()


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, _ in gpu_bench.PATHS])
def test_gpu_path_agrees_with_the_cpu(name):
    make = dict(gpu_bench.PATHS)[name]
    _, run = make(True)
    cpu = run("cpu")
    if not HAS_GPU:
        pytest.skip(f"no GPU ({WHAT}); the CPU half ran")
    assert gpu_bench.agreement(cpu, run("gpu")) <= 1e-4


def test_without_a_gpu_the_benchmark_says_so_and_succeeds(capsys, monkeypatch):
    monkeypatch.setattr(gpu_bench, "gpu_present", lambda: (False, "CuPy is not installed"))
    assert gpu_bench.main(["--small", "--only", "cube"]) == 0
    out = capsys.readouterr().out
    assert "no GPU present: CuPy is not installed" in out
    assert "| cube: moment kernel |" in out and "| no GPU |" in out


def test_agreement_sees_a_difference_a_nan_and_a_shape():
    import numpy as np

    a = np.array([1.0, 2.0, np.nan, 4.0])
    assert gpu_bench.agreement(a, a.copy()) == 0.0
    assert gpu_bench.agreement(a, a + np.array([0, 0, 0, 4e-4])) == pytest.approx(1e-4)
    assert gpu_bench.agreement(a, np.array([1.0, 2.0, 3.0, 4.0])) == float("inf")
    assert np.isnan(gpu_bench.agreement(a, a[:3]))
