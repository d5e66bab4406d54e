"""Source detection against injected truth, the synthetic sky and peer answers."""

from __future__ import annotations

import inspect

import array_api_strict as xps
import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from vanotebook import VanotebookInputError
from vanotebook.detect import DetectionResult, SourceFinder, detect
from vanotebook.detect._background import background_maps
from vanotebook.detect._catalogue import CLASSES
from vanotebook.detect._fit import fit_gaussians
from vanotebook.detect._synth import injected_image
from vanotebook.units import FWHM_TO_SIGMA, Beam


@pytest.fixture(scope="module")
def injected():
    img, truth = injected_image((512, 512), 150, seed=3, min_separation=8.0)
    return img, truth, detect(img, psf_fwhm=3.0, extended=False)


def _match(cat, truth, radius=1.5):
    d, i = cKDTree(np.c_[truth["x"], truth["y"]]).query(
        np.c_[cat["x"].value, cat["y"].value])
    return d, i, d < radius


def test_completeness_reliability_and_accuracy(injected):
    _, truth, res = injected
    cat = res.catalogue
    d, i, real = _match(cat, truth)
    found = np.zeros(len(truth), bool)
    found[i[real]] = True
    bright = truth["snr"] >= 7
    assert found[bright].mean() >= 0.97
    hi = real & (truth["snr"][i] >= 20)
    ratio = cat["flux"].value[hi] / truth["flux"][i[hi]]
    assert abs(np.median(ratio) - 1) < 0.03
    assert np.median(d[hi]) < 0.1
    # quoted position errors are consistent with the scatter
    pull = (cat["x"].value[hi] - truth["x"][i[hi]]) / cat["x_err"].value[hi]
    assert 0.5 < np.std(pull) < 2.0


def test_score_raises_reliability_on_an_image_with_artefacts():
    """Sidelobe rings and stripes around bright sources (as calibration errors make
    them) pass the thresholds: raw reliability about 0.49. The calibrated score (the
    network's view of each cut-out with the fit's features and the sidelobe geometry)
    must lift it to >= 0.99 while losing at most 2.5% of the injected sources that were
    detected (and 2% of those above 7 sigma): 0.9916, with 2 of 120 lost, when this was
    written. (On the clean image of the other tests raw reliability is already 1, so
    the score was never tested there.) Mutations: the network's real probability
    replaced by a constant in the score's features: 0.975 (an earlier model); the
    model trained on a pipeline of its own instead of `detect`'s detections (the
    previous shipped model): 4 of 120 lost (3.3%).
    """
    img, truth = injected_image((512, 512), 150, fwhm=3.5, seed=3, min_separation=8.0,
                                artefacts=True)
    cat = detect(img, psf_fwhm=3.5, extended=False).catalogue
    _, i, real = _match(cat, truth)
    assert real.mean() < 0.6  # many artefacts detected
    kept = cat["score"] >= 0.5
    print("reliability", real.mean(), "->", real[kept].mean())
    assert real[kept].mean() >= 0.99
    found_raw = np.zeros(len(truth), bool)
    found_raw[i[real]] = True
    found = np.zeros(len(truth), bool)
    found[i[real & kept]] = True
    print("completeness", found_raw.mean(), "->", found.mean())
    assert found.mean() >= found_raw.mean() - 0.025
    bright = truth["snr"] >= 7
    assert found[bright].mean() >= found_raw[bright].mean() - 0.02
    # the classes: the injected sources are point sources
    assert (cat["class"][real] == "point").mean() >= 0.9
    assert (cat["class"][~real] == "artefact").mean() >= 0.7


def test_score_keeps_the_sources_outside_sidelobe_zones():
    """Over ten images with artefacts (1,222 injected sources detected), the score's cut
    (>= 0.5) keeps reliability >= 0.99, and loses almost nothing outside the sidelobe
    zones (the circles about each source of 50 sigma or more that hold the squares in
    which `_synth._artefacts` draws its rings and stripes): completeness there is
    unchanged. Inside them, where a real source can sit on a ring or a stripe, some
    are lost. When this was written: 1 of 703 lost outside, 30 of 519 inside,
    reliability 0.9925. Mutation: the previous shipped model (no ring or mirror
    features, trained on a pipeline of its own): 9 of 703 outside, 41 of 519 inside.
    """
    lost = {"outside": [0, 0], "inside": [0, 0]}
    real_kept = kept_n = 0
    for seed in range(3, 13):
        img, truth = injected_image((512, 512), 150, fwhm=3.5, seed=seed,
                                    min_separation=8.0, artefacts=True)
        cat = detect(img, psf_fwhm=3.5, extended=False).catalogue
        _, i, real = _match(cat, truth)
        kept = np.asarray(cat["score"]) >= 0.5
        real_kept += int((real & kept).sum())
        kept_n += int(kept.sum())
        found_raw = np.zeros(len(truth), bool)
        found_raw[i[real]] = True
        found = np.zeros(len(truth), bool)
        found[i[real & kept]] = True
        s = 3.5 * FWHM_TO_SIGMA
        bright = truth["peak"] >= 50
        d = np.hypot(truth["x"][:, None] - truth["x"][bright][None],
                     truth["y"][:, None] - truth["y"][bright][None])
        half = int(14 * s) + 4  # the half-width of the square each artefact is drawn in
        inside = ((d > 0) & (d <= half * np.sqrt(2))).any(axis=1)
        for name, zone in (("outside", ~inside), ("inside", inside)):
            lost[name][0] += int((found_raw & ~found & zone).sum())
            lost[name][1] += int((found_raw & zone).sum())
    print("lost", lost, "reliability", real_kept / kept_n)
    assert real_kept / kept_n >= 0.99
    assert lost["outside"][0] <= 0.005 * lost["outside"][1]
    assert lost["inside"][0] <= 0.07 * lost["inside"][1]


def test_blended_pair_is_deblended():
    fwhm = 3.0
    s = fwhm * FWHM_TO_SIGMA
    yy, xx = np.mgrid[0:64, 0:64]
    rng = np.random.default_rng(5)
    img = rng.normal(0, 1, (64, 64))
    truth = [(30.0, 32.0, 60.0), (30.0 + 1.6 * fwhm, 32.5, 40.0)]
    for x, y, a in truth:
        img += a * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / s**2)
    res = detect(img.astype(np.float32), psf_fwhm=fwhm, background=0.0, rms=1.0,
                 extended=False, classify=False)
    cat = res.catalogue
    assert len(cat) == 2 and set(cat["n_components"]) == {2}
    cat.sort("peak", reverse=True)
    for row, (x, y, a) in zip(cat, truth, strict=True):
        assert abs(row["x"].value - x) < 0.3 and abs(row["y"].value - y) < 0.3
        assert abs(row["peak"] / a - 1) < 0.1


def test_extended_source_recovered():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:200, 0:200]
    blob = 1.5 * np.exp(-0.5 * ((xx - 100) ** 2 / 15**2 + (yy - 90) ** 2 / 10**2))
    img = (blob + rng.normal(0, 1, blob.shape)).astype(np.float32)
    res = detect(img, psf_fwhm=3.0, background=0.0, rms=1.0, classify=False)
    ext = res.extended
    assert len(ext) >= 1
    best = ext[np.argmax(ext["flux"].value)]
    assert abs(best["x"].value - 100) < 5 and abs(best["y"].value - 90) < 5
    true_flux = 1.5 * 2 * np.pi * 15 * 10
    assert 0.6 < best["flux"].value / true_flux < 1.2
    assert len(best["contour_x"]) > 10


def test_tiled_equals_untiled(injected):
    img, _, res = injected
    tiled = detect(img, psf_fwhm=3.0, extended=False, tile=160, overlap=32)
    a, b = res.catalogue, tiled.catalogue
    assert len(a) == len(b)
    for name in ("x", "y", "peak", "flux", "major", "score"):
        np.testing.assert_allclose(np.asarray(b[name]), np.asarray(a[name]), rtol=1e-5,
                                   atol=1e-6)
    assert not np.any(b["cut_by_tile"])


def test_tiled_on_dask_client(injected):
    distributed = pytest.importorskip("distributed")
    img, _, res = injected
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=":0") as client:
        tiled = detect(img, psf_fwhm=3.0, extended=False, tile=256, overlap=32, client=client)
    np.testing.assert_allclose(tiled.catalogue["flux"].value, res.catalogue["flux"].value,
                               rtol=1e-5)


def test_radio_tile_against_truth(sky):
    obs = sky.observe("radio")
    tile = obs.tiles[0]
    res = detect(tile)
    cat = res.catalogue
    w = WCS(tile[0].header)
    x, y = w.world_to_pixel_values(obs.truth["ra"], obs.truth["dec"])
    inside = (x > 5) & (x < 494) & (y > 5) & (y < 494) & ~obs.truth["extended"]
    truth = obs.truth[inside]
    snr = truth["peak"].value / tile[0].header["NOISE"]
    idx, sep, _ = SkyCoord(truth["ra"], truth["dec"]).match_to_catalog_sky(
        SkyCoord(cat["ra"], cat["dec"]))
    ok = sep.arcsec < 5
    assert ok[snr >= 8].mean() >= 0.95
    hi = ok & (snr >= 20)
    ratio = cat["flux"][idx[hi]].to_value(u.Jy) / truth["flux"].quantity[hi].to_value(u.Jy)
    assert abs(np.median(ratio) - 1) < 0.05
    assert np.median(sep.arcsec[hi]) < 1.0
    assert cat["flux"].unit == u.Jy and cat["ra"].unit == u.deg
    assert set(cat["cls"]) <= set(CLASSES)
    assert cat["score"].min() >= 0 and cat["score"].max() <= 1


def test_deconvolution_matches_beam_deconvolve(sky):
    tile = sky.observe("radio").tiles[0]
    res = detect(tile, extended=False, classify=False)
    beam = Beam.from_header(tile[0].header)
    cat = res.catalogue
    rows = cat[(cat["major_deconv"].value > 0) & (cat["snr"] > 10)]
    assert len(rows) > 0
    for row in rows[:5]:
        fitted = Beam(row["major"], row["minor"], row["pa"])
        dec = fitted.deconvolve(beam)
        assert abs(dec.major.to_value(u.arcsec) - row["major_deconv"].value) < 1e-3 * max(
            1.0, row["major_deconv"].value)


def test_background_kernel_array_api_strict():
    img, _ = injected_image((512, 512), 40, seed=1, gradient=3.0)
    b1, r1, _ = background_maps(img, box=32)
    b2, r2, _ = background_maps(xps.asarray(img), box=32)
    np.testing.assert_allclose(np.asarray(b2), b1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(r2), r1, rtol=1e-5, atol=1e-5)
    # the background follows the injected shape (10 + 3 sin cos, the synth's formula), not
    # just its level: a constant map is 1.5-3 off over most of the image
    yy, xx = np.mgrid[0:512, 0:512]
    true = 10 + 3.0 * np.sin(2 * np.pi * xx / (1.3 * 512)) * np.cos(2 * np.pi * yy / (1.7 * 512))
    err = np.abs(b1 - true)
    assert np.percentile(err, 95) < 0.3 and np.median(err) < 0.1
    assert abs(np.median(r1) - 1) < 0.05


def test_fit_kernel_array_api_strict():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-6:7, -6:7].astype(float)
    X = np.stack([xx.ravel()] * 3)
    Y = np.stack([yy.ravel()] * 3)
    D = 20 * np.exp(-0.5 * ((X - 0.3) ** 2 / 1.5**2 + (Y + 0.2) ** 2 / 1.2**2))
    D = D + rng.normal(0, 1, D.shape)
    W = np.ones_like(D)
    p0 = np.tile(np.array([15.0, 0, 0, 0.5, 0.0, 0.5]), (3, 1, 1))
    box = np.tile(np.array([-6.5, 6.5, -6.5, 6.5]), (3, 1))
    out_np = fit_gaussians(X, Y, D, W, p0, box, smin2=0.2, smax2=np.full(3, 200.0))
    out_x = fit_gaussians(*(xps.asarray(v) for v in (X, Y, D, W, p0, box)), smin2=0.2,
                          smax2=xps.asarray(np.full(3, 200.0)))
    for a, b in zip(out_np, out_x, strict=True):
        np.testing.assert_allclose(np.asarray(b, dtype=float), np.asarray(a, dtype=float),
                                   rtol=1e-4, atol=1e-6)
    p = out_np[0]
    assert np.all(np.abs(p[:, 0, 1] - 0.3) < 0.3) and np.all(np.abs(p[:, 0, 0] - 20) < 3)


@pytest.mark.parametrize("xp", [np, xps], ids=["numpy", "strict"])
def test_fit_goes_on_with_the_islands_still_iterating(xp, monkeypatch):
    """Islands that converge early (bright, well started) leave the loop to the slow ones
    (faint, badly started): the compacted loop gives the same bytes as the whole batch,
    and runs fewer islands. Mutation: a compacted island's damping or parameters not
    carried over (restarted) changes the result."""
    import vanotebook.detect._fit as fit

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[-6:7, -6:7].astype(float)
    n = 40
    amp = np.where(np.arange(n) < 30, 50.0, 3.0)  # 30 bright, 10 faint
    x0, y0 = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    X, Y = np.stack([xx.ravel()] * n), np.stack([yy.ravel()] * n)
    D = amp[:, None] * np.exp(-0.5 * ((X - x0[:, None]) ** 2 + (Y - y0[:, None]) ** 2) / 1.4**2)
    D = D + rng.normal(0, 1, D.shape)
    W = np.ones_like(D)
    start = np.where(np.arange(n)[:, None] < 30, [[40.0, 0, 0, 0.5, 0.0, 0.5]],
                     [[20.0, 2.0, -2.0, 2.0, 0.3, 0.2]])
    p0, box = start[:, None, :], np.tile(np.array([-6.5, 6.5, -6.5, 6.5]), (n, 1))
    args = [xp.asarray(v) for v in (X, Y, D, W, p0, box)]
    sizes = []
    iterate = fit._iterate
    monkeypatch.setattr(fit, "_iterate", lambda xp_, state, *a: sizes.append(
        state["p"].shape[0]) or iterate(xp_, state, *a))
    whole = fit_gaussians(*args, smin2=0.2, smax2=xp.asarray(np.full(n, 200.0)), compact=False)
    compacted = fit_gaussians(*args, smin2=0.2, smax2=xp.asarray(np.full(n, 200.0)))
    assert sizes[0] == n and sizes[1] == n and min(sizes[2:]) < n / 2
    for a, b in zip(whole, compacted, strict=True):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))


# ----------------------------------------------------------------------------- bad inputs
def test_all_nan_raises():
    with pytest.raises(VanotebookInputError, match="image"):
        detect(np.full((64, 64), np.nan, np.float32))


def test_constant_image_gives_empty_table_with_all_columns(injected):
    res = detect(np.full((64, 64), 3.0, np.float32))
    assert len(res.catalogue) == 0 and len(res.extended) == 0
    assert set(injected[2].catalogue.colnames) == set(res.catalogue.colnames)


def test_no_wcs_gives_pixel_coordinates(injected):
    cat = injected[2].catalogue
    assert np.all(np.isnan(cat["ra"].value)) and cat["major"].unit == u.pix
    assert cat["flux"].unit == u.dimensionless_unscaled  # missing unit: pixel sums


def test_missing_unit_in_header(sky):
    hdu = sky.observe("radio").tiles[0][0].copy()
    del hdu.header["BUNIT"]
    cat = detect(hdu, extended=False, classify=False).catalogue
    assert len(cat) > 10 and cat["flux"].unit == u.dimensionless_unscaled
    assert np.all(np.isfinite(cat["ra"].value))


def test_jy_per_beam_without_beam_raises(sky):
    hdu = sky.observe("radio").tiles[0][0].copy()
    for key in ("BMAJ", "BMIN", "BPA"):
        del hdu.header[key]
    with pytest.raises(VanotebookInputError, match="beam"):
        detect(hdu)


def test_nan_holes(injected):
    img, truth, res = injected
    holed = img.copy()
    holed[100:200, 100:200] = np.nan
    cat = detect(holed, psf_fwhm=3.0, extended=False, classify=False).catalogue
    x, y = cat["x"].value, cat["y"].value
    assert not np.any((x > 101) & (x < 198) & (y > 101) & (y < 198))
    outside = ~((truth["x"] > 95) & (truth["x"] < 205) & (truth["y"] > 95) & (truth["y"] < 205))
    _, _, real = _match(cat, truth[outside])
    assert real.sum() >= 0.9 * len(_match(res.catalogue, truth[outside])[2].nonzero()[0])


@pytest.mark.parametrize("shape", [(40, 40), (30, 100), (100, 30)])
def test_image_smaller_than_a_background_box(shape):
    """An image smaller than ``box`` (64) gets cells clipped to it, not rms 0: the bright
    source injected in it is found at its position with its flux (truth), and its rms is
    the injected noise."""
    rng = np.random.default_rng(sum(shape))
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    x0, y0, amp, s = nx / 2 + 0.3, ny / 2 - 0.4, 40.0, 3.0 * FWHM_TO_SIGMA
    img = (rng.normal(0, 1, shape) + 7.0
           + amp * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * s * s))).astype(np.float32)
    res = detect(img, psf_fwhm=3.0)
    assert abs(float(np.median(res.rms)) - 1.0) < 0.3
    cat = res.catalogue
    assert len(cat) == 1
    assert np.hypot(cat["x"].value[0] - x0, cat["y"].value[0] - y0) < 0.3
    assert abs(cat["flux"].value[0] / (2 * np.pi * s * s * amp) - 1) < 0.1
    assert len(res.extended) == 0
    flat = detect(np.full(shape, 3.0, np.float32), psf_fwhm=3.0)  # constant: still empty
    assert len(flat.catalogue) == 0 and len(flat.extended) == 0


@pytest.mark.parametrize("kwargs, argument", [
    ({"seed_threshold": -1}, "seed_threshold"),
    ({"merge_threshold": 6.0}, "merge_threshold"),
    ({"min_pixels": 0}, "min_pixels"),
    ({"device": "tpu"}, "device"),
    ({"rms": np.ones((3, 3))}, "rms"),
])
def test_bad_arguments(kwargs, argument):
    with pytest.raises(VanotebookInputError, match=argument):
        detect(np.zeros((32, 32), np.float32), **kwargs)


def test_bad_image_form():
    with pytest.raises(VanotebookInputError, match="image"):
        detect([1, 2, 3])


def test_keyword_only_and_finder():
    sig = inspect.signature(detect)
    assert all(p.kind is p.KEYWORD_ONLY for name, p in sig.parameters.items() if name != "image")
    with pytest.raises(VanotebookInputError, match="sigma"):
        SourceFinder(sigma=3)
    finder = SourceFinder(seed_threshold=6.0, extended=False, classify=False)
    assert "seed_threshold=6.0" in repr(finder)


# ----------------------------------------------------------------------------- outputs
def test_write_products(sky, tmp_path):
    from astropy.io import fits
    from regions import Regions

    from vanotebook.io import read_catalogue

    res = SourceFinder()(sky.observe("radio").tiles[0])
    assert isinstance(res, DetectionResult)
    paths = res.write(tmp_path / "out")
    cat = read_catalogue(paths["catalogue"])
    assert len(cat) == len(res.catalogue)
    with fits.open(paths["residual"]) as hdul:
        assert "PROVENANCE" in hdul and hdul[0].data.shape == res.residual.shape
    regs = Regions.read(str(paths["regions"]), format="ds9")
    assert len(regs) == len(res.catalogue) + len(res.extended)
    assert (paths["catalogue"].parent / "catalogue.ecsv.prov.json").exists() or any(
        p.name.endswith(".json") for p in paths["catalogue"].parent.iterdir())
    assert "vanotebook.detect" in str(res.catalogue.meta["provenance"])
    # the residual has the compact sources removed: its rms is near the noise
    noise = sky.observe("radio").tiles[0][0].header["NOISE"]
    assert np.nanstd(res.residual) < 3 * noise


def test_pixel_regions_follow_the_source_elongation():
    """Without a WCS, a region's major axis points along the source (PA from +y toward -x)."""
    import math

    from vanotebook.detect import detect as run

    yy, xx = np.mgrid[0:96, 0:96].astype(float)
    t = math.radians(30.0)  # major axis 30 deg from +x
    u_ = (xx - 48) * math.cos(t) + (yy - 48) * math.sin(t)
    v_ = -(xx - 48) * math.sin(t) + (yy - 48) * math.cos(t)
    data = 50 * np.exp(-0.5 * ((u_ / 4.0) ** 2 + (v_ / 1.6) ** 2))
    data += np.random.default_rng(3).normal(0, 1, data.shape)
    result = run(data, extended=False, classify=False, psf_fwhm=3.0)
    (region,) = [r for r in result.regions if type(r).__name__ == "EllipsePixelRegion"]
    a = math.radians(float(region.angle.to_value("deg")))
    # the region's height (major axis) lies along (-sin a, cos a)
    direction = math.degrees(math.atan2(math.cos(a), -math.sin(a))) % 180.0
    assert direction == pytest.approx(30.0, abs=3.0)


def test_faint_sources_in_small_islands_keep_the_psf_shape():
    """Small islands fit only peak and centre: no run-away sizes pushed to the island edge."""
    from vanotebook.detect import detect as run

    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:200, 0:200].astype(float)
    sigma = 3.0 / 2.3548
    truth = [(20.0 + 40 * i + rng.uniform(-0.5, 0.5), 20.0 + 40 * j + rng.uniform(-0.5, 0.5))
             for i in range(4) for j in range(4)]
    data = rng.normal(0, 1, xx.shape)
    for x0, y0 in truth:
        data += 6.5 * np.exp(-0.5 * ((xx - x0) ** 2 + (yy - y0) ** 2) / sigma**2)
    cat = run(data, extended=False, classify=False, psf_fwhm=3.0).catalogue
    assert len(cat) >= 12
    tx, ty = np.array(truth).T
    for row in cat:
        d = np.hypot(tx - row["x"].value, ty - row["y"].value)
        assert d.min() < 0.6  # every detection is a real source, well placed
        assert row["major"].value < 4.5  # FWHM near the 3 px PSF, not a run-away fit


# ----------------------------------------------------------------------------- fused kernels
def test_fused_snr_pass_matches_array_api_background():
    """The numba one-pass maps equal the array-API spline maps (array_api_strict input)."""
    from vanotebook.detect._background import background_grids
    from vanotebook.detect._fused import HAVE_FUSED, snr_pass

    if not HAVE_FUSED:
        pytest.skip("numba not installed")
    for shape, box in (((200, 150), 32), ((300, 70), 32), ((128, 200), 64), ((100, 40), 32)):
        img, _ = injected_image(shape, 10, seed=2, gradient=4.0)
        img[5:9, 7:20] = np.nan
        ref_b, ref_r, _ = background_maps(xps.asarray(img), box=box)
        ref_b, ref_r = np.asarray(ref_b), np.asarray(ref_r)
        bkg, rms, sub, snr, above = snr_pass(img, merge=2.6,
                                             grids=background_grids(img, box=box), box=box)
        np.testing.assert_allclose(bkg, ref_b, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(rms, ref_r, rtol=1e-5, atol=1e-5)
        ref_snr = (img - ref_b) / ref_r
        np.testing.assert_allclose(snr, ref_snr, rtol=1e-4, atol=1e-4)
        assert np.all(np.isnan(sub[5:9, 7:20])) and not above[5:9, 7:20].any()
        assert np.array_equal(above[np.isfinite(ref_snr)],
                              (ref_snr >= 2.6)[np.isfinite(ref_snr)])


def test_fused_model_matches_host_loop(monkeypatch):
    import vanotebook.detect._fused as fused
    from vanotebook.detect._fit import gaussian_image

    if not fused.HAVE_FUSED:
        pytest.skip("numba not installed")
    monkeypatch.setattr(fused, "FUSED_PIXELS", 0)  # the compiled kernel at any size
    rng = np.random.default_rng(4)
    params = np.c_[rng.uniform(1, 10, 30), rng.uniform(-3, 70, 30), rng.uniform(-3, 50, 30),
                   np.full(30, 0.5), rng.uniform(-0.1, 0.1, 30), np.full(30, 0.3)]
    fast = gaussian_image((48, 64), params)
    slow = np.asarray(gaussian_image((48, 64), params, xp=xps))
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)
    assert fast.max() > 5


# ----------------------------------------------------------------------------- nested sources
def _compact_on_extended(seed, offset=4.0, peak=8.0, fwhm=3.0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:96, 0:96]
    s = fwhm * FWHM_TO_SIGMA
    img = rng.normal(0, 1, (96, 96))
    img += 25 * np.exp(-0.5 * ((xx - 48) ** 2 + (yy - 48) ** 2) / 6.0**2)
    cx, cy = 48 + offset, 48.0
    img += peak * np.exp(-0.5 * ((xx - cx) ** 2 + (yy - cy) ** 2) / s**2)
    return img.astype(np.float32), (cx, cy)


def test_nested_blobs_find_compact_sources_on_extended_ones():
    """A faint compact source on the slope of an extended one: no local maximum of its
    own in the image, so only the LoG blob finder seeds a component there."""
    found = {False: [], True: []}
    for seed in range(8):
        img, (cx, cy) = _compact_on_extended(seed)
        for nested in (False, True):
            cat = detect(img, psf_fwhm=3.0, background=0.0, rms=1.0, extended=False,
                         classify=False, nested=nested, max_components=4).catalogue
            d = np.hypot(cat["x"].value - cx, cat["y"].value - cy)
            found[nested].append(d.min() < 1.0)
            assert np.all(cat["n_components"] <= 4)  # still bounded
    assert np.mean(found[True]) >= 0.75
    assert np.mean(found[True]) >= np.mean(found[False]) + 0.3


# ----------------------------------------------------------------------------- PA on the sky
def test_pa_is_east_of_icrs_north_on_galactic_images(sky):
    """ir24 is a Galactic CAR map: PAs must be measured from ICRS north, as the truth's."""
    from vanotebook.detect._catalogue import north_rotation

    obs = sky.observe("ir24")
    truth = obs.truth
    checked = 0
    for tile in obs.tiles:
        cat = detect(tile, extended=False, classify=False).catalogue
        idx, sep, _ = SkyCoord(truth["ra"], truth["dec"]).match_to_catalog_sky(
            SkyCoord(cat["ra"], cat["dec"]))
        elongated = (sep.arcsec < 2) & (truth["major_obs"].value > 1.3 * truth["minor_obs"].value)
        for j in np.flatnonzero(elongated):
            row = cat[idx[j]]
            diff = (row["pa"].value - truth["pa_obs"][j] + 90.0) % 180.0 - 90.0
            assert abs(diff) < max(3 * row["pa_err"].value, 3.0)
            rot = north_rotation(WCS(tile[0].header).celestial, row["x"].value, row["y"].value)
            assert abs(rot[0]) > 20  # Galactic and ICRS north differ a lot here
            checked += 1
    assert checked >= 1


# ----------------------------------------------------------------------------- extended sources
def test_extended_sources_of_the_demo_sky_whole_with_their_flux(sky):
    """Rings and filaments have several maxima: region merging keeps each one source, so
    the matched extended source carries the true total flux (ir24 tile 1 holds a ring, a
    filament and a Gaussian blob)."""
    obs = sky.observe("ir24")
    truth = obs.truth
    tile = obs.tiles[1]
    res = detect(tile)
    ext = res.extended
    pos = SkyCoord(truth["ra"], truth["dec"])
    w = WCS(tile[0].header).celestial
    x, y = w.world_to_pixel(pos)
    ny, nx = tile[0].data.shape
    on = ((x > 0) & (x < nx - 1) & (y > 0) & (y < ny - 1) & np.asarray(truth["extended"])
          & (truth["flux"].quantity.to_value(u.Jy) > 0.2))
    assert on.sum() >= 3
    extent = np.nanmax([np.nan_to_num(truth[c].quantity.to_value(u.arcsec))
                        for c in ("major_obs", "radius")], axis=0)
    extent = np.maximum(extent, np.nan_to_num(truth["length"].quantity.to_value(u.arcsec)) / 2)
    for j in np.flatnonzero(on):
        d = pos[j].separation(SkyCoord(ext["ra"], ext["dec"])).arcsec
        k = int(np.argmin(d))
        assert d[k] < max(extent[j], 30.0), truth["kind"][j]
        ratio = ext["flux_total"][k].to_value(u.Jy) / truth["flux"].quantity[j].to_value(u.Jy)
        assert abs(ratio - 1) < 0.25, (truth["kind"][j], ratio)
    assert set(ext.colnames) >= {"flux", "flux_compact", "flux_total", "n_compact"}
    assert "extended_id" in res.catalogue.colnames


def test_pure_noise_gives_no_extended_sources():
    """Ripples of smoothed noise pass the smoothed threshold; their flux is a few times its
    error at most, so the flux S/N cut removes them."""
    noise = np.random.default_rng(7).normal(0, 1, (1024, 1024)).astype(np.float32)
    res = detect(noise, psf_fwhm=3.0, classify=False)
    assert len(res.extended) == 0
    assert len(res.catalogue) <= 3  # 5 sigma peaks in 1e6 pure-noise pixels: about none


def _diffuse_image(seed=5, shape=(300, 360)):
    """Noise with broad blobs, a ring and a pair of touching blobs (several maxima)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]].astype(float)
    img = rng.normal(0, 1, shape)
    for x0, y0, s, a in ((60, 60, 8, 3.0), (200, 80, 5, 4.0), (214, 92, 5, 3.5),
                         (300, 220, 12, 1.5)):
        img += a * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * s * s))
    r = np.hypot(xx - 120, yy - 210)
    img += 2.0 * np.exp(-((r - 30) ** 2) / (2 * 4.0**2))
    return img.astype(np.float32)


def test_segmentation_equals_whole_image_watershed(monkeypatch):
    """The segmentation works part by part (one marker: the part as it is; several:
    watershed in the part's box); it equals scikit-image's watershed of the whole map,
    merged and size-filtered the same way, and the compiled and scipy paths agree."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    import vanotebook.detect._fused as fused
    from vanotebook.detect._extended import merge_regions, segment_map

    img = _diffuse_image()
    rms = np.ones_like(img)
    psf_sigma = 3.0 * FWHM_TO_SIGMA
    monkeypatch.setattr(fused, "FUSED_PIXELS", 0)  # compiled kernels (numba) at this size
    seg, z = segment_map(img, rms, psf_sigma=psf_sigma)
    # reference: the whole-image algorithm (float64 smoothing, maximum filter, watershed)
    s = ndi.gaussian_filter(img.astype(np.float64), 2 * psf_sigma, mode="nearest")
    med = np.median(s)
    zr = (s - med) / (1.4826 * np.median(np.abs(s - med)))
    np.testing.assert_allclose(z, zr, atol=1e-4)
    seeds = zr >= 3.0
    size = max(3, int(8 * psf_sigma) | 1)
    peaks = (zr == ndi.maximum_filter(zr, size=size, mode="nearest")) & seeds
    reach = round(2.5 * 2 * psf_sigma)  # growth limit: 2.5 smoothing sigmas from the seeds
    low, _ = ndi.label((zr >= 1.5) & ndi.maximum_filter(seeds, size=2 * reach + 1))
    grown = np.isin(low, np.unique(low[seeds])[1:])
    ref = watershed(-zr, ndi.label(peaks)[0], mask=grown)
    ref = merge_regions(ref, zr, saddle=0.5, peaks=peaks)
    core = np.bincount(ref[seeds], minlength=ref.max() + 1)
    keep = core >= 5 * 2 * np.pi * psf_sigma**2
    keep[0] = False
    ref = np.where(keep[ref], ref, 0)
    assert 3 <= len(np.unique(ref)) - 1 <= 6
    # the same partition of the pixels (labels may be numbered differently)
    pairs = np.unique(np.c_[seg.ravel(), ref.ravel()], axis=0)
    assert len(pairs) == len(np.unique(ref)) and np.all((pairs[:, 0] == 0) == (pairs[:, 1] == 0))
    # the ring and the touching pair each stay one region
    assert seg[210, 150] == seg[210, 90] == seg[180, 120] > 0
    assert seg[80, 200] == seg[92, 214] > 0
    if fused.HAVE_FUSED:
        monkeypatch.setattr(fused, "HAVE_FUSED", False)
        seg2, z2 = segment_map(img, rms, psf_sigma=psf_sigma)
        np.testing.assert_allclose(z2, z, atol=1e-4)
        np.testing.assert_array_equal(seg2, seg)


@pytest.mark.skipif(not __import__("vanotebook.detect._fused", fromlist=["x"]).HAVE_FUSED,
                    reason="numba not installed")
def test_fused_segmentation_kernels_match_scipy():
    from scipy import ndimage as ndi

    from vanotebook.detect._fused import (
        box_slices,
        gaussian_smooth,
        keep_near,
        label_boxes,
        local_peaks,
    )

    img = _diffuse_image(seed=9)
    for sigma in (0.8, 2.5, 6.0):
        np.testing.assert_allclose(gaussian_smooth(img, sigma),
                                   ndi.gaussian_filter(img.astype(np.float64), sigma,
                                                       mode="nearest"), atol=2e-5)
    z = gaussian_smooth(img, 2.5)
    ys, xs = np.nonzero(z > 0.5)
    expect = (z == ndi.maximum_filter(z, size=9, mode="nearest"))[ys, xs]
    assert expect.sum() >= 3
    np.testing.assert_array_equal(local_peaks(z, ys, xs, 9), expect)
    lab, n = ndi.label(z > 0.3)
    boxes = label_boxes(lab, n)
    assert [box_slices(boxes, k) for k in range(1, n + 1)] == ndi.find_objects(lab)
    seeds = z > 0.8
    for reach in (1, 4, 11):
        grown = z > 0.2
        expect = grown & ndi.maximum_filter(seeds, size=2 * reach + 1, mode="constant")
        keep_near(grown, seeds, reach)
        np.testing.assert_array_equal(grown, expect)


def test_growth_stays_near_the_source(sky):
    """fir250 tile 1: ring 196 lies on the edge of a background ripple that the 64-pixel
    background boxes leave in the residual, joined to it above the growth threshold. The
    growth limit keeps the ripple out: the ring is found at its position with its true
    flux; without the limit it is lost in a larger region that holds the ripple too."""
    from vanotebook.detect._extended import segment_extended
    from vanotebook.sky import SURVEYS

    obs = sky.observe("fir250")
    j = int(np.flatnonzero(obs.truth["source_id"] == 196)[0])
    assert obs.truth["kind"][j] == "ring"
    radius = obs.truth["radius"].quantity[j].to_value(u.arcsec)
    true_flux = obs.truth["flux"].quantity[j].to_value(u.Jy)
    tile = obs.tiles[1]
    res = detect(tile)
    ring = SkyCoord(obs.truth["ra"][j], obs.truth["dec"][j], unit="deg")
    d = ring.separation(SkyCoord(res.extended["ra"], res.extended["dec"])).arcsec
    k = int(np.argmin(d))
    assert d[k] < radius
    ratio = res.extended["flux_total"][k].to_value(u.Jy) / true_flux
    assert abs(ratio - 1) < 0.3, ratio
    w = WCS(tile[0].header).celestial
    survey = SURVEYS["fir250"]
    pix = survey.pixel_scale  # arcsec
    psf_sigma = survey.beam.major.to_value(u.arcsec) * FWHM_TO_SIGMA / pix
    _, regions = segment_extended(res.residual, res.rms, psf_sigma=psf_sigma, grow_radius=None)
    xs, ys = np.array([r["x"] for r in regions]), np.array([r["y"] for r in regions])
    x0, y0 = w.world_to_pixel(ring)
    assert np.all(np.hypot(xs - x0, ys - y0) * pix > radius)


def test_shipped_reliability_model_is_remade_from_its_seed():
    """The score's model ships as arrays (nothing is trained at first use);
    `train_reliability(0)` remakes it: the same probabilities on another image's
    detections (identical arrays on this machine; a tolerance for other CPUs)."""
    from vanotebook.detect._classify import (
        _detections,
        classify_sources,
        reliability_model,
        train_reliability,
    )

    remade = train_reliability(0)
    shipped = reliability_model()
    feat, _ = _detections(np.random.default_rng(99))
    np.testing.assert_allclose(classify_sources(feat, model=remade),
                               classify_sources(feat, model=shipped), atol=0.02)
    assert remade["roots"].shape == shipped["roots"].shape


def test_grown_islands_are_expand_labels_on_the_pixels_near_islands():
    """Islands grow by a radius into the nearest island's free pixels, visiting only the
    pixels near islands: the same pixels as scikit-image's `expand_labels` (a distance
    transform of the whole box) and the same island for every pixel except the rare
    equidistant ones (under 0.3%). Mutations: a strict radius (``d2 < radius**2``), or
    the farthest island instead of the nearest: pixels or labels differ."""
    from skimage.segmentation import expand_labels

    from vanotebook.detect._islands import grow_islands

    rng = np.random.default_rng(1)
    ny, nx = 300, 400
    img = np.zeros((ny, nx), np.int64)
    for k in range(1, 150):
        y, x = rng.integers(0, ny), rng.integers(0, nx)
        img[max(0, y - 2):y + 3, max(0, x - 1):x + 2] = k
    py, px = np.nonzero(img)
    idx, lab = py * nx + px, img[py, px]
    valid = rng.random((ny, nx)) > 0.05
    for radius in (1.5, 3.0, 4.2):
        ref = expand_labels(img, distance=radius)
        ref[~valid] = 0
        gidx, glab = grow_islands(idx, lab, (ny, nx), radius, valid)
        assert np.all(np.diff(glab) >= 0)  # grouped by island
        np.testing.assert_array_equal(np.sort(gidx), np.flatnonzero(ref))
        assert np.mean(ref.ravel()[gidx] != glab) < 0.003


@pytest.mark.parametrize("n_cells, box, n", [(4, 64, 256), (7, 32, 230), (12, 50, 600)])
def test_spline_weights_are_scipys_natural_cubic_spline(n_cells, box, n):
    """The background's interpolation weights (no scipy.interpolate import: it cost a
    fresh process 0.25 s) equal scipy's natural ``CubicSpline`` through the cell centres,
    clamped beyond the outer ones. Mutation: the second-derivative terms dropped (a
    linear interpolation) fails it."""
    from scipy.interpolate import CubicSpline

    from vanotebook.detect._background import spline_weights

    centres = box * (np.arange(n_cells) + 0.5) - 0.5
    pix = np.clip(np.arange(n, dtype=float), centres[0], centres[-1])
    want = CubicSpline(centres, np.eye(n_cells), bc_type="natural", axis=0)(pix)
    np.testing.assert_allclose(spline_weights(n_cells, box, n), want, rtol=0, atol=1e-12)
