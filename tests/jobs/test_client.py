"""`vanotebook.jobs.JobClient` and ``vanotebook job`` against the real service process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def svc(tmp_path_factory, uws):
    service = uws.Service(tmp_path_factory.mktemp("client") / "state", slots=2,
                          env={"DASK_SCHEDULER_ADDRESS": ""}).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def tile(tmp_path_factory):
    from vanotebook.sky import demo_sky

    path = tmp_path_factory.mktemp("ctile") / "radio.fits"
    demo_sky(0, size=0.3, n_catalogue=100, n_spectra=10).observe("radio").tiles[0].writeto(path)
    return path


def _client(svc, user="alice"):
    from vanotebook.jobs import JobClient

    return JobClient(svc.url, token=f"tok-{user}")


def test_submit_wait_and_read_results(svc, tile, tmp_path):
    import vanotebook

    client = _client(svc)
    messages: list[str] = []
    job = client.submit("detect", image=tile, seed_threshold=6)
    assert job.wait(progress=messages.append) == "COMPLETED"
    assert any("sources" in m for m in messages)  # progress came while it ran
    cat = job.result("catalogue")
    direct = vanotebook.detect(str(tile), seed_threshold=6.0).catalogue
    assert len(cat) == len(direct) >= 1
    np.testing.assert_allclose(np.sort(np.asarray(cat["ra"])), np.sort(np.asarray(direct["ra"])),
                               atol=1e-9)
    assert job.result("residual")[0].data.shape == (150, 150)
    path = job.download("regions", tmp_path)
    assert path.read_text().startswith("# Region file format: DS9")
    from vanotebook.archive import Archive

    archive = Archive(tmp_path / "mine")
    job.to_archive("catalogue", "found", archive=archive)
    assert archive.catalogue("found").n_rows == len(direct)
    assert [j.id for j in client.jobs("detect")] == [job.id]
    assert client.jobs("detect", phase="ERROR") == []
    job.delete()
    assert client.jobs("detect") == []


def test_parameters_are_checked_before_anything_is_sent(svc):
    import astropy.units as u

    from vanotebook import VanotebookInputError

    client = _client(svc)
    before = len(client.jobs())
    with pytest.raises(VanotebookInputError, match="colour: expected a parameter of sleep"):
        client.submit("sleep", colour="red")
    with pytest.raises(VanotebookInputError, match="seconds: expected a number"):
        client.submit("sleep", seconds="soon")
    with pytest.raises(VanotebookInputError, match="pipeline: expected one of mosaic"):
        client.submit("nope")
    with pytest.raises(VanotebookInputError, match="image: expected an existing file"):
        client.submit("detect", image="/no/such.fits")
    assert len(client.jobs()) == before
    # a Quantity goes in the declared unit: 3 minutes of sleep asked as seconds
    job = client.submit("sleep", seconds=0.003 * u.min, run=False)
    assert float(job.parameters["seconds"]) == pytest.approx(0.18)
    with pytest.raises(VanotebookInputError, match="fail: expected a plain value"):
        client.submit("sleep", fail=1 * u.s)


def test_errors_aborts_and_other_users(svc):
    from vanotebook.jobs import JobError

    client = _client(svc)
    job = client.submit("sleep", fail=True)
    with pytest.raises(JobError, match="fail: expected false"):
        job.wait(progress=False)
    job = client.submit("sleep", seconds=60)
    job.abort()
    assert job.wait(progress=False, raise_on_error=False) == "ABORTED"
    bob = _client(svc, "bob")
    with pytest.raises(JobError, match="404"):
        bob.job(f"sleep/{job.id}").phase  # noqa: B018
    assert bob.jobs() == []


def test_the_command_line(svc, tile, tmp_path):
    base = [sys.executable, "-m", "vanotebook.cli", "job"]
    auth = ["--url", svc.url, "--token", "tok-alice"]
    out = subprocess.run([*base, "submit", "detect", f"image={tile}", "seed_threshold=6",
                          "--out", str(tmp_path), *auth], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[0].startswith(svc.url) and "COMPLETED" in lines
    assert (tmp_path / "catalogue.vot").exists()
    listed = subprocess.run([*base, "list", *auth], capture_output=True, text=True, timeout=60)
    assert lines[0] in listed.stdout
    bad = subprocess.run([*base, "submit", "detect", "image=/no/such.fits", *auth],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "image: expected an existing file" in bad.stderr
    doc = subprocess.run([*base, "pipelines"], capture_output=True, text=True, timeout=60)
    assert "workflow:" in doc.stdout and "radius (float [arcsec]" in doc.stdout
