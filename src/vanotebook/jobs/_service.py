"""The UWS 1.1 job service: ``/<prefix>/<pipeline>/jobs`` for every registered pipeline.

Each job runs as its own process (`vanotebook.jobs._run`) in a new process
group, which joins the cluster the service's environment names; ABORT and
an execution-duration overrun end that group. The store is a SQLite file:
after a restart, queued jobs run and jobs that were executing end in ERROR
("service restarted"). A reaper deletes jobs past their destruction time.
Every request needs a user: the hub's login (as a hub service) or, outside
the hub, a bearer token of ``--tokens``; each user sees only their own jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tornado import web

from .._errors import VanotebookInputError
from . import _xml
from ._refs import upload_name
from ._registry import PIPELINES, PLUGINS
from ._store import PHASES, Job, JobStore, utcnow

__all__ = ["JobRunner", "job_environment", "main", "make_app", "serve"]

LIFETIME_S = 7 * 86400
MAX_DURATION_S = 6 * 3600
MAX_WAIT_S = 600
STOP_GRACE_S = 5.0  # an aborted job's process gets this long to cancel its cluster work
SERVER_IDLE_S = 900  # an account's fork server unused for this long is ended
_XML = "text/xml; charset=UTF-8"


class _Forked:
    """A job's process forked by a fork server: not our child, so watched by its pid."""

    def __init__(self, pid: int, work: Path) -> None:
        self.pid, self.work, self.returncode = pid, work, None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)  # its server reaps it as soon as it ends
            except ProcessLookupError:
                self.returncode = 0 if (self.work / "outcome.json").exists() else 1
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import time

        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.02)
        return self.returncode


def job_environment(env: dict[str, str] | os._Environ) -> dict[str, str]:
    """The service's environment less its own credentials: a job never holds them.

    ``JUPYTERHUB_*`` (the service's hub token and OAuth settings) are left
    out; on the hub each job gets its owner's own short-lived token instead.
    """
    return {k: v for k, v in env.items() if not k.startswith("JUPYTERHUB_")}


class JobRunner:
    """Runs queued jobs, at most ``slots`` at once, and enforces ABORT and durations."""

    def __init__(self, store: JobStore, *, slots: int = 2, env: dict | None = None,
                 account: Callable[[str], str] | None = None,
                 job_env: Callable[[Job, Path, Any], dict[str, str]] | None = None,
                 fork_servers: bool = True, warm_module: str | None = None) -> None:
        self.store, self.slots = store, int(slots)
        self.env = env
        self.account = account  # owner -> unix account the job runs as (None: ours)
        self.job_env = job_env  # (job, folder, pwd entry or None) -> more environment
        self.procs: dict[str, tuple[subprocess.Popen, float]] = {}
        self.stopping: dict[str, float] = {}
        # a warm fork server per account that ran a job lately (vanotebook.jobs._run)
        self.use_servers, self.warm_module = bool(fork_servers), warm_module
        self.servers: dict[str | None, list] = {}  # key -> [Popen, ready, last used]

    def recover(self) -> None:
        """After a restart: what was executing ends in ERROR; the queue stays."""
        for job in self.store.jobs(phases=["EXECUTING"]):
            self.store.update(job.id, phase="ERROR", ended=utcnow(),
                              error="service restarted while the job was executing")

    def _start(self, job: Job) -> None:
        work = self.store.workdir(job.id)
        (work / "job.json").write_text(json.dumps({"pipeline": job.pipeline,
                                                   "parameters": job.parameters,
                                                   "plugins": PLUGINS}))
        env = job_environment(self.env if self.env is not None else os.environ)
        entry, prefix = None, []
        if self.account is not None:  # the job runs as its owner's account, in its folder
            import pwd

            try:
                entry = pwd.getpwnam(self.account(job.owner))
            except KeyError:
                self.store.update(job.id, phase="ERROR", ended=utcnow(),
                                  error=f"{job.owner} has no account on this machine yet: "
                                  "start your server on the hub once")
                return
            for path in (work, *work.rglob("*")):
                os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
            prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                      "--init-groups", "--"]
            env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
        extra: dict[str, str] = {}
        if self.job_env is not None:
            try:
                extra = self.job_env(job, work, entry)
            except Exception as exc:  # no credentials, no job: say why
                self.store.update(job.id, phase="ERROR", ended=utcnow(),
                                  error=f"the job could not be prepared: {exc}")
                return
        key = None if entry is None else entry.pw_name
        proc = self._fork(key, prefix, env, work, extra, entry)
        if proc is None:  # no warm server (yet): a fresh process
            log = (work / "log.txt").open("w")
            proc = subprocess.Popen([*prefix, sys.executable, "-m", "vanotebook.jobs._run",
                                     str(work)], stdout=log, stderr=subprocess.STDOUT,
                                    cwd=work, start_new_session=True, env={**env, **extra})
            log.close()
        self.procs[job.id] = (proc, asyncio.get_event_loop().time())
        self.store.update(job.id, phase="EXECUTING", started=utcnow())

    def _fork(self, key: str | None, prefix: list[str], env: dict[str, str], work: Path,
              extra: dict[str, str], entry: Any) -> _Forked | None:
        """Start ``work`` in this account's warm fork server; None when it is not ready.

        A server is started on an account's first job (that job and those
        arriving while it warms up run in fresh processes).
        """
        import select

        if not self.use_servers:
            return None
        now = asyncio.get_event_loop().time()
        server = self.servers.get(key)
        if server is None or server[0].poll() is not None:
            warm = [self.warm_module] if self.warm_module else []
            proc = subprocess.Popen(
                [*prefix, sys.executable, "-m", "vanotebook.jobs._run", "--forkserver",
                 *warm], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, cwd=self.store.folder, start_new_session=True,
                env=env)
            self.servers[key] = [proc, False, now]
            return None
        proc = server[0]
        server[2] = now
        try:
            if not server[1]:
                if not select.select([proc.stdout], [], [], 0)[0]:
                    return None  # still warming up
                if proc.stdout.readline().strip() != b"ready":
                    raise OSError("the fork server did not start")
                server[1] = True
            if extra:
                env_file = work / "env.json"
                env_file.write_text(json.dumps(extra))
                env_file.chmod(0o600)
                if entry is not None:
                    os.chown(env_file, entry.pw_uid, entry.pw_gid)
            proc.stdin.write(f"{work}\n".encode())
            proc.stdin.flush()
            pid = int(proc.stdout.readline())
        except (OSError, ValueError):
            self._end_server(key)
            (work / "env.json").unlink(missing_ok=True)
            return None
        return _Forked(pid, work)

    def _end_server(self, key: str | None) -> None:
        proc = self.servers.pop(key)[0]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def _reap_servers(self, now: float) -> None:
        for key, (proc, _ready, used) in list(self.servers.items()):
            if proc.poll() is not None or now - used > SERVER_IDLE_S:
                self._end_server(key)

    def _stop(self, job_id: str, grace: float = 0.0) -> bool:
        """End a job's process group: SIGTERM first (its cluster work is cancelled),
        SIGKILL after ``grace`` seconds. True once it is gone."""
        proc, _ = self.procs[job_id]
        now = asyncio.get_event_loop().time()
        if proc.poll() is None:
            first = self.stopping.setdefault(job_id, now)
            sig = signal.SIGTERM if now - first < grace else signal.SIGKILL
            if sig == signal.SIGTERM and first != now:
                return False  # asked already: give it its grace
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            if sig == signal.SIGTERM:
                return False
        proc.wait()
        self.procs.pop(job_id)
        self.stopping.pop(job_id, None)
        return True

    def step(self) -> None:
        """One pass: finish, abort or time out running jobs; start queued ones; reap."""
        now = asyncio.get_event_loop().time()
        for job_id, (proc, t0) in list(self.procs.items()):
            job = self.store.get(job_id)
            if job is None or job.phase == "ABORTED":  # deleted or aborted: end its work
                self._stop(job_id, grace=STOP_GRACE_S)
                continue
            work = self.store.workdir(job_id)
            progress = work / "progress.txt"
            if progress.exists():
                lines = progress.read_text().splitlines()
                if lines and lines[-1] != job.progress:
                    self.store.update(job_id, progress=lines[-1])
            if proc.poll() is not None:
                self.procs.pop(job_id)
                outcome_path = work / "outcome.json"
                outcome = json.loads(outcome_path.read_text()) if outcome_path.exists() else {
                    "error": f"the job's process ended with code {proc.returncode}"}
                if "error" in outcome:
                    self.store.move(job_id, ("EXECUTING",), "ERROR", ended=utcnow(),
                                    error=outcome["error"])
                else:
                    self.store.move(job_id, ("EXECUTING",), "COMPLETED", ended=utcnow(),
                                    results=outcome["results"])
            elif job.execution_duration > 0 and now - t0 > job.execution_duration:
                self._stop(job_id, grace=0.0)
                self.store.move(job_id, ("EXECUTING",), "ERROR", ended=utcnow(),
                                error=f"execution duration of {job.execution_duration} s "
                                "exceeded: the job was stopped")
        for job in self.store.jobs(phases=["QUEUED"]):
            if len(self.procs) >= self.slots:
                break
            self._start(job)
        self._reap_servers(now)
        stamp = utcnow()
        for job in self.store.jobs():
            if job.destruction <= stamp:
                if job.id in self.procs:
                    self._stop(job.id)
                self.store.delete(job.id)

    async def loop(self, interval: float = 0.2) -> None:
        while True:
            self.step()
            await asyncio.sleep(interval)


def _refuse(code: int, text: str) -> web.HTTPError:
    """An HTTP error whose body is ``text`` (the status line gets a safe copy of it)."""
    import re

    phrase = re.sub(r"[^ -;=?-~]", " ", text)[:120].strip() or "refused"
    error = web.HTTPError(code, reason=phrase)
    error.text = text
    return error


def _when(text: str, name: str) -> _dt.datetime:
    """A UWS time: ISO 8601 in UTC (``Z``, ``+00:00`` or no zone), down to a year alone."""
    value = text.strip()
    if value.isdigit() and len(value) == 4:
        value += "-01-01"
    try:
        t = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise VanotebookInputError(name, "an ISO 8601 time in UTC such as "
                                   "2026-12-31T00:00:00Z", text) from exc
    if t.tzinfo is not None and t.utcoffset() != _dt.timedelta(0):
        raise VanotebookInputError(name, "a time in UTC (UWS times carry no other zone)", text)
    return t if t.tzinfo else t.replace(tzinfo=_dt.UTC)


def make_app(store: JobStore, *, prefix: str = "/", user: Callable[[Any], str | None],
             base_class: type = web.RequestHandler, settings: dict | None = None
             ) -> web.Application:
    """The tornado application of the job service.

    Parameters
    ----------
    store : JobStore
    prefix : str
        URL prefix (``/services/uws/`` on the hub).
    user : callable
        ``user(handler)`` → the user's name, or None (answered 403).
    base_class : type
        The request handler to derive from (the hub's ``HubOAuthenticated``).
    """
    base = prefix.rstrip("/")

    class Base(base_class):
        def get_current_user(self):
            return user(self)

        def prepare(self) -> None:
            super().prepare()
            if self.current_user is None:
                raise _refuse(403, "log in to the hub first")

        def write_error(self, status_code: int, **kwargs: Any) -> None:
            exc = kwargs.get("exc_info", (None, None, None))[1]
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
            self.finish(getattr(exc, "text", None) or self._reason)

        @property
        def owner(self) -> str:
            u = self.current_user
            return u["name"] if isinstance(u, dict) else str(u)

        def pipeline(self, name: str):
            if name not in PIPELINES:
                raise _refuse(404, f"no pipeline {name!r} "
                                    f"(there are {', '.join(PIPELINES)})")
            return PIPELINES[name]

        def job(self, pipeline: str, job_id: str) -> Job:
            job = self.store_job(job_id)
            if job is None or job.owner != self.owner or job.pipeline != pipeline:
                raise _refuse(404, f"no job {job_id}")
            return job

        def store_job(self, job_id: str) -> Job | None:
            return store.get(job_id)

        def params(self) -> dict[str, str]:
            """Request parameters, names as sent (UWS names are case-insensitive)."""
            return {k: self.get_argument(k) for k in self.request.arguments}

        def xml(self, text: str) -> None:
            self.set_header("Content-Type", _XML)
            self.finish(text)

        def job_url(self, job: Job) -> str:
            return f"{base}/{job.pipeline}/jobs/{job.id}"

        def absolute(self, path: str) -> str:
            """``path`` as the URL the client reached us by (links in documents)."""
            proto = self.request.headers.get("X-Forwarded-Proto", self.request.protocol)
            return f"{proto}://{self.request.host}{path}"

    def _split(args: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        control = {k.upper(): v for k, v in args.items()
                   if k.upper() in ("PHASE", "RUNID", "ACTION", "EXECUTIONDURATION",
                                    "DESTRUCTION")}
        rest = {k: v for k, v in args.items() if k.upper() not in control}
        return control, rest

    def _apply(handler: Base, job: Job, control: dict[str, str], params: dict[str, str],
               files: dict[str, list]) -> None:
        pipeline = PIPELINES[job.pipeline]
        if params or files:
            if job.phase != "PENDING":
                raise _refuse(409, "parameters change only while PENDING")
            merged = {**job.parameters, **params}
            work = store.workdir(job.id)
            try:
                for name, parts in files.items():
                    spec = pipeline.params.get(name.lower())
                    if spec is None or not spec.is_file:
                        raise VanotebookInputError(name, "a file parameter of "
                                                   f"{pipeline.name}", "an upload")
                    if len(parts) > 1 and spec.kind != "files":
                        raise VanotebookInputError(name, "one file", f"{len(parts)} files")
                    names = [upload_name(name.lower(), i, part.get("filename", ""))
                             for i, part in enumerate(parts)]
                    for old in work.glob(f"upload_{name.lower()}_*"):
                        old.unlink()
                    for target, part in zip(names, parts, strict=True):
                        (work / target).write_bytes(part["body"])
                    merged[name.lower()] = ";".join(f"upload:{n}" for n in names)
                pipeline.parse(merged, partial=True)
            except VanotebookInputError as exc:
                raise _refuse(400, str(exc)) from exc
            store.update(job.id, parameters=merged)
        if "EXECUTIONDURATION" in control:
            try:
                seconds = int(control["EXECUTIONDURATION"])
            except ValueError as exc:
                raise _refuse(400, "EXECUTIONDURATION: expected whole seconds, "
                                    f"got {control['EXECUTIONDURATION']!r}") from exc
            if seconds < 0:
                raise _refuse(400, "EXECUTIONDURATION: expected >= 0 seconds")
            store.update(job.id, execution_duration=min(seconds or MAX_DURATION_S,
                                                        MAX_DURATION_S))
        if "DESTRUCTION" in control:
            try:
                when = _when(control["DESTRUCTION"], "DESTRUCTION")
            except VanotebookInputError as exc:
                raise _refuse(400, str(exc)) from exc
            store.update(job.id, destruction=min(when, utcnow() + _dt.timedelta(
                seconds=LIFETIME_S)))
        if "RUNID" in control:
            store.update(job.id, run_id=control["RUNID"])
        phase = control.get("PHASE", "").upper()
        if phase == "RUN":
            missing = [k for k, p in pipeline.params.items() if p.required and k not in
                       {n.lower() for n in store.get(job.id).parameters}]
            if missing:
                raise _refuse(400, f"{missing[0]}: expected a value "
                                    f"({pipeline.params[missing[0]].doc}), got nothing")
            store.move(job.id, ("PENDING", "HELD"), "QUEUED")
        elif phase == "ABORT":
            store.move(job.id, ("PENDING", "QUEUED", "EXECUTING", "HELD", "SUSPENDED"),
                       "ABORTED", ended=utcnow())
        elif phase:
            raise _refuse(400, f"PHASE: expected RUN or ABORT, got {phase!r}")

    class Jobs(Base):
        def get(self, pipeline: str) -> None:
            self.pipeline(pipeline)
            phases = [p.upper() for p in self.get_arguments("PHASE") or
                      self.get_arguments("phase")]
            bad = [p for p in phases if p not in PHASES]
            if bad:
                raise _refuse(400, f"PHASE: expected one of {', '.join(PHASES)}, got {bad[0]!r}")
            jobs = store.jobs(self.owner, pipeline, phases=phases or None)
            if not phases:
                jobs = [j for j in jobs if j.phase != "ARCHIVED"]
            after = self.get_argument("AFTER", None) or self.get_argument("after", None)
            if after:
                try:
                    t = _when(after, "AFTER")
                except VanotebookInputError as exc:
                    raise _refuse(400, str(exc)) from exc
                jobs = [j for j in jobs if j.created > t]
            jobs.sort(key=lambda j: j.created, reverse=True)
            last = self.get_argument("LAST", None) or self.get_argument("last", None)
            if last:
                if not last.isdigit() or int(last) < 1:
                    raise _refuse(400, f"LAST: expected a positive integer, "
                                        f"got {last!r}")
                jobs = jobs[: int(last)]
            self.xml(_xml.job_list(jobs, self.absolute(f"{base}/{pipeline}/jobs")))

        def post(self, pipeline: str) -> None:
            spec = self.pipeline(pipeline)
            control, params = _split(self.params())
            job = store.create(self.owner, spec.name, {}, run_id=control.get("RUNID"),
                               lifetime_s=LIFETIME_S, execution_duration=MAX_DURATION_S)
            try:
                _apply(self, job, control, params, dict(self.request.files))
            except web.HTTPError:
                store.delete(job.id)
                raise
            self.redirect(self.job_url(job), status=303)

    class JobResource(Base):
        async def get(self, pipeline: str, job_id: str) -> None:
            job = self.job(pipeline, job_id)
            wait = self.get_argument("WAIT", None) or self.get_argument("wait", None)
            if wait is not None:
                try:
                    seconds = float(wait)
                except ValueError as exc:
                    raise _refuse(400, f"WAIT: expected seconds, got {wait!r}"
                                        ) from exc
                seconds = MAX_WAIT_S if seconds < 0 else min(seconds, MAX_WAIT_S)
                phase = (self.get_argument("PHASE", None) or
                         self.get_argument("phase", None) or job.phase).upper()
                active = ("PENDING", "QUEUED", "EXECUTING", "HELD", "SUSPENDED")
                if job.phase == phase and phase in active:
                    loop = asyncio.get_event_loop()
                    end = loop.time() + seconds
                    while loop.time() < end:
                        await asyncio.sleep(0.1)
                        now = store.get(job_id)
                        if now is None or now.phase != phase:
                            break
                    job = store.get(job_id) or job
            self.xml(_xml.job_document(job, self.absolute(self.job_url(job))))

        def post(self, pipeline: str, job_id: str) -> None:
            job = self.job(pipeline, job_id)
            control, params = _split(self.params())
            if control.get("ACTION", "").upper() == "DELETE":
                store.delete(job.id)
                self.redirect(f"{base}/{pipeline}/jobs", status=303)
                return
            if "ACTION" in control:
                raise _refuse(400, "ACTION: expected DELETE")
            _apply(self, job, control, params, dict(self.request.files))
            self.redirect(self.job_url(job), status=303)

        def delete(self, pipeline: str, job_id: str) -> None:
            self.job(pipeline, job_id)
            store.delete(job_id)
            self.redirect(f"{base}/{pipeline}/jobs", status=303)

    class Attribute(Base):
        def get(self, pipeline: str, job_id: str, what: str) -> None:
            job = self.job(pipeline, job_id)
            text = {"phase": job.phase, "executionduration": str(job.execution_duration),
                    "destruction": _xml._t(job.destruction), "owner": job.owner,
                    "quote": "", "error": job.error or ""}
            if what == "parameters":
                self.xml(_xml.wrapped("parameters", _xml.parameters(job)))
            elif what == "results":
                self.xml(_xml.wrapped("results", _xml.results(
                    job, self.absolute(self.job_url(job)))))
            elif what in text:
                if what == "error" and job.phase != "ERROR":
                    raise _refuse(404, "the job has no error")
                self.set_header("Content-Type", "text/plain; charset=UTF-8")
                self.finish(text[what])
            else:
                raise _refuse(404, f"no {what}")

        def post(self, pipeline: str, job_id: str, what: str) -> None:
            job = self.job(pipeline, job_id)
            names = {"phase": "PHASE", "executionduration": "EXECUTIONDURATION",
                     "destruction": "DESTRUCTION"}
            args = self.params()
            if what == "parameters":
                _control, params = _split(args)
                _apply(self, job, {}, params, dict(self.request.files))
            elif what in names:
                value = next((v for k, v in args.items() if k.upper() == names[what]), None)
                if value is None:
                    raise _refuse(400, f"{names[what]}: expected a value")
                _apply(self, job, {names[what]: value}, {}, {})
            else:
                raise _refuse(405, f"{what} cannot be changed")
            self.redirect(self.job_url(job), status=303)

    class Result(Base):
        def get(self, pipeline: str, job_id: str, name: str) -> None:
            job = self.job(pipeline, job_id)
            if name not in job.results:
                raise _refuse(404, f"no result {name!r}")
            path = Path(job.results[name])
            self.set_header("Content-Type", "application/octet-stream")
            self.set_header("Content-Disposition", f'attachment; filename="{path.name}"')
            self.finish(path.read_bytes())

    class Availability(Base):
        def prepare(self) -> None:  # VOSI is public metadata: no login needed
            pass

        def get(self) -> None:
            self.xml("<?xml version='1.0' encoding='UTF-8'?>\n"
                     '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/'
                     'v1.0"><vosi:available>true</vosi:available></vosi:availability>')

    class Capabilities(Availability):
        def get(self) -> None:
            caps = "".join(
                f'<capability standardID="ivo://ivoa.net/std/UWS#async-1.1">'
                f'<interface xsi:type="vs:ParamHTTP" role="std"><accessURL use="base">'
                f"{base}/{name}/jobs</accessURL></interface></capability>"
                for name in PIPELINES)
            self.xml("<?xml version='1.0' encoding='UTF-8'?>\n"
                     '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/'
                     'v1.0" xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
                     f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">{caps}'
                     "</vosi:capabilities>")

    class Docs(Availability):
        def get(self) -> None:
            from ._docs import page

            self.set_header("Content-Type", "text/html; charset=UTF-8")
            self.finish(page(self.absolute(base)))

    class Declarations(Availability):
        def get(self) -> None:
            from ._docs import describe

            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(describe()))

    name = r"([a-z][a-z0-9_]*)"
    jid = r"([0-9a-f]{16})"
    return web.Application([
        (rf"{base}/?", Docs),
        (rf"{base}/pipelines.json", Declarations),
        (rf"{base}/availability", Availability),
        (rf"{base}/capabilities", Capabilities),
        (rf"{base}/{name}/jobs/?", Jobs),
        (rf"{base}/{name}/jobs/{jid}/?", JobResource),
        (rf"{base}/{name}/jobs/{jid}/results/([A-Za-z0-9_]+)", Result),
        (rf"{base}/{name}/jobs/{jid}/([a-z]+)", Attribute),
    ], **(settings or {}))


def serve(store: JobStore, app: web.Application, *, port: int, slots: int = 2,
          account: Callable[[str], str] | None = None,
          job_env: Callable[[Job, Path, Any], dict[str, str]] | None = None,
          fork_servers: bool = True, warm_module: str | None = None) -> None:
    """Listen on 127.0.0.1:``port`` and run the jobs of ``store`` (blocking)."""
    from tornado import ioloop

    runner = JobRunner(store, slots=slots, account=account, job_env=job_env,
                       fork_servers=fork_servers, warm_module=warm_module)
    runner.recover()
    app.listen(port, address="127.0.0.1")
    loop = ioloop.IOLoop.current()
    loop.spawn_callback(runner.loop)
    loop.start()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the job service outside the hub, users known by bearer token (blocking).

    On the gateway the hub runs `vanotebook.hub._uws` instead: the hub's
    login, and each job as its owner's unix account.
    """
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", required=True, help="folder of the job store")
    parser.add_argument("--slots", type=int, default=2, help="jobs running at once")
    parser.add_argument("--tokens", required=True,
                        help="a JSON file of bearer token -> user name")
    parser.add_argument("--no-fork-servers", action="store_true",
                        help="start every job in a fresh process (no warm fork server)")
    parser.add_argument("--warm-module", default=None,
                        help="a module whose warm() readies the fork servers")
    args = parser.parse_args(argv)
    os.umask(0o077)
    tokens = json.loads(Path(args.tokens).read_text())

    def user(handler) -> str | None:
        kind, _, token = handler.request.headers.get("Authorization", "").partition(" ")
        return tokens.get(token) if kind.lower() in ("bearer", "token") else None

    store = JobStore(args.state)
    serve(store, make_app(store, prefix="/", user=user), port=args.port, slots=args.slots,
          fork_servers=not args.no_fork_servers, warm_module=args.warm_module)


if __name__ == "__main__":  # pragma: no cover
    main()
