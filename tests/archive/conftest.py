"""The archive tests' link to a real DaCHS server: the ``dachs`` marker and ``dachs_url``.

A test marked ``dachs`` runs against the server at ``$VANOTEBOOK_DACHS_URL``
(default http://localhost:8080). Where it does not answer the test is
skipped, except where ``VANOTEBOOK_REQUIRE_DACHS=1`` (CI, which installs and
starts DaCHS): there it fails.
"""

from __future__ import annotations

import functools
import os

import pytest
import requests

DACHS_URL = os.environ.get("VANOTEBOOK_DACHS_URL", "http://localhost:8080")


@functools.cache
def dachs_up() -> bool:
    """Whether the DaCHS server's TAP service answers (asked once per run)."""
    try:
        return requests.get(f"{DACHS_URL}/tap/availability", timeout=5).ok
    except requests.RequestException:
        return False


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("dachs") is None or dachs_up():
        return
    if os.environ.get("VANOTEBOOK_REQUIRE_DACHS") == "1":
        pytest.fail(f"DaCHS is required but does not answer at {DACHS_URL}", pytrace=False)
    pytest.skip(f"no DaCHS server at {DACHS_URL}")


@pytest.fixture(scope="session")
def dachs_url() -> str:
    """The DaCHS server's URL."""
    return DACHS_URL
