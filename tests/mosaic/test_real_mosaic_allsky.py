"""The optimal grid of all-sky and very wide maps: a sensible grid that holds every pixel,
values as reproject puts them there, and a named error for an absurd size.

The inputs are all-sky maps as surveys ship them (Planck/IRAS-like CAR, AIT and MOL,
ZEA, HEALPix's HPX), and a 200-degree-wide Galactic-plane strip.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from vanotebook import VanotebookInputError
from vanotebook.mosaic import mosaic

pytestmark = pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")

_SCALE = {"CAR": 1.0, "AIT": 2 * np.sqrt(2) / np.pi, "MOL": 2 * np.sqrt(2) / np.pi,
          "ZEA": 2 / np.pi, "HPX": 1.0}


def _allsky(proj: str, scale: float = 2.0, lon0: float = 0.0):
    w = WCS(naxis=2)
    w.wcs.ctype = [f"GLON-{proj}", f"GLAT-{proj}"]
    nx, ny = int(360 / scale), int(180 / scale)
    if proj == "HPX":
        ny = nx
    w.wcs.crval = [lon0, 0.0]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    w.wcs.cdelt = [-scale * _SCALE[proj], scale * _SCALE[proj]]
    w.wcs.set()
    yy, xx = np.mgrid[0:ny, 0:nx]
    lon, lat = w.wcs_pix2world(xx, yy, 0)
    data = (np.cos(np.radians(lat)) * np.sin(np.radians(2 * lon)) + 0.01 * yy).astype(np.float32)
    data[~np.isfinite(lon)] = np.nan
    return data, w


def _strip():
    """|l| < 100 deg, |b| < 5 deg at 0.25 deg (800 x 40), in CAR."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["GLON-CAR", "GLAT-CAR"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [0, 0], [400.5, 20.5], [-0.25, 0.25]
    w.wcs.set()
    yy, xx = np.mgrid[0:40, 0:800]
    return (np.sin(xx / 30.0) + yy / 40.0).astype(np.float32), w


def _lands_inside(data, w, ds):
    """Every on-sky input pixel centre falls inside the output grid."""
    grid = WCS(fits.Header.fromstring(ds.attrs["header"]))
    ny, nx = data.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    lon, lat = w.wcs_pix2world(xx, yy, 0)
    ok = np.isfinite(lon) & np.isfinite(data)
    gx, gy = grid.wcs_world2pix(lon[ok], lat[ok], 0)
    gny, gnx = ds["mosaic"].shape
    return grid, bool(np.all((gx > -0.5) & (gx < gnx - 0.5) & (gy > -0.5) & (gy < gny - 0.5)))


@pytest.mark.parametrize("proj", ["CAR", "AIT", "MOL", "ZEA", "HPX"])
def test_allsky_grid_holds_everything(proj):
    from reproject import reproject_interp

    data, w = _allsky(proj)
    ds = mosaic([(data, w)], match_background=False)
    grid, inside = _lands_inside(data, w, ds)
    assert inside
    assert grid.wcs.ctype[0] == "GLON-CAR"
    ny, nx = ds["mosaic"].shape
    assert nx * ny < 4 * np.isfinite(data).sum()  # a grid at the input's resolution
    ref, fp = reproject_interp((data, w), grid, shape_out=ds["mosaic"].shape)
    ours = ds["mosaic"].values
    # reproject's footprint has the input's seams at +-180 deg; compare inside both
    both = (fp > 0) & np.isfinite(ours) & np.isfinite(ref)
    assert both.sum() > 0.9 * np.isfinite(ours).sum()
    assert np.nanpercentile(np.abs(ours - ref)[both], 99) < 1e-3


def test_galactic_strip_not_cut():
    data, w = _strip()
    ds = mosaic([(data, w)], match_background=False)
    _, inside = _lands_inside(data, w, ds)
    assert inside
    assert np.isfinite(ds["mosaic"].values).sum() >= 0.99 * data.size
    ny, nx = ds["mosaic"].shape
    assert nx * ny < 1.5 * data.size


def test_allsky_in_an_equatorial_frame():
    """A Galactic AIT map onto an ICRS grid: every pixel reproject fills, we fill alike."""
    from reproject import reproject_interp

    data, w = _allsky("AIT", lon0=0.0)
    ds = mosaic([(data, w)], frame="icrs", match_background=False)
    grid = WCS(fits.Header.fromstring(ds.attrs["header"]))
    assert grid.wcs.ctype[0] == "RA---CAR"
    assert ds["mosaic"].shape == (100, 200)  # 1.8 deg pixels: AIT's at its centre
    ref, fp = reproject_interp((data, w), grid, shape_out=ds["mosaic"].shape)
    ours = ds["mosaic"].values
    assert np.isfinite(ours).sum() >= 0.999 * (fp > 0).sum()
    both = (fp > 0) & np.isfinite(ours)
    assert np.max(np.abs(ours - ref)[both]) < 1e-5


def test_absurd_grid_refused_by_name():
    data, w = _allsky("CAR")
    small = WCS(naxis=2)  # a 1-arcsec-pixel tile: the optimal grid would be 1.3e6 px wide
    small.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    small.wcs.crval, small.wcs.crpix, small.wcs.cdelt = [10, 0], [5, 5], [-1 / 3600, 1 / 3600]
    with pytest.raises(VanotebookInputError, match=r"wcs.*648000 x 1296000 pixels.*GiB"):
        mosaic([(data, w), (np.ones((10, 10), np.float32), small)], match_background=False)
