"""The network's forward pass written once against the array API (numpy, CuPy, ...).

Inference needs no JAX: the same layers as `_cnn._forward` (3x3 "SAME"
convolutions as matrix products over shifted views of the padded input,
ReLU, 2x2 max-pooling, two dense layers) in plain array operations,
so a detection pays no JAX import or XLA compilation, a forked process can
run it safely, and a GPU worker runs it on CuPy. `_cnn` (JAX) trains the
weights; tests check that both passes give the same logits.
"""

from __future__ import annotations

import numpy as np

from .._optional import cpu_threads, single_threaded_blas, to_numpy
from .._optional import namespace as array_namespace

__all__ = ["forward", "logits"]


def _layer(h, w, b, xp, *, pool: bool):
    """3x3 "SAME" convolution of ``h`` (C, N, H, W) with HWIO ``w``, [2x2 max-pool], + b, ReLU.

    Channels first, then the cut-outs: every plane is zero-padded to (H + 3)
    x (W + 2) and the whole batch flattened into one stream per channel, so a
    tap (dy, dx) of the 3x3 stencil is the stream shifted by dy (W + 2) + dx,
    a strided view: the convolution is nine matrix products of (out, C)
    kernels with (C, stream) views, no copy of the input (with fewer than
    four channels the nine views are stacked into one product). Outputs in the
    padding (the last three rows and two columns of each plane) are
    dropped. Pooling comes before the bias and the ReLU (both commute with a
    maximum).
    """
    c, n, height, width = h.shape
    out_c = w.shape[-1]
    wp, hp = width + 2, height + 3
    pad = xp.zeros((c, n, hp, wp), dtype=h.dtype)
    pad[:, :, 1:height + 1, 1:width + 1] = h
    stream = xp.reshape(pad, (c, n * hp * wp))
    length = n * hp * wp - (2 * wp + 2)
    offsets = [dy * wp + dx for dy in range(3) for dx in range(3)]
    if c < 4:  # few channels: one product with the nine views stacked (a small copy)
        cols = xp.stack([stream[:, off:off + length] for off in offsets], axis=1)
        kernel = xp.reshape(xp.permute_dims(w, (3, 2, 0, 1)), (out_c, c * 9))
        out = kernel @ xp.reshape(cols, (c * 9, length))
    else:
        out = None
        for k, off in enumerate(offsets):
            term = xp.permute_dims(w[k // 3, k % 3, ...], (1, 0)) @ stream[:, off:off + length]
            out = term if out is None else out + term
    out = xp.concat([out, xp.zeros((out_c, 2 * wp + 2), dtype=out.dtype)], axis=1)
    out = xp.reshape(out, (out_c, n, hp, wp))[:, :, :height, :]
    if pool:  # (W + 2 is even: the pairs of columns never straddle the extra ones)
        out = xp.maximum(xp.maximum(out[:, :, 0::2, 0::2], out[:, :, 0::2, 1::2]),
                         xp.maximum(out[:, :, 1::2, 0::2], out[:, :, 1::2, 1::2]))
        width //= 2
    return xp.maximum(out[:, :, :, :width] + xp.reshape(b, (out_c, 1, 1, 1)), 0.0)


def forward(params: dict, x):
    """Logits of cut-outs ``x`` (n, SIZE, SIZE) with weights ``params`` (same namespace)."""
    xp = array_namespace(x)
    h = xp.asinh(x / 3.0)[None, :, :, :]
    for name, pool in (("c1", False), ("c2", True), ("c3", True), ("c4", True)):
        h = _layer(h, params[f"{name}_w"], params[f"{name}_b"], xp, pool=pool)
    h = xp.reshape(xp.permute_dims(h, (1, 2, 3, 0)), (h.shape[1], -1))  # as JAX's NHWC
    h = xp.maximum(h @ params["d1_w"] + params["d1_b"], 0.0)
    return h @ params["d2_w"] + params["d2_b"]


def logits(params: dict, x, *, xp=None, chunk: int = 64, threads: int | None = None
           ) -> np.ndarray:
    """Logits (numpy float32) of cut-outs ``x`` in chunks of ``chunk``, on namespace ``xp``.

    ``xp`` defaults to numpy; pass ``cupy`` (or any array-API namespace) to run
    there: the weights and each chunk are moved to it and the logits back. On
    numpy the chunks run on ``threads`` threads (default: the cores this process
    may use, one inside a Dask worker, whose other threads run tasks of their
    own), each with a single-threaded BLAS: a chunk's logits are the same bytes
    whatever the thread count.
    """
    xp = xp or np
    p = {k: xp.asarray(np.asarray(v, np.float32)) for k, v in params.items()}
    n_classes = int(np.asarray(params["d2_b"]).shape[0])
    starts = range(0, len(x), chunk)

    def one(i: int) -> np.ndarray:
        return to_numpy(forward(p, xp.asarray(np.asarray(x[i:i + chunk], np.float32))))

    # one BLAS thread, so a catalogue is the same bytes here, on a worker and in a rerun
    threads = _threads() if threads is None else max(1, int(threads))
    with single_threaded_blas():
        if xp is np and threads > 1 and len(starts) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(threads, len(starts))) as pool:
                out = list(pool.map(one, starts))
        else:
            out = [one(i) for i in starts]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, n_classes),
                                                                       np.float32)


def _threads() -> int:
    """Cores this process may use; 1 in a Dask worker's task."""
    import sys

    if "distributed" in sys.modules:
        from distributed import get_worker

        try:
            get_worker()
        except ValueError:
            pass
        else:
            return 1
    return cpu_threads()
