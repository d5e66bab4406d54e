"""to_hips on real distorted headers: stars land in the HiPS where the sky has them.

The headers are real ones that ship with astropy: a Palomar Transient Factory
CCD (``siponly.hdr``, SIP of order 4 with CRPIX thousands of pixels off the
chip: the SIP terms move stars by ~130 pixels here) and a Spitzer IRAC frame
(``irac_sip.hdr``, ~1.3 arcsec). Stars are painted at the pixels the full WCS
(``all_world2pix``) gives for known sky positions; their light must come out
at those sky positions in the deepest tiles, as with reproject.hips.
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
from astropy_healpix import core as hp

from vanotebook.mosaic import to_hips

DATA = Path(astropy.__file__).parent / "wcs" / "tests" / "data"
N = 256
SIGMA_PIX = 1.5


def distorted_image(name: str, *, x0: int = 0, y0: int = 0, n: int = N, n_stars: int = 12,
                    seed: int = 1):
    """``(hdu, wcs, ra, dec)``: an ``n`` x ``n`` piece (from pixel ``x0, y0``) of a real
    header's chip with Gaussian stars (peak 1, noise 0.01) at known sky positions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the real headers carry non-standard cards
        header = fits.Header.fromstring((DATA / name).read_text())
        wcs = WCS(header)
        cards = wcs.to_header(relax=True)
    cards["CRPIX1"] -= x0  # the SIP polynomial is in pixels from CRPIX: a sub-image keeps it
    cards["CRPIX2"] -= y0
    wcs = WCS(cards)
    assert wcs.sip is not None
    rng = np.random.default_rng(seed)
    xs, ys = rng.uniform(20, n - 20, n_stars), rng.uniform(20, n - 20, n_stars)
    ra, dec = wcs.all_pix2world(xs, ys, 0)  # the truth: the full transform of the header
    yy, xx = np.mgrid[0:n, 0:n]
    data = rng.normal(0, 0.01, (n, n))
    for x, y in zip(xs, ys, strict=True):
        data += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * SIGMA_PIX**2))
    cards["BUNIT"] = "MJy/sr"
    return fits.PrimaryHDU(data.astype(np.float32), cards), wcs, np.asarray(ra), np.asarray(dec)


def star_offsets(folder: Path, order: int, ra, dec, half: int = 6) -> np.ndarray:
    """Arcsec from each true position to the light centroid around it in the deepest tile
    (inf where no star lies within ``half`` tile pixels, NaN where the window leaves the tile)."""
    out = []
    index = hp.lonlat_to_healpix(ra * u.deg, dec * u.deg, 2**order, order="nested")
    for r, d, i in zip(ra, dec, index, strict=True):
        path = folder / f"Norder{order}" / f"Dir{(i // 10000) * 10000}" / f"Npix{i}.fits"
        if not path.exists():
            out.append(np.inf)
            continue
        with fits.open(path) as hdul:
            tile = hdul[0].data.astype(float)
            wt = WCS(hdul[0].header)
        x, y = wt.world_to_pixel_values(r, d)
        ix, iy = round(float(x)), round(float(y))
        if not (half <= ix < tile.shape[1] - half and half <= iy < tile.shape[0] - half):
            out.append(np.nan)
            continue
        stamp = tile[iy - half:iy + half + 1, ix - half:ix + half + 1]
        stamp = np.where(np.isfinite(stamp), stamp, 0.0)
        if not stamp.max() > 0.5:
            out.append(np.inf)
            continue
        stamp = np.where(stamp > 0.2 * stamp.max(), stamp, 0.0)
        yy, xx = np.mgrid[iy - half:iy + half + 1, ix - half:ix + half + 1]
        cx, cy = (stamp * xx).sum() / stamp.sum(), (stamp * yy).sum() / stamp.sum()
        lon, lat = wt.pixel_to_world_values(cx, cy)
        out.append(SkyCoord(lon, lat, unit="deg").separation(
            SkyCoord(r, d, unit="deg")).arcsec)
    return np.asarray(out)


@pytest.mark.parametrize(("name", "x0", "y0"), [
    ("siponly.hdr", 1792, 0),  # PTF: the chip corner farthest from CRPIX (SIP ~ 130 px)
    ("irac_sip.hdr", 0, 0),    # Spitzer IRAC: the whole 256 x 256 frame
])
def test_stars_land_where_the_sky_has_them(tmp_path, name, x0, y0):
    """Every star measured in the deepest tiles lies within 0.15 arcsec (a fifth of a tile
    pixel) of its true position; without SIP the PTF stars are not found at all."""
    hdu, _, ra, dec = distorted_image(name, x0=x0, y0=y0)
    hdu.writeto(tmp_path / "chip.fits")  # as it comes: a FITS file with SIP cards
    h = to_hips(tmp_path / "chip.fits", tmp_path / "h", tile_width=256, formats=("fits",))
    off = star_offsets(h.path, h.order, ra, dec)
    measured = off[~np.isnan(off)]  # inf (star missing) counts as a failure
    assert measured.size >= 8, off
    assert measured.max() < 0.15, off


def test_tiles_agree_with_reproject_hips_on_sip(tmp_path):
    """The deepest tiles of the PTF piece equal reproject.hips's (bilinear, full WCS)
    within 1% of a star's peak, over the same pixels."""
    from reproject import reproject_interp
    from reproject.hips import reproject_to_hips

    hdu, wcs, _, _ = distorted_image("siponly.hdr", x0=1792)
    ours = to_hips(hdu, tmp_path / "ours", tile_width=256, formats=("fits",))
    reproject_to_hips((hdu.data, wcs), coord_system_out="equatorial",
                      reproject_function=reproject_interp, output_directory=tmp_path / "rep",
                      level=ours.order, tile_size=256, order="bilinear")
    theirs = {int(p.stem[4:]): p for p in
              (tmp_path / "rep" / f"Norder{ours.order}").glob("Dir*/Npix*.fits")}
    compared = 0
    for index, path in theirs.items():
        mine = ours.tile_path(ours.order, index)
        b = fits.getdata(path)
        if not mine.exists():
            assert not np.isfinite(b).any()
            continue
        a = fits.getdata(mine)
        both = np.isfinite(a) & np.isfinite(b)
        assert np.abs(a - b)[both].max() < 0.01
        compared += both.sum()
    assert compared > 0.8 * N * N * (1.02 / 0.805) ** 2  # most of the chip piece, 0.8" pixels
