"""XmatchDashboard state: set params, trigger the match, check what it shows."""

from __future__ import annotations

import contextlib

import astropy.units as u
import numpy as np
import panel as pn
import pytest
from astropy.table import Table

from vanotebook.dashboards import XmatchDashboard
from vanotebook.xmatch import crossmatch


def test_run_matches_the_public_api_and_updates_state():
    dash = XmatchDashboard(demo_rows=2000, radius_arcsec=1.5)
    assert dash.status == "ready" and not dash.running
    dash.run(dash)  # what the "Match" button does
    dash.future.result(timeout=120)
    assert not dash.running
    left, right = dash.catalogues()
    ref = crossmatch(left, right, radius=1.5 * u.arcsec)
    assert dash.n_pairs == len(ref) > 500
    assert "pairs" in dash.status
    sky = dash.sky_data()
    assert sky["matched"].sum() == len(ref)
    data = dash.download().getvalue()
    back = Table.read(data.decode(), format="ascii.ecsv")
    np.testing.assert_array_equal(back["source_id_right"], ref["source_id_right"])
    layout = dash.__panel__()
    assert isinstance(layout, pn.Column) and list(layout.select(pn.widgets.Tabulator))


def test_changing_how_and_radius():
    dash = XmatchDashboard(demo_rows=2000, radius_arcsec=3.0, how="all")
    dash.start().result(timeout=120)
    n_all = dash.n_pairs
    dash.how = "nearest"
    dash.start().result(timeout=120)
    assert n_all >= dash.n_pairs > 0


def test_errors_are_shown_not_raised():
    left = Table({"ra": [1.0], "dec": [2.0]})
    dash = XmatchDashboard(left, Table({"x": [1.0]}))
    dash.start()
    with contextlib.suppress(Exception):
        dash.future.result(timeout=60)
    assert dash.status.startswith("error") and dash.result is None and not dash.running


def _bytes(table: Table, fmt: str, suffix: str, tmp_path) -> bytes:
    path = tmp_path / f"cat{suffix}"
    table.write(path, format=fmt)
    return path.read_bytes()


@pytest.mark.parametrize(("fmt", "suffix"), [("fits", ".fits"), ("votable", ".xml"),
                                             ("ascii.ecsv", ".ecsv"), ("parquet", ".parquet")])
def test_file_input_upload_in_every_format(tmp_path, fmt, suffix):
    from vanotebook.sky import catalogue_pair

    left, right = catalogue_pair(1500, radius=0.3, seed=4).to_tables()
    keep = ["source_id", "ra", "dec", "ra_error", "dec_error"]
    left, right = left[keep], right[[*keep, "truth_left_id"]]
    dash = XmatchDashboard()
    # what a browser upload does: the FileInput widget receives the bytes and the name
    dash.left_file.param.update(value=_bytes(left, fmt, f"_l{suffix}", tmp_path),
                                filename=f"left{suffix}")
    dash.right_file.param.update(value=_bytes(right, fmt, f"_r{suffix}", tmp_path),
                                 filename=f"right{suffix}")
    assert "uploaded" in dash.sources and not dash.status.startswith("error")
    got_left, got_right = dash.catalogues()
    np.testing.assert_array_equal(got_left["source_id"], left["source_id"])
    np.testing.assert_allclose(got_right["ra"], right["ra"])
    dash.start().result(timeout=120)
    ref = crossmatch(left, right, radius=1 * u.arcsec)
    assert dash.n_pairs == len(ref) > 300
    np.testing.assert_array_equal(dash.result["source_id_right"], ref["source_id_right"])


def test_bad_upload_is_reported_not_raised():
    dash = XmatchDashboard()
    dash.left_file.param.update(value=b"not a catalogue", filename="junk.ecsv")
    assert dash.status.startswith("error reading left upload")
    assert dash.sources == "demo pair"


def test_progress_follows_partitions_on_a_cluster():
    import dask.dataframe as dd
    from distributed import Client

    from vanotebook.sky import catalogue_pair

    left, right = catalogue_pair(6000, radius=0.3, seed=8).to_tables()
    seen = []
    with Client(processes=False, n_workers=1, threads_per_worker=2,
                dashboard_address=":0") as client:
        dash = XmatchDashboard(dd.from_pandas(left.to_pandas(), npartitions=2),
                               dd.from_pandas(right.to_pandas(), npartitions=2), client=client)
        dash.param.watch(lambda e: seen.append((e.new, dash.progress_total)), "progress_done")
        import dask

        with dask.config.set({"vanotebook.partition-rows": 800}):
            dash.start().result(timeout=180)
    assert dash.result is not None, dash.status
    total = dash.result.meta["partitions"]
    assert total > 3 and dash.progress_total == total and dash.progress_done == total
    done = [d for d, _ in seen]
    assert done == list(range(1, total + 1))  # one step per partition, in order
    ref = crossmatch(left, right, radius=1 * u.arcsec)
    assert dash.n_pairs == len(ref)



def test_an_in_memory_match_runs_on_the_cluster_and_cancel_frees_it():
    """#13 item 2, "work runs on the cluster, never in the server process": with a
    cluster, in-memory tables are matched there (one task, on a worker process, not this
    one), with `crossmatch`'s pairs; Cancel takes a waiting match off the cluster (bar
    another user's task, which holds the worker's one thread). Mutation: matching
    in-memory tables here (`Run(None)`, `_work` calling `crossmatch` directly)."""
    import os
    import time

    from dask.utils import key_split
    from distributed import Client, Event, LocalCluster, get_task_stream

    from vanotebook.sky import catalogue_pair

    left, right = catalogue_pair(3000, radius=0.3, seed=8).to_tables()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        dash = XmatchDashboard(left, right, client=client)
        with get_task_stream(client) as stream:
            dash.start().result(timeout=180)
        assert dash.result is not None, dash.status
        assert dash.n_pairs == len(crossmatch(left, right, radius=1 * u.arcsec)) > 500
        ran = [t["worker"] for t in stream.data if key_split(t["key"]) == "crossmatch"]
        pids = client.run(os.getpid)
        assert len(ran) == 1 and pids[ran[0]] != os.getpid(), (ran, pids)
        # another user's task holds the worker's thread: the match waits on the cluster
        release = Event("release", client=client)
        other = client.submit(release.wait, 120, pure=False)

        def keys() -> set[str]:
            return set(client.run_on_scheduler(
                lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks]))

        held = {str(other.key)}
        end = time.monotonic() + 60
        while time.monotonic() < end and not client.processing()[ran[0]]:
            time.sleep(0.05)
        before = dash.result
        future = dash.start()
        end = time.monotonic() + 60
        while time.monotonic() < end and not any(
                key_split(k) == "crossmatch" for k in keys() - held):
            time.sleep(0.05)
        assert any(key_split(k) == "crossmatch" for k in keys() - held), dash.status
        dash.cancel()
        assert dash.status == "Cancelled" and not dash.running
        end = time.monotonic() + 10
        while time.monotonic() < end and keys() - held:
            time.sleep(0.05)
        assert keys() == held, keys()  # the match and its tables left; the other stays
        assert not other.done()
        release.set()
        assert future.result(timeout=60) is None  # the match itself was cancelled
        assert dash.result is before and dash.status == "Cancelled"


def test_selecting_table_rows_highlights_them_on_the_sky():
    dash = XmatchDashboard(demo_rows=2000, radius_arcsec=1.5)
    dash.__panel__()  # builds the sky figure and the table
    dash.start().result(timeout=120)
    assert len(dash.table.value) == dash.n_pairs
    dash.table.selection = [0, 5, 7]  # what clicking rows in the Tabulator does
    assert dash.selection == [0, 5, 7]
    hl = dash._sources["highlight"].data
    rows = dash.result[[0, 5, 7]]
    np.testing.assert_allclose(np.sort(hl["ra"]), np.sort(np.concatenate(
        [rows["ra_left"], rows["ra_right"]])))
    np.testing.assert_allclose(np.sort(hl["dec"]), np.sort(np.concatenate(
        [rows["dec_left"], rows["dec_right"]])))
    m = dash._sources["matched"].data
    assert len(m["ra"]) == dash.n_pairs
    dash.table.selection = []
    assert len(dash._sources["highlight"].data["ra"]) == 0


def test_uploads_of_common_files_with_their_coordinate_columns(tmp_path):
    """CSV with VizieR's RAJ2000/DEJ2000 (sexagesimal), SExtractor's ALPHA_J2000 in VOTable:
    the columns are found, the match equals crossmatch on the renamed tables, and the sky
    plot draws matched sources as matched (#13 items 5 and 8)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    from vanotebook import crossmatch
    from vanotebook.sky import catalogue_pair

    left, right = catalogue_pair(3000, radius=0.2).to_tables()
    c = SkyCoord(left["ra"], left["dec"], unit="deg")
    vizier = Table({"Seq": np.arange(len(left)),
                    "RAJ2000": c.ra.to_string(u.hourangle, sep=":", precision=4),
                    "DEJ2000": c.dec.to_string(sep=":", precision=3, alwayssign=True)})
    sex = Table({"NUMBER": np.arange(len(right)), "ALPHA_J2000": right["ra"],
                 "DELTA_J2000": right["dec"]})
    vizier.write(tmp_path / "left.csv", format="ascii.csv")
    sex.write(tmp_path / "right.vot", format="votable")
    dash = XmatchDashboard(radius_arcsec=1.0)
    dash.upload(left=(tmp_path / "left.csv").read_bytes(), left_filename="left.csv",
                right=(tmp_path / "right.vot").read_bytes(), right_filename="right.vot")
    assert (dash.left_ra, dash.left_dec) == ("RAJ2000", "DEJ2000")
    assert (dash.right_ra, dash.right_dec) == ("ALPHA_J2000", "DELTA_J2000")
    assert "Seq" in dash.param.left_ra.objects  # any column can be picked
    dash.run(dash)
    dash.future.result(timeout=300)
    want = crossmatch(Table({"ra": c.ra.deg, "dec": c.dec.deg}),
                      Table({"ra": right["ra"], "dec": right["dec"]}), radius=1 * u.arcsec)
    assert dash.n_pairs == len(want) > 1000
    d = dash.sky_data()
    assert d["matched"].sum() == len(np.unique(np.asarray(dash.result["Seq_left"])))
    # a picked column that is not a position is refused by name
    dash.left_ra = "Seq"
    dash.run(dash)
    dash.future.result(timeout=300)
    assert dash.status.startswith("error: ")


def test_bad_uploads_are_named_and_nothing_is_replaced(tmp_path):
    dash = XmatchDashboard()
    for data, name, expect in ((b"", "empty.csv", "left: expected a catalogue file with rows"),
                               (b"hello", "notes.txt", "left: expected a FITS, VOTable, ECSV, CSV"),
                               (b"not fits at all", "cat.fits", "left: expected a readable")):
        dash.left_file.filename = name
        dash.left_file.value = data
        assert dash.status.startswith(f"error reading left upload {name}: {expect}"), \
            dash.status
        assert "/tmp" not in dash.status and "vanotebook-upload" not in dash.status
    assert dash.sources == "demo pair" and dash._left is None  # nothing replaced


def test_an_empty_file_from_the_browser_is_named():
    """Bokeh's FileInput sends an empty file as '' and Panel makes it None: the value
    does not change, only the filename. Found in Chromium through the hub (no message);
    now the dashboard says the file is empty. Mutation: watching the value alone."""
    dash = XmatchDashboard()
    dash.left_file.param.update(value=None, filename="empty.csv")
    assert dash.status.startswith("error reading left upload empty.csv: left: expected a "
                                  "catalogue file with rows"), dash.status
    assert dash.sources == "demo pair" and dash._left is None


def test_an_absurd_match_is_refused_with_what_to_change():
    """#13 item 2: a 3600" match of 20,000 rows ran 14 minutes; now refused before any work."""
    from vanotebook.dashboards._xmatch import MAX_PAIRS

    dash = XmatchDashboard(demo_rows=20_000, radius_arcsec=3600.0, how="all")
    assert dash.start() is None and not dash.running and dash.result is None
    assert dash.status.startswith('refused: a 3600" match of 20,000 x')
    assert f"the limit here is {MAX_PAIRS:.0e}" in dash.status and "Jobs tab" in dash.status
    radius = float(dash.status.split("use a radius under ")[1].split('"')[0])
    dash.radius_arcsec = radius * 0.9  # what it says to do works
    future = dash.start()
    assert future is not None
    future.result(timeout=600)
    assert dash.result is not None and dash.n_pairs < MAX_PAIRS
