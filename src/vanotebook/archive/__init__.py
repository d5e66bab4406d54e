"""The archive: an embedded store of images and catalogues with region queries.

`Archive(path)` opens or creates an archive folder whose index is an
embedded DuckDB file. Images are indexed with their metadata and a HEALPix
(MOC) footprint; catalogues are written as HEALPix-partitioned parquet in the
HATS layout (LSDB opens them). Queries take one region argument -- a cone
``(ra, dec, radius)``, an astropy-regions sky region, polygon vertices or a
`mocpy.MOC` -- read only the partitions their HEALPix cells touch, and
return the exact answer of a great-circle test.

The Virtual Observatory: `tap_search` and `cone_search` query remote
services through pyvo and return the same astropy Tables; `DaCHS` publishes
a catalogue to a DaCHS server, after which it answers TAP and SCS. Image
search (SIA), image publishing and HiPS come later.

`personal_archive()` and `shared_archive()` open the user's own archive and
the one everyone reads (on the gateway: ``~/archive`` and the hub's shared
archive of the demo sky and published products).
"""

from ._archive import Archive
from ._catalogue import Catalogue
from ._defaults import personal_archive, shared_archive
from ._hips import write_catalogue_hips
from ._index import ArchiveLockedError
from ._regions import Region, parse_region
from ._viewer import HiPSView, view_hips
from ._vo import DaCHS, Published, cone_search, tap_search

__all__ = [
    "Archive",
    "ArchiveLockedError",
    "Catalogue",
    "DaCHS",
    "HiPSView",
    "Published",
    "Region",
    "cone_search",
    "parse_region",
    "personal_archive",
    "shared_archive",
    "tap_search",
    "view_hips",
    "write_catalogue_hips",
]
