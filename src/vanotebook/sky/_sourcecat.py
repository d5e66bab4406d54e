"""Source catalogues as the demo surveys would publish them.

A survey's catalogue lists the sources it detects (peak S/N above a limit),
with positions scattered by their errors and fluxes by theirs, the way a
real catalogue differs from the truth. Positional errors follow Condon
(1997): about ``FWHM / (2 S/N)`` per axis, floored at a calibration error.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from .._errors import VanotebookInputError
from .._random import SeedLike, as_generator
from ._surveys import Observation

__all__ = ["survey_catalogue"]


def survey_catalogue(observation: Observation, *, snr_limit: float = 5.0,
                     calibration_error: float = 0.2, seed: SeedLike = 0) -> Table:
    """The catalogue a survey would publish of a sky model.

    Parameters
    ----------
    observation : Observation
        A survey's view of the sky (`observe` or `DemoSky.observe`).
    snr_limit : float
        Keep sources whose beam-convolved peak exceeds this many noise rms
        (extended sources are kept when their integrated flux is above the
        limit times the noise in one beam).
    calibration_error : float
        Positional error floor per axis, arcsec.
    seed : int, SeedSequence or Generator
        Seeds the scatter.

    Returns
    -------
    astropy.table.Table
        ``source_id`` (the sky model's id: the truth), ``ra``, ``dec`` (deg),
        ``ra_error``, ``dec_error`` (arcsec), ``flux``, ``flux_error`` (Jy),
        ``snr`` and ``extended``.
    """
    if not isinstance(observation, Observation):
        raise VanotebookInputError("observation", "an Observation (from observe)", observation)
    truth = observation.truth
    survey = observation.survey
    noise = survey.noise  # rms in the survey unit
    peak = np.asarray(truth["peak"], float)
    flux = np.asarray(truth["flux"], float)
    per_beam = flux / observation.survey.beam.sr.value if survey.unit == "MJy/sr" else flux
    if survey.unit == "MJy/sr":
        per_beam = per_beam / 1e6  # Jy/sr -> MJy/sr
    snr = np.where(np.isfinite(peak), peak, per_beam) / noise
    keep = np.asarray(truth["in_survey"]) & (snr >= snr_limit)
    rows = truth[keep]
    snr = snr[keep]
    rng = as_generator(seed)
    fwhm = survey.beam.major.to_value("arcsec")
    size = np.nan_to_num(np.asarray(rows["major_obs"], float), nan=fwhm)
    sigma = np.hypot(size / (2.0 * snr), calibration_error)
    dec = np.asarray(rows["dec"], float)
    d_dec = rng.normal(0.0, sigma) / 3600.0
    d_ra = rng.normal(0.0, sigma) / 3600.0 / np.cos(np.radians(dec))
    flux_err = np.abs(np.asarray(rows["flux"], float)) / snr
    out = Table({
        "source_id": np.asarray(rows["source_id"]),
        "ra": (np.asarray(rows["ra"], float) + d_ra) % 360.0,
        "dec": dec + d_dec,
        "ra_error": sigma, "dec_error": sigma,
        "flux": np.asarray(rows["flux"], float) + rng.normal(0.0, flux_err),
        "flux_error": flux_err,
        "snr": snr,
        "extended": np.asarray(rows["extended"]),
    })
    for name, unit in (("ra", "deg"), ("dec", "deg"), ("ra_error", "arcsec"),
                       ("dec_error", "arcsec"), ("flux", "Jy"), ("flux_error", "Jy")):
        out[name].unit = unit
    out.meta.update({"survey": survey.key, "snr_limit": snr_limit})
    return out
