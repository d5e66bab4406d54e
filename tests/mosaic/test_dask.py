"""A run on a Dask cluster gives the in-process answer, whatever the blocks."""

from __future__ import annotations

import numpy as np
import pytest

from vanotebook.mosaic import mosaic

pytestmark = pytest.mark.slow


def test_dask_equals_local(sky):
    from distributed import Client, LocalCluster

    tiles = sky.images("radio")
    local = mosaic(tiles, chunks=4096)  # no client: one block, threads in this process
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        on_dask = mosaic(tiles, client=client, chunks=200)
    np.testing.assert_allclose(on_dask["mosaic"].values, local["mosaic"].values, rtol=1e-6,
                               atol=1e-10)
    np.testing.assert_array_equal(on_dask["coverage"].values, local["coverage"].values)
    assert on_dask.attrs["background"] == local.attrs["background"]


def test_lazy_fits_inputs_written_block_by_block_with_progress(sky, tmp_path):
    """FITS paths stay on disk (read per block); the zarr/FITS products equal the in-memory
    mosaic, and the progress callback sees every block."""
    from distributed import Client, LocalCluster

    from vanotebook.mosaic._core import prepare_images
    from vanotebook.mosaic._plan import FitsSource

    paths = []
    for k, tile in enumerate(sky.images("radio")):
        paths.append(tmp_path / f"t{k}.fits")
        tile.writeto(paths[-1])
    lazy = prepare_images([str(p) for p in paths], lazy=True)
    assert all(isinstance(im.data, FitsSource) for im in lazy)
    local = mosaic([str(p) for p in paths], chunks=4096)
    seen: list[float] = []
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        zarr_ds = mosaic([str(p) for p in paths], client=client, chunks=256,
                         output=tmp_path / "m.zarr", progress=seen.append)
        fits_ds = mosaic(tmp_path / "t*.fits", client=client, chunks=256,
                         output=tmp_path / "m.fits")
    for ds in (zarr_ds, fits_ds):
        np.testing.assert_allclose(ds["mosaic"].values, local["mosaic"].values, rtol=1e-6,
                                   atol=1e-10)
        np.testing.assert_array_equal(ds["coverage"].values, local["coverage"].values)
    ny, nx = local["mosaic"].shape
    n_blocks = -(-ny // 256) * -(-nx // 256)
    assert len(seen) == n_blocks and seen[-1] == 1.0 and seen == sorted(seen)
    assert not list(tmp_path.glob(".m.zarr.*"))  # no temporary left behind


def test_progress_callback_in_process(sky):
    seen: list[float] = []
    mosaic(sky.images("radio"), chunks=200, match_background=False, progress=seen.append)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)


def test_gpu_device_annotates_block_tasks(sky):
    """device="gpu" tasks ask for the worker resource GPU=1 (never run here: no GPU)."""
    from vanotebook.mosaic._core import prepare_images
    from vanotebook.mosaic._dask import block_tasks
    from vanotebook.mosaic._plan import plan_tiles, resolve_grid

    images = prepare_images(sky.images("radio"))
    grid = resolve_grid(images, "optimal")
    tiles = plan_tiles(images, grid, tolerance=1e-4, method="bilinear")
    for device, expected in (("gpu", {"GPU": 1}), ("cpu", None)):
        rows = block_tasks(tiles, grid.shape, chunk=300, combine="mean", method="bilinear",
                           device=device, centre=(0.0, 0.0), token=device)
        task = rows[0][0][1]
        graph = task.__dask_graph__()
        layer = graph.layers[task.key] if hasattr(graph, "layers") else None
        annotations = dict(getattr(layer, "annotations", None) or {})
        assert annotations.get("resources") == expected
