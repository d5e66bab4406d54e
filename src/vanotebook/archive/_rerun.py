"""Ingestions remade from their records, into another archive (`vanotebook.provenance.rerun`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..provenance import Provenance, inputs_on_disk, reproducible
from ._archive import Archive


def _unique(paths: list[Path]) -> list[Path]:
    return list(dict.fromkeys(paths))


@reproducible("vanotebook.archive.add_images", with_record=True)
def add_images_again(output: str | Path, record: Provenance, *, survey: Any = None,
                     band: Any = None, unit: Any = None, source: Any = None) -> Provenance:
    """Index the recorded image files in the archive at ``output``."""
    paths = _unique(inputs_on_disk(record))
    archive = Archive(output)
    done = archive.add_images(paths, survey=survey, band=band, unit=unit, source=source)
    return archive.provenance(ingest=done.meta["ingest_id"])


@reproducible("vanotebook.archive.add_catalogue", with_record=True)
def add_catalogue_again(output: str | Path, record: Provenance, *, name: str, ra: str,
                        dec: str, epoch: Any = None, order: int | None = None,
                        max_rows: int | None = None, source: str = "files",
                        band: Any = None, wavelength_m: Any = None) -> Provenance:
    """Add the recorded catalogue files as ``name`` to the archive at ``output``."""
    import astropy.units as u

    paths = _unique(inputs_on_disk(record))
    archive = Archive(output)
    wavelength = None if wavelength_m is None else tuple(w * u.m for w in wavelength_m)
    archive.add_catalogue(name, paths[0] if len(paths) == 1 else paths, ra=ra, dec=dec,
                          epoch=epoch, order=order, max_rows=max_rows, band=band or None,
                          wavelength=wavelength, overwrite=True)
    return archive.provenance(name)


@reproducible("vanotebook.archive.write_catalogue_hips", with_record=True)
def catalogue_hips_again(output: str | Path, record: Provenance, *, catalogue: str,
                         archive: str | None = None, n_rows: int | None = None,
                         **options: Any) -> Provenance:
    """Write the recorded catalogue's HiPS again at ``output``."""
    from ..provenance import Provenance as _Provenance
    from ._hips import write_catalogue_hips

    inputs_on_disk(record)
    source: Any = Archive(archive, create=False).catalogue(catalogue) if archive else catalogue
    done = write_catalogue_hips(source, output, **options)
    return _Provenance.read(Path(done) / "provenance.json")
