"""A small client of the gateway's REST API: users, their servers, code in their kernels.

Used by the end-to-end tests and the load benchmark, and by anyone scripting
the gateway (with a token that has the rights, e.g. ``VANOTEBOOK_API_TOKEN``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

__all__ = ["HubClient", "wait_for"]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.5) -> Any:
    """Call ``predicate`` until it returns something true; raise `TimeoutError` naming ``what``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            value = predicate()
        except (requests.ConnectionError, requests.Timeout):
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


class HubClient:
    """Talk to a JupyterHub as a service or admin token.

    Parameters
    ----------
    url : str
        The hub's public URL, e.g. ``http://127.0.0.1:8000``.
    token : str
        An API token with ``admin:users``, ``admin:servers`` and ``access:servers``.
    """

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.api = f"{self.url}/hub/api"
        self.headers = {"Authorization": f"token {token}"}

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until the proxy routes the hub's API and the token works."""
        # the proxy answers 404 on /hub/api/ until the hub adds its route
        wait_for(lambda: requests.get(f"{self.api}/", timeout=5).status_code == 200,
                 timeout, "the hub")
        wait_for(lambda: requests.get(f"{self.api}/users", headers=self.headers,
                                      timeout=5).ok, 60, "the API token")

    def spawn(self, name: str, *, timeout: float = 150) -> str:
        """Create user ``name`` if needed, start their server, return its URL when ready."""
        r = requests.post(f"{self.api}/users/{name}", headers=self.headers, timeout=30)
        if r.status_code not in (201, 409):
            raise RuntimeError(f"creating user {name}: {r.status_code} {r.text}")
        r = requests.post(f"{self.api}/users/{name}/server", headers=self.headers, timeout=60)
        if r.status_code not in (201, 202, 400):  # 400: already running
            raise RuntimeError(f"starting {name}'s server: {r.status_code} {r.text}")

        def ready():
            user = requests.get(f"{self.api}/users/{name}", headers=self.headers,
                                timeout=10).json()
            server = user.get("servers", {}).get("", {})
            return server.get("ready") and server.get("url")

        if r.status_code == 202:  # still starting: the hub tells us when it is ready
            self._wait_progress(name, timeout)
        return self.url + wait_for(ready, timeout, f"{name}'s server")

    def _wait_progress(self, name: str, timeout: float) -> None:
        """Follow the hub's progress event stream of a starting server until it is ready.

        Returns at the ``ready`` event (no polling delay), or when the stream ends
        or ``timeout`` passes; raises `RuntimeError` at a ``failed`` event.
        """
        t0 = time.monotonic()
        try:
            with requests.get(f"{self.api}/users/{name}/server/progress", headers=self.headers,
                              stream=True, timeout=(10, 30)) as r:
                if r.status_code != 200:
                    return
                for line in r.iter_lines(decode_unicode=True):
                    if time.monotonic() - t0 > timeout:
                        return
                    if not line or not line.startswith("data:"):
                        continue  # keepalive
                    event = json.loads(line[5:])
                    if event.get("ready"):
                        return
                    if event.get("failed"):
                        raise RuntimeError(f"starting {name}'s server: {event.get('message')}")
        except (requests.ConnectionError, requests.Timeout):
            return  # the polling that follows decides

    def stop(self, name: str) -> None:
        """Stop user ``name``'s server."""
        requests.delete(f"{self.api}/users/{name}/server", headers=self.headers, timeout=60)

    def execute(self, server_url: str, code: str, *, timeout: float = 180,
                timings: dict[str, float] | None = None) -> str:
        """Run ``code`` in a new kernel of a user server; return its stdout.

        Raises `RuntimeError` with the traceback when the code fails. When given,
        ``timings`` receives wall-clock times (`time.time`): ``kernel`` (the server
        started the kernel) and ``reply`` (the code's reply arrived, before the
        kernel is shut down).
        """
        import websocket

        r = requests.post(f"{server_url}api/kernels", headers=self.headers,
                          json={"name": "python3"}, timeout=60)
        if r.status_code != 201:
            raise RuntimeError(f"starting a kernel: {r.status_code} {r.text}")
        kid = r.json()["id"]
        if timings is not None:
            timings["kernel"] = time.time()
        ws = websocket.create_connection(
            server_url.replace("http://", "ws://") + f"api/kernels/{kid}/channels",
            header=[f"{k}: {v}" for k, v in self.headers.items()], timeout=timeout)
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "vanotebook",
                       "session": uuid.uuid4().hex, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        out, status = [], None
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < timeout:
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                if kind == "stream":
                    out.append(msg["content"]["text"])
                elif kind == "error":
                    out.append("\n".join(msg["content"]["traceback"]))
                elif kind == "execute_reply":
                    status = msg["content"]["status"]
                    if timings is not None:
                        timings["reply"] = time.time()
                    break
        finally:
            ws.close()
            requests.delete(f"{server_url}api/kernels/{kid}", headers=self.headers, timeout=30)
        text = "".join(out)
        if status != "ok":
            raise RuntimeError(f"code failed in {server_url} (status {status}):\n{text}")
        return text
