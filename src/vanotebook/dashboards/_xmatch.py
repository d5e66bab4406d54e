"""`XmatchDashboard`: choose two catalogues, set the radius, match on the cluster, inspect.

No science here: the dashboard calls `vanotebook.xmatch.crossmatch`,
`vanotebook.io` (reading, coordinate columns) and
`vanotebook.sky.catalogue_pair` only. The match runs in a worker thread, which
submits it to the Dask cluster when there is one (lazy inputs partition by
partition, in-memory tables as one task), so the Panel event loop is never
blocked and the server process does no matching; a progress bar advances as
partitions finish, and Cancel stops a match and takes its tasks off the cluster
(`_page.Run`). Catalogues come from the demo pair or from uploads (FITS,
VOTable, ECSV, CSV, TSV or parquet); the RA/Dec columns of an upload are
guessed from the usual names (``RAJ2000``, ``ALPHA_J2000``, ...) and can be
picked. The sky plot uses Bokeh's WebGL backend, which stays responsive with
millions of points; rows selected in the result table are highlighted on it.
"""

from __future__ import annotations

import io
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import panel as pn
import param

from ..xmatch import HOWS, crossmatch
from ._page import CANCELLED, Run

__all__ = ["XmatchDashboard"]

_MAX_PLOT = 2_000_000
_MAX_TABLE = 10_000
#: Pairs a match started here may test (about 10 s and 2 GB on 2 cores); more is refused
#: with a message (the Jobs tab runs bigger matches in the background).
MAX_PAIRS = 2e7
_UPLOAD_FORMATS = ".fits,.fit,.fits.gz,.xml,.vot,.votable,.ecsv,.csv,.tsv,.parquet"


class XmatchDashboard(pn.viewable.Viewer):
    """Cross-match two catalogues and look at the result.

    Parameters
    ----------
    left, right : catalogue, optional
        Anything `crossmatch` accepts; None uses the demo pair (``demo_rows`` left rows).
    client : distributed.Client, optional
        The cluster to match on (default: the current client, else in-process).
    archive : Archive or path, optional
        Where ``picker`` (an `ArchivePicker`) finds catalogues by region
        (default: the shared archive); `use_archive` takes its rows as one side.
    """

    demo_rows = param.Integer(default=20_000, bounds=(100, 5_000_000),
                              doc="Rows of the demo left catalogue")
    radius_arcsec = param.Number(default=1.0, bounds=(0.01, 3600), doc="Match radius [arcsec]")
    how = param.Selector(default="nearest", objects=list(HOWS))
    k = param.Integer(default=1, bounds=(1, 100))
    status = param.String(default="ready")
    running = param.Boolean(default=False)
    n_pairs = param.Integer(default=0)
    progress_done = param.Integer(default=0, doc="Partitions matched so far")
    progress_total = param.Integer(default=1, doc="Partitions to match")
    sources = param.String(default="demo pair", doc="Where the catalogues come from")
    selection = param.List(default=[], item_type=int, doc="Selected rows of the result table")
    left_ra = param.Selector(default="ra", objects=["ra"], doc="RA column of the left catalogue")
    left_dec = param.Selector(default="dec", objects=["dec"],
                              doc="Dec column of the left catalogue")
    right_ra = param.Selector(default="ra", objects=["ra"],
                              doc="RA column of the right catalogue")
    right_dec = param.Selector(default="dec", objects=["dec"],
                               doc="Dec column of the right catalogue")
    run = param.Action(lambda self: self.start(), label="Match")

    def __init__(self, left: Any = None, right: Any = None, *, client=None,
                 archive: Any = None, **params):
        from ._archive import ArchivePicker

        super().__init__(**params)
        self.picker = ArchivePicker(archive)
        self._origin = {"left": "demo", "right": "demo"}
        self._left, self._right, self._client = left, right, client
        if left is not None or right is not None:
            self.sources = "given catalogues"
        self._pool = ThreadPoolExecutor(max_workers=1)
        self.result = None
        self._result_sources = ""  # where the catalogues of ``result`` came from
        self.future: Future | None = None
        self._run: Run | None = None  # the current match (`_page.Run`)
        self._tables: tuple[Any, Any] | None = None
        self.left_file = pn.widgets.FileInput(accept=_UPLOAD_FORMATS, label="left catalogue")
        self.right_file = pn.widgets.FileInput(accept=_UPLOAD_FORMATS, label="right catalogue")
        # an empty file reaches Panel as value None with its filename: watch both at once
        self.left_file.param.watch(lambda *e: self._uploaded("left", self.left_file),
                                   ["value", "filename"])
        self.right_file.param.watch(lambda *e: self._uploaded("right", self.right_file),
                                    ["value", "filename"])
        self.table = pn.widgets.Tabulator(None, pagination="remote", page_size=20, height=400,
                                          disabled=True, selectable="checkbox",
                                          sizing_mode="stretch_width")
        self.table.param.watch(self._selected, "selection")
        self._sources = None
        self._figure = None
        for side, table in (("left", left), ("right", right)):
            if hasattr(table, "colnames"):
                self._offer_columns(side, table)

    # ---------------------------------------------------------------- inputs
    def catalogues(self):
        """The two input catalogues (the demo pair when none were given), each with its
        chosen coordinate columns as ``ra``/``dec`` in degrees."""
        left, right = self._raw()
        return self._coordinates(left, "left"), self._coordinates(right, "right")

    def _coordinates(self, table: Any, side: str):
        """``table`` with the chosen RA/Dec columns named ``ra``/``dec``, in degrees."""
        ra, dec = getattr(self, f"{side}_ra"), getattr(self, f"{side}_dec")
        if not hasattr(table, "colnames") or (ra, dec) == ("ra", "dec"):
            return table
        from .._errors import VanotebookInputError
        from ..io import coordinates_in_degrees

        for name in (ra, dec):
            if name not in table.colnames:
                raise VanotebookInputError(f"{side}_{'ra' if name == ra else 'dec'}",
                                           f"a column of the {side} catalogue", name)
        out = table.copy(copy_data=False)
        for name in ("ra", "dec"):
            if name in out.colnames and name not in (ra, dec):
                out.rename_column(name, f"{name}_original")
        out.rename_columns([ra, dec], ["ra", "dec"])
        return coordinates_in_degrees(out, "ra", "dec")

    def _raw(self):
        if self._left is not None and self._right is not None:
            return self._left, self._right
        if self._tables is None or len(self._tables[0]) != self.demo_rows:
            from ..sky import catalogue_pair

            self._tables = catalogue_pair(self.demo_rows, radius=0.5).to_tables()
        left, right = self._tables
        return (self._left if self._left is not None else left,
                self._right if self._right is not None else right)

    def upload(self, left: Any = None, right: Any = None, *, left_filename: str | None = None,
               right_filename: str | None = None) -> None:
        """Use these catalogues: anything `crossmatch` accepts, or the bytes of an upload.

        Bytes are read by `vanotebook.io.parse_catalogue` from a temporary file
        named like ``*_filename`` (its extension gives the format: FITS,
        VOTable, ECSV or parquet); without a name, parquet and FITS are told
        apart by their first bytes.
        """
        for side, table, filename in (("left", left, left_filename),
                                      ("right", right, right_filename)):
            if table is None:
                continue
            table = self._parse(table, filename, side)
            setattr(self, f"_{side}", table)
            self._origin[side] = "uploaded"
            self._offer_columns(side, table)
        self._describe()

    def _offer_columns(self, side: str, table: Any) -> None:
        """The coordinate pickers of ``side``: its columns, the usual names chosen."""
        from ..io import guess_coordinates

        columns = [str(c) for c in getattr(table, "colnames", None) or
                   list(getattr(table, "columns", []))]
        ra, dec = guess_coordinates(columns)
        for which, guess in (("ra", ra), ("dec", dec)):
            name = f"{side}_{which}"
            objects = columns or [which]
            self.param[name].objects = objects
            setattr(self, name, guess if guess is not None else objects[0])
        if ra is None:
            self.status = (f"{side} catalogue: no usual RA/Dec column names among "
                           f"{', '.join(columns[:8])}; choose them in the pickers")

    def _describe(self) -> None:
        self.sources = ", ".join(f"{side}: {self._origin[side]}" for side in ("left", "right"))

    @staticmethod
    def _parse(obj: Any, filename: str | None, side: str):
        if not isinstance(obj, bytes | bytearray):
            return obj
        from .._errors import VanotebookInputError
        from ..io import _table_format, read_catalogue

        if filename:
            name = Path(filename).name
        else:
            name = "upload.parquet" if bytes(obj[:4]) == b"PAR1" else "upload.fits"
        shown = filename or "the upload"
        if not obj:
            raise VanotebookInputError(side, "a catalogue file with rows", f"{shown}: empty")
        if _table_format(Path(name)) is None:
            raise VanotebookInputError(side, "a FITS, VOTable, ECSV, CSV, TSV or parquet file",
                                       shown)
        with tempfile.TemporaryDirectory(prefix="vanotebook-upload-") as tmp:
            path = os.path.join(tmp, name)
            with open(path, "wb") as fh:
                fh.write(obj)
            try:
                table = read_catalogue(path)
            except Exception as exc:  # named by the user's file, never the server's path
                kind = name.rsplit(".", 1)[-1]
                raise VanotebookInputError(side, f"a readable catalogue ({kind})",
                                           f"{shown}: {type(exc).__name__}") from exc
        if len(table) == 0:
            raise VanotebookInputError(side, "a catalogue with rows", f"{shown}: no rows")
        return table

    def use_archive(self, side: str) -> None:
        """Take the rows of the picker's catalogue inside its cone as the ``side`` catalogue."""
        from .._errors import check_choice

        check_choice("side", side, ("left", "right"))
        try:
            rows = self.picker.catalogue_rows()
        except Exception as exc:  # shown to the user, not raised in the UI
            self.status = f"error: {exc}"
            return
        self.upload(**{side: rows})
        self._origin[side] = f"archive {self.picker.catalogue}"
        self._describe()
        self.status = (f"{side} catalogue: {len(rows):,} rows of {self.picker.catalogue!r} "
                       f"within {self.picker.radius_arcmin:g}'")

    def _uploaded(self, side: str, widget) -> None:
        if widget.value is None and not widget.filename:  # cleared
            return
        # the browser's FileInput gives an empty file as None (with its name): refused
        data = widget.value if widget.value is not None else b""
        try:
            self.upload(**{side: data, f"{side}_filename": widget.filename})
        except Exception as exc:  # shown to the user, not raised in the UI
            self.status = f"error reading {side} upload {widget.filename}: {exc}"
        else:
            self.status = f"{side} catalogue: {widget.filename}"

    # ---------------------------------------------------------------- actions
    def _progress(self, done: int, total: int) -> None:
        self.progress_total = max(int(total), 1)
        self.progress_done = int(done)
        if self.running:
            self.status = f"matching... {done}/{total} partitions"

    def _work(self, client=None, progress=None):
        """Match (in a worker thread): on the cluster when there is one (``client``, the
        run's own), in this process only without a cluster.

        In-memory tables go to the cluster once (scattered) and are matched there as one
        task of ``client``, so that closing it (Cancel) takes the match off the cluster.
        """
        left, right = self.catalogues()
        options = {"radius": self.radius_arcsec * u.arcsec, "how": self.how, "k": self.k}
        client = self._client if client is None else client
        if client is not None and hasattr(left, "colnames") and hasattr(right, "colnames"):
            if progress is not None:
                progress(0, 1)
            tables = client.scatter([left, right], hash=False)
            result = client.submit(crossmatch, *tables, **options, pure=False).result()
            if progress is not None:
                progress(1, 1)
            return result
        return crossmatch(left, right, **options, client=client, progress=progress)

    def start(self) -> Future | None:
        """Start the match in a worker thread; returns its future (None when refused).

        A match that would test more than `MAX_PAIRS` pairs (`estimate_pairs`)
        is refused before any work, with a message that says what to change.
        `cancel` stops it.
        """
        from ..cluster import get_client
        from ..xmatch import estimate_pairs

        if self.running:
            return None
        try:
            left, right = self.catalogues()
            in_memory = hasattr(left, "colnames") and hasattr(right, "colnames")
            pairs = (estimate_pairs(left, right, radius=self.radius_arcsec * u.arcsec)
                     if in_memory else 0.0)
        except Exception as exc:  # shown to the user, not raised in the UI
            self.status = f"error: {exc}"
            return None
        if pairs > MAX_PAIRS:
            lo, hi = 1e-3, self.radius_arcsec  # the largest radius under the limit, bisected
            for _ in range(30):
                mid = (lo * hi) ** 0.5
                if estimate_pairs(left, right, radius=mid * u.arcsec) > MAX_PAIRS:
                    hi = mid
                else:
                    lo = mid
            self.status = (f"refused: a {self.radius_arcsec:g}\" match of {len(left):,} x "
                           f"{len(right):,} rows would test about {pairs:.1e} pairs (the limit "
                           f"here is {MAX_PAIRS:.0e}); use a radius under "
                           f"{lo:.3g}\", or run it as a crossmatch job "
                           f"in the Jobs tab")
            return None
        # on the cluster when there is one (lazy tables partition by partition, in-memory
        # ones as one task); in this process only without a cluster
        self._run = Run(get_client(self._client))
        self.running, self.status = True, "matching..."
        self.progress_done, self.selection = 0, []
        self.future = self._pool.submit(self._match, self._run, self.sources)
        return self.future

    def cancel(self) -> None:
        """Stop the current match: its tasks leave the cluster, the last result stays."""
        if self._run is not None:
            self._run.cancel(self._cancelled)

    def _cancelled(self) -> None:
        self.running, self.status = False, CANCELLED

    def _match(self, run: Run, sources: str = ""):
        """The job (a worker thread): match, then update the state (before the future
        resolves, outside a server), unless the run was cancelled. ``sources`` says
        where the catalogues came from when it started."""
        def progress(done: int, total: int) -> None:
            run.check()
            run.report(lambda: self._progress(done, total))

        try:
            result = self._work(run.connect(), progress)
        except Exception as exc:  # shown to the user, not raised in the UI thread
            message = f"error: {exc}"
            run.report(lambda: self._show(None, message), last=True)
            return None
        finally:
            run.close()
        q = result.meta.get("completeness")
        message = f"{len(result)} pairs (fitted completeness {q:.2f})" if q == q else (
            f"{len(result)} pairs")
        run.report(lambda: self._show(result, message, sources), last=True)
        return result

    def _show(self, result, message: str, sources: str = "") -> None:
        self.result, self.n_pairs = result, 0 if result is None else len(result)
        self._result_sources = sources
        self.status, self.running = message, False
        self._refresh()

    def download(self) -> io.BytesIO:
        """The result as ECSV bytes (for a `pn.widgets.FileDownload`)."""
        buf = io.StringIO()
        if self.result is None:
            return io.BytesIO(b"")
        table = self.result.copy(copy_data=False)
        table.meta.pop("provenance", None)
        table.write(buf, format="ascii.ecsv")
        return io.BytesIO(buf.getvalue().encode())

    def save_to_archive(self, archive: Any) -> str:
        """Add the pairs of the last match to ``archive`` as a catalogue; what was saved.

        Every column is kept with its unit (both sides' columns, ``separation`` in
        arcsec, ``probability``), placed at the left positions (``ra_left``,
        ``dec_left``), under a name no earlier save took (`archive_name`). Its
        description says what was matched and how (the match's provenance:
        radius, method, digest); the archive records the saving itself.
        """
        from ._help import archive_name, made_by

        origin = self._result_sources.replace("left: ", "").replace("right: ", "")
        name = archive_name(archive, "xmatch_" + "_".join(origin.split(", ")))
        q = self.result.meta.get("completeness", float("nan"))
        fitted = f", fitted completeness {q:.3f}" if q == q else ""
        cat = archive.add_catalogue(
            name, self.result, ra="ra_left", dec="dec_left",
            description=(f"cross-match pairs ({self._result_sources}){fitted}; "
                         f"{made_by(self.result.meta.get('provenance'))}"))
        return f"catalogue {name!r} ({cat.n_rows} pairs)"

    # ---------------------------------------------------------------- views
    def sky_data(self) -> dict[str, np.ndarray]:
        """Positions of matched and unmatched left sources for the sky plot."""
        left, _ = self.catalogues()
        if not hasattr(left, "colnames") or self.result is None:
            return {"ra": np.zeros(0), "dec": np.zeros(0), "matched": np.zeros(0, bool)}
        ra = np.asarray(left["ra"], float)[:_MAX_PLOT]
        dec = np.asarray(left["dec"], float)[:_MAX_PLOT]
        if "ra_left" in self.result.colnames and "dec_left" in self.result.colnames:
            # a left row is matched when its position is a pair's left position (the match
            # copies it as it is), whatever its id column is called or whether it has one
            pairs = {(float(a), float(b)) for a, b in zip(
                np.asarray(self.result["ra_left"], float),
                np.asarray(self.result["dec_left"], float), strict=True)}
            matched = np.fromiter(((float(a), float(b)) in pairs for a, b in
                                   zip(ra, dec, strict=True)), bool, count=ra.size)
        else:
            matched = np.zeros(ra.size, bool)
        return {"ra": ra, "dec": dec, "matched": matched}

    def highlight_data(self) -> dict[str, np.ndarray]:
        """Left and right positions of the selected result rows (highlighted on the sky)."""
        empty = {"ra": np.zeros(0), "dec": np.zeros(0)}
        if self.result is None or not self.selection:
            return empty
        rows = np.asarray([i for i in self.selection if 0 <= i < min(len(self.result),
                                                                     _MAX_TABLE)], int)
        ra, dec = [], []
        for suffix in ("_left", "_right"):
            if f"ra{suffix}" in self.result.colnames and f"dec{suffix}" in self.result.colnames:
                ra.append(np.asarray(self.result[f"ra{suffix}"], float)[rows])
                dec.append(np.asarray(self.result[f"dec{suffix}"], float)[rows])
        if not ra:
            return empty
        return {"ra": np.concatenate(ra), "dec": np.concatenate(dec)}

    def _selected(self, event) -> None:
        self.selection = [int(i) for i in event.new]

    @param.depends("selection", watch=True)
    def _refresh_highlight(self) -> None:
        if self._sources is not None:
            self._sources["highlight"].data = self.highlight_data()

    def _refresh(self) -> None:
        """Push the new result to the table and the sky plot's data sources."""
        self.table.value = None if self.result is None else self._table_frame()
        if self._sources is not None:
            d = self.sky_data()
            m = d["matched"]
            self._sources["unmatched"].data = {"ra": d["ra"][~m], "dec": d["dec"][~m]}
            self._sources["matched"].data = {"ra": d["ra"][m], "dec": d["dec"][m]}
            self._sources["highlight"].data = self.highlight_data()

    def _table_frame(self):
        table = self.result[:_MAX_TABLE].copy(copy_data=False)
        table.meta.clear()
        return table.to_pandas()

    def sky_figure(self):
        """The Bokeh sky plot (made once; its data sources follow the result and selection)."""
        if self._figure is None:
            from bokeh.models import ColumnDataSource
            from bokeh.plotting import figure

            self._sources = {k: ColumnDataSource({"ra": [], "dec": []})
                             for k in ("unmatched", "matched", "highlight")}
            fig = figure(height=400, width=450, output_backend="webgl", title="sky",
                         x_axis_label="ra [deg]", y_axis_label="dec [deg]")
            fig.x_range.flipped = True
            fig.scatter("ra", "dec", source=self._sources["unmatched"], size=2, color="grey",
                        alpha=0.4, legend_label="unmatched")
            fig.scatter("ra", "dec", source=self._sources["matched"], size=2, color="crimson",
                        legend_label="matched")
            fig.scatter("ra", "dec", source=self._sources["highlight"], size=10,
                        marker="circle", fill_alpha=0, line_color="gold", line_width=2,
                        legend_label="selected")
            self._figure = fig
            self._refresh()
        return self._figure

    @param.depends("n_pairs", "status")
    def _histograms(self):
        from bokeh.plotting import figure

        figs = []
        for col, unit in (("separation", "arcsec"), ("probability", "")):
            fig = figure(height=200, width=350, title=col, x_axis_label=unit)
            if self.result is not None and len(self.result):
                v = np.asarray(self.result[col], float)
                v = v[np.isfinite(v)]
                if v.size:
                    h, e = np.histogram(v, bins=40)
                    fig.quad(top=h, bottom=0, left=e[:-1], right=e[1:], color="steelblue")
            figs.append(pn.pane.Bokeh(fig))
        return pn.Column(*figs)

    def __panel__(self):
        from ._help import with_help

        return with_help(self, self._layout())

    def _layout(self):
        from ._help import (
            archive_save,
            number_input,
            result_download,
            run_controls,
            status_pane,
        )

        controls = pn.Column(
            pn.pane.Markdown("**Catalogues** (demo pair, or upload FITS, VOTable, ECSV, CSV, "
                             "TSV or parquet)"),
            self.left_file,
            pn.Row(pn.widgets.Select.from_param(self.param.left_ra, name="left RA", width=110),
                   pn.widgets.Select.from_param(self.param.left_dec, name="left Dec",
                                                width=110)),
            self.right_file,
            pn.Row(pn.widgets.Select.from_param(self.param.right_ra, name="right RA",
                                                width=110),
                   pn.widgets.Select.from_param(self.param.right_dec, name="right Dec",
                                                width=110)),
            pn.pane.Str(self.param.sources),
            number_input(self, "demo_rows"),
            number_input(self, "radius_arcsec"),
            pn.widgets.Select.from_param(self.param.how),
            number_input(self, "k"),
            run_controls(self, pn.widgets.Button.from_param(self.param.run)),
            pn.indicators.Progress(value=self.param.progress_done,
                                   max=self.param.progress_total, width=200),
            pn.indicators.LoadingSpinner(value=self.param.running, size=30),
            status_pane(self),
            result_download(self, self.download, "crossmatch.ecsv", "Download pairs (ECSV)",
                            ready=lambda: self.result is not None),
            archive_save(self, self.save_to_archive,
                         ready=lambda: self.result is not None and len(self.result) > 0),
        )
        left = pn.widgets.Button(label="left <- archive")
        right = pn.widgets.Button(label="right <- archive")
        left.on_click(lambda _event: self.use_archive("left"))
        right.on_click(lambda _event: self.use_archive("right"))
        picker = pn.Card(pn.Column(self.picker, pn.Row(left, right)),
                         title="Archive: catalogues by region", collapsed=True, width=560)
        return pn.Column(picker, pn.Row(
            controls, pn.Column(pn.pane.Bokeh(self.sky_figure()), self._histograms), self.table))
