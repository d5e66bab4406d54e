from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vanotebook
from vanotebook import VanotebookInputError
from vanotebook.cluster import (
    SCHEDULER_ENV,
    get_client,
    gpu_count,
    image_chunk,
    resolve_device,
    worker_command,
)


def _fake_nvidia_smi(folder: Path, n: int) -> Path:
    """A stand-in for the NVIDIA driver's tool that lists n GPUs (the machine has none)."""
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    lines = "\n".join(f"echo 'GPU {i}: NVIDIA H100 (UUID: GPU-{i:04d})'" for i in range(n))
    script.write_text(f"#!/bin/sh\n{lines}\n")
    script.chmod(0o755)
    return folder


def test_gpu_count_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,3")
    assert gpu_count() == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_count() == 0
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("PATH", str(_fake_nvidia_smi(tmp_path / "bin", 2)))
    assert gpu_count() == 2
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert gpu_count() == 0


def test_resolve_device_without_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(None) == "cpu"
    with pytest.raises(VanotebookInputError, match="device: expected 'cpu' or 'auto' here"):
        resolve_device("gpu")
    with pytest.raises(VanotebookInputError, match=r"device: expected one of \('auto'"):
        resolve_device("tpu")


def test_image_chunk_default_and_override():
    import dask

    assert image_chunk() == 2048
    assert image_chunk(512) == 512
    with dask.config.set({"vanotebook.image-chunk": 1024}):
        assert image_chunk() == 1024
    with pytest.raises(VanotebookInputError, match="chunks: expected a positive integer"):
        image_chunk(0)


def test_worker_command_advertises_gpus():
    cmd = worker_command("tcp://127.0.0.1:1", nthreads=2, memory_limit="1GiB", gpus=2)
    assert cmd[:4] == [sys.executable, "-m", "distributed.cli.dask_worker", "tcp://127.0.0.1:1"]
    assert cmd[cmd.index("--resources") + 1] == "GPU=2"
    assert "--resources" not in worker_command("tcp://127.0.0.1:1", gpus=0)
    with pytest.raises(VanotebookInputError, match="scheduler: expected a scheduler address"):
        worker_command("")


def test_get_client_rejects_non_clients():
    with pytest.raises(VanotebookInputError, match=r"client: expected a distributed\.Client"):
        get_client("tcp://localhost:8786")


def test_services_without_a_client_never_import_distributed():
    """With no client, `get_client` answers None without importing distributed (~0.2 s
    of a fresh process's first call); a SOM and a cross-match then run in-process.
    Mutation: the ``sys.modules`` check removed fails it."""
    code = (
        "import sys, numpy as np, astropy.units as u\n"
        "from astropy.table import Table\n"
        "from vanotebook.som import SOM\n"
        "from vanotebook.xmatch import crossmatch\n"
        "x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)\n"
        "SOM((3, 3), n_epochs=2, seed=0).fit(x)\n"
        "t = Table({'ra': np.linspace(0, 1, 50), 'dec': np.zeros(50)})\n"
        "assert len(crossmatch(t, t, radius=1 * u.arcsec)) == 50\n"
        "print('distributed' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "False"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
@pytest.mark.slow
def test_connect_through_environment_to_real_scheduler_and_gpu_worker(tmp_path, monkeypatch):
    """A real `dask scheduler` process and a `vanotebook worker` that sees two (fake) GPUs."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PATH=f"{_fake_nvidia_smi(tmp_path / 'bin', 2)}:{os.environ['PATH']}")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", str(port), "--dashboard-address", ":0", "--no-show"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    worker = None
    try:
        worker = subprocess.Popen(
            [sys.executable, "-m", "vanotebook.cli", "worker", address, "--nthreads", "1",
             "--memory-limit", "1GiB", "--name", "gpu-worker"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        monkeypatch.setenv(SCHEDULER_ENV, address)
        client = vanotebook.connect()
        try:
            client.wait_for_workers(1, timeout=60)
            info = client.scheduler_info(n_workers=-1)["workers"]
            (w,) = info.values()
            assert w["name"] == "gpu-worker"
            assert w["resources"] == {"GPU": 2}
            fut = client.submit(sum, [1, 2, 3], resources={"GPU": 1})
            assert fut.result(timeout=30) == 6
            assert get_client() is client
        finally:
            client.close()
    finally:
        outputs = {}
        for name, proc in (("worker", worker), ("scheduler", scheduler)):
            if proc is not None:
                proc.terminate()
                try:
                    outputs[name] = proc.communicate(timeout=20)[0]
                except subprocess.TimeoutExpired:
                    proc.kill()
                    outputs[name] = proc.communicate()[0]
    assert "2 GPU(s)" in outputs["worker"]


@pytest.mark.e2e
@pytest.mark.slow
def test_connect_starts_local_cluster_without_environment(monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    t0 = time.perf_counter()
    client = vanotebook.connect(n_workers=1, threads_per_worker=1, memory_limit="1GiB")
    try:
        assert client.cluster is not None
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 1
        assert all(not w.get("resources") for w in workers.values())
        assert client.submit(lambda x: x + 1, 1).result() == 2
        assert get_client() is client
    finally:
        client.close()
        client.cluster.close()
    assert time.perf_counter() - t0 < 120
    with pytest.raises(VanotebookInputError, match="n_workers: expected a positive integer"):
        vanotebook.connect(n_workers=0)
