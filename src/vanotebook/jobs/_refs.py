"""What a job's file parameters point at: uploads, URLs and archive references.

A file parameter's text is one of

* ``upload:<file>[;upload:<file>...]``: parts uploaded (multipart/form-data)
  under the parameter's name; the service writes them into the job folder;
* an ``http://`` or ``https://`` URL, fetched into the job folder;
* an archive reference, in the user's own archive (``archive:``) or the
  shared one (``shared:``):

  - ``archive:image/<sha256 prefix>`` one image (its first sky HDU);
  - ``archive:images?survey=ir24&band=...&cone=ra,dec,radius`` every 2-D image
    a query finds (angles in degrees);
  - ``archive:cubes?survey=...&cone=ra,dec,radius&velocity=vmin,vmax`` every
    cube a query finds (velocities in km/s, a single one or a range);
  - ``archive:catalogue/<name>?cone=ra,dec,radius`` the rows of a catalogue
    in a cone (without ``cone``: the whole catalogue).

Each resolves, in the job's process (as the job's owner), to paths or a
table; nothing else is accepted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .._errors import VanotebookInputError

__all__ = ["FORMS", "check_reference", "resolve", "upload_name"]

FORMS = ("a file uploaded under this name, an http(s) URL, or an archive reference "
         "(archive:image/<sha256>, archive:images?survey=...&cone=ra,dec,radius, "
         "archive:cubes?velocity=vmin,vmax, archive:catalogue/<name>?cone=ra,dec,radius; "
         "shared: for the shared archive)")

#: suffixes an upload keeps (others are refused: the readers go by suffix)
SUFFIXES = (".fits.gz", ".fits.fz", ".fits", ".fit", ".fts", ".fz", ".vot", ".xml", ".ecsv",
            ".parquet", ".csv", ".json", ".npz")  # .npz: a classifier's model file
_REF = re.compile(r"^(archive|shared):(image/[0-9a-fA-F]{8,64}|(images|cubes)(\?.*)?|"
                  r"catalogue/[A-Za-z0-9_.\-]+(\?.*)?)$")
_QUERY_KEYS = {"images": {"survey", "band", "cone"},
               "cubes": {"survey", "band", "cone", "velocity"}, "catalogue": {"cone"}}
_MAX_DOWNLOAD = 4 << 30


def upload_name(param: str, index: int, filename: str) -> str:
    """The job-folder name of an upload: the parameter, its index, a known suffix."""
    low = (filename or "").lower()
    suffix = next((s for s in SUFFIXES if low.endswith(s)), None)
    if suffix is None:
        raise VanotebookInputError(param, f"a file named with one of {', '.join(SUFFIXES)}",
                                   filename or "a file without a name")
    return f"upload_{param}_{index}{suffix}"


def check_reference(param: str, text: str) -> None:
    """Refuse, before any work, a file parameter's text that is no form we read."""
    if text.startswith("upload:"):
        return
    if text.startswith(("http://", "https://")):
        if not urlsplit(text).netloc:
            raise VanotebookInputError(param, "a URL with a host", text)
        return
    match = _REF.match(text)
    if match is None:
        raise VanotebookInputError(param, FORMS, text)
    what = match.group(2).split("?")[0].split("/")[0]
    query = parse_qs(urlsplit(text).query, keep_blank_values=True)
    allowed = _QUERY_KEYS.get(what, set())
    for key in query:
        if key not in allowed:
            raise VanotebookInputError(param, f"query keys {sorted(allowed) or 'none'} in "
                                       f"an archive {what} reference", key)
    if "cone" in query:
        _cone(param, query["cone"][0])
    if "velocity" in query:
        _velocity(param, query["velocity"][0])


def _velocity(param: str, text: str):
    """``velocity=v`` or ``velocity=vmin,vmax`` (km/s) as a Quantity."""
    import astropy.units as u

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise VanotebookInputError(param, "velocity=vmin,vmax in km/s", text) from exc
    if len(values) not in (1, 2):
        raise VanotebookInputError(param, "velocity=vmin,vmax in km/s", text)
    return values * u.km / u.s


def _cone(param: str, text: str) -> tuple[float, float, float]:
    try:
        ra, dec, radius = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise VanotebookInputError(param, "cone=ra,dec,radius in degrees", text) from exc
    if not (-90 <= dec <= 90 and 0 < radius <= 180):
        raise VanotebookInputError(param, "cone=ra,dec,radius with |dec| <= 90 and "
                                   "0 < radius <= 180 degrees", text)
    return ra, dec, radius


def _download(url: str, work: Path, param: str) -> Path:
    import requests

    name = Path(urlsplit(url).path).name or "download"
    low = name.lower()
    suffix = next((s for s in SUFFIXES if low.endswith(s)), ".fits")
    target = work / f"url_{param}{suffix}"
    try:
        with requests.get(url, stream=True, timeout=60) as r:
            r.raise_for_status()
            size = 0
            with target.open("wb") as f:
                for chunk in r.iter_content(1 << 20):
                    size += len(chunk)
                    if size > _MAX_DOWNLOAD:
                        raise VanotebookInputError(param, "a file of at most 4 GiB", url)
                    f.write(chunk)
    except requests.RequestException as exc:
        target.unlink(missing_ok=True)
        raise VanotebookInputError(param, "a URL that answers with the file", f"{url} ({exc})"
                                   ) from exc
    return target


def _archive(which: str):
    from ..archive import personal_archive, shared_archive

    return personal_archive() if which == "archive" else shared_archive()


def resolve(param: str, text: str, work: Path, *, many: bool = False) -> Any:
    """The paths (or, for a catalogue reference, the table) a file parameter names.

    Parameters
    ----------
    param : str
        The parameter's name (for messages).
    text : str
        Its value (see the module's forms).
    work : Path
        The job's folder (uploads are in it; downloads go into it).
    many : bool
        Several files are allowed (a list is returned); else exactly one.
    """
    import astropy.units as u

    check_reference(param, text)
    if text.startswith("upload:"):
        found: list[Any] = [work / part.removeprefix("upload:") for part in text.split(";")]
    elif text.startswith(("http://", "https://")):
        found = [_download(text, work, param)]
    else:
        which, _, rest = text.partition(":")
        archive = _archive(which)
        path, _, query = rest.partition("?")
        args = parse_qs(query)
        if path.startswith("catalogue/"):
            catalogue = archive.catalogue(path.removeprefix("catalogue/"))
            if "cone" in args:
                ra, dec, radius = _cone(param, args["cone"][0])
                return catalogue.cone(ra * u.deg, dec * u.deg, radius * u.deg)
            return catalogue.cone(0.0 * u.deg, 90.0 * u.deg, 180.0 * u.deg)  # the sphere
        if path.startswith("image/"):
            prefix = path.removeprefix("image/").lower()
            table = archive.images()
            rows = [r for r in table if str(r["sha256"]).startswith(prefix)]
            if not rows:
                raise VanotebookInputError(param, f"an image of the {which} archive", text)
            found = [_image(rows[0])]
        else:
            cone = (tuple(v * u.deg for v in _cone(param, args["cone"][0]))
                    if "cone" in args else None)
            cubes = path.startswith("cubes")
            velocity = _velocity(param, args["velocity"][0]) if "velocity" in args else None
            table = archive.images(cone, survey=args.get("survey", [None])[0],
                                   band=args.get("band", [None])[0], cubes=cubes,
                                   velocity=velocity)
            if len(table) == 0:
                kind = "cubes" if cubes else "images"
                raise VanotebookInputError(param, f"a query that finds {kind} in the {which} "
                                           "archive", text)
            found = [_image(r) for r in table]
    if not many and len(found) != 1:
        raise VanotebookInputError(param, "one file", f"{len(found)} files")
    return found if many else found[0]


def _image(row: Any) -> Any:
    """An archive image row as something the image parser reads: its path, or its HDU."""
    if int(row["hdu"]) == 0:
        return str(row["path"])
    from astropy.io import fits

    with fits.open(row["path"]) as hdul:
        return hdul[int(row["hdu"])].copy()
