"""The Jobs tab: a form from the registry, submit, phases and results, against the service."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def svc(tmp_path_factory, uws):
    service = uws.Service(tmp_path_factory.mktemp("dash") / "state", slots=2,
                          env={"DASK_SCHEDULER_ADDRESS": ""}).start()
    yield service
    service.stop()


@pytest.fixture
def dash(svc):
    from vanotebook.dashboards import JobsDashboard
    from vanotebook.jobs import JobClient

    return JobsDashboard(JobClient(svc.url, token="tok-alice"))


def test_every_pipelines_form_is_its_declaration(dash):
    import panel as pn

    from vanotebook.jobs import PIPELINES

    for name, spec in PIPELINES.items():
        dash.pipeline = name
        assert list(dash.widgets) == list(spec.params), name
        for key, p in spec.params.items():
            w = dash.widgets[key]
            if p.is_file:
                assert isinstance(w, pn.Column) and w.objects[0].multiple == (p.kind == "files")
            elif p.choices:
                assert list(w.options) == list(p.choices)
            if p.unit:
                label = w.objects[0].label if isinstance(w, pn.Column) else w.label
                assert f"[{p.unit}]" in label
    pn.panel(dash).get_root()  # it renders


def test_submit_follow_and_download(dash, svc, tmp_path):
    from vanotebook.sky import demo_sky

    tile = tmp_path / "radio.fits"
    demo_sky(0, size=0.3, n_catalogue=100, n_spectra=10).observe("radio").tiles[0].writeto(tile)
    dash.pipeline = "detect"
    dash.set_value("image", tile.read_bytes(), filename="radio.fits")
    dash.set_value("seed_threshold", "6")
    job = dash.submit_job()
    assert job is not None, dash.status
    for _ in range(300):
        dash.refresh()
        if dash.table.value["phase"].iloc[0] in ("COMPLETED", "ERROR"):
            break
        time.sleep(0.2)
    assert list(dash.table.value["phase"]) == ["COMPLETED"], dash.table.value
    assert "sources" in dash.table.value["progress"].iloc[0]
    downloads = [w for w in dash.results.objects if hasattr(w, "callback")]
    assert {w.label for w in downloads} >= {"download catalogue", "download regions"}
    data = next(w for w in downloads if w.label == "download catalogue").callback().read()
    assert data.startswith(b"<?xml")


def test_bad_values_are_named_and_make_no_job(dash):
    dash.pipeline = "sleep"
    before = len(dash.client.jobs())
    dash.set_value("seconds", "soon")
    assert dash.submit_job() is None
    assert dash.message.alert_type == "danger"
    assert dash.status.startswith("seconds: expected a number")
    dash.pipeline = "mosaic"
    dash.set_value("images", "archive:nowhere")
    assert dash.submit_job() is None and dash.status.startswith("images: expected")
    assert len(dash.client.jobs()) == before


def test_abort_and_delete_from_the_tab(dash):
    dash.pipeline = "sleep"
    dash.set_value("seconds", "60")
    job = dash.submit_job()
    dash.abort_job()
    assert job.wait(progress=False, raise_on_error=False) == "ABORTED"
    dash.delete_job()
    assert job.id not in [j.id for j in dash.client.jobs()]
    assert dash.selected == ""
