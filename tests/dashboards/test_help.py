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
