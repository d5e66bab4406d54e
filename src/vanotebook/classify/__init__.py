"""Morphological classes of compact sources, and a calibrated probability that each is real.

A small convolutional network (JAX) looks at a cut-out of each source in beam
units (`cutouts`) and gives the probability of each class of `CLASSES`:
point-like, resolved compact, extended/diffuse, FRII-like (edge-brightened
double), FRI-like (core-brightened jets), bent/head-tail, and artefact
(sidelobe ring or stripe, noise peak). The real probability is one minus
the artefact's, calibrated on an independent synthetic set. The network is
trained on the synthetic morphologies of `_morph` (the demo sky's radio
galaxies are drawn by the same code), reproducibly from a seed, and the
trained weights ship with the package (`load_model`; users can load their
own, with their own class map). Gradient-boosted trees on morphological
features are the peer it was compared with (`benchmarks/classify.py`).

`classify` adds ``p_<class>``, ``class`` and ``score`` (the calibrated real
probability) to a catalogue; `vanotebook.detect` calls it for every
detection. Inference runs in batches, on the cluster's workers when there is
a client (GPU workers when ``device`` says so), with the network's forward
pass written against the array API (`_infer`: numpy, or CuPy on a GPU): JAX
is needed to train a model, never to use one.
"""

from __future__ import annotations

import numpy as np
from astropy.table import QTable, Table

from .._errors import VanotebookInputError
from ._data import BEAM_PIX, FWHM_RANGE, SIZE, cutouts, training_set
from ._model import DEFAULT_MODEL, FORMAT, Model, load_model
from ._morph import CLASSES, radio_galaxy, render
from ._train import calibration_table, evaluate, train_model

__all__ = ["BEAM_PIX", "CLASSES", "DEFAULT_MODEL", "FORMAT", "FWHM_RANGE", "SIZE", "Model",
           "add_columns", "calibration_table", "classify", "classify_cutouts", "cutouts",
           "evaluate",
           "get_model", "load_model", "radio_galaxy", "render", "train_model", "training_set"]

_DEFAULT: list[Model] = []


def get_model(model=None) -> Model:
    """``model`` as a `Model`: None is the shipped default (loaded once), a path is loaded."""
    if model is None:
        if not _DEFAULT:
            _DEFAULT.append(load_model())
        return _DEFAULT[0]
    if isinstance(model, Model):
        return model
    return load_model(model)


def classify_cutouts(cut: np.ndarray, *, model=None, client=None, device: str = "auto",
                     batch: int = 4096, progress=None) -> tuple[np.ndarray, np.ndarray, str]:
    """Class probabilities and real probability of cut-outs made by `cutouts`.

    Returns
    -------
    (probabilities (n, len(classes)), real probability (n,), the device that ran them)
    """
    from ._dask import predict_logits

    m = get_model(model)
    cut = np.asarray(cut, np.float32)
    if cut.ndim != 3 or cut.shape[1:] != (SIZE, SIZE):
        raise VanotebookInputError("cut", f"cut-outs of shape (n, {SIZE}, {SIZE})", cut)
    if len(cut) == 0:
        return np.zeros((0, len(m.classes))), np.zeros(0), "none"
    z, platform = predict_logits(m.weights, cut, client=client, device=device, batch=batch,
                                 progress=progress)
    proba = m.probabilities(logits=z)
    return proba, m.real(proba), platform


def classify(image, catalogue=None, *, rms=None, fwhm_pix=None, model=None, client=None,
             device: str = "auto", batch: int = 4096, progress=False) -> QTable | Table:
    """Classify the sources of a catalogue on an image.

    Parameters
    ----------
    image : DetectionResult, or an image
        A `vanotebook.detect.DetectionResult` (its background-subtracted
        image, noise map, PSF and catalogue are used), or any form
        `vanotebook.io.parse_image` accepts (its background and noise are
        measured as `detect` does).
    catalogue : Table, optional
        Sources with pixel ``x``, ``y`` or sky ``ra``, ``dec`` (degrees);
        default: the DetectionResult's catalogue.
    rms : float or array, optional
        The noise (a number or a map), instead of measuring it.
    fwhm_pix : float, optional
        Beam FWHM in pixels; default: the DetectionResult's PSF or the
        image's beam.
    model : Model or path, optional
        Default: the shipped model.
    client, device, batch
        Where the batches run (`cluster.devices`).
    progress : bool or callable
        A callable gets the fraction of batches done.

    Returns
    -------
    A copy of the catalogue with ``p_<class>`` per class, ``class`` (the most
    probable) and ``score`` (the calibrated probability that the source is
    real), and ``meta["classifier"]``.
    """
    from ..detect import DetectionResult

    m = get_model(model)
    if isinstance(image, DetectionResult):
        cat = image.catalogue if catalogue is None else catalogue
        data, noise, wcs = image._sub, image.rms if rms is None else rms, image._wcs
        if fwhm_pix is None:
            fwhm_pix = cat.meta.get("psf_fwhm_pix") if hasattr(cat, "meta") else None
    else:
        if catalogue is None:
            raise VanotebookInputError("catalogue", "a table of sources for an image",
                                       None)
        from ..detect import _as_image
        from ..detect._background import background_maps

        data, wcs, _, _, beam = _as_image(image)
        data = np.asarray(data, np.float32)
        cat = catalogue
        if fwhm_pix is None and beam is not None and wcs is not None:
            from astropy.wcs.utils import proj_plane_pixel_scales

            scale = float(np.sqrt(np.prod(proj_plane_pixel_scales(wcs.celestial))) * 3600)
            fwhm_pix = float(np.sqrt(beam.major.to_value("arcsec")
                                     * beam.minor.to_value("arcsec"))) / scale
        bkg, measured, _ = background_maps(data)
        data = data - bkg
        noise = measured if rms is None else rms
    if fwhm_pix is None:
        raise VanotebookInputError("fwhm_pix", "the beam FWHM in pixels (the image has no "
                                   "beam)", None)
    if not isinstance(cat, Table):
        raise VanotebookInputError("catalogue", "an astropy Table", cat)
    x, y = _positions(cat, wcs)
    noise_at = np.asarray(noise, float)
    if noise_at.ndim == 2:
        iy = np.clip(np.round(y).astype(int), 0, noise_at.shape[0] - 1)
        ix = np.clip(np.round(x).astype(int), 0, noise_at.shape[1] - 1)
        noise_at = noise_at[iy, ix]
    cut = cutouts(data, x, y, fwhm_pix=fwhm_pix, rms=noise_at)
    tell = progress if callable(progress) else None
    proba, real, platform = classify_cutouts(cut, model=m, client=client, device=device,
                                             batch=batch, progress=tell)
    out = cat.copy()
    add_columns(out, m, proba, real, platform)
    return out


def add_columns(cat: Table, model: Model, proba: np.ndarray, real: np.ndarray,
                platform: str) -> None:
    """Put ``p_<class>``, ``class``, ``score`` and ``meta["classifier"]`` on ``cat`` (in place)."""
    for i, c in enumerate(model.classes):
        cat[f"p_{c}"] = proba[:, i].astype(np.float32) if len(proba) else np.zeros(0, np.float32)
    names = np.asarray(model.classes)
    cat["class"] = names[proba.argmax(axis=1)] if len(proba) else np.zeros(0, dtype="U1")
    cat["score"] = real.astype(np.float32) if len(real) else np.zeros(0, np.float32)
    cat.meta["classifier"] = {"classes": list(model.classes), "spurious": list(model.spurious),
                              "device": platform,
                              "training": model.meta.get("training", {})}


def _positions(cat: Table, wcs) -> tuple[np.ndarray, np.ndarray]:
    if "x" in cat.colnames and "y" in cat.colnames:
        return (np.asarray(getattr(cat["x"], "value", cat["x"]), float),
                np.asarray(getattr(cat["y"], "value", cat["y"]), float))
    if wcs is None:
        raise VanotebookInputError("catalogue", "pixel x, y columns (the image has no WCS)",
                                   cat.colnames)
    from astropy.coordinates import SkyCoord

    from ..io import coordinates_in_degrees, guess_coordinates

    ra, dec = guess_coordinates(cat.colnames)
    if ra is None:
        raise VanotebookInputError("catalogue", "x, y or RA/Dec columns", cat.colnames)
    deg = coordinates_in_degrees(cat.copy(), ra, dec)
    x, y = wcs.celestial.world_to_pixel(SkyCoord(np.asarray(deg[ra], float),
                                                 np.asarray(deg[dec], float), unit="deg"))
    return np.asarray(x, float), np.asarray(y, float)
