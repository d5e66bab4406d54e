"""The synthetic sky's truth matches its images.

Fluxes are measured at the truth positions with aperture photometry, the
beam by fitting the brightest isolated point source, and the tile offsets
by reprojecting overlaps with `reproject` (the peer) and solving for them.
"""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_area
from scipy.optimize import curve_fit

from vanotebook import VanotebookInputError
from vanotebook.io import parse_image
from vanotebook.sky import SURVEYS, make_sky, observe
from vanotebook.units import Beam, convert_brightness

SURVEY_KEYS = list(SURVEYS)


def _isolated(truth, beam_arcsec: float, k: float = 6.0) -> np.ndarray:
    """Sources with no other source (or extended source's extent) within k beams."""
    c = SkyCoord(truth["ra"], truth["dec"], unit="deg")
    extent = np.nan_to_num(np.asarray(truth["major"], float)) / 2.0 * 1.2
    extent += np.nan_to_num(np.asarray(truth["radius"], float))
    ok = np.ones(len(truth), bool)
    idx1, idx2, sep, _ = c.search_around_sky(c, (k * beam_arcsec + extent.max()) * u.arcsec)
    for i, j, s in zip(idx1, idx2, sep.arcsec, strict=True):
        if i != j and s < k * beam_arcsec + extent[i] + extent[j]:
            ok[i] = False
    return ok


def _best_tile(tiles, lon, lat, margin):
    """Index of the tile where (lon, lat) sits farthest from the edges, and its pixel position."""
    best = (-1, None, -np.inf)
    for t, hdul in enumerate(tiles):
        wcs = WCS(hdul[0].header)
        x, y = wcs.world_to_pixel_values(lon, lat)
        ny, nx = hdul[0].data.shape
        room = min(x, y, nx - 1 - x, ny - 1 - y)
        if room > best[2]:
            best = (t, (float(x), float(y)), room)
    return best[0], best[1] if best[2] > margin else None


def _aperture(data, x, y, r, r_in, r_out):
    yy, xx = np.indices(data.shape)
    d2 = (xx - x) ** 2 + (yy - y) ** 2
    ap = d2 <= r * r
    ann = (d2 >= r_in**2) & (d2 <= r_out**2)
    return data[ap].sum() - np.median(data[ann]) * ap.sum()


def _to_jy(survey, header):
    """Factor turning a sum of pixel values into Jy."""
    pix_sr = (proj_plane_pixel_area(WCS(header).celestial) * u.deg**2).to_value(u.sr)
    if survey.unit == "Jy/beam":
        return pix_sr / survey.beam.sr.to_value(u.sr)
    return 1e6 * pix_sr


def _photometry(obs, rows, scale=1.0, n_empty=150, seed=1):
    """Aperture flux (Jy) at truth positions, and its noise from empty positions."""
    survey = obs.survey
    beam_px = survey.beam.major.to_value(u.arcsec) / survey.pixel_scale
    r, r_in, r_out = 2.0 * beam_px * scale, 2.6 * beam_px * scale, 3.6 * beam_px * scale
    fluxes, tiles_used = [], []
    for row in rows:
        t, pos = _best_tile(obs.tiles, row["lon"], row["lat"], r_out + 2)
        if pos is None:
            fluxes.append(np.nan)
            tiles_used.append(-1)
            continue
        hdr = obs.tiles[t][0].header
        fluxes.append(_aperture(obs.tiles[t][0].data, *pos, r, r_in, r_out) * _to_jy(survey, hdr))
        tiles_used.append(t)
    # noise: the same aperture at random places far from every source
    rng = np.random.default_rng(seed)
    data = obs.tiles[0][0].data
    wcs = WCS(obs.tiles[0][0].header)
    sx, sy = wcs.world_to_pixel_values(obs.truth["lon"], obs.truth["lat"])
    extent = (np.nan_to_num(np.asarray(obs.truth["major"], float)) / survey.pixel_scale
              + np.nan_to_num(np.asarray(obs.truth["radius"], float)) / survey.pixel_scale)
    empty = []
    for _ in range(200 * n_empty):
        if len(empty) == n_empty:
            break
        x, y = rng.uniform(r_out + 2, data.shape[1] - r_out - 3, 2)
        if np.all(np.hypot(sx - x, sy - y) > r_out + 2 * beam_px + extent):
            empty.append(_aperture(data, x, y, r, r_in, r_out) * _to_jy(survey, obs.tiles[0][0]
                                                                          .header))
    assert len(empty) >= 30, "too few empty places to measure the aperture noise"
    return np.array(fluxes), float(np.std(empty)), np.array(tiles_used)


@pytest.mark.parametrize("key", SURVEY_KEYS)
def test_point_source_flux_matches_truth(sky, key):
    obs = sky.observe(key)
    truth = obs.truth
    beam = obs.survey.beam.major.to_value(u.arcsec)
    pick = ((truth["kind"] == "point") & truth["in_survey"] & _isolated(truth, beam))
    rows = truth[pick]
    flux, sigma, _ = _photometry(obs, rows)
    ok = np.isfinite(flux)
    assert ok.sum() >= 20, "too few isolated point sources to test"
    pull = (flux[ok] - np.asarray(rows["flux"])[ok]) / sigma
    # every source within 5 sigma of its truth, and no bias
    assert np.abs(pull).max() < 5.0, pull
    assert abs(pull.mean()) < 4.0 / math.sqrt(ok.sum()) + 0.3
    # the test is not vacuous: several sources are bright enough to measure well
    bright = np.asarray(rows["flux"])[ok] > 10 * sigma
    assert bright.sum() >= 3
    np.testing.assert_allclose(flux[ok][bright], np.asarray(rows["flux"])[ok][bright],
                               atol=5 * sigma, rtol=0.02)


def test_extended_gaussian_and_ring_fluxes_match_truth(sky):
    obs = sky.observe("radio")
    truth = obs.truth
    ext = truth[(truth["kind"] == "gaussian") & truth["in_survey"]]
    assert len(ext) >= 2
    measured = []
    for row in ext:
        scale = 0.75 * float(row["major_obs"]) / obs.survey.beam.major.to_value(
            u.arcsec)
        flux, sigma, _ = _photometry(obs, [row], scale=scale, n_empty=60)
        if np.isfinite(flux[0]):
            measured.append((flux[0] - float(row["flux"])) / sigma)
    assert len(measured) >= 2
    assert np.abs(measured).max() < 5.0, measured


@pytest.mark.parametrize("key", SURVEY_KEYS)
def test_header_beam_matches_measured_psf(sky, key):
    obs = sky.observe(key)
    survey = obs.survey
    truth = obs.truth
    beam = survey.beam.major.to_value(u.arcsec)
    rows = truth[(truth["kind"] == "point") & truth["in_survey"] & _isolated(truth, beam)]
    row = rows[np.argmax(rows["flux"])]
    t, (x0, y0) = _best_tile(obs.tiles, row["lon"], row["lat"], 20)
    hdu = obs.tiles[t][0]
    half = int(3 * beam / survey.pixel_scale)
    xi, yi = round(x0), round(y0)
    cut = hdu.data[yi - half:yi + half + 1, xi - half:xi + half + 1].astype(float)
    yy, xx = np.mgrid[yi - half:yi + half + 1, xi - half:xi + half + 1]

    def gauss(xy, amp, xc, yc, sa, sb, theta, bg):
        x, y = xy
        c, s = np.cos(theta), np.sin(theta)
        u_ = (x - xc) * c + (y - yc) * s
        v_ = -(x - xc) * s + (y - yc) * c
        return amp * np.exp(-0.5 * ((u_ / sa) ** 2 + (v_ / sb) ** 2)) + bg

    sig0 = beam / survey.pixel_scale / 2.355
    p, _ = curve_fit(gauss, (xx.ravel(), yy.ravel()), cut.ravel(),
                     p0=[cut.max(), x0, y0, sig0 * 1.2, sig0 * 0.8, 0.3, np.median(cut)])
    amp, xc, yc, sa, sb, theta = p[:6]
    if abs(sb) > abs(sa):
        sa, sb, theta = sb, sa, theta + np.pi / 2
    fwhm = 2.3548 * np.abs([sa, sb]) * survey.pixel_scale
    header_beam = Beam.from_header(hdu.header)
    assert fwhm[0] == pytest.approx(header_beam.major.to_value(u.arcsec), rel=0.04)
    assert fwhm[1] == pytest.approx(header_beam.minor.to_value(u.arcsec), rel=0.04)
    assert amp == pytest.approx(float(row["peak"]), rel=0.04)
    assert (xc, yc) == pytest.approx((x0, y0), abs=0.15)
    if header_beam.major > header_beam.minor * 1.1:
        # pixel +x points west (CDELT1 < 0), +y north: PA = atan2(east, north)
        pa = math.degrees(math.atan2(-math.cos(theta), math.sin(theta))) % 180.0
        assert pa == pytest.approx(header_beam.pa.to_value(u.deg) % 180.0, abs=3.0)


def test_jy_per_beam_mjy_per_sr_round_trip_through_beam_area(sky):
    obs = sky.observe("radio")
    image = parse_image(obs.tiles[0])
    mjy = convert_brightness(image.data, image.unit, "MJy/sr", beam=image.beam)
    back = convert_brightness(mjy, "MJy/sr", "Jy/beam", beam=image.beam)
    np.testing.assert_allclose(back, image.data, rtol=1e-6)
    # the factor agrees with astropy's beam-area equivalency (the peer's answer)
    ref = (1 * u.Jy / u.beam).to(u.MJy / u.sr, equivalencies=u.beam_angular_area(image.beam.sr))
    assert float(mjy.flat[100] / image.data.flat[100]) == pytest.approx(ref.value, rel=1e-6)
    # and the converted map still gives the truth fluxes, read as an infrared map would be
    pix_sr = image.pixel_area.to_value(u.sr)
    truth = obs.truth
    rows = truth[(truth["kind"] == "point") & truth["in_survey"]
                 & _isolated(truth, 15.0)]
    rows = rows[np.argsort(rows["flux"])[::-1][:5]]
    for row in rows:
        t, pos = _best_tile(obs.tiles, row["lon"], row["lat"], 40)
        if t != 0 or pos is None:
            continue
        s = _aperture(np.asarray(mjy), *pos, 7.5, 10, 14) * 1e6 * pix_sr
        assert s == pytest.approx(float(row["flux"]), rel=0.1, abs=3e-3)
    jy_pix = convert_brightness(mjy, "MJy/sr", "Jy/pix", pixel_area=image.pixel_area)
    np.testing.assert_allclose(jy_pix.sum(), mjy.sum() * 1e6 * pix_sr, rtol=1e-5)


@pytest.mark.parametrize("key", SURVEY_KEYS)
def test_tile_offsets_recoverable_from_overlaps(sky, key):
    from reproject import reproject_interp

    obs = sky.observe(key)
    tiles = obs.tiles
    n = len(tiles)
    rows, rhs = [], []
    for i in range(n):
        for j in range(i + 1, n):
            proj, foot = reproject_interp(tiles[j][0], tiles[i][0].header)
            overlap = (foot > 0.99) & np.isfinite(proj)
            if overlap.sum() < 2000:
                continue
            diff = tiles[i][0].data[overlap] - proj[overlap]
            row = np.zeros(n)
            row[i], row[j] = 1.0, -1.0
            rows.append(row)
            rhs.append(np.median(diff))
    assert len(rows) >= n  # 2x2 tiles: 4 sides and 2 diagonals overlap
    rows.append(np.ones(n))  # the absolute level is not recoverable: fix the mean
    true = np.asarray(obs.offsets["offset"])
    rhs.append(true.sum())
    est = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    np.testing.assert_allclose(est, true, atol=0.15 * obs.survey.noise)
    assert np.ptp(true) > 2 * obs.survey.noise  # the offsets are there to be found


@pytest.mark.parametrize("key", SURVEY_KEYS)
def test_headers_are_complete_and_differ_like_real_surveys(sky, key):
    survey = SURVEYS[key]
    hdr = sky.images(key)[0][0].header
    for card in ("BUNIT", "BMAJ", "BMIN", "BPA", "TELESCOP", "INSTRUME", "SURVEY", "DATE-OBS",
                 "MJD-OBS", "WAVELEN", "CTYPE1", "CTYPE2", "CDELT1", "CRVAL1", "CRPIX1"):
        assert card in hdr, card
    image = parse_image(sky.images(key)[0])
    assert image.frame == survey.frame
    assert hdr["CTYPE1"].endswith(survey.projection)
    assert image.unit == u.Unit(survey.unit)
    assert image.pixel_scale.to_value(u.arcsec) == pytest.approx(survey.pixel_scale, rel=1e-3)
    assert image.beam == survey.beam


def test_surveys_differ_in_frame_projection_and_unit():
    frames = {s.frame for s in SURVEYS.values()}
    projections = {s.projection for s in SURVEYS.values()}
    units = {s.unit for s in SURVEYS.values()}
    assert frames == {"icrs", "galactic"}
    assert {"TAN", "CAR"} <= projections
    assert units == {"Jy/beam", "MJy/sr"}


def test_noise_level_and_correlation(sky):
    obs = sky.observe("fir250")
    truth = obs.truth
    hdu = obs.tiles[0][0]
    wcs = WCS(hdu.header)
    x, y = wcs.world_to_pixel_values(truth["lon"], truth["lat"])
    mask = np.ones(hdu.data.shape, bool)
    yy, xx = np.indices(hdu.data.shape)
    for xi, yi in zip(x, y, strict=True):
        mask &= np.hypot(xx - xi, yy - yi) > 30
    resid = hdu.data - hdu.data.mean()
    # remove the smooth diffuse emission with a wide median filter, then measure the rms
    from scipy.ndimage import median_filter

    smooth = median_filter(hdu.data, size=31)
    resid = (hdu.data - smooth)[mask]
    rms = 1.4826 * np.median(np.abs(resid - np.median(resid)))
    assert rms == pytest.approx(obs.survey.noise, rel=0.1)
    # noise is correlated on the beam scale: neighbouring pixels are alike
    d = hdu.data - smooth
    corr = np.corrcoef(d[:, :-1][mask[:, :-1]], d[:, 1:][mask[:, :-1]])[0, 1]
    assert corr > 0.5


def test_same_seed_same_bytes_other_seed_other_noise():
    model = make_sky(size=0.3, seed=5)
    a = observe(model, "radio", seed=1).tiles[0][0].data
    b = observe(make_sky(size=0.3, seed=5), "radio", seed=1).tiles[0][0].data
    c = observe(model, "radio", seed=2).tiles[0][0].data
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    assert np.corrcoef(a.ravel(), c.ravel())[0, 1] < 0.9


def test_model_spectral_index_and_content():
    model = make_sky(size=1.0, seed=3)
    kinds = set(model.sources["kind"])
    assert kinds == {"point", "gaussian", "ring", "filament", "radio_galaxy"}
    f1, f2 = model.flux(1e-3), model.flux(2e-3)
    np.testing.assert_allclose(f1, model.sources["flux_ref"])
    np.testing.assert_allclose(np.log(f2 / f1) / np.log(2.0), -model.sources["alpha"])
    # components carry all the flux of their source
    frac = np.bincount(model.components["source"], weights=model.components["frac"])
    np.testing.assert_allclose(frac, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"size": -1}, "size"), ({"size": 50}, "size"), ({"center": (10, 95)}, "center"),
     ({"seed": "x"}, "seed"), ({"point_density": -3}, "point_density")],
)
def test_make_sky_bad_input(kwargs, argument):
    with pytest.raises(VanotebookInputError, match=argument):
        make_sky(**kwargs)


def test_observe_bad_survey():
    with pytest.raises(VanotebookInputError, match="survey: expected one of"):
        observe(make_sky(size=0.2), "xray")


@pytest.mark.parametrize("key", SURVEY_KEYS)
def test_survey_catalogue_scatter_matches_its_errors(sky, key):
    from vanotebook.sky import survey_catalogue

    obs = sky.observe(key)
    cat = survey_catalogue(obs, snr_limit=5.0, seed=4)
    assert len(cat) >= 20
    truth = obs.truth
    index = {int(s): i for i, s in enumerate(truth["source_id"])}
    rows = truth[[index[int(s)] for s in cat["source_id"]]]
    assert np.all(np.asarray(rows["in_survey"]))
    c = SkyCoord(cat["ra"], cat["dec"], unit="deg")
    t = SkyCoord(rows["ra"], rows["dec"], unit="deg")
    dra, ddec = t.spherical_offsets_to(c)
    pulls = np.concatenate([dra.arcsec / cat["ra_error"], ddec.arcsec / cat["dec_error"]])
    assert np.std(pulls) == pytest.approx(1.0, abs=0.2)
    assert abs(np.mean(pulls)) < 0.3
    fpull = (np.asarray(cat["flux"]) - np.asarray(rows["flux"])) / np.asarray(cat["flux_error"])
    assert np.std(fpull) == pytest.approx(1.0, abs=0.25)
    assert cat["snr"].min() >= 5.0
    # a higher limit keeps a subset
    assert set(survey_catalogue(obs, snr_limit=20.0)["source_id"]) < set(cat["source_id"])
