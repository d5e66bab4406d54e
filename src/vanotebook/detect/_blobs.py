"""Multi-scale Laplacian-of-Gaussian blobs: nested sources inside large islands.

A bright compact knot sitting on diffuse emission makes one island; its
own peak stands out in the scale-normalised LoG response at the beam scale,
and broader blobs at larger scales. `log_blobs` returns the scale-space
maxima; the detection pipeline adds those that are not already a peak as
extra components of the island's fit.
"""

from __future__ import annotations

import numpy as np

from ._islands import ndimage_for

__all__ = ["log_blobs"]


def log_blobs(image: np.ndarray, sigmas, *, threshold: float, mask: np.ndarray | None = None):
    """Scale-space maxima of ``-sigma**2 * LoG(image)``.

    Parameters
    ----------
    image : numpy array
        Signal-to-noise map (NaN-free).
    sigmas : sequence of float
        Gaussian scales in pixels, increasing.
    threshold : float
        Minimum normalised response (in the image's units).
    mask : bool array, optional
        Only maxima where ``mask`` is True are returned.

    Returns
    -------
    (y, x, sigma, response) : numpy arrays
    """
    ndi = ndimage_for(image)
    sigmas = np.asarray(sigmas, dtype=float)
    cube = np.stack([-(s**2) * ndi.gaussian_laplace(image, s, mode="nearest") for s in sigmas])
    mx = ndi.maximum_filter(cube, size=(3, 3, 3), mode="nearest")
    peak = (cube == mx) & (cube >= threshold)
    if mask is not None:
        peak &= mask[None]
    k, y, x = np.nonzero(peak)
    return y, x, sigmas[k], cube[k, y, x]
