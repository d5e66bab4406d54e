"""The package's top level: light to import, services reachable and callable."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_import_is_light_for_dask_workers():
    code = ("import sys, vanotebook; heavy = [m for m in ('numba', 'sklearn', 'reproject', "
            "'scipy.signal', 'panel', 'xarray') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("order", ["function_first", "subpackage_first"])
def test_services_are_callable_whatever_is_imported_first(order):
    code = (
        "import numpy as np, vanotebook\n"
        + ("from vanotebook.detect import SourceFinder\n" if order == "subpackage_first" else "")
        + "r = vanotebook.detect(np.random.default_rng(0).normal(size=(32, 32)))\n"
        "from vanotebook.detect import SourceFinder\n"
        "r2 = vanotebook.detect(np.ones((8, 8)))\n"
        "import vanotebook.mosaic as m\n"
        "assert callable(vanotebook.mosaic) and m is vanotebook.mosaic\n"
        "assert vanotebook.mosaic.homogenise is vanotebook.homogenise\n"
        "print(len(r.catalogue), len(r2.catalogue), type(vanotebook.SOM).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300).stdout.strip()
    assert out.split()[1:] == ["0", "type"]


def test_unknown_attribute():
    import vanotebook

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = vanotebook.nope
    assert {"mosaic", "detect", "crossmatch", "SOM"} <= set(dir(vanotebook))
