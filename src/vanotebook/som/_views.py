"""Bokeh views of a trained map, on rectangular and hexagonal grids alike.

Every map view draws one polygon per unit (a unit square, or a hexagon of unit
width on the hexagonal grid) from a `ColumnDataSource` whose ``unit`` column
is the flat unit index, so a tap selection gives the unit directly. Row 0 is
drawn at the top.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._errors import VanotebookInputError, check_choice

__all__ = ["hits_figure", "isometric_figure", "label_figure", "neuron_figure",
           "scale_values", "umatrix_figure"]  # fmt: skip

SCALES = ("linear", "log", "sqrt")
_UNLABELLED = "#eeeeee"  # an empty (unlabelled) unit, in every label view
_TOOLS = "tap,hover,pan,wheel_zoom,reset,save"


def scale_values(values: np.ndarray, *, clip: tuple[float, float] = (1.0, 99.0),
                 scale: str = "linear") -> np.ndarray:  # fmt: skip
    """Clip to the given percentiles, then map to [0, 1] linearly, by log or by sqrt.

    NaNs stay NaN; a constant input maps to 0.
    """
    check_choice("scale", scale, SCALES)
    lo_p, hi_p = clip
    if not 0 <= lo_p < hi_p <= 100:
        raise VanotebookInputError("clip", "percentiles (low, high) with 0 <= low < high <= 100",
                                   clip)  # fmt: skip
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return np.full(v.shape, np.nan)
    lo, hi = np.percentile(finite, [lo_p, hi_p])
    t = (np.clip(v, lo, hi) - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    if scale == "log":
        t = np.log1p(999.0 * t) / np.log(1000.0)
    elif scale == "sqrt":
        t = np.sqrt(t)
    return np.where(np.isfinite(v), t, np.nan)


def _cell_polygons(som: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Outline of every unit, x and y vertex arrays (y down: row 0 on top)."""
    xy = som.grid_coordinates()
    if som.topology == "hexagonal":
        angles = np.deg2rad(np.arange(6) * 60 + 30)
        r = 1 / math.sqrt(3)
        dx, dy = r * np.cos(angles), r * np.sin(angles)
    else:
        dx, dy = np.array([-0.5, 0.5, 0.5, -0.5]), np.array([-0.5, -0.5, 0.5, 0.5])
    xs = [x + dx for x in xy[:, 0]]
    ys = [-(y + dy) for y in xy[:, 1]]
    return xs, ys


def _colours(t: np.ndarray, palette: str = "Viridis256") -> list[str]:
    from bokeh import palettes

    pal = getattr(palettes, palette)
    idx = np.clip(np.nan_to_num(t, nan=0.0) * (len(pal) - 1), 0, len(pal) - 1).astype(int)
    return [pal[i] if np.isfinite(v) else "#dddddd" for i, v in zip(idx, t, strict=True)]


def _map_figure(som: Any, data: dict[str, Any], title: str, tooltips: list[tuple[str, str]]):
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    xs, ys = _cell_polygons(som)
    xy = som.grid_coordinates()
    r, c = np.divmod(np.arange(som.n_units), som.cols)
    source = ColumnDataSource({"xs": xs, "ys": ys, "unit": np.arange(som.n_units),
                               "row": r, "col": c, **data})  # fmt: skip
    width = 420
    height = int(width * (np.ptp(xy[:, 1]) + 1) / (np.ptp(xy[:, 0]) + 1.5))
    fig = figure(title=title, tools=_TOOLS, match_aspect=True, width=width, height=height,
                 tooltips=[("unit", "@unit (row @row, col @col)"), *tooltips])  # fmt: skip
    fig.patches("xs", "ys", source=source, fill_color="color", line_color="white",
                line_width=0.5, hover_line_color="black")  # fmt: skip
    fig.axis.visible = False
    fig.grid.visible = False
    return fig


def umatrix_figure(som: Any, *, clip: tuple[float, float] = (1.0, 99.0),
                   scale: str = "linear", palette: str = "Viridis256"):  # fmt: skip
    """U-matrix: each unit coloured by the mean distance to its neighbours' prototypes.

    Parameters
    ----------
    clip : (float, float)
        Percentiles the colour range is clipped to.
    scale : {"linear", "log", "sqrt"}
        Colour scaling after clipping.
    """
    u = som.umatrix().ravel()
    t = scale_values(u, clip=clip, scale=scale)
    return _map_figure(som, {"value": u, "color": _colours(t, palette)},
                       f"U-matrix ({scale}, clip {clip[0]:g}-{clip[1]:g}%)",
                       [("distance", "@value{0.000}")])  # fmt: skip


def hits_figure(som: Any, hits: np.ndarray | None = None, *, scale: str = "linear",
                palette: str = "Viridis256"):  # fmt: skip
    """Hits: samples per unit (``hits`` given, else the training hits)."""
    hits = som.train_hits if hits is None else np.asarray(hits)
    if hits is None:
        raise VanotebookInputError("hits", "hit counts (or a map with training hits)", None)
    h = np.asarray(hits, dtype=np.float64).ravel()
    t = scale_values(h, clip=(0.0, 100.0), scale=scale)
    return _map_figure(som, {"value": h, "color": _colours(t, palette)}, "Hits",
                       [("hits", "@value{0}")])  # fmt: skip


def _class_colours(classes: list[str]) -> dict[str, str]:
    from bokeh.palettes import Category10_10, Category20_20

    pal = Category10_10 if len(classes) <= 10 else Category20_20
    return {c: pal[i % len(pal)] for i, c in enumerate(classes)}


def label_figure(som: Any, labels: Any = None):
    """Label map: each unit coloured by its majority class, paler where purity is low."""
    labels = som.labels if labels is None else labels
    if labels is None:
        raise VanotebookInputError("labels", "SOMLabels (call som.label(X, y) first)", None)
    lab = labels.labels.ravel().astype(str)
    purity = labels.purity.ravel()
    cmap = _class_colours(sorted({v for v in lab if v}))
    colours = [cmap.get(v, _UNLABELLED) for v in lab]
    fig = _map_figure(som, {"label": lab, "purity": purity, "color": colours,
                            "alpha": np.nan_to_num(0.35 + 0.65 * purity, nan=0.3)},
                      "Majority label", [("label", "@label"), ("purity", "@purity{0.00}")])
    fig.renderers[0].glyph.fill_alpha = "alpha"
    _legend(fig, cmap)
    return fig


def _legend(fig: Any, cmap: dict[str, str]) -> None:
    from bokeh.models import Legend, LegendItem

    items = []
    for name, colour in cmap.items():
        r = fig.scatter([np.nan], [np.nan], color=colour, size=8)
        items.append(LegendItem(label=name, renderers=[r]))
    if items:
        fig.add_layout(Legend(items=items, label_text_font_size="8pt"), "right")


def isometric_figure(som: Any, labels: Any = None, hits: np.ndarray | None = None, *,
                     height: float = 3.0):  # fmt: skip
    """Isometric "labels + hits" view: a prism per unit, coloured by label, height ∝ hits.

    Parameters
    ----------
    height : float
        Height, in unit widths, of the unit with the most hits.
    """
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    labels = som.labels if labels is None else labels
    hits = (labels.hits if labels is not None else som.train_hits) if hits is None else hits
    if hits is None:
        raise VanotebookInputError("hits", "hit counts (or a labelled / trained map)", None)
    h = np.asarray(hits, dtype=np.float64).ravel()
    z = height * h / h.max() if h.max() > 0 else np.zeros_like(h)
    lab = labels.labels.ravel().astype(str) if labels is not None else np.full(h.size, "")
    cmap = _class_colours(sorted({v for v in lab if v}))
    xs0, ys0 = _cell_polygons(som)
    cos, sin = math.cos(math.radians(30)), math.sin(math.radians(30))

    def project(x, y, zz):
        # map x to the right-down axis, rows (y, drawn downwards) to the left-down axis
        return (x + y) * cos, (x - y) * sin + zz

    order = sorted(range(h.size), key=lambda u: -(xs0[u].mean() - ys0[u].mean()))
    px, py, colour, unit, hit, name = [], [], [], [], [], []
    for u in order:
        base = lab[u]
        fill = cmap.get(base, _UNLABELLED)
        bx, by = xs0[u], ys0[u]
        n = len(bx)
        for i in range(n):  # side faces, then the top
            j = (i + 1) % n
            qx = [bx[i], bx[j], bx[j], bx[i]]
            qy = [by[i], by[j], by[j], by[i]]
            qz = [0, 0, z[u], z[u]]
            sx, sy = project(np.array(qx), np.array(qy), np.array(qz))
            px.append(sx)
            py.append(sy)
            colour.append(_darken(fill, 0.7))
            unit.append(u)
            hit.append(h[u])
            name.append(base)
        sx, sy = project(bx, by, np.full(n, z[u]))
        px.append(sx)
        py.append(sy)
        colour.append(fill)
        unit.append(u)
        hit.append(h[u])
        name.append(base)
    source = ColumnDataSource({"xs": px, "ys": py, "color": colour, "unit": unit,
                               "hits": hit, "label": name})  # fmt: skip
    fig = figure(title="Labels and hits (isometric)", tools=_TOOLS, match_aspect=True,
                 width=520, height=420,
                 tooltips=[("unit", "@unit"), ("label", "@label"), ("hits", "@hits{0}")])
    fig.patches("xs", "ys", source=source, fill_color="color", line_color="#333333",
                line_width=0.3)  # fmt: skip
    fig.axis.visible = False
    fig.grid.visible = False
    _legend(fig, cmap)
    return fig


def _darken(colour: str, factor: float) -> str:
    c = colour.lstrip("#")
    rgb = [int(int(c[i : i + 2], 16) * factor) for i in (0, 2, 4)]
    return "#" + "".join(f"{v:02x}" for v in rgb)


def neuron_figure(som: Any, unit: int, X: Any = None, *, bmu: np.ndarray | None = None,
                  wavelength: np.ndarray | None = None, max_members: int = 50,
                  seed: int = 0):  # fmt: skip
    """The prototype spectrum of one unit and (with ``X``) up to ``max_members`` members.

    Parameters
    ----------
    unit : int
        Flat unit index ``row * cols + col``.
    X : array, optional
        The samples; their BMUs are computed unless ``bmu`` is given.
    wavelength : array, optional
        x axis values (feature index when None).
    """
    from bokeh.plotting import figure

    if isinstance(unit, bool) or not 0 <= int(unit) < som.n_units:
        raise VanotebookInputError("unit", f"a unit index in [0, {som.n_units})", unit)
    unit = int(unit)
    proto = som.prototypes.reshape(som.n_units, -1)[unit]
    x_axis = np.arange(proto.size) if wavelength is None else np.asarray(wavelength)
    r, c = divmod(unit, som.cols)
    fig = figure(title=f"Unit {unit} (row {r}, col {c})", width=520, height=320,
                 x_axis_label="wavelength" if wavelength is not None else "feature",
                 y_axis_label="flux", tools="pan,wheel_zoom,box_zoom,reset,save")
    n_members = 0
    if X is not None:
        data = np.asarray(X)
        best = som.bmu(data) if bmu is None else np.asarray(bmu)
        members = np.flatnonzero(best == unit)
        n_members = len(members)
        if n_members > max_members:
            members = np.sort(np.random.default_rng(seed).choice(members, max_members,
                                                                 replace=False))
        if len(members):
            fig.multi_line([x_axis] * len(members), list(data[members]), color="#888888",
                           alpha=0.25, legend_label=f"members ({n_members})")
    fig.line(x_axis, proto, color="crimson", line_width=2.5, legend_label="prototype")
    fig.legend.location = "top_right"
    return fig
