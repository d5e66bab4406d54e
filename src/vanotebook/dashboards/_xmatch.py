"""`XmatchDashboard`: choose two catalogues, set the radius, match on the cluster, inspect.

No science here: the dashboard calls `vanotebook.xmatch.crossmatch` and
`vanotebook.sky.catalogue_pair` only. The match runs in a worker thread (which
submits to the Dask cluster when inputs are lazy), so the Panel event loop is
never blocked; a progress indicator shows while it runs. The sky plot uses
Bokeh's WebGL backend, which stays responsive with millions of points.
"""

from __future__ import annotations

import io
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import astropy.units as u
import numpy as np
import panel as pn
import param

from ..xmatch import HOWS, crossmatch

__all__ = ["XmatchDashboard"]

_MAX_PLOT = 2_000_000


class XmatchDashboard(pn.viewable.Viewer):
    """Cross-match two catalogues and look at the result.

    Parameters
    ----------
    left, right : catalogue, optional
        Anything `crossmatch` accepts; None uses the demo pair (``demo_rows`` left rows).
    """

    demo_rows = param.Integer(default=20_000, bounds=(100, 5_000_000),
                              doc="Rows of the demo left catalogue")
    radius_arcsec = param.Number(default=1.0, bounds=(0.01, 3600), doc="Match radius [arcsec]")
    how = param.Selector(default="nearest", objects=list(HOWS))
    k = param.Integer(default=1, bounds=(1, 100))
    status = param.String(default="ready")
    running = param.Boolean(default=False)
    n_pairs = param.Integer(default=0)
    run = param.Action(lambda self: self.start(), label="Match")

    def __init__(self, left: Any = None, right: Any = None, *, client=None, **params):
        super().__init__(**params)
        self._left, self._right, self._client = left, right, client
        self._pool = ThreadPoolExecutor(max_workers=1)
        self.result = None
        self.future: Future | None = None
        self._tables: tuple[Any, Any] | None = None

    # ---------------------------------------------------------------- actions
    def catalogues(self):
        """The two input catalogues (the demo pair when none were given)."""
        if self._left is not None and self._right is not None:
            return self._left, self._right
        if self._tables is None or len(self._tables[0]) != self.demo_rows:
            from ..sky import catalogue_pair

            self._tables = catalogue_pair(self.demo_rows, radius=0.5).to_tables()
        return self._tables

    def upload(self, left: Any = None, right: Any = None) -> None:
        """Use these catalogues (Tables, DataFrames, paths, or bytes of a parquet/FITS upload)."""
        def parse(obj):
            if isinstance(obj, bytes):
                from astropy.table import Table

                fmt = "parquet" if obj[:4] == b"PAR1" else "fits"
                return Table.read(io.BytesIO(obj), format=fmt)
            return obj
        if left is not None:
            self._left = parse(left)
        if right is not None:
            self._right = parse(right)

    def _work(self):
        left, right = self.catalogues()
        return crossmatch(left, right, radius=self.radius_arcsec * u.arcsec, how=self.how,
                          k=self.k, client=self._client)

    def start(self) -> Future:
        """Start the match in a worker thread; returns its future."""
        self.running, self.status = True, "matching..."
        self.future = self._pool.submit(self._work)
        self.future.add_done_callback(self._done)
        return self.future

    def _done(self, future: Future) -> None:
        try:
            self.result = future.result()
        except Exception as exc:  # shown to the user, not raised in the UI thread
            self.result, self.n_pairs = None, 0
            self.status = f"error: {exc}"
        else:
            self.n_pairs = len(self.result)
            q = self.result.meta.get("completeness")
            self.status = f"{self.n_pairs} pairs (fitted completeness {q:.2f})" if q == q else (
                f"{self.n_pairs} pairs")
        finally:
            self.running = False

    def download(self) -> io.BytesIO:
        """The result as ECSV bytes (for a `pn.widgets.FileDownload`)."""
        buf = io.StringIO()
        if self.result is None:
            return io.BytesIO(b"")
        table = self.result.copy(copy_data=False)
        table.meta.pop("provenance", None)
        table.write(buf, format="ascii.ecsv")
        return io.BytesIO(buf.getvalue().encode())

    # ---------------------------------------------------------------- views
    def sky_data(self) -> dict[str, np.ndarray]:
        """Positions of matched and unmatched left sources for the sky plot."""
        left, _ = self.catalogues()
        if not hasattr(left, "colnames") or self.result is None:
            return {"ra": np.zeros(0), "dec": np.zeros(0), "matched": np.zeros(0, bool)}
        ids = left["source_id"] if "source_id" in left.colnames else None
        ra, dec = np.asarray(left["ra"])[:_MAX_PLOT], np.asarray(left["dec"])[:_MAX_PLOT]
        key = f"source_id{'_left'}"
        if ids is not None and key in self.result.colnames:
            matched = np.isin(np.asarray(ids)[:_MAX_PLOT], np.asarray(self.result[key]))
        else:
            matched = np.zeros(ra.size, bool)
        return {"ra": ra, "dec": dec, "matched": matched}

    @param.depends("n_pairs", "status")
    def _sky(self):
        from bokeh.plotting import figure

        d = self.sky_data()
        fig = figure(height=400, width=450, output_backend="webgl", title="sky",
                     x_axis_label="ra [deg]", y_axis_label="dec [deg]")
        fig.x_range.flipped = True
        m = d["matched"]
        fig.scatter(d["ra"][~m], d["dec"][~m], size=2, color="grey", alpha=0.4,
                    legend_label="unmatched")
        fig.scatter(d["ra"][m], d["dec"][m], size=2, color="crimson", legend_label="matched")
        return pn.pane.Bokeh(fig)

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

    @param.depends("n_pairs", "status")
    def _table(self):
        if self.result is None:
            return pn.pane.Markdown("No result yet.")
        df = self.result[:10_000].to_pandas()
        return pn.widgets.Tabulator(df, pagination="remote", page_size=20, height=400,
                                    disabled=True)

    def __panel__(self):
        controls = pn.Column(
            pn.widgets.IntInput.from_param(self.param.demo_rows),
            pn.widgets.FloatInput.from_param(self.param.radius_arcsec),
            pn.widgets.Select.from_param(self.param.how),
            pn.widgets.IntInput.from_param(self.param.k),
            pn.widgets.Button.from_param(self.param.run),
            pn.indicators.LoadingSpinner(value=self.param.running, size=30),
            pn.pane.Str(self.param.status),
            pn.widgets.FileDownload(callback=self.download, filename="crossmatch.ecsv"),
        )
        return pn.Row(controls, pn.Column(self._sky, self._histograms), self._table)
