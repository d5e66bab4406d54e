"""The UWS 1.1 job service, run as its own process, driven over HTTP and by pyvo.

Jobs are real: a detection of a real FITS tile (uploaded), and the ``sleep``
pipeline for timing (abort, durations, restarts). Documents are validated
against the UWS 1.1 schema DaCHS ships when it is installed.
"""

from __future__ import annotations

import time

import requests


def test_anonymous_and_other_users_are_refused(service, uws):
    assert requests.get(f"{service.url}/sleep/jobs").status_code == 403
    alice, bob = service.session("alice"), service.session("bob")
    r = alice.post(f"{service.url}/sleep/jobs", data={"seconds": "0.1"}, allow_redirects=False)
    assert r.status_code == 303
    job = service.url + r.headers["Location"]
    assert bob.get(job).status_code == 404
    assert bob.delete(job, allow_redirects=False).status_code == 404
    assert uws.doc(bob.get(f"{service.url}/sleep/jobs")).findall("uws:jobref", uws.NS) == []
    assert len(uws.doc(alice.get(f"{service.url}/sleep/jobs")).findall("uws:jobref", uws.NS)) == 1


def test_detect_job_with_an_uploaded_image(service, tile, uws):
    from astropy.io import fits
    from astropy.table import Table

    alice = service.session("alice")
    with tile.open("rb") as f:
        r = alice.post(f"{service.url}/detect/jobs", data={"PHASE": "RUN",
                                                           "seed_threshold": "6"},
                       files={"image": ("radio.fits", f)}, allow_redirects=False)
    assert r.status_code == 303, r.text
    job = service.url + r.headers["Location"]
    assert uws.wait_final(alice, job) == "COMPLETED", alice.get(f"{job}/error").text
    doc = alice.get(job)
    uws.validate(doc.content)
    names = {e.get("id") for e in uws.doc(doc).iter(f"{{{uws.NS['uws']}}}result")}
    assert {"catalogue", "regions", "residual"} <= names
    vot = alice.get(f"{job}/results/catalogue")
    cat = Table.read(__import__("io").BytesIO(vot.content), format="votable")
    import vanotebook

    direct = vanotebook.detect(vanotebook.io.parse_image(tile), seed_threshold=6.0).catalogue
    assert len(cat) == len(direct) >= 1  # the job is the API's answer
    assert abs(cat["ra"] - direct["ra"]).max() < 1e-9
    res = fits.open(__import__("io").BytesIO(alice.get(f"{job}/results/residual").content))
    assert res[0].data.shape == fits.getdata(tile).shape
    params = alice.get(f"{job}/parameters")
    uws.validate(params.content)
    assert "seed_threshold" in params.text
    assert service.session("bob").get(f"{job}/results/catalogue").status_code == 404


def test_bad_parameters_are_named_before_the_job_exists(service, uws):
    alice = service.session("alice")
    r = alice.post(f"{service.url}/sleep/jobs", data={"seconds": "soon"},
                   allow_redirects=False)
    assert r.status_code == 400 and r.text.startswith("seconds: expected a number"), r.text
    r = alice.post(f"{service.url}/detect/jobs", data={"image": "/etc/passwd"},
                   allow_redirects=False)
    assert r.status_code == 400 and r.text.startswith("image: expected a file uploaded"), r.text
    r = alice.post(f"{service.url}/detect/jobs", data={"PHASE": "RUN"}, allow_redirects=False)
    assert r.status_code == 400 and r.text.startswith("image: expected a value"), r.text
    r = alice.post(f"{service.url}/sleep/jobs", data={"colour": "red"}, allow_redirects=False)
    assert r.status_code == 400 and r.text.startswith("colour: expected a parameter of sleep")
    assert uws.doc(alice.get(f"{service.url}/sleep/jobs")).findall("uws:jobref", uws.NS) == []


def test_phases_abort_duration_delete_and_destruction(service, uws):
    alice = service.session("alice")
    jobs = f"{service.url}/sleep/jobs"
    r = alice.post(jobs, data={"seconds": "30"}, allow_redirects=False)
    job = service.url + r.headers["Location"]
    assert uws.phase_of(alice, job) == "PENDING"
    uws.validate(alice.get(job).content)
    alice.post(f"{job}/phase", data={"PHASE": "RUN"})
    t0 = time.time()
    doc = alice.get(job, params={"WAIT": 10, "PHASE": "QUEUED"})  # returns at the change
    assert time.time() - t0 < 5
    while uws.phase_of(alice, job) != "EXECUTING":
        time.sleep(0.1)
    alice.post(f"{job}/phase", data={"PHASE": "ABORT"})
    assert uws.phase_of(alice, job) == "ABORTED"
    time.sleep(1)  # the runner ends the job's process
    # a dead process not yet reaped (a zombie) has no command line: it runs nothing
    lines = [" ".join(p.info["cmdline"] or ())
             for p in __import__("psutil").process_iter(["cmdline"])]
    assert not any("vanotebook.jobs._run" in line and job.rsplit("/", 1)[1] in line
                   for line in lines)
    # an execution duration overrun ends in ERROR, with the reason
    r = alice.post(jobs, data={"seconds": "30", "EXECUTIONDURATION": "1", "PHASE": "RUN"},
                   allow_redirects=False)
    slow = service.url + r.headers["Location"]
    assert uws.wait_final(alice, slow, timeout=30) == "ERROR"
    assert "execution duration of 1 s exceeded" in alice.get(f"{slow}/error").text
    doc = alice.get(slow)
    uws.validate(doc.content)
    assert uws.doc(doc).find("uws:errorSummary", uws.NS) is not None
    # DELETE answers 303 to the list; the job is then 404 (ACTION=DELETE too)
    r = alice.delete(slow, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"].endswith("/sleep/jobs")
    assert alice.get(slow).status_code == 404
    r = alice.post(job, data={"ACTION": "DELETE"}, allow_redirects=False)
    assert r.status_code == 303 and alice.get(job).status_code == 404
    # the reaper removes a job at its destruction time
    r = alice.post(jobs, data={"seconds": "0.1"}, allow_redirects=False)
    soon = service.url + r.headers["Location"]
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    alice.post(f"{soon}/destruction", data={"DESTRUCTION": when})
    assert alice.get(f"{soon}/destruction").text.startswith(when[:-1])
    time.sleep(3.5)
    assert alice.get(soon).status_code == 404


def test_job_list_filters(service, uws):
    alice = service.session("alice")
    jobs = f"{service.url}/sleep/jobs"
    made = [service.url + alice.post(jobs, data={"seconds": "0.1"},
                                     allow_redirects=False).headers["Location"]
            for _ in range(3)]
    alice.post(f"{made[0]}/phase", data={"PHASE": "RUN"})
    uws.wait_final(alice, made[0])
    listed = alice.get(jobs, params={"PHASE": "PENDING"})
    uws.validate(listed.content)
    assert len(uws.doc(listed).findall("uws:jobref", uws.NS)) == 2
    last = uws.doc(alice.get(jobs, params={"LAST": 1})).findall("uws:jobref", uws.NS)
    assert [e.get("id") for e in last] == [made[2].rsplit("/", 1)[1]]
    assert alice.get(jobs, params={"LAST": "x"}).status_code == 400


def test_a_restart_loses_no_job(tmp_path, uws):
    svc = uws.Service(tmp_path / "state", slots=1).start()
    alice = svc.session("alice")
    try:
        urls = [svc.url + alice.post(f"{svc.url}/sleep/jobs",
                                     data={"seconds": s, "PHASE": "RUN"},
                                     allow_redirects=False).headers["Location"]
                for s in ("20", "0.2", "0.2")]
        while uws.phase_of(alice, urls[0]) != "EXECUTING":
            time.sleep(0.1)
        assert [uws.phase_of(alice, u) for u in urls[1:]] == ["QUEUED", "QUEUED"]
        svc.stop()
        svc.start()
        assert uws.phase_of(alice, urls[0]) == "ERROR"
        assert "service restarted" in alice.get(f"{urls[0]}/error").text
        assert [uws.wait_final(alice, u, timeout=60) for u in urls[1:]] == ["COMPLETED"] * 2
    finally:
        svc.stop()


def test_pyvo_drives_our_jobs(service, uws):
    from pyvo.dal import AsyncTAPJob

    alice = service.session("alice")
    r = alice.post(f"{service.url}/sleep/jobs", data={"seconds": "0.3"}, allow_redirects=False)
    job = AsyncTAPJob(service.url + r.headers["Location"], session=alice)
    assert job.phase == "PENDING"
    job.run()
    job.wait(timeout=60)
    assert job.phase == "COMPLETED"
    assert [res.id_ for res in job._job.results] == ["log"]
    assert alice.get(job._job.results[0].href).text.startswith("slept")
    r = alice.post(f"{service.url}/sleep/jobs", data={"seconds": "30"}, allow_redirects=False)
    long = AsyncTAPJob(service.url + r.headers["Location"], session=alice)
    long.run()
    long.abort()
    assert long.phase == "ABORTED"
    url = long.url
    long.delete()
    assert alice.get(url).status_code == 404


def test_a_job_never_holds_the_services_credentials(uws):
    """The service's hub token and OAuth settings are not in a job's environment."""
    from vanotebook.jobs._service import job_environment

    env = job_environment({"JUPYTERHUB_API_TOKEN": "secret", "JUPYTERHUB_CLIENT_ID": "x",
                           "PATH": "/bin", "VANOTEBOOK_ARCHIVE": "~/archive"})
    assert env == {"PATH": "/bin", "VANOTEBOOK_ARCHIVE": "~/archive"}


def test_the_service_documents_every_pipeline_from_the_registry(service):
    from vanotebook.jobs import PIPELINES

    page = requests.get(f"{service.url}/", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    declared = requests.get(f"{service.url}/pipelines.json", timeout=30).json()
    assert set(declared) == set(PIPELINES) >= {"mosaic", "homogenise", "cutouts", "detect",
                                                "som", "crossmatch", "hips", "publish",
                                                "workflow"}
    for name, spec in PIPELINES.items():
        assert f"<h2 id='{name}'>" in page.text
        for key in spec.params:
            assert f"<code>{key}</code>" in page.text
        assert declared[name]["parameters"].keys() == spec.params.keys()
    assert declared["crossmatch"]["parameters"]["radius"]["unit"] == "arcsec"
    assert "nearest" in declared["crossmatch"]["parameters"]["how"]["choices"]
