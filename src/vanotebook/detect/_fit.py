"""Multi-component 2-D elliptical Gaussian fits of islands, batched.

All islands with the same number of components are fitted together by one
Levenberg-Marquardt loop over padded pixel arrays ``(n_islands, n_pixels)``
(the kernel `fit_gaussians` is array-API code: numpy, CuPy or any
namespace). Each component has parameters ``(A, x0, y0, a, b, c)``: peak,
centre and the inverse covariance ``[[a, b], [b, c]]`` in pixel units, so
the Jacobian is analytic and cheap. Steps that leave the bounds (positive
peak, size between a floor below the beam and the island's extent, centre
inside the island box) are rejected and damped, which bounds the fit.
"""

from __future__ import annotations

import math

import numpy as np

from .._optional import namespace

__all__ = ["FLAGS", "fit_gaussians", "fit_islands", "gaussian_image"]

FLAGS = {
    "not_converged": 1,
    "size_bound": 2,
    "too_many_peaks": 4,
    "fit_failed": 8,
    "edge": 16,
    "poor_fit": 32,
}
NPAR = 6


def _model_and_jac(xp, X, Y, p):
    """Model (n, P) and Jacobian (n, P, 6K) for parameters p (n, K, 6)."""
    _, k, _ = p.shape
    model = xp.zeros_like(X)
    cols = []
    for j in range(k):
        amp, x0, y0 = p[:, j, 0:1], p[:, j, 1:2], p[:, j, 2:3]
        a, b, c = p[:, j, 3:4], p[:, j, 4:5], p[:, j, 5:6]
        dx, dy = X - x0, Y - y0
        q = -0.5 * (a * dx * dx + 2.0 * b * dx * dy + c * dy * dy)
        e = xp.exp(xp.clip(q, min=-700.0, max=50.0))  # trial steps may be invalid
        ae = amp * e
        model = model + ae
        cols += [e, ae * (a * dx + b * dy), ae * (b * dx + c * dy),
                 -0.5 * ae * dx * dx, -ae * dx * dy, -0.5 * ae * dy * dy]
    return model, xp.stack(cols, axis=2)


def _valid(xp, p, box, smin2, smax2):
    """Per-island validity of parameters (n,) against the bounds."""
    amp, x0, y0 = p[..., 0], p[..., 1], p[..., 2]
    a, b, c = p[..., 3], p[..., 4], p[..., 5]
    det = a * c - b * b
    half = 0.5 * (a + c)
    rad = xp.sqrt(0.25 * (a - c) ** 2 + b * b)
    lam_hi, lam_lo = half + rad, half - rad  # eigenvalues of the inverse covariance
    ok = (amp > 0) & (a > 0) & (c > 0) & (det > 0)
    ok = ok & (lam_hi <= 1.0 / smin2) & (lam_lo >= 1.0 / smax2[:, None])
    ok = ok & (x0 >= box[:, 0:1]) & (x0 <= box[:, 1:2]) & (y0 >= box[:, 2:3]) & (y0 <= box[:, 3:4])
    return xp.all(ok, axis=1)


def fit_gaussians(X, Y, D, W, p0, box, *, smin2: float, smax2, iterations: int = 40,
                  free_shape=None, compact: bool = True):
    """Fit sums of K elliptical Gaussians to n islands at once.

    Parameters
    ----------
    X, Y, D, W : arrays (n, P)
        Pixel coordinates, data (background removed) and weights (1/rms; 0 for padding).
    p0 : array (n, K, 6)
        Starting ``(A, x0, y0, a, b, c)`` per component.
    box : array (n, 4)
        Allowed centre range ``(xmin, xmax, ymin, ymax)`` per island.
    smin2 : float
        Smallest allowed variance (pixels^2) along any axis.
    smax2 : array (n,)
        Largest allowed variance per island.
    iterations : int
        Levenberg-Marquardt iterations.
    free_shape : bool array (n,), optional
        False: keep the starting shape ``(a, b, c)`` of that island's components
        (fit peak and centre only; their shape covariance is 0). Default all True.
    compact : bool
        Once fewer than half the islands of the loop are still iterating, go on
        with those only (`_COMPACT`). Each island's arithmetic is its own (islands
        that are done are frozen), so the result is the same bytes either way.

    Returns
    -------
    p : array (n, K, 6)
    cov : array (n, 6K, 6K)
        Parameter covariance, scaled by the reduced chi-square.
    chi2 : array (n,)
    converged : bool array (n,)
    """
    xp = namespace(X)
    n, k, _ = p0.shape
    m = k * NPAR
    p = xp.asarray(p0, copy=True)
    eye = xp.eye(m, dtype=X.dtype)
    model, jac = _model_and_jac(xp, X, Y, p)
    r = W * (D - model)
    chi2 = xp.sum(r * r, axis=1)
    lam = xp.full((n,), 1e-3, dtype=X.dtype)
    converged = xp.zeros((n,), dtype=xp.bool)
    done = xp.zeros((n,), dtype=xp.bool)
    if free_shape is None:
        free_shape = xp.ones((n,), dtype=xp.bool)
    shape_col = xp.asarray([j % NPAR >= 3 for j in range(m)])
    # Jacobian column mask (n, 1, 6K): fixed shape parameters get no step
    colmask = xp.astype(~(shape_col[None, :] & ~free_shape[:, None]), X.dtype)[:, None, :]
    state = {"p": p, "model": model, "jac": jac, "r": r, "chi2": chi2, "lam": lam,
             "converged": converged, "done": done}
    data = {"X": X, "Y": Y, "D": D, "W": W, "box": box, "smax2": smax2, "colmask": colmask}
    state = _iterate(xp, state, data, smin2, eye, iterations, compact)
    p, jac, chi2, converged = state["p"], state["jac"], state["chi2"], state["converged"]
    jw = jac * W[:, :, None] * colmask
    h = xp.matmul(xp.permute_dims(jw, (0, 2, 1)), jw)
    fixed = 1.0 - colmask[:, 0, :]  # unit diagonal for fixed parameters, then zeroed
    cov = xp.linalg.inv(h + 1e-12 * eye + fixed[:, :, None] * eye)
    cov = cov * colmask * xp.permute_dims(colmask, (0, 2, 1))
    npix = xp.sum(xp.astype(W > 0, X.dtype), axis=1)
    dof = xp.maximum(npix - m, xp.ones_like(npix))
    cov = cov * xp.maximum(chi2 / dof, xp.ones_like(chi2))[:, None, None]
    return p, cov, chi2, converged



#: `fit_gaussians` goes on with the islands still iterating once they are fewer than
#: this fraction of its loop's (a few slow islands no longer cost the whole batch)
_COMPACT = 0.5


def _iterate(xp, state: dict, data: dict, smin2: float, eye, iterations: int,
             compact: bool) -> dict:
    """The Levenberg-Marquardt iterations of `fit_gaussians` on ``state`` (per island:
    parameters, model, Jacobian, residuals, chi2, damping, converged, done)."""
    n = state["p"].shape[0]
    k = state["p"].shape[1]
    X, Y, D, W, box = data["X"], data["Y"], data["D"], data["W"], data["box"]
    smax2, colmask = data["smax2"], data["colmask"]
    for it in range(iterations):
        done = state["done"]
        if bool(xp.all(done)):  # every island converged or stuck: stop early
            break
        n_live = int(xp.sum(xp.astype(~done, xp.int64)))
        if compact and n_live < _COMPACT * n:
            return _compacted(xp, state, data, smin2, eye, iterations - it)
        p, jac, r, chi2, lam = state["p"], state["jac"], state["r"], state["chi2"], state["lam"]
        jw = jac * W[:, :, None] * colmask
        h = xp.matmul(xp.permute_dims(jw, (0, 2, 1)), jw)
        g = xp.matmul(xp.permute_dims(jw, (0, 2, 1)), r[:, :, None])
        diag = h * eye
        step = xp.linalg.solve(h + lam[:, None, None] * diag + 1e-12 * eye, g)[:, :, 0]
        bad_step = ~xp.all(xp.isfinite(step), axis=1)
        step = xp.where(bad_step[:, None], xp.zeros_like(step), step)
        trial = p + xp.reshape(step, (n, k, NPAR))
        t_model, t_jac = _model_and_jac(xp, X, Y, trial)
        t_r = W * (D - t_model)
        t_chi2 = xp.sum(t_r * t_r, axis=1)
        # islands already done are frozen, so each island's result is independent of its batch
        ok = _valid(xp, trial, box, smin2, smax2) & (t_chi2 <= chi2) & ~bad_step & ~done
        small = (chi2 - t_chi2) <= 1e-6 * chi2 + 1e-9
        converged = state["converged"] | (ok & small)
        new_lam = xp.clip(xp.where(ok, lam * 0.3, lam * 10.0), 1e-7, 1e7)
        state = {"p": xp.where(ok[:, None, None], trial, p),
                 "model": xp.where(ok[:, None], t_model, state["model"]),
                 "jac": xp.where(ok[:, None, None], t_jac, jac),
                 "r": xp.where(ok[:, None], t_r, r),
                 "chi2": xp.where(ok, t_chi2, chi2),
                 "lam": xp.where(done, lam, new_lam),
                 "converged": converged,
                 "done": done | converged | (new_lam >= 1e7)}
    return state


def _compacted(xp, state: dict, data: dict, smin2: float, eye, iterations: int) -> dict:
    """`_iterate` on the islands still iterating, the others kept as they are; the
    result in the islands' order."""
    done = state["done"]
    live = xp.nonzero(~done)[0]
    kept = xp.nonzero(done)[0]
    sub = _iterate(xp, {key: xp.take(v, live, axis=0) for key, v in state.items()},
                   {key: xp.take(v, live, axis=0) for key, v in data.items()}, smin2, eye,
                   iterations, True)
    back = xp.argsort(xp.concat([kept, live]))
    return {key: xp.take(xp.concat([xp.take(v, kept, axis=0), sub[key]], axis=0), back, axis=0)
            for key, v in state.items()}


def gaussian_image(shape, params, xp=np):
    """Render components ``(A, x0, y0, a, b, c)`` (rows of ``params``) into an image.

    Each is drawn within ``5 sigma`` of its centre (host loop over components;
    on numpy with numba, the compiled `render_gaussians`, in float32).
    """
    from ._fused import fused_for, render_gaussians

    if xp is np and fused_for(shape):
        return render_gaussians(shape, params)
    out = np.zeros(shape, dtype=np.float64)
    ny, nx = shape
    for amp, x0, y0, a, b, c in np.asarray(params, dtype=float):
        det = a * c - b * b
        if not (np.isfinite(det) and det > 0 and amp != 0):
            continue
        sx, sy = math.sqrt(c / det), math.sqrt(a / det)
        rx, ry = int(5 * sx) + 2, int(5 * sy) + 2
        x0i, y0i = round(x0), round(y0)
        xa, xb = max(0, x0i - rx), min(nx, x0i + rx + 1)
        ya, yb = max(0, y0i - ry), min(ny, y0i + ry + 1)
        if xa >= xb or ya >= yb:
            continue
        yy, xx = np.mgrid[ya:yb, xa:xb]
        dx, dy = xx - x0, yy - y0
        out[ya:yb, xa:xb] += amp * np.exp(-0.5 * (a * dx * dx + 2 * b * dx * dy + c * dy * dy))
    return xp.asarray(out)


def _inverse_cov(cov_pix: np.ndarray) -> tuple[float, float, float]:
    inv = np.linalg.inv(cov_pix)
    return inv[0, 0], inv[0, 1], inv[1, 1]


def fit_islands(sub: np.ndarray, rms: np.ndarray, labels: np.ndarray, n: int, peaks,
                *, psf_cov: np.ndarray, max_components: int = 5, iterations: int = 40,
                xp=np, batch_pixels: int = 2_000_000, max_pixels: int = 600,
                shape_min_beams: float = 1.5, pixels=None, select: bool = True,
                chi2_scale: float = 1.0):
    """Fit every island of ``labels`` with Gaussians started at its peaks.

    Parameters
    ----------
    sub, rms : numpy arrays
        Background-subtracted image and noise map.
    labels, n : from `find_islands` (``labels`` may be None when ``pixels`` is given).
    peaks : (y, x, label)
        Component seeds, sorted by island then brightness (`local_peaks`).
    psf_cov : (2, 2) array
        Beam/PSF covariance in pixels^2 (x, y order): starting shape and size floor.
    max_components : int
        At most this many components per island (the brightest peaks).
    xp : namespace
        Array namespace the kernel runs in (numpy or CuPy).
    max_pixels : int
        Larger islands are fitted on their brightest ``max_pixels`` pixels.
    shape_min_beams : float
        Islands smaller than this many PSF areas (``2 pi sigma^2``) are too
        small to constrain a shape: their components keep the PSF shape and
        only peak and centre are fitted.
    pixels : (idx, lab), optional
        The island pixels from `island_pixels` (flat indices grouped by island),
        which saves a pass over ``labels``.
    select : bool
        Model selection: an island with several peaks (and a free shape) is also
        fitted with one component, kept unless the extra components lower the
        chi-square by more than the BIC penalty ``6 (k - 1) ln(npix) * chi2_scale``.
    chi2_scale : float
        How much the chi-square over-counts independent pixels (the noise
        correlation area in pixels for correlated noise, 1 for white).

    Returns
    -------
    dict of numpy arrays, one row per component
        ``island, component, n_components, params (6), cov (6x6), chi2_red,
        npix, flags``.
    """
    if n == 0:
        return _empty_components()
    ny, nx = sub.shape
    if pixels is None:
        flat = labels.ravel()
        idx = np.flatnonzero(flat)
        lab = flat[idx]
        order = np.argsort(lab, kind="stable")
        idx, lab = idx[order], lab[order]
    else:
        idx, lab = pixels
    counts = np.bincount(lab, minlength=n + 1)[1:]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    py, px = np.divmod(idx, nx)
    vals = sub.ravel()[idx].astype(np.float64)
    wts = 1.0 / rms.ravel()[idx].astype(np.float64)
    wts[~np.isfinite(wts) | ~np.isfinite(vals)] = 0.0
    vals[~np.isfinite(vals)] = 0.0

    pk_y, pk_x, pk_lab = (np.asarray(a) for a in peaks)
    ncomp = np.bincount(pk_lab, minlength=n + 1)[1:]
    too_many = ncomp > max_components
    # islands whose seed pixel is not a strict local max still get one component
    no_peak = ncomp == 0
    if no_peak.any():
        for i in np.flatnonzero(no_peak):
            s = slice(starts[i], starts[i] + counts[i])
            j = starts[i] + int(np.argmax(vals[s]))
            pk_y = np.append(pk_y, py[j])
            pk_x = np.append(pk_x, px[j])
            pk_lab = np.append(pk_lab, i + 1)
        o = np.lexsort((-sub[pk_y, pk_x], pk_lab))
        pk_y, pk_x, pk_lab = pk_y[o], pk_x[o], pk_lab[o]
        ncomp = np.bincount(pk_lab, minlength=n + 1)[1:]
    ncomp = np.minimum(ncomp, max_components)
    pk_start = np.concatenate([[0], np.cumsum(np.bincount(pk_lab, minlength=n + 1)[1:])[:-1]])

    xmin = np.minimum.reduceat(px, starts)
    xmax = np.maximum.reduceat(px, starts)
    ymin = np.minimum.reduceat(py, starts)
    ymax = np.maximum.reduceat(py, starts)
    if counts.max() > max_pixels:  # fit large islands on their brightest pixels only
        o = np.lexsort((-vals, lab))
        idx, lab, px, py, vals, wts = (v[o] for v in (idx, lab, px, py, vals, wts))
        rank = np.arange(lab.size) - starts[lab - 1]
        keep = rank < max_pixels
        idx, lab, px, py, vals, wts = (v[keep] for v in (idx, lab, px, py, vals, wts))
        counts = np.minimum(counts, max_pixels)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    a0, b0, c0 = _inverse_cov(psf_cov)
    smin2 = 0.25 * float(np.linalg.eigvalsh(psf_cov).min())  # sigma >= half the PSF's
    edge = np.zeros(n, bool)
    edge |= (xmin == 0) | (ymin == 0) | (xmax == nx - 1) | (ymax == ny - 1)
    extent2 = ((xmax - xmin + 1) ** 2 + (ymax - ymin + 1) ** 2).astype(float)
    smax2 = np.maximum(extent2, 4 * float(np.linalg.eigvalsh(psf_cov).max()))

    free = counts >= shape_min_beams * 2.0 * np.pi * float(np.sqrt(np.linalg.det(psf_cov)))
    rows: list[dict] = []
    for k in range(1, max_components + 1):
        members = np.flatnonzero(ncomp == k)
        if members.size == 0:
            continue
        members = members[np.argsort(counts[members], kind="stable")]
        pos = 0
        while pos < members.size:
            npix_max = counts[members[pos]]
            end = pos + 1
            while end < members.size and (end - pos + 1) * counts[members[end]] <= max(
                    batch_pixels, counts[members[end]]) and counts[members[end]] <= 2 * max(
                    npix_max, 16):
                end += 1
            batch = members[pos:end]
            rows.append(_fit_batch(batch, k, starts, counts, px, py, vals, wts, pk_x, pk_y,
                                   pk_start, sub, (a0, b0, c0), smin2, smax2,
                                   (xmin, xmax, ymin, ymax), iterations, xp, free))
            pos = end
    out = {key: np.concatenate([r[key] for r in rows]) for key in rows[0]}
    multi = np.flatnonzero((ncomp > 1) & free)
    if select and multi.size:
        # model selection (BIC): the extra components of an island must lower the
        # chi-square by more than ln(npix) per added parameter, else one component
        # (noise peaks on a broad source are not sources of their own)
        multi = multi[np.argsort(counts[multi], kind="stable")]
        one = _fit_batch(multi, 1, starts, counts, px, py, vals, wts, pk_x, pk_y, pk_start,
                         sub, (a0, b0, c0), smin2, smax2, (xmin, xmax, ymin, ymax),
                         iterations, xp, free)
        first = {int(i): j for j, i in enumerate(out["island"]) if out["component"][j] == 0}
        rows_k = np.array([first[int(i)] for i in multi])
        k = out["n_components"][rows_k]
        dof_k = np.maximum(counts[multi] - k * NPAR, 1)
        chi2_k = out["chi2_red"][rows_k] * dof_k
        chi2_1 = one["chi2_red"] * np.maximum(counts[multi] - NPAR, 1)
        penalty = NPAR * (k - 1) * np.log(counts[multi]) * chi2_scale
        single = multi[(chi2_1 - chi2_k) <= penalty]
        if single.size:
            keep = ~np.isin(out["island"], single)
            take = np.isin(one["island"], single)
            out = {key: np.concatenate([out[key][keep], one[key][take]]) for key in out}
    isl = out["island"]
    out["flags"] |= np.where(too_many[isl], FLAGS["too_many_peaks"], 0)
    out["flags"] |= np.where(edge[isl], FLAGS["edge"], 0)
    order = np.lexsort((out["component"], isl))
    return {key: v[order] for key, v in out.items()}


def _empty_components() -> dict:
    return {"island": np.zeros(0, int), "component": np.zeros(0, int),
            "n_components": np.zeros(0, int), "params": np.zeros((0, NPAR)),
            "cov": np.zeros((0, NPAR, NPAR)), "chi2_red": np.zeros(0), "npix": np.zeros(0, int),
            "flags": np.zeros(0, int)}


def _fit_batch(batch, k, starts, counts, px, py, vals, wts, pk_x, pk_y, pk_start, sub, inv0,
               smin2, smax2, bbox, iterations, xp, free):
    nb = batch.size
    P = int(counts[batch].max())
    ii = np.arange(P)[None, :]
    valid = ii < counts[batch][:, None]
    src = np.where(valid, starts[batch][:, None] + ii, 0)
    ref_x = pk_x[pk_start[batch]].astype(float)
    ref_y = pk_y[pk_start[batch]].astype(float)
    X = np.where(valid, px[src] - ref_x[:, None], 0.0)
    Y = np.where(valid, py[src] - ref_y[:, None], 0.0)
    D = np.where(valid, vals[src], 0.0)
    W = np.where(valid, wts[src], 0.0)
    p0 = np.empty((nb, k, NPAR))
    for j in range(k):
        pj = pk_start[batch] + j
        p0[:, j, 0] = np.maximum(sub[pk_y[pj], pk_x[pj]] / (1.0 + 0.5 * (k > 1)), 1e-30)
        p0[:, j, 1] = pk_x[pj] - ref_x
        p0[:, j, 2] = pk_y[pj] - ref_y
        p0[:, j, 3:] = inv0
    xmin, xmax, ymin, ymax = bbox
    box = np.stack([xmin[batch] - ref_x - 0.5, xmax[batch] - ref_x + 0.5,
                    ymin[batch] - ref_y - 0.5, ymax[batch] - ref_y + 0.5], axis=1)
    p, cov, chi2, conv = fit_gaussians(xp.asarray(X), xp.asarray(Y), xp.asarray(D),
                                       xp.asarray(W), xp.asarray(p0), xp.asarray(box),
                                       smin2=smin2, smax2=xp.asarray(smax2[batch]),
                                       iterations=iterations,
                                       free_shape=xp.asarray(free[batch]))
    p, cov, chi2, conv = (_np(v) for v in (p, cov, chi2, conv))
    p = np.array(p)
    p[:, :, 1] += ref_x[:, None]
    p[:, :, 2] += ref_y[:, None]
    dof = np.maximum(counts[batch] - k * NPAR, 1)
    chi2_red = chi2 / dof
    flags = np.where(conv, 0, FLAGS["not_converged"])
    flags |= np.where(chi2_red > 3.0, FLAGS["poor_fit"], 0)
    a, b, c = p[..., 3], p[..., 4], p[..., 5]
    half = 0.5 * (a + c)
    rad = np.sqrt(0.25 * (a - c) ** 2 + b * b)
    at_bound = ((half + rad) > 0.98 / smin2) | ((half - rad) < 1.02 / smax2[batch][:, None])
    at_bound &= free[batch][:, None]
    comp_flags = flags[:, None] | np.where(at_bound, FLAGS["size_bound"], 0)
    fail = ~np.isfinite(cov).all(axis=(1, 2)) | (np.diagonal(cov, axis1=1, axis2=2) < 0).any(1)
    comp_flags |= np.where(fail, FLAGS["fit_failed"], 0)[:, None]
    covs = np.stack([cov[:, j * NPAR:(j + 1) * NPAR, j * NPAR:(j + 1) * NPAR]
                     for j in range(k)], axis=1)
    return {
        "island": np.repeat(batch, k),
        "component": np.tile(np.arange(k), nb),
        "n_components": np.full(nb * k, k),
        "params": p.reshape(nb * k, NPAR),
        "cov": covs.reshape(nb * k, NPAR, NPAR),
        "chi2_red": np.repeat(chi2_red, k),
        "npix": np.repeat(counts[batch], k),
        "flags": comp_flags.reshape(nb * k),
    }


def _np(x):
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "get"):
        return x.get()
    return np.from_dlpack(x)
