"""to_hips of frames in units the FITS standard lacks (DN, electron/s) or non-flux ones (K)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from vanotebook.mosaic import to_hips
from vanotebook.mosaic._hips import read_properties
from vanotebook.units import parse_unit


@pytest.mark.parametrize("bunit", ["DN", "DN/s", "electron/s", "ELECTRONS/S", "K", "adu"])
def test_units_go_through_and_read_back(tmp_path, bunit):
    """The HiPS is made, and its tiles' BUNIT and ``vanotebook_unit`` read back as the
    input's unit (``to_string('fits')`` raised for DN and electron/s)."""
    rng = np.random.default_rng(0)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [32.5, 32.5]
    w.wcs.cdelt = [-2 / 3600, 2 / 3600]
    header = w.to_header()
    header["BUNIT"] = bunit
    path = tmp_path / "frame.fits"
    fits.PrimaryHDU(rng.normal(100, 5, (64, 64)).astype(np.float32), header).writeto(path)
    h = to_hips(path, tmp_path / "h", tile_width=64, formats=("fits",))
    unit = parse_unit(bunit)
    assert parse_unit(read_properties(h.path)["vanotebook_unit"]) == unit
    tile = next((h.path / f"Norder{h.order}").glob("Dir*/Npix*.fits"))
    assert parse_unit(fits.getheader(tile)["BUNIT"]) == unit
