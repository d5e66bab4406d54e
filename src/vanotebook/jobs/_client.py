"""A small Python client of the job service: submit, wait, results, abort, delete, list.

It reads the same pipeline declarations the service serves, so a bad
parameter is refused here before anything is sent, and a Quantity is
converted to the unit the pipeline declares. Files are uploaded: paths,
lists of paths, astropy Tables (sent as VOTable) and FITS HDUs; strings
that are URLs or archive references (``archive:...``, ``shared:...``) go as
text. On the gateway the service is ``$VANOTEBOOK_UWS_URL`` and the user's
server token ``$JUPYTERHUB_API_TOKEN`` logs in.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from .._errors import VanotebookInputError
from ._registry import PIPELINES

__all__ = ["FINAL", "URL_ENV", "Job", "JobClient", "JobError", "JobInputError"]

URL_ENV = "VANOTEBOOK_UWS_URL"
FINAL = ("COMPLETED", "ERROR", "ABORTED", "ARCHIVED")
_NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0", "xlink": "http://www.w3.org/1999/xlink"}


class JobError(RuntimeError):
    """A job that ended in ERROR or ABORTED, with the service's message."""


class JobInputError(VanotebookInputError):
    """The service refused a parameter (400): its message, as it came."""

    def __init__(self, text: str) -> None:
        name, _, rest = text.partition(": expected ")
        self.argument, self.expected, self.got = name, rest, None
        ValueError.__init__(self, text)


def _text(value: Any, name: str, param) -> str:
    import astropy.units as u

    if isinstance(value, u.Quantity):
        if not param.unit:
            raise VanotebookInputError(name, "a plain value (this parameter has no unit)", value)
        return repr(float(value.to_value(param.unit)))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _upload(name: str, value: Any) -> tuple[str, tuple[str, bytes]]:
    """One multipart part for a file parameter: a path, a Table, an HDU(List), or a
    ``(filename, bytes)`` pair (an upload received elsewhere, such as a dashboard's)."""
    from astropy.io import fits
    from astropy.table import Table

    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], bytes | bytearray):
        return name, (str(value[0] or name), bytes(value[1]))
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        if not path.is_file():
            raise VanotebookInputError(name, "an existing file, a URL or an archive reference",
                                       str(value))
        return name, (path.name, path.read_bytes())
    if isinstance(value, Table):
        buf = io.BytesIO()
        value.write(buf, format="votable", tabledata_format="binary2")
        return name, (f"{name}.vot", buf.getvalue())
    if isinstance(value, fits.HDUList | fits.PrimaryHDU | fits.ImageHDU):
        hdul = value if isinstance(value, fits.HDUList) else fits.HDUList(
            [fits.PrimaryHDU(value.data, value.header)])
        buf = io.BytesIO()
        hdul.writeto(buf)
        return name, (f"{name}.fits", buf.getvalue())
    raise VanotebookInputError(name, "a path, a list of paths, a Table, a FITS HDU, a URL or "
                               "an archive reference", value)


class Job:
    """One job of the service (its URL), read fresh on each access."""

    def __init__(self, client: JobClient, url: str) -> None:
        self.client, self.url = client, url.rstrip("/")
        self.id = self.url.rsplit("/", 1)[1]
        self.pipeline = self.url.rsplit("/", 3)[1]

    def __repr__(self) -> str:
        return f"<Job {self.pipeline}/{self.id} {self.phase}>"

    # -- the document --------------------------------------------------------
    def document(self, wait: float | None = None, phase: str | None = None) -> ET.Element:
        params = {} if wait is None else {"WAIT": wait, **({"PHASE": phase} if phase else {})}
        r = self.client._get(self.url, params=params)
        return ET.fromstring(r.content)

    @property
    def phase(self) -> str:
        return self.client._get(f"{self.url}/phase").text.strip()

    @property
    def progress(self) -> str | None:
        """The last progress message (``jobInfo``), while it runs and after."""
        el = self.document().find("uws:jobInfo/progress", _NS)
        return None if el is None else el.text

    @property
    def error(self) -> str | None:
        r = self.client.session.get(f"{self.url}/error", timeout=self.client.timeout)
        return r.text if r.ok else None

    @property
    def parameters(self) -> dict[str, str]:
        root = ET.fromstring(self.client._get(f"{self.url}/parameters").content)
        return {p.get("id"): p.text or "" for p in root.findall("uws:parameter", _NS)}

    @property
    def results(self) -> dict[str, str]:
        """Result name -> URL."""
        root = ET.fromstring(self.client._get(f"{self.url}/results").content)
        return {r.get("id"): r.get(f"{{{_NS['xlink']}}}href")
                for r in root.findall("uws:result", _NS)}

    # -- control -------------------------------------------------------------
    def run(self) -> Job:
        self.client._post(f"{self.url}/phase", {"PHASE": "RUN"})
        return self

    def abort(self) -> Job:
        self.client._post(f"{self.url}/phase", {"PHASE": "ABORT"})
        return self

    def delete(self) -> None:
        r = self.client.session.delete(self.url, allow_redirects=False,
                                       timeout=self.client.timeout)
        if r.status_code not in (303, 200, 204):
            raise JobError(f"{self.url}: {r.status_code} {r.text}")

    def wait(self, timeout: float | None = None, *, progress: bool | Callable[[str], Any] = True,
             raise_on_error: bool = True) -> str:
        """Block until the job ends (UWS ``WAIT``); return its phase.

        Parameters
        ----------
        timeout : float, optional
            Give up after this many seconds (`TimeoutError`); None waits on.
        progress : bool or callable
            True shows the job's progress messages on a tqdm bar; a callable
            gets each new message.
        raise_on_error : bool
            Raise `JobError` with the service's message when the job ends in
            ERROR or ABORTED.
        """
        end = None if timeout is None else time.monotonic() + timeout
        bar = None
        if progress is True:
            from tqdm.auto import tqdm

            bar = tqdm(total=None, desc=f"{self.pipeline} {self.id}",
                       bar_format="{desc}: {postfix}")
        last = None
        try:
            while True:
                root = self.document()
                phase = root.find("uws:phase", _NS).text
                el = root.find("uws:jobInfo/progress", _NS)
                message = None if el is None else el.text
                if message and message != last:
                    last = message
                    if bar is not None:
                        bar.set_postfix_str(message)
                    elif callable(progress):
                        progress(message)
                if phase in FINAL:
                    break
                left = 5.0 if end is None else min(5.0, end - time.monotonic())
                if left <= 0:
                    raise TimeoutError(f"{self.url} still {phase} after {timeout} s")
                self.document(wait=max(0.5, left), phase=phase)
        finally:
            if bar is not None:
                bar.close()
        if raise_on_error and phase in ("ERROR", "ABORTED"):
            raise JobError(f"{self.pipeline} job {self.id} {phase}: {self.error or ''}".strip())
        return phase

    # -- results -------------------------------------------------------------
    def download(self, name: str, folder: str | os.PathLike = ".") -> Path:
        """Write result ``name`` into ``folder`` (under the service's file name)."""
        urls = self.results
        if name not in urls:
            raise VanotebookInputError("name", f"a result of this job ({', '.join(urls)})", name)
        r = self.client._get(urls[name])
        disposition = r.headers.get("Content-Disposition", "")
        filename = disposition.split("filename=")[-1].strip('"') if "filename=" in \
            disposition else name
        target = Path(folder) / Path(filename).name
        from ..io import atomic_path

        with atomic_path(target, overwrite=True) as tmp:
            tmp.write_bytes(r.content)
        return target

    def result(self, name: str) -> Any:
        """Result ``name`` read: a Table (VOTable), an HDUList (FITS), a dict (JSON), or bytes."""
        urls = self.results
        if name not in urls:
            raise VanotebookInputError("name", f"a result of this job ({', '.join(urls)})", name)
        r = self.client._get(urls[name])
        filename = r.headers.get("Content-Disposition", "").lower()
        data = r.content
        if filename.endswith(('.vot"', '.xml"')):
            from astropy.table import Table

            return Table.read(io.BytesIO(data), format="votable")
        if filename.endswith('.fits"'):
            from astropy.io import fits

            return fits.open(io.BytesIO(data))
        if filename.endswith('.json"'):
            import json

            return json.loads(data)
        return data

    def to_archive(self, name: str, catalogue: str, *, archive: Any = None,
                   overwrite: bool = False) -> Any:
        """Add a table result to an archive (default: one's own) as ``catalogue``."""
        from ..archive import personal_archive

        table = self.result(name)
        from astropy.table import Table

        if not isinstance(table, Table):
            raise VanotebookInputError("name", "a table result (VOTable)", name)
        archive = archive if archive is not None else personal_archive()
        return archive.add_catalogue(catalogue, table, overwrite=overwrite,
                                     description=f"result {name} of job {self.url}")


class JobClient:
    """The job service at ``url``, as one user.

    Parameters
    ----------
    url : str, optional
        The service's base (``.../services/uws/``); default ``$VANOTEBOOK_UWS_URL``.
    token : str, optional
        A hub token (default ``$JUPYTERHUB_API_TOKEN``), sent as ``Authorization: token``.
    session : requests.Session, optional
        Used as it is instead (its own headers and cookies).
    timeout : float
        Seconds for one HTTP request (a WAIT adds its own time).
    """

    def __init__(self, url: str | None = None, *, token: str | None = None, session=None,
                 timeout: float = 60.0) -> None:
        import requests

        url = url or os.environ.get(URL_ENV)
        if not url:
            raise VanotebookInputError("url", f"the job service's URL (or ${URL_ENV})", url)
        self.url = url.rstrip("/")
        self.timeout = timeout
        if session is None:
            session = requests.Session()
            token = token or os.environ.get("JUPYTERHUB_API_TOKEN")
            if token:
                session.headers["Authorization"] = f"token {token}"
        self.session = session

    def __repr__(self) -> str:
        return f"JobClient({self.url!r})"

    def _get(self, url: str, params: dict | None = None):
        wait = float((params or {}).get("WAIT", 0))
        r = self.session.get(url, params=params, timeout=self.timeout + max(wait, 0))
        if not r.ok:
            raise JobError(f"GET {url}: {r.status_code} {r.text}")
        return r

    def _post(self, url: str, data: dict, files=None):
        r = self.session.post(url, data=data, files=files, allow_redirects=False,
                              timeout=self.timeout)
        if r.status_code == 400:
            raise JobInputError(r.text)
        if r.status_code not in (200, 303):
            raise JobError(f"POST {url}: {r.status_code} {r.text}")
        return r

    def submit(self, pipeline: str, *, run: bool = True, execution_duration: int | None = None,
               run_id: str | None = None, **params: Any) -> Job:
        """Make a job of ``pipeline`` with ``params`` and (by default) start it.

        File parameters take paths (a list for several), Tables, HDUs, URLs or
        archive references; numbers may be Quantities (converted to the
        declared unit). Parameters are checked here, then by the service.
        """
        if pipeline not in PIPELINES:
            raise VanotebookInputError("pipeline", f"one of {', '.join(PIPELINES)}", pipeline)
        spec = PIPELINES[pipeline]
        data: dict[str, str] = {}
        files: list = []
        for name, value in params.items():
            if name not in spec.params:
                raise VanotebookInputError(name, f"a parameter of {pipeline} "
                                           f"({', '.join(spec.params)})", value)
            if value is None:
                continue
            param = spec.params[name]
            if param.is_file and not (isinstance(value, str) and (
                    value.startswith(("http://", "https://", "archive:", "shared:")))):
                values = value if isinstance(value, list) or (
                    isinstance(value, tuple) and not isinstance(value[-1], bytes | bytearray)
                ) else [value]
                if len(values) > 1 and param.kind != "files":
                    raise VanotebookInputError(name, "one file", f"{len(values)} files")
                files += [_upload(name, v) for v in values]
            else:
                data[name] = _text(value, name, param)
                param.parse(name, data[name])  # the declared check, before anything is sent
        if run:
            data["PHASE"] = "RUN"
        if execution_duration is not None:
            data["EXECUTIONDURATION"] = str(int(execution_duration))
        if run_id is not None:
            data["RUNID"] = run_id
        r = self._post(f"{self.url}/{pipeline}/jobs", data, files=files or None)
        return Job(self, self._absolute(r.headers["Location"]))

    def _absolute(self, location: str) -> str:
        if location.startswith(("http://", "https://")):
            return location
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{location}"

    def job(self, ref: str) -> Job:
        """A job by its URL or ``pipeline/id``."""
        if ref.startswith(("http://", "https://")):
            return Job(self, ref)
        pipeline, _, job_id = ref.partition("/")
        if not job_id:
            raise VanotebookInputError("ref", "a job URL or pipeline/id", ref)
        return Job(self, f"{self.url}/{pipeline}/jobs/{job_id}")

    def jobs(self, pipeline: str | None = None, *, phase: str | list[str] | None = None,
             last: int | None = None, after: str | None = None) -> list[Job]:
        """One's jobs, newest first (every pipeline's, or one's), filtered as UWS 1.1 does."""
        names = [pipeline] if pipeline else list(PIPELINES)
        params: list[tuple[str, str]] = []
        for p in [phase] if isinstance(phase, str) else phase or []:
            params.append(("PHASE", p))
        if last is not None:
            params.append(("LAST", str(last)))
        if after is not None:
            params.append(("AFTER", after))
        found: list[tuple[str, Job]] = []
        for name in names:
            r = self.session.get(f"{self.url}/{name}/jobs", params=params, timeout=self.timeout)
            if r.status_code == 404:  # a pipeline this service does not offer
                continue
            if not r.ok:
                raise JobError(f"GET {r.url}: {r.status_code} {r.text}")
            for ref in ET.fromstring(r.content).findall("uws:jobref", _NS):
                created = ref.find("uws:creationTime", _NS).text
                found.append((created, Job(self, ref.get(f"{{{_NS['xlink']}}}href"))))
        found.sort(key=lambda t: t[0], reverse=True)
        jobs = [j for _, j in found]
        return jobs[:last] if last is not None else jobs
