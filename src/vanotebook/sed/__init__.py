"""Spectral energy distributions of compact sources, and greybody fits with honest errors.

`build_seds` gathers one SED per source (flux and error in Jy per band, upper
limits flagged) from survey catalogues cross-matched to the sources
(`vanotebook.xmatch`) or from forced photometry at the sources' positions on
maps brought to a common beam (`vanotebook.mosaic.homogenise`). `fit_greybody`
fits optically thin or thick greybodies to all of them at once (a batched
Levenberg-Marquardt in numpy, on Dask partitions for large catalogues, an emcee
option for posteriors), upper limits entering the likelihood as censored terms.
"""

from __future__ import annotations

from ._build import build_seds, forced_photometry, sed_arrays
from ._fit import FLAGS, METHODS, MODELS, fit_greybody, greybody_sed

__all__ = ["FLAGS", "METHODS", "MODELS", "build_seds", "fit_greybody", "forced_photometry",
           "greybody_sed", "sed_arrays"]
