"""Out of core (many HEALPix partitions on Dask) equals in memory."""

from __future__ import annotations

import astropy.units as u
import dask
import dask.dataframe as dd
import numpy as np
import pytest
from astropy.coordinates import SkyCoord, search_around_sky
from astropy.table import Table
from distributed.diagnostics.plugin import SchedulerPlugin

from vanotebook import healpix
from vanotebook.sky import catalogue_pair
from vanotebook.xmatch import crossmatch


@pytest.fixture(scope="module")
def demo_pair():
    return catalogue_pair(20_000, radius=0.5, true_fraction=0.6, seed=5).to_tables()


@pytest.mark.parametrize("how", ["nearest", "all"])
def test_many_partitions_equal_one(demo_pair, how):
    left, right = demo_pair
    mem = crossmatch(left, right, radius=2 * u.arcsec, how=how)
    ld = dd.from_pandas(left.to_pandas(), npartitions=3)
    rd = dd.from_pandas(right.to_pandas(), npartitions=4)
    with dask.config.set({"vanotebook.partition-rows": 1500}):
        lazy = crossmatch(ld, rd, radius=2 * u.arcsec, how=how)
    assert lazy.meta["partitions"] > 5  # really split
    key = ["source_id_left", "source_id_right"]
    a = mem.to_pandas().sort_values(key).reset_index(drop=True)
    b = lazy.to_pandas().sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) > 5000
    np.testing.assert_array_equal(a[key].to_numpy(), b[key].to_numpy())
    np.testing.assert_allclose(a["separation"], b["separation"], rtol=1e-12)
    np.testing.assert_allclose(a["probability"], b["probability"], rtol=1e-6)


def test_partitioned_parquet_all_sky_equals_astropy(tmp_path):
    rng = np.random.default_rng(1)
    n = 30_000
    z, ra = rng.uniform(-1, 1, (2, n))
    ra = ra * 180 + 180
    dec = np.degrees(np.arcsin(z))
    left = Table({"id": np.arange(n), "ra": ra, "dec": dec})
    c = SkyCoord(ra, dec, unit="deg").directional_offset_by(rng.uniform(0, 360, n) * u.deg,
                                                            rng.uniform(0, 60, n) * u.arcsec)
    right = Table({"id": np.arange(n), "ra": c.ra.deg, "dec": c.dec.deg})
    lp = healpix.write_partitioned(left, tmp_path / "left", order=2)
    rp = healpix.write_partitioned(right, tmp_path / "right", order=3)
    with dask.config.set({"vanotebook.partition-rows": 2000}):
        out = crossmatch(lp, rp, radius=1 * u.arcmin, how="all")
    i1, i2, _, _ = search_around_sky(SkyCoord(ra, dec, unit="deg"), c, 1 * u.arcmin)
    assert set(zip(out["id_left"], out["id_right"], strict=True)) == set(
        zip(i1, i2, strict=True))
    assert out.meta["partitions"] > 10


def test_progress_reports_each_partition(demo_pair):
    left, right = demo_pair
    calls = []
    ld = dd.from_pandas(left.to_pandas(), npartitions=2)
    with dask.config.set({"vanotebook.partition-rows": 4000}):
        out = crossmatch(ld, right, radius=1 * u.arcsec, progress=lambda d, t: calls.append((d, t)))
    total = out.meta["partitions"]
    assert total > 2 and calls[0] == (0, total) and calls[-1] == (total, total)
    calls = []
    crossmatch(left, right, radius=1 * u.arcsec, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 1), (1, 1)]


class _TaskLog(SchedulerPlugin):
    """A scheduler plugin: each task's key, resource restrictions and worker as it starts."""

    name = "vanotebook-test-task-log"

    def __init__(self, scheduler):
        self.scheduler, self.rows = scheduler, []

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "processing":
            ts = self.scheduler.tasks[key]
            self.rows.append((str(key), ts.resource_restrictions, ts.processing_on.name))


@pytest.mark.parametrize("device", ["gpu", "cpu"])
def test_gpu_matches_run_on_the_gpu_worker(demo_pair, monkeypatch, device):
    """The partition tasks the scheduler receives carry ``GPU=1`` on "gpu" (and run on the
    worker that has it), none on "cpu"; dask.annotate around a dask DataFrame is dropped."""
    import dataclasses

    from distributed import Client, LocalCluster

    from vanotebook.xmatch import _core as C
    from vanotebook.xmatch import _dask as D

    left, right = demo_pair
    # the tasks run in this process: "gpu" kernels are numpy here (no GPU in CI)
    monkeypatch.setattr(C, "_namespace", lambda device: (np, np.asarray))
    spec = C.validate(radius=1 * u.arcsec, how="nearest", k=1, ra="ra", dec="dec",
                      errors=None, epoch=None, suffixes=("_left", "_right"), nan="drop",
                      prior=None, device="cpu")
    spec = dataclasses.replace(spec, device=device)  # resolve_device gives "gpu" only on a GPU

    async def give_gpu(dask_worker):
        await dask_worker.set_resources(GPU=1)

    with LocalCluster(processes=False, n_workers=2, threads_per_worker=1,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        gpu_worker = sorted(client.scheduler_info()["workers"])[0]
        client.run(give_gpu, workers=[gpu_worker])
        log = _TaskLog(cluster.scheduler)
        cluster.scheduler.add_plugin(log)
        ld = dd.from_pandas(left[:6000].to_pandas(), npartitions=2)
        rd = dd.from_pandas(right[:6000].to_pandas(), npartitions=2)
        with dask.config.set({"vanotebook.partition-rows": 1000}):
            out = D.crossmatch_dask(ld, rd, spec, client=client)
        names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
    ref = crossmatch(left[:6000], right[:6000], radius=1 * u.arcsec)
    assert len(out) == len(ref) > 100
    match = [r for r in log.rows if r[0].startswith(D.MATCH_PREFIX)]
    assert len(match) == out.meta["partitions"] > 3
    if device == "gpu":
        assert all(r == {"GPU": 1} for _, r, _ in match)
        assert {w for _, _, w in match} == {names[gpu_worker]}
    else:
        assert all(not r for _, r, _ in match)
    # only the match tasks ask for the GPU: the shuffle runs anywhere
    assert all(not r for k, r, _ in log.rows if not k.startswith(D.MATCH_PREFIX))


def test_folder_output_is_written_partition_by_partition(demo_pair, tmp_path, monkeypatch):
    """Issue 20: a match larger than memory is written, partition by partition, to a
    folder of parquet parts, never gathered on the client: the parts hold the in-memory
    pairs with the same probabilities (the completeness is fitted on all partitions
    before any probability is written), and the call returns them lazily. On a
    cluster, each partition's pairs are handed on and dropped as they arrive.
    Mutations: probabilities from one partition's fit, or the pairs gathered (no sink)
    before writing, each fails it."""
    from distributed import Client, LocalCluster

    from vanotebook.xmatch import _dask

    left, right = demo_pair
    mem = crossmatch(left, right, radius=2 * u.arcsec)
    ld = dd.from_pandas(left.to_pandas(), npartitions=3)
    rd = dd.from_pandas(right.to_pandas(), npartitions=4)
    held, most = [0], [0]  # partitions' pairs held by the client at once
    sink_seen = []
    real = _dask._match_partitions

    def spy(*args, sink=None, **kw):
        def counting(number, frame):
            held[0] += 1
            most[0] = max(most[0], held[0])
            sink_seen.append(number)
            sink(number, frame)
            held[0] -= 1
        return real(*args, sink=None if sink is None else counting, **kw)

    monkeypatch.setattr(_dask, "_match_partitions", spy)
    out_dir = tmp_path / "pairs"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client, \
            dask.config.set({"vanotebook.partition-rows": 1500}):
        lazy = crossmatch(ld, rd, radius=2 * u.arcsec, output=out_dir, client=client)
        assert isinstance(lazy, dd.DataFrame)
        got = lazy.compute()
    parts = sorted(out_dir.glob("part-*.parquet"))
    assert len(parts) > 5 and len(sink_seen) == len(set(sink_seen)) > 5 and most[0] == 1
    assert not list(out_dir.glob(".stage-*"))  # staged parts are gone
    key = ["source_id_left", "source_id_right"]
    a = mem.to_pandas().sort_values(key).reset_index(drop=True)
    b = got.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) > 5000
    np.testing.assert_array_equal(a[key].to_numpy(), b[key].to_numpy())
    np.testing.assert_allclose(a["probability"], b["probability"], rtol=1e-9)
    import json

    import pyarrow.parquet as pq

    from vanotebook.io import read_catalogue

    whole = read_catalogue(out_dir)  # the folder reads back as one catalogue, with units
    assert len(whole) == len(a) and whole["separation"].unit == u.arcsec
    numbers = json.loads(pq.read_schema(parts[0]).metadata[b"vanotebook.meta"])
    assert numbers["COMPLETE"] == pytest.approx(mem.meta["completeness"], rel=1e-9)
    prov = (tmp_path / "pairs.prov.json").read_text()
    assert all(p.name in prov for p in parts)


def test_folder_output_is_all_or_nothing(demo_pair, tmp_path, monkeypatch):
    """A failure while writing the parts leaves no folder (and no staged file); an
    existing folder is refused before any work unless overwrite=True."""
    from vanotebook import VanotebookInputError
    from vanotebook.xmatch import _dask

    left, right = demo_pair
    ld = dd.from_pandas(left.to_pandas(), npartitions=2)
    rd = dd.from_pandas(right.to_pandas(), npartitions=2)
    calls = []
    real = _dask._write_part

    def failing(out, folder, number):
        calls.append(number)
        if len(calls) == 2:
            raise OSError("disk full")
        real(out, folder, number)

    monkeypatch.setattr(_dask, "_write_part", failing)
    with dask.config.set({"vanotebook.partition-rows": 3000}), \
            pytest.raises(OSError, match="disk full"):
        crossmatch(ld, rd, radius=2 * u.arcsec, output=tmp_path / "pairs")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(VanotebookInputError, match="output"):
        crossmatch(ld, rd, radius=2 * u.arcsec, output=tmp_path / "taken")
