"""Homogenised surveys give each source its true flux; cutouts; errors."""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from vanotebook import VanotebookInputError
from vanotebook.mosaic import cutout, cutouts, homogenise
from vanotebook.units import Beam

SURVEYS = ("radio", "ir24", "fir250")


@pytest.fixture(scope="module")
def homog(sky):
    return homogenise({k: sky.images(k) for k in SURVEYS}, pixel_scale=4 * u.arcsec,
                      unit="Jy/pix", frame="icrs")


def _isolated_points(sky, radius_arcsec=90.0):
    src = sky.model.sources
    c = SkyCoord(src["ra"], src["dec"], unit="deg")
    _idx, sep, _ = c.match_to_catalog_sky(c, nthneighbor=2)
    ok = (np.asarray(src["kind"]) == "point") & (sep.arcsec > radius_arcsec)
    for k in SURVEYS:
        ok &= np.asarray(sky.observe(k).truth["n_tiles"]) > 0
    return np.flatnonzero(ok)


def _fit_beam(stamp: np.ndarray, pixel_arcsec: float) -> tuple[float, float, float]:
    """``(major, minor, amplitude)`` of a 2-D Gaussian plus constant fitted to ``stamp``
    (FWHM in arcsec; any position angle)."""
    from scipy.optimize import curve_fit

    n = stamp.shape[0]
    yy, xx = np.mgrid[0:n, 0:n]

    def model(xy, a, x0, y0, sxx, syy, sxy, b):
        dx, dy = xy[0] - x0, xy[1] - y0
        q = (syy * dx * dx - 2 * sxy * dx * dy + sxx * dy * dy) / (sxx * syy - sxy**2)
        return a * np.exp(-0.5 * q) + b

    p0 = [float(stamp.max()), n // 2, n // 2, 4.0, 4.0, 0.0, 0.0]
    p, _ = curve_fit(model, (xx.ravel(), yy.ravel()), stamp.ravel(), p0=p0, maxfev=20000)
    small, big = np.linalg.eigvalsh([[p[3], p[5]], [p[5], p[4]]])
    fwhm = 2 * math.sqrt(2 * math.log(2)) * pixel_arcsec
    return fwhm * math.sqrt(big), fwhm * math.sqrt(small), float(p[0])


def _effective_fwhm(sky, survey: str, target_arcsec: float) -> float:
    """The common beam as the output holds it: bilinear regridding from the survey's pixel
    ``p`` adds a variance of p^2/6 per axis (a triangle kernel of half-width p)."""
    p = abs(sky.images(survey)[0][0].header["CDELT1"]) * 3600
    return math.sqrt(target_arcsec**2 + 8 * math.log(2) * p * p / 6)


def _measured_beams(sky, homog, n: int = 8):
    """Per survey, the fitted ``(major, minor, amplitude, true flux)`` of the ``n`` brightest
    isolated point sources."""
    header = fits.Header.fromstring(homog.attrs["header"])
    w = WCS(header).celestial
    pixel = abs(w.wcs.cdelt[1]) * 3600
    rows = _isolated_points(sky)
    src = sky.model.sources
    x, y = w.world_to_pixel_values(src["ra"][rows], src["dec"][rows])
    out = {}
    for k in SURVEYS:
        img = homog[k].values
        truth = np.asarray(sky.observe(k).truth["flux"])[rows]
        fits_ = []
        for i in np.argsort(truth)[::-1]:
            ix, iy = round(float(x[i])), round(float(y[i]))
            stamp = img[iy - 10:iy + 11, ix - 10:ix + 11]
            if stamp.shape == (21, 21) and np.isfinite(stamp).all():
                fits_.append((*_fit_beam(stamp, pixel), truth[i]))
            if len(fits_) == n:
                break
        out[k] = np.array(fits_)
    return out, pixel


def test_aperture_fluxes_match_truth(sky, homog):
    header = fits.Header.fromstring(homog.attrs["header"])
    w = WCS(header).celestial
    beam = Beam.from_header(header)
    fwhm_pix = beam.major.to_value(u.deg) / abs(w.wcs.cdelt[1])
    rows = _isolated_points(sky)
    src = sky.model.sources
    x, y = w.wcs_world2pix(src["ra"][rows], src["dec"][rows], 0)
    yy, xx = np.mgrid[-30:31, -30:31]
    r = np.hypot(xx, yy)
    aper, annulus = r <= 1.5 * fwhm_pix, (r > 3 * fwhm_pix) & (r < 5 * fwhm_pix)
    checked = 0
    for k in SURVEYS:
        img = homog[k].values
        truth = np.asarray(sky.observe(k).truth["flux"])[rows]
        ratios, weights = [], []
        for xi, yi, f in zip(x, y, truth, strict=True):
            ix, iy = round(xi), round(yi)
            stamp = img[iy - 30:iy + 31, ix - 30:ix + 31]
            if stamp.shape != r.shape or not np.isfinite(stamp).all():
                continue
            flux = stamp[aper].sum() - np.median(stamp[annulus]) * aper.sum()
            ratios.append(flux / f)
            weights.append(f)
        ratios = np.array(ratios)
        order = np.argsort(weights)[::-1]
        bright = order[:8]  # the faint ones are noise-dominated after smoothing to 18"
        # 1.5 FWHM holds 99.8% of a Gaussian's flux
        assert np.median(ratios[bright]) == pytest.approx(0.998, abs=0.05), k
        np.testing.assert_allclose(ratios[order[:3]], 0.998, atol=0.06, err_msg=k)
        checked += 1
    assert checked == 3
    # the peaks too: in Jy/pix a point source peaks at flux * pixel area / (2 pi sigma^2) of
    # the common beam (as the output holds it), so a survey left at its own, smaller beam
    # (radio 15" x 10", ir24 6") would peak up to 9 times too high
    beams, pixel = _measured_beams(sky, homog)
    for k, fitted in beams.items():
        sigma = _effective_fwhm(sky, k, 18.0) / (2 * math.sqrt(2 * math.log(2))) / pixel
        peak_flux = fitted[:, 2] * 2 * math.pi * sigma**2
        assert np.median(peak_flux / fitted[:, 3]) == pytest.approx(1.0, abs=0.05), k


def test_common_beam_and_unit(sky, homog):
    header = fits.Header.fromstring(homog.attrs["header"])
    assert header["BMAJ"] * 3600 == pytest.approx(18.0)
    # the beam measured on the bright isolated point sources of every survey is the common
    # one: round, 18" (broadened by the bilinear regridding as computed), whatever the
    # survey's own beam was (radio 15" x 10" at PA 30, ir24 6", fir250 18")
    beams, _ = _measured_beams(sky, homog)
    for k, fitted in beams.items():
        expected = _effective_fwhm(sky, k, 18.0)
        assert len(fitted) == 8, k
        assert np.median(fitted[:, 0]) == pytest.approx(expected, rel=0.04), k
        assert np.median(fitted[:, 1]) == pytest.approx(expected, rel=0.04), k
    assert u.Unit(homog.attrs["unit"]) == u.Jy / u.pix
    assert homog.attrs["kernels"]["fir250"] is None
    assert set(homog.data_vars) == set(SURVEYS)
    assert homog.attrs["provenance"]["vanotebook"]["activity"] == "vanotebook.mosaic.homogenise"


def test_resolution_smaller_than_a_beam_fails(sky):
    with pytest.raises(VanotebookInputError, match="resolution"):
        homogenise({"fir250": sky.images("fir250")[:1]}, resolution=Beam.circular(5 * u.arcsec))


def test_no_beam_fails(sky):
    hdu = sky.images("ir24")[0][0].copy()
    for key in ("BMAJ", "BMIN", "BPA"):
        del hdu.header[key]
    with pytest.raises(VanotebookInputError, match="beam"):
        homogenise({"ir24": [hdu]})


def test_cutout_and_batch(sky, homog):
    src = sky.model.sources
    rows = _isolated_points(sky)
    faintest = np.min([np.asarray(sky.observe(k).truth["flux"])[rows] for k in SURVEYS], axis=0)
    rows = rows[np.argsort(faintest)[::-1][:3]]
    images = {k: sky.images(k) for k in SURVEYS}
    one = cutout(images, (float(src["ra"][rows[0]]), float(src["dec"][rows[0]])),
                 2 * u.arcmin, pixel_scale=4 * u.arcsec, unit="Jy/pix")
    assert set(one.data_vars) == set(SURVEYS)
    # the centre pixel of the cutout holds the source: brightest within the stamp centre
    for k in SURVEYS:
        stamp = one[k].values
        c = stamp.shape[0] // 2
        assert np.nanargmax(stamp) in {np.ravel_multi_index((c + dy, c + dx), stamp.shape)
                                       for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    table = Table({"ra": [float(src["ra"][i]) for i in rows] + [10.0],
                   "dec": [float(src["dec"][i]) for i in rows] + [10.0]})
    many = cutouts(images, table, 2 * u.arcmin, pixel_scale=4 * u.arcsec, unit="Jy/pix")
    assert len(many) == 4 and many[-1] is None
    np.testing.assert_allclose(many[0]["radio"].values, one["radio"].values, equal_nan=True)


# ----------------------------------------------------------------------------- bad calls
def _calls(sky, tmp_path):
    images = {"ir24": sky.images("ir24")[:1]}
    missing = {"ir24": [str(tmp_path / "missing.fits")]}  # reading it would fail: options first
    pos = (150.0, 2.0)
    return [
        (lambda: homogenise(missing, unit="banana"), "unit"),
        (lambda: homogenise(missing, pixel_scale=4), "pixel_scale"),
        (lambda: homogenise(missing, pixel_scale=-4 * u.arcsec), "pixel_scale"),
        (lambda: homogenise(missing, pixel_scale=4 * u.m), "pixel_scale"),
        (lambda: homogenise(missing, resolution="finest"), "resolution"),
        (lambda: homogenise(missing, method="cubic"), "method"),
        (lambda: homogenise(missing, match_background="yes"), "match_background"),
        (lambda: homogenise(missing, progress="yes"), "progress"),
        (lambda: homogenise(missing, output=tmp_path / "set.txt"), "output"),
        (lambda: homogenise(missing, unit="Jy/beam", resolution=None), "resolution"),
        (lambda: homogenise(sky.images("ir24")[:2]), "images"),  # tiles, not a list of lists
        (lambda: cutout(missing, pos, pixel_scale=2), "pixel_scale"),
        (lambda: cutout(missing, pos, 2), "size"),
        (lambda: cutout(missing, pos, unit="banana"), "unit"),
        (lambda: cutout(missing, pos, frame="b1950"), "frame"),
        (lambda: cutout(missing, "M31"), "position"),
        (lambda: cutout(sky.images("ir24")[:2], pos), "images"),
        (lambda: cutout(images, (10.0, 10.0)), "position"),
        (lambda: cutouts(missing, Table({"ra": [1.0], "dec": [2.0]}), pixel_scale=2),
         "pixel_scale"),
        (lambda: cutouts(missing, Table({"ra": [1.0], "dec": [2.0]}), colour="red"), "colour"),
        (lambda: cutouts(sky.images("ir24")[:2], Table({"ra": [1.0], "dec": [2.0]})), "images"),
    ]


def test_bad_calls_name_the_argument(sky, tmp_path):
    """Each bad call raises VanotebookInputError naming its argument, before any image is
    read (the images named do not exist), and writes nothing."""
    for call, argument in _calls(sky, tmp_path):
        with pytest.raises(VanotebookInputError) as err:
            call()
        assert err.value.argument == argument, (argument, str(err.value))
    assert list(tmp_path.iterdir()) == []


def _frame_hdu(sky, unit: str, *, beam: bool):
    """An ir24 tile relabelled in ``unit`` (an optical-style frame: DN, electron/s...)."""
    hdu = sky.images("ir24")[0][0].copy()
    hdu.header["BUNIT"] = unit
    if not beam:
        for key in ("BMAJ", "BMIN", "BPA"):
            del hdu.header[key]
    return hdu


@pytest.mark.parametrize("unit", ["DN", "electron/s", "ELECTRONS/S", "adu"])
def test_non_flux_units_go_through_but_are_not_made_flux(sky, unit, tmp_path):
    """Frames in DN or electron/s: converting them to MJy/sr is refused by name; kept in
    their own unit (unit=None, resolution=None) they cut out and homogenise, values as
    the plain mosaic's, BUNIT written and read back; the FITS set is written too."""
    from vanotebook.mosaic import mosaic
    from vanotebook.units import parse_unit

    hdu = _frame_hdu(sky, unit, beam=False)
    with pytest.raises(VanotebookInputError) as err:
        homogenise({"opt": [hdu]}, unit="MJy/sr", resolution=None)
    assert err.value.argument == "images['opt']" and "surface-brightness" in str(err.value)
    out = homogenise({"opt": [hdu]}, unit=None, resolution=None, match_background=False,
                     output=tmp_path / "set.fits")
    header = fits.Header.fromstring(out.attrs["header"])
    assert parse_unit(header["BUNIT"]) == parse_unit(unit)
    plain = mosaic([hdu], wcs=header, match_background=False)
    np.testing.assert_allclose(out["opt"].values, plain["mosaic"].values, rtol=1e-6,
                               equal_nan=True)
    with fits.open(tmp_path / "set.fits") as hdul:
        assert parse_unit(hdul["opt"].header["BUNIT"]) == parse_unit(unit)
        np.testing.assert_array_equal(hdul["opt"].data, out["opt"].values)
    centre = WCS(hdu.header).celestial.pixel_to_world(hdu.header["NAXIS1"] / 2,
                                                      hdu.header["NAXIS2"] / 2)
    one = cutout({"opt": [hdu]}, centre, 1 * u.arcmin, unit=None, resolution=None)
    assert parse_unit(one["opt"].attrs["unit"]) == parse_unit(unit)
    assert np.isfinite(one["opt"].values).all()


def test_kelvin_scales_and_smooths(sky):
    """A brightness temperature map asked in mK comes out 1000x, at the common beam."""
    hdu = _frame_hdu(sky, "K", beam=True)
    out = homogenise({"t": [hdu]}, unit="mK", resolution=Beam.circular(12 * u.arcsec),
                     match_background=False)
    ref = homogenise({"t": [hdu]}, unit=None, resolution=Beam.circular(12 * u.arcsec),
                     match_background=False)
    assert u.Unit(out["t"].attrs["unit"]) == u.mK and u.Unit(ref["t"].attrs["unit"]) == u.K
    np.testing.assert_allclose(out["t"].values, 1000 * ref["t"].values, rtol=1e-5,
                               equal_nan=True)
    with pytest.raises(VanotebookInputError, match="convertible"):
        homogenise({"t": [hdu]}, unit="DN")
