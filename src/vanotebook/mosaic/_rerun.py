"""Rerun adapters of the mosaicking service (imported by `vanotebook.provenance.rerun`).

Each takes the output path, the record and the recorded parameters, remakes the product
from the recorded input files and returns the new `Provenance`. A product made from
images in memory, or from files that are gone or changed, is refused by name.
"""

from __future__ import annotations

from pathlib import Path

from .._errors import VanotebookInputError
from ..provenance import Provenance, reproducible, sha256_file

__all__ = ["input_files"]


def input_files(record: Provenance, images) -> list[str]:
    """The recorded input paths, checked: all on disk, unchanged (same sha256)."""
    if not images or any(p is None for p in images):
        raise VanotebookInputError(
            "record", f"a {record.activity} product made from FITS files on disk",
            "a record with inputs that were in memory")
    missing = [p for p in images if not Path(p).is_file()]
    if missing:
        raise VanotebookInputError("record", "a record whose input files still exist",
                                   f"missing: {missing[:5]}")
    recorded = [item["sha256"] for item in record.inputs]
    for path, sha in zip(images, recorded, strict=False):
        if sha256_file(path) != sha:
            raise VanotebookInputError("record", "input files unchanged since the product "
                                       "was made (same sha256)", f"{path} changed")
    return list(images)


@reproducible("vanotebook.mosaic.mosaic", with_record=True)
def _mosaic(output, record: Provenance, *, images, wcs, shape, frame, combine, weights,
            match_background, method, tolerance, unit, chunks) -> Provenance:
    from astropy.io import fits

    from ._core import mosaic

    paths = input_files(record, images)
    if weights == "maps":
        raise VanotebookInputError("record", "a mosaic made without weight maps (they are "
                                   "not recorded)", "weights='maps'")
    from astropy.wcs import WCS

    grid = wcs if wcs == "optimal" else fits.Header.fromstring(wcs)
    if shape is not None and not isinstance(grid, str):
        grid = WCS(grid)
    ds = mosaic(paths, wcs=grid, shape=None if shape is None else tuple(shape), frame=frame,
                combine=combine, weights=weights, match_background=match_background,
                method=method, tolerance=tolerance, unit=unit, chunks=chunks, output=output)
    return Provenance.from_dict(ds.attrs["provenance"])


# ---------------------------------------------------------- homogenise, cutouts, to_hips
def _beam_param(resolution, resolution_beam=None):
    """``resolution`` as recorded ("coarsest", None, or a beam as [major", minor", pa deg])."""
    import astropy.units as u

    from ..units import Beam

    if resolution_beam is not None:
        major, minor, pa = resolution_beam
        return Beam(major * u.arcsec, minor * u.arcsec, pa * u.deg)
    if isinstance(resolution, list):
        return _beam_param(None, resolution)
    return resolution


def _recorded_images(images, activity: str):
    """The recorded input paths (a path, or {survey: [paths]}), refusing a product made
    from data in memory or whose files are gone."""
    from pathlib import Path

    from .._errors import VanotebookInputError

    if images is None:
        raise VanotebookInputError("record", f"a {activity} product made from FITS files",
                                   "a record without input paths (its inputs were in memory)")
    paths = [images] if isinstance(images, str) else [p for g in images.values() for p in g]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise VanotebookInputError("record", "a record whose input files still exist",
                                   f"missing: {missing[:5]}")
    return images


@reproducible("vanotebook.mosaic.homogenise")
def _rerun_homogenise(output, *, images, grid="optimal", shape=None, frame=None,
                      pixel_scale=None, resolution="coarsest", resolution_beam=None,
                      unit="MJy/sr", match_background=True, method="bilinear") -> Provenance:
    """Remake a homogenised set (`homogenise(..., output=)`) from its record."""
    import astropy.units as u
    from astropy.io import fits

    from ._homogenise import homogenise

    images = _recorded_images(images, "homogenise")
    out = homogenise(images, grid=grid if grid == "optimal" else fits.Header.fromstring(grid),
                     shape=shape, frame=frame,
                     pixel_scale=None if pixel_scale is None else pixel_scale * u.arcsec,
                     resolution=_beam_param(resolution, resolution_beam), unit=unit,
                     match_background=match_background, method=method, output=output)
    return Provenance.from_dict(out.attrs["provenance"])


@reproducible("vanotebook.mosaic.cutouts")
def _rerun_cutouts(output, *, images, positions, size, pixel_scale=2.0, frame="icrs",
                   resolution="coarsest", unit="MJy/sr", match_background=False,
                   method="bilinear", device="auto") -> Provenance:
    """Remake a folder of cutouts (`cutouts(..., output=)`) from its record."""
    from pathlib import Path

    import astropy.units as u
    from astropy.table import Table

    from ._cutout import cutouts

    images = _recorded_images(images, "cutouts")
    table = Table(rows=[tuple(p) for p in positions], names=("ra", "dec")) if positions \
        else Table({"ra": [], "dec": []})
    cutouts(images, table, size * u.arcsec, output=output, pixel_scale=pixel_scale * u.arcsec,
            frame=frame, resolution=_beam_param(resolution), unit=unit,
            match_background=match_background, method=method, device=device)
    return Provenance.read(Path(output) / "provenance.json")


@reproducible("vanotebook.mosaic.to_hips")
def _rerun_to_hips(output, *, image, order, tile_width=512, formats=("fits", "png"),
                   interpolation="bilinear", stretch="linear", cut=None, frame="icrs",
                   title=None, creator_did=None) -> Provenance:
    """Remake a HiPS folder (`to_hips`) from its record (``provenance.json``)."""
    from ._hips import to_hips

    image = _recorded_images(image, "to_hips")
    h = to_hips(image, output, order=order, tile_width=tile_width, formats=tuple(formats),
                interpolation=interpolation, stretch=stretch,
                cut=None if cut is None else tuple(cut), frame=frame, title=title,
                creator_did=creator_did)
    return Provenance.from_dict(h.provenance)


@reproducible("vanotebook.mosaic.mosaic_cube", with_record=True)
def _mosaic_cube(output, record: Provenance, *, cubes, velocity, wcs, shape, frame, combine,
                 method, tolerance, chunks) -> Provenance:
    """A cube mosaic, remade and written to ``output`` with `to_fits` (as it was saved)."""
    import astropy.units as u
    from astropy.io import fits
    from astropy.wcs import WCS

    from ..io import write_dataset
    from ._core import mosaic_cube

    paths = input_files(record, cubes)
    grid = wcs if wcs == "optimal" else fits.Header.fromstring(wcs)
    if shape is not None and not isinstance(grid, str):
        grid = WCS(grid)
    ds = mosaic_cube(paths, velocity=tuple(v * u.km / u.s for v in velocity), wcs=grid,
                     shape=None if shape is None else tuple(shape), frame=frame,
                     combine=combine, method=method, tolerance=tolerance, chunks=chunks)
    write_dataset(ds, output)
    new = Provenance.from_dict(ds.attrs["provenance"])
    new.outputs.append({"path": str(output), "sha256": sha256_file(output)})
    return new
