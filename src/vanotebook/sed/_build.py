"""`build_seds`: one SED per source, from cross-matched catalogues or forced photometry."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import QTable, Table

from .._errors import VanotebookInputError, check_positive

__all__ = ["build_seds", "forced_photometry", "sed_arrays"]

_JY = u.Jy


def _sources_table(sources: Any, ra: str, dec: str) -> QTable:
    cat = getattr(sources, "catalogue", sources)  # a DetectionResult gives its catalogue
    if not isinstance(cat, Table):
        try:
            from ..io import parse_catalogue

            cat = parse_catalogue(cat, ra=ra, dec=dec)
            if not isinstance(cat, Table):
                cat = Table.from_pandas(cat.compute() if hasattr(cat, "compute") else cat)
        except VanotebookInputError:
            raise
        except Exception as exc:
            raise VanotebookInputError("sources", "a Table with ra/dec columns, a detect() "
                                       "result or a catalogue path", sources) from exc
    for c in (ra, dec):
        if c not in cat.colnames:
            raise VanotebookInputError("sources", f"a table with columns {ra!r} and {dec!r}",
                                       f"columns {cat.colnames[:10]}")
    return QTable(cat, copy=True)


def _degrees(table, name: str) -> np.ndarray:
    col = table[name]
    if isinstance(col, u.Quantity):
        return col.to_value(u.deg)
    unit = getattr(col, "unit", None)
    return np.asarray(col, np.float64) * (u.Unit(unit).to(u.deg) if unit else 1.0)


def _check_wavelengths(wavelengths: Any, names: list[str]) -> dict[str, u.Quantity]:
    if not isinstance(wavelengths, dict):
        raise VanotebookInputError("wavelengths", "a dict {band: wavelength Quantity}",
                                   wavelengths)
    missing = [n for n in names if n not in wavelengths]
    if missing:
        raise VanotebookInputError("wavelengths", f"a wavelength for every band {names}",
                                   f"none for {missing}")
    out = {}
    for n in names:
        w = wavelengths[n]
        if not isinstance(w, u.Quantity) or not w.unit.is_equivalent(u.m, u.spectral()):
            raise VanotebookInputError(f"wavelengths[{n!r}]", "a wavelength (or frequency) "
                                       "Quantity", w)
        out[n] = w.to(u.um, equivalencies=u.spectral())
    return out


def _flux_jy(column: Any, argument: str) -> np.ndarray:
    if isinstance(column, u.Quantity):
        q = column
    else:
        unit = getattr(column, "unit", None)
        if unit is None:
            raise VanotebookInputError(argument, "a flux-density column with a unit", column)
        q = np.asarray(column, np.float64) * u.Unit(unit)
    if not q.unit.is_equivalent(_JY):
        raise VanotebookInputError(argument, "a flux density (Jy, mJy...)", q.unit)
    from ..io import masked_as_nan

    return np.asarray(masked_as_nan(q.to_value(_JY)), np.float64)


# ----------------------------------------------------------------------------- photometry
def _psf_kernel(sigma_pix: float) -> np.ndarray:
    half = max(2, math.ceil(4 * sigma_pix))
    y, x = np.mgrid[-half:half + 1, -half:half + 1]
    k = np.exp(-(x**2 + y**2) / (2 * sigma_pix**2))
    return k / k.sum()


def forced_photometry(image: Any, ra_deg: np.ndarray, dec_deg: np.ndarray, *,
                      box: int | None = None, unit: Any = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Point-source fluxes and 1-sigma errors [Jy] at given positions of one map.

    The estimator is the PSF-weighted (matched-filter) flux,
    ``S = sum(I p) / sum(p^2)`` with ``p`` the beam normalised to unit sum and
    ``I`` in Jy per pixel, evaluated everywhere by one correlation; its local
    background and noise are the clipped box statistics of that filtered map
    (`vanotebook.detect`'s background estimator), so the error holds the
    correlated noise and the confusion of the neighbourhood, not a formula's
    white-noise guess. Positions off the map give NaN.

    Parameters
    ----------
    image
        Anything `vanotebook.io.parse_image` accepts, with a beam (``BMAJ``) and a
        surface-brightness unit (Jy/beam, MJy/sr, Jy/pix).
    ra_deg, dec_deg : arrays
        Positions (ICRS degrees).
    box : int, optional
        Background cell side in pixels (default: 12 beam FWHM, 32 pixels at least).
    unit : unit, optional
        Overrides the image's ``BUNIT``.

    Returns
    -------
    (flux, error) : arrays [Jy]
    """
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import proj_plane_pixel_area
    from scipy.ndimage import correlate, map_coordinates

    from ..detect._background import background_maps
    from ..io import parse_image
    from ..units import FWHM_TO_SIGMA, convert_brightness

    im = parse_image(image, unit=unit)
    if im.beam is None:
        raise VanotebookInputError("images", "maps with a beam (BMAJ/BMIN) for forced "
                                   "photometry", "a map without a beam")
    if im.unit is None:
        raise VanotebookInputError("images", "maps with a unit (BUNIT)", "a map without one")
    cel = im.wcs.celestial
    pix_sr = proj_plane_pixel_area(cel) * (math.pi / 180) ** 2
    data = np.asarray(im.data, np.float64)
    data = convert_brightness(data, im.unit, u.Jy / u.pix, beam=im.beam,
                              pixel_area=pix_sr * u.sr)
    pix_deg = math.sqrt(proj_plane_pixel_area(cel))
    fwhm_pix = math.sqrt(im.beam.major.to_value(u.deg) * im.beam.minor.to_value(u.deg)) / pix_deg
    kern = _psf_kernel(fwhm_pix * FWHM_TO_SIGMA)
    good = np.isfinite(data)
    filt = correlate(np.where(good, data, 0.0), kern, mode="constant") / np.sum(kern**2)
    cover = correlate(good.astype(np.float64), kern, mode="constant")
    filt = np.where(cover > 0.99 * kern.sum(), filt, np.nan)  # no flux where the beam is cut
    box = box if box is not None else max(32, round(12 * fwhm_pix))
    # the noise of the estimator: clipped local rms of the filtered map
    _, rms, _ = background_maps(filt.astype(np.float32), box=box)
    bkg, _, _ = background_maps(np.where(good, data, np.nan).astype(np.float32), box=box)
    coords = SkyCoord(ra_deg * u.deg, dec_deg * u.deg, frame="icrs")
    x, y = cel.world_to_pixel(coords)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ny, nx = data.shape[-2:]
    inside = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
    xs, ys = np.where(inside, x, 0), np.where(inside, y, 0)
    # the estimator itself at each exact position: the beam centred there, not the filtered
    # map interpolated between pixels (which loses ~5% at half-pixel offsets)
    half = kern.shape[0] // 2
    d = np.arange(-half, half + 1)
    iy = np.rint(ys).astype(np.int64)[:, None, None] + d[None, :, None]
    ix = np.rint(xs).astype(np.int64)[:, None, None] + d[None, None, :]
    on = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    iyc, ixc = np.clip(iy, 0, ny - 1), np.clip(ix, 0, nx - 1)
    sub = data - bkg
    vals = np.where(on, sub[iyc, ixc], np.nan)
    sig = fwhm_pix * FWHM_TO_SIGMA
    prof = np.exp(-((ix - xs[:, None, None]) ** 2 + (iy - ys[:, None, None]) ** 2)
                  / (2 * sig**2)) / (2 * np.pi * sig**2)
    flux = np.sum(np.nan_to_num(vals) * prof, axis=(1, 2)) / np.sum(prof**2, axis=(1, 2))
    complete = np.all(np.isfinite(vals), axis=(1, 2))
    err = map_coordinates(np.asarray(rms, np.float64), [ys, xs], order=1, mode="nearest")
    bad = ~inside | ~complete | ~np.isfinite(flux) | ~(err > 0)
    return np.where(bad, np.nan, flux), np.where(bad, np.nan, err)


def _image_items(images: Any) -> dict[str, Any]:
    """``{band: image}`` from a dict of images or a homogenised `xarray.Dataset`."""
    if hasattr(images, "data_vars"):
        return {str(n): images[n] for n in images.data_vars}
    if isinstance(images, dict) and images:
        return dict(images)
    raise VanotebookInputError("images", "a dict {band: image} or a homogenise() Dataset",
                               images)


# ----------------------------------------------------------------------------- build
def build_seds(
    sources: Any,
    *,
    wavelengths: dict[str, u.Quantity],
    catalogues: dict[str, Any] | None = None,
    images: Any = None,
    radius: u.Quantity | None = None,
    flux: str = "flux",
    flux_err: str = "flux_err",
    limits: dict[str, u.Quantity] | None = None,
    nsigma: float = 3.0,
    calibration: float | dict[str, float] = 0.0,
    errors: Any = None,
    ra: str = "ra",
    dec: str = "dec",
    box: int | None = None,
    client=None,
    progress: bool | Callable[[int, int], None] | None = None,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> QTable:
    """One SED per source: per-band flux densities and errors in Jy, upper limits flagged.

    Two ways, one of ``catalogues`` or ``images``:

    * **cross-match**: each band's catalogue is matched to the sources
      (`vanotebook.xmatch.crossmatch`, nearest within ``radius``) and its flux
      column taken, with the match's separation and probability. A source
      without a counterpart gets an upper limit of ``nsigma`` times the band's
      1-sigma ``limits`` when given, else NaN (missing).
    * **forced photometry** on maps (best brought to one beam first with
      `vanotebook.mosaic.homogenise`, so the fluxes compare): the matched-filter
      point-source flux at each position and its local noise (`forced_photometry`);
      below ``nsigma`` the band is an upper limit of ``nsigma`` times that noise.

    Parameters
    ----------
    sources : Table, detect() result or catalogue path
        The sources, with ``ra``/``dec`` columns (degrees).
    wavelengths : dict
        Band name -> wavelength Quantity, for every band.
    catalogues : dict, optional
        Band name -> catalogue (anything `crossmatch` takes) with ``flux`` and
        ``flux_err`` columns in flux-density units.
    images : dict or xarray.Dataset, optional
        Band name -> map (anything `vanotebook.io.parse_image` takes, with a beam and
        a brightness unit), or the Dataset `homogenise` returns.
    radius : Quantity
        Match radius (cross-match; required there).
    flux, flux_err : str
        Flux columns of the catalogues.
    limits : dict, optional
        Band name -> 1-sigma flux noise, for upper limits of unmatched sources.
    nsigma : float
        Upper limits are ``nsigma`` sigma; forced fluxes below it become limits.
    calibration : float or dict
        Fractional calibration (and photometric-method) uncertainty of each band
        (one for all, or ``{band: fraction}``), added in quadrature to the errors of
        detections (Hi-GAL quotes 5-10%); the limits keep the noise alone.
    errors : optional
        Positional errors for the match probabilities (as `crossmatch`'s ``errors``).
    ra, dec : str
        Coordinate columns.
    box : int, optional
        Background cell of the forced photometry, pixels.
    client : distributed.Client, optional
        Passed to the cross-match.
    progress : bool or callable, optional
        True: a tqdm bar of the bands done; a callable gets ``(done, total)``.
    output : path, optional
        Also write the table there (``.ecsv`` or ``.parquet``, atomically) with a
        ``<output>.prov.json`` record; made from files (sources, catalogues or
        maps given as paths), it reruns from that record to the same bytes
        (`vanotebook.provenance.rerun`).
    overwrite : bool
        Replace an existing ``output``.

    Returns
    -------
    astropy.table.QTable
        The source columns, then per band ``flux_<band>``, ``flux_err_<band>`` [Jy]
        and ``upper_<band>`` (bool; the flux is then the limit), plus
        ``separation_<band>`` [arcsec] and ``probability_<band>`` from a cross-match.
        ``meta``: ``bands``, ``wavelength_um``, ``method``, ``nsigma``, the
        ``provenance`` of this step and ``upstream_provenance``: the records of the
        sources (a detection), of each band's cross-match and of the homogenised maps.
        `sed_arrays` turns it into `fit_greybody`'s inputs.
    """
    from ..provenance import record
    from ..xmatch._core import Steps, check_progress, errors_to_json

    if (catalogues is None) == (images is None):
        raise VanotebookInputError("catalogues/images", "exactly one of catalogues "
                                   "(cross-match) or images (forced photometry)",
                                   "both" if catalogues is not None else "neither")
    check_positive("nsigma", nsigma)
    if output is not None:
        name = str(output).lower()
        if not name.endswith((".ecsv", ".parquet")):
            raise VanotebookInputError("output", "None or an .ecsv or .parquet file name",
                                       str(output))
        if Path(output).exists() and not overwrite:
            raise VanotebookInputError("output", "a new file (or overwrite=True)", str(output))
    cal = calibration if isinstance(calibration, dict) else None
    for name, value in (cal or {"calibration": calibration}).items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                0 <= value < 1):
            raise VanotebookInputError("calibration" if cal is None else
                                       f"calibration[{name!r}]", "a fraction in [0, 1)", value)
    check_progress(progress)
    table = _sources_table(sources, ra, dec)
    ra_deg, dec_deg = _degrees(table, ra), _degrees(table, dec)
    if catalogues is not None:
        if not isinstance(catalogues, dict) or not catalogues:
            raise VanotebookInputError("catalogues", "a dict {band: catalogue}", catalogues)
        if radius is None:
            raise VanotebookInputError("radius", "a match radius (an angle Quantity)", radius)
        from .. import healpix

        radius = healpix._check_radius(radius)
        items, method = dict(catalogues), "crossmatch"
    else:
        items, method = _image_items(images), "forced"
    names = list(items)
    waves = _check_wavelengths(wavelengths, names)
    limits = limits or {}
    for n, lim in limits.items():
        if n not in names:
            raise VanotebookInputError("limits", f"bands among {names}", n)
        if not isinstance(lim, u.Quantity) or not lim.unit.is_equivalent(_JY):
            raise VanotebookInputError(f"limits[{n!r}]", "a flux-density Quantity", lim)
    steps = Steps(progress, "SED bands") if progress else None
    params = {"method": method, "bands": names, "nsigma": float(nsigma),
              "wavelength_um": {n: float(w.value) for n, w in waves.items()},
              "radius_arcsec": None if radius is None else float(radius.to_value(u.arcsec)),
              "flux": flux, "flux_err": flux_err, "box": box, "calibration": calibration,
              "limits_jy": {n: float(v.to_value(_JY)) for n, v in limits.items()},
              "sources": _path_of(sources), "inputs": {b: _path_of(items[b]) for b in names},
              "ra": ra, "dec": dec, "errors": errors_to_json(errors)}
    n = len(table)
    upstream = {}
    if method == "forced" and "provenance" in getattr(images, "attrs", {}):
        upstream["images"] = images.attrs["provenance"]  # the homogenisation's record
    src_prov = getattr(sources, "provenance", None) or getattr(
        getattr(sources, "meta", None), "get", lambda *_: None)("provenance")
    if src_prov:
        upstream["sources"] = src_prov
    with record("vanotebook.sed.build_seds", params) as prov:
        if steps is not None:
            steps(0, len(names))
        for i, band in enumerate(names):
            f = np.full(n, np.nan)
            e = np.full(n, np.nan)
            up = np.zeros(n, bool)
            if method == "crossmatch":
                f, e, up, sep, prob, rec = _matched_band(
                    table, ra_deg, dec_deg, items[band], band, radius=radius, flux=flux,
                    flux_err=flux_err, limit=limits.get(band), nsigma=nsigma, errors=errors,
                    ra=ra, dec=dec, client=client)
                table[f"separation_{band}"] = sep * u.arcsec
                table[f"probability_{band}"] = prob
                upstream[band] = rec
            else:
                f, e = forced_photometry(items[band], ra_deg, dec_deg, box=box)
                up = np.isfinite(f) & (f < nsigma * e)
                f = np.where(up, nsigma * e, f)
                attrs = getattr(items[band], "attrs", None)
                if isinstance(attrs, dict) and "provenance" in attrs:
                    upstream[band] = attrs["provenance"]
            frac = float(cal.get(band, 0.0)) if cal is not None else float(calibration)
            if frac:
                e = np.where(up, e, np.hypot(e, frac * np.abs(f)))
            table[f"flux_{band}"] = f * _JY
            table[f"flux_err_{band}"] = e * _JY
            table[f"upper_{band}"] = up
            if steps is not None:
                steps(i + 1, len(names))
        for path in _files({"sources": sources, **items}):
            prov.add_input(path)
        file_meta = {"bands": names, "wavelength_um": params["wavelength_um"],
                     "method": method, "nsigma": float(nsigma)}
        if output is not None:
            from ..io import write_table

            out = QTable(table, copy=False)
            out.meta = file_meta
            write_table(out, output, overwrite=overwrite)
            prov.add_output(output)
    if output is not None:
        prov.write_sidecar(output)
    table.meta = {"bands": names, "wavelength_um": params["wavelength_um"], "method": method,
                  "nsigma": float(nsigma), "provenance": prov.to_dict(),
                  "upstream_provenance": upstream}
    return table


def _path_of(value: Any) -> str | None:
    """The absolute path of an input given as a file, else None (in memory)."""
    if isinstance(value, str | os.PathLike):
        return str(Path(value).resolve())
    return None


def _files(items: dict) -> list:
    return [Path(v) for v in items.values()
            if isinstance(v, str | os.PathLike) and Path(v).is_file()]


def _matched_band(table, ra_deg, dec_deg, catalogue, band, *, radius, flux, flux_err, limit,
                  nsigma, errors, ra, dec, client):
    from ..xmatch import crossmatch

    n = len(table)
    left = Table({"_row": np.arange(n), "ra": ra_deg, "dec": dec_deg})
    if errors is not None:  # the sources' error columns travel with the positions
        err = errors.get("sources") if isinstance(errors, dict) else errors
        for c in ([err] if isinstance(err, str) else list(err) if isinstance(err, tuple | list)
                  else []):
            if c not in table.colnames:
                raise VanotebookInputError("errors['sources']", "columns of the sources",
                                           c)
            left[c] = table[c]
    cat = catalogue
    if isinstance(cat, Table):
        cols = set(cat.colnames)
        for c in (flux, flux_err):
            if c not in cols:
                raise VanotebookInputError(f"catalogues[{band!r}]", f"a {c!r} column",
                                           f"columns {cat.colnames[:10]}")
        cat = Table(cat, copy=False)
        if ra != "ra" or dec != "dec":
            cat = Table(cat)
            cat.rename_columns([ra, dec], ["ra", "dec"])
    match_err = None
    if isinstance(errors, dict):
        match_err = {"left": errors.get("sources"), "right": errors.get(band)}
    elif errors is not None:
        match_err = errors
    m = crossmatch(left, cat, radius=radius, how="nearest", errors=match_err,
                   suffixes=("_src", ""), client=client)
    rows = np.asarray(m["_row_src"], np.int64)
    f = np.full(n, np.nan)
    e = np.full(n, np.nan)
    sep = np.full(n, np.nan)
    prob = np.full(n, np.nan)
    fcol = flux if flux in m.colnames else f"{flux}"
    f[rows] = _flux_jy(m[fcol], f"catalogues[{band!r}][{flux!r}]")
    e[rows] = _flux_jy(m[flux_err], f"catalogues[{band!r}][{flux_err!r}]")
    sep[rows] = np.asarray(m["separation"], np.float64)
    prob[rows] = np.asarray(m["probability"], np.float64)
    up = np.zeros(n, bool)
    if limit is not None:
        lim = float(limit.to_value(_JY))
        miss = ~np.isfinite(f)
        f[miss], e[miss], up[miss] = nsigma * lim, lim, True
    return f, e, up, sep, prob, m.meta.get("provenance")


def sed_arrays(seds: Table, bands: list[str] | None = None
               ) -> tuple[u.Quantity, u.Quantity, u.Quantity, np.ndarray]:
    """`fit_greybody`'s inputs from a `build_seds` table.

    Returns
    -------
    (flux, error, wavelength, upper_limit)
        ``(n_sources, n_bands)`` Quantities in Jy, the ``(n_bands,)`` wavelengths
        and the boolean upper-limit array, bands in ``seds.meta["bands"]`` order
        (or ``bands``).
    """
    bands = list(bands or seds.meta.get("bands", []))
    waves = seds.meta.get("wavelength_um", {})
    missing = [b for b in bands if f"flux_{b}" not in seds.colnames or b not in waves]
    if not bands or missing:
        raise VanotebookInputError("seds", "a build_seds() table (flux_<band> columns and "
                                   "meta['wavelength_um'])", f"missing bands {missing}")
    flux = np.column_stack([_flux_jy(seds[f"flux_{b}"], f"flux_{b}") for b in bands])
    err = np.column_stack([_flux_jy(seds[f"flux_err_{b}"], f"flux_err_{b}") for b in bands])
    up = np.column_stack([np.asarray(seds[f"upper_{b}"], bool) for b in bands])
    wl = np.array([waves[b] for b in bands]) * u.um
    return flux * _JY, err * _JY, wl, up
