"""From fitted components to the catalogue: sky positions, fluxes, sizes, errors, regions."""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
from astropy.table import QTable

from ..units import FWHM_TO_SIGMA, Beam, convert_brightness

__all__ = ["CLASSES", "compact_table", "empty_compact", "empty_extended", "local_flux_factor",
           "local_jacobian", "regions_for", "shape_from_cov", "sky_geometry"]

CLASSES = ("point", "compact", "extended")


def sky_geometry(wcs, shape):
    """(M, celestial) where M (2x2) maps pixel offsets to (east, north) degrees at the
    reference pixel (see `local_jacobian` for the matrix at each source).

    Without a WCS, M maps pixels to "pixel-east" = -x and north = +y (arbitrary unit).
    """
    if wcs is None:
        return np.array([[-1.0, 0.0], [0.0, 1.0]]), None
    cel = wcs.celestial
    return np.asarray(cel.pixel_scale_matrix, dtype=float), cel


def local_jacobian(cel, x, y) -> np.ndarray:
    """(n, 2, 2) matrices mapping pixel offsets at ``(x, y)`` to (east, north) degrees.

    Central differences of the WCS over one pixel, in the image's own frame: on a
    non-conformal projection (CAR, SFL, AIT...) or far from the reference pixel the
    pixel scale and shape change across the map, and a source's size, position angle
    and solid angle follow the local matrix, not ``pixel_scale_matrix`` (which holds
    at the reference pixel only). Without a WCS, ``[[-1, 0], [0, 1]]`` for every source.
    """
    x = np.atleast_1d(np.asarray(x, float))
    y = np.atleast_1d(np.asarray(y, float))
    n = x.size
    if cel is None:
        return np.broadcast_to(np.array([[-1.0, 0.0], [0.0, 1.0]]), (n, 2, 2)).copy()
    if n == 0:
        return np.zeros((0, 2, 2))
    h = 0.5
    px = np.concatenate([x + h, x - h, x, x])
    py = np.concatenate([y, y, y + h, y - h])
    lon, lat = (np.asarray(v, float) for v in cel.pixel_to_world_values(px, py))
    lat0 = np.asarray(cel.pixel_to_world_values(x, y)[1], float)
    coslat = np.cos(np.radians(lat0))
    out = np.empty((n, 2, 2))
    for col, (a, b) in enumerate(((0, 1), (2, 3))):
        dlon = ((lon[a * n:(a + 1) * n] - lon[b * n:(b + 1) * n] + 180.0) % 360.0) - 180.0
        dlat = lat[a * n:(a + 1) * n] - lat[b * n:(b + 1) * n]
        out[:, 0, col] = dlon * coslat / (2 * h)
        out[:, 1, col] = dlat / (2 * h)
    bad = ~np.isfinite(out).all(axis=(1, 2))
    if bad.any():  # off the projection's valid area: the reference matrix
        out[bad] = np.asarray(cel.pixel_scale_matrix, dtype=float)
    return out


def shape_from_cov(p, q, r):
    """FWHM major, minor and PA (deg, east of north) of covariances ``[[p, q], [q, r]]``."""
    t = 0.5 * (p + r)
    d = np.sqrt(0.25 * (p - r) ** 2 + q * q)
    l1, l2 = np.maximum(t + d, 0.0), np.maximum(t - d, 0.0)
    phi = 0.5 * np.degrees(np.arctan2(2 * q, p - r))
    pa = (90.0 - phi) % 180.0
    return np.sqrt(l1) / FWHM_TO_SIGMA, np.sqrt(l2) / FWHM_TO_SIGMA, pa


def north_rotation(cel, x, y) -> np.ndarray:
    """Position angle (deg, east of ICRS north) of the image frame's north at pixels ``x, y``.

    Zero for an ICRS (or FK5) image; for a Galactic image, the angle between
    Galactic and equatorial north there. Added to a PA measured against the
    image's north, it gives the PA east of ICRS north.
    """
    x = np.atleast_1d(np.asarray(x, float))
    if x.size == 0:
        return np.zeros(0)
    here = cel.pixel_to_world(x, np.asarray(y, float))
    frame = here.frame
    lon, lat = here.spherical.lon, here.spherical.lat
    step = 1.0 * u.arcsec
    up = np.where(lat.deg > 89.0, -1.0, 1.0)  # near the pole: step south and turn round
    from astropy.coordinates import SkyCoord

    there = SkyCoord(lon, lat + up * step, frame=frame)
    here_icrs, there_icrs = here.icrs, there.icrs
    angle = here_icrs.position_angle(there_icrs).deg + np.where(up < 0, 180.0, 0.0)
    out = ((angle + 90.0) % 180.0) - 90.0
    return np.where(np.abs(out) < 1e-9, 0.0, out)


def _sky_cov(a, b, c, M):
    """(east, east), (east, north), (north, north) sky covariance of components with pixel
    inverse covariance ``[[a, b], [b, c]]``; ``M`` (2, 2) or (n, 2, 2) pixel -> sky."""
    M = np.asarray(M, float)
    if M.ndim == 2:
        M = M[None]
    det = a * c - b * b
    cxx, cxy, cyy = c / det, -b / det, a / det
    m00, m01, m10, m11 = M[:, 0, 0], M[:, 0, 1], M[:, 1, 0], M[:, 1, 1]
    p = m00 ** 2 * cxx + 2 * m00 * m01 * cxy + m01 ** 2 * cyy
    q = m00 * m10 * cxx + (m00 * m11 + m01 * m10) * cxy + m01 * m11 * cyy
    r = m10 ** 2 * cxx + 2 * m10 * m11 * cxy + m11 ** 2 * cyy
    return p, q, r


def local_flux_factor(unit, beam: Beam | None, pixel_area, local_area) -> np.ndarray:
    """`flux_factor` at each source's own pixel solid angle ``local_area`` (array, sr).

    The factor is proportional to the pixel area for surface brightnesses per beam or per
    steradian and independent of it for values per pixel: measured at the reference area
    and twice it, then scaled as ``(local / reference) ** k`` with k = 0 or 1.
    """
    f1, _ = flux_factor(unit, beam, pixel_area)
    local_area = np.asarray(local_area, float)
    if pixel_area is None or unit is None:
        return np.full(local_area.shape, f1)
    f2, _ = flux_factor(unit, beam, 2 * pixel_area)
    k = math.log2(f2 / f1) if f1 > 0 and f2 > 0 else 0.0
    ref = pixel_area.to_value(u.sr)
    return f1 * (local_area / ref) ** round(k)


def flux_factor(unit, beam: Beam | None, pixel_area):
    """Factor and unit turning a pixel sum of values in ``unit`` into a flux density.

    Jy/beam, MJy/sr, Jy/pix... give Jy. Without a unit (or with one that is
    not a surface brightness) the flux is the pixel sum, in ``unit``.
    """
    if unit is None:
        return 1.0, u.dimensionless_unscaled
    try:
        f = convert_brightness(1.0, unit, u.Jy / u.pix, beam=beam, pixel_area=pixel_area)
        return float(f), u.Jy
    except ValueError:
        return 1.0, unit


def compact_table(comps: dict, *, rms: np.ndarray, wcs, unit, beam: Beam | None,
                  pixel_area, noise=None) -> QTable:
    """The compact-source QTable (one row per fitted component).

    ``noise`` is the noise correlation function: None (independent pixels), a
    (2, 2) covariance in pixels, or a `Beam` (on the sky: turned into pixels
    where each source is). Parameter errors are then inflated after Condon
    (1997) (see `_condon`).
    """
    n = len(comps["island"])
    if n == 0:
        return empty_compact(unit, wcs is not None, beam, pixel_area)
    M, cel = sky_geometry(wcs, rms.shape)
    p, cov = comps["params"], comps["cov"]
    amp, x, y, a, b, c = (p[:, i] for i in range(6))
    M = local_jacobian(cel, x, y)  # the pixel's scale, shape and solid angle at each source
    f_flux = None
    if noise is not None:
        from ._condon import inflate

        if isinstance(noise, Beam):
            if cel is None:
                raise ValueError("a noise correlation given on the sky needs a WCS")
            minv = np.linalg.inv(M)
            noise_pix = np.einsum("nij,jk,nlk->nil", minv, noise.covariance(), minv)
        else:
            noise_pix = np.asarray(noise, float)
        cov, f_flux = inflate(p, cov, noise_pix)
    var = np.diagonal(cov, axis1=1, axis2=2)
    sig = np.sqrt(np.clip(var, 0, None))
    det = a * c - b * b
    sqd = np.sqrt(np.clip(det, 1e-300, None))
    pixsum = 2 * math.pi * amp / sqd
    g = np.stack([2 * math.pi / sqd, np.zeros(n), np.zeros(n), -math.pi * amp * c / sqd**3,
                  2 * math.pi * amp * b / sqd**3, -math.pi * amp * a / sqd**3], axis=1)
    pixsum_err = np.sqrt(np.clip(np.einsum("ni,nij,nj->n", g, cov, g), 0, None))
    if f_flux is not None:  # the flux's own factor (its terms no longer cancel alike)
        pixsum_err = np.sqrt(np.clip(np.einsum("ni,nij,nj->n", g, comps["cov"], g), 0, None)
                             * f_flux)
    factor, funit = flux_factor(unit, beam, pixel_area)
    if cel is not None:
        local_area = (np.abs(np.linalg.det(M)) * u.deg**2).to_value(u.sr)
        factor = local_flux_factor(unit, beam, pixel_area, local_area)
    # sizes on the sky and their errors (finite differences over a, b, c)
    scale = 3600.0 if cel is not None else 1.0
    size_unit = u.arcsec if cel is not None else u.pix

    def shape(aa, bb, cc):
        maj, mnr, pa = shape_from_cov(*_sky_cov(aa, bb, cc, M))
        return maj * scale, mnr * scale, pa

    maj, mnr, pa = shape(a, b, c)
    rot = north_rotation(cel, x, y) if cel is not None else np.zeros(n)
    pa = (pa + rot) % 180.0
    grads = []
    for i, (da, db, dc) in enumerate(((1, 0, 0), (0, 1, 0), (0, 0, 1))):
        h = 1e-5 * np.maximum(np.abs(a) + np.abs(c), 1e-12)
        hi = shape(a + da * h, b + db * h, c + dc * h)
        lo = shape(a - da * h, b - db * h, c - dc * h)
        dpa = ((hi[2] - lo[2] + 90.0) % 180.0) - 90.0
        grads.append(np.stack([(hi[0] - lo[0]) / (2 * h), (hi[1] - lo[1]) / (2 * h),
                               dpa / (2 * h)], axis=1))
        del i
    G = np.stack(grads, axis=2)  # (n, 3 outputs, 3 params)
    cabc = cov[:, 3:6, 3:6]
    shape_var = np.einsum("noi,nij,noj->no", G, cabc, G)
    shape_err = np.sqrt(np.clip(shape_var, 0, None))
    # deconvolution from the beam (closed form of Beam.deconvolve, vectorised)
    if beam is not None and cel is not None:
        bc = beam.covariance()
        sp, sq, sr = _sky_cov(a, b, c, M)
        dp, dq, dr = sp - bc[0, 0], sq - bc[0, 1], sr - bc[1, 1]
        dmaj, dmin, dpa = shape_from_cov(dp, dq, dr)
        ok = (dp + dr > 0) & (dp * dr - dq * dq > 0)
        dmaj = np.where(ok, dmaj * 3600, 0.0)
        dmin = np.where(ok, dmin * 3600, 0.0)
        dpa = np.where(ok, (dpa + rot) % 180.0, np.nan)
        beam_major = beam.major.to_value(u.arcsec)
    else:
        dmaj = dmin = dpa = np.full(n, np.nan)
        beam_major = np.nan
    # positions
    pos_cov = cov[:, 1:3, 1:3]
    sky_pos = np.einsum("nij,njk,nlk->nil", M, pos_cov, M)
    if cel is not None:
        coords = cel.pixel_to_world(x, y)
        coords = coords.icrs if hasattr(coords, "icrs") else coords
        ra, dec = coords.ra.deg, coords.dec.deg
    else:
        ra = dec = np.full(n, np.nan)
    pos_scale = 3600.0 if cel is not None else np.nan
    iy = np.clip(np.round(y).astype(int), 0, rms.shape[0] - 1)
    ix = np.clip(np.round(x).astype(int), 0, rms.shape[1] - 1)
    local_rms = rms[iy, ix]
    punit = unit if unit is not None else u.dimensionless_unscaled
    t = QTable()
    t["id"] = np.arange(n, dtype=np.int64)
    t["island"] = comps["island"].astype(np.int64)
    t["component"] = comps["component"].astype(np.int64)
    t["n_components"] = comps["n_components"].astype(np.int64)
    t["x"] = x * u.pix
    t["y"] = y * u.pix
    t["x_err"] = sig[:, 1] * u.pix
    t["y_err"] = sig[:, 2] * u.pix
    t["ra"] = ra * u.deg
    t["dec"] = dec * u.deg
    t["ra_err"] = np.sqrt(sky_pos[:, 0, 0]) * pos_scale * u.arcsec
    t["dec_err"] = np.sqrt(sky_pos[:, 1, 1]) * pos_scale * u.arcsec
    t["peak"] = amp * punit
    t["peak_err"] = sig[:, 0] * punit
    t["flux"] = pixsum * factor * funit
    t["flux_err"] = pixsum_err * factor * funit
    t["major"] = maj * size_unit
    t["minor"] = mnr * size_unit
    t["pa"] = pa * u.deg
    t["major_err"] = shape_err[:, 0] * size_unit
    t["minor_err"] = shape_err[:, 1] * size_unit
    t["pa_err"] = shape_err[:, 2] * u.deg
    t["major_deconv"] = dmaj * u.arcsec
    t["minor_deconv"] = dmin * u.arcsec
    t["pa_deconv"] = dpa * u.deg
    t["rms"] = local_rms * punit
    t["snr"] = amp / local_rms
    t["chi2_red"] = comps["chi2_red"]
    t["npix"] = comps["npix"].astype(np.int64)
    t["flags"] = comps["flags"].astype(np.int32)
    t["score"] = np.full(n, np.nan)
    t["cls"] = np.full(n, "point", dtype="U8")
    t["extended_id"] = np.full(n, -1, dtype=np.int64)  # extended source it lies in, or -1
    t.meta["beam_major_arcsec"] = beam_major
    return t


def empty_compact(unit=None, has_wcs=True, beam=None, pixel_area=None) -> QTable:
    """A compact-source table with every column and no rows."""
    from ._fit import _empty_components

    comps = _empty_components()
    comps["params"] = np.array([[1.0, 0, 0, 1, 0, 1]])
    comps["cov"] = np.eye(6)[None]
    for key in ("island", "component", "n_components", "npix", "flags"):
        comps[key] = np.zeros(1, int)
    comps["chi2_red"] = np.zeros(1)
    from astropy.wcs import WCS

    wcs = None
    if has_wcs:
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.cdelt = [-1 / 3600, 1 / 3600]
    t = compact_table(comps, rms=np.ones((2, 2)), wcs=wcs, unit=unit, beam=beam,
                      pixel_area=pixel_area if pixel_area is not None else 1e-10 * u.sr)
    return t[:0]


def empty_extended(unit=None, has_wcs=True) -> QTable:
    """An extended-source table with every column and no rows."""
    t = QTable()
    funit = u.Jy if unit is not None else u.dimensionless_unscaled
    t["id"] = np.zeros(0, np.int64)
    t["x"] = np.zeros(0) * u.pix
    t["y"] = np.zeros(0) * u.pix
    t["ra"] = np.zeros(0) * u.deg
    t["dec"] = np.zeros(0) * u.deg
    t["flux"] = np.zeros(0) * funit
    t["flux_err"] = np.zeros(0) * funit
    t["area"] = np.zeros(0) * (u.arcsec**2 if has_wcs else u.pix**2)
    t["npix"] = np.zeros(0, np.int64)
    t["snr"] = np.zeros(0)
    t["n_compact"] = np.zeros(0, np.int64)
    t["flux_compact"] = np.zeros(0) * funit
    t["flux_total"] = np.zeros(0) * funit
    t["flux_total_err"] = np.zeros(0) * funit
    t["contour_x"] = np.zeros((0,), dtype=object)
    t["contour_y"] = np.zeros((0,), dtype=object)
    return t


def regions_for(catalogue: QTable, extended: QTable, wcs):
    """DS9 regions: an ellipse per compact source (FWHM), a polygon per extended source."""
    from regions import EllipsePixelRegion, EllipseSkyRegion, PixCoord, PolygonPixelRegion, Regions

    out = []
    cel = wcs.celestial if wcs is not None else None
    for row in catalogue:
        meta = {"text": f"{row['id']} {row['cls']}"}
        if cel is not None and np.isfinite(row["ra"].value):
            from astropy.coordinates import SkyCoord

            centre = SkyCoord(row["ra"], row["dec"], frame="icrs")
            out.append(EllipseSkyRegion(centre, width=row["minor"], height=row["major"],
                                        angle=row["pa"], meta=meta))
        else:
            out.append(EllipsePixelRegion(PixCoord(row["x"].value, row["y"].value),
                                          width=float(row["minor"].value),
                                          height=float(row["major"].value),
                                          angle=row["pa"], meta=meta))
    for row in extended:
        poly = PolygonPixelRegion(PixCoord(np.asarray(row["contour_x"], float),
                                           np.asarray(row["contour_y"], float)),
                                  meta={"text": f"ext {row['id']}"})
        out.append(poly.to_sky(cel) if cel is not None else poly)
    return Regions(out)
