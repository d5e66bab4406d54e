"""The UWS job service as a hub service: ``/services/uws/<pipeline>/jobs``.

It runs as root behind the hub's login (a browser session or a hub token
with ``access:services!service=uws``); each job runs as its owner's unix
account (``setpriv``), in a folder only that account and the service can
read, so one user's job never reads another's uploads or results.
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
    args = parser.parse_args(argv)
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
          account=lambda owner: unix_name(owner, args.user_prefix))


if __name__ == "__main__":  # pragma: no cover
    main()
