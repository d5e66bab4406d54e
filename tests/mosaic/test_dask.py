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
                      dashboard_address=None) as cluster, Client(cluster) as client:
        on_dask = mosaic(tiles, client=client, chunks=200)
    np.testing.assert_allclose(on_dask["mosaic"].values, local["mosaic"].values, rtol=1e-6,
                               atol=1e-10)
    np.testing.assert_array_equal(on_dask["coverage"].values, local["coverage"].values)
    assert on_dask.attrs["background"] == local.attrs["background"]
