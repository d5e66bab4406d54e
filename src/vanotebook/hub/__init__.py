"""The gateway: what ``jupyterhub_config.py`` uses, and the dashboards app it serves.

`configure` fills a JupyterHub config with working one-machine defaults and
reads production choices from environment variables (see `HubSettings`).
"""

from ._client import HubClient, wait_for
from ._config import HubSettings, configure, proxy_command

__all__ = ["HubClient", "HubSettings", "configure", "proxy_command", "wait_for"]
