"""The archive: an embedded store of images and catalogues with region queries.

`Archive(path)` opens or creates an archive folder whose index is an
embedded DuckDB file. Images are indexed with their metadata and a HEALPix
(MOC) footprint; catalogues are written as HEALPix-partitioned parquet in the
HATS layout (LSDB opens them). Queries take one region argument -- a cone
``(ra, dec, radius)``, an astropy-regions sky region, polygon vertices or a
`mocpy.MOC` -- read only the partitions their HEALPix cells touch, and
return the exact answer of a great-circle test.

The Virtual Observatory: `tap_search`, `cone_search` and `sia_search` (SIA
v2 and SIAP v1) query remote services through pyvo and return the same
astropy Tables as the local queries; `download_images` brings images found
that way into an archive with their provenance. `DaCHS(url).publish(product,
name)` puts a catalogue or images on a DaCHS server, after which they answer
TAP, SCS and SIA like any archive's data.

Levels of detail: `write_catalogue_hips` (or `Catalogue.to_hips`) writes a
progressive catalogue HiPS; image HiPS come from `vanotebook.mosaic.to_hips`;
`view_hips` shows both with detection regions in Aladin Lite, served from
this machine.

`personal_archive()` and `shared_archive()` open the user's own archive and
the one everyone reads (on the gateway: ``~/archive`` and the hub's shared
archive of the demo sky and published products);
`vanotebook.sky.demo_archive()` writes the demo sky's archive when there is none.
"""

from ._archive import Archive, ArchiveSearch
from ._catalogue import Catalogue
from ._defaults import SHARED_ENV, demo_folder, personal_archive, shared_archive
from ._hips import write_catalogue_hips
from ._index import ArchiveLockedError
from ._regions import Region, parse_region
from ._viewer import HiPSView, find_hips, framing, view_hips
from ._vo import (
    DaCHS,
    Published,
    PublishedImages,
    cone_search,
    download_images,
    sia_search,
    tap_search,
)

__all__ = [
    "SHARED_ENV",
    "Archive",
    "ArchiveLockedError",
    "ArchiveSearch",
    "Catalogue",
    "DaCHS",
    "HiPSView",
    "Published",
    "PublishedImages",
    "Region",
    "cone_search",
    "demo_folder",
    "download_images",
    "find_hips",
    "framing",
    "parse_region",
    "personal_archive",
    "shared_archive",
    "sia_search",
    "tap_search",
    "view_hips",
    "write_catalogue_hips",
]
