"""The ``dashboards`` hub service: sends each user to the dashboards of their own server.

The dashboards run inside each user's server, as that user's account
(`vanotebook.hub._proxy`), so one user's uploads, results and computations
are never in a process another user reaches. This service holds nothing:
``/services/dashboards/<path>`` answers with a redirect to
``/hub/user-redirect/dashboards/<path>``, which the hub turns into the
logged-in user's own server (starting it if needed, after the login).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the redirect on 127.0.0.1 (blocking)."""
    import os

    from tornado import ioloop, web

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--to", required=True, help="path to redirect to")
    args = parser.parse_args(argv)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/dashboards/")
    target = args.to

    class Redirect(web.RequestHandler):
        def get(self, rest: str) -> None:
            query = f"?{self.request.query}" if self.request.query else ""
            self.redirect(target + rest + query, status=302)

    app = web.Application([(rf"{prefix.rstrip('/')}/?(.*)", Redirect)])
    app.listen(args.port, address="127.0.0.1")
    ioloop.IOLoop.current().start()


if __name__ == "__main__":  # pragma: no cover
    main()
