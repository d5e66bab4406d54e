"""Mosaics of real distorted headers: SIP (a Palomar Transient Factory frame, a Spitzer IRAC
header), lookup-table distortions (CPDIS) and TPV, against the stars' true sky positions
and against reproject.

The headers ship with astropy (``astropy/wcs/tests/data``). The images are made in the test:
Gaussian stars painted at the pixels where the full WCS (``all_world2pix``, SIP included)
puts chosen sky positions, so the true place of every star is known.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.utils.data import get_pkg_data_filename
from astropy.wcs import WCS, DistortionLookupTable, FITSFixedWarning

from vanotebook.mosaic import mosaic
from vanotebook.mosaic._kernels import pixel_to_pixel

# real headers carry deprecated cards (RADECSYS...) that astropy fixes with a warning
pytestmark = pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")


def _header(name: str) -> fits.Header:
    path = get_pkg_data_filename(f"data/{name}", package="astropy.wcs.tests")
    return fits.Header.fromfile(path, sep="", endcard=False, padding=False)


def _wcs(header) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


def _ptf_corner(size: int = 240) -> fits.Header:
    """A corner of the PTF CCD 5 frame (SIP order 4), where SIP moves pixels by ~95 arcsec."""
    h = _header("siponly.hdr")
    x0, y0 = 2048 - size, 4096 - size
    h["CRPIX1"] -= x0  # SIP is a polynomial about CRPIX: shifting CRPIX cuts the frame exactly
    h["CRPIX2"] -= y0
    h["NAXIS1"] = h["NAXIS2"] = size
    return h


def _stars(wcs: WCS, shape, *, n: int = 5, sigma: float = 1.5, margin: int = 20):
    """An image of ``n x n`` Gaussian stars and their sky positions (lon, lat in deg)."""
    ny, nx = shape
    px, py = np.meshgrid(np.linspace(margin, nx - 1 - margin, n) + 0.3,
                         np.linspace(margin, ny - 1 - margin, n) - 0.2)
    px, py = px.ravel(), py.ravel()
    lon, lat = wcs.all_pix2world(px, py, 0)
    yy, xx = np.mgrid[0:ny, 0:nx]
    img = np.zeros(shape, np.float64)
    for x, y in zip(px, py, strict=True):
        img += 100.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return img.astype(np.float32), np.asarray(lon), np.asarray(lat)


def _centroids(img, x, y, half: int = 4):
    out = []
    for xc, yc in zip(x, y, strict=True):
        i, j = round(float(yc)), round(float(xc))
        box = np.nan_to_num(img[i - half:i + half + 1, j - half:j + half + 1])
        yy, xx = np.mgrid[i - half:i + half + 1, j - half:j + half + 1]
        s = box.sum()
        out.append(((box * xx).sum() / s, (box * yy).sum() / s))
    return np.array(out)


def _offsets(header, *, method="bilinear", combine="mean", wcs_out=None, shape=None):
    """Star offsets (output pixels) of our mosaic from the truth and from reproject_interp."""
    from reproject import reproject_interp

    w = _wcs(header)
    shape_in = (header["NAXIS2"], header["NAXIS1"])
    img, lon, lat = _stars(w, shape_in)
    kwargs = {} if wcs_out is None else {"wcs": wcs_out, "shape": shape}
    ds = mosaic([(img, header)], match_background=False, method=method, combine=combine,
                **kwargs)
    grid = _wcs(fits.Header.fromstring(ds.attrs["header"]))
    tx, ty = grid.all_world2pix(lon, lat, 0)
    ours = _centroids(ds["mosaic"].values, tx, ty)
    ref, _ = reproject_interp((img, w), grid, shape_out=ds["mosaic"].shape)
    theirs = _centroids(ref, tx, ty)
    truth = np.stack([tx, ty], axis=1)
    return (np.hypot(*(ours - truth).T), np.hypot(*(ours - theirs).T),
            np.hypot(*(theirs - truth).T))


@pytest.mark.parametrize("name", ["ptf", "irac_sip.hdr"])
def test_sip_stars_land_where_reproject_puts_them(name):
    header = _ptf_corner() if name == "ptf" else _header(name)
    to_truth, to_reproject, reproject_truth = _offsets(header)
    assert reproject_truth.max() < 0.1  # the peer is right on these headers
    assert to_reproject.max() < 0.05, to_reproject.max()
    assert to_truth.max() < 0.1, to_truth.max()


@pytest.mark.parametrize(("method", "combine"), [("nearest", "mean"), ("bilinear", "median"),
                                                 ("flux-conserving", "mean")])
def test_sip_every_path(method, combine):
    """The fused numba path, the array-API path (median) and the drizzle all use the SIP."""
    to_truth, _, _ = _offsets(_ptf_corner(), method=method, combine=combine)
    assert to_truth.max() < (0.6 if method == "nearest" else 0.1), to_truth.max()


def test_sip_onto_a_given_grid_with_sip():
    """A grid given with its own SIP (the frame itself) is the identity, to 1e-6 pixel."""
    header = _ptf_corner()
    w = _wcs(header)
    yy, xx = np.mgrid[0:240:7, 0:240:7].astype(float)
    x, y = pixel_to_pixel(w, w, xx, yy)
    assert np.max(np.hypot(x - xx, y - yy)) < 1e-6
    flat = _wcs(header)
    flat.sip = None
    x, y = pixel_to_pixel(w, flat, xx, yy)  # and SIP moves this corner by ~95 pixels
    assert np.median(np.hypot(x - xx, y - yy)) > 50


def test_pixel_to_pixel_matches_astropy():
    from astropy.wcs.utils import pixel_to_pixel as astropy_p2p

    w = _wcs(_ptf_corner())
    grid = _wcs(_ptf_corner())
    grid.sip = None
    grid.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    grid.wcs.crpix = [120, 120]
    grid.wcs.crval = w.wcs_pix2world([[120, 120]], 0)[0]
    grid.wcs.set()
    yy, xx = np.mgrid[0:240:11, 0:240:11].astype(float)
    ax, ay = astropy_p2p(w, grid, xx, yy)
    bx, by = pixel_to_pixel(w, grid, xx, yy)
    np.testing.assert_allclose(bx, ax, atol=1e-6)
    np.testing.assert_allclose(by, ay, atol=1e-6)
    ax, ay = astropy_p2p(grid, w, xx, yy)
    bx, by = pixel_to_pixel(grid, w, xx, yy)
    np.testing.assert_allclose(bx, ax, atol=1e-5)
    np.testing.assert_allclose(by, ay, atol=1e-5)


def _lookup_wcs():
    """A TAN WCS with CPDIS lookup-table distortions of up to ~2 pixels."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [150.0, 2.0], [100.0, 100.0], [-2e-4, 2e-4]
    t = np.linspace(-1.0, 1.0, 9)
    dx = (1.5 * np.outer(np.ones(9), t) + 0.5 * np.outer(t, t ** 2)).astype(np.float32)
    dy = (-1.2 * np.outer(t, np.ones(9)) + 0.4 * np.outer(t ** 2, t)).astype(np.float32)
    w.cpdis1 = DistortionLookupTable(dx, (1.0, 1.0), (1.0, 1.0), (25.0, 25.0))
    w.cpdis2 = DistortionLookupTable(dy, (1.0, 1.0), (1.0, 1.0), (25.0, 25.0))
    w.pixel_shape = (200, 200)
    return w


def test_lookup_table_distortion():
    from reproject import reproject_interp

    w = _lookup_wcs()
    img, lon, lat = _stars(w, (200, 200))
    ds = mosaic([(img, w)], match_background=False)
    grid = _wcs(fits.Header.fromstring(ds.attrs["header"]))
    tx, ty = grid.all_world2pix(lon, lat, 0)
    ours = _centroids(ds["mosaic"].values, tx, ty)
    ref, _ = reproject_interp((img, w), grid, shape_out=ds["mosaic"].shape)
    theirs = _centroids(ref, tx, ty)
    assert np.hypot(*(theirs - np.stack([tx, ty], 1)).T).max() < 0.1
    assert np.hypot(*(ours - theirs).T).max() < 0.05


def test_tpv_matches_reproject():
    """TPV (SCAMP's polynomial, read by wcslib itself) on a corner of the same PTF frame."""
    h = _header("tpvonly.hdr")
    h["CRPIX1"] -= 2048 - 240
    h["CRPIX2"] -= 4096 - 240
    h["NAXIS1"] = h["NAXIS2"] = 240
    to_truth, to_reproject, _ = _offsets(h)
    assert to_reproject.max() < 0.05
    assert to_truth.max() < 0.1
