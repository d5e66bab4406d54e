"""cutout and homogenise on a real SIP header: stars land where the sky (and reproject) has them.

The chip is a corner of a real Palomar Transient Factory CCD header that ships with
astropy (``siponly.hdr``: SIP of order 4, CRPIX thousands of pixels off the chip, so
the SIP terms move stars by ~130 pixels there). Stars are painted at the pixels the
full WCS gives for known sky positions.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import astropy
import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from vanotebook.mosaic import cutout, homogenise
from vanotebook.mosaic._cutout import cutout_grid

DATA = Path(astropy.__file__).parent / "wcs" / "tests" / "data"
N = 256
SIGMA_PIX = 1.5
PTF_PIXEL = 1.0217  # arcsec


def _stars(n, xs, ys, sigma, rng):
    yy, xx = np.mgrid[0:n, 0:n]
    data = rng.normal(0, 0.01, (n, n))
    for x, y in zip(xs, ys, strict=True):
        data += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return data.astype(np.float32)


def _beam_cards(header, fwhm_arcsec):
    header["BUNIT"] = "MJy/sr"
    header["BMAJ"] = header["BMIN"] = fwhm_arcsec / 3600
    header["BPA"] = 0.0


@pytest.fixture(scope="module")
def ptf(tmp_path_factory):
    """The PTF chip corner as a FITS file, and its stars' true positions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the real header carries non-standard cards
        wcs = WCS(fits.Header.fromstring((DATA / "siponly.hdr").read_text()))
        cards = wcs.to_header(relax=True)
    cards["CRPIX1"] -= 1792  # the chip corner farthest from CRPIX
    wcs = WCS(cards)
    assert wcs.sip is not None
    rng = np.random.default_rng(3)
    xs, ys = rng.uniform(30, N - 30, 10), rng.uniform(30, N - 30, 10)
    ra, dec = wcs.all_pix2world(xs, ys, 0)
    _beam_cards(cards, 2.3548 * SIGMA_PIX * PTF_PIXEL)
    path = tmp_path_factory.mktemp("ptf") / "chip.fits"
    fits.PrimaryHDU(_stars(N, xs, ys, SIGMA_PIX, rng), cards).writeto(path)
    return path, np.asarray(ra), np.asarray(dec)


def _offset(image: np.ndarray, header: fits.Header, ra: float, dec: float, half: int = 6):
    """Arcsec from (ra, dec) to the light centroid around it (inf: no star there)."""
    w = WCS(header).celestial
    x, y = w.world_to_pixel_values(ra, dec)
    ix, iy = round(float(x)), round(float(y))
    stamp = image[iy - half:iy + half + 1, ix - half:ix + half + 1].astype(float)
    stamp = np.where(np.isfinite(stamp), stamp, 0.0)
    if stamp.shape != (2 * half + 1,) * 2 or not stamp.max() > 0.3:
        return np.inf
    stamp = np.where(stamp > 0.2 * stamp.max(), stamp, 0.0)
    yy, xx = np.mgrid[iy - half:iy + half + 1, ix - half:ix + half + 1]
    cx, cy = (stamp * xx).sum() / stamp.sum(), (stamp * yy).sum() / stamp.sum()
    lon, lat = w.pixel_to_world_values(cx, cy)
    return SkyCoord(lon, lat, unit="deg").separation(SkyCoord(ra, dec, unit="deg")).arcsec


def test_cutout_puts_the_star_at_its_true_place(ptf):
    """A cutout centred on each of three stars has the star within 0.1 arcsec of its
    true position (0.1 cutout pixel), and equals reproject_interp onto the same grid."""
    from reproject import reproject_interp

    path, ra, dec = ptf
    offsets = []
    for i in range(3):
        out = cutout({"ptf": [str(path)]}, (ra[i], dec[i]), 30 * u.arcsec,
                     pixel_scale=1 * u.arcsec, unit="MJy/sr")
        header = fits.Header.fromstring(out.attrs["header"])
        image = out["ptf"].values
        offsets.append(_offset(image, header, ra[i], dec[i]))
        ref, _ = reproject_interp(str(path), header, order="bilinear")
        both = np.isfinite(ref) & np.isfinite(image)
        assert both.sum() > 0.9 * image.size
        assert np.abs(image - ref)[both].max() < 0.02  # of a star's peak (1)
    assert max(offsets) < 0.1, offsets


def test_homogenise_aligns_a_sip_survey_with_a_tan_survey(ptf, tmp_path):
    """The SIP chip and a plain-TAN survey of the same stars (a wider beam) homogenised
    together: after smoothing to the common beam each star is at its true position in
    both, within 0.1 arcsec, and the two surveys' star centroids agree."""
    path, ra, dec = ptf
    centre = SkyCoord(ra.mean(), dec.mean(), unit="deg")
    grid = cutout_grid(centre, 300 * u.arcsec, 1 * u.arcsec)
    w = grid.wcs.deepcopy()
    w.wcs.crpix = [150.5, 150.5]
    w.wcs.cdelt = [-1.5 / 3600, 1.5 / 3600]  # another pixel scale
    xs, ys = w.all_world2pix(ra, dec, 0)
    header = w.to_header()
    _beam_cards(header, 8.0)  # sigma 3.4" = 2.3 px of 1.5"
    rng = np.random.default_rng(5)
    tan = tmp_path / "tan.fits"
    fits.PrimaryHDU(_stars(300, xs, ys, 8.0 / 2.3548 / 1.5, rng), header).writeto(tan)
    out = homogenise({"ptf": [str(path)], "tan": [str(tan)]}, grid=grid,
                     match_background=False, unit="MJy/sr")
    head = fits.Header.fromstring(out.attrs["header"])
    assert head["BMAJ"] * 3600 == pytest.approx(8.0)
    for name in ("ptf", "tan"):
        off = [_offset(out[name].values / np.nanmax(out[name].values), head, r, d)
               for r, d in zip(ra, dec, strict=True)]
        assert max(off) < 0.1, (name, off)
