"""The embedded default data: a seeded synthetic multi-survey sky with known truth.

* `make_sky` draws a sky model (point sources, Gaussians, rings, filaments,
  radio galaxies with lobes, jets and bent tails, diffuse emission), each
  source with its morphological class; `observe` renders it as one of the
  `SURVEYS` would, as overlapping FITS tiles with their truth
  (`Observation.source_at` says which true source lies under a position).
* `survey_catalogue` lists what a survey would publish (positions and fluxes
  scattered by their errors).
* `catalogue_pair` makes cross-match catalogues of any size, chunk by chunk.
* `make_spectra` makes a labelled Gaia-XP-like spectra set.
* `higal_field` makes a far-infrared field like Hi-GAL's (70-500 um) whose
  compact sources follow greybodies of known temperature, beta and mass.
* `demo_sky` holds all of it in memory; `write_demo_data` writes it to disk;
  `demo_archive` opens the shared archive, writing the demo sky's first if need be.
"""

from ._catalogues import CataloguePair, catalogue_pair
from ._demo import DemoSky, demo_archive, demo_sky, read_spectra, write_demo_data, write_spectra
from ._higal import HIGAL_BANDS, HigalField, greybody_flux, higal_field
from ._model import SkyModel, make_sky
from ._sourcecat import survey_catalogue
from ._spectra import GAIA_XP_CLASS_COUNTS, SpectraSet, make_spectra, spectra_wavelength
from ._surveys import SURVEYS, Observation, Survey, observe

__all__ = [
    "GAIA_XP_CLASS_COUNTS",
    "HIGAL_BANDS",
    "SURVEYS",
    "CataloguePair",
    "DemoSky",
    "HigalField",
    "Observation",
    "SkyModel",
    "SpectraSet",
    "Survey",
    "catalogue_pair",
    "demo_archive",
    "demo_sky",
    "greybody_flux",
    "higal_field",
    "make_sky",
    "make_spectra",
    "observe",
    "read_spectra",
    "spectra_wavelength",
    "survey_catalogue",
    "write_demo_data",
    "write_spectra",
]
