"""The package's top level: light to import, services reachable and callable."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_import_is_light_for_dask_workers():
    # dask too: its import (~0.2 s) waits for the first use of the configuration
    code = ("import sys, vanotebook; heavy = [m for m in ('numba', 'sklearn', 'reproject', "
            "'scipy.signal', 'panel', 'xarray', 'dask') if m in sys.modules]; print(heavy)")
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


# The layers of ../shared/DESIGN.md, bottom up: a module may import its own layer
# and those below, never above (services never import the demo sky either).
_CORE = ("io", "units", "spectral", "provenance", "cluster", "healpix", "_errors", "_config",
         "_lazy", "_optional", "_random", "_remote")
_SERVICES = ("mosaic", "detect", "som", "xmatch", "cube", "sed")
_ABOVE = {
    "core": set(_SERVICES) | {"archive", "sky", "dashboards", "hub", "jobs", "cli"},
    "archive": set(_SERVICES) | {"sky", "dashboards", "hub", "jobs", "cli"},
    "service": {"sky", "dashboards", "hub", "jobs", "cli"},
}


def _layer(parts: tuple[str, ...]) -> str | None:
    top = parts[0].removesuffix(".py")
    if top in _CORE:
        return "core"
    if top == "archive":
        return "archive"
    if top in _SERVICES:
        return "service"
    return None


def _imported(tree, package: tuple[str, ...]) -> set[str]:
    """The vanotebook subpackages a module's imports name (absolute or relative)."""
    import ast

    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = list(base) + (node.module.split(".") if node.module else [])
                targets = [mod] if node.module else [[*base, a.name] for a in node.names]
            elif node.module and node.module.startswith("vanotebook"):
                targets = [node.module.split(".")[1:]]
            else:
                continue
            for t in targets:
                if t:
                    names.add(t[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("vanotebook."):
                    names.add(alias.name.split(".")[1])
    return names


def test_nothing_imports_upward():
    import ast
    from pathlib import Path

    import vanotebook

    root = Path(vanotebook.__file__).parent
    wrong = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        layer = _layer(rel)
        if layer is None:
            continue
        package = rel[:-1]
        own = rel[0].removesuffix(".py")
        for name in _imported(ast.parse(path.read_text()), package) - {own}:
            if name in _ABOVE[layer]:
                wrong.append(f"{'/'.join(rel)} imports vanotebook.{name}")
    assert not wrong, wrong
