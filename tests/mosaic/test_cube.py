"""mosaic_cube: spectral cubes merged channel by channel against reproject, and its errors."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from vanotebook import VanotebookInputError
from vanotebook.mosaic import mosaic_cube

V0, SIGMA_V = 12.0, 6.0  # line centre and width, km/s


def _cube(tile: fits.HDUList, *, crval3: float = -30.0, cdelt3: float = 2.5, n: int = 33,
          ctype3: str = "VRAD"):
    """A demo sky tile times a Gaussian line: (n, ny, nx), with a velocity axis."""
    header = tile[0].header.copy()
    v = crval3 + cdelt3 * np.arange(n)
    profile = np.exp(-0.5 * ((v - V0) / SIGMA_V) ** 2).astype(np.float32)
    data = tile[0].data[None, :, :] * profile[:, None, None]
    header["NAXIS"] = 3
    header["NAXIS3"] = n
    header["CTYPE3"], header["CUNIT3"] = ctype3, "km/s"
    header["CRVAL3"], header["CDELT3"], header["CRPIX3"] = crval3, cdelt3, 1.0
    header["SPECSYS"] = "LSRK"
    return fits.PrimaryHDU(data.astype(np.float32), header)


@pytest.fixture(scope="module")
def cubes(sky):
    return [_cube(t) for t in sky.images("radio")]


def test_cube_matches_reproject_channel_by_channel(sky, cubes):
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    ds = mosaic_cube(cubes, velocity=(-10 * u.km / u.s, 30 * u.km / u.s))
    v = ds["velocity"].values
    np.testing.assert_allclose(v, -10 + 2.5 * np.arange(17), atol=1e-6)  # channels in range
    header = fits.Header.fromstring(ds.attrs["header"])
    celestial = WCS(header).celestial
    noise = sky.images("radio")[0][0].header["NOISE"]
    assert WCS(header).has_spectral and header["NAXIS3"] == v.size
    for k in (0, 8, 16):  # channel by channel: ours == reproject of that plane
        planes = [(c.data[round((v[k] + 30) / 2.5)], WCS(c.header).celestial)
                  for c in cubes]
        ref, footprint = reproject_and_coadd(planes, celestial, shape_out=ds["mosaic"].shape[1:],
                                             reproject_function=reproject_interp)
        ours = ds["mosaic"].values[k]
        both = (footprint > 0) & np.isfinite(ours)
        assert both.sum() > 0.99 * (footprint > 0).sum()
        assert np.max(np.abs(ours - ref)[both]) < 0.01 * noise
    # the line profile survives: channel ratios follow the Gaussian
    peak = np.nanargmax(np.nanmax(ds["mosaic"].values, axis=(1, 2)))
    assert abs(v[peak] - V0) <= 2.5
    assert "provenance" in ds.attrs


def test_cube_spectral_axes_must_agree(sky, cubes):
    # the last cube's channels sit 1 km/s (0.4 channel) off the others'
    shifted = [*cubes[:-1], _cube(sky.images("radio")[-1], crval3=-29.0)]
    with pytest.raises(VanotebookInputError, match=rf"cubes\[{len(cubes) - 1}\]"):
        mosaic_cube(shifted, velocity=(-10 * u.km / u.s, 30 * u.km / u.s))


def test_cube_errors(cubes, sky):
    with pytest.raises(VanotebookInputError, match="velocity"):
        mosaic_cube(cubes, velocity=(500 * u.km / u.s, 600 * u.km / u.s))
    with pytest.raises(VanotebookInputError, match="velocity"):
        mosaic_cube(cubes, velocity=(1 * u.s, 2 * u.s))
    with pytest.raises(VanotebookInputError, match=r"cubes\[0\]"):
        mosaic_cube(sky.images("radio"), velocity=(-10 * u.km / u.s, 30 * u.km / u.s))
