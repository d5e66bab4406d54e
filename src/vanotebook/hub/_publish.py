"""The shared archive's publishing path: a hub service, the only writer of that archive.

Every account reads the shared archive; none but this service's own
(``vn-archive``) writes it. A user publishes a catalogue by sending it, as a
VOTable, with their hub token; the service records who published each name,
and refuses a name that another user (or the gateway's demo sky) owns, so no
one can delete or overwrite what someone else published.

``POST <prefix>catalogues/<name>[?overwrite=1&description=...]``: body a
VOTable; answers JSON ``{"name", "rows", "owner"}`` (201), 403 for another's
name, 409 for an existing name without ``overwrite``, 400 for a bad table.
``GET <prefix>catalogues``: who published what.

With a DaCHS server (``--dachs-url``), ``POST <prefix>vo/<name>`` publishes
the VOTable to the VO as resource ``gw_<user>_<name>`` (TAP table
``gw_<user>_<name>.main``, a cone search): a user's VO names carry the
user, so no one can replace another's or the server's own resources.
Answers ``{"name", "table", "tap_url", "scs_url", "rows", "owner"}`` (201),
409 for an existing resource without ``overwrite``, 404 when the gateway
has no DaCHS.

`publish_catalogue` is the client, used by the dashboards and notebooks
inside the gateway (``$VANOTEBOOK_PUBLISH_URL`` and ``$JUPYTERHUB_API_TOKEN``
are set in every user's server).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._errors import VanotebookInputError

__all__ = ["PublishError", "main", "publish_catalogue", "vo_name"]

_REGISTRY = "publishers.json"
_MAX_BYTES = 512 * 2**20


class PublishError(RuntimeError):
    """The publishing service refused a catalogue (the message says why)."""


def vo_name(user: str, name: str) -> str:
    """The DaCHS resource a user's VO publication ``name`` becomes: ``gw_<user>_<name>``."""
    import re

    return re.sub(r"[^a-z0-9_]", "_", f"gw_{user}_{name}".lower())[:60]


def publish_catalogue(table: Any, name: str, *, overwrite: bool = False,
                      description: str = "", vo: bool = False, url: str | None = None,
                      token: str | None = None) -> dict[str, Any]:
    """Publish ``table`` to the gateway's shared archive (or the VO) as catalogue ``name``.

    Parameters
    ----------
    table : astropy.table.Table
        With ``ra`` / ``dec`` columns (degrees).
    name : str
        Catalogue name in the shared archive.
    overwrite : bool
        Replace an earlier catalogue of the same name (only one's own).
    description : str
        Shown with the catalogue.
    vo : bool
        Publish to the gateway's DaCHS server instead, as a TAP table and a
        cone search (``gw_<user>_<name>``; see `vo_name`).
    url, token : str, optional
        The service and a hub token; default ``$VANOTEBOOK_PUBLISH_URL`` and
        ``$JUPYTERHUB_API_TOKEN``.

    Returns
    -------
    dict
        ``name``, ``rows`` and ``owner`` of the published catalogue (with
        ``vo``: also ``table``, ``tap_url`` and ``scs_url``).
    """
    import requests
    from astropy.table import Table

    url = url or os.environ.get("VANOTEBOOK_PUBLISH_URL")
    token = token or os.environ.get("JUPYTERHUB_API_TOKEN")
    if not url or not token:
        raise VanotebookInputError("url", "the gateway's publishing service "
                                   "($VANOTEBOOK_PUBLISH_URL and a hub token)", url)
    if not isinstance(table, Table):
        raise VanotebookInputError("table", "an astropy Table", table)
    if len(table) == 0:
        raise VanotebookInputError("table", "a catalogue with rows", "an empty table")
    buf = io.BytesIO()
    table.write(buf, format="votable", tabledata_format="binary2")  # astropy 20419
    if not isinstance(name, str) or not name or not name[0].isalpha() or not all(
            ch.isalnum() or ch == "_" for ch in name):
        raise VanotebookInputError("name", "a letter then letters, digits or _", name)
    r = requests.post(f"{url.rstrip('/')}/{'vo' if vo else 'catalogues'}/{name}",
                      params={"overwrite": int(overwrite), "description": description},
                      data=buf.getvalue(), timeout=600,
                      headers={"Authorization": f"token {token}",
                               "Content-Type": "application/x-votable+xml"})
    if r.status_code != 201:
        raise PublishError(f"publishing {name!r}: {r.status_code} {r.text.strip()}")
    return r.json()


def _registry(archive: Path) -> dict[str, str]:
    path = archive / _REGISTRY
    return json.loads(path.read_text()) if path.exists() else {}


def _save_registry(archive: Path, registry: dict[str, str]) -> None:
    path = archive / _REGISTRY
    tmp = path.with_name(f".{_REGISTRY}.tmp")
    tmp.write_text(json.dumps(registry, indent=1, sort_keys=True))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the publishing path on 127.0.0.1 (blocking)."""
    from astropy.table import Table
    from jupyterhub.services.auth import HubAuthenticated
    from tornado import ioloop, web

    from ..archive import Archive

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--archive", required=True)
    parser.add_argument("--dachs-url", default=None)
    parser.add_argument("--dachs-inputs", default="/var/gavo/inputs")
    args = parser.parse_args(argv)
    archive = Archive(args.archive)
    dachs = None
    if args.dachs_url:
        from ..archive import DaCHS

        dachs = DaCHS(args.dachs_url, inputs=args.dachs_inputs)
    lock = threading.Lock()  # one `dachs imp` at a time
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/archive-publisher/")
    os.umask(0o022)  # what it writes, everyone reads

    class Base(HubAuthenticated, web.RequestHandler):
        def write_error(self, status_code: int, **kwargs: Any) -> None:
            self.finish(self._reason)

    class Catalogues(Base):
        @web.authenticated
        def get(self) -> None:
            self.finish(_registry(archive.path))

    class Catalogue(Base):
        @web.authenticated
        def post(self, name: str) -> None:
            user = self.current_user["name"]
            registry = _registry(archive.path)
            existing = set(archive.catalogues()["name"])
            owner = registry.get(name, "vanotebook" if name in existing else None)
            overwrite = self.get_argument("overwrite", "0") == "1"
            if owner is not None and owner != user:
                raise web.HTTPError(403, reason=f"{name!r} was published by {owner}")
            if owner is not None and not overwrite:
                raise web.HTTPError(409, reason=f"{name!r} exists; publish with overwrite")
            try:
                table = Table.read(io.BytesIO(self.request.body), format="votable")
                cat = archive.add_catalogue(
                    name, table, overwrite=overwrite,
                    description=self.get_argument("description", "") or
                    f"published by {user} from the gateway")
            except (ValueError, OSError) as exc:  # a named error of the archive, or no table
                raise web.HTTPError(400, reason=str(exc).splitlines()[0][:500]) from exc
            registry[name] = user
            _save_registry(archive.path, registry)
            self.set_status(201)
            self.finish({"name": name, "rows": cat.n_rows, "owner": user})

    class VO(Base):
        @web.authenticated
        async def post(self, name: str) -> None:
            if dachs is None:
                raise web.HTTPError(404, reason="this gateway has no VO server "
                                    "(set VANOTEBOOK_DACHS_URL)")
            user = self.current_user["name"]
            resource = vo_name(user, name)
            key = f"vo/{resource}"
            registry = _registry(archive.path)
            overwrite = self.get_argument("overwrite", "0") == "1"
            if registry.get(key) not in (None, user):  # "a_b"+"c" and "a"+"b_c" meet here
                raise web.HTTPError(403, reason=f"{resource!r} was published by "
                                    f"{registry[key]}")
            if key in registry and not overwrite:
                raise web.HTTPError(409, reason=f"{resource!r} exists; publish with overwrite")
            try:
                table = Table.read(io.BytesIO(self.request.body), format="votable")
            except (ValueError, OSError) as exc:
                raise web.HTTPError(400, reason=str(exc).splitlines()[0][:500]) from exc
            description = (self.get_argument("description", "") or
                           f"published by {user} from the vanotebook gateway")

            def publish():
                with lock:
                    # DaCHS loads a new or changed resource on its next request; a
                    # reload would need the server's own account
                    return dachs.publish_catalogue(table, resource, title=f"{name} ({user})",
                                                   description=description, reload=False)

            try:
                done = await ioloop.IOLoop.current().run_in_executor(None, publish)
            except ValueError as exc:  # a named error: the table does not suit a TAP table
                raise web.HTTPError(400, reason=str(exc).splitlines()[0][:500]) from exc
            except (RuntimeError, OSError) as exc:  # the server refused (dachs imp failed)
                raise web.HTTPError(502, reason=f"the VO server refused: "
                                    f"{str(exc).splitlines()[0][:400]}") from exc
            registry = _registry(archive.path)
            registry[key] = user
            _save_registry(archive.path, registry)
            self.set_status(201)
            self.finish({"name": done.name, "table": done.table, "tap_url": done.tap_url,
                         "scs_url": done.scs_url, "rows": done.rows, "owner": user})

    base = prefix.rstrip("/")
    app = web.Application([(rf"{base}/catalogues/?", Catalogues),
                           (rf"{base}/catalogues/([A-Za-z][A-Za-z0-9_]*)", Catalogue),
                           (rf"{base}/vo/([A-Za-z][A-Za-z0-9_]*)", VO)],
                          cookie_secret=os.urandom(32))
    app.listen(args.port, address="127.0.0.1", max_body_size=_MAX_BYTES)
    ioloop.IOLoop.current().start()


if __name__ == "__main__":  # pragma: no cover
    main()
