"""The first call of a service in a fresh process (#20): a small input pays no compiled
kernel's load (numba's import and cache load cost ~1 s once per process), a large one
takes the compiled path. Which path runs depends on the input's size only."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vanotebook._optional import HAS_NUMBA

# the heavy imports a small call must not pay (numba: ~1 s with its kernels' load;
# array_api_compat's numpy wrapper: ~0.15 s); and for the SOM, whose only use of scipy
# was its sparse one-hot product, scipy.sparse (~0.2 s)
HEAVY = ("numba", "array_api_compat.numpy", "scipy.sparse")
_ALLOWED = {"detect": {"scipy.sparse"}, "mosaic": {"scipy.sparse"}, "xmatch": {"scipy.sparse"}}

_CALLS = {
    "detect": """
from vanotebook.detect import detect
img = np.random.default_rng(0).normal(10, 1, ({n}, {n})).astype(np.float32)
img[100:103, 100:103] += 50
detect(img)
""",
    "mosaic": """
from astropy.io import fits
from astropy.wcs import WCS
from vanotebook.mosaic import mosaic
tiles = []
for i in range(2):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0 + {n} / 3600 / 4 * i, 2.0]
    w.wcs.crpix = [{n} / 2, {n} / 2]
    w.wcs.cdelt = [-1 / 3600, 1 / 3600]
    data = np.random.default_rng(i).normal(size=({n}, {n})).astype(np.float32)
    tiles.append(fits.PrimaryHDU(data, w.to_header()))
mosaic(tiles)
""",
    "som": """
from vanotebook.som import SOM
x = np.random.default_rng(0).normal(size=({n}, 50)).astype(np.float32)
SOM((8, 8), n_epochs=2, seed=0).fit(x)
""",
    "xmatch": """
from astropy.table import Table
from vanotebook.xmatch import crossmatch
rng = np.random.default_rng(0)
ra, dec = rng.uniform(150, 151, {n}), rng.uniform(2, 3, {n})
crossmatch(Table({{"ra": ra, "dec": dec}}), Table({{"ra": ra + 1e-5, "dec": dec}}),
           radius=1 * u.arcsec)
""",
}
# sizes on either side of each service's rule (`detect._fused.FUSED_PIXELS`,
# `mosaic._kernels.FUSED_PIXELS`, `som._fast.MIN_WORK`, `xmatch._kernels.GRID_ROWS`)
_SMALL = {"detect": 512, "mosaic": 256, "som": 2000, "xmatch": 2000}
_LARGE = {"detect": 1024, "mosaic": 1024, "som": 70_000, "xmatch": 80_000}


def _loaded(service: str, n: int) -> list[str]:
    code = ("import sys\nimport numpy as np, astropy.units as u\n"
            + _CALLS[service].format(n=n)
            + f"print([m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return eval(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("service", sorted(_CALLS))
def test_a_small_first_call_loads_no_compiled_kernel(service):
    assert set(_loaded(service, _SMALL[service])) <= _ALLOWED.get(service, set())


@pytest.mark.skipif(not HAS_NUMBA, reason="the compiled path needs numba")
@pytest.mark.parametrize("service", sorted(_CALLS))
def test_a_large_call_takes_the_compiled_path(service):
    assert "numba" in _loaded(service, _LARGE[service])
