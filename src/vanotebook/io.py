"""Reading and writing, and the one input parser every service uses.

* `parse_image` takes any accepted form of an image and returns an `Image`
  (data, WCS, header, unit, beam); its error lists the accepted forms.
* `parse_catalogue` takes a table in any accepted form and checks its
  coordinate columns.
* Writers go through `atomic_path`: a temporary name in the target folder,
  renamed on success, so a failure never leaves a half-written product.
"""

from __future__ import annotations

import contextlib
import glob as _glob
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table
from astropy.wcs import WCS

from ._errors import VanotebookInputError
from .units import Beam, fits_string, parse_unit

__all__ = [
    "COORDINATE_NAMES",
    "IMAGE_FORMS",
    "Image",
    "arrow_to_table",
    "atomic_dir",
    "atomic_path",
    "casa_beam",
    "coordinates_in_degrees",
    "guess_coordinates",
    "masked_as_nan",
    "native_byteorder",
    "parquet_units",
    "parse_catalogue",
    "parse_image",
    "parse_images",
    "read_catalogue",
    "sky_wcs",
    "table_units",
    "write_dataset",
    "write_fits",
    "write_table",
]

IMAGE_FORMS = (
    "a FITS path, an astropy HDU or HDUList, (array, WCS), (array, Header), NDData, "
    "an xarray DataArray with its FITS header in attrs['header'], or a vanotebook Image"
)
CATALOGUE_FORMS = (
    "an astropy Table, a pandas or dask DataFrame, or a path to a FITS, VOTable, ECSV, CSV, "
    "TSV or parquet file (or a folder of parquet files)"
)
#: Coordinate column pairs astronomers' catalogues use, most specific first (compared
#: case-insensitively): plain, VizieR, SExtractor, Gaia/VizieR ICRS, degree suffixes.
COORDINATE_NAMES = (("ra", "dec"), ("raj2000", "dej2000"), ("_raj2000", "_dej2000"),
                    ("ra_j2000", "dec_j2000"), ("alpha_j2000", "delta_j2000"),
                    ("ra_icrs", "de_icrs"), ("_ra_icrs", "_de_icrs"), ("radeg", "dedeg"),
                    ("ra_deg", "dec_deg"), ("ra_icrs", "dec_icrs"), ("alpha", "delta"),
                    ("raj2000", "decj2000"), ("ra2000", "dec2000"), ("ramean", "decmean"))
UNITS_KEY = b"vanotebook.units"
_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz", ".fz")


# ----------------------------------------------------------------------------- arrays
def native_byteorder(array: Any) -> Any:
    """``array`` in the machine's byte order; anything else, or a native array, unchanged.

    FITS stores big-endian numbers; Arrow refuses them and kernels run slower on them.
    """
    if isinstance(array, np.ndarray) and not array.dtype.isnative:
        return array.astype(array.dtype.newbyteorder("="))
    return array


def masked_as_nan(column: Any) -> Any:
    """A coordinate column whose masked (blank) entries are NaN, so they count as missing.

    Reading a masked column's values (``np.asarray``, ``.quantity``) returns what lies
    under the mask (0 for a blank ECSV cell), a position on the sky; as NaN they are
    refused or dropped like any other missing coordinate. Unmasked columns come back
    unchanged.
    """
    mask = getattr(column, "mask", None)
    if mask is None or not np.any(mask):
        return column
    if column.dtype.kind in "USO":  # blank text cells: empty strings, parsed as missing
        return column.filled("")
    return column.astype(float).filled(np.nan)


def _sexagesimal(values: np.ndarray, name: str, hours: bool) -> np.ndarray:
    """Degrees from text coordinates ("00:42:44.3", "00 42 44.3", "0h42m44.3s", "10.68")."""
    from astropy.coordinates import Angle

    text = np.char.strip(np.asarray(values, dtype=str))
    out = np.full(text.shape, np.nan)
    filled = text != ""
    if not filled.any():
        return out
    sample = text[filled]
    try:
        numeric = sample.astype(float)
    except ValueError:
        numeric = None
    if numeric is not None:  # decimal numbers stored as text: degrees
        out[filled] = numeric
        return out
    unit = u.hourangle if hours else u.deg
    try:
        angles = Angle(np.char.replace(sample, " ", ":"), unit=unit)
    except (ValueError, u.UnitsError) as exc:
        raise VanotebookInputError(
            name, "coordinates in degrees or sexagesimal text "
            f"({'hours' if hours else 'degrees'}:minutes:seconds)",
            f"{sample[0]!r} (first of {sample.size})") from exc
    out[filled] = angles.to_value(u.deg)
    return out


def coordinates_in_degrees(table: Table, ra: str, dec: str) -> Table:
    """``table`` with its ``ra`` and ``dec`` columns as float degrees, in place.

    Masked (blank) cells become NaN, so they count as missing; angle units
    convert to degrees; text columns are read as sexagesimal, RA in hours
    and Dec in degrees (the VizieR ``RAJ2000``/``DEJ2000`` convention) unless
    the column's unit says degrees, or as decimal degrees when they are
    numbers. A non-angle unit is refused.
    """
    for name, low, high, is_ra in ((ra, -360.0, 360.0, True), (dec, -90.0, 90.0, False)):
        col = masked_as_nan(table[name])
        unit = getattr(col, "unit", None)
        if col.dtype.kind in "USO":
            hours = is_ra and not (unit is not None and unit == u.deg)
            table[name] = _sexagesimal(np.asarray(col), name, hours)
            table[name].unit = u.deg
            continue
        table[name] = col
        if unit is not None and unit != u.deg:
            try:
                table[name] = col.quantity.to(u.deg)
            except u.UnitConversionError as exc:
                raise VanotebookInputError(name, "an angle column", f"unit {unit}") from exc
        values = np.asarray(table[name], dtype=float)
        finite = values[np.isfinite(values)]
        if finite.size and (finite.min() < low or finite.max() > high):
            raise VanotebookInputError(
                name, f"degrees within [{low}, {high}]",
                f"values from {finite.min():g} to {finite.max():g}"
            )
    return table


# ----------------------------------------------------------------------------- writing
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600 files; products get the usual umask mode
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; put it in place of ``path`` on success.

    An existing non-empty ``path`` is refused unless ``overwrite``; it is replaced
    only once the new folder is complete. On any exception the temporary folder
    is removed and ``path`` is untouched.
    """
    path = Path(path)
    if path.exists() and not overwrite and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700 folders
        if path.exists():
            old = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_fits(hdul: fits.HDUList | fits.PrimaryHDU, path: str | os.PathLike, *,
               overwrite: bool = False) -> Path:
    """Write an HDU or HDUList to ``path`` atomically; return the path."""
    if isinstance(hdul, fits.PrimaryHDU | fits.ImageHDU):
        hdul = fits.HDUList([hdul if isinstance(hdul, fits.PrimaryHDU)
                             else fits.PrimaryHDU(hdul.data, hdul.header)])
    with atomic_path(path, overwrite=overwrite) as tmp:
        hdul.writeto(tmp, overwrite=True, output_verify="exception")
    return Path(path)


_DATASET_VARS = ("mosaic", "weight", "coverage")


def write_dataset(dataset: Any, path: str | os.PathLike | None = None, *,
                  overwrite: bool = False) -> fits.HDUList:
    """A mosaic `xarray.Dataset` as FITS: the mosaic (primary), WEIGHT, COVERAGE, PROVENANCE.

    Parameters
    ----------
    dataset : xarray.Dataset
        A mosaic as `vanotebook.mosaic.mosaic` returns it: data variables
        ``mosaic``, ``weight`` and ``coverage`` and its FITS header in
        ``attrs["header"]`` (and its record in ``attrs["provenance"]``).
    path : path, optional
        Where to write it, atomically (nothing is left on failure).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    astropy.io.fits.HDUList
        The HDUs, written or not.
    """
    from .provenance import Provenance

    data_vars = getattr(dataset, "data_vars", None)
    attrs = getattr(dataset, "attrs", None)
    if data_vars is None or attrs is None:
        raise VanotebookInputError("dataset", "a mosaic xarray.Dataset", dataset)
    missing = [v for v in _DATASET_VARS if v not in data_vars]
    if missing or "header" not in attrs:
        raise VanotebookInputError(
            "dataset", "a mosaic Dataset (data variables mosaic, weight, coverage and its "
            "FITS header in attrs['header'])",
            f"data variables {sorted(map(str, data_vars))}, attrs {sorted(attrs)}")
    header = attrs["header"]
    header = fits.Header.fromstring(header) if isinstance(header, str) else fits.Header(header)
    sky = WCS(header).celestial.to_header(relax=True)
    hdul = fits.HDUList([
        fits.PrimaryHDU(np.asarray(dataset["mosaic"].values, np.float32), header),
        fits.ImageHDU(np.asarray(dataset["weight"].values, np.float32), sky, name="WEIGHT"),
        fits.ImageHDU(np.asarray(dataset["coverage"].values, np.int16), sky.copy(),
                      name="COVERAGE"),
    ])
    prov = attrs.get("provenance")
    if prov:
        Provenance.from_dict(prov).attach(hdul)
    if path is not None:
        write_fits(hdul, path, overwrite=overwrite)
    return hdul


def write_table(table: Table, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a table atomically; the format follows the suffix (fits, xml/vot, ecsv, parquet).

    VOTables are written with BINARY2 serialisation (VOTable 1.3+; it keeps
    nulls): astropy's C TABLEDATA writer corrupts memory on some tables
    (astropy issue 20419, seen here as a segfault writing a 200-row catalogue).
    """
    path = Path(path)
    fmt = _table_format(path)
    if fmt is None:
        raise VanotebookInputError("path", "a .fits, .vot/.xml, .ecsv or .parquet name",
                                   str(path))
    with atomic_path(path, overwrite=overwrite) as tmp:
        if fmt == "parquet":
            _write_parquet(Table(table), tmp)
        elif fmt == "votable":
            table.write(tmp, format=fmt, overwrite=True, tabledata_format="binary2")
        else:
            table.write(tmp, format=fmt, overwrite=True)
    return path


def _write_parquet(table: Table, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    units = table_units(table)
    arrow = pa.Table.from_pandas(table.to_pandas(index=False), preserve_index=False)
    meta = dict(arrow.schema.metadata or {})
    meta[UNITS_KEY] = json.dumps(units).encode()
    meta[b"vanotebook.meta"] = json.dumps(dict(table.meta), default=str).encode()
    pq.write_table(arrow.replace_schema_metadata(meta), path)


def _table_format(path: Path) -> str | None:
    name = path.name.lower()
    if path.is_dir() or name.endswith(".parquet") or name.endswith(".pq"):
        return "parquet"
    if name.endswith(_FITS_SUFFIXES):
        return "fits"
    if name.endswith((".vot", ".xml", ".votable")):
        return "votable"
    if name.endswith(".ecsv"):
        return "ascii.ecsv"
    if name.endswith(".csv"):
        return "ascii.csv"
    if name.endswith(".tsv"):
        return "ascii.tab"
    return None


# ----------------------------------------------------------------------------- images
@dataclass(frozen=True)
class Image:
    """An image with its metadata, as every service receives it.

    Attributes
    ----------
    data : array
        The pixels (numpy, dask or CuPy), in FITS axis order reversed (numpy order).
    wcs : astropy.wcs.WCS
        The full WCS; `celestial` gives the sky part.
    header : astropy.io.fits.Header
        The FITS header the WCS and metadata came from (or one made from them).
    unit : astropy.units.UnitBase or None
        The brightness unit (``BUNIT``).
    beam : Beam or None
        The beam or PSF (``BMAJ``/``BMIN``/``BPA``).
    """

    data: Any
    wcs: WCS
    header: fits.Header
    unit: u.UnitBase | None = None
    beam: Beam | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def celestial(self) -> WCS:
        """The celestial part of the WCS."""
        return self.wcs.celestial

    @property
    def frame(self) -> str:
        """``"icrs"``, ``"fk5"``, ``"galactic"``... of the celestial axes."""
        from astropy.wcs.utils import wcs_to_celestial_frame

        return wcs_to_celestial_frame(self.celestial).name

    @property
    def pixel_scale(self) -> u.Quantity:
        """Pixel side (geometric mean of the two axes) at the reference pixel."""
        from astropy.wcs.utils import proj_plane_pixel_area

        return (np.sqrt(proj_plane_pixel_area(self.celestial)) * u.deg).to(u.arcsec)

    @property
    def pixel_area(self) -> u.Quantity:
        """Pixel solid angle at the reference pixel."""
        return (self.pixel_scale**2).to(u.sr)

    def to_numpy(self, *, plane: bool = False) -> np.ndarray:
        """The pixels as a numpy array in memory (computing dask, copying CuPy to the host).

        With ``plane``, a cube with a single plane is squeezed to 2-D (and a
        cube with several planes raises).
        """
        data = self.data
        if hasattr(data, "compute"):
            data = data.compute()
        if hasattr(data, "get"):  # CuPy
            data = data.get()
        data = np.asarray(data)
        if plane and data.ndim > 2:
            if int(np.prod(data.shape[:-2])) != 1:
                raise VanotebookInputError("image", "a 2-D image (or one plane)", self.data)
            data = data.reshape(data.shape[-2:])
        return data

    def to_hdu(self) -> fits.PrimaryHDU:
        """A FITS primary HDU (computing dask data), its BUNIT and beam those of the image."""
        header = self.header.copy()
        if self.unit is not None:
            try:
                same = parse_unit(header.get("BUNIT")) == self.unit
            except VanotebookInputError:
                same = False
            if not same:  # keep the header's own spelling when it says the same
                header["BUNIT"] = fits_string(self.unit)
        if self.beam is not None and Beam.from_header(header) != self.beam:
            for key, card in self.beam.header_cards().items():
                header[key] = card
        return fits.PrimaryHDU(self.to_numpy(), header)


def _header_from(wcs: WCS, unit=None, beam: Beam | None = None) -> fits.Header:
    header = wcs.to_header(relax=True)  # keeps SIP and other distortion terms
    if unit is not None:
        header["BUNIT"] = fits_string(unit) if hasattr(unit, "to_string") else str(unit)
    if beam is not None:
        for key, card in beam.header_cards().items():
            header[key] = card
    return header


def sky_wcs(header: fits.Header, hdulist: fits.HDUList | None = None) -> WCS:
    """The WCS of a real header, quietly: wcslib's fixes of old cards (RADECSYS,
    dates) are applied as astropy does, without the `FITSFixedWarning` noise;
    with ``hdulist``, lookup-table distortions (CPDIS/D2IM) are read too."""
    import warnings

    from astropy.wcs import FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header, hdulist)


def _from_header(data, header: fits.Header, *, wcs: WCS | None = None, unit=None,
                 beam: Beam | None = None, argument: str) -> Image:
    header = fits.Header(header)
    if data is None:
        raise VanotebookInputError(argument, "an image with data (an HDU with pixels)", data)
    if getattr(data, "ndim", 0) < 2:
        raise VanotebookInputError(argument, "an image of two or more dimensions", data)
    data = native_byteorder(data)  # FITS is big-endian; kernels want native
    if wcs is None:
        try:
            wcs = sky_wcs(header)
        except Exception as exc:
            raise VanotebookInputError(argument, "a header with a valid celestial WCS",
                                       header) from exc
    if not wcs.has_celestial:
        raise VanotebookInputError(argument, "an image with celestial WCS axes",
                                   f"axes {wcs.world_axis_physical_types}")
    if unit is None:
        unit = parse_unit(header.get("BUNIT"), f"{argument} BUNIT")
    if beam is None:
        beam = Beam.from_header(header)
    return Image(data, wcs, header, unit, beam)


def parse_image(image: Any, *, hdu: int | str | None = None, unit: Any = None,
                beam: Beam | None = None, argument: str = "image") -> Image:
    """Turn any accepted form of an image into an `Image`.

    Parameters
    ----------
    image
        A FITS path, an HDU or HDUList, ``(array, WCS)``, ``(array, Header)``,
        `astropy.nddata.NDData`, an `xarray.DataArray` carrying its FITS header
        in ``attrs["header"]``, or an `Image`.
    hdu : int or str, optional
        Which HDU of a path or HDUList; by default the first with image data.
    unit : str or astropy unit, optional
        The pixel unit, overriding ``BUNIT`` (for headers whose ``BUNIT``
        astropy cannot read, such as ``mag E(B-V)``, or that is wrong).
    beam : Beam, optional
        The beam, overriding ``BMAJ``/``BMIN``/``BPA``, AIPS ``HISTORY`` cards
        and a CASA ``BEAMS`` table.
    argument : str
        Name used in error messages.

    Returns
    -------
    Image

    Raises
    ------
    VanotebookInputError
        Naming the accepted forms when ``image`` is none of them.
    """
    if unit is not None:
        unit = parse_unit(unit, "unit")
    if beam is not None and not isinstance(beam, Beam):
        raise VanotebookInputError("beam", "a vanotebook.units.Beam", beam)
    if isinstance(image, Image):
        if unit is None and beam is None:
            return image
        return Image(image.data, image.wcs, image.header, unit or image.unit,
                     beam or image.beam)
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        if not path.is_file():
            raise VanotebookInputError(argument, f"an existing FITS file ({IMAGE_FORMS})",
                                       str(path))
        try:
            with fits.open(path, memmap=False) as hdul:
                return parse_image(hdul, hdu=hdu, unit=unit, beam=beam, argument=argument)
        except OSError as exc:
            raise VanotebookInputError(argument, "a readable FITS file", str(path)) from exc
    if isinstance(image, fits.HDUList):
        if hdu is None:
            hdu = next((i for i, h in enumerate(image)
                        if h.is_image and h.data is not None and h.data.ndim >= 2), None)
            if hdu is None:
                raise VanotebookInputError(argument, "an HDUList with an image HDU", image)
        try:
            chosen = image[hdu]
        except (KeyError, IndexError) as exc:
            raise VanotebookInputError("hdu", f"an HDU of the {len(image)} present", hdu) from exc
        if beam is None and Beam.from_header(chosen.header) is None:
            beam = casa_beam(image, argument=argument)
        if isinstance(chosen, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
            try:  # with the file: lookup-table distortions live in WCSDVARR extensions
                wcs = sky_wcs(chosen.header, image)
            except Exception as exc:
                raise VanotebookInputError(argument, "a header with a valid celestial WCS",
                                           chosen.header) from exc
            return _from_header(chosen.data, chosen.header, wcs=wcs, unit=unit, beam=beam,
                                argument=argument)
        return parse_image(chosen, unit=unit, beam=beam, argument=argument)
    if isinstance(image, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
        return _from_header(image.data, image.header, unit=unit, beam=beam, argument=argument)
    if isinstance(image, tuple) and len(image) == 2:
        data, meta = image
        if isinstance(meta, WCS):
            return _from_header(data, _header_from(meta), wcs=meta, unit=unit, beam=beam,
                                argument=argument)
        if isinstance(meta, fits.Header):
            return _from_header(data, meta, unit=unit, beam=beam, argument=argument)
        raise VanotebookInputError(argument, f"(array, WCS) or (array, Header) ({IMAGE_FORMS})",
                                   f"(array, {type(meta).__name__})")
    from astropy.nddata import NDData

    if isinstance(image, NDData):
        if image.wcs is None:
            raise VanotebookInputError(argument, "NDData with a wcs", image)
        wcs = image.wcs if isinstance(image.wcs, WCS) else WCS(image.meta.get("header"))
        unit = unit or image.unit
        beam = beam or image.meta.get("beam")
        header = fits.Header(image.meta.get("header")) if "header" in image.meta else None
        header = header or _header_from(wcs, unit, beam)
        return _from_header(np.asarray(image.data), header, wcs=wcs, unit=unit, beam=beam,
                            argument=argument)
    if type(image).__name__ == "DataArray" and hasattr(image, "attrs"):
        header = image.attrs.get("header")
        if header is None:
            raise VanotebookInputError(argument, "a DataArray with attrs['header']", image)
        if not isinstance(header, fits.Header):
            header = fits.Header.fromstring(header) if isinstance(header, str) else \
                fits.Header(header)
        return _from_header(image.data, header, unit=unit, beam=beam, argument=argument)
    raise VanotebookInputError(argument, IMAGE_FORMS, image)


def casa_beam(hdul: fits.HDUList, *, argument: str = "image") -> Beam | None:
    """The beam of a CASA ``BEAMS`` table (one per channel and Stokes), or None.

    One beam for every plane is returned as a `Beam`; planes with different
    beams are refused (convolve them to a common beam first, e.g. with
    spectral-cube's ``convolve_to``), never averaged quietly.
    """
    if "BEAMS" not in hdul:
        return None
    table = hdul["BEAMS"]
    names = [n.upper() for n in table.columns.names]
    if not {"BMAJ", "BMIN", "BPA"} <= set(names) or table.data is None or not len(table.data):
        raise VanotebookInputError(argument, "a BEAMS table with BMAJ, BMIN and BPA rows",
                                   f"columns {names}")
    values = {}
    for key in ("BMAJ", "BMIN", "BPA"):
        col = table.columns[names.index(key)]
        unit = parse_unit(col.unit or ("arcsec" if key != "BPA" else "deg"), f"BEAMS {key}")
        values[key] = (np.asarray(table.data[col.name], float) * unit).to(u.deg)
    distinct = {(round(a.value, 12), round(b.value, 12), round(c.value, 9))
                for a, b, c in zip(values["BMAJ"], values["BMIN"], values["BPA"], strict=True)}
    if len(distinct) > 1:
        raise VanotebookInputError(
            argument, "one beam for every plane (convolve to a common beam first)",
            f"{len(distinct)} different beams in its BEAMS table")
    bmaj, bmin, bpa = (values[k][0] for k in ("BMAJ", "BMIN", "BPA"))
    header = fits.Header({"BMAJ": bmaj.value, "BMIN": bmin.value, "BPA": bpa.value})
    return Beam.from_header(header)


def parse_images(images: Any, *, argument: str = "images") -> list[Image]:
    """Parse a list of images, or a glob pattern / folder of FITS files, into `Image` objects.

    An `~astropy.io.fits.HDUList` is one image (its first image HDU), as a
    FITS path is, not a list of HDUs.
    """
    if isinstance(images, fits.HDUList):
        return [parse_image(images, argument=argument)]
    if isinstance(images, str | os.PathLike):
        text = str(images)
        if Path(text).is_dir():
            paths = sorted(p for p in Path(text).iterdir() if p.name.lower().endswith(
                _FITS_SUFFIXES))
        elif any(ch in text for ch in "*?["):
            paths = sorted(Path(p) for p in _glob.glob(text))
        else:
            paths = [Path(text)]
        if not paths:
            raise VanotebookInputError(argument, "a pattern or folder matching FITS files", text)
        images = paths
    if isinstance(images, Sequence | Iterator) and not isinstance(images, tuple | str):
        items = list(images)
        if not items:
            raise VanotebookInputError(argument, "at least one image", items)
        return [parse_image(im, argument=f"{argument}[{i}]") for i, im in enumerate(items)]
    return [parse_image(images, argument=argument)]


# ----------------------------------------------------------------------------- catalogues
def read_catalogue(path: str | os.PathLike, *, lazy: bool = False):
    """Read a FITS, VOTable, ECSV or parquet catalogue (or parquet folder).

    Returns an astropy `Table` with units, or a dask DataFrame when ``lazy``
    (parquet only; `parquet_units` gives its column units).
    """
    path = Path(path)
    fmt = _table_format(path)
    if not path.exists() or fmt is None:
        raise VanotebookInputError("path", f"an existing catalogue file ({CATALOGUE_FORMS})",
                                   str(path))
    if fmt != "parquet":
        if lazy:
            raise VanotebookInputError("lazy", "False for non-parquet files", lazy)
        return Table.read(path, format=fmt)
    import pyarrow.dataset as ds

    if lazy:
        import dask.dataframe as dd

        return dd.read_parquet(str(path))
    dataset = ds.dataset(path, format="parquet")
    meta = dataset.schema.metadata or {}
    units = json.loads(meta.get(UNITS_KEY, b"{}"))
    table = arrow_to_table(dataset.to_table())
    for name, unit in units.items():
        if name in table.colnames:
            table[name].unit = unit
    if b"vanotebook.meta" in meta:
        table.meta.update(json.loads(meta[b"vanotebook.meta"]))
    return table


def arrow_to_table(arrow: Any) -> Table:
    """An astropy Table from a pyarrow Table: nulls are masked, never ``None`` objects.

    A numeric column with nulls becomes a masked column of its own type (so
    `masked_as_nan` and the coordinate checks see missing values), not a
    column of Python objects. A fixed-size list of numbers without nulls (a
    spectrum per row) becomes a 2-D column.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    from astropy.table import MaskedColumn

    columns = {}
    for name, col in zip(arrow.column_names, arrow.columns, strict=True):
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if pa.types.is_fixed_size_list(col.type) and not col.null_count and \
                not col.flatten().null_count and (pa.types.is_integer(col.type.value_type) or
                                                  pa.types.is_floating(col.type.value_type)):
            flat = col.flatten().to_numpy(zero_copy_only=False)
            columns[name] = flat.reshape(len(col), col.type.list_size)
        elif col.null_count:
            mask = np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), bool)
            if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or \
                    pa.types.is_boolean(col.type):
                fill = False if pa.types.is_boolean(col.type) else 0
                values = pc.fill_null(col, fill).to_numpy(zero_copy_only=False)
            else:
                values = np.asarray(pc.fill_null(col.cast(pa.string()), "").to_numpy(
                    zero_copy_only=False), dtype=str)
            columns[name] = MaskedColumn(values, mask=mask)
        else:
            columns[name] = col.to_numpy(zero_copy_only=False)
    return Table(columns)


def parquet_units(path: str | os.PathLike) -> dict[str, str]:
    """Column units recorded in a parquet file (or folder) written by vanotebook."""
    import pyarrow.dataset as ds

    meta = ds.dataset(Path(path), format="parquet").schema.metadata or {}
    return json.loads(meta.get(UNITS_KEY, b"{}"))


def parse_catalogue(catalogue: Any, *, ra: str = "ra", dec: str = "dec",
                    lazy: bool = False, argument: str = "catalogue"):
    """Turn any accepted form of a catalogue into a Table (or dask DataFrame) and check it.

    Parameters
    ----------
    catalogue
        An astropy Table/QTable, a pandas or dask DataFrame, or a path to a
        FITS, VOTable, ECSV or parquet file (or a folder of parquet files).
    ra, dec : str
        Names of the coordinate columns, in degrees.
    lazy : bool
        Read parquet as a dask DataFrame instead of into memory.

    Returns
    -------
    astropy.table.Table or dask.dataframe.DataFrame
        A Table for in-memory input; dask input (or ``lazy`` parquet) stays lazy.
    """
    if isinstance(catalogue, str | os.PathLike):
        catalogue = read_catalogue(catalogue, lazy=lazy)
    module = type(catalogue).__module__
    if module.startswith("dask"):
        columns = list(catalogue.columns)
        _check_columns(columns, ra, dec, argument)
        return catalogue
    if module.startswith("pandas") and type(catalogue).__name__ == "DataFrame":
        units = catalogue.attrs.get("units", {})
        catalogue = Table.from_pandas(catalogue, units=units)
    if isinstance(catalogue, QTable):
        catalogue = Table(catalogue)
    if not isinstance(catalogue, Table):
        raise VanotebookInputError(argument, CATALOGUE_FORMS, catalogue)
    _check_columns(catalogue.colnames, ra, dec, argument)
    return coordinates_in_degrees(catalogue, ra, dec)


def guess_coordinates(columns: Sequence[str]) -> tuple[str | None, str | None]:
    """The RA and Dec column names among ``columns``, by the usual names, or ``(None, None)``.

    ``ra``/``dec``, VizieR's ``RAJ2000``/``DEJ2000`` and ``_RAJ2000``/``_DEJ2000``,
    SExtractor's ``ALPHA_J2000``/``DELTA_J2000``, ``RA_ICRS``/``DE_ICRS``,
    ``RAdeg``/``DEdeg`` and the others of `COORDINATE_NAMES`, in any case; the
    first pair present wins. Whether the values are degrees or sexagesimal is
    `coordinates_in_degrees`'s business.
    """
    lower = {str(c).lower(): str(c) for c in columns}
    for ra, dec in COORDINATE_NAMES:
        if ra in lower and dec in lower:
            return lower[ra], lower[dec]
    return None, None


def _check_columns(columns: Sequence[str], ra: str, dec: str, argument: str) -> None:
    for arg, name in (("ra", ra), ("dec", dec)):
        if name not in columns:
            shown = ", ".join(map(str, list(columns)[:20]))
            raise VanotebookInputError(
                arg, f"a column of {argument} (columns: {shown})", name
            )


def table_units(table: Table) -> dict[str, str]:
    """Column units of a Table as strings (for parquet metadata or DataFrame attrs)."""
    return {c: str(table[c].unit) for c in table.colnames if table[c].unit is not None}
