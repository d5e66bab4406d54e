"""The dashboards' "choose inputs" panel: images and catalogues of an archive by region."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

from vanotebook.archive import Archive
from vanotebook.dashboards._archive import ArchivePicker
from vanotebook.sky import write_demo_data


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("picker") / "demo"
    write_demo_data(folder, size=0.5, n_catalogue=4000, n_spectra=200)
    return folder


def test_search_lists_what_the_archive_answers(demo):
    picker = ArchivePicker(demo / "archive", radius_arcmin=20)
    found = picker.search()
    cone = (281.6, -2.6, 20 * u.arcmin)
    direct = Archive(demo / "archive").images(cone, cubes=False)
    assert sorted(found["path"]) == sorted(direct["path"]) and len(found) == 12
    # the demo archive holds the line cubes too; the picker feeds 2-D services, so not them
    assert len(Archive(demo / "archive").images(cone, cubes=True)) == 2
    assert picker.n_images == 12 and len(picker.table.value) == 12
    # the choices come from the archive: three bands, three surveys, two catalogues
    assert len(picker.param.band.objects) == 4 and len(picker.param.survey.objects) == 4
    assert picker.param.catalogue.objects == [None, "left", "right"]
    # a band keeps only its images
    picker.band = "24um"
    assert {str(s) for s in picker.search()["band"]} == {"24um"}
    # far from the field, nothing
    picker.ra, picker.band = 100.0, "any"
    assert len(picker.search()) == 0 and len(picker.table.value) == 0
    assert "0 image(s)" in picker.status


def test_selection_feeds_the_mosaic_dashboard(demo):
    from vanotebook.dashboards import MosaicDashboard

    dash = MosaicDashboard(archive=demo / "archive", source="archive")
    dash.picker.survey = "any"
    dash.picker.search()
    radio = next(o for o in dash.picker.param.survey.objects if "RADIO" in o)
    dash.picker.survey = radio
    found = dash.picker.search()
    dash.picker.table.selection = [0, 2]
    assert dash.images() == [str(found["path"][0]), str(found["path"][2])]
    ds = dash.start().result()
    assert ds is not None, dash.status
    assert len(ds.attrs["footprints"]) == 2
    assert ds.attrs["unit"] == "Jy / beam"
    # nothing selected means every image found
    dash.picker.table.selection = []
    assert len(dash.images()) == len(found) == 4


def test_empty_region_is_reported_not_raised(demo):
    from vanotebook.dashboards import MosaicDashboard

    dash = MosaicDashboard(archive=demo / "archive", source="archive")
    dash.picker.dec = 60.0
    dash.picker.search()
    assert dash.start().result() is None
    assert dash.status.startswith("error: archive: expected images in the chosen region")


def test_catalogue_rows_feed_the_crossmatch_dashboard(demo):
    from vanotebook.dashboards import XmatchDashboard
    from vanotebook.xmatch import crossmatch

    dash = XmatchDashboard(archive=demo / "archive", radius_arcsec=2.0)
    dash.picker.radius_arcmin = 6.0
    dash.picker.search()
    dash.use_archive("left")
    dash.picker.catalogue = "right"
    dash.use_archive("right")
    assert dash.sources == "left: archive left, right: archive right"
    left, right = dash.catalogues()
    arc = Archive(demo / "archive")
    assert sorted(left["source_id"]) == sorted(
        arc.catalogue("left").cone(281.6, -2.6, 6 * u.arcmin)["source_id"])
    centre = np.deg2rad([281.6, -2.6])
    sep = np.rad2deg(np.arccos(
        np.sin(centre[1]) * np.sin(np.deg2rad(right["dec"])) + np.cos(centre[1])
        * np.cos(np.deg2rad(right["dec"])) * np.cos(np.deg2rad(right["ra"]) - centre[0])))
    assert (sep <= 0.1 + 1e-9).all() and len(right) > 0
    dash.start().result()
    expected = crossmatch(left, right, radius=2.0 * u.arcsec)
    assert dash.n_pairs == len(expected) > 0
    with pytest.raises(ValueError, match="side: expected one of"):
        dash.use_archive("middle")


def test_picked_image_feeds_the_detection_dashboard(demo, sky):
    from vanotebook.dashboards import DetectDashboard

    dash = DetectDashboard(archive=demo / "archive", sky=sky)
    dash.picker.band = "any"
    dash.picker.search()
    dash.picker.band = "24um"
    found = dash.picker.search()
    dash.picker.table.selection = [1]
    assert dash.use_archive_image()
    assert dash.image_name == Path(str(found["path"][1])).name
    result = dash.run(sync=True)
    assert result is not None and dash.n_sources > 0, dash.status
    # far from the field there is nothing to take, and the status says so
    dash.picker.ra = 10.0
    dash.picker.search()
    assert not dash.use_archive_image()
    assert "no archive image" in dash.status
