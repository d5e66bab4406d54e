"""Mosaics of images in FK4 (B1950) and FK5 at other equinoxes, against reproject.

The header is that of an old single-dish survey map: SIN projection, ``EQUINOX = 1950``
and no ``RADESYS`` (which the FITS standard reads as FK4), 440 x 300 pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.coordinates import FK4, FK5, SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from vanotebook.mosaic import mosaic

pytestmark = pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")


def _b1950_map(equinox: float = 1950.0, radesys: str | None = None):
    h = fits.Header()
    h["NAXIS"], h["NAXIS1"], h["NAXIS2"] = 2, 440, 300
    h["CTYPE1"], h["CTYPE2"] = "RA---SIN", "DEC--SIN"
    h["CRVAL1"], h["CRVAL2"] = 83.0, -5.0
    h["CRPIX1"], h["CRPIX2"] = 220.5, 150.5
    h["CDELT1"], h["CDELT2"] = -0.01, 0.01
    h["EQUINOX"] = equinox
    if radesys:
        h["RADESYS"] = radesys
    h["BUNIT"] = "Jy/beam"
    h["BMAJ"] = h["BMIN"] = 0.03
    h["BPA"] = 0.0
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:300, 0:440]
    data = rng.normal(size=(300, 440)) + 50 * np.exp(-((xx - 300) ** 2 + (yy - 80) ** 2) / 18.0)
    return data.astype(np.float32), h


def _compare(data, header, ds):
    from reproject import reproject_interp

    grid = WCS(fits.Header.fromstring(ds.attrs["header"]))
    ref, fp = reproject_interp((data, header), grid, shape_out=ds["mosaic"].shape)
    ours = ds["mosaic"].values
    both = (fp > 0) & np.isfinite(ours)
    return grid, ref, fp, ours, both


@pytest.mark.parametrize(("equinox", "radesys", "frame"), [
    (1950.0, None, "fk5"), (1950.0, "FK4", "icrs"), (1975.0, "FK5", "fk5"),
    (1950.0, None, "galactic")])
def test_other_equinox_onto_a_j2000_grid(equinox, radesys, frame):
    data, header = _b1950_map(equinox, radesys)
    ds = mosaic([(data, header)], frame=frame, match_background=False)
    grid, ref, fp, ours, both = _compare(data, header, ds)
    # the grid's centre is the input's centre transformed to the output frame (not the
    # B1950 numbers labelled J2000)
    centre = WCS(header).pixel_to_world(219.5, 149.5).transform_to(
        grid.pixel_to_world(0, 0).frame)
    cx, cy = grid.world_to_pixel(centre)
    ny, nx = ds["mosaic"].shape
    assert abs(cx - (nx - 1) / 2) < 3 and abs(cy - (ny - 1) / 2) < 3
    # every input pixel lands (a same-scale grid: as many output pixels as input ones)
    assert np.isfinite(ours).sum() > 0.98 * data.size
    assert both.sum() > 0.999 * (fp > 0).sum()
    assert np.max(np.abs(ours - ref)[both]) < 1e-3


def test_fk4_default_grid_is_fk4():
    data, header = _b1950_map()
    ds = mosaic([(data, header)], match_background=False)
    grid, ref, _fp, ours, both = _compare(data, header, ds)
    assert grid.wcs.radesys == "FK4" and grid.wcs.equinox == 1950.0
    assert np.isfinite(ours).sum() > 0.98 * data.size
    assert np.max(np.abs(ours - ref)[both]) < 1e-3


def test_fk4_and_fk5_tiles_together():
    """Half a B1950 map and half of it re-labelled in J2000 (the same sky) mosaic seamlessly."""
    data, header = _b1950_map()
    b1950 = WCS(header)
    j2000 = b1950.deepcopy()
    centre = SkyCoord(83.0, -5.0, unit="deg", frame=FK4(equinox="B1950")).transform_to(
        FK5(equinox="J2000"))
    j2000.wcs.crval = [centre.ra.deg, centre.dec.deg]
    j2000.wcs.radesys, j2000.wcs.equinox = "FK5", 2000.0
    j2000.wcs.set()
    from reproject import reproject_interp

    resampled, _ = reproject_interp((data, header), j2000, shape_out=data.shape)
    left = (data[:, :240], b1950[:, :240])
    right = (resampled[:, 200:].astype(np.float32), j2000[:, 200:])
    ds = mosaic([left, right], frame="fk5", match_background=False, combine="last")
    first = mosaic([left, right], frame="fk5", match_background=False, combine="first",
                   wcs=fits.Header.fromstring(ds.attrs["header"]))
    both = (ds["coverage"].values == 2)
    assert both.sum() > 30 * 250
    diff = (ds["mosaic"].values - first["mosaic"].values)[both]
    # noise rms 1: the overlap agrees up to the smoothing of one more interpolation
    # (B1950 taken as J2000 would put them 0.6 deg apart: rms 1.4, the source twice)
    assert np.sqrt(np.nanmean(diff**2)) < 0.3
    assert np.nanmax(np.abs(diff)) < 2.0
