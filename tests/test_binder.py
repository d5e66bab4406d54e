"""binder/ builds the same environment as pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_binder_requirements_match_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [line.strip() for line in (ROOT / "binder" / "requirements.txt").read_text()
             .splitlines() if line.strip() and not line.startswith("#")]
    assert sorted(lines) == sorted(deps)


def test_binder_python_and_postbuild():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    assert runtime.startswith("python-3.")
    minor = int(runtime.split(".")[1])
    assert requires == ">=3.11" and minor >= 11
    post = ROOT / "binder" / "postBuild"
    assert post.stat().st_mode & 0o111
    assert "pip install --no-deps -e ." in post.read_text()
