"""The gateway's default login: each user's own password, hashed, with lockout.

`GatewayAuthenticator` is JupyterHub's FirstUseAuthenticator (the one The
Littlest JupyterHub uses: the first login of a name sets its password, kept
as a bcrypt hash) with what a shared machine also needs:

- the admins' names are the operator's list; each admin's password is set
  before the hub starts (``VANOTEBOOK_ADMIN_PASSWORD``, or generated and
  printed once), so no one can claim an admin name by logging in first;
- repeated failed logins of a name are slowed (a growing delay before the
  answer) and then locked out for a while, the right password included;
- with ``create_users=False`` only names the admin made can log in.
"""

from __future__ import annotations

import asyncio
import dbm
import secrets
import time
from pathlib import Path

import bcrypt
from firstuseauthenticator import FirstUseAuthenticator
from traitlets import Float, Integer

__all__ = ["GatewayAuthenticator", "seed_password"]


def seed_password(dbm_path: str | Path, username: str, password: str | None) -> str | None:
    """Store the bcrypt hash of ``username``'s password unless one is stored.

    With ``password`` None a random one is made. Returns the password when it
    was set now (to be shown once), None when the user had one already.
    """
    with dbm.open(str(dbm_path), "c", 0o600) as db:
        if db.get(username.encode()) is not None:
            return None
        password = password or secrets.token_urlsafe(12)
        db[username] = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
    return password


class GatewayAuthenticator(FirstUseAuthenticator):
    """FirstUseAuthenticator with a delay after each failed login and a lockout."""

    allowed_failed_logins = Integer(
        5, config=True, help="Failed logins of one name in a row before it is locked out.")
    lockout_seconds = Float(
        300.0, config=True, help="How long a locked-out name stays locked.")
    failure_delay = Float(
        0.5, config=True, help="Seconds of delay after the first failed login; it doubles "
                               "with each further failure (at most 8 s).")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._failures: dict[str, tuple[int, float]] = {}

    def _locked(self, name: str) -> bool:
        count, last = self._failures.get(name, (0, 0.0))
        if count < self.allowed_failed_logins:
            return False
        if time.monotonic() - last > self.lockout_seconds:
            self._failures.pop(name, None)
            return False
        return True

    async def authenticate(self, handler, data):
        name = self.normalize_username(data.get("username", ""))
        if self._locked(name):
            self.log.warning("login of %s refused: locked after %d failed logins", name,
                             self.allowed_failed_logins)
            if handler is not None:
                handler.custom_login_error = (
                    "Too many failed logins for this name; try again later.")
            return None
        result = await super().authenticate(handler, data)
        if result is None:
            count = self._failures.get(name, (0, 0.0))[0] + 1
            self._failures[name] = (count, time.monotonic())
            self.log.warning("failed login of %s (%d in a row)", name, count)
            await asyncio.sleep(min(8.0, self.failure_delay * 2 ** (count - 1)))
        else:
            self._failures.pop(name, None)
        return result
