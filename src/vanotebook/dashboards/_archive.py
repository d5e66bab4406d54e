"""`ArchivePicker`: choose a region and band, list the archive's images and catalogues there.

The "choose inputs" panel of the dashboards: a cone (centre and radius), a
band and a survey, and the images of the archive that overlap it, in a table
whose selected rows (all rows when none is selected) feed the mosaic and
detection dashboards; and the catalogues of the archive, whose rows inside
the cone feed the cross-match dashboard. No science here: it calls
`Archive.images` and `Catalogue.cone` only. The archive is the user's shared
archive (`vanotebook.sky.demo_archive`: the configured one, else the demo sky's)
unless one is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import astropy.units as u
import panel as pn
import param

__all__ = ["ArchivePicker"]

_ANY = "any"
_COLUMNS = ("survey", "band", "unit", "pixel_scale_arcsec", "beam_major_arcsec", "frame",
            "naxis1", "naxis2", "date_obs", "path")


class ArchivePicker(pn.viewable.Viewer):
    """Find the images and catalogues of an archive on a region of the sky.

    Parameters
    ----------
    archive : Archive or path, optional
        The archive to search (default: `vanotebook.sky.demo_archive()`,
        opened at the first search).
    """

    ra = param.Number(default=281.6, bounds=(0.0, 360.0), doc="Cone centre, ICRS RA [deg]")
    dec = param.Number(default=-2.6, bounds=(-90.0, 90.0), doc="Cone centre, ICRS Dec [deg]")
    radius_arcmin = param.Number(default=30.0, bounds=(0.01, 10800.0),
                                 doc="Cone radius [arcmin]")
    band = param.Selector(default=_ANY, objects=[_ANY], doc="Keep images of this band")
    survey = param.Selector(default=_ANY, objects=[_ANY], doc="Keep images of this survey")
    catalogue = param.Selector(default=None, objects=[None], allow_None=True,
                               doc="The catalogue whose rows in the cone are offered")
    n_images = param.Integer(default=0, doc="Images found by the last search")
    status = param.String(default="choose a region and press 'Search'")
    search_action = param.Action(lambda self: self.search(), label="Search")

    def __init__(self, archive: Any = None, **params):
        super().__init__(**params)
        self._archive = archive
        self.found = None  # astropy Table of the last search
        self.table = pn.widgets.Tabulator(None, pagination="local", page_size=10, height=300,
                                          disabled=True, selectable="checkbox",
                                          sizing_mode="stretch_width")

    @property
    def archive(self):
        """The archive searched (opened on first use)."""
        from ..archive import Archive
        from ..sky import demo_archive

        if self._archive is None:
            self._archive = demo_archive()
        elif not isinstance(self._archive, Archive):
            self._archive = Archive(self._archive, create=False)
        return self._archive

    def region(self) -> tuple[float, float, u.Quantity]:
        """The cone searched: ``(ra, dec, radius)``."""
        return (self.ra, self.dec, self.radius_arcmin * u.arcmin)

    def search(self):
        """List the archive's images overlapping the cone (with the band and survey chosen).

        Returns
        -------
        astropy.table.Table
            The images found (also in ``found`` and the table widget).
        """
        arc = self.archive
        everything = arc.images(cubes=False)  # the services it feeds take 2-D images
        self._choices("band", everything["band"] if len(everything) else [])
        self._choices("survey", everything["survey"] if len(everything) else [])
        names = [str(n) for n in arc.catalogues()["name"]]
        self.param.catalogue.objects = [None, *names]
        if self.catalogue not in names:
            self.catalogue = names[0] if names else None
        found = arc.images(self.region(), cubes=False,
                           band=None if self.band == _ANY else self.band,
                           survey=None if self.survey == _ANY else self.survey)
        self.found, self.n_images = found, len(found)
        cols = [c for c in _COLUMNS if c in found.colnames]
        self.table.selection = []
        self.table.value = found[cols].to_pandas()
        self.status = (f"{len(found)} image(s) and {len(names)} catalogue(s) within "
                       f"{self.radius_arcmin:g}' of ({self.ra:.4f}, {self.dec:+.4f})")
        return found

    def _choices(self, name: str, values) -> None:
        objects = [_ANY, *sorted({str(v) for v in values if v is not None and str(v)})]
        self.param[name].objects = objects
        if getattr(self, name) not in objects:
            setattr(self, name, _ANY)

    def selected_paths(self) -> list[Path]:
        """The paths of the selected images (every image found when none is selected)."""
        if self.found is None:
            self.search()
        rows = self.table.selection or list(range(len(self.found)))
        return [Path(str(self.found["path"][i])) for i in rows]

    def catalogue_rows(self):
        """The rows of the chosen catalogue inside the cone (an astropy Table)."""
        if self.found is None:
            self.search()
        if self.catalogue is None:
            from .._errors import VanotebookInputError

            raise VanotebookInputError("catalogue", "a catalogue of the archive",
                                       "none (the archive holds no catalogue)")
        return self.archive.catalogue(self.catalogue).cone(*self.region())

    def __panel__(self):
        from ._help import with_help

        return with_help(self, self._layout())

    def _layout(self):
        from ._help import status_pane

        return pn.Column(
            pn.Row(pn.widgets.FloatInput.from_param(self.param.ra, width=110),
                   pn.widgets.FloatInput.from_param(self.param.dec, width=110),
                   pn.widgets.FloatInput.from_param(self.param.radius_arcmin, width=110)),
            pn.Row(pn.widgets.Select.from_param(self.param.band, width=110),
                   pn.widgets.Select.from_param(self.param.survey, width=110),
                   pn.widgets.Select.from_param(self.param.catalogue, width=110)),
            pn.widgets.Button.from_param(self.param.search_action, color="primary"),
            status_pane(self),
            self.table,
        )
