"""A detection product reruns from its record to the same bytes, in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from vanotebook import VanotebookInputError
from vanotebook.detect import detect
from vanotebook.detect._synth import injected_image
from vanotebook.provenance import rerun


def _image_file(tmp_path):
    img, _ = injected_image((160, 160), 25, seed=4, min_separation=8.0)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [80.5, 80.5]
    w.wcs.cdelt = [-1 / 3600, 1 / 3600]
    header = w.to_header()
    header["BUNIT"] = "Jy/beam"
    header["BMAJ"] = header["BMIN"] = 3 / 3600
    header["BPA"] = 0.0
    path = tmp_path / "image.fits"
    fits.PrimaryHDU(img, header).writeto(path)
    return path


def _cli_rerun(record, output):
    env = dict(os.environ, PYTHONHASHSEED="0")
    return subprocess.run([sys.executable, "-m", "vanotebook.cli", "rerun", str(record),
                           str(output)], capture_output=True, text=True, env=env, timeout=300)


def test_detection_reruns_to_the_same_bytes_in_a_fresh_process(tmp_path):
    path = _image_file(tmp_path)
    res = detect(path, box=48, seed_threshold=4.5, seed=3)
    paths = res.write(tmp_path / "first")
    record = paths["catalogue"].parent / "catalogue.ecsv.prov.json"
    run = _cli_rerun(record, tmp_path / "again")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "same sha256" in run.stdout
    for p in paths.values():
        assert (tmp_path / "again" / p.name).read_bytes() == p.read_bytes(), p.name
    # every product's sidecar holds the whole record
    run = _cli_rerun(f"{paths['residual']}.prov.json", tmp_path / "third")
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "third" / "residual.fits").read_bytes() == paths["residual"].read_bytes()


def test_in_memory_detections_are_refused(tmp_path):
    img, _ = injected_image((64, 64), 3, seed=1)
    paths = detect(img, psf_fwhm=3.0).write(tmp_path / "mem")
    with pytest.raises(VanotebookInputError, match="in memory"):
        rerun(paths["catalogue"].parent / "catalogue.ecsv.prov.json", tmp_path / "x")
    path = _image_file(tmp_path)
    paths = detect(path, rms=np.ones((160, 160))).write(tmp_path / "arr")
    with pytest.raises(VanotebookInputError, match="rms"):
        rerun(paths["catalogue"].parent / "catalogue.ecsv.prov.json", tmp_path / "y")
