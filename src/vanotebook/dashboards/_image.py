"""`ImageView`: a large image in a Bokeh figure, as the dashboards show one.

* **Level of detail**: the browser never receives more than `MAX_DISPLAY`
  pixels a side; after a pan or zoom (Bokeh's ``RangesUpdate``) the pixels in
  view, and half a view around them, are sent at the finest step that keeps
  to that bound, so zooming in reaches full resolution.
* **Where the cursor is**: pixel, value and sky position in the image's own
  frame (RA/Dec, or l/b for a Galactic image), computed here from the WCS
  (any projection) and shown under the figure.
* Square pixels, a colour-map choice and a colour bar; a ``transform`` (a
  stretch) may map the values sent, while the read-out shows the data.

No science here: the caller gives the pixels, their WCS and the limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import panel as pn
import param

__all__ = ["MAX_DISPLAY", "PALETTES", "ImageView"]

MAX_DISPLAY = 1024  # longest side of the image sent to the browser, in pixels (any zoom)
PALETTES = ("Greys256", "Viridis256", "Magma256", "Inferno256", "Cividis256")


class ImageView(param.Parameterized):
    """One image figure with level of detail, a colour map and a sky read-out.

    Call `figure` for each new image (it returns the Bokeh figure, to which a
    dashboard adds its overlays); `show_window` sends the pixels of a view.
    """

    palette = param.Selector(default="Greys256", objects=list(PALETTES), doc="Colour map")
    readout = param.String(default="", doc="Pixel, value and sky position under the cursor")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.data: np.ndarray | None = None
        self.wcs: Any = None
        self.source: Any = None
        self.mapper: Any = None
        self.transform: Callable[[np.ndarray], np.ndarray] | None = None

    def figure(self, data: np.ndarray | None, wcs: Any = None, *, title: str = "",
               name: str = "image", width: int = 560, height: int = 520,
               transform: Callable[[np.ndarray], np.ndarray] | None = None,
               colour_bar: str = "", tools: str = "pan,wheel_zoom,box_zoom,reset,save"):
        """A new figure of ``data`` (2-D, y first) with celestial ``wcs`` (or None).

        ``transform`` maps the pixels sent (a stretch into [0, 1]); ``colour_bar``
        titles a colour bar (none when empty).
        """
        from bokeh.events import MouseMove, RangesUpdate
        from bokeh.models import ColorBar, ColumnDataSource, LinearColorMapper
        from bokeh.plotting import figure

        self.data, self.wcs, self.transform = data, wcs, transform
        fig = figure(name=name, width=width, height=height, match_aspect=True, tools=tools,
                     title=title, x_axis_label="x [pix]", y_axis_label="y [pix]",
                     active_scroll="wheel_zoom" if "wheel_zoom" in tools else None,
                     css_classes=[name])  # the page (and its tests) find it by its name
        self.mapper = LinearColorMapper(palette=self.palette, nan_color=(0, 0, 0, 0))
        if data is None:
            self.source = None
            return fig
        ny, nx = data.shape
        self.source = ColumnDataSource(self.window(-0.5, nx - 0.5, -0.5, ny - 0.5))
        fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.source,
                  color_mapper=self.mapper)
        fig.x_range.start, fig.x_range.end = -0.5, nx - 0.5
        fig.y_range.start, fig.y_range.end = -0.5, ny - 0.5
        fig.on_event(RangesUpdate, lambda e: self.show_window(e.x0, e.x1, e.y0, e.y1))
        fig.on_event(MouseMove, lambda e: self.param.update(readout=self.read(e.x, e.y)))
        if colour_bar:
            fig.add_layout(ColorBar(color_mapper=self.mapper, title=colour_bar, width=12,
                                    label_standoff=6, major_label_text_font_size="9pt"),
                           "right")
        return fig

    @property
    def shown(self) -> np.ndarray | None:
        """The pixels the browser has now (after ``transform``)."""
        return None if self.source is None else self.source.data["image"][0]

    def set_limits(self, low: float, high: float) -> None:
        """The values at the two ends of the colour map."""
        if self.mapper is not None:
            self.mapper.low, self.mapper.high = float(low), float(max(high, low + 1e-12))

    @param.depends("palette", watch=True)
    def _palette_changed(self) -> None:
        if self.mapper is not None:
            from bokeh import palettes

            self.mapper.palette = getattr(palettes, self.palette)

    def window(self, x0: float, x1: float, y0: float, y1: float) -> dict[str, list]:
        """The image glyph's data for the view ``x0..x1, y0..y1`` (pixel coordinates).

        The pixels in view and a half-view margin (a small pan needs no new
        pixels), every ``step``-th one so that no side exceeds `MAX_DISPLAY`.
        """
        ny, nx = self.data.shape
        mx, my = 0.5 * (x1 - x0), 0.5 * (y1 - y0)
        xa = int(np.clip(np.floor(x0 - mx + 0.5), 0, nx - 1))
        xb = int(np.clip(np.ceil(x1 + mx + 0.5), xa + 1, nx))
        ya = int(np.clip(np.floor(y0 - my + 0.5), 0, ny - 1))
        yb = int(np.clip(np.ceil(y1 + my + 0.5), ya + 1, ny))
        step = max(1, int(np.ceil(max(xb - xa, yb - ya) / MAX_DISPLAY)))
        shown = np.asarray(self.data[ya:yb:step, xa:xb:step], dtype=np.float32)
        if self.transform is not None:
            shown = np.asarray(self.transform(shown), dtype=np.float32)
        return {"image": [shown], "x": [xa - 0.5], "y": [ya - 0.5],
                "dw": [shown.shape[1] * step], "dh": [shown.shape[0] * step],
                "step": [step]}

    def show_window(self, x0: float | None, x1: float | None, y0: float | None,
                    y1: float | None) -> None:
        """Send the pixels of the view ``x0..x1, y0..y1`` (after a pan, zoom or row click)."""
        if self.source is None or None in (x0, x1, y0, y1):
            return
        self.source.data = self.window(x0, x1, y0, y1)

    def refresh(self) -> None:
        """Send the current view again (after the transform changed)."""
        if self.source is not None:
            d = self.source.data
            x0, y0 = d["x"][0], d["y"][0]
            self.source.data = self.window(x0, x0 + d["dw"][0], y0, y0 + d["dh"][0])

    def read(self, x: float | None, y: float | None) -> str:
        """What the read-out says at pixel ``(x, y)``: pixel, value, sky position."""
        if self.data is None or x is None or y is None:
            return ""
        ny, nx = self.data.shape
        i, j = int(np.floor(y + 0.5)), int(np.floor(x + 0.5))
        if not (0 <= i < ny and 0 <= j < nx):
            return ""
        text = f"x {x:.1f}  y {y:.1f}  value {float(self.data[i, j]):.4g}"
        if self.wcs is not None:
            text += "  " + sky_position(self.wcs, x, y)
        return text

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.widgets.Select.from_param(self.param.palette, width=140),
                      pn.pane.Str(self.param.readout, css_classes=["vn-readout"]))


def sky_position(wcs: Any, x: float, y: float) -> str:
    """The sky position of pixel ``(x, y)`` in ``wcs``'s own frame, as a read-out says it."""
    import astropy.units as u

    sky = wcs.pixel_to_world(x, y)
    frame = sky.frame.name
    if frame == "galactic":
        return f"l {sky.l.to_value(u.deg):.5f}°  b {sky.b.to_value(u.deg):+.5f}° (Galactic)"
    ra, dec = sky.spherical.lon, sky.spherical.lat
    return (f"RA {ra.to_string(u.hourangle, sep='hms', precision=2)}  "
            f"Dec {dec.to_string(u.deg, sep='dms', precision=1, alwayssign=True)}  "
            f"({ra.to_value(u.deg):.5f}°, {dec.to_value(u.deg):+.5f}°; {frame.upper()})")
