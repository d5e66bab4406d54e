"""`ImageView`: a large image in a Bokeh figure, as the dashboards show one.

* **Level of detail**: the browser never receives more than `MAX_DISPLAY`
  pixels a side; after a pan or zoom (Bokeh's ``RangesUpdate``) the pixels in
  view, and half a view around them, are sent at the finest step that keeps
  to that bound, so zooming in reaches full resolution.
* **Where the cursor is**: pixel, value (with its unit) and world position in
  the image's own frame, computed here from the WCS: RA/Dec, or l/b for a
  Galactic image (any projection); for a non-celestial image (a
  position-velocity slice, a cut through a cube) each world axis by its own
  name and unit: offset, velocity, frequency... Shown under the figure.
* Square pixels (for sky images), a colour-map choice and a colour bar; a
  ``transform`` (a stretch) may map the values sent, while the read-out shows
  the data.
* The figure's axes are pixels by default; ``axes`` places the image on linear
  world axes instead (a PV slice drawn in arcsec and km/s), with the level of
  detail and the read-out still worked out in pixels.

No science here: the caller gives the pixels, their WCS and the limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import panel as pn
import param

__all__ = ["MAX_DISPLAY", "PALETTES", "ImageView", "sky_position", "world_position"]

MAX_DISPLAY = 1024  # longest side of the image sent to the browser, in pixels (any zoom)
PALETTES = ("Greys256", "Viridis256", "Magma256", "Inferno256", "Cividis256")

Axes = tuple[tuple[float, float], tuple[float, float]]
_PIXEL_AXES: Axes = ((0.0, 1.0), (0.0, 1.0))


def _check_axes(axes: Any) -> Axes:
    if axes is None:
        return _PIXEL_AXES
    try:
        (x0, dx), (y0, dy) = axes
        out = ((float(x0), float(dx)), (float(y0), float(dy)))
    except (TypeError, ValueError) as exc:
        msg = f"axes: expected ((x0, dx), (y0, dy)) or None, got {axes!r}"
        raise ValueError(msg) from exc
    if not all(np.isfinite(v) for pair in out for v in pair) or out[0][1] == 0 or \
            out[1][1] == 0:
        msg = f"axes: expected finite origins and non-zero steps, got {axes!r}"
        raise ValueError(msg)
    return out


class ImageView(param.Parameterized):
    """One image figure with level of detail, a colour map and a world read-out.

    Call `figure` for a new figure (it returns the Bokeh figure, to which a
    dashboard adds its overlays); `update` puts another image into that
    figure; `show_window` sends the pixels of a view.
    """

    palette = param.Selector(default="Greys256", objects=list(PALETTES), doc="Colour map")
    readout = param.String(default="", doc="Pixel, value and world position under the cursor")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.data: np.ndarray | None = None
        self.wcs: Any = None
        self.unit: str = ""
        self.axes: Axes = _PIXEL_AXES
        self.fig: Any = None
        self.source: Any = None
        self.mapper: Any = None
        self.bar: Any = None
        self.transform: Callable[[np.ndarray], np.ndarray] | None = None
        self._view: tuple[float, float, float, float] | None = None
        self._size: tuple[int, int, bool, bool] = (560, 520, False, True)

    def figure(self, data: np.ndarray | None, wcs: Any = None, *, title: str = "",
               name: str = "image", width: int = 560, height: int = 520,
               transform: Callable[[np.ndarray], np.ndarray] | None = None,
               colour_bar: str = "", tools: str = "pan,wheel_zoom,box_zoom,reset,save",
               unit: str = "", axes: Axes | None = None,
               labels: tuple[str, str] = ("x [pix]", "y [pix]"), square: bool = True) -> Any:
        """A new figure of ``data`` (2-D, y first) with its ``wcs`` (or None).

        Parameters
        ----------
        data : numpy.ndarray or None
            The image, ``(y, x)``; None: an empty frame (no read-out, no pixels).
        wcs : astropy.wcs.WCS or low-level WCS, optional
            Pixel to world for the read-out: celestial (RA/Dec, l/b) or any
            other two pixel axes (offset, velocity, frequency...).
        title, name, width, height, tools
            The Bokeh figure's; ``name`` is also its CSS class (the page and
            its tests find it by it).
        transform : callable, optional
            Maps the pixels sent (a stretch into [0, 1]); the read-out shows
            the data.
        colour_bar : str
            Title of a colour bar (none when empty).
        unit : str
            Unit of the values, said in the read-out.
        axes : ((x0, dx), (y0, dy)), optional
            Linear world axes of the figure: pixel ``(i, j)`` is drawn at
            ``(x0 + dx * i, y0 + dy * j)`` (a negative step flips that axis).
            None: the figure's axes are pixels.
        labels : (str, str)
            The axis labels.
        square : bool
            Square pixels (the figure keeps the image's aspect); False for
            images whose axes are not both on the sky.

        Returns
        -------
        bokeh.plotting.figure
        """
        from bokeh.models import ColorBar, LinearColorMapper, Range1d
        from bokeh.plotting import figure

        self.wcs, self.transform, self.unit = wcs, transform, unit
        self.data = None if data is None else np.asarray(data)
        self.axes = _check_axes(axes)
        # explicit ranges: the browser sets a DataRange1d back to its first extent whenever
        # new pixels arrive after a zoom made here (a row click), but not after the user's
        ranges = {} if self.data is None else {"x_range": Range1d(0, 1),
                                                "y_range": Range1d(0, 1)}
        fig = figure(name=name, width=width, height=height, match_aspect=square, tools=tools,
                     title=title, x_axis_label=labels[0], y_axis_label=labels[1],
                     active_scroll="wheel_zoom" if "wheel_zoom" in tools else None,
                     css_classes=[name], **ranges)  # the page (and its tests) find it by name
        self.fig, self._size = fig, (width, height, bool(colour_bar), square)
        if square:  # a box zoom keeps the pixels square too (wheel zoom and pan do)
            from bokeh.models import BoxZoomTool

            for tool in fig.select(type=BoxZoomTool):
                tool.match_aspect = True
        self.mapper = LinearColorMapper(palette=self.palette, nan_color=(0, 0, 0, 0))
        self.source = self.bar = None
        if self.data is None:
            return fig
        self._attach()
        if colour_bar:
            self.bar = ColorBar(color_mapper=self.mapper, title=colour_bar, width=12,
                                label_standoff=6, major_label_text_font_size="9pt")
            fig.add_layout(self.bar, "right")
        return fig

    def _attach(self) -> None:
        """The image glyph and the events that feed it (level of detail, read-out)."""
        from bokeh.events import MouseMove, RangesUpdate
        from bokeh.models import ColumnDataSource

        self._view = self._whole()
        self.source = ColumnDataSource(self.window(*self._view))
        self.fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.source,
                       color_mapper=self.mapper)
        self._set_ranges()
        self.fig.on_event(RangesUpdate, lambda e: self.show_range(e.x0, e.x1, e.y0, e.y1))
        self.fig.on_event(MouseMove, lambda e: self.param.update(
            readout=self.read(*self.to_pixel(e.x, e.y))))

    def update(self, data: np.ndarray, wcs: Any = None, *, unit: str | None = None,
               axes: Axes | None = None, colour_bar: str | None = None) -> None:
        """Put another image into the figure (a new map, a new cut).

        Of the same shape on the same axes, the view the user has (zoom, pan)
        is kept and its pixels sent; otherwise the figure shows the whole new
        image. ``unit`` and ``colour_bar`` (its title): None keeps them.
        """
        if self.fig is None:
            msg = "ImageView.update: expected a figure made by ImageView.figure first, got none"
            raise ValueError(msg)
        data = np.asarray(data)
        axes = _check_axes(axes)
        same = (self.data is not None and data.shape == self.data.shape
                and axes == self.axes and self._view is not None)
        self.data, self.wcs, self.axes = data, wcs, axes
        if unit is not None:
            self.unit = unit
        if colour_bar is not None and self.bar is not None:
            self.bar.title = colour_bar
        if self.source is None:
            self._attach()
            return
        if not same:
            self._view = self._whole()
            self._set_ranges()
        self.source.data = self.window(*self._view)

    def _whole(self) -> tuple[float, float, float, float]:
        ny, nx = self.data.shape
        return -0.5, nx - 0.5, -0.5, ny - 0.5

    def _extent(self) -> tuple[float, float, float, float]:
        """The whole image's edges on the figure's axes: ``x_lo, x_hi, y_lo, y_hi``."""
        x0, x1, y0, y1 = self._whole()
        (ax, kx), (ay, ky) = self.axes
        xs, ys = sorted((ax + kx * x0, ax + kx * x1)), sorted((ay + ky * y0, ay + ky * y1))
        return xs[0], xs[1], ys[0], ys[1]

    def _set_ranges(self) -> None:
        """The whole image in view; with square pixels, a plot frame of the image's shape
        inside the figure's width and height (Bokeh's ``match_aspect`` does not hold
        against explicit ranges, and the frame would otherwise stretch the pixels)."""
        from bokeh.models import Range1d

        x_lo, x_hi, y_lo, y_hi = self._extent()
        for axis, lo, hi in ((self.fig.x_range, x_lo, x_hi), (self.fig.y_range, y_lo, y_hi)):
            axis.start, axis.end = lo, hi
            if isinstance(axis, Range1d):  # what the reset tool goes back to
                axis.reset_start, axis.reset_end = lo, hi
        width, height, bar, square = self._size
        if square:
            room_x = max(80, width - 70 - (70 if bar else 0))  # y axis, toolbar, colour bar
            room_y = max(80, height - 60)  # title, x axis
            scale = min(room_x / (x_hi - x_lo), room_y / (y_hi - y_lo))
            self.fig.frame_width = max(1, round(scale * (x_hi - x_lo)))
            self.fig.frame_height = max(1, round(scale * (y_hi - y_lo)))

    def to_pixel(self, x: float | None, y: float | None) -> tuple[float | None, float | None]:
        """The pixel ``(x, y)`` at the figure's coordinates ``(x, y)`` (None stays None)."""
        (ax, kx), (ay, ky) = self.axes
        return (None if x is None else (x - ax) / kx, None if y is None else (y - ay) / ky)

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
        pixels), every ``step_x``-th column and ``step_y``-th row so that no side
        exceeds `MAX_DISPLAY` (``step``: the larger of the two); placed on the
        figure's axes (``x, y, dw, dh`` in its coordinates).
        """
        ny, nx = self.data.shape
        mx, my = 0.5 * (x1 - x0), 0.5 * (y1 - y0)
        xa = int(np.clip(np.floor(x0 - mx + 0.5), 0, nx - 1))
        xb = int(np.clip(np.ceil(x1 + mx + 0.5), xa + 1, nx))
        ya = int(np.clip(np.floor(y0 - my + 0.5), 0, ny - 1))
        yb = int(np.clip(np.ceil(y1 + my + 0.5), ya + 1, ny))
        # a step per axis: a cut of 20 channels by 4000 pixels keeps all its channels
        sx = max(1, int(np.ceil((xb - xa) / MAX_DISPLAY)))
        sy = max(1, int(np.ceil((yb - ya) / MAX_DISPLAY)))
        shown = np.asarray(self.data[ya:yb:sy, xa:xb:sx], dtype=np.float32)
        if self.transform is not None:
            shown = np.asarray(self.transform(shown), dtype=np.float32)
        (ax, kx), (ay, ky) = self.axes
        if kx < 0:  # Bokeh draws an image left to right, bottom to top
            shown = shown[:, ::-1]
        if ky < 0:
            shown = shown[::-1]
        xs = sorted((ax + kx * (xa - 0.5), ax + kx * (xa - 0.5 + shown.shape[1] * sx)))
        ys = sorted((ay + ky * (ya - 0.5), ay + ky * (ya - 0.5 + shown.shape[0] * sy)))
        return {"image": [shown], "x": [xs[0]], "y": [ys[0]], "dw": [xs[1] - xs[0]],
                "dh": [ys[1] - ys[0]], "step": [max(sx, sy)], "step_x": [sx], "step_y": [sy]}

    def show_window(self, x0: float | None, x1: float | None, y0: float | None,
                    y1: float | None) -> None:
        """Send the pixels of the view ``x0..x1, y0..y1`` in pixel coordinates (after a
        pan, zoom or row click)."""
        if self.source is None or None in (x0, x1, y0, y1):
            return
        self._view = (float(x0), float(x1), float(y0), float(y1))
        self.source.data = self.window(*self._view)

    def show_range(self, x0: float | None, x1: float | None, y0: float | None,
                   y1: float | None) -> None:
        """Send the pixels of the view ``x0..x1, y0..y1`` in the figure's coordinates
        (a Bokeh ``RangesUpdate``; also that of a figure sharing this one's ranges)."""
        if self.source is None or None in (x0, x1, y0, y1):
            return
        (px0, py0), (px1, py1) = self.to_pixel(x0, y0), self.to_pixel(x1, y1)
        self.show_window(min(px0, px1), max(px0, px1), min(py0, py1), max(py0, py1))

    def refresh(self) -> None:
        """Send the current view again (after the transform changed)."""
        if self.source is not None and self._view is not None:
            self.source.data = self.window(*self._view)

    def read(self, x: float | None, y: float | None) -> str:
        """What the read-out says at pixel ``(x, y)``: pixel, value, world position."""
        if self.data is None or x is None or y is None:
            return ""
        ny, nx = self.data.shape
        i, j = int(np.floor(y + 0.5)), int(np.floor(x + 0.5))
        if not (0 <= i < ny and 0 <= j < nx):
            return ""
        text = f"x {x:.1f}  y {y:.1f}  value {float(self.data[i, j]):.4g}"
        if self.unit:
            text += f" {self.unit}"
        if self.wcs is not None:
            where = world_position(self.wcs, x, y)
            if where:
                text += "  " + where
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


_SKY_NAMES = {"pos.eq.ra": "RA", "pos.eq.dec": "Dec", "pos.galactic.lon": "l",
              "pos.galactic.lat": "b", "pos.ecliptic.lon": "λ", "pos.ecliptic.lat": "β"}


def world_position(wcs: Any, x: float, y: float) -> str:
    """The world position of pixel ``(x, y)`` in ``wcs``'s own axes, as a read-out says it.

    A celestial WCS gives `sky_position`; any other (astropy's low-level WCS
    API: a PV slice, a cube sliced to two pixel axes) each world axis by name:
    sky axes in degrees, velocities in km/s, frequencies in GHz, angular
    offsets in arcsec, anything else in its own unit. Empty when the WCS has
    not two pixel axes or cannot say.
    """
    import astropy.units as u

    if getattr(wcs, "pixel_n_dim", 2) != 2:
        return ""
    if getattr(wcs, "is_celestial", False):
        return sky_position(wcs, x, y)
    try:
        values = np.atleast_1d(wcs.pixel_to_world_values(x, y))
    except Exception:  # a WCS that cannot say (odd axes): no world position, no failure
        return ""
    types = list(wcs.world_axis_physical_types)
    units = list(wcs.world_axis_units)
    ctypes = list(getattr(getattr(wcs, "wcs", None), "ctype", [""] * len(types)))
    parts = []
    for k, value in enumerate(np.ravel(values)):
        kind = types[k] or ""
        name = (ctypes[k] if k < len(ctypes) else "").split("-")[0].strip().lower()
        try:
            unit = u.Unit(units[k] or "")
        except ValueError:
            unit = u.dimensionless_unscaled
        q = float(value) * unit
        if kind in _SKY_NAMES or kind.startswith("pos."):
            label = _SKY_NAMES.get(kind, name or kind)
            parts.append(f"{label} {q.to_value(u.deg):.5f}°")
        elif kind.startswith("spect.dopplerVeloc") or unit.physical_type == "speed":
            convention = kind.rsplit(".", 1)[-1] if kind.count(".") >= 2 else ""
            parts.append(f"velocity {q.to_value(u.km / u.s):.6g} km/s"
                         + (f" ({convention})" if convention else ""))
        elif unit.physical_type == "frequency":
            parts.append(f"frequency {q.to_value(u.GHz):.9g} GHz")
        elif unit.physical_type == "angle":
            parts.append(f"{name or 'angle'} {q.to_value(u.arcsec):.4g}″")
        else:
            parts.append(f"{name or kind or f'axis {k + 1}'} {float(value):.6g}"
                         + (f" {unit.to_string()}" if unit != u.dimensionless_unscaled
                            else ""))
    return "  ".join(parts)
