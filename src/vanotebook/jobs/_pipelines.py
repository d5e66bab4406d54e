"""Every service as a pipeline of the job service, declared once.

Each ``_name(params, work, say)`` takes the parsed parameters (file
parameters already read by `Pipeline.resolve`), a folder for its results and
a progress callback, calls the service's public API and returns its result
files by name. The declarations below are what the UWS service, its
documentation page, the Jobs tab's form and the client read.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._registry import Param, Pipeline, register

Say = Callable[[str], None]

__all__: list[str] = []


def _fraction(say: Say, what: str) -> Callable[[float], None]:
    """A services' ``progress`` callable (fraction done) that reports in whole percent."""
    last = [-1]

    def report(fraction: float) -> None:
        pct = int(100 * float(fraction))
        if pct != last[0]:
            last[0] = pct
            say(f"{what}: {pct}%")

    return report


def _arcsec(value: float | None):
    import astropy.units as u

    return None if value is None else value * u.arcsec


def _provenance(product: Path, out: dict[str, Path]) -> dict[str, Path]:
    """``out`` with the product's record as PROV-JSON (its sidecar, or from its FITS)."""
    prov = Path(f"{product}.prov.json")
    if not prov.exists() and product.suffix == ".fits":
        from ..provenance import Provenance

        try:
            prov = Provenance.read(product).write_sidecar(product)
        except Exception:  # a product without a record: say nothing rather than guess
            return out
    if prov.exists():
        out["provenance"] = prov
    return out


def _by_survey(params: dict[str, Any]) -> dict[str, list]:
    """The images grouped by survey: ``surveys`` names each image's, in order."""
    from .._errors import VanotebookInputError

    images = params["images"]
    names = [n.strip() for n in (params.get("surveys") or "").split(",") if n.strip()]
    if not names:
        return {"images": images}
    if len(names) != len(images):
        raise VanotebookInputError("surveys", f"one survey name per image ({len(images)})",
                                   f"{len(names)} names")
    groups: dict[str, list] = {}
    for name, image in zip(names, images, strict=True):
        groups.setdefault(name, []).append(image)
    return groups


_SURVEYS = Param("str", "the survey of each image, comma-separated in upload order (default: "
                 "all one survey)", None)

# ----------------------------------------------------------------------------- mosaic
_IMAGES = Param("files", "the images: FITS files with a celestial WCS (several uploads under "
                "this name, or an archive query)", required=True)
_FRAME = Param("str", "the frame of the output grid (default: the inputs')", None,
               choices=("icrs", "fk5", "galactic"))
_MATCH = Param("bool", "match the backgrounds of overlapping images", True)


def _mosaic(params: dict[str, Any], work: Path, say: Say) -> dict[str, Path]:
    import vanotebook

    say(f"mosaicking {len(params['images'])} images")
    out = work / "mosaic.fits"
    vanotebook.mosaic(params["images"], frame=params["frame"], combine=params["combine"],
                      match_background=params["match_background"], method=params["method"],
                      unit=params["unit"] or None, output=out,
                      progress=_fraction(say, "mosaicking"))
    return _provenance(out, {"mosaic": out})


register(Pipeline(
    name="mosaic",
    doc="Merge images onto one grid (vanotebook.mosaic): reprojected, background-matched, "
        "co-added.",
    params={
        "images": _IMAGES,
        "frame": _FRAME,
        "combine": Param("str", "how overlapping pixels combine", "mean",
                         choices=("mean", "median", "sum", "first", "last", "count")),
        "match_background": _MATCH,
        "method": Param("str", "the interpolation", "bilinear",
                        choices=("bilinear", "nearest", "flux-conserving")),
        "unit": Param("str", "the output unit (default: the inputs')", None),
    },
    results={"mosaic": "the mosaic, its WEIGHT and COVERAGE (FITS)",
             "provenance": "how it was made (PROV-JSON)"},
    run=_mosaic,
))


def _homogenise(params: dict[str, Any], work: Path, say: Say) -> dict[str, Path]:
    import vanotebook

    resolution = params["resolution"]
    if resolution not in ("coarsest", "none"):
        from .._errors import VanotebookInputError

        try:
            from ..units import Beam

            resolution = Beam.circular(_arcsec(float(resolution)))
        except ValueError as exc:
            raise VanotebookInputError("resolution", "coarsest, none or a FWHM in arcsec",
                                       resolution) from exc
    elif resolution == "none":
        resolution = None
    out = work / "homogenised.fits"
    say(f"homogenising {len(params['images'])} images")
    vanotebook.homogenise(_by_survey(params), frame=params["frame"],
                          pixel_scale=_arcsec(params["pixel_scale"]), resolution=resolution,
                          unit=params["unit"], match_background=params["match_background"],
                          output=out, progress=_fraction(say, "homogenising"))
    return _provenance(out, {"images": out})


register(Pipeline(
    name="homogenise",
    doc="Bring surveys to one grid, one beam and one unit (vanotebook.homogenise).",
    params={
        "images": _IMAGES,
        "surveys": _SURVEYS,
        "frame": _FRAME,
        "pixel_scale": Param("float", "the output pixel (default: the finest input's)", None,
                             "arcsec"),
        "resolution": Param("str", "the common beam: coarsest, none, or a FWHM in arcsec",
                            "coarsest"),
        "unit": Param("str", "the common unit", "MJy/sr"),
        "match_background": _MATCH,
    },
    results={"images": "one HDU per survey, then PROVENANCE (FITS)",
             "provenance": "how it was made (PROV-JSON)"},
    run=_homogenise,
))


def _cutouts(params: dict[str, Any], work: Path, say: Say) -> dict[str, Path]:
    import astropy.units as u
    from astropy.table import Table

    from vanotebook.mosaic import cutouts

    positions = params["positions"]
    if positions is None:
        from .._errors import VanotebookInputError

        if params["ra"] is None or params["dec"] is None:
            raise VanotebookInputError("positions", "a catalogue of positions, or ra and dec",
                                       "neither")
        positions = Table({"ra": [params["ra"]], "dec": [params["dec"]]})
    out = work / "cutouts"
    say("cutting")
    cutouts(_by_survey(params), positions, params["size"] * u.arcmin,
            pixel_scale=_arcsec(params["pixel_scale"]), unit=params["unit"], output=out,
            progress=_fraction(say, "cutting"))
    archive = shutil.make_archive(str(work / "cutouts"), "zip", out)
    return {"cutouts": Path(archive), "provenance": out / "provenance.json"}


register(Pipeline(
    name="cutouts",
    doc="Cutouts of every survey around positions, homogenised (vanotebook.mosaic.cutouts).",
    params={
        "images": _IMAGES,
        "surveys": _SURVEYS,
        "positions": Param("table", "a catalogue with ra/dec columns in degrees", None),
        "ra": Param("float", "one position's right ascension (without positions)", None, "deg"),
        "dec": Param("float", "one position's declination (without positions)", None, "deg"),
        "size": Param("float", "the side of each cutout", 2.0, "arcmin"),
        "pixel_scale": Param("float", "the cutouts' pixel", 2.0, "arcsec"),
        "unit": Param("str", "the common unit", "MJy/sr"),
    },
    results={"cutouts": "cutout_<row>.fits, one HDU per survey, and provenance.json (zip)",
             "provenance": "how they were made (PROV-JSON)"},
    run=_cutouts,
))


# ----------------------------------------------------------------------------- detect
def detect_files(image: Any, work: Path, say: Say, **options: Any) -> dict[str, Path]:
    """Run `vanotebook.detect` on ``image`` and write its result files into ``work``."""
    import vanotebook
    from vanotebook.io import write_table

    say("detecting")
    result = vanotebook.detect(image, progress=_fraction(say, "detecting"), **options)
    say(f"writing {len(result.catalogue)} sources")
    paths = result.write(work / "detect")
    catalogue = write_table(result.catalogue, work / "catalogue.vot")
    out = {"catalogue": catalogue, "regions": paths["regions"], "residual": paths["residual"]}
    prov = next((p for p in (work / "detect").glob("*.prov.json")), None)
    if prov is not None:
        out["provenance"] = prov
    return out


_DETECT = {
    "seed_threshold": Param("float", "peak S/N that seeds a source", 5.0, "sigma"),
    "merge_threshold": Param("float", "S/N down to which a source grows", 2.6, "sigma"),
    "min_pixels": Param("int", "fewest pixels in a source", 5, "pix"),
}


def _detect(params: dict[str, Any], work: Path, say: Say) -> dict[str, Path]:
    return detect_files(params["image"], work, say,
                        **{k: params[k] for k in _DETECT})


register(Pipeline(
    name="detect",
    doc="Compact and extended sources of one image (vanotebook.detect).",
    params={"image": Param("file", "the image: a FITS file with a celestial WCS",
                           required=True), **_DETECT},
    results={"catalogue": "the sources (VOTable)", "regions": "DS9 regions",
             "residual": "the image less the fitted sources (FITS)",
             "provenance": "how it was made (PROV-JSON)"},
    run=_detect,
))


# ----------------------------------------------------------------------------- classify
def _classify(params: dict[str, Any], work: Path, say: Say) -> dict[str, Path]:
    from ..classify import classify, load_model
    from ..io import read_catalogue, write_table
    from ..provenance import Provenance

    model = load_model(params["model"]) if params.get("model") else None
    table = params["catalogue"]
    if not hasattr(table, "colnames"):
        table = read_catalogue(table)
    say(f"classifying {len(table)} sources")
    out = classify(params["image"], table, fwhm_pix=params.get("fwhm_pix"), model=model,
                   progress=_fraction(say, "classifying"))
    meta = out.meta.get("classifier", {})
    prov = Provenance(activity="vanotebook.classify",
                      parameters={"fwhm_pix": params.get("fwhm_pix"),
                                  "classes": meta.get("classes"),
                                  "training": meta.get("training")})
    for name in ("image", "catalogue", "model"):
        value = params.get(name)
        if isinstance(value, str | Path) and Path(value).is_file():
            prov.add_input(value)
    prov.finish()
    path = write_table(out, work / "catalogue.vot")
    return {"catalogue": path, "provenance": prov.write_sidecar(path)}


register(Pipeline(
    name="classify",
    doc="Morphological classes and the real probability of the sources of a catalogue on "
        "an image (vanotebook.classify): p_<class> per class, class, score.",
    params={"image": Param("file", "the image: a FITS file with a celestial WCS",
                           required=True),
            "catalogue": Param("table", "the sources: a table with ra/dec (degrees) or "
                               "x/y (pixels)", required=True),
            "fwhm_pix": Param("float", "the beam FWHM in pixels (default: the image's "
                              "beam)", None, "pix"),
            "model": Param("file", "your own model file (.npz; default: vanotebook's)")},
    results={"catalogue": "the sources with p_<class>, class and score (VOTable)",
             "provenance": "how it was made (PROV-JSON)"},
    run=_classify,
))


# ----------------------------------------------------------------------------- som
def _som(params: dict[str, Any], work: Path, say: Say) -> dict[str, Path]:
    import numpy as np
    from astropy.io import fits

    from vanotebook.som import SOM

    som = SOM((params["rows"], params["columns"]), n_epochs=params["epochs"],
              seed=params["seed"])
    from ..io import read_catalogue

    data = params["spectra"]
    if not hasattr(data, "colnames"):  # a file: read whole, so 2-D (spectrum) columns work
        data = read_catalogue(data)
    features = [c.strip() for c in params["features"].split(",")]
    features = features[0] if len(features) == 1 else features

    def epoch(record: dict) -> None:
        say(f"epoch {record.get('epoch', '?')} of {params['epochs']}")

    som.fit(data, columns=features, nan=params["nan"], progress=epoch)
    out = work / "som.json"
    som.to_guasom(out, data, columns=features)
    maps = work / "maps.fits"
    fits.HDUList([fits.PrimaryHDU(),
                  fits.ImageHDU(np.asarray(som.umatrix(), np.float32), name="UMATRIX"),
                  fits.ImageHDU(np.asarray(som.hits(data, columns=features), np.int32),
                                name="HITS")]).writeto(maps)
    return _provenance(out, {"som": out, "maps": maps})


register(Pipeline(
    name="som",
    doc="A self-organising map of spectra (vanotebook.som.SOM), exported as GUASOM JSON.",
    params={
        "spectra": Param("table", "the spectra: a table (parquet, FITS, VOTable) with a 2-D "
                         "flux column or scalar feature columns", required=True),
        "features": Param("str", "the feature column(s), comma-separated", "flux"),
        "rows": Param("int", "map rows", 16),
        "columns": Param("int", "map columns", 16),
        "epochs": Param("int", "training epochs", 45),
        "seed": Param("int", "the random seed", 0),
        "nan": Param("str", "rows with NaN: raise or drop", "raise", choices=("raise", "drop")),
    },
    results={"som": "the map as GUASOM JSON", "maps": "U-matrix and hits (FITS)",
             "provenance": "how it was made (PROV-JSON)"},
    run=_som,
))


# ----------------------------------------------------------------------------- crossmatch
def match_files(left: Any, right: Any, work: Path, say: Say, *, radius: float,
                how: str = "nearest", ra: str = "ra", dec: str = "dec") -> dict[str, Path]:
    """Cross-match two catalogues and write the pairs (VOTable) and their record."""
    import astropy.units as u

    import vanotebook
    from vanotebook.io import write_table

    def progress(done: int, total: int) -> None:
        say(f"matching: {done} of {total} partitions")

    say("matching")
    pairs = vanotebook.crossmatch(left, right, radius=radius * u.arcsec, how=how, ra=ra,
                                  dec=dec, progress=progress)
    say(f"writing {len(pairs)} pairs")
    out = write_table(pairs, work / "matches.vot")
    prov = pairs.meta.get("provenance")
    if prov:
        from vanotebook.provenance import Provenance

        return {"matches": out, "provenance": Provenance.from_dict(prov).write_sidecar(out)}
    return {"matches": out}


def _crossmatch(params: dict[str, Any], work: Path, say: Say) -> dict[str, Path]:
    return match_files(params["left"], params["right"], work, say, radius=params["radius"],
                       how=params["how"], ra=params["ra"], dec=params["dec"])


register(Pipeline(
    name="crossmatch",
    doc="Pairs of two catalogues within a radius, with a probability each "
        "(vanotebook.crossmatch).",
    params={
        "left": Param("table", "the first catalogue", required=True),
        "right": Param("table", "the second catalogue", required=True),
        "radius": Param("float", "the largest separation", 1.0, "arcsec"),
        "how": Param("str", "which pairs", "nearest", choices=("nearest", "all")),
        "ra": Param("str", "the right-ascension column of both", "ra"),
        "dec": Param("str", "the declination column of both", "dec"),
    },
    results={"matches": "the pairs with separation and probability (VOTable)",
             "provenance": "how it was made (PROV-JSON)"},
    run=_crossmatch,
))


# ----------------------------------------------------------------------------- hips
def _hips(params: dict[str, Any], work: Path, say: Say) -> dict[str, Path]:
    from vanotebook.mosaic import to_hips

    say("writing the HiPS")
    hips = to_hips(params["image"], work / "hips", order=params["order"],
                   title=params["title"] or None, progress=_fraction(say, "tiling"))
    archive = shutil.make_archive(str(work / "hips"), "zip", hips.path)
    return {"hips": Path(archive), "properties": hips.path / "properties"}


register(Pipeline(
    name="hips",
    doc="An image as a HiPS (levels of detail for Aladin; vanotebook.mosaic.to_hips).",
    params={
        "image": Param("file", "the image: a FITS file with a celestial WCS", required=True),
        "order": Param("int", "the deepest order (default: from the pixel scale)", None),
        "title": Param("str", "obs_title of the HiPS", None),
    },
    results={"hips": "the HiPS folder (zip)", "properties": "its properties file"},
    run=_hips,
))


# ----------------------------------------------------------------------------- publish
def save_to_archive(table: Any, name: str, *, description: str = "",
                    overwrite: bool = False) -> str:
    """Add a catalogue to the job owner's own archive; return where it went."""
    from vanotebook.archive import personal_archive

    from ..io import parse_catalogue

    archive = personal_archive()
    archive.add_catalogue(name, parse_catalogue(table), overwrite=overwrite,
                          description=description or None)
    return f"catalogue {name} of {archive.path}"


def _publish(params: dict[str, Any], work: Path, say: Say) -> dict[str, Path]:
    say(f"adding {params['name']} to your archive")
    where = save_to_archive(params["catalogue"], params["name"],
                            description=params["description"], overwrite=params["overwrite"])
    out = work / "published.txt"
    out.write_text(f"{where}\n")
    return {"published": out}


PUBLISH_PARAMS = {
    "catalogue": Param("table", "the catalogue, with ra/dec columns in degrees",
                       required=True),
    "name": Param("str", "its name", required=True),
    "to": Param("str", "where: your own archive", "archive", choices=("archive",)),
    "description": Param("str", "shown with the catalogue", ""),
    "overwrite": Param("bool", "replace an earlier catalogue of this name (yours)", False),
}

register(Pipeline(
    name="publish",
    doc="Put a catalogue into an archive, to query by region like any other.",
    params=PUBLISH_PARAMS,
    results={"published": "where it went"},
    run=_publish,
))


# ----------------------------------------------------------------------------- workflow
def _workflow(params: dict[str, Any], work: Path, say: Say) -> dict[str, Path]:
    from ._registry import PIPELINES

    out: dict[str, Path] = {}
    step = work / "1-mosaic"
    step.mkdir()
    say("1/4 mosaic")
    made = _mosaic({"images": params["images"], "frame": params["frame"], "combine": "mean",
                    "match_background": True, "method": "bilinear", "unit": None},
                   step, lambda m: say(f"1/4 {m}"))
    out["mosaic"] = made["mosaic"]
    out["mosaic_provenance"] = made.get("provenance")
    step = work / "2-detect"
    step.mkdir()
    found = detect_files(str(made["mosaic"]), step, lambda m: say(f"2/4 {m}"),
                         **{k: params[k] for k in _DETECT})
    out.update(catalogue=found["catalogue"], regions=found["regions"],
               detect_provenance=found.get("provenance"))
    step = work / "3-crossmatch"
    step.mkdir()
    matched = match_files(found["catalogue"], params["survey"], step,
                          lambda m: say(f"3/4 {m}"), radius=params["radius"])
    out["matches"] = matched["matches"]
    out["matches_provenance"] = matched.get("provenance")
    if params["publish_name"]:
        step = work / "4-publish"
        step.mkdir()
        published = PIPELINES["publish"].run(
            {"catalogue": found["catalogue"], "name": params["publish_name"],
             "to": params["publish_to"], "description": "sources found by a workflow job",
             "overwrite": True}, step, lambda m: say(f"4/4 {m}"))
        out["published"] = published["published"]
    say("done")
    return {k: v for k, v in out.items() if v is not None}


register(Pipeline(
    name="workflow",
    doc="Mosaic -> detect -> cross-match with a survey catalogue -> publish, in one job.",
    params={
        "images": _IMAGES,
        "frame": _FRAME,
        **_DETECT,
        "survey": Param("table", "the survey catalogue to cross-match the sources with",
                        required=True),
        "radius": Param("float", "the cross-match radius", 2.0, "arcsec"),
        "publish_name": Param("str", "publish the sources under this name (empty: not)", ""),
        "publish_to": Param("str", "where to publish", "archive", choices=("archive",)),
    },
    results={"mosaic": "the mosaic (FITS)", "catalogue": "its sources (VOTable)",
             "regions": "DS9 regions", "matches": "sources x survey pairs (VOTable)",
             "published": "where the sources were published",
             "mosaic_provenance": "PROV-JSON", "detect_provenance": "PROV-JSON",
             "matches_provenance": "PROV-JSON"},
    run=_workflow,
))


# ----------------------------------------------------------------------------- seds
def _sed(params: dict[str, Any], work: Path, say: Say) -> dict[str, Path]:
    import astropy.units as u

    import vanotebook
    from vanotebook.io import write_table
    from vanotebook.sed import build_seds, fit_greybody, sed_arrays

    from .._errors import VanotebookInputError

    bands = [b.strip() for b in params["bands"].split(",") if b.strip()]
    try:
        waves = [float(w) for w in params["wavelengths"].split(",")]
    except ValueError as exc:
        raise VanotebookInputError("wavelengths", "numbers in um, comma-separated",
                                   params["wavelengths"]) from exc
    if not (len(bands) == len(waves) == len(params["images"])):
        raise VanotebookInputError("bands", f"one band name and one wavelength per image "
                                   f"({len(params['images'])})",
                                   f"{len(bands)} names, {len(waves)} wavelengths")
    if params["detect_band"] not in bands and params["sources"] is None:
        raise VanotebookInputError("detect_band", f"one of the bands ({', '.join(bands)})",
                                   params["detect_band"])
    say(f"homogenising {len(bands)} bands")
    maps = vanotebook.homogenise(dict(zip(bands, params["images"], strict=True)),
                                 progress=_fraction(say, "homogenising"))
    sources = params["sources"]
    if sources is None:
        say(f"detecting in {params['detect_band']}")
        sources = vanotebook.detect(maps[params["detect_band"]], extended=False,
                                    classify=False).catalogue
    say("photometry")
    seds = build_seds(sources, images=maps, calibration=params["calibration"],
                      wavelengths={b: w * u.um for b, w in zip(bands, waves, strict=True)})
    flux, err, wl, limits = sed_arrays(seds)
    say(f"fitting {len(seds)} sources")
    fit = fit_greybody(flux, err, wl, distance=params["distance"] * u.pc,
                       upper_limit=limits, model=params["model"], beta=params["beta"])
    for name in ("ra", "dec"):
        fit[name] = seds[name]
    return {"seds": write_table(seds, work / "seds.ecsv"),
            "fit": write_table(fit, work / "fit.vot")}


register(Pipeline(
    name="sed",
    doc="SEDs of compact sources on far-infrared maps brought to one beam, with greybody "
        "fits (vanotebook.sed): temperature, mass, beta, luminosity and their errors.",
    params={
        "images": _IMAGES,
        "bands": Param("str", "the band name of each image, comma-separated in upload order",
                       required=True),
        "wavelengths": Param("str", "the wavelength of each image, comma-separated", None,
                             "um", required=True),
        "sources": Param("table", "the sources (ra/dec in degrees); default: detected in "
                         "detect_band", None),
        "detect_band": Param("str", "the band the sources are found in", "spire250"),
        "distance": Param("float", "the sources' distance", None, "pc", required=True),
        "model": Param("str", "the greybody", "thin", choices=("thin", "thick")),
        "beta": Param("float", "the dust emissivity index (default: fitted)", None),
        "calibration": Param("float", "fractional calibration error of each band", 0.05),
    },
    results={"seds": "per-band fluxes, errors and limits (ECSV)",
             "fit": "temperature, mass, beta, luminosity with errors (VOTable)"},
    run=_sed,
))


# ----------------------------------------------------------------------------- cube
def _velocities(params: dict[str, Any]):
    """The ``(vmin, vmax)`` slab in km/s, both or neither given."""
    import astropy.units as u

    from .._errors import VanotebookInputError

    lo, hi = params["vmin"], params["vmax"]
    if (lo is None) != (hi is None):
        raise VanotebookInputError("vmin", "vmin and vmax both, or neither", (lo, hi))
    return None if lo is None else (lo * u.km / u.s, hi * u.km / u.s)


def _cube(params: dict[str, Any], work: Path, say: Say) -> dict[str, Path]:
    import numpy as np

    from vanotebook.cube import moments, pv_slice

    from .._errors import VanotebookInputError

    orders = [o.strip() for o in params["orders"].split(",") if o.strip()]
    orders = [int(o) if o.lstrip("-").isdigit() else o for o in orders]
    mask = params["mask"]
    if mask not in (None, "auto"):
        try:
            mask = float(mask)
        except ValueError as exc:
            raise VanotebookInputError("mask", "'auto' or a threshold in the cube's unit",
                                       mask) from exc
    velocity = _velocities(params)
    say(f"moments {', '.join(map(str, orders))}")
    out = work / "moments.fits"
    moments(params["cube"], orders, velocity=velocity, mask=mask,
            convention=params["convention"], output=out)
    result = _provenance(out, {"moments": out})
    if params["pv_path"]:
        try:
            xy = np.array([float(v) for v in params["pv_path"].split(",")]).reshape(-1, 2)
        except ValueError as exc:
            raise VanotebookInputError("pv_path", "pixel vertices x1,y1,x2,y2[,...] (0-based)",
                                       params["pv_path"]) from exc
        if len(xy) < 2:
            raise VanotebookInputError("pv_path", "at least two vertices", params["pv_path"])
        say("position-velocity slice")
        pv = pv_slice(params["cube"], xy, width=params["pv_width"], velocity=velocity,
                      convention=params["convention"])
        from astropy.io import fits

        from ..io import write_fits

        header = pv.attrs["header"]
        header = fits.Header.fromstring(header) if isinstance(header, str) else header
        result["pv"] = write_fits(fits.PrimaryHDU(np.asarray(pv.values), fits.Header(header)),
                                  work / "pv.fits")
    return result


register(Pipeline(
    name="cube",
    doc="Moment maps of a spectral-line cube and, along a drawn path, a position-velocity "
        "slice (vanotebook.cube), block by block on the cluster.",
    params={
        "cube": Param("file", "the cube: a FITS file with a spectral axis (velocity, "
                      "frequency or wavelength), or archive:cubes?velocity=vmin,vmax",
                      required=True),
        "orders": Param("str", "the maps, comma-separated: 0,1,2 or CASA names (peak, "
                        "velocity_of_peak, median, linewidth_fwhm, ...)", "0,1,2"),
        "vmin": Param("float", "the slab's lower velocity (with vmax)", None, "km/s"),
        "vmax": Param("float", "the slab's upper velocity (with vmin)", None, "km/s"),
        "mask": Param("str", "voxels that count: all (empty), 'auto' (3 sigma of the noise, "
                      "with neighbouring channels) or a threshold in the cube's unit", None),
        "convention": Param("str", "the Doppler convention (default: the axis's; radio for "
                            "frequency)", None, choices=("radio", "optical", "relativistic")),
        "pv_path": Param("str", "a PV slice along these 0-based pixel vertices "
                         "x1,y1,x2,y2[,...] (empty: none)", None),
        "pv_width": Param("float", "the PV slice's width in pixels", 1.0),
    },
    results={"moments": "the moment maps (FITS, one HDU per map, with PROVENANCE)",
             "pv": "the position-velocity slice (FITS), when pv_path is given",
             "provenance": "how it was made (PROV-JSON)"},
    run=_cube,
))


# ----------------------------------------------------------------------------- sleep
def _nap(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def _sleep(params: dict[str, Any], work: Path, say: Say) -> dict[str, Path]:
    import time

    from ..cluster import get_client

    if params["fail"]:
        from .._errors import VanotebookInputError

        raise VanotebookInputError("fail", "false", True)
    seconds = params["seconds"]
    client = get_client()
    out = work / "slept.txt"
    if client is not None:  # the waiting runs on the cluster, as tasks of 0.5 s
        from distributed import as_completed

        n = max(1, round(seconds / 0.5))
        futures = client.map(_nap, [seconds / n] * n, pure=False)
        for i, _ in enumerate(as_completed(futures, loop=client.loop), 1):
            say(f"{i} of {n} tasks done on the cluster")
        out.write_text(f"slept {seconds} s in {n} tasks on the cluster\n")
        return {"log": out}
    steps = max(1, int(seconds * 10))
    for i in range(steps):
        time.sleep(0.1)
        if i % 10 == 0:
            say(f"{i / 10:.0f} of {seconds:g} s")
    out.write_text(f"slept {seconds} s\n")
    return {"log": out}


register(Pipeline(
    name="sleep",
    doc="Wait a while and report progress: for checking a job service end to end.",
    params={"seconds": Param("float", "how long", 1.0, "s"),
            "fail": Param("bool", "end in ERROR instead (a named error)", False)},
    results={"log": "what it did"},
    run=_sleep,
))
