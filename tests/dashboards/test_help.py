"""Every dashboard opens with two sentences: what it does and what to try first (#13)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import panel as pn

from vanotebook import dashboards
from vanotebook.dashboards._help import HELP
from vanotebook.hub import app


def test_every_dashboard_has_its_two_lines():
    assert set(HELP) == set(dashboards.__all__)
    for name, text in HELP.items():
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
        assert len(sentences) == 2, (name, sentences)
        assert "Try" in sentences[1], name  # the second says what to do first
        # each button it names is a real label, of that dashboard or of the app around it
        module = importlib.import_module(getattr(dashboards, name).__module__)
        source = Path(module.__file__).read_text() + Path(app.__file__).read_text()
        for label in re.findall(r"(?<!\*)\*([A-Z][^*]+)\*(?!\*)", text):  # *italics*
            assert f'"{label}"' in source, (name, label)


def test_the_layout_opens_with_it():
    from vanotebook.dashboards import CubeDashboard, XmatchDashboard

    for dash in (CubeDashboard(demo="co"), XmatchDashboard()):
        layout = dash.__panel__()
        assert isinstance(layout, pn.Column)
        first = layout[0]
        assert isinstance(first, pn.pane.Markdown) and first.object == HELP[type(dash).__name__]


def test_impossible_numbers_are_refused_with_a_message_not_reset_silently():
    """#13 item 7: -5 or 0 typed in a bounded box is refused, named, and the value kept."""
    from vanotebook.dashboards import XmatchDashboard
    from vanotebook.dashboards._help import number_input

    dash = XmatchDashboard()
    box = number_input(dash, "radius_arcsec")
    assert box.start is None and box.end is None  # the browser does not clamp it
    for typed in (-2.0, 0.0, 1e6):
        box.value = typed
        assert dash.radius_arcsec == 1.0 and box.value == 1.0
        assert dash.status.startswith("error: Radius arcsec (Match radius [arcsec]): expected "
                                      f"between 0.01 and 3600, got {typed}"), dash.status
    box.value = 2.5  # a good value goes through, and the parameter drives the box back
    assert dash.radius_arcsec == 2.5
    dash.radius_arcsec = 3.0
    assert box.value == 3.0
    rows = number_input(dash, "demo_rows")
    rows.value = 5
    assert dash.demo_rows == 20_000 and "expected between 100 and 5000000" in dash.status


def test_a_threshold_that_finds_noise_says_so(sky):
    from vanotebook.dashboards import DetectDashboard

    dash = DetectDashboard(sky=sky, survey="fir250", tile_index=1, seed_threshold=2.0,
                           merge_threshold=1.5)
    dash.run(sync=True)
    assert "warning: a seed threshold of 2 sigma takes noise peaks" in dash.status
    dash.seed_threshold = 5.0
    dash.merge_threshold = 2.6
    dash.run(sync=True)
    assert "warning" not in dash.status


def test_downloads_wait_for_a_result(sky):
    """#13 item 11: a download pressed before a run gave an empty file; now it is disabled."""
    from vanotebook.dashboards import DetectDashboard, SOMDashboard, XmatchDashboard

    xm = XmatchDashboard(demo_rows=2000)
    buttons = list(xm.__panel__().select(pn.widgets.FileDownload))
    assert buttons and all(b.disabled for b in buttons)
    xm.run(xm)
    xm.future.result(timeout=300)
    assert not any(b.disabled for b in buttons) and xm.result is not None
    det = DetectDashboard(sky=sky, survey="fir250", tile_index=1)
    buttons = list(det.__panel__().select(pn.widgets.FileDownload))
    assert len(buttons) == 2 and all(b.disabled for b in buttons)
    det.run(sync=True)
    assert not any(b.disabled for b in buttons)
    som = SOMDashboard()
    (export,) = som.__panel__().select(pn.widgets.FileDownload)
    assert export.disabled and som.som is None


def test_the_default_publish_name_is_the_users_own(monkeypatch):
    """#13 item 11: "Publish" used one default name for every user."""
    from vanotebook.hub.app import _own_name

    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    a = _own_name("detections")
    monkeypatch.setenv("JUPYTERHUB_USER", "bob.smith")
    b = _own_name("detections")
    assert (a, b) == ("detections_alice", "detections_bob_smith")
    from vanotebook.archive._archive import _NAME

    assert _NAME.match(a) and _NAME.match(b)


def test_one_styled_message_area_follows_the_status():
    """#13 item 9: plain unstyled status lines became one coloured, wrapped alert."""
    from vanotebook.dashboards import XmatchDashboard
    from vanotebook.dashboards._help import message_kind, status_pane

    assert message_kind("error: radius: expected ...") == "danger"
    assert message_kind('refused: a 3600" match ...') == "warning"
    assert message_kind("12 compact sources; warning: a seed threshold ...") == "warning"
    assert message_kind("matching... 3/12 partitions") == "info"
    assert message_kind("59 pairs (fitted completeness 0.93)") == "success"
    # found in Chromium through the hub: these were shown green
    assert message_kind("Upload of 'notes.fits' failed: not a FITS file") == "danger"
    assert message_kind("Failed: the map could not be trained") == "danger"
    assert message_kind("Archive image not used: no such image") == "warning"
    dash = XmatchDashboard()
    pane = status_pane(dash)
    assert isinstance(pane, pn.pane.Alert) and pane.sizing_mode == "stretch_width"
    dash.status = "error: left: expected a catalogue file with rows, got empty.csv: empty"
    assert pane.alert_type == "danger" and pane.object == dash.status
    alerts = list(dash.__panel__().select(pn.pane.Alert))
    assert [a.alert_type for a in alerts if a.object == dash.status] == ["danger"]
