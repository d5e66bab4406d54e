"""Inference in batches: in this process, or as tasks on the cluster's workers.

Batches of cut-outs become tasks (annotated with the ``GPU`` resource when
`cluster.devices` sends the work to GPU workers); a task runs the network's
array-API forward pass (`_infer`) on CuPy where the worker has a GPU, else
on numpy, and says which device ran it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["predict_logits"]


def _logits_task(weights: dict, cut: np.ndarray, device: str) -> tuple[np.ndarray, str]:
    """Logits of one batch with `_infer` on ``device`` ("auto": this process's GPU if any)."""
    from ..cluster import resolve_device
    from ._infer import logits

    if resolve_device(device) == "gpu":  # pragma: no cover - no GPU in CI
        import cupy

        return logits(weights, cut, xp=cupy), "gpu"
    return logits(weights, cut), "cpu"


def predict_logits(weights: dict, cut: np.ndarray, *, client=None, device: str = "auto",
                   batch: int = 4096, progress=None) -> tuple[np.ndarray, str]:
    """Logits of cut-outs ``cut`` in batches of ``batch``, here or on ``client``'s workers.

    Returns
    -------
    (logits (n, k), the platform that ran them: "cpu", "gpu" or "cpu+gpu")
    """
    from ..cluster import devices

    here, tasks = devices(device, client)
    batches = [cut[i:i + batch] for i in range(0, len(cut), batch)] or [cut]
    tell = progress or (lambda fraction: None)
    if client is None:
        out, platforms = [], set()
        for i, b in enumerate(batches):
            z, plat = _logits_task(weights, b, "cpu" if here == "cpu" else "auto")
            out.append(z)
            platforms.add(plat)
            tell((i + 1) / len(batches))
        return np.concatenate(out), "+".join(sorted(platforms))
    from distributed import as_completed

    resources = {"GPU": 1} if tasks == "gpu" else None
    [w] = client.scatter([weights], broadcast=True)
    futures = [client.submit(_logits_task, w, b, "auto" if tasks == "gpu" else "cpu",
                             resources=resources, pure=False, key=f"classify-{i}-{id(b)}")
               for i, b in enumerate(batches)]
    order = {f.key: i for i, f in enumerate(futures)}
    out: list = [None] * len(futures)
    platforms = set()
    for done, f in enumerate(as_completed(futures, loop=client.loop), start=1):
        z, plat = f.result()
        out[order[f.key]] = z
        platforms.add(plat)
        tell(done / len(futures))
    return np.concatenate(out), "+".join(sorted(platforms))
