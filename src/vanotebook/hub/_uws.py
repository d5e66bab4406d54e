"""The UWS job service as a hub service: ``/services/uws/<pipeline>/jobs``.

It runs as root behind the hub's login (a browser session or a hub token
with ``access:services!service=uws``); each job runs as its owner's unix
account (``setpriv``), in a folder only that account and the service can
read, so one user's job never reads another's uploads or results.

Each job gets, in its folder, a fresh TLS key pair of its owner for the
shared cluster (``--ca-dir``; ``DASK_SCHEDULER_ADDRESS`` comes from the
service's environment), so its work runs there as that user's futures, and
a hub token of its owner that expires with the job and reaches only the
publishing service (for ``publish to=shared|vo``). The service's own
token never reaches a job.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the job service for the hub (blocking)."""
    from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated

    from ..jobs import JobStore
    from ..jobs._service import make_app, serve
    from ._accounts import unix_name

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", required=True, help="folder of the job store")
    parser.add_argument("--slots", type=int, default=2, help="jobs running at once")
    parser.add_argument("--user-prefix", required=True, help="the users' account prefix")
    parser.add_argument("--ca-dir", default=None, help="the shared cluster's CA (TLS)")
    parser.add_argument("--publish-service", default="publish",
                        help="the hub service a job's token may reach")
    args = parser.parse_args(argv)
    from . import _jobs  # noqa: F401  (publish to=shared|vo)
    os.umask(0o077)
    store = JobStore(args.state)
    store.folder.chmod(0o711)  # each job's folder is its owner's, 0700
    from tornado import web

    class HubHandler(HubOAuthenticated, web.RequestHandler):
        """A request handler that knows the hub's user (token or browser login)."""

    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/uws/")
    app = make_app(store, prefix=prefix,
                   user=lambda handler: HubOAuthenticated.get_current_user(handler),
                   base_class=HubHandler, settings={"cookie_secret": os.urandom(32)})
    app.add_handlers(".*", [(rf"{prefix.rstrip('/')}/oauth_callback", HubOAuthCallbackHandler)])
    serve(store, app, port=args.port, slots=args.slots,
          account=lambda owner: unix_name(owner, args.user_prefix),
          job_env=lambda job, work, entry: _job_env(job, work, entry, args),
          warm_module="vanotebook.hub._warm")  # a user's next job starts warm


def _job_env(job, work, entry, args) -> dict[str, str]:
    """A job's own credentials: its owner's cluster certificate and a short hub token."""
    import requests

    env: dict[str, str] = {}
    if args.ca_dir:
        from ._tls import ClusterCA, dask_tls_env

        creds = ClusterCA(args.ca_dir).issue(entry.pw_name, work / "dask", uid=entry.pw_uid,
                                             gid=entry.pw_gid)
        env.update(dask_tls_env(creds))
    api = os.environ.get("JUPYTERHUB_API_URL")
    token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if api and token:
        r = requests.post(f"{api}/users/{job.owner}/tokens", timeout=30,
                          headers={"Authorization": f"token {token}"},
                          json={"scopes": [f"access:services!service={args.publish_service}"],
                                "expires_in": int(job.execution_duration) + 600,
                                "note": f"uws job {job.id}"})
        r.raise_for_status()
        env["JUPYTERHUB_API_TOKEN"] = r.json()["token"]
        env["JUPYTERHUB_API_URL"] = api
    return env


if __name__ == "__main__":  # pragma: no cover
    main()
