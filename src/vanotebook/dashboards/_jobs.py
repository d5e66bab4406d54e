"""`JobsDashboard`: one's UWS jobs, with phase and progress, their results, and a form.

No science here, and no declarations of its own: the form of each pipeline
is made from the job registry (`vanotebook.jobs.PIPELINES`: kinds, units,
defaults, choices), and everything goes through `vanotebook.jobs.JobClient`,
so the service checks what is sent as it would from any client.
"""

from __future__ import annotations

from typing import Any

import panel as pn
import param

from ..jobs import PIPELINES, JobClient, JobError

__all__ = ["JobsDashboard"]

_FILE_TYPES = ".fits,.fit,.fz,.gz,.vot,.xml,.ecsv,.parquet,.csv,.json"


def _widget(name: str, spec) -> Any:
    label = f"{name} [{spec.unit}]" if spec.unit else name
    if spec.is_file:
        return pn.Column(
            pn.widgets.FileInput(label=label, accept=_FILE_TYPES,
                                 multiple=spec.kind == "files"),
            pn.widgets.TextInput(label=f"{name}: or a URL / archive reference",
                                 placeholder="archive:images?survey=radio"),
            name=name)
    if spec.kind == "bool":
        return pn.widgets.Checkbox(label=label, value=bool(spec.default))
    if spec.choices:
        return pn.widgets.Select(label=label, options=list(spec.choices),
                                 value=spec.default or spec.choices[0])
    # numbers as text: an empty box means the declared default, and the service's own
    # check names a bad value (a number widget would silently clamp or reset it)
    return pn.widgets.TextInput(label=label, value="" if spec.default is None else
                                str(spec.default), placeholder=spec.doc)


class JobsDashboard(pn.viewable.Viewer):
    """Submit pipelines as jobs and follow them.

    Parameters
    ----------
    client : JobClient, optional
        The job service (default: ``JobClient()``, the gateway's, as this user).
    """

    pipeline = param.Selector(default="detect", objects=list(PIPELINES))
    status = param.String(default="")
    selected = param.String(default="", doc="URL of the job shown below the list")
    submit = param.Action(lambda self: self.submit_job(), label="Submit")
    refresh_now = param.Action(lambda self: self.refresh(), label="Refresh")
    abort = param.Action(lambda self: self.abort_job(), label="Abort")
    delete = param.Action(lambda self: self.delete_job(), label="Delete")

    def __init__(self, client: JobClient | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.client = client if client is not None else JobClient()
        self.form = pn.Column(sizing_mode="stretch_width")
        self.widgets: dict[str, Any] = {}
        self.jobs: list = []
        self.table = pn.widgets.Tabulator(None, disabled=True, selectable=1, height=260,
                                          sizing_mode="stretch_width", show_index=False)
        self.table.param.watch(self._picked, "selection")
        self.results = pn.Column()
        self.message = pn.pane.Alert("", alert_type="light", visible=False,
                                     sizing_mode="stretch_width")
        self._build_form()
        self.param.watch(lambda e: self._build_form(), "pipeline")
        self._periodic = None

    # ---------------------------------------------------------------- the form
    def _build_form(self) -> None:
        spec = PIPELINES[self.pipeline]
        self.widgets = {name: _widget(name, p) for name, p in spec.params.items()}
        results = ", ".join(spec.results)
        self.form[:] = [pn.pane.Markdown(f"**{self.pipeline}**: {spec.doc}  \nResults: "
                                         f"{results}"), *self.widgets.values()]

    def set_value(self, name: str, value: Any, filename: str | None = None) -> None:
        """Fill in a form field: a value, a reference, or the bytes of an upload."""
        widget = self.widgets[name]
        if isinstance(widget, pn.Column):  # a file: FileInput, then the reference box
            upload, reference = widget.objects
            if isinstance(value, bytes | list):
                upload.filename = filename
                upload.value = value
            else:
                reference.value = str(value)
        else:
            widget.value = value

    def values(self) -> dict[str, Any]:
        """The form as `JobClient.submit` parameters (empty fields: the declared default)."""
        out: dict[str, Any] = {}
        for name, widget in self.widgets.items():
            if isinstance(widget, pn.Column):
                upload, reference = widget.objects
                if reference.value.strip():
                    out[name] = reference.value.strip()
                elif upload.value:
                    contents = upload.value if isinstance(upload.value, list) else \
                        [upload.value]
                    names = upload.filename if isinstance(upload.filename, list) else \
                        [upload.filename]
                    out[name] = [(n, c) for n, c in zip(names, contents, strict=True)]
            elif isinstance(widget, pn.widgets.TextInput):
                if widget.value.strip():
                    out[name] = widget.value.strip()
            else:
                out[name] = widget.value
        return out

    def _say(self, text: str, kind: str = "info") -> None:
        self.status = text
        self.message.object = text
        self.message.alert_type = kind
        self.message.visible = bool(text)

    def submit_job(self):
        """Send the form as a job of ``pipeline`` (started); the job, or None when refused."""
        try:
            job = self.client.submit(self.pipeline, **self.values())
        except (ValueError, JobError) as exc:  # named by the client or the service
            self._say(str(exc), "danger")
            return None
        self._say(f"submitted {self.pipeline} job {job.id}", "success")
        self.selected = job.url
        self.refresh()
        return job

    # ---------------------------------------------------------------- the list
    def refresh(self) -> None:
        """Read one's jobs (phase, progress) and the selected job's results."""
        import pandas as pd

        try:
            self.jobs = self.client.jobs()
            rows = []
            for job in self.jobs:
                root = job.document()
                ns = {"uws": "http://www.ivoa.net/xml/UWS/v1.0"}
                progress = root.find("uws:jobInfo/progress", ns)
                rows.append({"pipeline": job.pipeline, "job": job.id,
                             "phase": root.find("uws:phase", ns).text,
                             "progress": "" if progress is None else progress.text,
                             "created": root.find("uws:creationTime", ns).text})
        except JobError as exc:
            self._say(str(exc), "danger")
            return
        self.table.value = pd.DataFrame(rows, columns=["pipeline", "job", "phase",
                                                       "progress", "created"])
        self._show_results()

    def _picked(self, event) -> None:
        if event.new and event.new[0] < len(self.jobs):
            self.selected = self.jobs[event.new[0]].url
            self._show_results()

    def _job(self):
        return None if not self.selected else self.client.job(self.selected)

    def _show_results(self) -> None:
        job = self._job()
        if job is None:
            self.results[:] = []
            return
        try:
            phase, urls = job.phase, job.results
        except JobError:
            self.results[:] = [pn.pane.Markdown("the job is gone")]
            return
        items: list[Any] = [pn.pane.Markdown(f"**{job.pipeline} {job.id}**: {phase}")]
        if phase == "ERROR":
            items.append(pn.pane.Alert(job.error or "", alert_type="danger"))
        for name in urls:
            items.append(pn.widgets.FileDownload(
                callback=lambda name=name: self._fetch(job, name),
                filename=f"{job.id}_{name}", label=f"download {name}", color="primary"))
        self.results[:] = items

    @staticmethod
    def _fetch(job, name: str):
        import io

        return io.BytesIO(job.client._get(job.results[name]).content)

    def abort_job(self) -> None:
        """Abort the selected job."""
        self._act("abort")

    def delete_job(self) -> None:
        """Delete the selected job."""
        self._act("delete")

    def _act(self, what: str) -> None:
        job = self._job()
        if job is None:
            self._say("pick a job in the list first", "warning")
            return
        try:
            job.abort() if what == "abort" else job.delete()
        except JobError as exc:
            self._say(str(exc), "danger")
            return
        self._say(f"{what}ed job {job.id}" if what == "abort" else f"deleted job {job.id}")
        if what == "delete":
            self.selected = ""
        self.refresh()

    def __panel__(self):
        from ._help import with_help

        return with_help(self, self._layout())

    def _layout(self):
        if self._periodic is None and pn.state.curdoc is not None:
            self._periodic = pn.state.add_periodic_callback(self.refresh, period=3000)
        return pn.Column(
            pn.Row(pn.widgets.Select.from_param(self.param.pipeline),
                   pn.widgets.Button.from_param(self.param.submit, color="primary")),
            self.message, self.form,
            pn.Row(pn.widgets.Button.from_param(self.param.refresh_now),
                   pn.widgets.Button.from_param(self.param.abort),
                   pn.widgets.Button.from_param(self.param.delete)),
            self.table, self.results, sizing_mode="stretch_width")
