"""Every service run from a user account against Dask workers of another account.

On the gateway the shared workers run as an unprivileged service account and
every home is 0700, so the user's data must reach the workers by value (or
through the shared archive), never as a path into the user's folder. Here the
test process is "the user" and its data live in a private 0700 folder; a real
``dask scheduler`` and two workers run as ``nobody`` (uid 65534), which cannot
enter that folder. Each service is called through a `distributed.Client` to
them and compared with the same call in this process (``client=None``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICE_UID = 65534  # nobody
CHUNK = 256


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _traversable(path: Path, *, itself: bool = True) -> None:
    """Give "others" the right to traverse (o+x: pass through, not list) every folder from
    the root down to ``path`` that lacks it (``path`` itself only when ``itself``).

    /root is 0700 here and Python lives in /root/.pyenv, so ``nobody`` could not run
    Python at all. The gateway does the same for the interpreter and the package (never
    for users' homes); the bits are left in place (other processes may rely on them).
    """
    path = Path(path).resolve()
    folders = [*reversed(path.parents), *([path] if itself else [])]
    for folder in folders:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(folder, stat.S_IMODE(mode) | stat.S_IXOTH)


def _can_setpriv() -> bool:
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


@pytest.fixture(scope="module")
def private():
    """The user's data folder: 0700 and owned by this process's account."""
    folder = Path(tempfile.mkdtemp(prefix="vanotebook-user-"))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def foreign(private):
    """A client to a scheduler and two workers running as ``nobody`` on 127.0.0.1."""
    if not _can_setpriv():
        pytest.skip("needs root and setpriv to run workers as another account")
    from distributed import Client

    import vanotebook

    source = Path(vanotebook.__file__).resolve().parents[1]  # the checkout's src/
    for p in (Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent,
              source):
        _traversable(p)
    _traversable(private, itself=False)
    service = Path(tempfile.mkdtemp(prefix="vanotebook-service-"))  # the account's own
    logs = Path(tempfile.mkdtemp(prefix="vanotebook-service-logs-"))
    for sub in ("numba", "tmp", "w0", "w1", "config"):
        (service / sub).mkdir()
    for p in [service, *service.iterdir()]:
        os.chown(p, SERVICE_UID, SERVICE_UID)
    _traversable(service, itself=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "VANOTEBOOK_"))}
    env.update(HOME=str(service), NUMBA_CACHE_DIR=str(service / "numba"),
               TMPDIR=str(service / "tmp"), XDG_CONFIG_HOME=str(service / "config"),
               XDG_CACHE_HOME=str(service / "config"), MPLCONFIGDIR=str(service / "config"),
               DASK_TEMPORARY_DIRECTORY=str(service / "tmp"), CUDA_VISIBLE_DEVICES="",
               OMP_NUM_THREADS="1")
    as_service = ["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}",
                  "--clear-groups", "--"]
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []

    def start(name, args):
        log = (logs / f"{name}.log").open("wb")
        procs.append(subprocess.Popen([*as_service, sys.executable, "-m", *args], env=env,
                                      stdout=log, stderr=subprocess.STDOUT, cwd=service,
                                      start_new_session=True))
        log.close()

    client = None
    try:
        start("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                            "--port", str(port), "--dashboard-address", "127.0.0.1:0",
                            "--no-show"])
        for i in range(2):
            start(f"worker{i}", ["distributed.cli.dask_worker", address, "--host",
                                 "127.0.0.1", "--nthreads", "1", "--no-nanny",
                                 "--memory-limit", "2GiB", "--name", f"foreign-{i}",
                                 "--dashboard-address", "127.0.0.1:0",
                                 "--local-directory", str(service / f"w{i}")])
        end = time.monotonic() + 60
        while True:
            try:
                client = Client(address, timeout="5s", set_as_default=False)
                break
            except OSError:
                if time.monotonic() > end or any(p.poll() is not None for p in procs):
                    raise
                time.sleep(0.5)
        client.wait_for_workers(2, timeout=120)
        yield client
    except Exception:
        for f in sorted(logs.iterdir()):
            sys.stderr.write(f"--- {f.name}\n{f.read_text(errors='replace')[-4000:]}\n")
        raise
    finally:
        if client is not None:
            with _suppress():
                client.shutdown()  # the scheduler closes its workers, then itself
            client.close()
        for p in procs:
            with _suppress():
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with _suppress():
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        shutil.rmtree(service, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)


def _suppress():
    import contextlib

    return contextlib.suppress(ProcessLookupError, PermissionError, OSError, TimeoutError)


# ----------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def fits_paths(private, sky):
    folder = private / "fits"
    folder.mkdir()
    paths = []
    for k, tile in enumerate(sky.images("radio")):
        paths.append(folder / f"t{k}.fits")
        tile.writeto(paths[-1])
    return [str(p) for p in paths]


def test_workers_cannot_enter_the_private_folder(foreign, private, fits_paths):
    """The premise: the workers run as the service account and the user's folder is shut."""

    def probe(folder: str) -> dict:  # nested: pickled by value (workers can't import tests)
        import os

        out = {"uid": os.getuid(), "enter": os.access(folder, os.X_OK)}
        try:
            os.listdir(folder)
            out["listdir"] = "ok"
        except PermissionError:
            out["listdir"] = "PermissionError"
        return out

    answers = foreign.run(probe, str(private))
    assert len(answers) == 2
    for answer in answers.values():
        assert answer == {"uid": SERVICE_UID, "enter": False, "listdir": "PermissionError"}


def test_the_client_side_knows_what_the_workers_reach(foreign, private, fits_paths):
    from vanotebook._remote import workers_can_read, workers_can_write

    assert not workers_can_read(foreign, fits_paths)
    assert not workers_can_write(foreign, private)
    assert workers_can_read(None, fits_paths) and workers_can_write(None, private)
    assert workers_can_read(foreign, [sys.prefix])  # the interpreter is reachable
    assert workers_can_read(foreign, [])


# ----------------------------------------------------------------------------- mosaic
def _mosaic_values(ds) -> np.ndarray:
    return np.stack([np.asarray(ds[v].values, np.float64)
                     for v in ("mosaic", "weight", "coverage")])


def test_mosaic_streams_private_fits_into_private_zarr_and_fits(foreign, private, fits_paths):
    from vanotebook.mosaic import mosaic

    out = private / "mosaic"
    out.mkdir()
    ref_zarr = _mosaic_values(mosaic(fits_paths, chunks=CHUNK, output=out / "ref.zarr"))
    ref_fits = _mosaic_values(mosaic(fits_paths, chunks=CHUNK, output=out / "ref.fits"))
    ref_mem = _mosaic_values(mosaic(fits_paths, chunks=CHUNK))
    seen: list[float] = []
    with foreign.as_current():  # a notebook on the gateway has the shared client as default
        zarr_ds = mosaic(fits_paths, chunks=CHUNK, client=foreign, output=out / "m.zarr",
                         progress=seen.append)
        got_zarr = _mosaic_values(zarr_ds)
        got_fits = _mosaic_values(mosaic(fits_paths, chunks=CHUNK, client=foreign,
                                         output=out / "m.fits"))
        got_mem = _mosaic_values(mosaic(fits_paths, chunks=CHUNK, client=foreign))
    np.testing.assert_array_equal(got_zarr, ref_zarr)
    np.testing.assert_array_equal(got_fits, ref_fits)
    np.testing.assert_array_equal(got_mem, ref_mem)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    assert sorted(p.name for p in out.iterdir()) == ["m.fits", "m.zarr", "ref.fits",
                                                      "ref.zarr"]  # no temporary left


def test_mosaic_of_images_in_memory_written_into_the_private_folder(foreign, private, sky):
    """Inputs in memory (no path to read): only the product is out of the workers' reach."""
    from vanotebook.mosaic import mosaic

    out = private / "mosaic-mem"
    out.mkdir()
    images = sky.images("radio")[:2]
    ref = _mosaic_values(mosaic(images, chunks=CHUNK, output=out / "ref.zarr"))
    with foreign.as_current():
        got = _mosaic_values(mosaic(images, chunks=CHUNK, client=foreign,
                                    output=out / "m.zarr"))
    np.testing.assert_array_equal(got, ref)


# ----------------------------------------------------------------------------- detect
def test_detect_on_a_private_fits_path(foreign, fits_paths):
    from vanotebook.detect import detect

    ref = detect(fits_paths[0], tile=200, overlap=32, extended=False)
    got = detect(fits_paths[0], tile=200, overlap=32, extended=False, client=foreign)
    assert len(ref.catalogue) > 5
    assert ref.catalogue.colnames == got.catalogue.colnames
    for name in ref.catalogue.colnames:
        np.testing.assert_array_equal(np.asarray(got.catalogue[name]),
                                      np.asarray(ref.catalogue[name]), err_msg=name)


# ----------------------------------------------------------------------------- cutouts
def test_cutouts_of_private_fits(foreign, fits_paths, sky):
    from astropy.table import Table
    from astropy.wcs import WCS

    from vanotebook.mosaic import cutouts

    header = fits.getheader(fits_paths[0])
    centre = WCS(header).celestial.pixel_to_world(250, 250)
    table = Table({"ra": [centre.ra.deg, centre.ra.deg + 0.01, 10.0],
                   "dec": [centre.dec.deg, centre.dec.deg, -80.0]})
    images = {"radio": fits_paths[:2]}
    kwargs = {"size": 1 * u.arcmin, "pixel_scale": 6 * u.arcsec, "unit": "Jy/beam"}
    ref = cutouts(images, table, **kwargs)
    got = cutouts(images, table, client=foreign, **kwargs)
    assert ref[2] is None and got[2] is None
    for a, b in zip(ref[:2], got[:2], strict=True):
        assert list(a.data_vars) == list(b.data_vars)
        for v in a.data_vars:
            np.testing.assert_array_equal(b[v].values, a[v].values)


# ----------------------------------------------------------------------------- archive, xmatch
@pytest.fixture(scope="module")
def archive(private):
    from vanotebook.archive import Archive
    from vanotebook.sky import catalogue_pair

    left, right = catalogue_pair(6000, radius=0.4, seed=7).to_tables()
    arch = Archive(private / "archive")
    arch.add_catalogue("left", left, max_rows=800, epoch=2016.0)
    arch.add_catalogue("right", right, max_rows=800, epoch=2000.0)
    assert arch.catalogue("left").pixels.size > 2
    return arch


def _pairs(table):
    df = table.to_pandas()
    key = ["source_id_left", "source_id_right"]
    return df.sort_values(key).reset_index(drop=True)


def test_lazy_queries_of_a_personal_archive(foreign, archive):
    import pandas as pd

    left = archive.catalogue("left")
    rows = left.region(_EVERYTHING)
    ra0, dec0 = float(np.median(rows["ra"])), float(np.median(rows["dec"]))
    local_cone = left.cone(ra0, dec0, 10 * u.arcmin).to_pandas()
    assert len(local_cone) > 10
    with foreign.as_current():
        cone = left.cone(ra0, dec0, 10 * u.arcmin, lazy=True).compute()
        whole = left.to_dask().compute()
    pd.testing.assert_frame_equal(cone.reset_index(drop=True), local_cone)
    pd.testing.assert_frame_equal(whole.reset_index(drop=True),
                                  left.to_dask().compute(scheduler="sync")
                                  .reset_index(drop=True))


def test_crossmatch_of_personal_archive_catalogues(foreign, archive):
    import pandas as pd

    from vanotebook.xmatch import crossmatch

    left, right = archive.catalogue("left"), archive.catalogue("right")
    ref = _pairs(crossmatch(left.to_dask(), right.to_dask(), **_MATCH))
    assert len(ref) > 1000
    with foreign.as_current():
        got = _pairs(crossmatch(left.to_dask(), right.to_dask(), client=foreign, **_MATCH))
    pd.testing.assert_frame_equal(got, ref)


def test_crossmatch_of_private_partitioned_folders(foreign, archive, private):
    import pandas as pd

    from vanotebook import healpix
    from vanotebook.xmatch import crossmatch

    folders = [healpix.write_partitioned(archive.catalogue(name).region(_EVERYTHING),
                                         private / f"hpx-{name}", order=7)
               for name in ("left", "right")]
    ref = _pairs(crossmatch(*folders, **_MATCH))
    assert len(ref) > 1000
    with foreign.as_current():
        got = _pairs(crossmatch(*folders, client=foreign, **_MATCH))
    pd.testing.assert_frame_equal(got, ref)


_MATCH = {"radius": 2 * u.arcsec, "how": "all", "epoch": False}
_EVERYTHING = (0.0, 0.0, 180 * u.deg)


# ----------------------------------------------------------------------------- SOM
def test_som_on_private_parquet_spectra(foreign, private):
    from vanotebook.sky import make_spectra
    from vanotebook.som import SOM

    spectra = make_spectra(1500, seed=11)
    df = spectra.to_pandas()
    cols = [c for c in df.columns if c.startswith("f") and c[1:].isdigit()]
    folder = private / "spectra.parquet"
    df.to_parquet(folder, row_group_size=500)
    ref = SOM((4, 4), n_epochs=4, seed=2).fit(str(folder), columns=cols)
    with foreign.as_current():
        got = SOM((4, 4), n_epochs=4, seed=2).fit(str(folder), columns=cols, client=foreign)
        bmu = got.bmu(str(folder), columns=cols)
    np.testing.assert_array_equal(got.prototypes, ref.prototypes)
    np.testing.assert_array_equal(bmu, ref.bmu(str(folder), columns=cols))


# ----------------------------------------------------------------------------- HiPS
def _files(folder: Path, suffix: str) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in folder.rglob(f"*{suffix}")}


def test_catalogue_hips_into_the_private_folder(foreign, archive, private):
    from vanotebook.archive._hips import write_catalogue_hips

    cat = archive.catalogue("left")
    parquet = private / "left.parquet"
    cat.region(_EVERYTHING).to_pandas().to_parquet(parquet)
    out = private / "cathips"
    table = cat.region(_EVERYTHING)
    for name, source in (("archive", cat), ("parquet", parquet), ("table", table)):
        ref = write_catalogue_hips(source, out / f"ref-{name}", order_by="mag",
                                   max_rows_per_tile=50)
        got = write_catalogue_hips(source, out / f"got-{name}", order_by="mag",
                                   max_rows_per_tile=50, client=foreign)
        a, b = _files(ref, ".tsv"), _files(got, ".tsv")
        assert len(a) > 10 and sorted(a) == sorted(b)
        for rel in a:
            assert a[rel].read_bytes() == b[rel].read_bytes(), rel
        assert (ref / "Moc.fits").read_bytes() == (got / "Moc.fits").read_bytes()


def test_image_hips_of_private_fits_and_zarr_mosaic(foreign, fits_paths, private):
    from vanotebook.mosaic import mosaic, to_hips

    out = private / "imghips"
    kwargs = {"tile_width": 64, "chunks": 128, "formats": ("fits", "png")}
    with fits.open(fits_paths[0]) as hdul:
        array = (hdul[0].data.copy(), fits.Header(hdul[0].header))
    ref_a = to_hips(array, out / "ref-a", **kwargs)
    got_a = to_hips(array, out / "got-a", client=foreign, **kwargs)  # only writing is out
    ref = to_hips(fits_paths[0], out / "ref", **kwargs)
    got = to_hips(fits_paths[0], out / "got", client=foreign, **kwargs)
    zarr_path = out / "m.zarr"
    ds_local = mosaic(fits_paths[:2], chunks=CHUNK, output=out / "local.zarr")
    ref_m = to_hips(ds_local, out / "ref-m", **kwargs)
    with foreign.as_current():
        ds = mosaic(fits_paths[:2], chunks=CHUNK, client=foreign, output=zarr_path)
        got_m = to_hips(ds, out / "got-m", client=foreign, **kwargs)
    for a, b in ((ref_a, got_a), (ref, got), (ref_m, got_m)):
        fa, fb = _files(a.path, ".fits"), _files(b.path, ".fits")
        assert len(fa) > 5 and sorted(fa) == sorted(fb)
        for rel in fa:
            if rel == "Moc.fits":
                continue
            np.testing.assert_array_equal(fits.getdata(fb[rel]), fits.getdata(fa[rel]),
                                          err_msg=rel)
        pa, pb = _files(a.path, ".png"), _files(b.path, ".png")
        assert sorted(pa) == sorted(pb)
        assert all(pa[rel].read_bytes() == pb[rel].read_bytes() for rel in pa)


# ----------------------------------------------------------------------------- no root
def test_by_value_paths_on_a_local_cluster_told_it_reaches_nothing(monkeypatch, sky,
                                                                   tmp_path):
    """The by-value paths where this test cannot switch accounts: an in-process cluster
    whose workers are said to reach no file give the products of the path-reading run."""
    from distributed import Client, LocalCluster

    from vanotebook import _remote
    from vanotebook.archive._hips import write_catalogue_hips
    from vanotebook.mosaic import mosaic, to_hips
    from vanotebook.sky import catalogue_pair

    paths = []
    for k, tile in enumerate(sky.images("radio")):
        paths.append(str(tmp_path / f"t{k}.fits"))
        tile.writeto(paths[-1])
    table, _ = catalogue_pair(3000, radius=0.3, seed=2).to_tables()
    kwargs = {"tile_width": 64, "chunks": 128}
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        ref = [_mosaic_values(mosaic(paths, chunks=CHUNK, client=client,
                                     output=tmp_path / f"ref.{ext}")) for ext in ("zarr", "fits")]
        ref_h = to_hips(paths[0], tmp_path / "ref-h", client=client, **kwargs)
        ref_c = write_catalogue_hips(table, tmp_path / "ref-c", client=client,
                                     max_rows_per_tile=50)
        monkeypatch.setattr(_remote, "_ask", lambda client, paths, mode: client is None)
        fed: list[str] = []
        bounded_map = _remote.bounded_map

        def counting(client, func, jobs, **kw):
            fed.append(func.__name__)
            return bounded_map(client, func, jobs, **kw)

        monkeypatch.setattr(_remote, "bounded_map", counting)
        got = [_mosaic_values(mosaic(paths, chunks=CHUNK, client=client,
                                     output=tmp_path / f"got.{ext}")) for ext in ("zarr", "fits")]
        got_h = to_hips(paths[0], tmp_path / "got-h", client=client, **kwargs)
        got_c = write_catalogue_hips(table, tmp_path / "got-c", client=client,
                                     max_rows_per_tile=50)
    assert fed == ["_block_by_value", "_block_by_value", "_group_task", "_call"]
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_array_equal(b, a)
    for a, b, suffix in ((ref_h.path, got_h.path, ".fits"), (ref_c, got_c, ".tsv")):
        fa, fb = _files(a, suffix), _files(b, suffix)
        assert len(fa) > 5 and sorted(fa) == sorted(fb)
        for rel in fa:
            if suffix == ".tsv":
                assert fa[rel].read_bytes() == fb[rel].read_bytes(), rel
            elif rel != "Moc.fits":
                np.testing.assert_array_equal(fits.getdata(fb[rel]), fits.getdata(fa[rel]))
