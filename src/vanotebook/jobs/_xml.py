"""UWS 1.1 documents (``http://www.ivoa.net/xml/UWS/v1.0``, version 1.1)."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from ._store import Job

UWS = "http://www.ivoa.net/xml/UWS/v1.0"
XLINK = "http://www.w3.org/1999/xlink"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_HEAD = "<?xml version='1.0' encoding='UTF-8'?>\n"
_NS = f'xmlns:uws="{UWS}" xmlns:xlink="{XLINK}" xmlns:xsi="{XSI}"'


def _t(value) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _nil(tag: str, value) -> str:
    if value is None:
        return f'<uws:{tag} xsi:nil="true"/>'
    return f"<uws:{tag}>{escape(_t(value))}</uws:{tag}>"


def parameters(job: Job) -> str:
    """The ``<uws:parameters>`` element (uploads are ``byReference`` to their copy)."""
    items = []
    for key, value in job.parameters.items():
        if value.startswith("upload:"):
            items.append(f'<uws:parameter id={quoteattr(key)} byReference="true">'
                         f"{escape(value)}</uws:parameter>")
        else:
            items.append(f"<uws:parameter id={quoteattr(key)}>{escape(value)}</uws:parameter>")
    return f"<uws:parameters>{''.join(items)}</uws:parameters>"


def results(job: Job, base: str) -> str:
    """The ``<uws:results>`` element, each result a link under ``<base>/results/``."""
    items = "".join(f'<uws:result id={quoteattr(k)} xlink:type="simple" '
                    f'xlink:href={quoteattr(f"{base}/results/{k}")}/>' for k in job.results)
    return f"<uws:results>{items}</uws:results>"


def error_summary(job: Job) -> str:
    if job.phase != "ERROR" or not job.error:
        return ""
    return (f'<uws:errorSummary type="fatal" hasDetail="false">'
            f"<uws:message>{escape(job.error)}</uws:message></uws:errorSummary>")


def job_document(job: Job, base: str) -> str:
    """The full ``<uws:job>`` document of ``job`` (``base``: the job's URL)."""
    run_id = "" if job.run_id is None else f"<uws:runId>{escape(job.run_id)}</uws:runId>"
    info = ("" if job.progress is None else
            f"<uws:jobInfo><progress>{escape(job.progress)}</progress></uws:jobInfo>")
    return (f'{_HEAD}<uws:job {_NS} version="1.1">'
            f"<uws:jobId>{escape(job.id)}</uws:jobId>{run_id}"
            f"<uws:ownerId>{escape(job.owner)}</uws:ownerId>"
            f"<uws:phase>{job.phase}</uws:phase>"
            f'<uws:quote xsi:nil="true"/>'
            f"<uws:creationTime>{_t(job.created)}</uws:creationTime>"
            f"{_nil('startTime', job.started)}{_nil('endTime', job.ended)}"
            f"<uws:executionDuration>{job.execution_duration}</uws:executionDuration>"
            f"<uws:destruction>{_t(job.destruction)}</uws:destruction>"
            f"{parameters(job)}{results(job, base)}{error_summary(job)}{info}</uws:job>")


def job_list(jobs: list[Job], base: str) -> str:
    """The ``<uws:jobs>`` list (``base``: the job list's URL)."""
    refs = []
    for job in jobs:
        run_id = "" if job.run_id is None else f"<uws:runId>{escape(job.run_id)}</uws:runId>"
        refs.append(f'<uws:jobref id={quoteattr(job.id)} xlink:type="simple" '
                    f'xlink:href={quoteattr(f"{base}/{job.id}")}>'
                    f"<uws:phase>{job.phase}</uws:phase>{run_id}"
                    f"<uws:ownerId>{escape(job.owner)}</uws:ownerId>"
                    f"<uws:creationTime>{_t(job.created)}</uws:creationTime></uws:jobref>")
    return f'{_HEAD}<uws:jobs {_NS} version="1.1">{"".join(refs)}</uws:jobs>'


def wrapped(tag: str, body: str) -> str:
    """A standalone ``<uws:parameters>`` / ``<uws:results>`` document."""
    return _HEAD + body.replace(f"<uws:{tag}>", f"<uws:{tag} {_NS}>", 1)
