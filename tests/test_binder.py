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


def test_binder_environment_resolves_and_postbuild_runs(tmp_path):
    """Build what Binder builds: resolve requirements.txt from the index, run postBuild.

    The resolution is pip's own (``--dry-run --ignore-installed``: every pin must
    exist together on the package index, whatever this machine has installed);
    postBuild then runs in a fresh virtual environment on a copy of the
    repository, with its own HOME, and must leave an importable vanotebook and
    the demo sky.
    """
    import json
    import os
    import shutil
    import subprocess
    import sys

    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                    "--quiet", "--report", str(report), "-r",
                    str(ROOT / "binder" / "requirements.txt")], check=True, timeout=900,
                   capture_output=True)
    resolved = {item["metadata"]["name"].lower().replace("_", "-")
                for item in json.loads(report.read_text())["install"]}
    wanted = {line.split(">=")[0].split("[")[0].strip().lower().replace("_", "-")
              for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert wanted <= resolved, wanted - resolved
    repo = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=300)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
           "VIRTUAL_ENV": str(venv), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    subprocess.run(["bash", str(repo / "binder" / "postBuild")], cwd=repo, env=env,
                   check=True, timeout=900, capture_output=True)
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import vanotebook; print(vanotebook.__file__)"], env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(repo)), where
    assert (home / "demo" / "manifest.json").is_file()
