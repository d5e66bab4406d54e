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
    sides = 6 if som.topology == "hexagonal" else 4
    # polygons are hexagons / squares centred on the grid positions (row 0 on top)
    xy = som.grid_coordinates()
    np.testing.assert_allclose([np.mean(x) for x in u["xs"]], xy[:, 0], atol=1e-9)
    np.testing.assert_allclose([np.mean(y) for y in u["ys"]], -xy[:, 1], atol=1e-9)
    assert all(len(x) == sides for x in u["xs"])


def _rgb(colour):
    return np.array([int(colour.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4)])


@pytest.mark.parametrize("height", [3.0, 1.5])
def test_isometric_view_shows_hits_labels_and_grid(labelled, height):
    """Each unit is a prism standing on its grid cell: its top at ``height * hits / max``
    (isometric: x to the right-down axis, y to the left-down one, z up), the top in the
    unit's label colour (as in the label map), the side faces darker and reaching from 0
    to the top."""
    som, _ = labelled
    hits = som.labels.hits.ravel().astype(float)
    assert hits.max() > 2 * hits[hits > 0].min()  # heights that differ
    expected_z = height * hits / hits.max()
    cell = _source(umatrix_figure(som))  # the flat cell outlines, checked above
    label_colour = dict(zip(range(som.n_units), _source(label_figure(som))["color"],
                            strict=True))
    iso = _source(isometric_figure(som, height=height))
    cos, sin = np.cos(np.radians(30)), np.sin(np.radians(30))
    units = np.asarray(iso["unit"])
    assert sorted(set(units)) == list(range(som.n_units))
    sides = len(cell["xs"][0])
    for unit in range(som.n_units):
        faces = np.flatnonzero(units == unit)
        assert faces.size == sides + 1
        bx, by = np.asarray(cell["xs"][unit]), np.asarray(cell["ys"][unit])
        tops = [f for f in faces if iso["color"][f] == label_colour[unit]]
        assert len(tops) == 1, unit
        top = tops[0]
        sx, sy = np.asarray(iso["xs"][top]), np.asarray(iso["ys"][top])
        np.testing.assert_allclose(sx, (bx + by) * cos, atol=1e-9)  # over its own cell
        np.testing.assert_allclose(sy - (bx - by) * sin, expected_z[unit], atol=1e-9)
        assert iso["hits"][top] == hits[unit]
        assert iso["label"][top] == som.labels.labels.ravel()[unit]
        for f in faces[faces != top]:
            assert (_rgb(iso["color"][f]) <= _rgb(label_colour[unit])).all()
            assert iso["color"][f] != label_colour[unit]
            # each side vertex is a corner of the cell at z = 0 (bottom) or at the top
            z_levels = np.array([0.0, expected_z[unit]])
            px = np.add.outer(bx + by, 0 * z_levels) * cos
            py = np.add.outer((bx - by) * sin, z_levels)
            z = []
            for vx, vy in zip(iso["xs"][f], iso["ys"][f], strict=True):
                d = np.hypot(px - vx, py - vy)
                corner, level = np.unravel_index(np.argmin(d), d.shape)
                assert d[corner, level] < 1e-9
                z.append(z_levels[level])
            assert sorted(z) == [0, 0, expected_z[unit], expected_z[unit]]


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
