"""Where the rows live: in this process (numpy / CuPy) or in Dask partitions.

Both sources offer the same three operations the SOM needs, so the training
loop in `._core` is written once:

* ``moments()`` — row count, per-feature sum and sum of squares, and the
  cross-product matrix, in float64 (for the mean, the "data" and "pca" inits);
* ``take(index)`` — some rows by position (for the "random" init);
* ``stats(wa, adjacent, sums)`` — one epoch's per-unit numerator/denominator
  sums and error totals, summed over partitions: `._kernels.epoch_stats` (the
  array-API reference, numpy / CuPy), or for numpy rows with numba its fused
  CPU equal `._fast.epoch_stats`; rows held in this process run its fixed row
  slices on every core.

The Dask source is the exact batch algorithm: every partition returns its
``K × (D + 1)`` sums (numerator columns and the hit count) and error totals,
and only those small arrays travel to the reduction, so any partitioning
gives the same map up to float rounding. Partitions are prepared (centred,
ones column appended) once and persisted on the workers.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np

from .._optional import namespace as array_namespace
from .._optional import to_numpy
from . import _fast
from . import _kernels as k

__all__ = ["DaskRows", "MemoryRows", "reachable"]


def reachable(frame, path, client):
    """A dask DataFrame read from ``path`` as the workers of ``client`` can compute it: as
    it is where they can read ``path`` (or with no client), else with its partitions
    read here, one at a time, and sent by value (`vanotebook._remote.frame_by_value`)."""
    from .._remote import frame_by_value, workers_can_read

    if workers_can_read(client, [path]):
        return frame
    return frame_by_value(client, frame)


def finite_rows(x):
    """Boolean mask of rows with only finite values."""
    xp = array_namespace(x)
    return xp.all(xp.isfinite(x), axis=1)


def moments(x, cross: bool, chunk: int = 65536) -> dict[str, Any]:
    """Row count, sum, sum of squares (and ``xᵀx`` when ``cross``) in float64 numpy."""
    xp = array_namespace(x)
    d = x.shape[1]
    out = {"n": 0, "sum": np.zeros(d), "sumsq": np.zeros(d),
           "cross": np.zeros((d, d)) if cross else None}  # fmt: skip
    for start in range(0, x.shape[0], chunk):
        part = xp.astype(x[start : start + chunk, :], xp.float64)
        out["n"] += part.shape[0]
        out["sum"] += to_numpy(xp.sum(part, axis=0))
        out["sumsq"] += to_numpy(xp.sum(part * part, axis=0))
        if cross:
            out["cross"] += to_numpy(part.T @ part)
    return out


def _add_moments(parts: list[dict[str, Any]]) -> dict[str, Any]:
    total = dict(parts[0])
    for p in parts[1:]:
        for key in ("n", "sum", "sumsq", "cross", "bad"):
            if total.get(key) is not None:
                total[key] = total[key] + p[key]
    return total


def _add_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    total = {"sums": None, "sq_error": 0.0, "error": 0.0, "topo": None, "n": 0}
    for p in parts:
        if p["sums"] is not None:
            total["sums"] = p["sums"] if total["sums"] is None else total["sums"] + p["sums"]
        for key in ("sq_error", "error", "n"):
            total[key] += p[key]
        if p["topo"] is not None:
            total["topo"] = (total["topo"] or 0) + p["topo"]
    return total


def _stats_numpy(st: dict[str, Any]) -> dict[str, Any]:
    return {**st, "sums": to_numpy(st["sums"])}


def prepare(x, centre: np.ndarray):
    """Centred rows with a ones column, and their squared norms (`._kernels.prepare`;
    numpy rows skip the temporaries through `._fast.prepare`)."""
    if type(x) is np.ndarray:
        return _fast.prepare(x, centre)
    xp = array_namespace(x)
    return k.prepare(x, xp.asarray(centre))


def epoch_stats(xa, norms, wa, adjacent, sums: bool, threads: int = 1) -> dict[str, Any]:
    """One pass's sums and error totals: the fused CPU path for numpy rows with numba
    (`._fast`) on passes of `._fast.MIN_WORK` rows times units or more, else the
    array-API reference kernel (`._kernels.epoch_stats`)."""
    if _fast.available(xa, wa.shape[1]):
        return _fast.epoch_stats(xa, norms, wa, adjacent, sums=sums, threads=threads)
    xp = array_namespace(xa)
    adj = None if adjacent is None else xp.asarray(adjacent)
    # numpy on one BLAS thread: OpenBLAS's float32 products change in the last bits with
    # its thread count, and a Dask worker has one, so a map is the same bytes wherever
    # its partitions ran (on the sizes that take this path, one thread costs nothing)
    with _fast.single_threaded_blas() if xp is np else nullcontext():
        return _stats_numpy(k.epoch_stats(xa, norms, xp.asarray(wa), adj, sums=sums))


class MemoryRows:
    """Rows held in this process as one numpy or CuPy array (already finite)."""

    def __init__(self, x) -> None:
        self.x = x
        self.xp = array_namespace(x)
        self.n = int(x.shape[0])
        self.xa = self.norms = None

    def moments(self, cross: bool) -> dict[str, Any]:
        return moments(self.x, cross)

    def take(self, index: np.ndarray) -> np.ndarray:
        return to_numpy(self.x[self.xp.asarray(index), :]).astype(np.float64)

    def prepare(self, centre: np.ndarray) -> None:
        self.xa, self.norms = prepare(self.x, centre)

    def session(self, units: int):
        """Context for the training loop of a map of ``units`` units: with the fused path
        on several threads, BLAS stays single-threaded throughout, since idle OpenBLAS
        workers woken by the small per-epoch update spin on the cores the row slices
        need."""
        if _fast.available(self.xa, units) and _fast.cpu_threads() > 1:
            return _fast.single_threaded_blas()
        return nullcontext()

    def stats(self, wa: np.ndarray, adjacent: np.ndarray | None, sums: bool) -> dict[str, Any]:
        # in this process the slices may use every core (Dask tasks run one thread each)
        return epoch_stats(self.xa, self.norms, wa, adjacent, sums, threads=_fast.cpu_threads())

    def close(self) -> None:
        self.xa = self.norms = None


# ----------------------------------------------------------------------------- Dask
def _block_finite(block, nan: str):
    mask = finite_rows(block)
    if nan == "drop":
        return block[mask, :], int(block.shape[0] - int(array_namespace(mask).sum(mask)))
    return block, int(block.shape[0] - int(array_namespace(mask).sum(mask)))


def _block_moments(block, cross: bool, nan: str, device: str):
    block = _on_device(block, device)
    block, bad = _block_finite(block, nan)
    out = moments(block, cross)
    out["bad"] = bad
    return out


def _on_device(block, device: str):
    if device == "gpu":
        import cupy

        return cupy.asarray(block)
    return np.asarray(block)


def _block_prepare(block, centre, nan: str, device: str):
    block = _on_device(block, device)
    block, _ = _block_finite(block, nan)
    return prepare(block, centre)


def _block_stats(prepared, wa, adjacent, sums: bool):
    xa, norms = prepared
    return epoch_stats(xa, norms, wa, adjacent, sums)


def _block_take(prepared, rows, centre):
    xa, _ = prepared
    xp = array_namespace(xa)
    got = to_numpy(xa[xp.asarray(rows), :-1]).astype(np.float64)
    return got + centre


def _block_len(prepared) -> int:
    return int(prepared[0].shape[0])


class DaskRows:
    """Rows in the row-partitions of a dask array, prepared once and persisted.

    Parameters
    ----------
    x : dask.array.Array
        Shape ``(n, D)``, chunked along rows only.
    client : distributed.Client or None
        Where to compute; None uses Dask's threaded scheduler in this process.
    device : {"cpu", "gpu"}
        "gpu" moves each partition to CuPy on its worker; the tasks then ask
        for the ``GPU`` resource when the cluster advertises one.
    nan : {"raise", "drop"}
        What `moments` does about rows with NaN/inf: count them (``raise``;
        the caller raises) or leave them out (``drop``).
    """

    def __init__(self, x, *, client=None, device: str = "cpu", nan: str = "raise") -> None:
        import dask

        if len(x.chunks[1]) > 1:
            x = x.rechunk({1: -1})
        self.client, self.device, self.nan = client, device, nan
        self.blocks = list(x.to_delayed().ravel())
        self.prepared: list[Any] | None = None
        self.n = int(x.shape[0])  # rows before NaN handling; set again in moments()
        self._dask = dask
        self.lengths: list[int] = []

    def _annotations(self) -> dict[str, Any]:
        if self.device == "gpu" and self.client is not None:
            info = self.client.scheduler_info()
            if any("GPU" in w.get("resources", {}) for w in info.get("workers", {}).values()):
                return {"resources": {"GPU": 1}}
        return {}

    def _compute(self, *objs):
        with self._dask.annotate(**self._annotations()):
            if self.client is not None:
                return self.client.compute(list(objs), sync=True)
            return list(self._dask.compute(*objs, scheduler="threads"))

    def moments(self, cross: bool) -> dict[str, Any]:
        from dask import delayed

        parts = [delayed(_block_moments)(b, cross, self.nan, self.device) for b in self.blocks]
        total = delayed(_add_moments)(parts)
        (out,) = self._compute(total)
        self.n = int(out["n"])
        return out

    def prepare(self, centre: np.ndarray) -> None:
        from dask import delayed

        prepared = [delayed(_block_prepare)(b, centre, self.nan, self.device)
                    for b in self.blocks]  # fmt: skip
        with self._dask.annotate(**self._annotations()):
            if self.client is not None:
                self.prepared = list(self.client.persist(prepared))
            else:
                self.prepared = list(self._dask.persist(*prepared, scheduler="threads"))
        self.lengths = self._compute(*[delayed(_block_len)(p) for p in self.prepared])
        self._centre = centre

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows by position among the finite rows (only after `prepare`)."""
        from dask import delayed

        bounds = np.cumsum([0, *self.lengths])
        index = np.sort(np.asarray(index))
        which = np.searchsorted(bounds, index, side="right") - 1
        parts = []
        for b in np.unique(which):
            rows = index[which == b] - bounds[b]
            parts.append(delayed(_block_take)(self.prepared[b], rows, self._centre))
        return np.concatenate(self._compute(*parts), axis=0)

    def session(self, units: int):
        """Context for the training loop (nothing to set: the work runs in Dask tasks)."""
        return nullcontext()

    def stats(self, wa: np.ndarray, adjacent: np.ndarray | None, sums: bool) -> dict[str, Any]:
        from dask import delayed

        parts = [delayed(_block_stats)(p, wa, adjacent, sums) for p in self.prepared]
        (out,) = self._compute(delayed(_add_stats)(parts))
        return out

    def close(self) -> None:
        self.prepared = None
