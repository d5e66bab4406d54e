"""Mosaicking: merge survey tiles, homogenise surveys, cut out sources.

* `mosaic` merges overlapping images on one grid (optimal or given), with
  Montage-style background matching, bilinear / nearest / flux-conserving
  resampling, weighted combination, on Dask blocks of the output grid.
* `mosaic_cube` merges spectral cubes spatially within a velocity range,
  channel by channel, leaving the spectral axis as it is.
* `homogenise` brings several surveys to one grid, one beam and one unit.
* `cutout` and `cutouts` make homogenised multi-survey stamps of one source
  or of a whole catalogue (on Dask).
* `to_fits` / `from_fits` round-trip a mosaic Dataset through FITS.
* `to_hips` writes an image or a mosaic (in memory, dask or zarr-backed, or a
  FITS file read block by block) as a HiPS 1.0 folder -- FITS and PNG tiles,
  Allsky, MOC, properties -- on Dask, for Aladin and other HiPS viewers.
"""

from .._lazy import make_callable
from ._core import METHODS, from_fits, mosaic, mosaic_cube, to_fits
from ._cutout import cutout, cutouts
from ._hips import Hips, to_hips
from ._homogenise import homogenise
from ._plan import Grid, optimal_grid

__all__ = [
    "METHODS",
    "Grid",
    "Hips",
    "cutout",
    "cutouts",
    "from_fits",
    "homogenise",
    "mosaic",
    "mosaic_cube",
    "optimal_grid",
    "to_fits",
    "to_hips",
]

make_callable(__name__, mosaic)  # ``vanotebook.mosaic(images, ...)`` calls `mosaic`
