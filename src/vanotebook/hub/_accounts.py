"""Unix accounts of the gateway: one per hub user, one for the shared Dask cluster.

A hub user ``alice`` becomes the account ``vn-alice`` (the prefix is
configurable), made on the first start of her server, with a private home
(mode 0700) that only she and root can enter. The shared workers run as a
service account (``vn-dask``) that cannot enter anyone's home.

`make_reachable` lets those accounts run the interpreter the hub runs on:
where Python lives under a private folder (pyenv in ``/root``), the folders
above it get the "search" bit for others (``o+x``: a known path can be
opened, nothing can be listed), and the hub says which ones it changed.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
from pathlib import Path

from .._errors import VanotebookInputError

__all__ = ["delete_account", "ensure_account", "make_reachable", "unix_name"]

_VALID = re.compile(r"^[a-z_][a-z0-9_-]*$")
_MAX_NAME = 32  # useradd's limit


def unix_name(hub_name: str, prefix: str = "vn-") -> str:
    """The unix account of hub user ``hub_name``: ``prefix + hub_name``.

    Raises
    ------
    VanotebookInputError
        When the result is not a valid unix user name (lower-case letters,
        digits, ``_`` and ``-``, at most 32 characters). The hub's own
        username normalisation lower-cases names before they get here.
    """
    name = f"{prefix}{hub_name}"
    if not _VALID.match(name) or len(name) > _MAX_NAME:
        raise VanotebookInputError(
            "username", f"a name that makes a unix account ({prefix!r} + lower-case letters, "
            f"digits, '_' or '-', at most {_MAX_NAME} characters in all)", hub_name)
    return name


def ensure_account(name: str, home: str | os.PathLike, *, system: bool = False,
                   mode: int = 0o700) -> pwd.struct_passwd:
    """The unix account ``name`` with its home ``home``, made if missing.

    The home is created (or its mode and owner put right) with ``mode``:
    0700 by default, so no other account can enter it.

    Parameters
    ----------
    name : str
        Account name, e.g. from `unix_name`.
    home : path
        Its home folder.
    system : bool
        A system account (service account: no ageing, a uid below 1000).
    mode : int
        Mode of the home folder.

    Returns
    -------
    pwd.struct_passwd
        The account's entry.
    """
    home = Path(home)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        cmd = ["useradd", "--home-dir", str(home), "--no-create-home", "--user-group",
               "--shell", "/usr/sbin/nologin" if system else "/bin/bash"]
        if system:
            cmd.append("--system")
        done = subprocess.run([*cmd, name], capture_output=True, text=True, check=False)
        if done.returncode not in (0, 9):  # 9: made meanwhile by another spawn
            raise RuntimeError(f"useradd {name} failed: {done.stderr.strip()}") from None
        entry = pwd.getpwnam(name)
    if Path(entry.pw_dir) != home:  # an account kept from an earlier state dir
        subprocess.run(["usermod", "--home", str(home), name], check=True,
                       capture_output=True)
        entry = pwd.getpwnam(name)
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, mode)
    return entry


def delete_account(name: str, *, remove_home: bool = False) -> None:
    """Remove account ``name`` (and its group); its home too when asked."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return
    subprocess.run(["userdel", name], capture_output=True, check=False)
    if remove_home:
        shutil.rmtree(entry.pw_dir, ignore_errors=True)


def make_reachable(*paths: str | os.PathLike) -> list[Path]:
    """Let every account reach ``paths``: add ``o+x`` to each folder above them that lacks it.

    Only the search bit is added (no listing, no reading of anything that is
    not already readable by others). Returns the folders that were changed.
    """
    changed = []
    for path in paths:
        p = Path(path).resolve()
        for folder in [*reversed(p.parents), p] if p.is_dir() else reversed(p.parents):
            mode = folder.stat().st_mode
            if not mode & stat.S_IXOTH:
                os.chmod(folder, stat.S_IMODE(mode) | stat.S_IXOTH)
                changed.append(folder)
    return changed
