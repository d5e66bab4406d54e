"""SOMDashboard state: set params, trigger training, pick a unit, export (no browser)."""

from __future__ import annotations

import json

import numpy as np
import panel as pn
import pytest

from vanotebook.dashboards import SOMDashboard
from vanotebook.sky import make_spectra
from vanotebook.som import SOM


@pytest.fixture
def dash():
    return SOMDashboard(n_spectra=1200, rows=5, cols=6, n_epochs=4, radius0=3.0, seed=3)


def test_train_and_explore(dash):
    dash.train_map(blocking=True)
    assert not dash.running and dash.som is not None and dash.version == 1
    assert [h["epoch"] for h in dash.history] == [1, 2, 3, 4]
    # the dashboard's map is the public API's map for the same choices
    s = make_spectra(1200, seed=3)
    ref = SOM((5, 6), n_epochs=4, radius0=3.0, seed=3).fit(s.flux)
    np.testing.assert_allclose(dash.som.prototypes, ref.prototypes, rtol=1e-6)
    assert "purity" in dash.status
    assert set(dash.figures()) == {"U-matrix", "Hits", "Labels", "Labels + hits", "Neuron"}
    dash.unit = 7
    fig = dash.figures()["Neuron"]
    assert fig.title.text.startswith("Unit 7")
    members = fig.renderers[0].data_source.data["xs"] if len(fig.renderers) == 2 else []
    assert len(members) == min(50, int(dash.som.train_hits.ravel()[7]))
    # tapping a unit on a map selects it
    tabs = dash.maps()
    umatrix = tabs[0].object
    umatrix.renderers[0].data_source.selected.indices = [11]
    assert dash.unit == 11
    dash.scale = "log"
    assert "log" in dash.figures()["U-matrix"].title.text
    doc = json.loads(dash.export_json().getvalue())
    assert doc["dimensions"]["rows"] == 5 and len(doc["samples"]["bmu"]) == 1200
    assert isinstance(dash.__panel__(), pn.layout.Column)  # its help, then the dashboard


def test_background_training_and_table_source(tmp_path):
    s = make_spectra(800, seed=1)
    path = tmp_path / "spectra.ecsv"
    s.to_table().write(path)
    dash = SOMDashboard(source="table", table_path=str(path), columns="flux", rows=4, cols=4,
                        n_epochs=3)
    dash.train_map()
    dash._thread.join(60)
    assert dash.som is not None and len(dash.history) == 3
    assert dash.som.labels is not None and dash._wavelength is not None


def test_errors_go_to_status(tmp_path):
    dash = SOMDashboard(source="table", table_path=str(tmp_path / "nope.parquet"), n_epochs=2)
    dash.train_map(blocking=True)
    assert dash.status.startswith("Failed") and dash.som is None and not dash.running
    with pytest.raises(RuntimeError, match="train"):
        dash.export_json()


def test_convergence_curve_follows_the_epochs_whatever_their_order():
    """Epochs reported out of order (or twice) are drawn in epoch order, one point each:
    a line doubling back read as two curves (issue 13, item 10). Mutation: the history
    drawn in arrival order fails it."""
    dash = SOMDashboard()
    dash.history = [{"epoch": e, "qe": 1.0 / e, "te": 0.1 * e} for e in (1, 3, 2)] + [
        {"epoch": 3, "qe": 0.3, "te": 0.25}]
    qe, te = (r.data_source.data for r in dash._curves().renderers)
    assert list(qe["x"]) == [1, 2, 3] == list(te["x"])
    np.testing.assert_allclose(qe["y"], [1.0, 0.5, 0.3])
    np.testing.assert_allclose(te["y"], [0.1, 0.2, 0.25])


def test_the_gateway_trains_on_its_cluster(tmp_path):
    """The gateway's SOM tab gets the gateway's client, as the other tabs do: training
    then runs on the cluster (`SOMDashboard(client=...)`, tested in test_cancel), not in
    the app's process. Mutation: the tab built as ``SOMDashboard()`` fails it."""
    from vanotebook.hub.app import Workflow
    from vanotebook.sky import demo_sky

    client = object()  # only handed on: no tab talks to it while it is being built
    flow = Workflow(client, sky=demo_sky(0, size=0.5, n_catalogue=2000, n_spectra=500),
                    archive=tmp_path / "shared")
    assert flow.dashboards["SOM"]._client is client
    assert flow.dashboards["Cross-match"]._client is client
