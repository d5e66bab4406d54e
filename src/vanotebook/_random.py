"""Seeds: every random product takes ``seed`` and gives the same result for it."""

from __future__ import annotations

import numpy as np

from ._errors import VanotebookInputError

__all__ = ["SeedLike", "as_generator", "child_generators"]

SeedLike = int | np.random.SeedSequence | np.random.Generator | None


def _sequence(seed: SeedLike, argument: str) -> np.random.SeedSequence:
    if isinstance(seed, np.random.Generator):
        return seed.bit_generator.seed_seq  # type: ignore[return-value]
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is None or (isinstance(seed, int | np.integer) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:
            raise VanotebookInputError(argument, "a non-negative integer seed", seed)
        return np.random.SeedSequence(seed)
    raise VanotebookInputError(
        argument, "an int, numpy SeedSequence, numpy Generator or None", seed
    )


def as_generator(seed: SeedLike, argument: str = "seed") -> np.random.Generator:
    """A `numpy.random.Generator` from an int, SeedSequence, Generator or None."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(_sequence(seed, argument))


def child_generators(
    seed: SeedLike, n: int, *, key: int = 0, argument: str = "seed"
) -> list[np.random.Generator]:
    """``n`` independent generators derived from ``seed`` and a ``key``.

    The ``i``-th child depends only on ``(seed, key, i)``, so chunked work gives
    the same numbers whether its chunks run in order, in parallel or alone.
    """
    base = _sequence(seed, argument)
    entropy = base.entropy
    seqs = [np.random.SeedSequence(entropy, spawn_key=(*base.spawn_key, key, i)) for i in range(n)]
    return [np.random.default_rng(s) for s in seqs]
