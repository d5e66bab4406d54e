"""Spectral-cube analytics: moments, channel maps, PV slices, spectra and lines, out of core.

`moments` gives spectral-cube's moments 0, 1, 2 and the CASA set by name;
`pv_slice` is pvextractor's ``extract_pv_slice`` (same sampling, same axis
order, velocity x offset); `spectrum` averages the pixels of any region the
archive's region parser takes; `channel_maps` and `find_lines` complete the
set. Every function parses its cube once (`parse_cube`: FITS paths read
lazily, HDUs, ``(array, WCS)``, a `mosaic_cube` Dataset; velocity, frequency
or wavelength axes; radio, optical or relativistic velocities; a degenerate
Stokes axis), checks its arguments before any work, and maps array-API
kernels over blocks on Dask, so cubes larger than a worker's memory run
block by block.
"""

from __future__ import annotations

from ._core import (
    ACTIVITY,
    channel_maps,
    channel_noise,
    find_lines,
    from_fits,
    moments,
    pv_slice,
    spectral_copy,
    spectrum,
    to_fits,
)
from ._kernels import MOMENTS
from ._spectral import CONVENTIONS, Cube, parse_cube

__all__ = [
    "ACTIVITY",
    "CONVENTIONS",
    "MOMENTS",
    "Cube",
    "channel_maps",
    "channel_noise",
    "find_lines",
    "from_fits",
    "moments",
    "parse_cube",
    "pv_slice",
    "spectral_copy",
    "spectrum",
    "to_fits",
]
