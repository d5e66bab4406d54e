"""Deterministic synthetic catalogue pairs with known truth, for testing cross-match.

A *left* catalogue (Gaia-like: small errors, proper motions, epoch 2016.0) and a
*right* catalogue (2MASS-like: larger errors, epoch 2000.0) are drawn in a cone.
A fraction of the left sources has a true counterpart on the right: the same star
moved along its proper motion to the right epoch, scattered by the right errors;
the other right rows are unrelated field sources. The right column
``truth_left_id`` names the true counterpart (``-1`` for field sources).

Catalogues are made chunk by chunk (``chunk_rows`` left rows at a time), each
chunk from random generators derived only from ``(seed, chunk index)``, so 1e7
rows or more can be generated, in any order or in parallel, in bounded memory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._errors import VanotebookInputError, check_positive
from .._random import child_generators

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = ["RIGHT_ID_OFFSET", "UNITS", "CataloguePair", "catalogue_pair"]

RIGHT_ID_OFFSET = 10**12
"""Right ``source_id`` values are ``RIGHT_ID_OFFSET + 1 ... RIGHT_ID_OFFSET + n_right``."""
UNITS = {"ra": "deg", "dec": "deg", "ra_error": "arcsec", "dec_error": "arcsec",
         "pmra": "mas / yr", "pmdec": "mas / yr", "epoch": "yr", "mag": "mag"}  # fmt: skip
"""Units of the catalogue columns (``source_id`` and ``truth_left_id`` have none)."""
MAX_IN_MEMORY = 5_000_000
_KEY = 0xCA7A  # child-generator key reserved for catalogue chunks
_ARCSEC = math.radians(1 / 3600)
_MAS = _ARCSEC / 1000
_HIGH_PM_FRACTION = 0.03


def _number(argument: str, value: object, ok: Callable[[float], bool], expected: str) -> float:
    """``float(value)`` if it is a real number passing ``ok``, else raise naming ``argument``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not ok(value):
        raise VanotebookInputError(argument, expected, value)
    return float(value)


def _check_radius(radius: float) -> float:
    return _number("radius", radius, lambda r: 0 < r <= 90, "a cone radius in degrees in (0, 90]")


def _cone_area(radius: float) -> float:
    """Solid angle of a cone of ``radius`` degrees, in deg^2."""
    return 4 * math.pi * math.sin(math.radians(radius) / 2) ** 2 * math.degrees(1) ** 2


def _units(df: pd.DataFrame) -> dict[str, str]:
    return {c: UNITS[c] for c in df.columns if c in UNITS}


def _tangent(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit east and north vectors at the unit vectors ``p`` (shape ``(3, n)``)."""
    x, y, z = p
    h = np.hypot(x, y)
    return np.stack([-y / h, x / h, np.zeros_like(h)]), np.stack([-z * x / h, -z * y / h, h])


def _offset(p: np.ndarray, xi: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Move ``p`` by tangent-plane (gnomonic) offsets ``xi`` east, ``eta`` north (radians)."""
    e, n = _tangent(p)
    v = p + xi * e + eta * n
    return v / np.linalg.norm(v, axis=0)


def _propagate(p: np.ndarray, pmra: np.ndarray, pmdec: np.ndarray, dt: float) -> np.ndarray:
    """Move ``p`` along great circles by proper motion (mas/yr) for ``dt`` years."""
    e, n = _tangent(p)
    step = (pmra * e + pmdec * n) * (_MAS * dt)  # tangent vector, length = arc in radians
    arc = np.hypot(pmra, pmdec) * (_MAS * abs(dt))
    return p * np.cos(arc) + step * np.sinc(arc / np.pi)  # sinc(a/pi) = sin(a)/a


def _radec(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ra = np.mod(np.degrees(np.arctan2(v[1], v[0])), 360.0)
    ra[ra >= 360.0] = 0.0
    return ra, np.degrees(np.arctan2(v[2], np.hypot(v[0], v[1])))


@dataclasses.dataclass(frozen=True)
class CataloguePair:
    """Configuration of a synthetic left/right catalogue pair; make it with `catalogue_pair`.

    Chunk ``i`` holds left rows ``i * chunk_rows`` onward and its share of the right
    rows; it depends only on the configuration and ``i``. Changing ``chunk_rows``
    changes the random streams, so concatenated chunks from two different
    ``chunk_rows`` settings are *not* the same catalogues (both are valid draws).
    Sources whose scattered (or propagated) position would leave the cone are
    redrawn, so every row lies in the cone and the density dips only within a few
    arcsec of the edge.
    """

    n_left: int = 100_000
    n_right: int | None = None
    center: tuple[float, float] = (150.0, 2.0)
    radius: float = 1.0
    true_fraction: float = 0.7
    left_epoch: float = 2016.0
    right_epoch: float = 2000.0
    seed: int = 0
    chunk_rows: int = 1_000_000

    def __post_init__(self) -> None:
        set_, number = object.__setattr__, _number
        set_(self, "n_left", check_positive("n_left", self.n_left, integer=True))
        if self.n_left >= RIGHT_ID_OFFSET:
            raise VanotebookInputError("n_left", f"fewer than {RIGHT_ID_OFFSET} rows", self.n_left)
        set_(self, "radius", _check_radius(self.radius))
        expected = "(ra, dec) in degrees with dec in [-90, 90]"
        center = self.center if isinstance(self.center, tuple | list) else ()
        if len(center) != 2:
            raise VanotebookInputError("center", expected, self.center)
        ra = number("center", center[0], math.isfinite, expected)
        dec = number("center", center[1], lambda d: -90 <= d <= 90, expected)
        set_(self, "center", (ra % 360.0, dec))
        tf = number("true_fraction", self.true_fraction, lambda f: 0 <= f <= 1, "in [0, 1]")
        set_(self, "true_fraction", tf)
        n_right = self.n_left if self.n_right is None else self.n_right
        if not (isinstance(n_right, int | np.integer) and self.n_true <= n_right < 10**12):
            expected = f"an integer >= round(true_fraction * n_left) = {self.n_true}"
            raise VanotebookInputError("n_right", expected, n_right)
        set_(self, "n_right", int(n_right))
        for name in ("left_epoch", "right_epoch"):
            year = number(name, getattr(self, name), lambda y: 0 < y < 1e5, "a Julian year")
            set_(self, name, year)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise VanotebookInputError("seed", "a non-negative integer", self.seed)
        set_(self, "chunk_rows", check_positive("chunk_rows", self.chunk_rows, integer=True))

    @property
    def n_true(self) -> int:
        """Number of true pairs, ``round(true_fraction * n_left)``."""
        return round(self.true_fraction * self.n_left)

    @property
    def n_chunks(self) -> int:
        """Number of chunks, ``ceil(n_left / chunk_rows)``."""
        return -(-self.n_left // self.chunk_rows)

    @property
    def area(self) -> float:
        """Solid angle of the cone in deg^2."""
        return _cone_area(self.radius)

    @property
    def density(self) -> tuple[float, float]:
        """Mean (left, right) source densities per deg^2."""
        return self.n_left / self.area, self.n_right / self.area

    def _draw_once(self, rng: np.random.Generator, n: int, left: bool, right: bool) -> dict:
        ra0, dec0 = np.radians(self.center)
        c = np.array([[math.cos(dec0) * math.cos(ra0)], [math.cos(dec0) * math.sin(ra0)],
                      [math.sin(dec0)]])  # fmt: skip
        east = np.array([[-math.sin(ra0)], [math.cos(ra0)], [0.0]])
        north = np.cross(c, east, axis=0)
        cap = 2 * math.sin(math.radians(self.radius) / 2) ** 2  # 1 - cos(radius)
        w, phi = rng.random(n) * cap, rng.random(n) * (2 * math.pi)  # w = 1 - cos(theta)
        p = (1 - w) * c + np.sqrt(w * (2 - w)) * (np.cos(phi) * east + np.sin(phi) * north)
        k = 0.35 * math.log(10)  # counts rise as 10**(0.35 G) between G = 12 and 21
        g = 12 + np.log1p(rng.random(n) * math.expm1(9 * k)) / k
        pmra, pmdec = rng.normal(0.0, 10.0, (2, n))
        high, amp = rng.random(n) < _HIGH_PM_FRACTION, rng.uniform(100.0, 300.0, n)
        pa = rng.uniform(0, 2 * math.pi, n)
        pmra = np.where(high, amp * np.sin(pa), pmra).astype(np.float32)
        pmdec = np.where(high, amp * np.cos(pa), pmdec).astype(np.float32)
        ok, out = np.ones(n, bool), {}

        def observe(side: str, q: np.ndarray, mag: np.ndarray, lo: float, hi: float) -> None:
            base = lo + (hi - lo) * 10 ** (0.4 * (mag - (21.0 if side == "left" else 19.5)))
            err = np.clip(base * np.exp(rng.normal(0, 0.15, (2, n))), lo, hi).astype(np.float32)
            v = _offset(q, *(err * rng.standard_normal((2, n)) * _ARCSEC))
            ok[:] &= np.sum((v - c) ** 2, axis=0) <= 2 * cap  # chord^2 = 2 (1 - cos)
            ra, dec = _radec(v)
            epoch = self.left_epoch if side == "left" else self.right_epoch
            out.update({f"{side}_ra": ra, f"{side}_dec": dec, f"{side}_ra_error": err[0],
                        f"{side}_dec_error": err[1], f"{side}_epoch": np.full(n, epoch),
                        f"{side}_mag": mag.astype(np.float32)})  # fmt: skip

        if left:
            observe("left", p, g, 0.05, 0.3)
            out.update(left_pmra=pmra, left_pmdec=pmdec)
        if right:
            q = _propagate(p, pmra, pmdec, self.right_epoch - self.left_epoch)
            observe("right", q, g - rng.normal(1.5, 0.5, n), 0.2, 1.0)
        out["ok"] = ok
        return out

    def _draw(self, rng: np.random.Generator, n: int, left: bool, right: bool) -> dict:
        """Draw ``n`` sources, redrawing those whose observed positions leave the cone."""
        out = self._draw_once(rng, n, left, right)
        bad = ~out.pop("ok")
        for _ in range(1000):
            if not bad.any():
                return out
            idx = np.flatnonzero(bad)
            new = self._draw_once(rng, idx.size, left, right)
            bad[idx] = ~new.pop("ok")
            for key, value in new.items():
                out[key][idx] = value
        expected = "a cone much wider than the positional errors and proper motions"
        raise VanotebookInputError("radius", expected, self.radius)

    def chunk(self, i: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Generate chunk ``i`` (``0 <= i < n_chunks``) as ``(left, right)`` DataFrames.

        The result is the same whether the chunk is made alone or by `iter_chunks`.
        """
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= i < self.n_chunks:
            raise VanotebookInputError("i", f"a chunk index in [0, {self.n_chunks})", i)
        return self._chunk(int(i), child_generators(self.seed, int(i) + 1, key=_KEY)[-1])

    def _chunk(self, i: int, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
        start, stop = i * self.chunk_rows, min((i + 1) * self.chunk_rows, self.n_left)
        n_field = self.n_right - self.n_true
        n_true_before = start * self.n_true // self.n_left
        t = stop * self.n_true // self.n_left - n_true_before
        field_before = start * n_field // self.n_left
        f = stop * n_field // self.n_left - field_before
        m = stop - start
        parts = [self._draw(rng, t, True, True), self._draw(rng, m - t, True, False),
                 self._draw(rng, f, False, True)]  # fmt: skip
        order = rng.permutation(m)
        left_id = np.arange(start + 1, stop + 1, dtype=np.int64)
        left = {"source_id": left_id}
        for c in ("ra", "dec", "ra_error", "dec_error", "pmra", "pmdec", "epoch", "mag"):
            left[c] = np.concatenate([parts[0][f"left_{c}"], parts[1][f"left_{c}"]])[order]
        true_ids = left_id[np.argsort(order)[:t]]  # left rows that hold the true sources
        order = rng.permutation(t + f)
        first = RIGHT_ID_OFFSET + n_true_before + field_before + 1
        right = {"source_id": np.arange(first, first + t + f, dtype=np.int64)}
        for c in ("ra", "dec", "ra_error", "dec_error", "epoch", "mag"):
            right[c] = np.concatenate([parts[0][f"right_{c}"], parts[2][f"right_{c}"]])[order]
        right["truth_left_id"] = np.concatenate([true_ids, np.full(f, -1, np.int64)])[order]
        return pd.DataFrame(left), pd.DataFrame(right)

    def iter_chunks(self) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        """Yield ``chunk(i)`` for ``i = 0 .. n_chunks - 1``."""
        for i, rng in enumerate(child_generators(self.seed, self.n_chunks, key=_KEY)):
            yield self._chunk(i, rng)

    def to_tables(self) -> tuple[Table, Table]:
        """Both whole catalogues in memory as ``(left, right)`` `astropy.table.Table`.

        Columns carry astropy units. Refused above `MAX_IN_MEMORY` left rows; use
        `write` for large catalogues.
        """
        from astropy.table import Table

        if self.n_left > MAX_IN_MEMORY:
            expected = f"n_left <= {MAX_IN_MEMORY} for in-memory tables (use write())"
            raise VanotebookInputError("n_left", expected, self.n_left)
        lefts, rights = zip(*self.iter_chunks(), strict=True)
        frames = [pd.concat(dfs, ignore_index=True) for dfs in (lefts, rights)]
        return tuple(Table.from_pandas(df, units=_units(df)) for df in frames)  # type: ignore[return-value]

    def write(self, directory: str | os.PathLike) -> dict[str, Path]:
        """Write ``left.parquet`` and ``right.parquet`` into ``directory``, chunk by chunk.

        Each chunk is one row group. Files are written under temporary names and
        renamed at the end, so a failure leaves neither a partial file nor a
        temporary behind. The schema metadata holds ``b"vanotebook.units"`` (JSON
        column -> unit) and ``b"vanotebook.config"`` (JSON configuration).

        Returns
        -------
        dict of str to pathlib.Path
            ``{"left": path, "right": path}``.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {b"vanotebook.config": json.dumps(dataclasses.asdict(self)).encode()}
        names, writers = ("left", "right"), {}
        temps = {name: directory / f".{name}.{uuid.uuid4().hex}.parquet.tmp" for name in names}
        try:
            for chunk in self.iter_chunks():
                for name, df in zip(names, chunk, strict=True):
                    table = pa.Table.from_pandas(df, preserve_index=False)
                    if name not in writers:
                        extra = {**meta, b"vanotebook.units": json.dumps(_units(df)).encode()}
                        schema = table.schema.with_metadata({**table.schema.metadata, **extra})
                        writers[name] = pq.ParquetWriter(temps[name], schema)
                    writers[name].write_table(table, row_group_size=max(len(df), 1))
            for name in names:
                writers.pop(name).close()
            paths = {name: directory / f"{name}.parquet" for name in names}
            for name in names:
                os.replace(temps[name], paths[name])
        except BaseException:
            for writer in writers.values():
                writer.close()
            for temp in temps.values():
                temp.unlink(missing_ok=True)
            raise
        return paths


def catalogue_pair(
    n_left: int | None = None,
    *,
    density: float | None = None,
    n_right: int | None = None,
    center: tuple[float, float] = (150.0, 2.0),
    radius: float = 1.0,
    true_fraction: float = 0.7,
    left_epoch: float = 2016.0,
    right_epoch: float = 2000.0,
    seed: int = 0,
    chunk_rows: int = 1_000_000,
) -> CataloguePair:
    """Configure a deterministic synthetic catalogue pair for cross-match tests.

    Parameters
    ----------
    n_left : int, optional
        Rows in the left (Gaia-like) catalogue; 100_000 if neither it nor
        ``density`` is given.
    density : float, optional
        Left sources per deg^2 instead of ``n_left`` (``n_left = round(density * area)``).
    n_right : int, optional
        Rows in the right (2MASS-like) catalogue, at least
        ``round(true_fraction * n_left)``; defaults to ``n_left``.
    center : (float, float)
        Cone centre (ra, dec) in degrees.
    radius : float
        Cone radius in degrees, in (0, 90].
    true_fraction : float
        Fraction of left sources with a true right counterpart, in [0, 1].
    left_epoch, right_epoch : float
        Julian years of the two catalogues.
    seed : int
        Non-negative seed; with the other arguments it fixes every row.
    chunk_rows : int
        Left rows per chunk; memory use scales with it.

    Returns
    -------
    CataloguePair
        The validated configuration; rows are made by its ``chunk``,
        ``iter_chunks``, ``to_tables`` and ``write`` methods.
    """
    if density is not None:
        if n_left is not None:
            raise VanotebookInputError("density", "either n_left or density, not both", density)
        check_positive("density", density)
        n_left = max(1, round(density * _cone_area(_check_radius(radius))))
    return CataloguePair(
        100_000 if n_left is None else n_left, n_right, center, radius, true_fraction,
        left_epoch, right_epoch, seed, chunk_rows,
    )  # fmt: skip
