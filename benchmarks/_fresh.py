"""The first call of a service in a fresh process, printed beside its warm call.

What a new notebook kernel or a new Dask worker pays once. ``setup`` is what
the notebook does anyway (import numpy and astropy's units, tables and FITS,
make its data) and is timed apart; ``call`` is timed from vanotebook's import
through its first call, then again warm.

With ``libraries`` (the third-party modules the service imports: xarray for
a mosaic's Dataset, scipy.ndimage for a detection...) a second fresh process
imports them before the call, so the line also says how much of the first
call is those libraries' own import, which any notebook using them pays, and
how much is ours (vanotebook's import, our kernels' loading, caches).
"""

from __future__ import annotations

import subprocess
import sys

_TEMPLATE = """
import time
t = time.perf_counter()
{setup}
base = time.perf_counter() - t
t = time.perf_counter()
{libraries}
libs = time.perf_counter() - t
t = time.perf_counter()
{call}
first = time.perf_counter() - t
t = time.perf_counter()
{call}
print(base, libs, first, time.perf_counter() - t)
"""


def _run(setup: str, call: str, libraries: tuple[str, ...]) -> tuple[float, ...]:
    code = _TEMPLATE.format(setup=setup, call=call,
                            libraries="\n".join(f"import {m}" for m in libraries))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return tuple(map(float, done.stdout.split()[-4:]))


def first_call(what: str, setup: str, call: str, *, target: float = 0.3,
               libraries: tuple[str, ...] = ()) -> float:
    """Run ``setup`` then ``call`` twice in a fresh Python; print and return first - warm.

    With ``libraries``, also in a second fresh Python that imports them first, and
    print that part apart.
    """
    base, _, first, warm = _run(setup, call, ())
    print(f"{what}, first call in a fresh process: {first:.2f} s (vanotebook's import "
          f"included; the notebook's own imports and data took {base:.2f} s more); "
          f"warm {warm:.3f} s; over warm {first - warm:.2f} s (target <= {target} s)")
    if libraries:
        _, libs, first_l, warm_l = _run(setup, call, libraries)
        print(f"  of which the import of {', '.join(libraries)}: {libs:.2f} s; with those "
              f"imported, the first call is {first_l - warm_l:.2f} s over warm (ours: "
              f"vanotebook's import, kernels, caches)")
    return first - warm
