"""Source detection: compact and extended sources, Gaussian fits, reliability score (CAESAR-like).

* `detect(image, ...)` runs the whole pipeline and returns a `DetectionResult`
  (``.catalogue`` QTable of compact sources, ``.extended`` table, ``.residual``,
  ``.background``, ``.rms``, ``.regions``, ``.write(folder)``, ``.provenance``).
* `SourceFinder(...)` holds the settings; calling it on an image runs `detect`.

Pipeline: background and rms from clipped box statistics (or given maps) ->
S/N map (on numpy with numba: one fused pass, see `_fused`) -> islands (seed /
merge thresholds, flood fill), then handled as sparse pixel lists -> peaks ->
batched multi-component Gaussian fits -> nested sources (LoG blobs left in the
fit residual of large islands become extra components, refitted) -> residual
map (made on first use) -> extended segmentation (smoothing, watershed grown
to a lower threshold, region merging) -> reliability score (random forest
trained on injected sources with artefacts) and class.

Position angles are east of ICRS north whatever the image's frame (a
Galactic map's PAs are turned by the local angle between Galactic and
equatorial north).

Images come through `vanotebook.io.parse_image`. A plain 2-D numpy array is
also accepted: it has no WCS, so ``ra``/``dec`` are NaN and sizes are in
pixels; without a unit, ``peak`` is in the image's (dimensionless) values and
``flux`` is the pixel sum of the fitted Gaussian. An image in Jy/beam without
a beam raises; other units give fluxes in Jy when convertible.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable

from .._errors import VanotebookInputError, check_positive
from .._lazy import make_callable
from ..units import FWHM_TO_SIGMA, Beam

__all__ = ["DetectionResult", "SourceFinder", "detect"]

_ACTIVITY = "vanotebook.detect"


@dataclass
class DetectionResult:
    """What `detect` returns.

    Attributes
    ----------
    catalogue : QTable
        Compact sources, one row per fitted component.
    extended : QTable
        Extended sources from the residual map (flux, area, contour polygon).
    residual, background, rms : numpy arrays
        Maps in the image's unit (the residual is made on first use).
    header : astropy.io.fits.Header or None
        The image's header (WCS, unit, beam), None for a bare array.
    provenance : dict
        The provenance record (also in ``catalogue.meta["provenance"]``).
    """

    catalogue: QTable
    extended: QTable
    background: np.ndarray
    rms: np.ndarray
    header: fits.Header | None
    provenance: dict = field(default_factory=dict)
    _wcs: Any = None
    _sub: Any = None  # background-subtracted image (NaN where the data are not finite)
    _model_params: Any = None  # components (A, x0, y0, a, b, c) removed from the residual
    _residual: Any = None
    # the score's features of each catalogue row (`_classify.FEATURES`): what
    # `_classify.train_reliability` learns from
    _score_features: Any = None

    @property
    def residual(self) -> np.ndarray:
        """The image with background and compact sources removed (made on first use)."""
        if self._residual is None:
            from ._fit import gaussian_image

            model = gaussian_image(self._sub.shape, self._model_params)
            self._residual = self._sub - model.astype(np.float32)
        return self._residual

    @property
    def regions(self):
        """DS9 regions (astropy-regions): ellipses and extended-source polygons."""
        from ._catalogue import regions_for

        return regions_for(self.catalogue, self.extended, self._wcs)

    def residual_hdu(self) -> fits.PrimaryHDU:
        """The residual map as a FITS HDU, with PROV* cards."""
        header = fits.Header(self.header) if self.header is not None else fits.Header()
        return fits.PrimaryHDU(self.residual.astype(np.float32), header)

    def write(self, folder: str | os.PathLike, *, overwrite: bool = False) -> dict[str, Path]:
        """Write catalogue (ECSV), extended table, DS9 regions and residual FITS.

        The provenance goes in the FITS header and in a JSON sidecar beside each
        file. All or nothing: every file is first written into a hidden folder
        inside ``folder`` and moved into place only once all are complete, so a
        failure leaves no partial product; existing files are refused (before
        anything is written) unless ``overwrite``.
        """
        import shutil
        import tempfile

        from ..io import write_fits, write_table
        from ..provenance import Provenance

        if not isinstance(folder, str | os.PathLike):
            raise VanotebookInputError("folder", "a folder path (str or os.PathLike)", folder)
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise VanotebookInputError("folder", "a folder (not an existing file)", str(folder))
        names = {"catalogue": "catalogue.ecsv", "extended": "extended.ecsv",
                 "residual": "residual.fits", "regions": "sources.reg"}
        if not overwrite:
            for name in names.values():
                for target in (folder / name, folder / f"{name}.prov.json"):
                    if target.exists():
                        raise FileExistsError(f"{target} exists; pass overwrite=True to "
                                              "replace it")
        folder.mkdir(parents=True, exist_ok=True)
        prov = Provenance.from_dict(self.provenance)
        prov.outputs = []
        # in the files: the record's deterministic part (no times, host or outputs), so
        # the same image and settings write the same bytes (`rerun` checks them)
        file_record = prov.reproducible_dict() | {"digest": prov.digest}
        stage = Path(tempfile.mkdtemp(prefix=".detect.", suffix=".part", dir=folder))
        try:
            staged = {key: stage / name for key, name in names.items()}
            cat = self.catalogue.copy()
            cat.meta["provenance"] = file_record
            write_table(cat, staged["catalogue"])
            ext = self.extended.copy()
            ext.meta["provenance"] = file_record
            for name in ("contour_x", "contour_y"):
                ext[name] = [" ".join(f"{v:.2f}" for v in c) for c in ext[name]] if len(ext) \
                    else np.zeros(0, dtype="U1")
            write_table(ext, staged["extended"])
            hdul = fits.HDUList([self.residual_hdu()])
            prov.attach(hdul)
            write_fits(hdul, staged["residual"])
            self.regions.write(str(staged["regions"]), format="ds9", overwrite=True)
            for p in staged.values():
                prov.add_output(p)
                prov.outputs[-1]["path"] = str((folder / p.name).resolve())
            for p in staged.values():
                prov.write_sidecar(p)
            paths = {}
            for key, p in staged.items():  # everything is written: move it into place
                for src in (p, Path(f"{p}.prov.json")):
                    os.replace(src, folder / src.name)
                paths[key] = folder / p.name
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        self.provenance = prov.to_dict()
        return paths


def _as_image(image):
    """(data numpy float32, wcs or None, header or None, unit, beam)."""
    if isinstance(image, np.ndarray) and image.ndim == 2:
        return image, None, None, None, None
    from ..io import parse_image

    img = parse_image(image)
    return img.to_numpy(plane=True), img.wcs.celestial, img.header, img.unit, img.beam


def _psf_cov(beam, wcs, psf_fwhm) -> tuple[np.ndarray, Beam | None]:
    if psf_fwhm is not None:
        s = check_positive("psf_fwhm", float(psf_fwhm)) * FWHM_TO_SIGMA
        return np.eye(2) * s * s, beam
    if beam is not None and wcs is not None:
        M = np.asarray(wcs.celestial.pixel_scale_matrix, dtype=float)
        Minv = np.linalg.inv(M)
        return Minv @ beam.covariance() @ Minv.T, beam
    s = 3.0 * FWHM_TO_SIGMA
    return np.eye(2) * s * s, beam


def detect(
    image,
    *,
    seed_threshold: float = 5.0,
    merge_threshold: float = 2.6,
    min_pixels: int = 5,
    background=None,
    rms=None,
    box: int | str = 64,
    psf_fwhm: float | None = None,
    noise_fwhm: float | str = "auto",
    max_components: int = 5,
    fit: bool = True,
    nested: bool = True,
    extended: bool = True,
    classify: bool = True,
    extended_threshold: float = 3.0,
    extended_min_area: float = 5.0,
    tile: int | None = None,
    overlap: int = 64,
    client=None,
    device: str = "auto",
    seed: int = 0,
    model=None,
    progress=False,
) -> DetectionResult:
    """Find, fit, score and classify compact and extended sources in an image.

    Parameters
    ----------
    image
        Any form `vanotebook.io.parse_image` accepts, or a bare 2-D numpy
        array (pixel coordinates only).
    seed_threshold, merge_threshold : float
        Islands grow from pixels above ``seed_threshold`` sigma down to
        ``merge_threshold`` sigma.
    min_pixels : int
        Smallest island kept.
    background, rms : array or float, optional
        Pre-computed maps; otherwise from clipped statistics in ``box`` cells.
    box : int or "auto"
        Background cell side in pixels; "auto": 64, halved (down to 8 PSF FWHM,
        16 pixels at least) while the background curves on the cells' scale
        (`_background.adaptive_box`; small cells also take in extended emission,
        hence not the default). The noise is measured about the interpolated
        background, so a gradient within a cell is not noise.
    psf_fwhm : float, optional
        PSF FWHM in pixels; by default the image's beam, else estimated from
        the image's compact, isolated, bright sources (`_psf.estimate_psf`),
        else 3 pixels. ``catalogue.meta["psf"]`` says which, and
        ``meta["psf_fwhm_pix"]`` its size.
    noise_fwhm : float, "auto" or "psf"
        The noise's correlation length, for the parameter errors (Condon 1997):
        the FWHM in pixels of its (Gaussian) correlation function, 0 for
        independent pixels; "psf": correlated like the PSF; "auto" (default):
        like the beam for an image in Jy/beam (an interferometric image's noise
        is correlated over the beam), else independent.
    max_components : int
        Most Gaussians fitted per island (its brightest peaks).
    fit : bool
        Fit Gaussians (False: one component per island with the PSF shape
        and its peak value, no fit iterations).
    nested : bool
        Look for nested sources: compact LoG blobs in the fit residual of
        islands larger than one point source become extra components (up to
        ``max_components``), kept when the fit improves enough.
    extended, classify : bool
        Run the extended-source segmentation / the classifier
        (`vanotebook.classify`: ``p_<class>`` per morphological class, the
        most probable ``class``, and ``score``, the calibrated probability that
        a source is real; on the workers of ``client`` when ``tile`` is set).
    extended_threshold, extended_min_area : float
        Extended segmentation threshold (smoothed sigmas) and minimum area (PSF areas).
    tile, overlap : int, optional
        Cut the image into ``tile``-pixel tiles with ``overlap`` on Dask;
        islands larger than ``overlap`` may be cut (flagged).
    client : distributed.Client, optional
        Where tiles run; default client or local threads.
    device : {"auto", "cpu", "gpu"}
        Array backend of the fit kernel.
    seed : int
        Recorded in the provenance (the classifier is a trained model).
    model : vanotebook.classify.Model or path, optional
        The classifier's model; default: the one shipped with vanotebook.
    progress : bool or callable
        A callable gets the fraction done (0..1) after each stage (background,
        islands and fits, catalogue and score, extended segmentation); True
        prints the stages' percentages on stderr.

    Returns
    -------
    DetectionResult
    """
    from ..cluster import get_client, resolve_device
    from ..provenance import record
    from ._catalogue import compact_table, flux_factor
    from ._dask import compact_pass, run_tiled
    from ._extended import extended_table, segment_extended

    for name, val in (("seed_threshold", seed_threshold), ("merge_threshold", merge_threshold),
                      ("extended_threshold", extended_threshold),
                      ("extended_min_area", extended_min_area)):
        check_positive(name, val)
    if merge_threshold > seed_threshold:
        raise VanotebookInputError("merge_threshold", f"<= seed_threshold ({seed_threshold})",
                                   merge_threshold)
    check_positive("min_pixels", min_pixels, integer=True)
    if box != "auto":
        check_positive("box", box, integer=True)
    check_positive("max_components", max_components, integer=True)
    if tile is not None:
        check_positive("tile", tile, integer=True)
    if not (isinstance(overlap, int) and overlap >= 0):
        raise VanotebookInputError("overlap", "a non-negative integer", overlap)
    tell = _progress_function(progress)
    dev = resolve_device(device)
    xp = np
    if dev == "gpu":  # pragma: no cover - needs a GPU
        import cupy as xp
    data, wcs, header, unit, beam = _as_image(image)
    if not np.issubdtype(data.dtype, np.number):
        raise VanotebookInputError("image", "numeric pixels", data.dtype)
    data = np.asarray(data, dtype=np.float32)
    if not np.isfinite(data).any():
        raise VanotebookInputError("image", "an image with finite pixels", "all NaN/inf")
    if unit is not None and unit.is_equivalent(u.Jy / u.beam) and beam is None:
        raise VanotebookInputError("image", f"a beam (BMAJ/BMIN) for an image in {unit}",
                                   "no beam")
    psf_cov, beam = _psf_cov(beam, wcs, psf_fwhm)
    noise = _noise_correlation(noise_fwhm, beam if _per_beam(unit) else None, wcs, psf_cov)
    psf_sigma = float(np.linalg.det(psf_cov)) ** 0.25
    params = {"seed_threshold": seed_threshold, "merge_threshold": merge_threshold,
              "min_pixels": min_pixels, "box": box, "psf_fwhm": psf_fwhm,
              "noise_fwhm": noise_fwhm, "max_components": max_components, "fit": fit,
              "nested": nested,
              "extended": extended, "classify": classify,
              "model": None if model is None else str(getattr(model, "meta", {}).get(
                  "training", model) if not isinstance(model, str | os.PathLike)
                  else Path(model).resolve()),
              "extended_threshold": extended_threshold,
              "extended_min_area": extended_min_area, "tile": tile, "overlap": overlap,
              "background": _recorded_map(background), "rms": _recorded_map(rms),
              "device": device,
              "image": str(Path(image).resolve()) if isinstance(image, str | os.PathLike)
              else None}
    with record(_ACTIVITY, params, seed=seed) as prov:
        tell(0.0)
        if params["image"] is not None:
            prov.add_input(params["image"])
        pass_params = {"seed": seed_threshold, "merge": merge_threshold,
                       "min_pixels": min_pixels, "psf_cov": psf_cov,
                       "max_components": max_components,
                       "peak_size": max(3, 2 * round(0.75 * psf_sigma / FWHM_TO_SIGMA) + 1),
                       "iterations": 40 if fit else 0, "xp": xp, "nested": nested,
                       "chi2_scale": _chi2_scale(noise, psf_cov)}
        # background cells: adaptive, from ``box`` down to 8 PSF FWHM (16 pixels at least)
        min_box = max(16, int(8 * psf_sigma / FWHM_TO_SIGMA))
        bkg_map, rms_map, sub, snr, above = _snr_maps(data, background, rms, box,
                                                      merge_threshold, min_box)
        psf_source = "psf_fwhm" if psf_fwhm is not None else "beam" if beam is not None \
            else "assumed 3 pixels"
        if psf_fwhm is None and beam is None:  # no beam: the PSF from the image's stars
            from ._psf import estimate_psf

            found = estimate_psf(sub, rms_map)
            if found is not None:
                psf_cov, psf_source = found, "estimated from the image"
                psf_sigma = float(np.linalg.det(psf_cov)) ** 0.25
                noise = _noise_correlation(noise_fwhm, None, wcs, psf_cov)
                pass_params.update(
                    psf_cov=psf_cov, chi2_scale=_chi2_scale(noise, psf_cov),
                    peak_size=max(3, 2 * round(0.75 * psf_sigma / FWHM_TO_SIGMA) + 1))
        tell(0.15)
        if not has_noise(rms_map):  # constant image: nothing can stand above the noise
            from ._fit import _empty_components

            comps = _empty_components()
        elif tile is None:
            comps = compact_pass(sub, rms_map, full_shape=sub.shape, snr=snr, above=above,
                                 **pass_params)
        else:
            comps = run_tiled(sub, rms_map, tile=tile, overlap=overlap,
                              client=get_client(client), params=pass_params, snr=snr,
                              above=above)
        del snr, above
        tell(0.7)
        pixel_area = None
        if wcs is not None:
            from astropy.wcs.utils import proj_plane_pixel_area

            pixel_area = (proj_plane_pixel_area(wcs) * u.deg**2).to(u.sr)
        cat = compact_table(comps, rms=rms_map, wcs=wcs, unit=unit, beam=beam,
                            pixel_area=pixel_area, noise=noise)
        cat["cut_by_tile"] = comps.get("tile_cut", np.zeros(len(cat), bool))
        # classes: point if not resolved, compact if resolved, extended if much larger
        if len(cat):
            p = comps["params"]
            det = p[:, 3] * p[:, 5] - p[:, 4] ** 2
            psf_area = np.full(len(cat), psf_sigma**2)
            if beam is not None and wcs is not None and psf_fwhm is None:
                # the beam's area in pixels where each source is (non-conformal maps)
                from ._catalogue import local_jacobian

                jac = local_jacobian(wcs.celestial, p[:, 1], p[:, 2])
                psf_area = (np.sqrt(np.linalg.det(beam.covariance()))
                            / np.abs(np.linalg.det(jac)))
            size = (1.0 / np.sqrt(det)) / psf_area  # area ratio to the PSF
            size_err = np.hypot(cat["major_err"].value / np.maximum(cat["major"].value, 1e-30),
                                cat["minor_err"].value / np.maximum(cat["minor"].value, 1e-30))
            resolved = (size - 1) > np.maximum(3 * size_err, 0.2)
            big = size > 4.0
            cat["cls"] = np.where(big, "extended", np.where(resolved, "compact", "point"))
        model_params = (comps["params"][np.asarray(cat["cls"]) != "extended"]
                        if len(cat) else np.zeros((0, 6)))
        score_features = None
        if classify:  # (an empty catalogue gets the columns too)
            from ..classify import add_columns, classify_cutouts, cutouts, get_model

            fwhm_pix = psf_sigma / FWHM_TO_SIGMA
            cut = cutouts(sub, cat["x"].value, cat["y"].value, fwhm_pix=fwhm_pix,
                          rms=cat["rms"].value)
            chosen = get_model(model)
            proba, real, platform = classify_cutouts(
                cut, model=chosen, device=device,
                client=get_client(client) if tile is not None else None)
            add_columns(cat, chosen, proba, real, platform)
            from ._classify import classify_sources, features

            # the calibrated real probability of a detection: the network's view of the
            # cut-out with the fit's and the neighbourhood's (`_classify`)
            score_features = features(comps, psf_cov=psf_cov, rms_at=cat["rms"].value,
                                      cnn_real=real, sub=sub, rms=rms_map)
            cat["score"] = classify_sources(score_features).astype(np.float32)
        tell(0.85)
        factor, funit = flux_factor(unit, beam, pixel_area)
        result = DetectionResult(cat, None, bkg_map, rms_map, header, {}, wcs, sub, model_params,
                                 _score_features=score_features)
        ext_regions = []
        if extended and has_noise(rms_map):
            seg, ext_regions = segment_extended(result.residual, rms_map, psf_sigma=psf_sigma,
                                                threshold=extended_threshold,
                                                min_area=extended_min_area)
            if len(cat) and ext_regions:  # compact components (knots) inside each region
                iy = np.clip(np.round(cat["y"].value).astype(int), 0, seg.shape[0] - 1)
                ix = np.clip(np.round(cat["x"].value).astype(int), 0, seg.shape[1] - 1)
                cat["extended_id"] = seg[iy, ix].astype(np.int64) - 1
        parea = pixel_area.to_value(u.arcsec**2) if pixel_area is not None else None
        efactor = factor
        if wcs is not None and ext_regions:  # each region's own pixel solid angle
            from ._catalogue import local_flux_factor, local_jacobian

            jac = local_jacobian(wcs.celestial, [r["x"] for r in ext_regions],
                                 [r["y"] for r in ext_regions])
            local = (np.abs(np.linalg.det(jac)) * u.deg**2).to(u.sr)
            efactor = local_flux_factor(unit, beam, pixel_area, local.value)
            parea = local.to_value(u.arcsec**2)
        ext = extended_table(ext_regions, wcs=wcs, factor=efactor, funit=funit,
                             pixel_area_arcsec2=parea, catalogue=cat)
        cat.meta["unit"] = str(unit) if unit is not None else None
        cat.meta["psf_fwhm_pix"] = float(psf_sigma / FWHM_TO_SIGMA)
        cat.meta["psf"] = psf_source
    tell(1.0)
    record_dict = prov.to_dict()
    cat.meta["provenance"] = record_dict
    ext.meta["provenance"] = record_dict
    result.extended = ext
    result.provenance = record_dict
    return result


def _progress_function(progress):
    """``f(fraction)`` for `detect`'s ``progress`` (False: nothing; True: stderr)."""
    if progress is False or progress is None:
        return lambda fraction: None
    if progress is True:
        import sys

        def show(fraction):
            print(f"detect: {100 * fraction:3.0f}%", file=sys.stderr, flush=True)

        return show
    if callable(progress):
        return progress
    raise VanotebookInputError("progress", "True, False or a callable taking the fraction "
                               "done", progress)


def _recorded_map(value):
    """A background/rms as recorded: None, a number, or "array" (in memory: no rerun)."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.ndim == 0 and np.issubdtype(arr.dtype, np.number):
        return float(arr)
    return "array"


def _chi2_scale(noise, psf_cov) -> float:
    """How much a chi-square over independent pixels over-counts: the noise correlation
    area in pixels (``2 pi sqrt(det N)``), 1 for white noise."""
    if noise is None:
        return 1.0
    cov = psf_cov if isinstance(noise, Beam) else np.asarray(noise, float)
    return max(1.0, 2 * np.pi * float(np.sqrt(np.linalg.det(cov))))


def _per_beam(unit) -> bool:
    """Whether pixels are in Jy/beam (an interferometric image: noise correlated over it)."""
    return unit is not None and unit.is_equivalent(u.Jy / u.beam)


def _noise_correlation(noise_fwhm, beam, wcs, psf_cov):
    """The noise correlation for `compact_table`: None (white), pixels^2 or a sky `Beam`."""
    if isinstance(noise_fwhm, str):
        if noise_fwhm == "auto":
            return beam if (beam is not None and wcs is not None) else None
        if noise_fwhm == "psf":
            return psf_cov
        raise VanotebookInputError("noise_fwhm", '"auto", "psf" or a FWHM in pixels (>= 0)',
                                   noise_fwhm)
    try:
        fwhm = float(noise_fwhm)
    except (TypeError, ValueError):
        fwhm = -1.0
    if not (np.isfinite(fwhm) and fwhm >= 0):
        raise VanotebookInputError("noise_fwhm", '"auto", "psf" or a FWHM in pixels (>= 0)',
                                   noise_fwhm)
    if fwhm == 0:
        return None
    s = fwhm * FWHM_TO_SIGMA
    return np.eye(2) * s * s


def has_noise(rms_map) -> bool:
    """Whether any pixel has a positive noise (a constant image has none)."""
    return bool(np.any(rms_map > 0))


def _snr_maps(data, background, rms, box, merge, min_box=16):
    """(background, rms, data - background, S/N, S/N >= merge) maps, float32."""
    from ._background import adaptive_box, background_grids, background_maps, effective_box
    from ._fused import fused_for, snr_pass

    if box == "auto" and background is None:  # smaller cells where the background curves
        box = adaptive_box(data, 64, min_box=min_box)
    box = effective_box(64 if box == "auto" else box, data.shape)  # clipped to the image

    fused = fused_for(data.shape)
    if background is None and rms is None and fused:  # one fused pass
        bkg_g, rms_g = background_grids(data, box=box)
        return snr_pass(data, merge=merge, grids=(bkg_g, rms_g), box=box)
    if background is None or rms is None:
        bkg_map, rms_map, _ = background_maps(data, box=box)
    if background is not None:
        bkg_map = _as_map(background, data.shape, "background")
    if rms is not None:
        rms_map = _as_map(rms, data.shape, "rms")
    bkg_map = np.asarray(bkg_map, np.float32)
    rms_map = np.asarray(rms_map, np.float32)
    if fused:
        return snr_pass(data, merge=merge, maps=(bkg_map, rms_map))
    sub = data - bkg_map
    sub[~np.isfinite(data)] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.where(rms_map > 0, sub / np.where(rms_map > 0, rms_map, 1.0), np.nan).astype(
            np.float32)
        above = snr >= merge
    return bkg_map, rms_map, sub, snr, above


def _as_map(value, shape, name):
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 0:
        return np.full(shape, float(arr), np.float32)
    if arr.shape != tuple(shape):
        raise VanotebookInputError(name, f"a scalar or an array of shape {tuple(shape)}",
                                   arr)
    return arr


class SourceFinder:
    """A configured detection pipeline: ``SourceFinder(**settings)(image)``.

    Parameters are those of `detect` (keyword-only); calling the finder on an
    image returns a `DetectionResult`.
    """

    def __init__(self, **settings: Any) -> None:
        import inspect

        allowed = set(inspect.signature(detect).parameters) - {"image"}
        for key in settings:
            if key not in allowed:
                raise VanotebookInputError(key, f"one of {sorted(allowed)}", key)
        self.settings = settings

    def __call__(self, image, **overrides: Any) -> DetectionResult:
        return detect(image, **{**self.settings, **overrides})

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"SourceFinder({inner})"


make_callable(__name__, detect)  # ``vanotebook.detect(image, ...)`` calls `detect`
