"""Bokeh views build on both grids, one polygon per unit, with the right values."""

from __future__ import annotations

import numpy as np
import pytest

from vanotebook import VanotebookInputError
from vanotebook.sky import make_spectra
from vanotebook.som import (
    SOM,
    hits_figure,
    isometric_figure,
    label_figure,
    neuron_figure,
    scale_values,
    umatrix_figure,
)


@pytest.fixture(scope="module", params=["rectangular", "hexagonal"])
def labelled(request):
    s = make_spectra(1500, seed=2)
    som = SOM((5, 6), topology=request.param, n_epochs=6, radius0=3).fit(s.flux)
    som.label(s.flux, s.label)
    return som, s


def _source(fig):
    return fig.renderers[0].data_source.data


def test_map_views(labelled):
    som, s = labelled
    u = _source(umatrix_figure(som, clip=(5, 95), scale="sqrt"))
    assert len(u["xs"]) == 30
    np.testing.assert_allclose(u["value"], som.umatrix().ravel())
    h = _source(hits_figure(som))
    np.testing.assert_array_equal(h["value"], som.hits(s.flux).ravel())
    lab = _source(label_figure(som))
    assert list(lab["label"]) == list(som.labels.labels.ravel())
    iso = isometric_figure(som)
    sides = 6 if som.topology == "hexagonal" else 4
    assert len(_source(iso)["xs"]) == 30 * (sides + 1)
    # polygons are hexagons / squares centred on the grid positions
    xy = som.grid_coordinates()
    np.testing.assert_allclose([np.mean(x) for x in u["xs"]], xy[:, 0], atol=1e-9)
    assert len(u["xs"][0]) == sides


def test_neuron_view(labelled):
    som, s = labelled
    unit = int(np.argmax(som.hits(s.flux)))
    fig = neuron_figure(som, unit, s.flux, wavelength=s.wavelength, max_members=10)
    lines = [r.data_source.data for r in fig.renderers]
    assert len(lines[0]["xs"]) == 10  # members, capped
    np.testing.assert_allclose(lines[1]["y"], som.prototypes.reshape(30, -1)[unit])
    with pytest.raises(VanotebookInputError, match="unit"):
        neuron_figure(som, 30)


def test_scale_values():
    v = np.array([0.0, 1.0, 2.0, 3.0, 100.0, np.nan])
    lin = scale_values(v, clip=(0, 80), scale="linear")
    hi = np.percentile(v[:5], 80)
    np.testing.assert_allclose(lin[:4], v[:4] / hi)
    assert lin[4] == 1.0 and np.isnan(lin[5])
    np.testing.assert_allclose(scale_values(v, clip=(0, 80), scale="sqrt")[:5], np.sqrt(lin[:5]))
    log = scale_values(v, clip=(0, 80), scale="log")
    assert log[0] == 0 and log[4] == pytest.approx(1.0) and np.all(np.diff(log[:5]) >= 0)
    with pytest.raises(VanotebookInputError, match="scale"):
        scale_values(v, scale="cube")
    with pytest.raises(VanotebookInputError, match="clip"):
        scale_values(v, clip=(50, 10))
