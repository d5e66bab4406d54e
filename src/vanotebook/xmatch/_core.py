"""The cross-match: input checks, epochs, the in-memory match and the result table."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Table

from .. import healpix
from .._errors import VanotebookInputError, check_choice, check_positive
from ..cluster import resolve_device
from . import _kernels as K
from . import _nway
from . import _probability as P

__all__ = ["HOWS", "MatchSpec", "crossmatch_tables", "validate"]

HOWS = ("nearest", "all", "k")
NAN_POLICIES = ("drop", "raise")
ARCSEC = math.pi / 180 / 3600
_FINE_ORDER = 12


@dataclass
class MatchSpec:
    """The validated options of one cross-match (checked before any work starts)."""

    radius: u.Quantity
    how: str
    k: int
    ra: str
    dec: str
    errors: Any
    epoch: Any
    suffixes: tuple[str, str]
    nan: str
    prior: float | None
    device: str

    @property
    def radius_rad(self) -> float:
        return float(self.radius.to_value(u.rad))

    @property
    def chord(self) -> float:
        return K.angle_to_chord(self.radius_rad)


def validate(*, radius, how, k, ra, dec, errors, epoch, suffixes, nan, prior, device,
             resolve: bool = True) -> MatchSpec:
    """Check every option and return a `MatchSpec`; raises `VanotebookInputError`."""
    radius = healpix._check_radius(radius)
    check_choice("how", how, HOWS)
    k = check_positive("k", k, integer=True)
    for name, value in (("ra", ra), ("dec", dec)):
        if not isinstance(value, str):
            raise VanotebookInputError(name, "a column name", value)
    if (not isinstance(suffixes, tuple | list) or len(suffixes) != 2
            or not all(isinstance(s, str) for s in suffixes) or suffixes[0] == suffixes[1]):
        raise VanotebookInputError("suffixes", "two different strings", suffixes)
    check_choice("nan", nan, NAN_POLICIES)
    if prior is not None and not (isinstance(prior, float | int) and 0 < prior < 1):
        raise VanotebookInputError("prior", "None or a completeness in (0, 1)", prior)
    if errors is not None and not isinstance(errors, dict):
        errors = {"left": errors, "right": errors}
    if errors is not None and set(errors) - {"left", "right"}:
        raise VanotebookInputError("errors", "a dict with keys 'left' and 'right'", errors)
    for side, value in (errors or {}).items():
        check_error_spec(value, f"errors[{side!r}]")
    if epoch is not None and epoch is not False:
        if isinstance(epoch, u.Quantity):
            epoch = epoch.to_value(u.yr)
        if isinstance(epoch, bool) or not isinstance(epoch, int | float) or not (
            0 < epoch < 1e5
        ):
            raise VanotebookInputError("epoch", "None, False or a Julian year", epoch)
        epoch = float(epoch)
    if not resolve:  # decided later, where the match runs (see `crossmatch`)
        from .. import _config

        device = device or _config.get("device", "auto")
        check_choice("device", device, _config.DEVICES)
    return MatchSpec(radius, how, k, ra, dec, errors, epoch, tuple(suffixes), nan, prior,
                     resolve_device(device) if resolve else device)


def check_error_spec(value: Any, argument: str) -> Any:
    """Refuse an error given as an angle that is not one positive finite value."""
    if isinstance(value, u.Quantity):
        ok = (value.unit.physical_type == "angle" and value.size == 1
              and bool(np.isfinite(value.value)) and float(value.value) > 0)
        if not ok:
            raise VanotebookInputError(argument, "one positive angle Quantity (or a column "
                                       "name)", value)
    return value


def check_progress(progress: Any) -> Any:
    """``progress`` is None/False (nothing), True (a bar) or a callable ``f(done, total)``."""
    if progress is None or isinstance(progress, bool) or callable(progress):
        return progress
    raise VanotebookInputError("progress", "True, False, None or a callable f(done, total)",
                               progress)


class Steps:
    """Reports ``(done, total)`` steps to a ``progress`` callable or a tqdm bar (True)."""

    def __init__(self, progress: Any, desc: str) -> None:
        self.callback = progress if callable(progress) and progress is not True else None
        self.show, self.desc, self.bar = progress is True, desc, None

    def __call__(self, done: int, total: int) -> None:
        if self.callback is not None:
            self.callback(done, total)
        if self.show:
            if self.bar is None:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=self.desc)
            self.bar.total = total
            self.bar.update(done - self.bar.n)
            if done >= total:
                self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ----------------------------------------------------------------------------- columns
def _unit_of(table, name: str, default: u.UnitBase) -> u.UnitBase:
    unit = getattr(table[name], "unit", None) if hasattr(table, "colnames") else None
    if unit is None:
        units = getattr(table, "attrs", {}).get("units", {})
        unit = units.get(name)
    return u.Unit(unit) if unit is not None else default


def _column(table, name: str) -> np.ndarray:
    col = table[name]
    return np.asarray(getattr(col, "value", col), dtype=np.float64)


def error_arrays(table, spec: Any, side: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-axis 1-sigma positional errors in radians, or None when there are none."""
    columns = list(table.colnames if hasattr(table, "colnames") else table.columns)
    n = len(table)
    if spec is None:
        if {"ra_error", "dec_error"} <= set(columns):
            spec = ("ra_error", "dec_error")
        elif "error" in columns:
            spec = "error"
        else:
            return None
    if isinstance(spec, u.Quantity):
        if spec.unit.physical_type != "angle" or spec.size != 1:
            raise VanotebookInputError(f"errors[{side!r}]", "an angle Quantity", spec)
        s = np.full(n, spec.to_value(u.rad))
        return s, s
    names = (spec, spec) if isinstance(spec, str) else spec
    if not (isinstance(names, tuple | list) and len(names) == 2
            and all(isinstance(c, str) for c in names)):
        expected = "a column name, two column names (ra, dec axes) or an angle Quantity"
        raise VanotebookInputError(f"errors[{side!r}]", expected, spec)
    out = []
    for c in names:
        if c not in columns:
            raise VanotebookInputError(f"errors[{side!r}]", f"columns of the {side} catalogue", c)
        out.append(_column(table, c) * _unit_of(table, c, u.arcsec).to(u.rad))
    return out[0], out[1]


def positions(table, spec: MatchSpec, target_epoch: float | None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) in degrees, moved to ``target_epoch`` when the table has proper motions."""
    ra = _column(table, spec.ra) * _unit_of(table, spec.ra, u.deg).to(u.deg)
    dec = _column(table, spec.dec) * _unit_of(table, spec.dec, u.deg).to(u.deg)
    finite = dec[np.isfinite(dec)]
    if finite.size and (finite.min() < -90 or finite.max() > 90):
        raise VanotebookInputError(spec.dec, "declinations within [-90, 90] deg",
                                   f"values from {finite.min():g} to {finite.max():g}")
    columns = set(table.colnames if hasattr(table, "colnames") else table.columns)
    if target_epoch is not None and {"pmra", "pmdec", "epoch"} <= columns:
        pmra = _column(table, "pmra") * _unit_of(table, "pmra", u.mas / u.yr).to(u.mas / u.yr)
        pmdec = _column(table, "pmdec") * _unit_of(table, "pmdec", u.mas / u.yr).to(u.mas / u.yr)
        dt = target_epoch - _column(table, "epoch")
        pmra, pmdec = np.nan_to_num(pmra), np.nan_to_num(pmdec)
        dt = np.nan_to_num(dt)
        ra, dec = K.propagate(ra, dec, pmra, pmdec, dt)
    return ra, dec


def _epoch_of(table) -> float | None:
    columns = set(table.colnames if hasattr(table, "colnames") else table.columns)
    if "epoch" in columns:
        values = np.unique(_column(table, "epoch"))
        values = values[np.isfinite(values)]
        if values.size == 1:
            return float(values[0])
    value = getattr(table, "meta", {}).get("epoch") if hasattr(table, "meta") else None
    return float(value) if isinstance(value, int | float) else None


def target_epoch(left, right, spec: MatchSpec) -> float | None:
    """The common epoch: ``spec.epoch``, or (auto) the epoch of the side without motions."""
    if spec.epoch is False:
        return None
    if spec.epoch is not None:
        return spec.epoch
    def has_pm(t):
        cols = set(t.colnames if hasattr(t, "colnames") else t.columns)
        return {"pmra", "pmdec", "epoch"} <= cols

    if has_pm(left) and not has_pm(right):
        return _epoch_of(right)
    if has_pm(right) and not has_pm(left):
        return _epoch_of(left)
    return None


# ----------------------------------------------------------------------------- matching
@dataclass
class Pairs:
    """Matched pairs of one partition (indices into its left and right rows)."""

    left: np.ndarray
    right: np.ndarray
    separation: np.ndarray  # radians
    f: np.ndarray  # Gaussian density per sr (NaN without errors)
    f_sum: np.ndarray  # sum of f over the left row's candidates
    first: np.ndarray  # first pair of its left row
    f_in: np.ndarray  # fraction of counterparts expected inside the radius, per pair


def match_arrays(lra, ldec, rra, rdec, lerr, rerr, spec: MatchSpec, rerr_typical=None, *,
                 engine: str = "auto") -> Pairs:
    """Match left positions against right positions (degrees; NaN-free) on one partition.

    All candidates within the radius are found (`_kernels.pairs_within`, on the
    CPU); separations and Gaussian densities of every candidate are computed on
    ``spec.device``; then the nearest (or ``k`` nearest, or all) are kept.
    """
    xp, to = _namespace(spec.device)
    li_all, ri_all, lxyz, rxyz, d2 = K.pairs_within(lra, ldec, rra, rdec, spec.chord,
                                                    engine=engine)
    n_left = len(lra)
    if spec.how == "all":
        keep = None
    else:
        first_all = np.ones(li_all.size, bool)
        first_all[1:] = li_all[1:] != li_all[:-1]
        if spec.how == "nearest" or spec.k == 1:
            keep = first_all
        else:  # rank of each candidate within its left row (rows are sorted by distance)
            starts = np.flatnonzero(first_all)
            rank = np.arange(li_all.size) - np.repeat(starts, np.diff(np.append(starts,
                                                                             li_all.size)))
            keep = rank < spec.k
    with_errors = lerr is not None and rerr is not None
    # separations from the search's own squared chords (float64 differences of unit
    # vectors: ~1e-16 rad absolute, as astropy's Vincenty formula at these angles)
    sep_all = K.chord_to_angle(np.sqrt(d2 if keep is None or with_errors else d2[keep]))
    if with_errors:
        a, b = to(lxyz[li_all]), to(rxyz[ri_all])
        dx, dy = K.tangent_offsets(a, b)
        vx = to(lerr[0][li_all] ** 2 + rerr[0][ri_all] ** 2)
        vy = to(lerr[1][li_all] ** 2 + rerr[1][ri_all] ** 2)
        f_all = np.asarray(_from(P.gaussian_density(dx, dy, vx, vy)))
        f_sum_rows = np.bincount(li_all, weights=f_all, minlength=n_left)
        typical = rerr_typical if rerr_typical is not None else (
            float(np.mean((rerr[0] ** 2 + rerr[1] ** 2) / 2)) if len(rerr[0]) else 0.0)
        var_in = to((lerr[0] ** 2 + lerr[1] ** 2) / 2 + typical)
        f_in_rows = np.asarray(_from(P.inside_fraction(var_in, spec.radius_rad)))
        if keep is not None:
            sep_all, f_all = sep_all[keep], f_all[keep]
    else:
        f_all = np.full(sep_all.size, np.nan)
        f_sum_rows = np.full(n_left, np.nan)
        f_in_rows = np.full(n_left, np.nan)
    li = li_all if keep is None else li_all[keep]
    ri = ri_all if keep is None else ri_all[keep]
    first = np.ones(li.size, bool)
    first[1:] = li[1:] != li[:-1]
    del xp
    return Pairs(li, ri, sep_all, f_all, f_sum_rows[li], first, f_in_rows[li])


def _namespace(device: str):
    if device == "gpu":  # pragma: no cover - no GPU in CI
        import cupy

        return cupy, cupy.asarray
    return np, np.asarray


def _from(x):
    return x.get() if hasattr(x, "get") and not isinstance(x, np.ndarray) else x


_DENSITY_SAMPLE = 200_000
_SCORE_CHUNK = 1000  # primary rows per progress step of crossmatch_many


def density_sr(ra: np.ndarray, dec: np.ndarray) -> tuple[float, float]:
    """(sources per steradian, covered area in deg^2) of finite positions.

    The area comes from a HEALPix histogram (`vanotebook.healpix.coverage_area`)
    of at most `_DENSITY_SAMPLE` rows (an evenly strided subset, so the same
    input gives the same answer); the density is all rows over that area.
    """
    if ra.size == 0:
        return 0.0, 0.0
    step = max(1, -(-ra.size // _DENSITY_SAMPLE))
    sra, sdec = ra[::step], dec[::step]
    pix, counts = np.unique(healpix.pixel_index(sra, sdec, _FINE_ORDER), return_counts=True)
    area = healpix.coverage_area(pix, counts, order=_FINE_ORDER)
    return ra.size / (area * (math.pi / 180) ** 2), area


def probabilities(pairs_f, pairs_f_sum, pairs_f_in, first, n_left: int, rho: float,
                  spec: MatchSpec) -> tuple[np.ndarray, float]:
    """Posterior of each pair and the fitted completeness ``q``."""
    if pairs_f.size == 0 or not np.isfinite(pairs_f).any() or rho <= 0:
        return np.full(pairs_f.size, np.nan), float("nan")
    q, f_in = fit_prior(pairs_f_sum[first], pairs_f_in[first], n_left, rho, spec)
    return np.asarray(P.pair_posteriors(pairs_f, pairs_f_sum, q, rho, f_in)), q


def fit_prior(f_sum_first: np.ndarray, f_in_first: np.ndarray, n_left: int, rho: float,
              spec: MatchSpec) -> tuple[float, float]:
    """The completeness ``q`` (fitted, or ``spec.prior``) and the inside fraction ``f_in``
    of the posteriors, from each matched left row's density sum and inside fraction."""
    f_in = float(np.median(f_in_first))
    q = spec.prior if spec.prior is not None else P.fit_completeness(
        f_sum_first, n_left, rho, f_in)
    return q, f_in


# ----------------------------------------------------------------------------- tables
def _suffixed(table: Table, suffix: str) -> Table:
    out = Table(table, copy=False)
    out.rename_columns(out.colnames, [f"{c}{suffix}" for c in out.colnames])
    return out


def result_table(left: Table, right: Table, li, ri, sep_rad, prob, spec: MatchSpec) -> Table:
    """Both sides' columns (suffixed), ``separation`` [arcsec] and ``probability``.

    Built column by column (each column taken at the pair rows; units,
    formats and descriptions kept), without copying whole tables.
    """
    cols = []
    for table, rows, suffix in ((left, li, spec.suffixes[0]), (right, ri, spec.suffixes[1])):
        rows = np.asarray(rows, dtype=np.intp)
        for name in table.colnames:
            col = table[name][rows]
            if hasattr(col, "info") and hasattr(col.info, "name"):
                col.info.name = f"{name}{suffix}"
            cols.append(col)
    names = [f"{c}{spec.suffixes[0]}" for c in left.colnames] + [
        f"{c}{spec.suffixes[1]}" for c in right.colnames]
    out = Table(cols, names=names, copy=False)
    out["separation"] = (np.asarray(sep_rad) / ARCSEC) * u.arcsec
    out["probability"] = np.asarray(prob, dtype=np.float64)
    return out


def _finite(ra, dec, name: str, spec: MatchSpec) -> np.ndarray:
    ok = np.isfinite(ra) & np.isfinite(dec)
    if spec.nan == "raise" and not ok.all():
        raise VanotebookInputError(name, "finite coordinates (or nan='drop')",
                                   f"{(~ok).sum()} rows with NaN {spec.ra}/{spec.dec}")
    return ok


def crossmatch_tables(left: Table, right: Table, spec: MatchSpec) -> Table:
    """The in-memory match of two astropy Tables."""
    epoch = target_epoch(left, right, spec)
    lra, ldec = positions(left, spec, epoch)
    rra, rdec = positions(right, spec, epoch)
    lok, rok = _finite(lra, ldec, "left", spec), _finite(rra, rdec, "right", spec)
    lall, rall = bool(lok.all()), bool(rok.all())
    lrows, rrows = np.flatnonzero(lok), np.flatnonzero(rok)
    errors = spec.errors or {"left": None, "right": None}
    lerr = error_arrays(left, errors["left"], "left")
    rerr = error_arrays(right, errors["right"], "right")
    if not lall:
        lra, ldec = lra[lok], ldec[lok]
        lerr = None if lerr is None else (lerr[0][lok], lerr[1][lok])
    if not rall:
        rra, rdec = rra[rok], rdec[rok]
        rerr = None if rerr is None else (rerr[0][rok], rerr[1][rok])
    pairs = match_arrays(lra, ldec, rra, rdec, lerr, rerr, spec)
    rho, area = density_sr(rra, rdec)
    prob, q = probabilities(pairs.f, pairs.f_sum, pairs.f_in, pairs.first, lrows.size, rho, spec)
    out = result_table(left, right, lrows[pairs.left], rrows[pairs.right], pairs.separation,
                       prob, spec)
    out.meta.update({
        "nan_rows": {"left": int((~lok).sum()), "right": int((~rok).sum())},
        "completeness": q, "right_density_deg2": rho * (math.pi / 180) ** 2,
        "right_area_deg2": area, "epoch": epoch,
    })
    return out


# ----------------------------------------------------------------------------- public
def _parse(catalogue: Any, spec: MatchSpec, argument: str):
    from ..io import parse_catalogue

    if healpix.is_partitioned(catalogue):
        import dask

        # the frame's meta is read from the first partition: here, not on a worker that
        # may not reach the folder (`crossmatch_dask` decides where the partitions are read)
        with dask.config.set(scheduler="sync"):
            catalogue = healpix.read_partitioned(catalogue, lazy=True)
    out = parse_catalogue(catalogue, ra=spec.ra, dec=spec.dec, argument=argument)
    if _is_lazy(out):
        text = [c for c in (spec.ra, spec.dec) if out[c].dtype.kind not in "biuf"]
        if text:  # sexagesimal text, read partition by partition as tables in memory are
            meta = out._meta.assign(**{c: np.float64(0) for c in text})
            out = out.map_partitions(_degrees_frame, spec.ra, spec.dec, meta=meta)
    return out


def _degrees_frame(df, ra: str, dec: str):
    """A pandas partition with text RA/Dec read as degrees (`io.coordinates_in_degrees`)."""
    from ..io import coordinates_in_degrees

    table = coordinates_in_degrees(Table({ra: df[ra].to_numpy(), dec: df[dec].to_numpy()}),
                                   ra, dec)
    return df.assign(**{ra: np.asarray(table[ra], float), dec: np.asarray(table[dec], float)})


def _is_lazy(table) -> bool:
    return type(table).__module__.startswith("dask")


def crossmatch(
    left: Any,
    right: Any,
    *,
    radius: u.Quantity = 1 * u.arcsec,
    how: str = "nearest",
    k: int = 1,
    ra: str = "ra",
    dec: str = "dec",
    errors: Any = None,
    epoch: Any = None,
    suffixes: tuple[str, str] = ("_left", "_right"),
    nan: str = "drop",
    prior: float | None = None,
    client=None,
    device: str = "auto",
    progress: bool | Callable[[int, int], None] | None = None,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
):
    """Cross-match two catalogues.

    Parameters
    ----------
    left, right
        Anything `vanotebook.io.parse_catalogue` accepts: astropy Table/QTable,
        pandas or dask DataFrame, a FITS/VOTable/ECSV/parquet path or parquet
        folder, or a HEALPix-partitioned folder (`vanotebook.healpix.write_partitioned`
        or HATS).
    radius : Quantity
        Largest separation, an angle (``1 * u.arcsec``); a bare number is refused.
    how : {"nearest", "all", "k"}
        The nearest right source within ``radius`` of each left source (as
        astropy's ``match_to_catalog_sky``), every pair within ``radius`` (as
        ``search_around_sky``), or the ``k`` nearest within ``radius``.
    k : int
        Neighbours for ``how="k"``.
    ra, dec : str
        Coordinate columns (degrees, ICRS) in both catalogues.
    errors : None, str, (str, str), Quantity, or dict
        1-sigma positional errors for the probabilities: a column (circular), two
        columns (ra and dec axes; arcsec unless the column has a unit), or one
        angle for every row; ``{"left": ..., "right": ...}`` per side. None looks
        for ``ra_error``/``dec_error`` or ``error``; without errors the
        probability is NaN.
    epoch : None, False, or float
        Julian year to move both catalogues to, using the ``pmra`` (including
        cos dec), ``pmdec`` [mas/yr] and ``epoch`` columns of a catalogue that
        has them. None: the epoch of the catalogue without proper motions;
        False: no propagation.
    suffixes : (str, str)
        Appended to every left and right column name in the result.
    nan : {"drop", "raise"}
        Rows with NaN coordinates are left out and counted in
        ``result.meta["nan_rows"]`` ("drop"), or refused ("raise").
    prior : float, optional
        The fraction of left sources with a counterpart; fitted to the data
        (expectation-maximisation over the candidates, with the right source
        density) when None.
    client : distributed.Client, optional
        The cluster for dask inputs (default: the current client, else in-process).
    device : {"auto", "cpu", "gpu"}
        Where separations and probabilities are computed (the neighbour search
        is on the CPU); on a cluster, "gpu" partition tasks ask for a worker with
        the ``GPU`` resource.
    progress : bool or callable, optional
        True shows a tqdm bar of the partitions matched; a callable is called as
        ``progress(done, total)`` when the match starts and as each partition
        (one, in memory) finishes; dashboards use it for their progress bar.
    output : path, optional
        Also write the pairs there (FITS, VOTable, ECSV or parquet, by suffix;
        atomically), with a ``<output>.prov.json`` record (and, in FITS, the
        ``PROVENANCE`` HDU); a product made from catalogue files reruns from its
        record to the same bytes (``vanotebook rerun``). A name without a suffix
        (or an existing folder) is a folder of parquet parts, ``part-NNNNN.parquet``,
        one per partition: with lazy inputs each is written as its partition
        finishes, so a match larger than memory is never gathered here.
    overwrite : bool
        Replace an existing ``output``.

    Returns
    -------
    astropy.table.Table or dask.dataframe.DataFrame
        One row per pair: the left and right columns, ``separation`` (arcsec) and
        ``probability`` (posterior that the pair is the same source). Lazy inputs
        are matched out of core, partition by partition; only the pairs come
        back into memory. ``meta`` holds ``nan_rows``, ``completeness``, the
        right density and the provenance. With lazy inputs and a folder
        ``output``, a lazy DataFrame of the written parts (the numbers of
        ``meta`` are in each part's metadata and in the record).
    """
    from ..provenance import record

    spec = validate(radius=radius, how=how, k=k, ra=ra, dec=dec, errors=errors, epoch=epoch,
                    suffixes=suffixes, nan=nan, prior=prior, device=device, resolve=False)
    progress = Steps(check_progress(progress), "cross-match partitions") if progress else None
    check_output(output, overwrite, folder_ok=True)
    folder = is_folder_output(output)
    lt = _parse(left, spec, "left")
    rt = _parse(right, spec, "right")
    if _is_lazy(lt) or _is_lazy(rt):  # partitions run on the cluster: its GPUs decide
        from ..cluster import devices, get_client

        spec = replace(spec, device=devices(spec.device, get_client(client))[1])
    else:
        spec = replace(spec, device=resolve_device(spec.device))
    params = {"radius_arcsec": float(spec.radius.to_value(u.arcsec)), "how": how, "k": spec.k,
              "ra": ra, "dec": dec, "errors": errors_to_json(spec.errors), "epoch": spec.epoch,
              "suffixes": list(spec.suffixes), "nan": nan, "prior": prior,
              "device": spec.device, "left": _path_of(left), "right": _path_of(right)}
    with record("vanotebook.xmatch.crossmatch", params) as prov:
        for side in (left, right):
            for path in _input_files(side):
                prov.add_input(path)
        if _is_lazy(lt) or _is_lazy(rt):
            from ._dask import crossmatch_dask

            sources = {side: c for side, c in (("left", left), ("right", right))
                       if healpix.is_partitioned(c)}
            if folder:  # written partition by partition, never gathered here
                from ..io import atomic_dir

                with atomic_dir(output, overwrite=overwrite) as tmp:
                    meta = crossmatch_dask(lt, rt, spec, client=client, progress=progress,
                                           sources=sources, folder=tmp)
                out = None
            else:
                out = crossmatch_dask(lt, rt, spec, client=client, progress=progress,
                                      sources=sources)
                meta = out.meta
        else:
            if progress is not None:
                progress(0, 1)
            out = crossmatch_tables(lt, rt, spec)
            meta = out.meta
            if progress is not None:
                progress(1, 1)
            if folder:
                _write_one_part(out, output, overwrite)
        _record_output(out, output, prov, folder=folder, overwrite=overwrite)
    meta["provenance"] = prov.to_dict()
    if output is not None:
        prov.write_sidecar(output)
    if folder and out is None:
        import dask.dataframe as dd

        return dd.read_parquet(str(output))
    return out


def check_output(output: Any, overwrite: bool, *, folder_ok: bool = False) -> None:
    """Refuse, before any work, an ``output`` that is no table file (or, where
    ``folder_ok``, folder) or would be replaced."""
    if output is None:
        return
    from ..io import _table_format

    path = Path(output)
    if folder_ok and is_folder_output(output):
        if path.exists() and not overwrite and (not path.is_dir() or any(path.iterdir())):
            raise VanotebookInputError("output", "a new or empty folder (or overwrite=True)",
                                       str(output))
        return
    if _table_format(path) is None or path.is_dir():
        expected = "None or a .fits, .vot/.xml, .ecsv or .parquet file name"
        raise VanotebookInputError("output", expected + (" or a folder name without a suffix"
                                                         if folder_ok else ""), str(output))
    if path.exists() and not overwrite:
        raise VanotebookInputError("output", "a new file (or overwrite=True)", str(output))


def is_folder_output(output: Any) -> bool:
    """Whether ``output`` names a folder of parquet parts: an existing folder, or no suffix."""
    return output is not None and (Path(output).is_dir() or Path(output).suffix == "")


def _path_of(catalogue: Any) -> str | None:
    """The absolute path of a catalogue given as a file or folder, else None (in memory)."""
    if isinstance(catalogue, str | os.PathLike):
        return str(Path(catalogue).resolve())
    return None


def _input_files(catalogue: Any) -> list[Path]:
    """The files a catalogue given by path is read from (every file of a folder)."""
    if not isinstance(catalogue, str | os.PathLike):
        return []
    path = Path(catalogue)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []


def errors_to_json(errors: Any) -> Any:
    """The ``errors`` option as JSON (angles as ``{"value", "unit"}``), for the record."""
    if isinstance(errors, dict):
        return {k: errors_to_json(v) for k, v in errors.items()}
    if isinstance(errors, u.Quantity):
        return {"value": float(errors.value), "unit": errors.unit.to_string()}
    if isinstance(errors, tuple | list):
        return list(errors)
    return errors


def errors_from_json(errors: Any) -> Any:
    """Inverse of `errors_to_json`."""
    if isinstance(errors, dict) and set(errors) == {"value", "unit"}:
        return errors["value"] * u.Unit(errors["unit"])
    if isinstance(errors, dict):
        return {k: errors_from_json(v) for k, v in errors.items()}
    if isinstance(errors, list):
        return tuple(errors)
    return errors


def _file_meta(meta: dict) -> dict:
    """The result's numbers as flat keys for the file (no times, no nested records)."""
    out = {}
    nan_rows = meta.get("nan_rows") or {}
    for key, value in (("NANLEFT", nan_rows.get("left")), ("NANRIGHT", nan_rows.get("right")),
                       ("COMPLETE", meta.get("completeness")),
                       ("RHODEG2", meta.get("right_density_deg2")),
                       ("EPOCH", meta.get("epoch")), ("ORDER", meta.get("order")),
                       ("NPARTS", meta.get("partitions"))):
        values = ({f"{key[:5]}{i}": v for i, v in enumerate(value.values(), start=1)}
                  if isinstance(value, dict) else {key: value})  # N-way: one per catalogue
        for k, v in values.items():
            if isinstance(v, int | float | np.integer | np.floating) and np.isfinite(v):
                out[k] = v.item() if hasattr(v, "item") else v
    return out


def write_product(out: Table, output: Any, prov, *, overwrite: bool = False) -> Path:
    """Write the pairs atomically to ``output`` and record it as ``prov``'s output.

    The file holds the table and its numbers only (no times, host or paths), so
    the same inputs and options write the same bytes; a FITS product also carries
    the ``PROV*`` cards and the ``PROVENANCE`` HDU, and every product gets a
    ``<output>.prov.json`` sidecar (written by `crossmatch`).
    """
    from astropy.io import fits

    from ..io import _table_format, write_fits, write_table

    table = Table(out, copy=False)
    table.meta = _file_meta(out.meta)
    output = Path(output)
    if _table_format(output) == "fits":
        hdul = fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(table)])
        hdul[1].name = "PAIRS"
        prov.attach(hdul)
        write_fits(hdul, output, overwrite=overwrite)
    else:
        write_table(table, output, overwrite=overwrite)
    prov.add_output(output)
    return output


def estimate_pairs(left: Any, right: Any, *, radius: u.Quantity = 1 * u.arcsec,
                   ra: str = "ra", dec: str = "dec") -> float:
    """How many (left, right) pairs lie within ``radius``: the work a match of them does.

    Estimated before any match: the chance pairs (the right catalogue's mean
    density over the area it covers, `vanotebook.healpix.coverage_area`, times
    the area of the search cap, at most that area, times the left rows) plus at
    most one counterpart per row of the smaller catalogue. Uniform density is
    assumed, so clustered catalogues may hold a few times more; it is meant to
    tell a match of seconds from one of hours, not to count.

    Parameters
    ----------
    left, right
        In-memory catalogues (anything `vanotebook.io.parse_catalogue` reads).
    radius : angle Quantity
        The match radius.
    ra, dec : str
        The coordinate columns, in degrees.

    Returns
    -------
    float
        The expected number of pairs within ``radius``.
    """
    from ..io import parse_catalogue

    r = healpix._check_radius(radius)
    lt = parse_catalogue(left, ra=ra, dec=dec, argument="left")
    rt = parse_catalogue(right, ra=ra, dec=dec, argument="right")
    for name, t in (("left", lt), ("right", rt)):
        if not hasattr(t, "colnames"):
            raise VanotebookInputError(name, "an in-memory catalogue (a Table or a file)",
                                       type(t).__name__)
    ok = np.isfinite(np.asarray(rt[ra], float)) & np.isfinite(np.asarray(rt[dec], float))
    if not ok.any() or len(lt) == 0:
        return 0.0
    order = 10
    pixels = healpix.pixel_index(np.asarray(rt[ra], float)[ok], np.asarray(rt[dec], float)[ok],
                                 order)
    cells, counts = np.unique(pixels, return_counts=True)
    area = max(healpix.coverage_area(cells, counts, order=order),
               healpix.pixel_area(order).value)
    cap = float((2 * np.pi * (1 - np.cos(r.to_value(u.rad))) * u.sr).to_value(u.deg**2))
    chance = len(lt) * (ok.sum() / area) * min(cap, area)
    return float(chance + min(len(lt), int(ok.sum())))


def crossmatch_many(
    catalogues: dict[str, Any],
    *,
    radius: u.Quantity = 1 * u.arcsec,
    ra: str = "ra",
    dec: str = "dec",
    errors: Any = None,
    epoch: Any = None,
    nan: str = "drop",
    client=None,
    device: str = "auto",
    progress: bool | Callable[[int, int], None] | None = None,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
):
    """N-way match of three or more catalogues, in the spirit of NWAY.

    The first catalogue is the primary. For each primary source every
    combination of one candidate (or none) from each other catalogue, each
    within ``radius`` of the primary, is weighed by the N-way Bayes factor of
    Budavári & Szalay (2008) (circular errors, the quadratic mean of the two
    axes) and by priors fitted pairwise (`crossmatch`); the best combination
    is returned. Unlike NWAY, a candidate that is no counterpart is weighed
    against the density of its catalogue around it, not the mean one: the
    field plus the counterparts expected of the other primaries nearby. A
    neighbouring primary's counterparts are then seen as its own, and the
    probabilities are calibrated where sources crowd (`_nway`).

    In-memory catalogues are matched in this process. When any catalogue is
    lazy (a dask DataFrame or a HEALPix-partitioned folder, as `crossmatch`
    takes them), the match runs out of core on Dask: the primary is split
    into HEALPix partitions, every other catalogue's rows are copied into
    each partition within ``radius`` of them (margins), the pairwise priors
    are fitted on all partitions' statistics, and each partition is weighed
    with those global priors. The catalogues are never gathered here, and the
    result is the in-memory one.

    Parameters
    ----------
    catalogues : dict of str to catalogue
        Name -> catalogue, at least three, the primary first; names suffix the columns.
    radius, ra, dec, errors, epoch, nan, client, device
        As for `crossmatch` (``errors`` applies to every catalogue, or is a dict
        keyed by catalogue name).
    progress : bool or callable, optional
        True shows a tqdm bar; a callable is called as ``progress(done, total)``.
        In memory: one step per pairwise match against the primary and one per
        1,000 primary sources whose combinations are weighed. On Dask: one step
        per partition whose candidates are found, and one per partition weighed.
    output : path, optional
        Also write the result there (FITS, VOTable, ECSV or parquet, by
        suffix; atomically) with its ``<output>.prov.json`` record; a result
        made from catalogue files reruns from it to the same bytes. A name
        without a suffix (or an existing folder) is a folder of parquet parts,
        ``part-NNNNN.parquet``, one per partition: with lazy inputs each is
        written as its partition is weighed, and a lazy DataFrame of the parts
        is returned.
    overwrite : bool
        Replace an existing ``output``.

    Returns
    -------
    astropy.table.Table or dask.dataframe.DataFrame
        One row per primary source with a counterpart in at least one other
        catalogue: the primary columns (``_<name>``), the chosen counterparts'
        columns (masked where none), ``separation_<name>`` [arcsec],
        ``probability`` (of that combination) and ``p_any`` (that the primary has
        any counterpart). ``meta`` holds each catalogue's fitted
        ``completeness`` and the ``provenance`` (on Dask also ``order`` and
        ``partitions``). With lazy inputs and a folder ``output``, a lazy
        DataFrame of the written parts.
    """
    from ..provenance import record

    if not isinstance(catalogues, dict) or len(catalogues) < 3:
        raise VanotebookInputError("catalogues", "a dict of at least three catalogues",
                                   catalogues)
    names = list(catalogues)
    spec = validate(radius=radius, how="all", k=1, ra=ra, dec=dec, errors=None, epoch=epoch,
                    suffixes=("_a", "_b"), nan=nan, prior=None, device=device, resolve=False)
    if isinstance(errors, dict) and set(errors) - set(names):
        raise VanotebookInputError("errors", f"a dict keyed by catalogue names {names}", errors)
    for value in (errors.values() if isinstance(errors, dict) else [errors]):
        check_error_spec(value, "errors")
    steps = Steps(check_progress(progress), "N-way match") if progress else None
    check_output(output, overwrite, folder_ok=True)
    folder = is_folder_output(output)
    tables = {n: _parse(c, spec, n) for n, c in catalogues.items()}
    lazy = any(_is_lazy(t) for t in tables.values())
    if lazy:  # partitions run on the cluster: its GPUs decide
        from ..cluster import devices, get_client

        spec = replace(spec, device=devices(spec.device, get_client(client))[1])
        for n, t in tables.items():  # on the frames' meta: before any work
            nway_sigma(t._meta if _is_lazy(t) else t, _error_of(errors, n), n)
    else:
        spec = replace(spec, device=resolve_device(spec.device))
    params = {"catalogues": {n: _path_of(c) for n, c in catalogues.items()},
              "radius_arcsec": float(spec.radius.to_value(u.arcsec)), "ra": ra, "dec": dec,
              "errors": errors_to_json(errors), "epoch": epoch, "nan": nan, "device": device}
    with record("vanotebook.xmatch.crossmatch_many", params) as prov:
        for c in catalogues.values():
            for path in _input_files(c):
                prov.add_input(path)
        if lazy:
            out, meta = _many_on_dask(catalogues, tables, names, spec, errors, client, steps,
                                      output if folder else None, overwrite)
        else:
            out = _weigh_many(tables, names, spec, errors, epoch, nan, client, device, steps)
            meta = out.meta
            if folder:
                _write_one_part(out, output, overwrite)
        _record_output(out, output, prov, folder=folder, overwrite=overwrite)
    meta["provenance"] = prov.to_dict()
    if output is not None:
        prov.write_sidecar(output)
    if folder and out is None:
        import dask.dataframe as dd

        return dd.read_parquet(str(output))
    return out


def _write_one_part(out: Table, output, overwrite: bool) -> None:
    """An in-memory result as a folder product of one part (atomically)."""
    from ..io import atomic_dir
    from ._dask import _write_part

    with atomic_dir(output, overwrite=overwrite) as tmp:
        _write_part(out, tmp, 0)


def _record_output(out, output, prov, *, folder: bool, overwrite: bool) -> None:
    """Record a folder product's parts as the outputs, or write a file product."""
    if folder:
        for part in sorted(Path(output).glob("part-*.parquet")):
            prov.add_output(part)
    elif output is not None:
        write_product(out, output, prov, overwrite=overwrite)


def _many_on_dask(catalogues, tables, names, spec, errors, client, steps, folder, overwrite):
    """`crossmatch_many` on Dask partitions: ``(result, meta)``; with ``folder`` the
    parts are written there (atomically) and the result is None."""
    from ._dask import crossmatch_many_dask

    sources = {n: c for n, c in catalogues.items() if healpix.is_partitioned(c)}
    units = {n: _units_of(catalogues[n], t) for n, t in tables.items()}
    errs = {n: _error_of(errors, n) for n in names}
    kwargs = {"client": client, "progress": steps, "sources": sources, "units": units}
    if folder is None:
        out = crossmatch_many_dask(tables, names, spec, errs, **kwargs)
        return out, out.meta
    from ..io import atomic_dir

    with atomic_dir(folder, overwrite=overwrite) as tmp:
        meta = crossmatch_many_dask(tables, names, spec, errs, folder=tmp, **kwargs)
    return None, meta


def _units_of(catalogue: Any, parsed: Any) -> dict[str, str]:
    """Column units of a catalogue: a Table's own, a partitioned folder's recorded ones."""
    import json

    from ..io import UNITS_KEY, table_units

    if isinstance(parsed, Table):
        return table_units(parsed)
    if isinstance(catalogue, str | os.PathLike) and Path(catalogue).is_dir():
        import pyarrow.parquet as pq

        files = sorted(Path(catalogue).rglob("*.parquet"))
        if files:
            meta = pq.read_schema(files[0]).metadata or {}
            return json.loads(meta.get(UNITS_KEY, b"{}"))
    return dict(getattr(parsed, "attrs", {}).get("units", {}) or {})


def _error_of(errors: Any, name: str) -> Any:
    """The ``errors`` option of one catalogue of `crossmatch_many`."""
    return errors.get(name) if isinstance(errors, dict) else errors


def nway_sigma(table, errors: Any, name: str) -> np.ndarray:
    """Circular 1-sigma errors (radians, the quadratic mean of the two axes) of one
    catalogue of `crossmatch_many`; a catalogue without errors is refused by name."""
    e = error_arrays(table, errors, name)
    if e is None:
        raise VanotebookInputError("errors", f"positional errors for catalogue {name!r}", None)
    return np.sqrt((e[0] ** 2 + e[1] ** 2) / 2)


def weigh_rows(n_primary: int, pairs: dict, xyz: dict, sigma: dict, priors: dict, rho: dict,
               names: list[str], *, rho_primary: float, crowd: dict | None = None, steps=None,
               done: int = 0, total: int | None = None):
    """The best combination of each primary row with a candidate, `_SCORE_CHUNK` rows at a time.

    ``pairs[n]`` are the (primary row, row of ``n``) candidate pairs within the
    radius; ``xyz``, ``sigma`` each catalogue's unit vectors and circular
    errors; ``priors`` and ``rho`` each other catalogue's completeness and
    density, ``rho_primary`` the primary's (global ones, on Dask partitions
    too). ``crowd[n]`` is `_nway.crowding` of each row of ``n`` over the whole
    primary catalogue (default: from ``pairs``, all of it in memory).
    ``steps(done + chunk, total)`` is called after each chunk. Returns
    ``(rows, chosen, probability, p_any)``.
    """
    others = names[1:]
    primary = names[0]
    if crowd is None:
        crowd = {n: _nway.crowding(*pairs[n], xyz[primary], xyz[n], sigma[primary], sigma[n],
                                   len(xyz[n])) for n in others}
    cands = [_nway.Candidates(*pairs[n], n_primary) for n in others]
    primaries = np.unique(np.concatenate([pairs[n][0] for n in others]).astype(np.int64))
    rows, chosen, best, anyp = [], [], [], []
    for chunk in range(max(1, -(-n_primary // _SCORE_CHUNK))):
        lo, hi = np.searchsorted(primaries, [chunk * _SCORE_CHUNK, (chunk + 1) * _SCORE_CHUNK])
        c, b, a = _nway.best_combinations(
            primaries[lo:hi], cands, [xyz[n] for n in names], [sigma[n] for n in names],
            [priors[n] for n in others], [rho[n] for n in others],
            [crowd[n] for n in others], rho_primary)
        rows.append(primaries[lo:hi])
        chosen.append(c)
        best.append(b)
        anyp.append(a)
        if steps is not None:
            steps(done + chunk + 1, total)
    return np.concatenate(rows), np.concatenate(chosen), np.concatenate(best), \
        np.concatenate(anyp)


def nway_table(tables: dict, names: list[str], rows, chosen, best_p, p_any, xyz: dict) -> Table:
    """`crossmatch_many`'s result from the chosen rows: the primary's columns, each other
    catalogue's (masked where none was chosen), separations, ``probability``, ``p_any``."""
    from astropy.table import MaskedColumn, hstack

    primary, others = names[0], names[1:]
    parts = [_suffixed(tables[primary][rows], f"_{primary}")]
    for i, n in enumerate(others):
        idx = chosen[:, i]
        sub = tables[n][np.where(idx >= 0, idx, 0)] if len(tables[n]) else tables[n][:0]
        sub = Table(sub, masked=True)
        for c in sub.colnames:
            sub[c] = MaskedColumn(sub[c], mask=idx < 0)
        parts.append(_suffixed(sub, f"_{n}"))
    out = hstack(parts, join_type="exact", metadata_conflicts="silent") if rows.size else \
        hstack([_suffixed(tables[n][:0], f"_{n}") for n in names], metadata_conflicts="silent")
    for i, n in enumerate(others):
        idx = chosen[:, i]
        sep = np.full(idx.size, np.nan)
        ok = idx >= 0
        if ok.any():
            sep[ok] = K.separation(xyz[primary][rows[ok]], xyz[n][idx[ok]]) / ARCSEC
        out[f"separation_{n}"] = MaskedColumn(sep, mask=~ok, unit=u.arcsec)
    out["probability"] = np.asarray(best_p, dtype=np.float64)
    out["p_any"] = np.asarray(p_any, dtype=np.float64)
    out.meta.clear()
    return out


def _weigh_many(tables, names, spec, errors, epoch, nan, client, device, steps):
    """`crossmatch_many`'s work in memory: the pairwise matches, then the N-way weighing."""
    ra, dec = spec.ra, spec.dec
    for n, t in tables.items():
        if len(t) == 0:  # no prior can be fitted against it, no combination weighed
            raise VanotebookInputError(f"catalogues[{n!r}]", "a catalogue with rows",
                                       "an empty table")
    primary = names[0]
    pt = Table(tables[primary])
    pt["_row"] = np.arange(len(pt))
    sigma = {n: nway_sigma(tables[n], _error_of(errors, n), n) for n in names}
    pairs, priors = {}, {}
    n_chunks = max(1, -(-len(pt) // _SCORE_CHUNK))
    total = len(names) - 1 + n_chunks
    if steps is not None:
        steps(0, total)
    for step, n in enumerate(names[1:], start=1):
        t = Table(tables[n])
        t["_row"] = np.arange(len(t))
        m = crossmatch(pt, t, radius=spec.radius, how="all", ra=ra, dec=dec,
                       errors={"left": _error_of(errors, primary), "right": _error_of(errors, n)},
                       epoch=epoch, nan=nan, suffixes=("_p", "_o"), client=client, device=device)
        pairs[n] = (np.asarray(m["_row_p"]), np.asarray(m["_row_o"]))
        priors[n] = m.meta["completeness"]
        if steps is not None:
            steps(step, total)
    # positions at the common epoch, as unit vectors
    epoch_all = None if epoch is False else epoch
    xyz = {}
    for n in names:
        sp = MatchSpec(**{**spec.__dict__, "epoch": epoch_all})
        target = epoch_all if epoch_all is not None else target_epoch(pt, tables[n], sp)
        r_, d_ = positions(tables[n], sp, target)
        xyz[n] = np.asarray(K.unit_vectors(r_, d_))
    rho = {n: density_sr(*positions(tables[n], spec, None))[0] for n in names[1:]}
    rho_primary = density_sr(*positions(pt, spec, None))[0]
    rows, chosen, best_p, p_any = weigh_rows(len(pt), pairs, xyz, sigma, priors, rho, names,
                                             rho_primary=rho_primary, steps=steps,
                                             done=len(names) - 1, total=total)
    out = nway_table(tables, names, rows, chosen, best_p, p_any, xyz)
    if steps is not None:
        steps(total, total)
    out.meta["completeness"] = priors
    return out
