"""The demo data set: every survey's tiles and truth, catalogue pairs and spectra.

`demo_sky` holds it in memory; `write_demo_data` writes it to a folder
(FITS, parquet, ECSV) with a ``manifest.json`` and a provenance record, and
`read_spectra` loads the spectra back.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from astropy.io import fits

from .._errors import VanotebookInputError
from ..io import atomic_dir, atomic_path, write_fits, write_table
from ..provenance import Provenance, record, reproducible, sha256_file
from ._catalogues import CataloguePair, catalogue_pair
from ._model import DEFAULT_CENTER, SkyModel, make_sky
from ._spectra import SpectraSet, make_spectra
from ._surveys import SURVEYS, Observation, observe

__all__ = ["SKY_VERSION", "DemoSky", "demo_sky", "read_spectra", "write_demo_data",
           "write_spectra"]

ACTIVITY = "vanotebook.sky.write_demo_data"
#: The sky model's version, in the demo data's manifest: cached demo data of another
#: version are written again (2: radio galaxies added).
SKY_VERSION = 2
_PARTS = ("model", "surveys", "catalogues", "spectra", "cubes")


def _derived_seed(seed: int, part: str) -> int:
    """A seed for one part of the demo, derived from the user's seed and the part's name."""
    return int(np.random.SeedSequence([seed, _PARTS.index(part)]).generate_state(1)[0])


@dataclass
class DemoSky:
    """The demo data held in memory; parts are made on first use.

    Parameters
    ----------
    seed : int
    size : float
        Side of the field in degrees.
    center : (float, float)
        ICRS field centre in degrees.
    n_catalogue : int
        Rows of the left cross-match catalogue (the right one has as many).
    n_spectra : int or None
        Number of spectra; None gives the Gaia XP validation set's 163,919.
    """

    seed: int = 0
    size: float = 1.0
    center: tuple[float, float] = DEFAULT_CENTER
    n_catalogue: int = 200_000
    n_spectra: int | None = None
    _observations: dict[str, Observation] = field(default_factory=dict, repr=False)

    @cached_property
    def model(self) -> SkyModel:
        """The sky model with the truth of every source."""
        return make_sky(tuple(self.center), self.size, seed=_derived_seed(self.seed, "model"))

    def observe(self, survey: str) -> Observation:
        """One survey's tiles, truth and offsets (cached)."""
        if survey not in self._observations:
            self._observations[survey] = observe(self.model, survey,
                                                 seed=_derived_seed(self.seed, "surveys"))
        return self._observations[survey]

    def images(self, survey: str) -> list:
        """The survey's tiles as FITS HDULists."""
        return self.observe(survey).tiles

    @cached_property
    def catalogues(self) -> CataloguePair:
        """The cross-match catalogue pair, centred on the field and covering it."""
        return catalogue_pair(self.n_catalogue, center=tuple(self.center),
                              radius=self.size / np.sqrt(2),
                              seed=_derived_seed(self.seed, "catalogues"))

    @cached_property
    def spectra(self) -> SpectraSet:
        """The labelled spectra set."""
        return make_spectra(self.n_spectra, seed=_derived_seed(self.seed, "spectra"))


def demo_sky(seed: int = 0, *, size: float = 1.0, center: tuple[float, float] = DEFAULT_CENTER,
             n_catalogue: int = 200_000, n_spectra: int | None = None) -> DemoSky:
    """The demo sky in memory (see `DemoSky`)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise VanotebookInputError("seed", "a non-negative integer", seed)
    return DemoSky(seed, size, tuple(center), n_catalogue, n_spectra)


def write_spectra(spectra: SpectraSet, path: str | os.PathLike, *,
                  overwrite: bool = False) -> Path:
    """Write a spectra set to parquet: flux as fixed-size float32 lists, wavelength in metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, m = spectra.flux.shape
    cols = {
        "source_id": pa.array(spectra.source_id), "label": pa.array(spectra.label.astype(str)),
        "teff": pa.array(spectra.teff), "teff2": pa.array(spectra.teff2),
        "extinction": pa.array(spectra.extinction),
    }
    for name in ("flux", "flux_error"):
        values = pa.array(np.ascontiguousarray(getattr(spectra, name), np.float32).ravel())
        cols[name] = pa.FixedSizeListArray.from_arrays(values, m)
    table = pa.table(cols).replace_schema_metadata({
        b"vanotebook.wavelength_nm": json.dumps(spectra.wavelength.tolist()).encode(),
        b"vanotebook.units": json.dumps({"teff": "K", "teff2": "K", "extinction": "mag",
                                         "wavelength": "nm"}).encode(),
    })
    with atomic_path(path, overwrite=overwrite) as tmp:
        pq.write_table(table, tmp, row_group_size=max(1, min(n, 65536)))
    return Path(path)


def read_spectra(path: str | os.PathLike) -> SpectraSet:
    """Read a spectra set written by `write_spectra`."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise VanotebookInputError("path", "an existing spectra parquet file", str(path))
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if b"vanotebook.wavelength_nm" not in meta:
        raise VanotebookInputError("path", "a parquet file written by write_spectra", str(path))
    wavelength = np.array(json.loads(meta[b"vanotebook.wavelength_nm"]))

    def matrix(name: str) -> np.ndarray:
        col = table.column(name).combine_chunks()
        return col.values.to_numpy().reshape(len(col), len(wavelength))

    return SpectraSet(
        wavelength, matrix("flux"), matrix("flux_error"),
        table.column("label").to_numpy(zero_copy_only=False).astype(str),
        table.column("teff").to_numpy(), table.column("teff2").to_numpy(),
        table.column("extinction").to_numpy(), table.column("source_id").to_numpy(),
    )


@reproducible(ACTIVITY)
def write_demo_data(
    output: str | os.PathLike,
    *,
    seed: int = 0,
    size: float = 1.0,
    center: Sequence[float] = DEFAULT_CENTER,
    surveys: Sequence[str] | None = None,
    n_catalogue: int = 200_000,
    n_spectra: int | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
    archive: bool = True,
) -> Provenance:
    """Write the demo data set to a folder.

    The layout is ``images/<survey>/<survey>_tile<k>.fits``,
    ``truth/<survey>_sources.ecsv``, ``truth/<survey>_offsets.ecsv``,
    ``truth/sky_model.ecsv``, ``catalogues/left.parquet`` and
    ``catalogues/right.parquet`` (truth column ``truth_left_id``),
    ``spectra/spectra.parquet``, ``cubes/co.fits`` and ``cubes/hi.fits`` (line cubes,
    `vanotebook.sky._cubes`) with ``truth/<cube>_moments.fits``, then
    ``manifest.json`` (every file with its size and sha256) and ``provenance.json``.
    The folder is built under a temporary name and renamed at the end, so a
    failure leaves nothing.

    Parameters
    ----------
    output : path
        The folder to create.
    seed : int
        Seeds everything; the same seed writes the same bytes.
    size : float
        Side of the image field in degrees.
    center : (float, float)
        ICRS centre of the field in degrees.
    surveys : list of str, optional
        Survey keys (default: all of `SURVEYS`).
    n_catalogue : int
        Rows in each cross-match catalogue.
    n_spectra : int, optional
        Spectra to write (default 163,919, the Gaia XP validation set's size).
    overwrite : bool
        Replace an existing folder.
    progress : callable, optional
        Called with a message before each step.
    archive : bool
        Also build ``archive/``, a `vanotebook.archive.Archive` indexing the
        images and holding the ``left``/``right`` catalogues, so a first query
        works offline. It is derived from the files above and is not listed in
        the manifest.

    Returns
    -------
    Provenance
        The record, also written to ``provenance.json``.
    """
    output = Path(output)
    surveys = list(SURVEYS) if surveys is None else list(surveys)
    for key in surveys:
        if key not in SURVEYS:
            raise VanotebookInputError("surveys", f"keys among {tuple(SURVEYS)}", key)
    say = progress or (lambda _msg: None)
    params = {"size": float(size), "center": [float(c) for c in center], "surveys": surveys,
              "n_catalogue": int(n_catalogue), "n_spectra": n_spectra}
    sky = demo_sky(seed, size=size, center=tuple(center), n_catalogue=n_catalogue,
                   n_spectra=n_spectra)
    files: list[dict] = []

    def add(path: Path, kind: str, description: str, **extra) -> None:
        files.append({"path": path.relative_to(tmp).as_posix(), "kind": kind,
                      "description": description, "bytes": path.stat().st_size,
                      "sha256": sha256_file(path), **extra})

    with atomic_dir(output, overwrite=overwrite) as tmp:
        with record(ACTIVITY, params, seed=seed) as prov:
            say("sky model")
            model_path = write_table(_model_table(sky.model), tmp / "truth" / "sky_model.ecsv")
            add(model_path, "truth", "every source of the sky model (ICRS, reference fluxes)")
            for key in surveys:
                t0 = time.perf_counter()
                obs = sky.observe(key)
                for k, hdul in enumerate(obs.tiles):
                    prov_tile = Provenance(ACTIVITY, params, seed=seed, started="", host="")
                    prov_tile.attach(hdul)
                    path = write_fits(hdul, tmp / "images" / key / f"{key}_tile{k}.fits")
                    add(path, "image", f"{obs.survey.name}, tile {k}", survey=key)
                add(write_table(obs.truth, tmp / "truth" / f"{key}_sources.ecsv"), "truth",
                    f"{key}: every source with its flux and peak in {obs.survey.unit}",
                    survey=key)
                add(write_table(obs.offsets, tmp / "truth" / f"{key}_offsets.ecsv"), "truth",
                    f"{key}: background offset of every tile", survey=key)
                say(f"{key}: {len(obs.tiles)} tiles in {time.perf_counter() - t0:.1f} s")
            say(f"catalogues: 2 x {n_catalogue:,} rows")
            for side, path in sky.catalogues.write(tmp / "catalogues").items():
                add(path, "catalogue", f"{side} cross-match catalogue", side=side)
            say("spectra")
            path = write_spectra(sky.spectra, tmp / "spectra" / "spectra.parquet")
            add(path, "spectra", f"{len(sky.spectra):,} labelled Gaia-XP-like spectra")
            say("line cubes")
            from ._cubes import demo_cubes

            cubes = demo_cubes(_derived_seed(seed, "cubes"), center=tuple(center), size=size)
            for name, cube in cubes.items():
                hdul = fits.HDUList([cube.hdu])
                Provenance(ACTIVITY, params, seed=seed, started="", host="").attach(hdul)
                add(write_fits(hdul, tmp / "cubes" / f"{name}.fits"), "cube",
                    cube.description, cube=name)
                add(write_fits(cube.truth_hdul(), tmp / "truth" / f"{name}_moments.fits"),
                    "truth", f"{name}: the noise-free moment 0, 1, 2 and peak maps", cube=name)
            manifest = {"activity": ACTIVITY, "seed": seed, "parameters": params,
                        "sky_version": SKY_VERSION, "files": files}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            for item in files:
                prov.outputs.append({"path": item["path"], "sha256": item["sha256"]})
            prov.add_output(tmp / "manifest.json")
            prov.outputs[-1]["path"] = "manifest.json"
        (tmp / "provenance.json").write_text(prov.to_json())
        if archive:
            say("archive")
            _build_archive(tmp)
    return prov


def _stale(folder: Path) -> bool:
    """The demo data in ``folder`` were written by an older sky model (or are incomplete)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return True
    return manifest.get("sky_version") != SKY_VERSION


def demo_archive(*, progress: Callable[[str], None] | None = None):
    """The shared archive, writing the demo sky's first when there is none.

    The gateway's configured shared archive (``$VANOTEBOOK_SHARED_ARCHIVE``)
    is opened as it is; otherwise the demo sky and its archive are written to
    `vanotebook.archive.demo_folder` when missing or written by an older sky
    model (`SKY_VERSION`; a few seconds, no download) and opened.

    Parameters
    ----------
    progress : callable, optional
        Called with a message before each step of the writing.

    Returns
    -------
    vanotebook.archive.Archive
    """
    import os

    from ..archive import SHARED_ENV, demo_folder, shared_archive

    folder = demo_folder()
    if not os.environ.get(SHARED_ENV) and (not (folder / "archive").is_dir() or _stale(folder)):
        write_demo_data(folder, overwrite=folder.exists(), progress=progress)
    return shared_archive()


def _build_archive(folder: Path) -> None:
    """Index the written images and catalogues in ``folder/archive``."""
    from ..archive import Archive

    arc = Archive(folder / "archive")
    arc.add_images(sorted((folder / "images").rglob("*.fits")))
    for cube in sorted((folder / "cubes").glob("*.fits")):  # found by velocity= queries
        arc.add_images(cube, survey=f"{cube.stem}-cube", band=cube.stem)
    for side in ("left", "right"):
        path = folder / "catalogues" / f"{side}.parquet"
        if path.is_file():
            arc.add_catalogue(side, path, epoch="epoch")


def _model_table(model: SkyModel):
    table = model.sources.copy()
    table.meta.update({"center_ra": model.center[0], "center_dec": model.center[1],
                       "size_deg": model.size})
    return table
