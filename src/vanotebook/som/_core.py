"""The `SOM` class: a batch self-organising map on numpy, CuPy or Dask.

Training follows the batch SOM as GUASOM's "SOM Train" runs it:

* prototypes start as the data mean plus small random values (``init="data"``:
  ``mean + 0.1 * std * U(-1, 1)`` per feature), or on the plane of the two
  leading principal components (``"pca"``), or as distinct random samples
  (``"random"``);
* each epoch assigns every sample to its best-matching unit (BMU, smallest
  squared Euclidean distance) with the prototypes fixed, then replaces every
  prototype at once by ``w_j = Σ_i h_j,bmu(i) x_i / Σ_i h_j,bmu(i)``;
* the neighbourhood is ``h = exp(-d² / (2 σ(t)²))`` (Gaussian) or
  ``h = [d <= σ(t)]`` (bubble) of the grid distance ``d`` between units, with
  the radius shrinking exponentially, ``σ(t) = radius0 * exp(-t / radius_decay)``
  for epochs ``t = 0 ... n_epochs - 1`` (somoclu's exponential cooling with
  ``radiusN = radius0 * exp(-n_epochs / radius_decay)`` and ``std_coeff=1``);
* quantization error (mean distance of a sample to its BMU) and topographic
  error (fraction of samples whose two best units are not grid neighbours:
  8 around a unit on the rectangular grid, 6 on the hexagonal one) are
  recorded after every epoch; training stops early once the relative QE
  change falls to ``tol``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _config
from .._errors import VanotebookInputError, check_choice, check_positive
from .._optional import to_numpy
from .._random import SeedLike, as_generator
from ..cluster import devices, get_client
from ..io import masked_as_nan
from . import _kernels as k
from ._dask import DaskRows, MemoryRows, finite_rows, reachable

__all__ = ["SOM", "SOMLabels"]

log = logging.getLogger(__name__)

TOPOLOGIES = ("rectangular", "hexagonal")
NEIGHBOURHOODS = ("gaussian", "bubble")
INITS = ("data", "pca", "random")
NAN_POLICIES = ("raise", "drop")
ACTIVITY = "vanotebook.som.fit"  # the provenance activity of a fit (and its GUASOM export)
_DATA_FORMS = ("a 2-D numpy, CuPy or dask array (n_samples, n_features), an astropy Table, "
               "a pandas or dask DataFrame, or a parquet/FITS/VOTable/ECSV path with `columns`")


# ----------------------------------------------------------------------------- input parsing
def _path_of(x: Any) -> str | None:
    """The absolute path of data given as a file or folder, else None (in memory)."""
    return str(os.path.abspath(os.fspath(x))) if isinstance(x, str | os.PathLike) else None


def _columns_json(columns: Any) -> Any:
    if columns is None or isinstance(columns, str):
        return columns
    return [str(c) for c in columns]


def _is_dask_array(x: Any) -> bool:
    return type(x).__module__.startswith("dask.array") and hasattr(x, "chunks")


def _is_cupy(x: Any) -> bool:
    return type(x).__module__.startswith("cupy")


def _table_matrix(table: Any, columns: Any):
    """Feature matrix from an astropy Table / pandas / dask DataFrame and column names."""
    kind = type(table).__module__
    names = list(table.colnames) if hasattr(table, "colnames") else list(table.columns)
    if columns is None:
        raise VanotebookInputError(
            "columns", f"the feature column names, or one 2-D column (columns: {names[:20]})",
            None)  # fmt: skip
    cols = [columns] if isinstance(columns, str) else list(columns)
    missing = [c for c in cols if c not in names]
    if missing or not cols:
        raise VanotebookInputError("columns", f"names among {names[:20]}", missing or cols)
    if len(set(cols)) != len(cols):
        raise VanotebookInputError("columns", "distinct column names", cols)
    from pandas.api.types import is_complex_dtype, is_numeric_dtype

    dtypes = {c: table[c].dtype for c in cols}
    text = [c for c, dt in dtypes.items() if not is_numeric_dtype(dt) or is_complex_dtype(dt)]
    if text:
        raise VanotebookInputError("columns", "numeric (real) feature columns",
                                   {c: str(dtypes[c]) for c in text})
    if kind.startswith("dask"):
        return table[cols].to_dask_array(lengths=True).astype(np.float32)
    if kind.startswith("pandas"):
        return table[cols].to_numpy(dtype=np.float32, na_value=np.nan)
    # masked (blank) cells are missing values: NaN, so they are refused or dropped
    parts = [np.asarray(masked_as_nan(table[c]), dtype=np.float32) for c in cols]
    parts = [p[:, None] if p.ndim == 1 else p.reshape(len(p), -1) for p in parts]
    return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def as_matrix(x: Any, columns: Any = None, *, argument: str = "X", client=None):
    """Turn every accepted data form into a 2-D numpy, CuPy or dask array (not yet checked).

    A parquet path becomes Dask partitions that the workers of ``client`` can
    compute: read from the path where they can read it, else sent by value.
    """
    if isinstance(x, str | os.PathLike):
        import dask

        from ..io import read_catalogue

        path = os.fspath(x)
        lazy = path.endswith(".parquet") or os.path.isdir(path)
        with dask.config.set(scheduler="sync"):  # any meta read here, not on a worker
            x = read_catalogue(path, lazy=lazy)
        if lazy:
            x = reachable(x, path, client)
    kind = type(x).__module__
    if hasattr(x, "colnames") or (kind.startswith(("pandas", "dask.dataframe", "dask_expr"))
                                  and hasattr(x, "columns")):  # fmt: skip
        return _table_matrix(x, columns)
    if columns is not None:
        raise VanotebookInputError("columns", "None for array input (columns name the "
                                   "features of a table)", columns)  # fmt: skip
    if _is_dask_array(x) or _is_cupy(x):
        if np.dtype(x.dtype).kind not in "biuf":
            raise VanotebookInputError(argument, "real numbers", f"dtype {x.dtype}")
        return x
    if isinstance(x, np.ndarray | list | tuple):
        if isinstance(x, np.ndarray) and x.dtype.kind == "c":
            raise VanotebookInputError(argument, "real numbers", f"dtype {x.dtype}")
        try:
            out = np.asarray(x, dtype=np.float32) if not isinstance(x, np.ndarray) or \
                x.dtype.kind in "biuf" else None
        except (TypeError, ValueError) as exc:
            raise VanotebookInputError(argument, _DATA_FORMS, x) from exc
        if out is None:
            raise VanotebookInputError(argument, "real numbers", f"dtype {x.dtype}")
        return out
    raise VanotebookInputError(argument, _DATA_FORMS, x)


def _check_shape(x: Any, argument: str = "X") -> None:
    if x.ndim != 2:
        raise VanotebookInputError(argument, "a 2-D array (n_samples, n_features)",
                                   f"{x.ndim}-D input with shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise VanotebookInputError(argument, "at least one sample and one feature",
                                   f"shape {tuple(x.shape)}")


def _finite_memory(x: Any, nan: str, argument: str = "X"):
    """``x`` without non-finite rows (``nan="drop"``) and how many were dropped."""
    mask = finite_rows(x)
    bad = int(x.shape[0] - int(mask.sum()))
    if bad and nan == "raise":
        raise VanotebookInputError(argument, "finite values (or nan='drop' to leave rows out)",
                                   f"{bad} rows with NaN or inf")
    return (x[mask] if bad else x), bad


@dataclass(frozen=True)
class SOMLabels:
    """Majority labels of a map's units.

    Attributes
    ----------
    labels : numpy.ndarray
        ``(rows, cols)`` majority class of each unit's members; "" for empty units.
    purity : numpy.ndarray
        ``(rows, cols)`` fraction of members in the majority class; NaN when empty.
    hits : numpy.ndarray
        ``(rows, cols)`` members per unit.
    classes : numpy.ndarray
        The class values, sorted.
    counts : numpy.ndarray
        ``(rows, cols, n_classes)`` members per unit and class.
    purity_overall : float
        Fraction of samples whose unit's majority label is their own class.
    per_class : astropy.table.Table
        Per class: ``n_samples``, ``n_units`` labelled with it, ``purity`` (of the
        samples in those units, the fraction of that class) and ``recall`` (of the
        class, the fraction that land in units labelled with it).
    """

    labels: np.ndarray
    purity: np.ndarray
    hits: np.ndarray
    classes: np.ndarray
    counts: np.ndarray
    purity_overall: float
    per_class: Any


class SOM:
    """A batch self-organising map.

    Parameters
    ----------
    shape : (int, int), default (16, 16)
        Rows and columns of units; unit ``k`` is row ``k // cols``, column ``k % cols``.
    topology : {"rectangular", "hexagonal"}
        Unit layout; hexagonal maps shift odd rows by half a unit.
    periodic : bool
        Toroidal map (a hexagonal one then needs an even number of rows).
    neighbourhood : {"gaussian", "bubble"}
        Neighbourhood function of the grid distance (see the module notes).
    radius0 : float, default 9
        Neighbourhood radius in the first epoch.
    radius_decay : float, default 16.0
        ``radius(t) = radius0 * exp(-t / radius_decay)``.
    n_epochs : int, default 45
        Maximum number of full passes (batch updates).
    init : {"data", "pca", "random"}
        Initial prototypes: data mean plus small random values (GUASOM), the
        plane of the two leading principal components, or random samples.
    seed : int, numpy SeedSequence or Generator, default 0
        Seeds the initial prototypes; the same seed gives the same map.

    Examples
    --------
    >>> from vanotebook.sky import make_spectra
    >>> spectra = make_spectra(2000)
    >>> som = SOM((8, 8), n_epochs=10).fit(spectra.flux)
    >>> labels = som.label(spectra.flux, spectra.label)
    """

    def __init__(
        self,
        shape: tuple[int, int] = (16, 16),
        *,
        topology: str = "rectangular",
        periodic: bool = False,
        neighbourhood: str = "gaussian",
        radius0: float = 9.0,
        radius_decay: float = 16.0,
        n_epochs: int = 45,
        init: str = "data",
        seed: SeedLike = 0,
    ) -> None:
        if (not isinstance(shape, Sequence) or len(shape) != 2
                or any(isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 1
                       for s in shape)):  # fmt: skip
            raise VanotebookInputError("shape", "two positive integers (rows, cols)", shape)
        self.rows, self.cols = int(shape[0]), int(shape[1])
        self.topology = check_choice("topology", topology, TOPOLOGIES)
        self.periodic = bool(periodic)
        if self.periodic and self.topology == "hexagonal" and self.rows % 2:
            raise VanotebookInputError("shape", "an even number of rows for a periodic "
                                       "hexagonal map", shape)  # fmt: skip
        self.neighbourhood = check_choice("neighbourhood", neighbourhood, NEIGHBOURHOODS)
        self.radius0 = float(check_positive("radius0", radius0))
        self.radius_decay = float(check_positive("radius_decay", radius_decay))
        self.n_epochs = check_positive("n_epochs", n_epochs, integer=True)
        self.init = check_choice("init", init, INITS)
        as_generator(seed)  # validate now
        self.seed = seed
        self._w: np.ndarray | None = None  # centred prototypes (K, D) float64
        self._centre: np.ndarray | None = None
        self._history: list[dict[str, Any]] = []
        self.n_dropped = 0
        self.train_hits: np.ndarray | None = None
        self.converged = False
        self.provenance: dict[str, Any] | None = None
        self.labels: SOMLabels | None = None
        self._label_record: dict[str, Any] | None = None

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return (self.rows, self.cols)

    @property
    def n_units(self) -> int:
        """Number of units, ``rows * cols``."""
        return self.rows * self.cols

    def grid_distances(self) -> np.ndarray:
        """``(K, K)`` grid distance between units (periodic maps take the short way)."""
        return k.grid_distances(self.rows, self.cols, self.topology, self.periodic)

    def grid_coordinates(self) -> np.ndarray:
        """``(K, 2)`` planar position of every unit (hexagonal rows offset by half a unit)."""
        return k.grid_coordinates(self.rows, self.cols, self.topology)

    def neighbours(self) -> np.ndarray:
        """``(K, K)`` bool: the units adjacent to each unit (itself excluded)."""
        adj = k.adjacency(self.grid_distances(), self.topology)
        np.fill_diagonal(adj, False)
        return adj

    def radius(self, epoch: int) -> float:
        """Neighbourhood radius of epoch ``epoch`` (0-based)."""
        return k.radius_at(epoch, self.radius0, self.radius_decay)

    def params(self) -> dict[str, Any]:
        """The constructor parameters (JSON-serialisable)."""
        seed = self.seed if isinstance(self.seed, int | None) else repr(self.seed)
        return {"shape": [self.rows, self.cols], "topology": self.topology,
                "periodic": self.periodic, "neighbourhood": self.neighbourhood,
                "radius0": self.radius0, "radius_decay": self.radius_decay,
                "n_epochs": self.n_epochs, "init": self.init, "seed": seed}  # fmt: skip

    # ------------------------------------------------------------------ state
    @property
    def fitted(self) -> bool:
        """Whether the map has prototypes."""
        return self._w is not None

    def _require_fit(self) -> None:
        if self._w is None:
            msg = "this SOM has no prototypes yet: call fit() (or SOM.from_guasom) first"
            raise RuntimeError(msg)

    @property
    def prototypes(self) -> np.ndarray:
        """``(rows, cols, n_features)`` float32 prototype vectors."""
        self._require_fit()
        w = (self._w + self._centre).astype(np.float32)
        return w.reshape(self.rows, self.cols, -1)

    @property
    def history(self):
        """Per-epoch record as an astropy Table: ``epoch`` (0 = the initial map),
        ``radius`` used to reach it, ``qe`` and ``te`` on the training set."""
        from astropy.table import Table

        names = ("epoch", "radius", "qe", "te")
        if not self._history:
            return Table(names=names, dtype=(int, float, float, float))
        return Table(rows=[[h[n] for n in names] for h in self._history], names=names)

    def set_prototypes(self, prototypes: Any) -> SOM:
        """Use given prototypes, shape ``(rows, cols, D)`` or ``(rows * cols, D)``."""
        w = np.asarray(prototypes, dtype=np.float64)
        if w.ndim == 3:
            w = w.reshape(-1, w.shape[-1])
        if w.ndim != 2 or w.shape[0] != self.n_units or not np.isfinite(w).all():
            raise VanotebookInputError(
                "prototypes", f"finite values of shape ({self.rows}, {self.cols}, D)", w)
        self._centre = w.mean(axis=0)
        self._w = w - self._centre
        return self

    # ------------------------------------------------------------------ training
    def fit(
        self,
        X: Any,
        *,
        columns: str | Sequence[str] | None = None,
        client=None,
        device: str = "auto",
        tol: float | None = None,
        nan: str = "raise",
        progress: bool | Callable[[dict[str, Any]], Any] = False,
    ) -> SOM:
        """Train the map on ``X``.

        Parameters
        ----------
        X : array or table
            ``(n_samples, n_features)`` numpy, CuPy or dask array; or an astropy
            Table, pandas / dask DataFrame, or a catalogue path (parquet is read
            lazily as Dask partitions) together with ``columns``.
        columns : str or list of str, optional
            Feature columns of a table input; one 2-D column (such as a spectra
            table's ``"flux"``) or several scalar ones.
        client : distributed.Client, optional
            Train on this cluster. Dask input uses it (or the default client; with
            none, Dask's threaded scheduler). numpy / CuPy input runs in this
            process unless a client is passed explicitly, in which case it is
            split into partitions of ``vanotebook.partition-rows`` rows. A
            parquet path its workers cannot read (a private folder, workers of
            another account) is read here, partition by partition, and sent.
        device : {"auto", "cpu", "gpu"}
            Where the kernels run; "gpu" moves the data to CuPy.
        tol : float, optional
            Stop once ``|QE(t) - QE(t-1)| <= tol * QE(t-1)``; None runs all epochs.
        nan : {"raise", "drop"}
            Rows with NaN/inf raise, or are left out (their count is in
            ``n_dropped`` and the provenance).
        progress : bool or callable
            True shows a tqdm bar; a callable gets each epoch's history record.

        Returns
        -------
        SOM
            ``self``, trained.
        """
        check_choice("nan", nan, NAN_POLICIES)
        if tol is not None and (isinstance(tol, bool) or not isinstance(tol, int | float)
                                or not tol >= 0):  # fmt: skip
            raise VanotebookInputError("tol", "None or a non-negative number", tol)
        if not (isinstance(progress, bool) or callable(progress)):
            raise VanotebookInputError("progress", "True, False or a callable", progress)
        explicit = client is not None
        client = get_client(client)
        x = as_matrix(X, columns, client=client)
        _check_shape(x)
        on_dask = _is_dask_array(x) or explicit
        # on Dask the partitions' device is the cluster's choice (they run where it is)
        dev = devices(device, client if on_dask else None)[1]
        if on_dask:
            if not _is_dask_array(x):
                import dask.array as da

                rows = int(_config.get("partition-rows", 1_000_000))
                x = da.from_array(to_numpy(x), chunks=(rows, -1))
            source: Any = DaskRows(x, client=client, device=dev, nan=nan)
        else:
            if dev == "gpu" and not _is_cupy(x):
                import cupy

                x = cupy.asarray(x, dtype=cupy.float32)
            elif dev == "cpu" and _is_cupy(x):
                x = x.get()
            x, self.n_dropped = _finite_memory(x, nan)
            source = MemoryRows(x)
        from ..provenance import record

        params = {**self.params(), "tol": tol, "nan": nan, "device": dev,
                  "X": _path_of(X), "columns": _columns_json(columns),
                  "n_samples": int(x.shape[0]), "n_features": int(x.shape[1])}  # fmt: skip
        with record(ACTIVITY, params, seed=self.seed if isinstance(self.seed, int) else None
                    ) as prov:  # fmt: skip
            if isinstance(X, str | os.PathLike):
                prov.add_input(X)
            try:
                self._train(source, nan, tol, progress)
            finally:
                source.close()
            prov.parameters["n_dropped"] = self.n_dropped
            prov.parameters["epochs_run"] = len(self._history) - 1
        self.provenance = prov.to_dict()
        return self

    def _initial(self, source: Any, mom: dict[str, Any], d: int) -> np.ndarray:
        """Centred initial prototypes ``(K, D)`` float64."""
        rng = as_generator(self.seed)
        n = mom["n"]
        mean = mom["sum"] / n
        var = np.maximum(mom["sumsq"] / n - mean**2, 0.0)
        if self.init == "data":
            std = np.sqrt(var)
            return 0.1 * std * rng.uniform(-1.0, 1.0, (self.n_units, d))
        if self.init == "random":
            index = rng.choice(n, self.n_units, replace=False)
            return source.take(np.sort(index)) - mean
        cov = mom["cross"] / n - np.outer(mean, mean)
        vals, vecs = np.linalg.eigh(cov)
        order = np.argsort(vals)[::-1][:2]
        vals, vecs = np.maximum(vals[order], 0.0), vecs[:, order]
        if vecs.shape[1] < 2:
            vecs, vals = np.column_stack([vecs, np.zeros(d)]), np.append(vals, 0.0)
        xy = self.grid_coordinates()
        span = np.ptp(xy, axis=0)
        unit = np.where(span > 0, (xy - xy.mean(axis=0)) / np.where(span > 0, span, 1.0) * 2,
                        0.0)  # fmt: skip
        # the longer side of the map follows the first component
        long, short = (0, 1) if span[0] >= span[1] else (1, 0)
        coef = np.column_stack([unit[:, long] * 2 * np.sqrt(vals[0]),
                                unit[:, short] * 2 * np.sqrt(vals[1])])  # fmt: skip
        return coef @ vecs.T

    def _train(self, source: Any, nan: str, tol: float | None, progress: Any) -> None:
        mom = source.moments(cross=self.init == "pca")
        if "bad" in mom:  # Dask rows are checked during the moments pass
            if mom["bad"] and nan == "raise":
                raise VanotebookInputError(
                    "X", "finite values (or nan='drop' to leave rows out)",
                    f"{mom['bad']} rows with NaN or inf")  # fmt: skip
            self.n_dropped = int(mom["bad"])
        n = int(mom["n"])
        if n < self.n_units:
            raise VanotebookInputError(
                "shape", f"a map of at most {n} units for {n} usable samples",
                f"{self.rows}x{self.cols} = {self.n_units} units")  # fmt: skip
        if self.n_dropped:
            log.info("SOM.fit: left out %d rows with NaN or inf", self.n_dropped)
        d = len(mom["sum"])
        centre = mom["sum"] / n
        source.prepare(centre)
        w = self._initial(source, mom, d)
        dist = self.grid_distances()
        adj = k.adjacency(dist, self.topology)
        self._history = []
        self.converged = False
        bar = None
        if progress is True:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.n_epochs, desc="SOM epochs")
        try:
            with source.session(len(w)):
                for t in range(self.n_epochs + 1):
                    st = source.stats(k.prepare_prototypes(w), adj, sums=True)
                    entry = {"epoch": t, "radius": self.radius(t - 1) if t else float("nan"),
                             "qe": st["error"] / n, "te": st["topo"] / n}  # fmt: skip
                    self._history.append(entry)
                    if t:
                        if bar is not None:
                            bar.update(1)
                            bar.set_postfix(qe=f"{entry['qe']:.4g}", te=f"{entry['te']:.3f}")
                        if callable(progress):
                            progress(dict(entry))
                    prev = self._history[-2]["qe"] if t >= 2 else None
                    if (tol is not None and prev is not None
                            and abs(prev - entry["qe"]) <= tol * prev):  # fmt: skip
                        self.converged = True
                    if t == self.n_epochs or self.converged:
                        self.train_hits = np.rint(st["sums"][:, -1]).astype(np.int64).reshape(
                            self.shape)  # fmt: skip
                        break
                    h = k.neighbourhood(dist, self.radius(t), self.neighbourhood)
                    w = k.update_prototypes(w, st["sums"], h)
        finally:
            if bar is not None:
                bar.close()
        self._w, self._centre = w, centre

    # ------------------------------------------------------------------ mapping
    def _prepared(self, X: Any, columns: Any, argument: str = "X"):
        self._require_fit()
        x = as_matrix(X, columns, argument=argument, client=get_client(None))
        _check_shape(x, argument)
        if _is_dask_array(x):
            x = x.compute()
        if x.shape[1] != self._w.shape[1]:
            raise VanotebookInputError(argument, f"{self._w.shape[1]} features (columns)",
                                       f"{x.shape[1]}")  # fmt: skip
        _finite_memory(x, "raise", argument)
        xp = k.array_namespace(x)
        xa, norms = k.prepare(x, xp.asarray(self._centre))
        return xp, xa, norms, xp.asarray(k.prepare_prototypes(self._w))

    def bmu(self, X: Any, *, columns: Any = None) -> np.ndarray:
        """Best-matching unit (flat index ``row * cols + col``) of every sample."""
        _, xa, norms, wa = self._prepared(X, columns)
        best, _ = k.best_units(xa, norms, wa)
        return to_numpy(best).astype(np.int64)

    predict = bmu

    def transform(self, X: Any, *, columns: Any = None) -> np.ndarray:
        """Euclidean distance from every sample to every unit, shape ``(n, K)``."""
        xp, xa, norms, wa = self._prepared(X, columns)
        d2 = xp.clip(k.scores(xa, wa) + norms[:, None], 0.0, None)
        return to_numpy(xp.sqrt(d2))

    def _errors(self, X: Any, columns: Any) -> tuple[np.ndarray, np.ndarray]:
        _, xa, norms, wa = self._prepared(X, columns)
        best, d2 = k.best_units(xa, norms, wa)
        return to_numpy(best).astype(np.int64), np.sqrt(to_numpy(d2).astype(np.float64))

    def quantization_error(self, X: Any, *, columns: Any = None) -> float:
        """Mean Euclidean distance of the samples to their BMU's prototype."""
        return float(self._errors(X, columns)[1].mean())

    def topographic_error(self, X: Any, *, columns: Any = None) -> float:
        """Fraction of samples whose best and second-best units are not grid neighbours."""
        _, xa, _, wa = self._prepared(X, columns)
        first, second = (to_numpy(a) for a in k.two_best_units(xa, wa))
        adj = k.adjacency(self.grid_distances(), self.topology)
        return float(np.mean(~adj[first, second]))

    def hits(self, X: Any, *, columns: Any = None) -> np.ndarray:
        """``(rows, cols)`` number of samples whose BMU is each unit."""
        return np.bincount(self.bmu(X, columns=columns), minlength=self.n_units).reshape(
            self.shape)  # fmt: skip

    def umatrix(self) -> np.ndarray:
        """``(rows, cols)`` mean distance of each prototype to its grid neighbours'."""
        self._require_fit()
        w = self._w
        adj = self.neighbours()
        d = np.sqrt(np.maximum(((w[:, None, :] - w[None, :, :]) ** 2).sum(-1), 0.0))
        return ((d * adj).sum(1) / np.maximum(adj.sum(1), 1)).reshape(self.shape)

    def label(self, X: Any, y: Any, *, columns: Any = None) -> SOMLabels:
        """Label every unit by the most common class of its members.

        Parameters
        ----------
        X : array or table
            Samples (as for `fit`).
        y : array-like or str
            One class per sample, or the name of the class column of a table ``X``.

        Returns
        -------
        SOMLabels
            Also kept as ``self.labels`` for export.
        """
        from astropy.table import Table

        self._label_record = {"X": _path_of(X), "y": y if isinstance(y, str) else None,
                              "columns": _columns_json(columns)}  # fmt: skip
        if isinstance(y, str) and not isinstance(X, np.ndarray):
            table = X
            if isinstance(X, str | os.PathLike):
                from ..io import read_catalogue

                table = read_catalogue(X)
            names = list(table.colnames) if hasattr(table, "colnames") else list(table.columns)
            if y not in names:
                raise VanotebookInputError("y", f"a column among {names[:20]}", y)
            y = np.asarray(table[y])
            X = table
        y = np.asarray(y)
        best = self.bmu(X, columns=columns)
        if y.ndim != 1 or len(y) != len(best):
            raise VanotebookInputError("y", f"one label per sample ({len(best)})", y)
        classes, code = np.unique(y, return_inverse=True)
        nc = len(classes)
        counts = np.bincount(best * nc + code, minlength=self.n_units * nc).reshape(
            self.n_units, nc)  # fmt: skip
        hits = counts.sum(1)
        major = counts.argmax(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            purity = np.where(hits > 0, counts.max(1) / np.maximum(hits, 1), np.nan)
        labels = np.where(hits > 0, classes[major].astype(str), "")
        unit_class = np.where(hits > 0, major, -1)
        own = unit_class[best] == code
        rows = []
        for c, name in enumerate(classes):
            units = unit_class == c
            members = counts[units].sum()
            n_c = int((code == c).sum())
            rows.append((str(name), n_c, int(units.sum()),
                         float(counts[units, c].sum() / members) if members else float("nan"),
                         float(own[code == c].mean()) if n_c else float("nan")))  # fmt: skip
        per_class = Table(rows=rows, names=("class", "n_samples", "n_units", "purity", "recall"))
        self.labels = SOMLabels(labels.reshape(self.shape), purity.reshape(self.shape),
                                hits.reshape(self.shape), classes,
                                counts.reshape(*self.shape, nc), float(own.mean()), per_class)
        return self.labels

    def outliers(self, X: Any, n: int = 10, *, columns: Any = None):
        """The ``n`` samples with the largest quantization error.

        Returns
        -------
        astropy.table.Table
            Columns ``index`` (row in ``X``), ``bmu`` and ``error``, largest first.
        """
        from astropy.table import Table

        n = check_positive("n", n, integer=True)
        best, err = self._errors(X, columns)
        n = min(n, len(err))
        top = np.argpartition(-err, n - 1)[:n]
        top = top[np.argsort(-err[top], kind="stable")]
        return Table({"index": top, "bmu": best[top], "error": err[top]})

    # ------------------------------------------------------------------ GUASOM JSON
    def to_guasom(self, path: str | os.PathLike, X: Any = None, *, ids: Any = None,
                  columns: Any = None, overwrite: bool = False):
        """Write the map as GUASOM-compatible JSON (see `vanotebook.som._guasom`).

        Beside it goes ``<path>.prov.json``: the fit's record plus what the
        export used (the samples ``X``, the last `label` call), so a map fitted,
        labelled and exported from files reruns to the same bytes
        (``vanotebook rerun``).
        """
        from ._guasom import write_guasom

        return write_guasom(self, path, X, ids=ids, columns=columns, overwrite=overwrite)

    @classmethod
    def from_guasom(cls, path: str | os.PathLike) -> SOM:
        """Read a map written by `to_guasom` (or GUASOM's own JSON of the same schema)."""
        from ._guasom import read_guasom

        return read_guasom(path)

    def __repr__(self) -> str:
        state = "fitted" if self.fitted else "not fitted"
        return (f"SOM(shape={self.shape}, topology={self.topology!r}, periodic={self.periodic},"
                f" neighbourhood={self.neighbourhood!r}, {state})")
