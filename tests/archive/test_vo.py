"""Publishing to a real DaCHS server and querying it back through pyvo (TAP and SCS).

CI installs and starts DaCHS (Debian's gavodachs2-server) and sets
VANOTEBOOK_REQUIRE_DACHS=1, so these tests fail there rather than skip.
"""

from __future__ import annotations

import uuid

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from vanotebook import VanotebookInputError
from vanotebook.archive import DaCHS, cone_search, tap_search
from vanotebook.sky import survey_catalogue


@pytest.fixture(scope="module")
def published(sky, dachs_url):
    cat = survey_catalogue(sky.observe("radio"), seed=1)
    cat = cat["source_id", "ra", "dec", "ra_error", "dec_error", "flux", "flux_error", "snr"]
    name = f"vn_{uuid.uuid4().hex[:8]}"
    server = DaCHS(dachs_url)
    pub = server.publish_catalogue(cat, name, id="source_id", title="demo radio catalogue")
    yield cat, pub
    server.unpublish(name)


@pytest.mark.dachs
@pytest.mark.e2e
@pytest.mark.slow
def test_published_catalogue_answers_tap_row_for_row(published):
    cat, pub = published
    assert pub.rows == len(cat)
    back = tap_search(pub.tap_url, f"SELECT * FROM {pub.table} ORDER BY id")
    assert len(back) == len(cat)
    order = np.argsort(cat["source_id"])
    np.testing.assert_array_equal(np.asarray(back["id"]), np.asarray(cat["source_id"])[order])
    for col in ("ra", "dec", "flux", "snr"):
        np.testing.assert_allclose(np.asarray(back[col]), np.asarray(cat[col])[order],
                                   rtol=1e-12)
    assert str(back["flux"].unit) == "Jy"


@pytest.mark.dachs
@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("radius", [3 * u.arcmin, 12 * u.arcmin])
def test_cone_search_and_adql_match_local_brute_force(published, radius):
    cat, pub = published
    ra0, dec0 = float(cat["ra"][0]) + 0.01, float(cat["dec"][0])  # near a source
    sep = SkyCoord(cat["ra"], cat["dec"], unit="deg").separation(SkyCoord(ra0, dec0, unit="deg"))
    expected = set(np.asarray(cat["source_id"])[sep < radius].tolist())
    assert expected  # the cone is not empty
    scs = cone_search(pub.scs_url, ra0, dec0, radius)
    assert {int(i) for i in scs["id"]} == expected
    adql = (f"SELECT id FROM {pub.table} WHERE 1=CONTAINS(POINT('ICRS', ra, dec), "
            f"CIRCLE('ICRS', {ra0}, {dec0}, {radius.to_value(u.deg)}))")
    assert {int(i) for i in tap_search(pub.tap_url, adql)["id"]} == expected


def test_unreachable_server_is_named():
    with pytest.raises(VanotebookInputError, match=r"url: expected a VO service.*127\.0\.0\.1:9"):
        tap_search("http://127.0.0.1:9/tap", "SELECT TOP 1 * FROM tap_schema.tables")
    with pytest.raises(VanotebookInputError, match=r"127\.0\.0\.1:9"):
        cone_search("http://127.0.0.1:9/scs.xml", 10.0, 10.0, 1 * u.arcmin)


def test_publish_bad_input(tmp_path, dachs_url):
    server = DaCHS(dachs_url, inputs=tmp_path)
    with pytest.raises(VanotebookInputError, match="name: expected lower-case"):
        server.publish_catalogue({"ra": [1.0]}, "Bad-Name")
    with pytest.raises(VanotebookInputError, match="radius: expected an angle"):
        cone_search("http://127.0.0.1:9/scs.xml", 10.0, 10.0, 1.0)
    from astropy.table import Table

    t = Table({"ra": [1.0, 2.0], "dec": [0.0, 1.0], "k": [1, 1]})
    with pytest.raises(VanotebookInputError, match="id: expected a column of unique integers"):
        server.publish_catalogue(t, "ok_name", id="k")
    assert not any(tmp_path.iterdir())  # nothing written for refused input
