"""device="gpu" is decided where the work runs: a client with no GPU sends it to GPU workers.

A LocalCluster of two CPU workers, one of which advertises ``GPU=1`` and, in
its own process only, imports a stand-in ``cupy`` (numpy under CuPy's name,
with ``cupyx.scipy`` as scipy) so its "GPU" kernels can run on this machine.
This process never imports CuPy. The mosaic, the SOM, the cross-match of
partitioned catalogues and the greybody fits asked for ``device="gpu"`` run
their tasks on that worker only and give the CPU answer; on a cluster where
no worker advertises a GPU, the request is refused by name before any work. The
classifier's batches go there too (JAX runs them on that worker's default device).
"""

from __future__ import annotations

import sys

import astropy.units as u
import numpy as np
import pytest
from distributed import Client, LocalCluster, get_task_stream

from vanotebook import VanotebookInputError
from vanotebook.cluster import devices

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _stand_in_cupy() -> str:
    """Install numpy as ``cupy`` (and scipy as ``cupyx.scipy``) in this worker process."""
    import sys
    import types

    import numpy
    import scipy
    import scipy.ndimage
    import scipy.sparse

    cupy = types.ModuleType("cupy")
    cupy.__dict__.update({k: getattr(numpy, k) for k in dir(numpy) if not k.startswith("__")})
    cupy.asnumpy = numpy.asarray
    cupyx = types.ModuleType("cupyx")
    cupyx.scipy = scipy
    sys.modules.update({"cupy": cupy, "cupyx": cupyx, "cupyx.scipy": scipy,
                        "cupyx.scipy.ndimage": scipy.ndimage,
                        "cupyx.scipy.sparse": scipy.sparse})
    return "installed"


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0",
                      worker_dashboard_address=None) as lc, \
            Client(lc) as client:
        yield client


def _workers(stream) -> set[str]:
    return {t["worker"] for t in stream.data}


def test_gpu_work_goes_to_the_gpu_worker_from_a_client_without_one(cluster):
    from vanotebook import crossmatch, mosaic
    from vanotebook.sed import fit_greybody
    from vanotebook.sky import catalogue_pair, demo_sky
    from vanotebook.som import SOM

    client = cluster
    assert "cupy" not in sys.modules
    # no worker advertises a GPU: "gpu" is refused by name, "auto" is the CPU
    with pytest.raises(VanotebookInputError, match=r"^device: expected 'cpu' or 'auto' on "
                                                   r"this cluster"):
        devices("gpu", client)
    assert devices("auto", client) == ("cpu", "cpu")
    gpu_worker = sorted(client.scheduler_info()["workers"])[0]

    async def advertise(dask_worker):
        await dask_worker.set_resources(GPU=1)

    client.run(advertise, workers=[gpu_worker])
    client.run(_stand_in_cupy, workers=[gpu_worker])
    assert devices("gpu", client) == ("cpu", "gpu")  # this process has none: "here" is CPU
    assert devices("auto", client) == ("cpu", "gpu")

    tiles = demo_sky(0, size=0.3).images("radio")
    want = mosaic(tiles, device="cpu", client=client)["mosaic"].values
    with get_task_stream(client) as stream:
        got = mosaic(tiles, device="gpu", client=client)["mosaic"].values
    # the GPU kernels are the array-API ones (the CPU's is numba's fused pass): float32 agreement
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.nanmax(np.abs(want)),
                               equal_nan=True)
    assert _workers(stream) == {gpu_worker}

    x = np.random.default_rng(0).normal(size=(3000, 8)).astype(np.float32)
    cpu = SOM((4, 4), n_epochs=5, seed=0).fit(x, device="cpu", client=client).prototypes
    with get_task_stream(client) as stream:
        som = SOM((4, 4), n_epochs=5, seed=0).fit(x, device="gpu", client=client)
    np.testing.assert_allclose(som.prototypes, cpu, rtol=1e-4, atol=1e-5)
    assert som.provenance["vanotebook"]["parameters"]["device"] == "gpu"
    assert _workers(stream) == {gpu_worker}

    import dask.dataframe as dd

    left, right = catalogue_pair(4000, radius=0.2).to_tables()
    lazy = [dd.from_pandas(t.to_pandas(), npartitions=2) for t in (left, right)]
    want = crossmatch(left, right, radius=1 * u.arcsec, device="cpu")
    with get_task_stream(client) as stream:
        got = crossmatch(*lazy, radius=1 * u.arcsec, device="gpu", client=client)
    assert got.meta["provenance"]["vanotebook"]["parameters"]["device"] == "gpu"
    assert len(got) == len(want)
    np.testing.assert_allclose(np.sort(np.asarray(got["separation"])),
                               np.sort(np.asarray(want["separation"])), rtol=1e-6)
    match_tasks = [t for t in stream.data
                   if "match" in str(t["key"][0] if isinstance(t["key"], tuple) else t["key"])]
    assert match_tasks and {t["worker"] for t in match_tasks} == {gpu_worker}

    rng = np.random.default_rng(0)
    flux = np.array([[30.0, 850.0, 760.0, 410.0, 200.0]]) * rng.uniform(0.9, 1.1, (400, 5))
    waves = np.array([70.0, 160.0, 250.0, 350.0, 500.0]) * u.um
    kw = {"distance": 1 * u.kpc, "client": client, "chunks": 100}
    want = fit_greybody(flux * u.Jy, 0.05 * flux * u.Jy, waves, device="cpu", **kw)
    with get_task_stream(client) as stream:
        got = fit_greybody(flux * u.Jy, 0.05 * flux * u.Jy, waves, device="gpu", **kw)
    np.testing.assert_allclose(got["temperature"].value, want["temperature"].value, rtol=1e-5)
    assert _workers(stream) == {gpu_worker}

    # the classifier's batches (JAX: the worker's default device, its CPU here)
    from vanotebook.classify import classify_cutouts, training_set

    cut, _ = training_set(20, 1, key=2)
    want, _, _ = classify_cutouts(cut, device="cpu")
    with get_task_stream(client) as stream:
        got, _, platform = classify_cutouts(cut, device="gpu", client=client, batch=40)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert _workers(stream) == {gpu_worker} and platform == "cpu"
    assert "cupy" not in sys.modules  # the client never needed CuPy
