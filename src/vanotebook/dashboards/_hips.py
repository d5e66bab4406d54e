"""`HiPSViewer`: Aladin Lite (served from this machine) in a Panel dashboard.

Params name the layers -- an image HiPS folder, a catalogue HiPS folder,
detection regions -- and the initial centre and field; the pane is an iframe
on the page `vanotebook.archive.view_hips` serves. The HiPS on offer
(``image_choices``, ``catalogue_choices``, e.g. from
`vanotebook.archive.find_hips`) are picked from menus, and `centre_on`
frames a set of sky positions. No science here.
"""

from __future__ import annotations

from typing import Any

import panel as pn
import param

from ..archive import framing, view_hips

__all__ = ["HiPSViewer"]

_NONE = "(none)"


class HiPSViewer(pn.viewable.Viewer):
    """A Panel viewer of an image HiPS with a catalogue HiPS and regions on top.

    Setting any layer or view param rebuilds the page; ``url`` is its address
    (through jupyter-server-proxy on a hub) and ``status`` says what is shown
    or what went wrong. With choices, the layers are picked from menus;
    without, their folders are typed in.
    """

    image_hips = param.String(default="", label="Image HiPS",
                              doc="Image HiPS folder (the survey).")
    catalogue_hips = param.String(default="", label="Catalogue HiPS",
                                  doc="Catalogue HiPS folder (progressive layer).")
    image_choices = param.Dict(default={}, doc="Image HiPS on offer: {title: folder}.")
    catalogue_choices = param.Dict(default={}, doc="Catalogue HiPS on offer: {title: folder}.")
    regions = param.Parameter(default=None, doc="Regions: a DS9 file, sky regions or a Table.")
    ra = param.Number(default=None, allow_None=True, bounds=(0, 360), label="RA",
                      doc="Centre RA (deg).")
    dec = param.Number(default=None, allow_None=True, bounds=(-90, 90), label="Dec",
                       doc="Centre Dec (deg).")
    fov = param.Number(default=1.0, bounds=(1e-5, 360), label="Field of view",
                       doc="Field of view (deg).")
    height = param.Integer(default=600, bounds=(100, 4000))
    help_text = param.String(default="", doc="The lines of help above the viewer (Markdown; "
                             "the dashboard's own when empty).")
    url = param.String(default="", constant=True)
    status = param.String(default="Choose an image HiPS and/or a catalogue HiPS.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._frame = pn.pane.HTML("", sizing_mode="stretch_width", height=self.height)
        self._status = pn.pane.Markdown(self.status)
        self._menus = {name: pn.widgets.Select(label=self.param[name].label, width=260)
                       for name in ("image_hips", "catalogue_hips")}
        self._offering = False  # the menus are being refilled: their changes are not picks
        for name, menu in self._menus.items():
            menu.param.watch(lambda e, name=name: self._offering or setattr(self, name, e.new),
                             "value")
        self._offer()
        self.param.watch(self._offer, ["image_choices", "catalogue_choices", "image_hips",
                                       "catalogue_hips"])
        self.param.watch(self._rebuild, ["image_hips", "catalogue_hips", "regions", "ra",
                                         "dec", "fov", "height"])
        self.param.watch(lambda e: setattr(self._status, "object", e.new), "status")
        self._rebuild()

    def centre_on(self, ra: Any, dec: Any, *, centre: tuple[float, float] | None = None,
                  regions: Any = None, **layers: Any) -> None:
        """Frame these sky positions (see `vanotebook.archive.framing`), in one rebuild.

        Parameters
        ----------
        ra, dec : array-like
            Positions in degrees that the view must hold.
        centre : (float, float), optional
            The view's centre in degrees (default: the positions' mean direction).
        regions : optional
            The regions drawn on top (see ``regions``); None clears them.
        **layers
            Other params changed at the same time (e.g. ``image_hips``).
        """
        ra0, dec0, fov = framing(ra, dec, centre=centre)
        self.param.update(ra=ra0, dec=dec0, fov=fov, regions=regions, **layers)

    def _offer(self, *_: Any) -> None:
        """Menus of the HiPS on offer, showing the chosen ones (a folder typed in is added)."""
        self._offering = True
        try:
            for name, choices in (("image_hips", self.image_choices),
                                  ("catalogue_hips", self.catalogue_choices)):
                menu, value = self._menus[name], getattr(self, name)
                options = {_NONE: "", **choices}
                if value and value not in options.values():
                    options[value] = value
                menu.param.update(options=options, value=value, visible=bool(choices))
        finally:
            self._offering = False

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

        if not self.help_text:
            return with_help(self, self._layout())
        return pn.Column(pn.pane.Markdown(self.help_text, css_classes=["vn-help"],
                                          sizing_mode="stretch_width", margin=(0, 10)),
                         self._layout())

    def _layout(self) -> pn.viewable.Viewable:
        from ._help import number_input

        typed = {name: pn.widgets.TextInput.from_param(self.param[name], width=260)
                 for name in ("image_hips", "catalogue_hips")}
        for name, box in typed.items():  # a typed folder when there is nothing to choose
            box.visible = not self._menus[name].visible
            self._menus[name].param.watch(lambda e, box=box: setattr(box, "visible", not e.new),
                                          "visible")
        # number boxes, not sliders: a slider cannot show "not set" (ra, dec None)
        view = [number_input(self, name) for name in ("ra", "dec", "fov")]
        controls = pn.Column(self._menus["image_hips"], typed["image_hips"],
                             self._menus["catalogue_hips"], typed["catalogue_hips"], *view,
                             width=280)
        return pn.Row(pn.Column(controls, self._status), self._frame,
                      sizing_mode="stretch_width")
