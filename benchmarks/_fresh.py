"""The first call of a service in a fresh process, printed beside its warm call.

What a new notebook kernel or a new Dask worker pays once. ``setup`` is what
the notebook does anyway (import numpy and astropy's units, tables and FITS,
make its data) and is
timed apart; ``call`` is timed from vanotebook's import through its first
call, then again warm.
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
{call}
first = time.perf_counter() - t
t = time.perf_counter()
{call}
print(base, first, time.perf_counter() - t)
"""


def first_call(what: str, setup: str, call: str, *, target: float = 0.3) -> float:
    """Run ``setup`` then ``call`` twice in a fresh Python; print and return first - warm."""
    done = subprocess.run([sys.executable, "-c", _TEMPLATE.format(setup=setup, call=call)],
                          capture_output=True, text=True, check=True)
    base, first, warm = map(float, done.stdout.split()[-3:])
    print(f"{what}, first call in a fresh process: {first:.2f} s (vanotebook's import "
          f"included; the notebook's own imports and data took {base:.2f} s more); "
          f"warm {warm:.3f} s; over warm {first - warm:.2f} s (target <= {target} s)")
    return first - warm
