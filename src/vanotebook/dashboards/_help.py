"""What every dashboard says: its two opening lines, and why a number it was given is refused."""

from __future__ import annotations

import html

import panel as pn

__all__ = ["HELP", "archive_name", "archive_save", "made_by", "message_kind", "number_input",
           "result_download", "run_controls", "status_pane", "with_help"]

#: By dashboard class name. Two sentences each: what it does, what to try first.
HELP = {
    "MosaicDashboard": "**Mosaic** merges a survey's tiles (or images picked in the archive) "
    "onto one grid: reprojected, background-matched, co-added. Try: choose a survey, press "
    "*Run mosaic*, then *Detect sources on the mosaic*.",
    "DetectDashboard": "**Source detection** finds compact and extended sources, fits them, "
    "classifies their morphology (ellipses coloured by class) and gives each the probability "
    "that it is real. Try: press *Run detection* on the demo tile, hide classes in "
    "*Classes shown*, then click a row of the table or an ellipse on the image.",
    "XmatchDashboard": "**Cross-match** pairs two catalogues within a radius, with a "
    "probability per pair. Try: press *Match* on the demo pair, or upload two catalogues "
    "(FITS, VOTable, ECSV, CSV, TSV, parquet) and check their RA/Dec columns.",
    "SOMDashboard": "**Self-organising map** of spectra: hits, U-matrix and labels per unit, "
    "exported as GUASOM JSON. Try: press *Train* on the demo spectra, then tap a unit.",
    "SEDDashboard": "**SEDs** of compact sources with greybody fits (temperature, mass, "
    "luminosity, honest errors; upper limits censored). Try: press *Fit greybodies*, then "
    "pick a source on the map, in the table or in a diagram.",
    "CubeDashboard": "**Cube explorer**: moment maps beside the continuum, the spectrum and "
    "RA-v/Dec-v cuts at the cursor, a PV slice, a 3-D view. Try: press *Compute moments*, "
    "tap the map, tap a spectrum to pick a channel, draw a PV line with the poly-draw tool.",
    "JobsDashboard": "**Jobs** runs any pipeline as a UWS job on the gateway, in the "
    "background, and keeps its results. Try: pick a pipeline, fill its form, press *Submit*, "
    "then download the results when the phase is COMPLETED.",
    "HiPSViewer": "**Sky view**: the archive's HiPS images and catalogues in Aladin Lite, "
    "served from this gateway. Try: pick a HiPS and zoom in; catalogue sources load tile by "
    "tile.",
    "ArchivePicker": "**Choose inputs** from the archive: the images and catalogues in a "
    "cone, by band and survey. Try: press *Search*, select rows, then use them in the "
    "dashboard below.",
}


def with_help(viewer: object, layout: pn.viewable.Viewable) -> pn.Column:
    """``layout`` under its dashboard's two lines of help."""
    text = HELP[type(viewer).__name__]
    return pn.Column(pn.pane.Markdown(text, css_classes=["vn-help"], sizing_mode="stretch_width",
                                      margin=(0, 10)), layout)


def number_input(viewer: object, name: str, *, status: str = "status") -> pn.widgets.Widget:
    """A text box for the bounded number ``name`` of ``viewer`` that says why it refuses.

    The browser does not clamp it (no start/end): a value outside the
    parameter's bounds is refused by the parameter, the box goes back to the
    value in force, and ``viewer.<status>`` says what was expected and what
    came, instead of the silent snap-back of a clamped box.
    """
    import param

    spec = viewer.param[name]
    kind = pn.widgets.IntInput if isinstance(spec, param.Integer) else pn.widgets.FloatInput
    widget = kind(label=spec.label, value=getattr(viewer, name), description=spec.doc)

    def typed(event) -> None:
        if event.new == getattr(viewer, name):
            return
        try:
            setattr(viewer, name, event.new)
        except ValueError:
            lo, hi = spec.bounds or (None, None)
            want = ("a number" if lo is None and hi is None else
                    f"at least {lo}" if hi is None else f"at most {hi}" if lo is None else
                    f"between {lo} and {hi}")
            unit = f" ({spec.doc})" if spec.doc else ""
            setattr(viewer, status, f"error: {spec.label}{unit}: expected {want}, got "
                    f"{event.new}; kept {getattr(viewer, name)}")
            widget.value = getattr(viewer, name)

    widget.param.watch(typed, "value")
    viewer.param.watch(lambda event: setattr(widget, "value", event.new), name)
    return widget


def result_download(viewer: object, callback, filename: str, label: str, *,
                    ready) -> pn.viewable.Viewable:
    """A download button that stays disabled until ``ready()`` (there is a result to save).

    It follows the dashboard's ``status`` and ``running``: a button pressed before a run
    used to hand over an empty file. In the served app (`_files.served`) the button
    writes the file to the served downloads folder and shows a link to it, so a large
    result never goes through the page's websocket; elsewhere it is a `FileDownload`.
    """
    from . import _files

    if _files.served():
        widget = pn.widgets.Button(label=label, disabled=not ready(), icon="download")
        link = pn.pane.HTML("", css_classes=["vn-download-link"])

        def save(_event) -> None:
            try:
                url, size = _files.save(callback, filename)
            except Exception as exc:  # shown to the user, not raised in the UI
                link.object = f"error: could not write {html.escape(filename)}: {exc}"
                return
            link.object = (f'<a href="{html.escape(url)}" download="{html.escape(filename)}">'
                           f"{html.escape(filename)}</a> ({size / 1e6:.1f} MB)")

        widget.on_click(save)
        shown: pn.viewable.Viewable = pn.Column(widget, link)
    else:
        widget = pn.widgets.FileDownload(callback=callback, filename=filename, label=label,
                                         disabled=not ready())
        shown = widget

    def follow(*_events) -> None:
        widget.disabled = bool(getattr(viewer, "running", False)) or not ready()

    viewer.param.watch(follow, [n for n in ("status", "running") if n in viewer.param])
    return shown


def archive_save(viewer: object, save, *, ready, label: str = "Save to my archive") -> pn.Row:
    """A button that saves ``viewer``'s result in the user's own archive, and what it said.

    ``save(archive)`` adds the result to ``archive`` (`personal_archive`) and
    returns what was saved, e.g. ``"catalogue 'detections_radio_0' (143 rows)"``;
    the message never shows a server path. Disabled until ``ready()`` and while
    ``viewer.running``, like `result_download`.
    """
    button = pn.widgets.Button(label=label, icon="database", disabled=not ready())
    said = pn.pane.Str("", css_classes=["vn-archive-saved"])

    def press(_event) -> None:
        from ..archive import personal_archive

        try:
            what = save(personal_archive())
        except Exception as exc:  # shown to the user, not raised in the UI
            said.object = f"error: not saved: {exc}"
            return
        said.object = f"saved {what} in your archive"

    def follow(*_events) -> None:
        button.disabled = bool(getattr(viewer, "running", False)) or not ready()

    button.on_click(press)
    viewer.param.watch(follow, [n for n in ("status", "running") if n in viewer.param])
    return pn.Row(button, said)


def archive_name(archive: object, base: str) -> str:
    """A new catalogue name in ``archive`` from ``base``: archive rules, never one taken."""
    import re

    stem = re.sub(r"[^A-Za-z0-9_]", "_", base).strip("_") or "result"
    stem = (stem if stem[0].isalpha() else f"r_{stem}")[:56]
    taken = {str(n) for n in archive.catalogues()["name"]}
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}_{n}"
    return name


def made_by(record: dict | None) -> str:
    """How a product was made, in one line for its description in the archive.

    ``record`` is the product's provenance (`vanotebook.provenance.Provenance.to_dict`,
    as the services put it in ``meta["provenance"]``): its activity with the
    parameters that were set, the seed, the vanotebook version and the record's
    digest (the same digest as in a download of the product). The archive keeps its
    own record of the saving (`Archive.provenance`) beside it.
    """
    from ..provenance import Provenance

    if not record:
        return "made by: no provenance recorded"
    prov = Provenance.from_dict(record)
    shown = ", ".join(f"{k}={v}" for k, v in prov.parameters.items() if v is not None)
    seed = "" if prov.seed is None else f", seed {prov.seed}"
    return (f"made by {prov.activity}({shown}){seed}, vanotebook "
            f"{prov.versions.get('vanotebook', '?')}, provenance digest {prov.digest[:16]}")


def run_controls(viewer: object, run: pn.widgets.Button) -> pn.Row:
    """``run`` (the button that starts ``viewer``'s long action) and a Cancel button.

    Cancel is enabled only while ``viewer.running`` (and ``run`` only while
    not); it calls ``viewer.cancel()``, which stops the run and frees the cluster.
    """
    cancel = pn.widgets.Button(label="Cancel", color="warning", css_classes=["vn-cancel"])
    cancel.on_click(lambda _event: viewer.cancel())

    def follow(*_events) -> None:
        run.disabled, cancel.disabled = viewer.running, not viewer.running

    follow()
    viewer.param.watch(follow, "running")
    return pn.Row(run, cancel)


def message_kind(text: str) -> str:
    """The alert type of a status line: danger for errors, warning for refusals and
    warnings, success for finished work, info otherwise."""
    low = text.lower()
    if low.startswith("error") or ": error" in low or "failed" in low:
        return "danger"
    if low.startswith(("refused", "cancelled")) or "warning" in low or "not used" in low:
        return "warning"
    if any(w in low for w in ("computing", "running", "matching", "detecting", "training",
                              "fitting", "mosaicking", "...")):
        return "info"
    if low in ("", "ready") or low.startswith(("choose", "press")):
        return "light"
    return "success"


def status_pane(viewer: object, name: str = "status") -> pn.pane.Alert:
    """One styled message area for a dashboard's ``status``: coloured by `message_kind`,
    wrapped (never cut off), following every change."""
    text = getattr(viewer, name)
    pane = pn.pane.Alert(text or "ready", alert_type=message_kind(text or ""),
                         sizing_mode="stretch_width", css_classes=["vn-status"],
                         margin=(5, 5))

    def follow(event) -> None:
        pane.object = event.new or "ready"
        pane.alert_type = message_kind(event.new or "")

    viewer.param.watch(follow, name)
    return pane
