"""A small convolutional network for cut-outs, in JAX (CPU wheels are small; GPU where present).

Four 3x3 convolutions (16, 16, 32, 64 channels, ReLU, 2x2 max-pooling after
the 2nd, 3rd and 4th), a dense layer of 64 and the class logits: about
92,000 parameters, 370 kB of float32. The input is ``asinh(cut-out / 3)``:
linear in the noise, compressed for bright sources. Training is Adam
(optax) on mini-batches with the eight flips and quarter turns of each
cut-out (every class is invariant under them); everything random comes from
``seed``, so the same seed gives the same weights on the same machine.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LAYERS", "init", "logits", "train"]

# (name, shape) of every weight array, in order; convolution kernels are HWIO
LAYERS = (("c1", (3, 3, 1, 16)), ("c2", (3, 3, 16, 16)), ("c3", (3, 3, 16, 32)),
          ("c4", (3, 3, 32, 64)), ("d1", (4 * 4 * 64, 64)), ("d2", (64, None)))


def shapes(n_classes: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the weights (``<layer>_w``) and biases (``<layer>_b``) for ``n_classes``."""
    out = {}
    for name, shape in LAYERS:
        shape = tuple(n_classes if s is None else s for s in shape)
        out[f"{name}_w"] = shape
        out[f"{name}_b"] = (shape[-1],)
    return out


def init(n_classes: int, seed: int) -> dict[str, np.ndarray]:
    """He-initialised weights from ``seed`` (numpy float32)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    params = {}
    for key, shape in shapes(n_classes).items():
        if key.endswith("_b"):
            params[key] = np.zeros(shape, np.float32)
        else:
            fan_in = int(np.prod(shape[:-1]))
            params[key] = (rng.normal(0, np.sqrt(2.0 / fan_in), shape)).astype(np.float32)
    return params


def _forward(params, x):
    import jax
    import jax.numpy as jnp

    def conv(h, name):
        h = jax.lax.conv_general_dilated(h, params[f"{name}_w"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.nn.relu(h + params[f"{name}_b"])

    def pool(h):
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                                     "VALID")

    h = jnp.arcsinh(x[..., None] / 3.0)
    h = pool(conv(conv(h, "c1"), "c2"))
    h = pool(conv(h, "c3"))
    h = pool(conv(h, "c4"))
    h = h.reshape(h.shape[0], -1)
    h = jax.nn.relu(h @ params["d1_w"] + params["d1_b"])
    return h @ params["d2_w"] + params["d2_b"]


_JIT = {}


def _jitted(name):
    import jax

    if name not in _JIT and name == "forward":
        _JIT[name] = jax.jit(_forward)
    return _JIT[name]


def logits(params: dict, x: np.ndarray, *, batch: int = 2048) -> np.ndarray:
    """Class logits of cut-outs ``x`` (n, SIZE, SIZE), in batches (numpy in, numpy out)."""
    import jax.numpy as jnp

    f = _jitted("forward")
    p = {k: jnp.asarray(v) for k, v in params.items()}
    out = []
    for i in range(0, len(x), batch):
        chunk = np.asarray(x[i:i + batch], np.float32)
        n = len(chunk)
        if n < batch and len(x) > batch:  # one compiled shape for every batch
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), np.float32)])
        out.append(np.asarray(f(p, chunk))[:n])
    if not out:
        return np.zeros((0, params["d2_b"].shape[0]), np.float32)
    return np.concatenate(out)


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k = rng.integers(0, 4, len(x))
    flip = rng.random(len(x)) < 0.5
    out = np.empty_like(x)
    for r in range(4):
        for f in (False, True):
            sel = (k == r) & (flip == f)
            if sel.any():
                v = np.rot90(x[sel], r, axes=(1, 2))
                out[sel] = v[:, :, ::-1] if f else v
    return out


def train(X: np.ndarray, y: np.ndarray, n_classes: int, *, seed: int = 0, epochs: int = 12,
          batch: int = 128, learning_rate: float = 2e-3, progress=None) -> dict[str, np.ndarray]:
    """Train the network on cut-outs ``X`` with class indices ``y``.

    Parameters
    ----------
    X : numpy.ndarray (n, SIZE, SIZE)
    y : numpy.ndarray (n,) int
    n_classes : int
    seed : int
        Initial weights, batch order and augmentation.
    epochs, batch, learning_rate
        Adam with a cosine-decayed learning rate.
    progress : callable, optional
        Gets ``(epoch, mean loss)`` after each epoch.

    Returns
    -------
    dict of numpy float32 arrays
    """
    import jax
    import jax.numpy as jnp
    import optax

    steps = epochs * (len(X) // batch)
    opt = optax.adam(optax.cosine_decay_schedule(learning_rate, max(steps, 1)))
    params = {k: jnp.asarray(v) for k, v in init(n_classes, seed).items()}
    state = opt.init(params)

    def loss_fn(p, xb, yb):
        lg = _forward(p, xb)
        return optax.softmax_cross_entropy_with_integer_labels(lg, yb).mean()

    @jax.jit
    def step(p, s, xb, yb):
        loss, g = jax.value_and_grad(loss_fn)(p, xb, yb)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss

    rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    X = np.asarray(X, np.float32)
    y = np.asarray(y, np.int32)
    for epoch in range(epochs):
        order = rng.permutation(len(X))
        losses = []
        for i in range(0, len(X) - batch + 1, batch):
            idx = order[i:i + batch]
            params, state, loss = step(params, state, _augment(X[idx], rng), y[idx])
            losses.append(float(loss))
        if progress is not None:
            progress(epoch, float(np.mean(losses)))
    return {k: np.asarray(v, np.float32) for k, v in params.items()}
