from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from vanotebook.cli import build_parser, main

SUBCOMMANDS = ["demo-data", "worker", "rerun", "gateway", "job", "info"]


def test_console_script_installed():
    assert shutil.which("vanotebook") is not None


@pytest.mark.parametrize("sub", [None, *SUBCOMMANDS])
def test_help_on_every_subcommand(sub):
    args = [sys.executable, "-m", "vanotebook.cli", *([sub] if sub else []), "--help"]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    assert "usage: vanotebook" in out
    if sub is None:
        for name in SUBCOMMANDS:
            assert name in out


def test_parser_lists_exactly_the_working_subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(SUBCOMMANDS)


def test_demo_data_summary_rerun_and_refusal(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo-data", str(out), "--small", "--spectra", "800",
                 "--catalogue-rows", "3000"]) == 0
    text = capsys.readouterr().out
    assert "radio" in text and "ir24" in text and "fir250" in text
    assert "3,000 rows each" in text
    assert "800 labelled" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["n_catalogue"] == 3000
    assert main(["rerun", str(out / "provenance.json"), str(tmp_path / "again")]) == 0
    assert "same sha256" in capsys.readouterr().out
    with pytest.raises(FileExistsError):
        main(["demo-data", str(out), "--small"])


def test_info(capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "numpy" in text
    assert "GPUs         0" in text
    assert "LocalCluster" in text


def test_bad_subcommand_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
