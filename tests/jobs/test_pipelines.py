"""Every pipeline of the job service, through the service, against the API's own answer.

The job service runs as its own process (users by bearer token); inputs are
real FITS tiles, VOTable and parquet catalogues and a spectra set of the
demo sky, uploaded, fetched by URL or named in the user's archive.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four radio tiles, two catalogues, a spectra set and an archive holding some."""
    from vanotebook.archive import Archive
    from vanotebook.io import write_table
    from vanotebook.sky import demo_sky, survey_catalogue, write_spectra

    root = tmp_path_factory.mktemp("jobdata")
    sky = demo_sky(0, size=0.3, n_catalogue=200, n_spectra=120)
    obs = sky.observe("radio")
    tiles = []
    for i, hdul in enumerate(obs.tiles):
        path = root / f"radio_{i}.fits"
        hdul.writeto(path)
        tiles.append(path)
    left, right = sky.catalogues.chunk(0)
    from astropy.table import Table

    left_path = write_table(Table.from_pandas(left), root / "left.vot")
    right_path = write_table(Table.from_pandas(right), root / "right.parquet")
    survey = write_table(survey_catalogue(obs), root / "survey.vot")
    spectra = write_spectra(sky.spectra, root / "spectra.parquet")
    archive = Archive(root / "archive")
    archive.add_images([str(p) for p in tiles], survey="radio")
    archive.add_catalogue("left", Table.from_pandas(left))
    from vanotebook.sky._cubes import co_cube

    cube = root / "co.fits"
    co_cube(0, size=0.3).hdu.writeto(cube)
    archive.add_images(str(cube), survey="co")  # a cube: images? references pass it over
    return {"root": root, "tiles": tiles, "left": left_path, "right": right_path,
            "survey": survey, "spectra": spectra, "archive": root / "archive", "cube": cube}


@pytest.fixture(scope="module")
def service(data, tmp_path_factory, uws):
    svc = uws.Service(tmp_path_factory.mktemp("svc") / "state", slots=2,
                      env={"VANOTEBOOK_ARCHIVE": str(data["archive"]),
                           "DASK_SCHEDULER_ADDRESS": ""}).start()
    yield svc
    svc.stop()


def _files(name, paths):
    return [(name, (Path(p).name, Path(p).read_bytes())) for p in paths]


def _fits(session, url):
    from astropy.io import fits

    return fits.open(io.BytesIO(session.get(url).content))


def _table(session, url, fmt="votable"):
    from astropy.table import Table

    return Table.read(io.BytesIO(session.get(url).content), format=fmt)


def test_mosaic_job_is_the_api_mosaic(service, data):
    import vanotebook

    job, s = service.run("mosaic", {}, files=_files("images", data["tiles"]))
    got = _fits(s, f"{job}/results/mosaic")
    want = vanotebook.mosaic([str(p) for p in data["tiles"]])
    np.testing.assert_array_equal(got[0].data, np.asarray(want["mosaic"].values, np.float32))
    assert {h.name for h in got} >= {"WEIGHT", "COVERAGE"}
    prov = s.get(f"{job}/results/provenance").json()
    assert "vanotebook.mosaic" in json.dumps(prov)
    # the same images named in the user's archive: the same mosaic
    job2, _ = service.run("mosaic", {"images": "archive:images?survey=radio"})
    np.testing.assert_array_equal(_fits(s, f"{job2}/results/mosaic")[0].data, got[0].data)


def test_crossmatch_job_from_uploads_and_from_the_archive(service, data):
    import astropy.units as u

    import vanotebook

    job, s = service.run("crossmatch", {"radius": "2"},
                         files=_files("left", [data["left"]]) + _files("right", [data["right"]]))
    got = _table(s, f"{job}/results/matches")
    want = vanotebook.crossmatch(str(data["left"]), str(data["right"]), radius=2 * u.arcsec)
    assert len(got) == len(want) > 20
    np.testing.assert_allclose(np.sort(np.asarray(got["separation"])),
                               np.sort(np.asarray(want["separation"])), rtol=1e-6)
    # the left catalogue by reference: a cone of the user's archive
    ra, dec = (float(np.nanmedian(np.ma.filled(want[c], np.nan))) for c in ("ra_left", "dec_left"))
    job2, _ = service.run("crossmatch", {"left": f"archive:catalogue/left?cone={ra},{dec},0.05",
                                         "radius": "2"}, files=_files("right", [data["right"]]))
    part = _table(s, f"{job2}/results/matches")
    assert 0 < len(part) < len(got)
    assert set(part["source_id_left"]) < set(got["source_id_left"])


def test_detect_job_by_url_and_by_archive_image(service, data):
    import vanotebook

    tile = data["tiles"][0]
    handler = type("Quiet", (http.server.SimpleHTTPRequestHandler,),
                   {"log_message": lambda *a: None})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: handler(*a, directory=str(tile.parent), **k))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{tile.name}"
        job, s = service.run("detect", {"image": url})
    finally:
        server.shutdown()
        server.server_close()
    by_url = _table(s, f"{job}/results/catalogue")
    direct = vanotebook.detect(str(tile)).catalogue
    assert len(by_url) == len(direct) >= 1
    from vanotebook.archive import Archive

    sha = Archive(data["archive"]).images()
    sha = next(r["sha256"] for r in sha if Path(r["path"]).name == tile.name)
    job2, _ = service.run("detect", {"image": f"archive:image/{sha[:12]}"})
    assert len(_table(s, f"{job2}/results/catalogue")) == len(direct)


def test_som_job_is_the_api_map(service, data):
    from vanotebook.io import read_catalogue
    from vanotebook.sky import read_spectra
    from vanotebook.som import SOM

    job, s = service.run("som", {"rows": "6", "columns": "5", "epochs": "8"},
                         files=_files("spectra", [data["spectra"]]))
    doc = s.get(f"{job}/results/som").json()
    table = read_catalogue(data["spectra"])
    direct = SOM((6, 5), n_epochs=8, seed=0).fit(table, columns="flux")
    spectra = read_spectra(data["spectra"])
    direct.to_guasom(data["root"] / "direct.json", table, columns="flux", overwrite=True)
    want = json.loads((data["root"] / "direct.json").read_text())
    assert json.dumps(doc, sort_keys=True) == json.dumps(want, sort_keys=True)
    maps = _fits(s, f"{job}/results/maps")
    assert maps["UMATRIX"].data.shape == (6, 5)
    assert maps["HITS"].data.sum() == len(spectra.flux)


def test_hips_cutouts_and_homogenise_jobs(service, data):
    import astropy.units as u

    from vanotebook.mosaic import cutout

    job, s = service.run("hips", {"title": "radio tile"}, files=_files("image", data["tiles"][:1]))
    names = zipfile.ZipFile(io.BytesIO(s.get(f"{job}/results/hips").content)).namelist()
    assert "properties" in names and any(n.startswith("Norder") for n in names)
    assert "obs_title" in s.get(f"{job}/results/properties").text
    from vanotebook.io import parse_image

    img = parse_image(str(data["tiles"][0]))
    centre = img.wcs.pixel_to_world(img.data.shape[1] / 2, img.data.shape[0] / 2)
    ra, dec = float(centre.icrs.ra.deg), float(centre.icrs.dec.deg)
    job, _ = service.run("cutouts", {"ra": str(ra), "dec": str(dec), "size": "1"},
                         files=_files("images", data["tiles"]))
    z = zipfile.ZipFile(io.BytesIO(s.get(f"{job}/results/cutouts").content))
    from astropy.io import fits

    got = fits.open(io.BytesIO(z.read("cutout_0.fits")))
    want = cutout({"images": [str(p) for p in data["tiles"]]}, centre, 1 * u.arcmin)
    np.testing.assert_allclose(got[1].data, np.asarray(want[next(iter(want.data_vars))].values),
                               rtol=1e-6, equal_nan=True)
    job, _ = service.run("homogenise", {"resolution": "coarsest"},
                         files=_files("images", data["tiles"]))
    hom = _fits(s, f"{job}/results/images")
    assert u.Unit(hom["images"].header["BUNIT"]) == u.MJy / u.sr
    from vanotebook import homogenise

    want = homogenise({"images": [str(p) for p in data["tiles"]]})
    np.testing.assert_allclose(hom["images"].data, np.asarray(want["images"].values),
                               rtol=1e-6, equal_nan=True)


def test_workflow_mosaics_detects_matches_and_publishes(service, data):
    from vanotebook.archive import Archive

    job, s = service.run("workflow", {"publish_name": "wf_sources", "radius": "3"},
                         files=_files("images", data["tiles"]) +
                         _files("survey", [data["survey"]]))
    doc = s.get(job).text
    for name in ("mosaic", "catalogue", "regions", "matches", "published"):
        assert f'id="{name}"' in doc, name
    cat = _table(s, f"{job}/results/catalogue")
    matches = _table(s, f"{job}/results/matches")
    assert len(cat) >= 5 and len(matches) >= 0.5 * len(cat)  # most sources are in the survey
    published = Archive(data["archive"]).catalogue("wf_sources")
    assert published.n_rows == len(cat)


def test_file_parameters_are_checked_when_the_job_is_made(service, data, uws):
    s = service.session("alice")
    cases = [
        ({"images": "archive:nothing/here"}, None, "images: expected a file uploaded"),
        ({"images": "archive:images?colour=red"}, None, "images: expected query keys"),
        ({"images": "archive:images?cone=10,100,1"}, None, "images: expected cone=ra,dec"),
        ({"images": "archive:images?velocity=3"}, None, "images: expected query keys"),
        ({"images": "archive:cubes?velocity=fast"}, None, "images: expected velocity=vmin,"),
        ({"combine": "average"}, None, "combine: expected one of mean"),
        ({}, [("images", ("notes.txt", b"hello"))], "images: expected a file named with"),
    ]
    for data_, files, start in cases:
        r = s.post(f"{service.url}/mosaic/jobs", data=data_, files=files, allow_redirects=False)
        assert r.status_code == 400 and r.text.startswith(start), (data_, r.text)
    r = s.post(f"{service.url}/detect/jobs", files=_files("image", data["tiles"][:2]),
               allow_redirects=False)
    assert r.status_code == 400 and r.text.startswith("image: expected one file"), r.text
    # a reference that parses but finds nothing ends the job in ERROR, named
    r = s.post(f"{service.url}/mosaic/jobs", data={"PHASE": "RUN",
                                                   "images": "archive:images?survey=nope"},
               allow_redirects=False)
    job = service.url + r.headers["Location"]
    assert uws.wait_final(s, job) == "ERROR"
    assert s.get(f"{job}/error").text.startswith("images: expected a query that finds images")


def test_sed_job_recovers_the_injected_temperatures(service, tmp_path):
    """homogenise -> detect -> forced photometry -> greybody fits, as one job, on the
    Hi-GAL-like field: the tolerances of tests/sed's own whole-chain test."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    from vanotebook.sky import higal_field

    field = higal_field(0)
    paths = []
    for band, hdu in field.images.items():
        paths.append(tmp_path / f"{band}.fits")
        hdu.writeto(paths[-1])
    bands = list(field.images)
    waves = ",".join(f"{field.wavelengths[b].to_value(u.um):g}" for b in bands)
    job, s = service.run("sed", {"bands": ",".join(bands), "wavelengths": waves,
                                 "distance": f"{field.distance.to_value(u.pc):g}"},
                         files=_files("images", paths))
    fit = _table(s, f"{job}/results/fit")
    got = SkyCoord(fit["ra"], fit["dec"], unit="deg")
    true = SkyCoord(field.truth["ra"], field.truth["dec"])
    idx, sep, _ = got.match_to_catalog_sky(true)
    ok = sep < 10 * u.arcsec
    assert len(np.unique(idx[ok])) >= 22  # of 25 injected
    t_fit = np.asarray(fit["temperature"])[ok]
    assert np.median(np.abs(t_fit / field.truth["temperature"].value[idx[ok]] - 1)) < 0.05


def test_cube_job_is_the_api_moments_and_pv_slice(service, data):
    """Moments and a PV slice of the demo CO cube, uploaded and by archive reference."""
    import astropy.units as u

    from vanotebook.cube import moments, pv_slice

    params = {"orders": "0,1,peak", "vmin": "90", "vmax": "130", "pv_path": "3,4,40,30",
              "pv_width": "3"}
    job, s = service.run("cube", params, files=_files("cube", [data["cube"]]))
    want = moments(str(data["cube"]), (0, 1, "peak"), velocity=(90, 130) * u.km / u.s)
    with _fits(s, f"{job}/results/moments") as got:
        for name in ("moment0", "moment1", "peak"):
            np.testing.assert_allclose(got[name.upper()].data, want[name].values, rtol=1e-6,
                                       equal_nan=True, err_msg=name)
    pv = pv_slice(str(data["cube"]), [(3, 4), (40, 30)], width=3,
                  velocity=(90, 130) * u.km / u.s)
    with _fits(s, f"{job}/results/pv") as got:
        np.testing.assert_allclose(got[0].data, pv.values, rtol=1e-6, equal_nan=True)
    assert "provenance" in s.get(f"{job}/results").text
    # the same cube found in the user's archive by the velocity it covers
    job2, _ = service.run("cube", {"cube": "archive:cubes?velocity=100", "orders": "0"})
    with _fits(s, f"{job2}/results/moments") as got:
        np.testing.assert_allclose(got["MOMENT0"].data,
                                   moments(str(data["cube"]), 0)["moment0"].values, rtol=1e-6,
                                   equal_nan=True)


def test_classify_job_is_the_api_answer_and_names_a_bad_model(service, data, tmp_path, uws):
    """An image and a catalogue (RA/Dec only) uploaded: the job's catalogue is
    `vanotebook.classify`'s, with p_<class>, class and score; a model file that is not
    one ends in ERROR naming the parameter."""
    from astropy.table import Table

    import vanotebook
    from vanotebook.classify import CLASSES, classify
    from vanotebook.io import write_table

    tile = data["tiles"][0]
    found = vanotebook.detect(str(tile), classify=False).catalogue
    table = Table({"RAJ2000": found["ra"].value, "DEJ2000": found["dec"].value})
    cat_path = write_table(table, tmp_path / "sources.vot")
    job, s = service.run("classify", {}, files=_files("image", [tile])
                         + _files("catalogue", [cat_path]))
    got = _table(s, f"{job}/results/catalogue")
    want = classify(str(tile), table)
    assert len(got) == len(want) >= 1
    for c in CLASSES:
        np.testing.assert_allclose(np.asarray(got[f"p_{c}"]), np.asarray(want[f"p_{c}"]),
                                   atol=1e-5)
    assert list(got["class"]) == list(want["class"])
    prov = s.get(f"{job}/results/provenance").json()
    assert "classify" in json.dumps(prov)
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    r = s.post(f"{service.url}/classify/jobs", data={"PHASE": "RUN"},
               files=_files("image", [tile]) + _files("catalogue", [cat_path])
               + _files("model", [tmp_path / "bad.npz"]), allow_redirects=False)
    assert r.status_code == 303, r.text
    bad = service.url + r.headers["Location"]
    assert uws.wait_final(s, bad, timeout=120) == "ERROR"
    assert "model: expected a model file" in s.get(f"{bad}/error").text
