"""Catalogue cross-match: HEALPix-partitioned, out of core on Dask, probabilistic.

`crossmatch` matches two catalogues (nearest, k nearest, or all pairs within
a radius) and gives every pair its separation and a Bayesian match
probability (Budavári & Szalay 2008) fitted to the data. In-memory inputs are
matched in this process on one kd-tree; dask DataFrames and partitioned
parquet folders are matched HEALPix partition by partition, with margins, on
the Dask cluster. `crossmatch_many` combines three or more catalogues (lazy
ones on Dask partitions too); `estimate_pairs` tells, before any match, how
many pairs a radius would test.
"""

from __future__ import annotations

from ._core import HOWS, crossmatch, crossmatch_many, estimate_pairs

__all__ = ["HOWS", "crossmatch", "crossmatch_many", "estimate_pairs"]
