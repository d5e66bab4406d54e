"""Parse a spectral cube: axes found and reordered, degenerate axes dropped, channels in velocity.

`parse_cube` takes every form the image parser takes (plus a `mosaic_cube`
Dataset and FITS paths read lazily, plane region by plane region) and gives a
`Cube`: the pixels in ``(v, y, x)`` order (numpy or dask), the 3-D WCS, and
the velocity of every channel with its width, in the Doppler convention asked
for (`vanotebook.spectral` does the conversions: through ``r = nu / nu0``, so
a velocity axis changes convention without a rest frequency; frequency and
wavelength axes need one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from .._errors import VanotebookInputError, check_choice
from ..io import _FITS_SUFFIXES, IMAGE_FORMS, parse_image, sky_wcs
from ..spectral import AXIS_CONVENTION as _AXIS_CONVENTION
from ..spectral import C_KMS, CONVENTIONS, rest_frequency
from ..spectral import frequency_ratio as _ratio
from ..spectral import velocity_from_ratio as _velocity
from ..units import Beam, parse_unit

__all__ = ["CONVENTIONS", "Cube", "parse_cube"]

CUBE_FORMS = (f"a 3-D cube (or 4-D with a degenerate Stokes axis) as {IMAGE_FORMS}, "
              "or a mosaic_cube Dataset")


@dataclass(frozen=True)
class Cube:
    """A spectral cube as every cube function receives it.

    Attributes
    ----------
    data : array
        Pixels in ``(v, y, x)`` order (numpy, dask or CuPy).
    wcs : astropy.wcs.WCS
        3-D WCS, axes ``(x, y, spectral)`` in FITS order.
    header : astropy.io.fits.Header
        The source header (all its cards: keywords beyond the WCS survive).
    unit : astropy.units.UnitBase or None
        The brightness unit (``BUNIT``).
    beam : Beam or None
    velocity : numpy.ndarray
        Velocity of each channel centre, km/s, in ``convention``.
    width : numpy.ndarray
        Absolute width of each channel in velocity, km/s.
    convention : str
        ``"radio"``, ``"optical"`` or ``"relativistic"``.
    rest : astropy.units.Quantity or None
        The rest frequency, when known.
    path : str or None
        The FITS file the pixels come from (for provenance).
    """

    data: Any
    wcs: WCS
    header: fits.Header
    unit: u.UnitBase | None
    beam: Beam | None
    velocity: np.ndarray
    width: np.ndarray
    convention: str
    rest: u.Quantity | None = None
    path: str | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def celestial(self) -> WCS:
        """The 2-D celestial WCS (axes x, y)."""
        return self.wcs.celestial

    def channels(self, velocity: Any, *, argument: str = "velocity") -> slice:
        """The channels whose centres lie in ``(vmin, vmax)`` (inclusive), as a slice."""
        if velocity is None:
            return slice(0, self.velocity.size)
        try:
            vmin, vmax = (float(u.Quantity(v).to_value(u.km / u.s)) for v in velocity)
        except (TypeError, ValueError, u.UnitsError) as exc:
            raise VanotebookInputError(argument, "(vmin, vmax) velocity Quantities",
                                       velocity) from exc
        if vmin > vmax:
            vmin, vmax = vmax, vmin
        tol = 1e-6 * float(np.min(self.width))
        keep = np.flatnonzero((self.velocity >= vmin - tol) & (self.velocity <= vmax + tol))
        if keep.size == 0:
            lo, hi = float(self.velocity.min()), float(self.velocity.max())
            raise VanotebookInputError(
                argument, f"a range holding channels of the cube ({lo:.4g} .. {hi:.4g} km/s, "
                f"{self.convention})", f"{vmin:.4g} .. {vmax:.4g} km/s")
        return slice(int(keep[0]), int(keep[-1]) + 1)

    def spectral_header(self, sl: slice | None = None) -> dict[str, Any]:
        """Cards of a linear velocity axis for channels ``sl`` (``None``: not linear)."""
        v = self.velocity[sl or slice(None)]
        if v.size == 1:
            step = float(self.width[sl or slice(None)][0])
        else:
            step = float(v[1] - v[0])
            if np.max(np.abs(np.diff(v) - step)) > 1e-6 * abs(step):
                return {}
        ctype = {"radio": "VRAD", "optical": "VOPT", "relativistic": "VELO"}[self.convention]
        cards = {"CTYPE": ctype, "CUNIT": "km/s", "CRVAL": float(v[0]), "CDELT": step,
                 "CRPIX": 1.0}
        return cards


def _lazy_fits(path: Path, argument: str):
    """``(dask array, header, hdulist-free WCS)`` of a FITS path, pixels left on disk."""
    import dask.array as da

    with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
        for index, h in enumerate(hdul):
            if h.is_image and h.header.get("NAXIS", 0) >= 2:
                header, k = h.header.copy(), index
                break
        else:
            raise VanotebookInputError(argument, "a FITS file with an image HDU", str(path))
        wcs = sky_wcs(header, hdul)
    naxis = header["NAXIS"]
    shape = tuple(int(header[f"NAXIS{i}"]) for i in range(naxis, 0, -1))
    reader = FitsCubeReader(path, k, shape, header.get("BITPIX", -32))
    return da.from_array(reader, chunks=reader.chunks(), asarray=True, inline_array=True,
                         name=f"fits-{path.name}-{os.stat(path).st_mtime_ns}"), header, wcs


class FitsCubeReader:
    """The pixels of a FITS cube HDU read region by region (``HDU.section``), never whole.

    It pickles as its path, HDU number and shape, so a Dask graph carries no pixels.
    """

    def __init__(self, path, hdu: int, shape: tuple[int, ...], bitpix: int) -> None:
        self.path = str(path)
        self.hdu = int(hdu)
        self.shape = tuple(shape)
        self.ndim = len(shape)
        self.dtype = np.dtype(np.float64 if bitpix == -64 else np.float32)

    def chunks(self, budget: int = 16 << 20) -> tuple[int, ...]:
        """Whole planes in x, rows in y, one block of planes: about ``budget`` bytes."""
        plane = self.shape[-1] * self.dtype.itemsize
        lead = int(np.prod(self.shape[:-2])) if self.ndim > 2 else 1
        rows = max(1, min(self.shape[-2], budget // max(plane * lead, 1)))
        return (*self.shape[:-2], rows, self.shape[-1])

    def __getitem__(self, key) -> np.ndarray:
        with fits.open(self.path, memmap=False, lazy_load_hdus=True) as hdul:
            part = hdul[self.hdu].section[key]
        return np.asarray(part, dtype=self.dtype)

    def __repr__(self) -> str:
        return f"FitsCubeReader({self.path!r}, hdu={self.hdu}, shape={self.shape})"


def _from_dataset(ds: Any, argument: str):
    names = [n for n in ("mosaic", "cube", "data") if n in ds.data_vars]
    if not names or "header" not in ds.attrs:
        raise VanotebookInputError(argument, "a mosaic_cube Dataset (variable 'mosaic' and "
                                   "attrs['header'])", ds)
    header = ds.attrs["header"]
    header = fits.Header.fromstring(header) if isinstance(header, str) else fits.Header(header)
    return ds[names[0]].data, header


def parse_cube(cube: Any, *, convention: str | None = None, rest: Any = None,
               argument: str = "cube") -> Cube:
    """Turn any accepted form of a spectral cube into a `Cube`.

    Parameters
    ----------
    cube
        A FITS path (read lazily), an HDU or HDUList, ``(array, WCS)``,
        ``(array, Header)``, NDData, a DataArray with ``attrs["header"]``, a
        `mosaic_cube` Dataset, or a `Cube`. 4-D cubes are accepted when every
        axis but the two celestial and the spectral one has length 1.
    convention : {"radio", "optical", "relativistic"}, optional
        Doppler convention of the velocities; by default that of a velocity
        axis, radio for frequency and wavelength axes.
    rest : Quantity, optional
        Rest frequency (or wavelength), overriding ``RESTFRQ``/``RESTWAV``.
    argument : str
        Name used in error messages.

    Returns
    -------
    Cube

    Raises
    ------
    VanotebookInputError
        A 2-D image, no spectral axis, a spectral axis mixed with the sky axes,
        a non-degenerate fourth axis, or frequency/wavelength without a rest
        frequency.
    """
    if convention is not None:
        check_choice("convention", convention, CONVENTIONS)
    if isinstance(cube, Cube):
        if convention in (None, cube.convention) and rest is None:
            return cube
        return parse_cube((cube.data, cube.wcs), convention=convention or cube.convention,
                          rest=rest if rest is not None else cube.rest, argument=argument)
    path = None
    if isinstance(cube, str | os.PathLike) and Path(cube).is_dir() and \
            (Path(cube) / "zarr.json").is_file():
        import dask.array as da
        import zarr

        group = zarr.open_group(str(cube), mode="r")
        if "header" not in group.attrs or "cube" not in group:
            raise VanotebookInputError(argument, "a zarr store written by spectral_copy",
                                       str(cube))
        header = fits.Header.fromstring(group.attrs["header"])
        data = da.from_zarr(str(cube), component="cube")
        im = parse_image((data, header), argument=argument)
        data, header, wcs, unit, beam = im.data, im.header, im.wcs, im.unit, im.beam
    elif type(cube).__name__ == "Dataset" and hasattr(cube, "data_vars"):
        data, header = _from_dataset(cube, argument)
        im = parse_image((data, header), argument=argument)
        data, header, wcs, unit, beam = im.data, im.header, im.wcs, im.unit, im.beam
    elif isinstance(cube, str | os.PathLike) and Path(cube).is_file() and \
            str(cube).lower().endswith(_FITS_SUFFIXES):
        path = str(cube)
        data, header, wcs = _lazy_fits(Path(cube), argument)
        if data.ndim < 3:
            raise VanotebookInputError(argument, CUBE_FORMS,
                                       f"a 2-D image of shape {tuple(data.shape)}")
        unit = parse_unit(header.get("BUNIT"), f"{argument} BUNIT")
        beam = Beam.from_header(header)
    else:
        im = parse_image(cube, argument=argument)
        data, header, wcs, unit, beam = im.data, im.header, im.wcs, im.unit, im.beam
    if data.ndim < 3:
        raise VanotebookInputError(argument, CUBE_FORMS, f"a 2-D image of shape "
                                   f"{tuple(data.shape)}")
    if wcs.naxis != data.ndim:
        raise VanotebookInputError(argument, f"a WCS with {data.ndim} axes for the "
                                   f"{data.ndim}-D data", f"a WCS with {wcs.naxis} axes")
    spec = int(wcs.wcs.spec)
    if spec < 0:
        raise VanotebookInputError(argument, "a cube with a spectral WCS axis (velocity, "
                                   "frequency or wavelength)",
                                   f"axes {list(wcs.wcs.ctype)}")
    lng, lat = int(wcs.wcs.lng), int(wcs.wcs.lat)
    c1, c2 = sorted((lng, lat))
    ndim = data.ndim
    for i in range(ndim):
        if i not in (c1, c2, spec) and data.shape[ndim - 1 - i] != 1:
            raise VanotebookInputError(
                argument, "a cube whose axes beyond the sky and spectral ones have length 1 "
                "(a degenerate Stokes axis)",
                f"axis {i + 1} ({wcs.wcs.ctype[i] or 'unnamed'}) of length "
                f"{data.shape[ndim - 1 - i]}")
    pc = wcs.wcs.get_pc()
    if any(abs(pc[spec, c]) > 1e-12 or abs(pc[c, spec]) > 1e-12 for c in (c1, c2)):
        raise VanotebookInputError(argument, "a spectral axis separable from the sky axes "
                                   "(no PC terms between them)", f"PC matrix {pc.tolist()}")
    # select and reorder to (spec, c2, c1) in numpy order
    index = tuple(slice(None) if (ndim - 1 - k) in (c1, c2, spec) else 0 for k in range(ndim))
    data = data[index]
    kept = [ndim - 1 - k for k in range(ndim) if (ndim - 1 - k) in (c1, c2, spec)]
    order = [kept.index(spec), kept.index(c2), kept.index(c1)]
    if order != [0, 1, 2]:
        data = data.transpose(order) if hasattr(data, "transpose") else np.transpose(data, order)
    wcs3 = wcs.sub([c1 + 1, c2 + 1, spec + 1])
    # channels: native world values at centres and edges
    n = int(data.shape[0])
    spec_wcs = wcs3.sub([3])
    centres = spec_wcs.all_pix2world(np.arange(n, dtype=float), 0)[0]
    edges = spec_wcs.all_pix2world(np.arange(n + 1, dtype=float) - 0.5, 0)[0]
    ctype = str(wcs3.wcs.ctype[2])
    head = ctype[:4].upper()
    rest_hz, restwav = rest_frequency(wcs3, rest)
    own = _AXIS_CONVENTION.get(head)
    conv = convention or own or "radio"
    if own is not None and own == conv and head in ("VRAD", "VOPT", "VELO"):
        velocity = centres / 1e3
        edge_v = edges / 1e3
    else:
        velocity = _velocity(_ratio(centres, head, rest_hz, restwav, argument, ctype), conv)
        edge_v = _velocity(_ratio(edges, head, rest_hz, restwav, argument, ctype), conv)
    width = np.abs(np.diff(edge_v))
    if rest_hz is None and restwav:
        rest_hz = C_KMS * 1e3 / restwav
    rest_q = None if not rest_hz else rest_hz * u.Hz
    return Cube(data, wcs3, fits.Header(header), unit, beam, np.asarray(velocity, float),
                np.asarray(width, float), conv, rest_q, path)
