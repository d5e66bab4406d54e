"""Shared fixtures: the demo sky (made once per session) and every accepted image form."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import NDData
from astropy.wcs import WCS

from vanotebook.sky import demo_sky


@pytest.fixture(scope="session")
def sky():
    """The default demo sky, seed 0 (observations are cached on it)."""
    return demo_sky(0, n_catalogue=5_000, n_spectra=2_000)


@pytest.fixture(scope="session")
def radio_tile(sky):
    return sky.images("radio")[0]


IMAGE_FORMS = ["path", "primary_hdu", "image_hdu", "hdulist", "array_wcs", "array_header",
               "nddata", "dataarray"]


@pytest.fixture(params=IMAGE_FORMS)
def image_form(request, radio_tile, tmp_path):
    """The radio tile 0 in each accepted form, with its expected data and header."""
    hdu = radio_tile[0]
    data, header = hdu.data, hdu.header
    form = request.param
    if form == "path":
        path = tmp_path / "tile.fits"
        radio_tile.writeto(path)
        value = str(path)
    elif form == "primary_hdu":
        value = fits.PrimaryHDU(data, header)
    elif form == "image_hdu":
        value = fits.ImageHDU(data, header)
    elif form == "hdulist":
        value = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header)])
    elif form == "array_wcs":
        value = (data, WCS(header))
    elif form == "array_header":
        value = (data, header)
    elif form == "nddata":
        value = NDData(data, wcs=WCS(header), unit="Jy/beam", meta={"header": header})
    else:
        import xarray as xr

        value = xr.DataArray(data, dims=("y", "x"), attrs={"header": header.tostring()})
    return form, value, np.asarray(data), header
