"""The personal and shared archives a user gets without configuring anything."""

from __future__ import annotations

import json

import astropy.units as u
import pytest
from astropy.table import Table

from vanotebook._errors import VanotebookInputError
from vanotebook.archive import Archive, personal_archive, shared_archive
from vanotebook.archive._defaults import PERSONAL_ENV, SHARED_ENV
from vanotebook.sky import demo_archive
from vanotebook.sky._demo import SKY_VERSION


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(PERSONAL_ENV, raising=False)
    monkeypatch.delenv(SHARED_ENV, raising=False)
    return tmp_path / "home"


def test_personal_archive_defaults_to_the_home(home):
    arc = personal_archive()
    assert arc.path == (home / ".vanotebook" / "archive").resolve()
    assert len(arc.images()) == 0


def test_personal_archive_follows_the_environment(home, monkeypatch):
    monkeypatch.setenv(PERSONAL_ENV, "~/archive")
    arc = personal_archive()
    assert arc.path == (home / "archive").resolve()
    arc.add_catalogue("mine", Table({"ra": [10.0, 10.01], "dec": [-5.0, 60.0]}))
    # a second opening sees what the first wrote
    found = personal_archive().catalogue("mine").cone(10.0, -5.0, 1 * u.arcmin)
    assert len(found) == 1


def test_shared_archive_from_the_environment(home, tmp_path, monkeypatch):
    folder = tmp_path / "shared"
    Archive(folder).add_catalogue("published", Table({"ra": [1.0], "dec": [2.0]}))
    monkeypatch.setenv(SHARED_ENV, str(folder))
    assert "published" in list(shared_archive().catalogues()["name"])


def test_shared_archive_is_never_created_where_configured(home, tmp_path, monkeypatch):
    monkeypatch.setenv(SHARED_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(VanotebookInputError, match="path: expected an existing archive"):
        shared_archive()
    assert not (tmp_path / "nowhere").exists()


def test_shared_archive_never_writes_the_demo_sky(home):
    with pytest.raises(VanotebookInputError, match=r"^VANOTEBOOK_SHARED_ARCHIVE: expected a "
                                                   r"shared archive, or the demo sky's"):
        shared_archive()
    assert not (home / ".cache" / "vanotebook" / "demo").exists()


@pytest.mark.slow
def test_demo_archive_is_the_demo_sky_built_once(home):
    messages: list[str] = []
    arc = demo_archive(progress=messages.append)
    assert arc.path == (home / ".cache" / "vanotebook" / "demo" / "archive").resolve()
    assert "archive" in messages
    surveys = {str(s) for s in arc.images(cubes=False)["survey"]}
    assert len(surveys) == 3
    cubes = arc.images(cubes=True)
    assert sorted(cubes["survey"]) == ["co-cube", "hi-cube"]
    assert sorted(cubes["spectral_ctype"]) == ["FREQ", "VRAD"]
    assert set(arc.catalogues()["name"]) == {"left", "right"}
    # the second call opens the same archive without writing the sky again
    messages.clear()
    assert demo_archive(progress=messages.append).path == arc.path
    assert messages == []
    assert shared_archive().path == arc.path
    # demo data written by an older sky model are written again
    manifest = home / ".cache" / "vanotebook" / "demo" / "manifest.json"
    old = json.loads(manifest.read_text())
    old["sky_version"] = 1
    manifest.write_text(json.dumps(old))
    demo_archive(progress=messages.append)
    assert "archive" in messages
    assert json.loads(manifest.read_text())["sky_version"] == SKY_VERSION
