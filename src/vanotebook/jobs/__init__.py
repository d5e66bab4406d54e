"""Pipelines as IVOA UWS 1.1 jobs.

`PIPELINES` declares each pipeline once (parameters with types and units,
results); `vanotebook.jobs._service` serves them as UWS 1.1 job lists at
``<prefix>/<pipeline>/jobs`` (a hub service on the gateway), with a
persistent SQLite store, jobs run as their own processes on the cluster,
ABORT, execution durations, destruction and VOSI availability/capabilities.
pyvo's ``AsyncTAPJob(job_url, session=...)`` drives its jobs.

`JobClient` is the Python client (``vanotebook job ...`` on the command
line): ``JobClient().submit("detect", image="tile.fits").wait()``; `submit`
and `jobs` use a client of ``$VANOTEBOOK_UWS_URL`` with the user's token.
"""

from typing import Any

from ._client import Job, JobClient, JobError, JobInputError
from ._registry import PIPELINES, Param, Pipeline, register
from ._store import JobStore

__all__ = ["PIPELINES", "Job", "JobClient", "JobError", "JobInputError", "JobStore", "Param",
           "Pipeline", "jobs", "register", "submit"]


def submit(pipeline: str, **params: Any) -> Job:
    """`JobClient.submit` on the gateway's job service (``$VANOTEBOOK_UWS_URL``)."""
    return JobClient().submit(pipeline, **params)


def jobs(pipeline: str | None = None, **filters: Any) -> list[Job]:
    """`JobClient.jobs` on the gateway's job service: one's jobs, newest first."""
    return JobClient().jobs(pipeline, **filters)
