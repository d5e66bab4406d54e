"""JupyterHub configuration for the vanotebook gateway.

Works out of the box on one machine (``jupyterhub -f jupyterhub_config.py`` or
``vanotebook gateway``); production choices come from environment variables,
documented in `vanotebook.hub._config` and the README.
"""

from vanotebook.hub import configure

configure(c)  # noqa: F821 - `c` is provided by JupyterHub
