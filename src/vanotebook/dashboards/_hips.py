"""`HiPSViewer`: Aladin Lite (served from this machine) in a Panel dashboard.

Params name the layers -- an image HiPS folder, a catalogue HiPS folder,
detection regions -- and the initial centre and field; the pane is an iframe
on the page `vanotebook.archive.view_hips` serves. No science here.
"""

from __future__ import annotations

from typing import Any

import panel as pn
import param

try:
    from ..archive import view_hips
except ImportError:  # until the archive package exports it
    from ..archive._viewer import view_hips

__all__ = ["HiPSViewer"]


class HiPSViewer(pn.viewable.Viewer):
    """A Panel viewer of an image HiPS with a catalogue HiPS and regions on top.

    Setting any layer or view param rebuilds the page; ``url`` is its address
    (through jupyter-server-proxy on a hub) and ``status`` says what is shown
    or what went wrong.
    """

    image_hips = param.String(default="", doc="Image HiPS folder (the survey).")
    catalogue_hips = param.String(default="", doc="Catalogue HiPS folder (progressive layer).")
    regions = param.Parameter(default=None, doc="Regions: a DS9 file, sky regions or a Table.")
    ra = param.Number(default=None, allow_None=True, bounds=(0, 360), doc="Centre RA (deg).")
    dec = param.Number(default=None, allow_None=True, bounds=(-90, 90), doc="Centre Dec (deg).")
    fov = param.Number(default=1.0, bounds=(1e-5, 360), doc="Field of view (deg).")
    height = param.Integer(default=600, bounds=(100, 4000))
    url = param.String(default="", constant=True)
    status = param.String(default="Choose an image HiPS and/or a catalogue HiPS.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._frame = pn.pane.HTML("", sizing_mode="stretch_width", height=self.height)
        self._status = pn.pane.Markdown(self.status)
        self.param.watch(self._rebuild, ["image_hips", "catalogue_hips", "regions", "ra",
                                         "dec", "fov", "height"])
        self.param.watch(lambda e: setattr(self._status, "object", e.new), "status")
        self._rebuild()

    def _rebuild(self, *_: Any) -> None:
        if not (self.image_hips or self.catalogue_hips or self.regions is not None):
            self._frame.object = ""
            with param.edit_constant(self):
                self.url = ""
            return
        try:
            view = view_hips(self.image_hips or None, self.catalogue_hips or None,
                             self.regions, ra=self.ra, dec=self.dec, fov=self.fov,
                             height=self.height)
        except (ValueError, RuntimeError) as exc:
            self.status = f"Cannot show it: {exc}"
            return
        with param.edit_constant(self):
            self.url = view.url
        self._frame.height = self.height
        self._frame.object = view.iframe()
        shown = [n for n, v in (("image", self.image_hips), ("catalogue", self.catalogue_hips),
                                ("regions", self.regions)) if v not in ("", None)]
        self.status = f"Showing {', '.join(shown)}."

    def __panel__(self) -> pn.viewable.Viewable:
        from ._help import with_help

        return with_help(self, self._layout())

    def _layout(self) -> pn.viewable.Viewable:
        controls = pn.Param(self, parameters=["image_hips", "catalogue_hips", "ra", "dec",
                                              "fov"], show_name=False, width=280)
        return pn.Row(pn.Column(controls, self._status), self._frame,
                      sizing_mode="stretch_width")
