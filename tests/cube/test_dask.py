"""Dask run equals local run; a cube 4x a worker's memory runs block by block."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from distributed import Client, LocalCluster

from vanotebook.cube import channel_maps, moments, pv_slice, spectrum

KMS = u.km / u.s


@pytest.fixture
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0",
                      worker_dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


def test_dask_equals_local(M, client, tmp_path):
    hdu = M.hdu("freq", stokes=True, ny=40, nx=36)
    path = tmp_path / "cube.fits"
    hdu.writeto(path)
    names = (0, 1, 2, "peak", "median")
    local = moments(hdu, names, client=None)
    with Client(client.scheduler.address) as c:
        dist = moments(str(path), names, client=c, chunks=8)  # 25 blocks on 2 workers
        for name in local.data_vars:
            np.testing.assert_allclose(dist[name].values, local[name].values, rtol=1e-12,
                                       equal_nan=True)
        path_px = [(2.0, 3.0), (30.0, 35.0)]
        np.testing.assert_allclose(pv_slice(str(path), path_px, width=3, client=c).values,
                                   pv_slice(hdu, path_px, width=3).values, rtol=1e-12,
                                   equal_nan=True)
        region = (WCS(hdu.header).celestial.pixel_to_world(18, 20), 10 * u.arcsec)
        np.testing.assert_allclose(spectrum(str(path), region, client=c)["flux"].value,
                                   spectrum(hdu, region)["flux"].value, rtol=1e-12)
        np.testing.assert_allclose(channel_maps(str(path), 5, client=c)["channel_map"].values,
                                   channel_maps(hdu, 5)["channel_map"].values, rtol=1e-12,
                                   equal_nan=True)
    # a different block size gives the same maps
    np.testing.assert_allclose(moments(hdu, names, chunks=5)["moment2"].values,
                               local["moment2"].values, rtol=1e-12, equal_nan=True)


def _write_big(path, nv: int, ny: int, nx: int, M) -> np.ndarray:
    """A FITS cube written plane by plane (never whole in memory); its true moment 1."""
    header = fits.Header()
    header["SIMPLE"], header["BITPIX"], header["NAXIS"] = True, -32, 3
    header["NAXIS1"], header["NAXIS2"], header["NAXIS3"] = nx, ny, nv
    for key, value in M.header(nv, ny, nx).items():
        if not key.startswith("NAXIS"):
            header[key] = value
    v = M.velocities(nv)
    vc = M.V0 + 0.01 * (np.arange(nx)[None, :] - nx / 2) + 0.0 * np.arange(ny)[:, None]
    stream = fits.StreamingHDU(path, header)
    for k in range(nv):
        plane = np.exp(-0.5 * ((v[k] - vc) / M.SIGMA) ** 2).astype(">f4")
        stream.write(plane)
    stream.close()
    return vc


@pytest.mark.slow
def test_cube_four_times_worker_memory_runs_block_by_block(M, tmp_path):
    from distributed.diagnostics import MemorySampler

    # a worker with distributed and numba's cached kernel loaded holds ~320 MiB before any
    # data; at 400 MiB it crossed dask's 80% pause line and waited forever
    limit = 600 * 2**20
    nv, ny, nx = 615, 1024, 1024  # 2.58 GB of float32: 4.1 x the worker's memory
    path = tmp_path / "big.fits"
    vc = _write_big(path, nv, ny, nx, M)
    assert path.stat().st_size > 4 * limit
    sampler = MemorySampler()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      memory_limit=limit, dashboard_address="127.0.0.1:0",
                      worker_dashboard_address=None) as cluster, \
            Client(cluster) as c:
        with sampler.sample("moments", client=c, interval=0.1):
            ds = moments(str(path), (0, 1), client=c)
        assert len(c.scheduler_info()["workers"]) == 1  # never restarted
    peak = float(sampler.to_pandas()["moments"].max())
    assert peak < limit, f"worker memory peaked at {peak / 2**20:.0f} MiB"
    inner = slice(None), slice(200, -200)  # lines well inside the band
    np.testing.assert_allclose(ds["moment1"].values[inner], vc[inner], atol=1e-3)
    np.testing.assert_allclose(ds["moment0"].values[inner], M.SIGMA * np.sqrt(2 * np.pi),
                               rtol=1e-3)


def test_moments_report_progress_block_by_block_and_give_the_same_maps(M, client, tmp_path):
    hdu = M.hdu("freq", ny=40, nx=36)
    path = tmp_path / "cube.fits"
    hdu.writeto(path)
    plain = moments(hdu, (0, 1), chunks=8)
    for where in (None, client):
        seen: list[float] = []
        ds = moments(str(path) if where is not None else hdu, (0, 1), chunks=8, client=where,
                     progress=seen.append)
        assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
        assert len(seen) == 1 + 25  # one call per block (5 x 5 patches of 8 pixels)
        for name in ("moment0", "moment1"):
            np.testing.assert_allclose(ds[name].values, plain[name].values, rtol=1e-12,
                                       equal_nan=True)
    with pytest.raises(ValueError, match=r"^progress: expected True, False or a callable"):
        moments(hdu, 0, progress="yes")
