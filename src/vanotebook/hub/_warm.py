"""Dask worker preload: warm a shared worker as soon as it starts.

The gateway's workers load this module (Dask config ``distributed.worker.preload``)
so the first users' jobs do not pay, on every worker, for importing the services
and loading their numba kernels: a fresh worker took ~7 s over the first small
mosaic, a warm one ~0.1 s. `dask_setup` starts a background thread and returns,
so the worker joins the cluster at once (users see every worker from the start);
the thread runs a tiny mosaic and detection of the demo sky in this process (no
client), which loads the compiled kernels from numba's on-disk cache (or
compiles them once), and logs ``vanotebook warm-up of <worker> took N s``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

# the worker's own logger: its messages go where the worker's log goes
logger = logging.getLogger("distributed.worker")


def warm(*, classify: bool = True) -> float:
    """Import the services and run each numba kernel once; return the seconds it took.

    ``classify=False`` leaves the classifier cold. Nothing here starts JAX (the
    classifier's inference is numpy), so a process that forks jobs afterwards
    (the job service's fork server) may run it.
    """
    t0 = time.perf_counter()
    import numpy as np

    import vanotebook
    from vanotebook.sky import demo_sky

    sky = demo_sky(0, size=0.4, n_catalogue=100, n_spectra=10)
    for key in ("radio", "ir24", "fir250"):  # each survey's sources take their own paths
        m = vanotebook.mosaic(sky.images(key), client=None, chunks=64)
        vanotebook.detect(m["mosaic"], client=None, classify=classify)  # the kernels users hit
    np.asarray(m["mosaic"])
    return time.perf_counter() - t0


def _warm_and_log(name: str) -> None:
    try:
        seconds = warm()
    except Exception:  # a cold worker is slower, not broken
        logger.exception("vanotebook warm-up of %s failed; it stays cold", name)
        return
    logger.info("vanotebook warm-up of %s took %.1f s", name, seconds)


def dask_setup(worker: Any) -> None:
    """Dask preload hook: warm this worker in a background thread."""
    threading.Thread(target=_warm_and_log, args=(str(worker.name),), daemon=True,
                     name="vanotebook-warm-up").start()
