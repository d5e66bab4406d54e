"""cutouts on a one-thread in-process cluster (it used to hang), and progress reporting."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import astropy.units as u
import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from vanotebook.mosaic import cutouts, homogenise

SCRIPT = textwrap.dedent("""
    import numpy as np, astropy.units as u
    from astropy.table import Table
    from astropy.wcs import WCS
    from distributed import Client
    from vanotebook.sky import demo_sky
    from vanotebook.mosaic import cutouts

    sky = demo_sky(0, n_catalogue=5_000, n_spectra=2_000)
    images = {k: sky.images(k)[:2] for k in ("radio", "ir24")}
    h = sky.images("radio")[0][0].header
    centre = WCS(h).celestial.pixel_to_world(h["NAXIS1"] / 2, h["NAXIS2"] / 2).icrs
    table = Table({"ra": [centre.ra.deg, centre.ra.deg + 0.002, 10.0],
                   "dec": [centre.dec.deg, centre.dec.deg, 10.0]})
    seen = []
    kw = dict(pixel_scale=4 * u.arcsec, unit="Jy/pix")
    ref = cutouts(images, table, 1 * u.arcmin, **kw)
    with Client(processes=False, n_workers=1, threads_per_worker=1,
                dashboard_address=":0") as client:
        got = cutouts(images, table, 1 * u.arcmin, client=client, progress=seen.append, **kw)
    assert got[2] is None and ref[2] is None
    for a, b in zip(got[:2], ref[:2]):
        for k in ("radio", "ir24"):
            np.testing.assert_array_equal(a[k].values, b[k].values)
    assert seen == [1 / 3, 2 / 3, 1.0], seen
    print("OK")
""")


def test_cutouts_on_a_one_thread_in_process_cluster_finish():
    """``Client(processes=False, n_workers=1, threads_per_worker=1)``: the cutouts finish
    (in a subprocess with a time limit: a hang would block pytest), equal to the in-process
    run, with one progress step per source."""
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=240)
    assert run.returncode == 0 and run.stdout.strip().endswith("OK"), run.stderr[-3000:]


def test_progress_like_mosaic(sky):
    """homogenise and cutouts take ``progress`` as mosaic does: a callable gets fractions
    in [0, 1], in order, ending at 1; True shows a bar and changes nothing."""
    images = {k: sky.images(k)[:2] for k in ("radio", "ir24")}
    seen: list[float] = []
    a = homogenise(images, pixel_scale=8 * u.arcsec, unit="Jy/pix", progress=seen.append)
    assert seen and seen == sorted(seen) and seen[-1] == 1.0 and 0 < seen[0] <= 0.5
    b = homogenise(images, pixel_scale=8 * u.arcsec, unit="Jy/pix", progress=True)
    np.testing.assert_array_equal(a["radio"].values, b["radio"].values)
    h = sky.images("radio")[0][0].header
    centre = WCS(h).celestial.pixel_to_world(h["NAXIS1"] / 2, h["NAXIS2"] / 2).icrs
    table = Table({"ra": centre.ra.deg + np.array([0.0, 0.002, 0.004, 0.006]),
                   "dec": [centre.dec.deg] * 4})
    seen = []
    out = cutouts(images, table, 1 * u.arcmin, pixel_scale=4 * u.arcsec, progress=seen.append)
    assert len(out) == 4 and sorted(seen) == [0.25, 0.5, 0.75, 1.0] and seen[-1] == 1.0
