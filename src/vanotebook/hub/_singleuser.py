"""The gateway's user-server command: ``jupyterhub-singleuser``, started lighter.

``python -m vanotebook.hub._singleuser [args]`` runs JupyterHub's single-user
server unchanged, except that ``jsonschema`` does not load its
``rfc3987_syntax`` format checker. That optional checker (pulled in by
``jupyter_events`` through ``jsonschema[format-nongpl]``) builds about 35 Lark
parsers when it is imported: ~0.8 s of CPU in every user server, for the
``iri`` / ``iri-reference`` formats that no Jupyter schema uses
(python-jsonschema/jsonschema#1428, jupyter-server/jupyter_server#1559).
Without it ``jsonschema`` simply does not check those two formats.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run ``jupyterhub-singleuser`` with the arguments given to this module."""
    # a None entry makes `from rfc3987_syntax import ...` raise ImportError,
    # which jsonschema's format module catches (it then skips that checker)
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    from jupyterhub.singleuser import main as singleuser_main

    sys.argv[0] = "jupyterhub-singleuser"
    sys.exit(singleuser_main())


if __name__ == "__main__":
    main()
