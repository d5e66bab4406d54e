"""Pipelines as IVOA UWS 1.1 jobs.

`PIPELINES` declares each pipeline once (parameters with types and units,
results); `vanotebook.jobs._service` serves them as UWS 1.1 job lists at
``<prefix>/<pipeline>/jobs`` (a hub service on the gateway), with a
persistent SQLite store, jobs run as their own processes on the cluster,
ABORT, execution durations, destruction and VOSI availability/capabilities.
pyvo's ``AsyncTAPJob(job_url, session=...)`` drives its jobs.
"""

from ._registry import PIPELINES, Param, Pipeline, register
from ._store import Job, JobStore

__all__ = ["PIPELINES", "Job", "JobStore", "Param", "Pipeline", "register"]
