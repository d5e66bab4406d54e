"""`SOMDashboard`: train a self-organising map and explore it, neuron by neuron.

Choose the data (the demo spectra, or a table file and its feature columns)
and the map parameters, train (in a background thread, on the Dask cluster
given as ``client=``) while the QE/TE curves grow (Cancel stops it), then
look at the
U-matrix, hits, label map, the isometric labels + hits view and, for a
tapped unit, its prototype and member spectra; export GUASOM JSON, or save the
per-spectrum table (each spectrum's best-matching unit, distance and unit label)
in the user's archive. All the science is `vanotebook.som`; this module only
wires widgets to it.
"""

from __future__ import annotations

import io
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import panel as pn
import param

from ..som import SOM, hits_figure, isometric_figure, label_figure, neuron_figure, umatrix_figure
from ._page import CANCELLED, Run

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = ["SOMDashboard"]


class SOMDashboard(pn.viewable.Viewer):
    """A Panel dashboard for `vanotebook.som.SOM`.

    Set the parameters (or use the widgets), call `train_map` (the "Train"
    button; `cancel` stops it), then `unit` picks the neuron whose spectra are
    shown; `export_json` gives the GUASOM JSON, `spectra_table` each spectrum's
    unit and `save_to_archive` keeps that table in an archive.

    Parameters
    ----------
    client : distributed.Client, optional
        Train on this cluster (`vanotebook.som.SOM.fit`); None trains in this process.
    """

    source = param.Selector(default="demo spectra", objects=["demo spectra", "table"])
    n_spectra = param.Integer(default=20_000, bounds=(100, 163_919),
                              doc="Demo spectra to draw (163,919 is the full set).")
    table_path = param.String(default="", doc="A parquet/FITS/VOTable/ECSV table file.")
    columns = param.String(default="flux", doc="Feature columns, comma-separated (or one 2-D).")
    label_column = param.String(default="label", doc="Class column for the label map.")
    rows = param.Integer(default=16, bounds=(2, 64))
    cols = param.Integer(default=16, bounds=(2, 64))
    topology = param.Selector(default="rectangular", objects=["rectangular", "hexagonal"])
    periodic = param.Boolean(default=False)
    neighbourhood = param.Selector(default="gaussian", objects=["gaussian", "bubble"])
    radius0 = param.Number(default=9.0, bounds=(0.1, 64))
    radius_decay = param.Number(default=16.0, bounds=(0.1, 1e6))
    n_epochs = param.Integer(default=45, bounds=(1, 500))
    init = param.Selector(default="data", objects=["data", "pca", "random"])
    seed = param.Integer(default=0, bounds=(0, None))
    scale = param.Selector(default="linear", objects=["linear", "log", "sqrt"])
    clip = param.Range(default=(1.0, 99.0), bounds=(0.0, 100.0))
    unit = param.Integer(default=None, allow_None=True, doc="The neuron whose spectra are shown.")
    history = param.List(default=[], doc="QE/TE per epoch of the current training.")
    status = param.String(default="Choose data and map parameters, then Train.")
    running = param.Boolean(default=False)
    version = param.Integer(default=0, doc="Bumped when a new map is ready.")
    train = param.Action(lambda self: self.train_map(), label="Train")

    def __init__(self, *, client=None, **params: Any) -> None:
        super().__init__(**params)
        self.som: SOM | None = None
        self._client = client
        self._run: Run | None = None  # the current training (`_page.Run`)
        self._x: np.ndarray | None = None
        self._y: np.ndarray | None = None
        self._wavelength: np.ndarray | None = None
        self._bmu: np.ndarray | None = None
        self._distance: np.ndarray | None = None  # of each sample to its BMU's prototype
        self._rows: Any = None  # the input's own 1-D columns, one row per sample
        self._feature_unit: str | None = None
        self._thread: threading.Thread | None = None
        self._progress = pn.indicators.Progress(value=0, max=100, width=300, visible=False)

    # ------------------------------------------------------------------ data and work
    def load_data(self) -> tuple[Any, np.ndarray | None, np.ndarray | None]:
        """The training samples, their classes and a wavelength axis (or None)."""
        x, y, wl, _rows, _unit = self._load()
        return x, y, wl

    def _load(self) -> tuple[Any, np.ndarray | None, np.ndarray | None, Any, str | None]:
        """`load_data`, plus each sample's own 1-D columns (ids, positions, class) and the
        features' unit (None unless they share one)."""
        if self.source == "demo spectra":
            from ..sky import make_spectra

            s = make_spectra(self.n_spectra, seed=self.seed)
            return s.flux, s.label, s.wavelength, _scalar_columns(s.to_table(), ()), None
        from ..io import read_catalogue

        table = read_catalogue(self.table_path)
        cols = [c.strip() for c in self.columns.split(",") if c.strip()]
        missing = [c for c in cols if c not in table.colnames]
        if missing or not cols:
            msg = f"columns {missing or cols} not in the table (has {table.colnames[:20]})"
            raise ValueError(msg)
        parts = [np.asarray(table[c], dtype=np.float32) for c in cols]
        x = np.column_stack([p.reshape(len(p), -1) for p in parts])
        y = np.asarray(table[self.label_column]) if self.label_column in table.colnames else None
        wl = table.meta.get("wavelength_nm")
        units = {str(getattr(table[c], "unit", None) or "") for c in cols}
        unit = units.pop() if len(units) == 1 else None
        return (x, y, None if wl is None else np.asarray(wl), _scalar_columns(table, cols),
                unit or None)

    def _map(self) -> SOM:
        return SOM((self.rows, self.cols), topology=self.topology, periodic=self.periodic,
                   neighbourhood=self.neighbourhood, radius0=self.radius0,
                   radius_decay=self.radius_decay, n_epochs=self.n_epochs, init=self.init,
                   seed=self.seed)  # fmt: skip

    def _on_epoch(self, run: Run, entry: dict[str, Any]) -> None:
        """`SOM.fit`'s progress callback (the training thread); a cancel stops it here."""
        run.check()

        def update() -> None:
            self.history = [*self.history, entry]
            self._progress.value = int(100 * entry["epoch"] / self.n_epochs)
            self.status = f"epoch {entry['epoch']}/{self.n_epochs}: QE {entry['qe']:.4g}"

        run.report(update)

    def _work(self, run: Run) -> None:
        try:
            client = run.connect()
            x, y, wl, rows, unit = self._load()
            som = self._map().fit(x, client=client,
                                  progress=lambda entry: self._on_epoch(run, entry))
            run.check()
            if y is not None:
                som.label(x, y)
            bmu, distance = _members(som, x)
        except Exception as exc:  # shown in the UI, never raised into the event loop
            message = f"Failed: {exc}"

            def failed() -> None:
                self.status = message
                self.running = False
                self._progress.visible = False

            run.report(failed, last=True)
            return
        finally:
            run.close()

        def done() -> None:
            self.som, self._x, self._y, self._wavelength, self._bmu = som, x, y, wl, bmu
            self._distance, self._rows, self._feature_unit = distance, rows, unit
            self.unit = int(np.argmax(som.train_hits))
            self.running = False
            self._progress.visible = False
            self.status = (f"Trained: QE {som.history['qe'][-1]:.4g}, "
                           f"TE {som.history['te'][-1]:.3f}"
                           + (f", label purity {som.labels.purity_overall:.3f}"
                              if som.labels is not None else ""))  # fmt: skip
            self.version += 1

        run.report(done, last=True)

    def train_map(self, *, blocking: bool = False) -> None:
        """Train a new map with the current parameters (in a background thread)."""
        if self.running:
            return
        self.running = True
        self.history = []
        self._progress.value, self._progress.visible = 0, True
        self.status = "Training..."
        run = self._run = Run(self._client)
        if blocking:
            run.doc = None  # this thread makes the changes, at once
            self._work(run)
        else:
            self._thread = threading.Thread(target=self._work, args=(run,), daemon=True)
            self._thread.start()

    def cancel(self) -> None:
        """Stop the current training: its tasks leave the cluster, the last map stays."""
        if self._run is not None:
            self._run.cancel(self._cancelled)

    def _cancelled(self) -> None:
        self.running, self.status, self._progress.visible = False, CANCELLED, False

    def export_json(self) -> io.BytesIO:
        """The current map (with labels and per-sample BMUs) as GUASOM JSON bytes."""
        if self.som is None:
            msg = "train a map before exporting it"
            raise RuntimeError(msg)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "som.json"
            self.som.to_guasom(path, self._x)
            return io.BytesIO(path.read_bytes())

    def spectra_table(self) -> Table:
        """One row per training sample: where the current map puts it.

        Returns
        -------
        astropy.table.Table
            The input's own 1-D columns (identifiers, positions, class; not the
            features), then ``input_row`` (the sample's row in the input), ``bmu``
            (its best-matching unit, ``bmu_row * cols + bmu_col``), ``bmu_row``,
            ``bmu_col``, ``bmu_distance`` (Euclidean, to that unit's prototype,
            in the features' unit when they share one) and, for a labelled map,
            ``unit_label`` (the unit's majority class). An input column of one of
            these names is kept as ``<name>_input``.
        """
        from astropy.table import Table

        if self.som is None:
            msg = "train a map before asking where it puts the spectra"
            raise RuntimeError(msg)
        som, bmu = self.som, self._bmu
        ours: dict[str, Any] = {"input_row": np.arange(bmu.size, dtype=np.int64),
                                "bmu": bmu, "bmu_row": bmu // som.cols,
                                "bmu_col": bmu % som.cols, "bmu_distance": self._distance}
        if som.labels is not None:
            ours["unit_label"] = som.labels.labels.ravel()[bmu]
        out = Table() if self._rows is None else self._rows.copy(copy_data=False)
        for name, values in ours.items():
            if name in out.colnames:
                out.rename_column(name, f"{name}_input")
            out[name] = values
        out["bmu_distance"].unit = self._feature_unit
        return out

    def save_to_archive(self, archive: Any) -> str:
        """Add `spectra_table` to ``archive`` as a catalogue under a new name; what was saved.

        The archive keeps catalogues by sky position: the input needs RA/Dec
        columns (the usual names, `vanotebook.io.guess_coordinates`); the demo
        spectra have none and are refused with a message. The maps themselves
        (U-matrix, hits, labels) have no sky coordinates, so the archive, which
        holds only images with a celestial WCS, cannot keep them: they go out
        as GUASOM JSON (`export_json`). The description says how the map was
        made (its provenance); the archive records the saving itself.
        """
        from ..io import guess_coordinates
        from ._help import archive_name, made_by

        table = self.spectra_table()
        ra, dec = guess_coordinates(table.colnames)
        if ra is None:
            msg = ("the archive keeps catalogues by sky position, and these spectra have no "
                   "RA/Dec columns (the demo spectra have none): train on a table with "
                   "positions, or export the map as GUASOM JSON")
            raise ValueError(msg)
        som = self.som
        what = "demo spectra" if self.source == "demo spectra" else Path(self.table_path).name
        name = archive_name(archive, f"som_{Path(what).stem}_{som.rows}x{som.cols}")
        cat = archive.add_catalogue(
            name, table, ra=ra, dec=dec,
            description=(f"best-matching units of {len(table)} spectra ({what}) on a "
                         f"{som.rows}x{som.cols} {som.topology} SOM, QE "
                         f"{som.history['qe'][-1]:.4g}, TE {som.history['te'][-1]:.3f}; "
                         f"{made_by(som.provenance)}"))
        return f"catalogue {name!r} ({cat.n_rows} spectra)"

    # ------------------------------------------------------------------ views
    def _curves(self):
        from bokeh.plotting import figure

        # by epoch, the latest entry of each: epochs reported out of order (or twice)
        # drew a line doubling back on itself, which read as two curves (#13 item 10)
        by_epoch = {h["epoch"]: h for h in self.history}
        epochs = sorted(by_epoch)
        fig = figure(title="Convergence", width=420, height=260, x_axis_label="epoch",
                     y_axis_label="QE", tools="pan,wheel_zoom,reset,save")
        fig.line(epochs, [by_epoch[e]["qe"] for e in epochs], color="navy", legend_label="QE")
        fig.line(epochs, [by_epoch[e]["te"] for e in epochs], color="orange", legend_label="TE")
        return fig

    @param.depends("history")
    def curves(self):
        """QE and TE per epoch, updated while training."""
        return pn.pane.Bokeh(self._curves())

    def _tap(self, fig):
        source = fig.renderers[0].data_source

        def picked(attr, old, new) -> None:
            if new:
                self.unit = int(source.data["unit"][new[0]])

        source.selected.on_change("indices", picked)
        return fig

    def figures(self) -> dict[str, Any]:
        """The current Bokeh figures by name (empty before training)."""
        if self.som is None:
            return {}
        som = self.som
        figs = {"U-matrix": umatrix_figure(som, clip=tuple(self.clip), scale=self.scale),
                "Hits": hits_figure(som, scale=self.scale)}
        if som.labels is not None:
            figs["Labels"] = label_figure(som)
            figs["Labels + hits"] = isometric_figure(som)
        if self.unit is not None:
            figs["Neuron"] = neuron_figure(som, self.unit, self._x, bmu=self._bmu,
                                           wavelength=self._wavelength)
        return figs

    @param.depends("version", "scale", "clip")
    def maps(self):
        """Tabs with the map views; tap a unit to see its spectra."""
        figs = self.figures()
        if not figs:
            return pn.pane.Markdown("No map yet.")
        figs.pop("Neuron", None)
        return pn.Tabs(*[(name, pn.pane.Bokeh(self._tap(f))) for name, f in figs.items()])

    @param.depends("version", "unit")
    def neuron(self):
        """The selected unit's prototype and member spectra."""
        if self.som is None or self.unit is None:
            return pn.pane.Markdown("Tap a unit to see its spectra.")
        return pn.pane.Bokeh(self.figures()["Neuron"])

    def __panel__(self):
        from ._help import with_help

        return with_help(self, self._layout())

    def _layout(self):
        from ._help import archive_save, result_download, run_controls, status_pane

        data = pn.Param(self, parameters=["source", "n_spectra", "table_path", "columns",
                                          "label_column"], show_name=False)
        grid = pn.Param(self, parameters=["rows", "cols", "topology", "periodic",
                                          "neighbourhood", "radius0", "radius_decay",
                                          "n_epochs", "init", "seed"],
                        show_name=False)  # fmt: skip
        view = pn.Param(self, parameters=["scale", "clip"], show_name=False)
        download = result_download(self, self.export_json, "som.json", "Export GUASOM JSON",
                                   ready=lambda: self.som is not None)
        save = archive_save(self, self.save_to_archive, ready=lambda: self.som is not None)
        train = run_controls(self, pn.widgets.Button.from_param(self.param.train))
        side = pn.Column("### Data", data, "### Map", grid, train, self._progress,
                         status_pane(self), "### View", view, download, save, width=320)
        return pn.Row(side, pn.Column(self.curves, self.maps), self.neuron)


def _scalar_columns(table: Any, features: Any) -> Any:
    """The 1-D plain columns of ``table`` that are not ``features`` (ids, positions, class)."""
    from astropy.table import Column, Table

    keep = [c for c in table.colnames if c not in features and isinstance(table[c], Column)
            and table[c].ndim == 1 and table[c].dtype.kind in "biufUS"]
    return Table(table, copy=False)[keep] if keep else None


def _members(som: SOM, x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's best-matching unit and its distance to that unit's prototype."""
    ranked = som.outliers(x, len(x))  # every sample, ranked: index, bmu, error
    order = np.asarray(ranked["index"], np.int64)
    bmu, distance = np.empty(order.size, np.int64), np.empty(order.size, np.float64)
    bmu[order], distance[order] = ranked["bmu"], ranked["error"]
    return bmu, distance
