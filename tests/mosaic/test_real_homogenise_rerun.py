"""`vanotebook rerun` remakes a homogenised set, a folder of cutouts and a HiPS from their
records, to the same bytes, in a fresh process."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from vanotebook import VanotebookInputError
from vanotebook.mosaic import cutouts, homogenise, to_hips
from vanotebook.provenance import rerun

SURVEYS = ("radio", "ir24")


@pytest.fixture(scope="module")
def files(sky, tmp_path_factory):
    """Two tiles of two surveys, as FITS files on disk."""
    folder = tmp_path_factory.mktemp("tiles")
    out = {}
    for k in SURVEYS:
        out[k] = []
        for i, tile in enumerate(sky.images(k)[:2]):
            path = folder / f"{k}_{i}.fits"
            tile.writeto(path)
            out[k].append(str(path))
    return out


def _cli_rerun(record: Path, new: Path) -> None:
    """``vanotebook rerun RECORD NEW`` in a fresh Python process."""
    run = subprocess.run([sys.executable, "-m", "vanotebook.cli", "rerun", str(record),
                          str(new)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "same sha256 as recorded" in run.stdout


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_homogenised_set_reruns_to_the_same_bytes(files, tmp_path):
    first = tmp_path / "set.fits"
    out = homogenise(files, pixel_scale=6 * u.arcsec, unit="Jy/beam", output=first)
    record = Path(f"{first}.prov.json")
    assert record.exists()
    with fits.open(first) as hdul:
        assert [h.name.upper() for h in hdul] == ["PRIMARY", "RADIO", "IR24", "PROVENANCE"]
        np.testing.assert_array_equal(hdul["radio"].data, out["radio"].values)
    again = tmp_path / "again.fits"
    _cli_rerun(record, again)
    assert _sha(again) == _sha(first)


def test_cutouts_rerun_to_the_same_bytes(sky, files, tmp_path):
    h = fits.getheader(files["radio"][0])
    c = WCS(h).celestial.pixel_to_world(h["NAXIS1"] / 2, h["NAXIS2"] / 2).icrs
    table = Table({"ra": [c.ra.deg, c.ra.deg + 0.003, 10.0], "dec": [c.dec.deg] * 2 + [10.0]})
    first = tmp_path / "stamps"
    got = cutouts(files, table, 1 * u.arcmin, pixel_scale=4 * u.arcsec, unit="Jy/pix",
                  output=first)
    assert got[2] is None
    names = sorted(p.name for p in first.iterdir())
    assert names == ["cutout_0.fits", "cutout_1.fits", "provenance.json"]
    with fits.open(first / "cutout_1.fits") as hdul:
        np.testing.assert_array_equal(hdul["ir24"].data, got[1]["ir24"].values)
    again = tmp_path / "again"
    _cli_rerun(first / "provenance.json", again)
    for name in ("cutout_0.fits", "cutout_1.fits"):
        assert _sha(again / name) == _sha(first / name)
    assert not (again / "cutout_2.fits").exists()


def test_hips_reruns_to_the_same_bytes(files, tmp_path):
    """Every tile, Allsky and the MOC are the same bytes; properties too, but for the
    release and creation dates the HiPS standard asks for."""
    first = to_hips(files["radio"][0], tmp_path / "hips", tile_width=64)
    again = tmp_path / "again"
    _cli_rerun(first.path / "provenance.json", again)
    mine = {p.relative_to(first.path) for p in first.path.rglob("*") if p.is_file()}
    theirs = {p.relative_to(again) for p in again.rglob("*") if p.is_file()}
    assert mine == theirs and len(mine) > 10
    for rel in mine - {Path("properties"), Path("provenance.json")}:
        assert _sha(first.path / rel) == _sha(again / rel), rel

    def undated(path):
        return [line for line in path.read_text().splitlines()
                if not line.startswith(("hips_release_date", "hips_creation_date"))]

    assert undated(first.path / "properties") == undated(again / "properties")
    old = json.loads((first.path / "provenance.json").read_text())["vanotebook"]
    new = json.loads((again / "provenance.json").read_text())["vanotebook"]
    assert old["parameters"] == new["parameters"] and old["inputs"] == new["inputs"]


def test_products_of_data_in_memory_are_refused(sky, tmp_path):
    """A product made from arrays in memory has no files to remake it from: named error."""
    out = homogenise({k: sky.images(k)[:1] for k in SURVEYS}, pixel_scale=8 * u.arcsec,
                     output=tmp_path / "set.fits")
    with pytest.raises(VanotebookInputError) as err:
        rerun(Path(f"{tmp_path / 'set.fits'}.prov.json"), tmp_path / "again.fits")
    assert err.value.argument == "record" and not (tmp_path / "again.fits").exists()
    assert out.attrs["provenance"]["vanotebook"]["parameters"]["images"] is None
