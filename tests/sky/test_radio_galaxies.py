"""The demo sky's radio galaxies: in the model, in the radio images only, and classified.

The galaxies are drawn by `vanotebook.classify.radio_galaxy` in units of the
radio beam (FRII lobes with hotspots, FRI jets, bent and head-tail tails).
Their truth carries the class (``morph``); `Observation.source_at` says which
true source a detection sits on. Mutation: without the galaxies
(``radio_galaxy_density=0``) the counts below and the classification test fail.
"""

from __future__ import annotations

import math
from collections import defaultdict

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from vanotebook.sky import SURVEYS, make_sky
from vanotebook.sky._geometry import from_tangent

RG = ("fr2", "fr1", "bent")
RADIO_BEAM = math.sqrt(SURVEYS["radio"].beam.major.to_value(u.arcsec)
                       * SURVEYS["radio"].beam.minor.to_value(u.arcsec))


def _galaxies(model):
    return np.flatnonzero(np.asarray(model.sources["kind"]) == "radio_galaxy")


def _component_positions(model, rows):
    comp = model.components
    sel = np.isin(comp["source"], rows)
    ra, dec = from_tangent(comp["x"][sel], comp["y"][sel], *model.center)
    return comp["source"][sel], ra, dec


def test_demo_sky_holds_radio_galaxies_of_every_class(sky):
    model = sky.model
    src = model.sources
    rows = _galaxies(model)
    assert 15 <= len(rows) <= 30
    morph = np.asarray(src["morph"])[rows]
    assert set(morph) == set(RG)
    assert min(np.sum(morph == k) for k in RG) >= 4
    assert np.all(src["extended"][rows])
    # every other source keeps a plain class
    assert set(np.asarray(src["morph"])[np.asarray(src["kind"]) != "radio_galaxy"]) <= {
        "point", "extended"}
    # 3-7 beams across: the components' extent about the position, in radio beams
    comp = model.components
    for r in rows:
        c = comp["source"] == r
        x0, y0 = src["x"][r], src["y"][r]
        d = np.hypot(comp["x"][c] - x0, comp["y"][c] - y0) * 3600 / RADIO_BEAM
        assert 1.2 <= d.max() <= 7.5, (src["morph"][r], d.max())
        assert c.sum() >= 3
    # the components carry all the flux; steep synchrotron spectra
    frac = np.bincount(comp["source"], weights=comp["frac"], minlength=len(src))
    np.testing.assert_allclose(frac[rows], 1.0)
    assert np.all(np.asarray(src["alpha"])[rows] <= -0.6)


def test_galaxies_keep_clear_of_the_other_sources(sky):
    model = sky.model
    src = model.sources
    rows = _galaxies(model)
    pos = SkyCoord(src["ra"], src["dec"], unit="deg")
    radius = np.asarray(src["major"], float) / 2  # arcsec; a galaxy's major is its diameter
    for r in rows:
        sep = pos[r].separation(pos).arcsec
        others = np.arange(len(src)) != r
        # outside the galaxy's circle, with a margin of several beams, for points at least
        assert np.all(sep[others] > radius[r] + 4 * RADIO_BEAM)


def test_without_radio_galaxies_the_rest_of_the_sky_is_unchanged():
    with_rg = make_sky(size=0.5, seed=7)
    without = make_sky(size=0.5, seed=7, radio_galaxy_density=0)
    assert len(_galaxies(without)) == 0 and len(_galaxies(with_rg)) > 0
    n = len(without.sources)
    for name in ("ra", "dec", "flux_ref", "alpha", "major", "kind"):
        assert np.array_equal(np.asarray(with_rg.sources[name])[:n],
                              np.asarray(without.sources[name]))
    assert np.array_equal(with_rg.diffuse["kx"], without.diffuse["kx"])
    # and the galaxies are reproducible from the seed
    again = make_sky(size=0.5, seed=7)
    for name in ("ra", "dec", "flux_ref", "major", "morph"):
        assert np.array_equal(np.asarray(with_rg.sources[name]), np.asarray(again.sources[name]))
    for name in ("x", "y", "frac", "cxx", "cxy", "cyy"):
        assert with_rg.components[name].tobytes() == again.components[name].tobytes()


def test_radio_galaxies_are_bright_in_radio_and_invisible_in_the_infrared(sky):
    model = sky.model
    rows = _galaxies(model)
    owner, ra, dec = _component_positions(model, rows)
    peak = {}
    for key in SURVEYS:
        snr = np.asarray(sky.observe(key).source_at(ra, dec, min_snr=0)["snr"])
        peak[key] = np.array([snr[owner == r].max() for r in rows])
    assert peak["radio"].min() >= 10
    # below the noise rms in the infrared: nothing there to detect
    assert peak["ir24"].max() < 1.0
    assert peak["fir250"].max() < 1.0
    assert np.median(peak["fir250"]) < 0.2
    truth = sky.observe("radio").truth
    assert list(np.asarray(truth["morph"])[rows]) == list(np.asarray(model.sources["morph"])[rows])


def test_radio_galaxy_flux_in_the_image_matches_truth(sky):
    """Aperture sums on the radio tiles give each galaxy's true flux: the beam units,
    the component fluxes and the rendering agree."""
    obs = sky.observe("radio")
    truth = obs.truth
    rows = _galaxies(sky.model)
    pix = obs.survey.pixel_scale
    beam_pix_area = obs.survey.beam.sr.to_value(u.sr) / (pix / 206264.806) ** 2
    pulls, measured = [], 0
    for r in rows:
        best = None
        for tile in obs.tiles:
            w = WCS(tile[0].header).celestial
            x, y = w.world_to_pixel_values(truth["ra"][r], truth["dec"][r])
            ny, nx = tile[0].data.shape
            room = min(x, y, nx - 1 - x, ny - 1 - y)
            if best is None or room > best[0]:
                best = (room, tile[0].data, float(x), float(y))
        room, data, x, y = best
        rad = float(truth["major"][r]) / 2 / pix + 2 * RADIO_BEAM / pix
        if room < rad + 12:
            continue
        yy, xx = np.indices(data.shape)
        d = np.hypot(xx - x, yy - y)
        ap, ann = d <= rad, (d > rad + 2) & (d <= rad + 10)
        flux = (data[ap].sum() - np.median(data[ann]) * ap.sum()) / beam_pix_area
        # noise of the aperture sum: correlated over a beam, ~ rms * sqrt(n_beams)
        sigma = obs.survey.noise * math.sqrt(ap.sum() / beam_pix_area) * 1.5
        pulls.append((flux - float(truth["flux"][r])) / max(sigma, 0.03 * float(truth["flux"][r])))
        measured += 1
    assert measured >= 10
    assert np.abs(pulls).max() < 5, np.round(pulls, 2)


def test_source_at_names_the_source_under_a_position(sky):
    obs = sky.observe("radio")
    truth = obs.truth
    bright = np.flatnonzero((truth["kind"] == "point") & (truth["peak"].value > 20 * 2e-4))[:5]
    got = obs.source_at(truth["ra"][bright], truth["dec"][bright])
    assert list(got["source_id"]) == list(truth["source_id"][bright])
    assert set(got["morph"]) == {"point"}
    # far from everything (a corner of the field): no source
    far = obs.source_at([float(truth["ra"].min()) - 1.0], [float(truth["dec"].min()) - 1.0])
    assert far["source_id"][0] == -1 and far["morph"][0] == "artefact"
    # a lobe or knot of a galaxy, away from its position, still belongs to the galaxy
    model = sky.model
    rows = _galaxies(model)
    owner, ra, dec = _component_positions(model, rows)
    got = obs.source_at(ra, dec, min_snr=5)
    found = got["source_id"] >= 0
    assert np.mean(got["source_id"][found] == owner[found]) == 1.0


@pytest.fixture(scope="module")
def radio_classes(sky):
    """Every radio tile detected; each detection kept once (on the tile where it lies
    farthest from the edges), with its class and the true class under it."""
    from vanotebook.detect import detect

    obs = sky.observe("radio")
    rows = []
    for tile in obs.tiles:
        cat = detect(tile).catalogue
        ny, nx = tile[0].data.shape
        x, y = cat["x"].value, cat["y"].value
        room = np.minimum.reduce([x, y, nx - 1 - x, ny - 1 - y])
        under = obs.source_at(cat["ra"], cat["dec"])
        for i in np.flatnonzero(room > 10):
            rows.append((room[i], cat["ra"][i].value, cat["dec"][i].value, str(cat["class"][i]),
                         str(under["morph"][i]), int(under["source_id"][i])))
    rows.sort(key=lambda r: -r[0])
    kept, pos = [], np.zeros((0, 2))
    for r in rows:  # the same source seen on two overlapping tiles is kept once
        here = np.array([r[1] * math.cos(math.radians(r[2])), r[2]])
        if len(pos) and np.min(np.hypot(*(pos - here).T)) * 3600 < 3:
            continue
        pos = np.vstack([pos, here])
        kept.append(r[3:])
    cls, morph, sid = (np.array(v) for v in zip(*kept, strict=True))
    return cls, morph, sid


@pytest.mark.slow
def test_detected_radio_galaxies_are_classified_as_radio_galaxies(sky, radio_classes):
    cls, morph, sid = radio_classes
    on_galaxy = np.isin(morph, RG)
    galaxies = set(sid[on_galaxy])
    assert len(galaxies) >= 15  # every galaxy is bright enough to be found
    # most detections on a galaxy (its core, lobes, hotspots, knots) get a radio-galaxy class
    assert np.isin(cls[on_galaxy], RG).mean() >= 0.7
    # and most galaxies have a majority of their detections so classed
    votes = defaultdict(list)
    for c, s in zip(cls[on_galaxy], sid[on_galaxy], strict=True):
        votes[s].append(c in RG)
    assert np.mean([np.mean(v) > 0.5 for v in votes.values()]) >= 0.7
    # isolated point sources (the galaxies keep clear of them) are mostly point
    on_point = morph == "point"
    assert on_point.sum() >= 50
    assert np.mean(cls[on_point] == "point") >= 0.7
    assert np.mean(np.isin(cls[on_point], RG)) <= 0.1
