"""A mosaic written to FITS reruns from its own record, in a fresh process
(``vanotebook rerun product.fits new.fits``), to the same bytes; one made from images in
memory, or from changed files, is refused by name."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from vanotebook import VanotebookInputError
from vanotebook.mosaic import mosaic
from vanotebook.provenance import Provenance, rerun


def _write_tiles(folder):
    folder.mkdir()
    for i in range(3):
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [150.0, 2.0], [40.5 - 60 * i, 40.5], \
            [-1e-3, 1e-3]
        h = w.to_header()
        h["BUNIT"] = "DN"
        data = np.random.default_rng(i).normal(5.0 + i, 1.0, (80, 80)).astype(np.float32)
        fits.PrimaryHDU(data, h).writeto(folder / f"t{i}.fits")
    return sorted(folder.iterdir())


@pytest.mark.parametrize("kwargs", [
    {}, {"method": "flux-conserving", "combine": "sum", "weights": [1.0, 2.0, 0.5]},
    {"match_background": "plane", "combine": "median", "frame": "galactic"}])
def test_rerun_in_a_fresh_process_same_bytes(tmp_path, kwargs):
    _write_tiles(tmp_path / "tiles")
    product = tmp_path / "m.fits"
    mosaic(tmp_path / "tiles", output=product, **kwargs)
    again = tmp_path / "again.fits"
    run = subprocess.run([sys.executable, "-m", "vanotebook.cli", "rerun", str(product),
                          str(again)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert again.read_bytes() == product.read_bytes()


def test_rerun_refuses_in_memory_inputs(tmp_path):
    paths = _write_tiles(tmp_path / "tiles")
    with fits.open(paths[0]) as hdul:
        hdu = fits.PrimaryHDU(hdul[0].data.copy(), hdul[0].header.copy())
    ds = mosaic([hdu, str(paths[1])], output=tmp_path / "m.fits")
    with pytest.raises(VanotebookInputError, match=r"record.*in memory"):
        rerun(Provenance.from_dict(ds.attrs["provenance"]), tmp_path / "again.fits")


def test_rerun_refuses_changed_inputs(tmp_path):
    paths = _write_tiles(tmp_path / "tiles")
    mosaic([str(p) for p in paths], output=tmp_path / "m.fits")
    with fits.open(paths[1], mode="update") as hdul:
        hdul[0].data[0, 0] += 1
    with pytest.raises((VanotebookInputError, RuntimeError), match="changed"):
        rerun(tmp_path / "m.fits", tmp_path / "again.fits")


def test_cube_rerun_same_bytes(tmp_path):
    import astropy.units as u

    from vanotebook.mosaic import mosaic_cube, to_fits

    folder = tmp_path / "cubes"
    folder.mkdir()
    for i in range(2):
        w = WCS(naxis=3)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN", "VRAD"]
        w.wcs.cunit = ["deg", "deg", "km/s"]
        w.wcs.crval = [150.0, 2.0, -10.0]
        w.wcs.crpix = [30.5 - 40 * i, 30.5, 1.0]
        w.wcs.cdelt = [-1e-3, 1e-3, 2.0]
        data = np.random.default_rng(i).normal(size=(12, 60, 60)).astype(np.float32)
        h = w.to_header()
        h["BUNIT"] = "K"
        fits.PrimaryHDU(data, h).writeto(folder / f"c{i}.fits")
    ds = mosaic_cube(folder, velocity=(-5 * u.km / u.s, 5 * u.km / u.s))
    to_fits(ds, tmp_path / "cube.fits")
    run = subprocess.run([sys.executable, "-m", "vanotebook.cli", "rerun",
                          str(tmp_path / "cube.fits"), str(tmp_path / "again.fits")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "again.fits").read_bytes() == (tmp_path / "cube.fits").read_bytes()
