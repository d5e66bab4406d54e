"""'Save to my archive' on a dashboard's result (issue 13, item 11)."""

from __future__ import annotations

import numpy as np
import panel as pn
import pytest

from vanotebook.archive import personal_archive
from vanotebook.dashboards import DetectDashboard, MosaicDashboard


def _save_button(layout) -> tuple[pn.widgets.Button, pn.pane.Str]:
    row = next(r for r in layout.select(pn.Row)
               if any(getattr(o, "label", "") == "Save to my archive" for o in r.objects))
    return row.objects[0], row.objects[1]


@pytest.fixture
def my_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("VANOTEBOOK_ARCHIVE", str(tmp_path / "mine"))
    return tmp_path / "mine"


def test_detections_are_saved_to_my_archive_under_a_new_name(sky, my_archive):
    """The catalogue goes into the user's own archive (rows and positions as detected);
    a second save makes a second catalogue, never replacing the first; the message
    names the catalogue, not a server path. Disabled before a result. Mutation: the
    name not made unique (the second save then fails) fails it."""
    dash = DetectDashboard(sky=sky)
    button, said = _save_button(dash._layout())
    assert button.disabled
    assert dash.run(sync=True).exception() is None
    assert not button.disabled
    button.clicks += 1
    assert said.object.startswith("saved catalogue 'detections_radio_tile_0'"), said.object
    assert str(my_archive) not in said.object
    button.clicks += 1
    assert "detections_radio_tile_0_2" in said.object, said.object
    arc = personal_archive()
    names = sorted(str(n) for n in arc.catalogues()["name"])
    assert names == ["detections_radio_tile_0", "detections_radio_tile_0_2"]
    got = arc.catalogue(names[0]).to_dask().compute()
    cat = dash.result.catalogue
    assert len(got) == len(cat)
    np.testing.assert_allclose(np.sort(np.asarray(got["ra"], float)),
                               np.sort(cat["ra"].to_value("deg")), rtol=0, atol=1e-9)


def test_mosaic_is_saved_to_my_archive(sky, my_archive):
    dash = MosaicDashboard(sky, source="radio")
    button, said = _save_button(dash._layout())
    assert button.disabled
    dash.start().result(timeout=300)
    assert dash.result is not None, dash.status
    button.clicks += 1
    ny, nx = dash.result["mosaic"].shape
    assert said.object == f"saved the {ny} x {nx} mosaic of radio in your archive"
    images = personal_archive().images()
    assert len(images) == 1
    button.clicks += 1  # the same image again: kept once
    assert "(already there)" in said.object and len(personal_archive().images()) == 1
