"""The job service's own documentation, made from the pipeline declarations.

``GET <prefix>/`` is an HTML page (every pipeline, its parameters with
type, unit, default and choices, its results, and how to call it);
``GET <prefix>/pipelines.json`` is the same as JSON, for forms and clients.
"""

from __future__ import annotations

from html import escape
from typing import Any

from ._registry import PIPELINES

__all__ = ["describe", "page"]


def describe() -> dict[str, Any]:
    """Every pipeline's declaration as plain data."""
    return {name: {"doc": p.doc,
                   "parameters": {k: {"kind": v.kind, "doc": v.doc, "default": v.default,
                                      "unit": v.unit, "required": v.required,
                                      "choices": list(v.choices)}
                                  for k, v in p.params.items()},
                   "results": dict(p.results)}
            for name, p in PIPELINES.items()}


def page(base: str) -> str:
    """The HTML documentation page (``base``: the service's URL)."""
    from ._refs import FORMS

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>vanotebook jobs</title>"
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
             "td,th{padding:2px 8px;text-align:left;vertical-align:top}"
             "code{background:#f3f3f3}</style></head><body>",
             "<h1>vanotebook pipelines as IVOA UWS 1.1 jobs</h1>",
             f"<p>Each pipeline is a job list at <code>{escape(base)}/&lt;pipeline&gt;/jobs"
             "</code>. POST parameters (and <code>PHASE=RUN</code>) to make a job; the answer "
             "is a 303 to it. File parameters are " + escape(FORMS) + ".</p>",
             "<pre>curl -H 'Authorization: token $JUPYTERHUB_API_TOKEN' -F PHASE=RUN "
             f"-F image=@tile.fits {escape(base)}/detect/jobs</pre>",
             "<p>In Python: <code>vanotebook.jobs.JobClient().submit('detect', "
             "image='tile.fits').wait()</code>; on the command line: <code>vanotebook job "
             "submit detect image=tile.fits</code>; pyvo: <code>AsyncTAPJob(job_url, "
             "session=...)</code>.</p>"]
    for name, p in PIPELINES.items():
        rows = []
        for key, v in p.params.items():
            need = "required" if v.required else escape(repr(v.default))
            choices = f" one of {escape(', '.join(v.choices))}" if v.choices else ""
            rows.append(f"<tr><td><code>{escape(key)}</code></td><td>{escape(v.kind)}</td>"
                        f"<td>{escape(v.unit)}</td><td>{need}</td>"
                        f"<td>{escape(v.doc)}{choices}</td></tr>")
        results = "".join(f"<li><code>{escape(k)}</code>: {escape(v)}</li>"
                          for k, v in p.results.items())
        parts.append(f"<h2 id='{escape(name)}'>{escape(name)}</h2><p>{escape(p.doc)}</p>"
                     "<table><tr><th>parameter</th><th>type</th><th>unit</th><th>default</th>"
                     f"<th>meaning</th></tr>{''.join(rows)}</table><p>Results:</p>"
                     f"<ul>{results}</ul>")
    parts.append("</body></html>")
    return "".join(parts)
