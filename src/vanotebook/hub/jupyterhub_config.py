"""JupyterHub configuration for the vanotebook gateway.

Works out of the box on one machine (``jupyterhub -f jupyterhub_config.py`` or
``vanotebook gateway``); production choices come from environment variables,
documented in `vanotebook.hub._config` and the README.
"""

import os

from vanotebook.hub import configure

os.umask(0o077)  # the hub's files (database, secrets, CA) are its own
configure(c)  # noqa: F821 - `c` is provided by JupyterHub
