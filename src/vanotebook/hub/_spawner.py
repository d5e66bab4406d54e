"""The gateway's spawner: each user's server as their own unix account, in their cgroup.

`GatewaySpawner` is JupyterHub's `LocalProcessSpawner` (which drops to a unix
account between fork and exec) with the account made on first start:

- hub user ``alice`` runs as ``vn-alice`` (`_accounts.unix_name`), home
  ``<homes>/vn-alice`` at mode 0700, umask 077 for the server, its kernels
  and terminals;
- the tutorials are copied into a new home, owned by the user;
- a client certificate of the shared cluster's CA is issued into
  ``~/.vanotebook/dask`` (0700, the user's), and the server's environment
  makes every Dask comm TLS with it;
- the server, its kernels and terminals run in a cgroup with the memory and
  CPU of the chosen profile (`_limits.CgroupLimits`), removed at stop;
- the compiled numba kernels are copied into the account's own cache
  (`_numba`), so a new kernel does not compile them again;
- at most ``concurrency`` servers start at once, and `start` returns when the
  server accepts connections.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
from pathlib import Path
from typing import Any, ClassVar

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from traitlets import Dict, Integer, Unicode

from .._errors import VanotebookInputError
from ._accounts import ensure_account, unix_name
from ._limits import CgroupLimits, parse_memory
from ._tls import ClusterCA, dask_tls_env

__all__ = ["GatewaySpawner"]


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


class GatewaySpawner(LocalProcessSpawner):
    """Local servers as per-user unix accounts, with limits and a cluster certificate."""

    user_prefix = Unicode("vn-", config=True, help="Prefix of the users' unix accounts.")
    homes = Unicode("/home", config=True, help="Folder of the users' homes.")
    notebooks = Unicode("", config=True, help="Tutorials copied into each new home.")
    ca_dir = Unicode("", config=True, help="The shared cluster's CA (empty: no TLS).")
    numba_seed = Unicode("", config=True,
                         help="Compiled kernels copied into each account's own numba cache.")
    profiles = Dict(config=True, help="Resource profiles: key -> {display_name, cpu, mem, gpu}.")
    default_profile = Unicode("small", config=True)
    concurrency = Integer(0, config=True, help="Servers started at once (0: no limit).")

    _slots: ClassVar[dict[int, asyncio.Semaphore]] = {}

    @property
    def unix_name(self) -> str:
        """The unix account this user's server runs as."""
        return unix_name(self.user.name, self.user_prefix)

    @property
    def profile(self) -> dict[str, Any]:
        key = self.user_options.get("profile") or self.default_profile
        if self.profiles and key not in self.profiles:
            # a profile this machine does not offer (asked for through the REST API):
            # refused, never started without limits
            raise VanotebookInputError("profile", f"one of {tuple(self.profiles)}", key)
        return {"key": key, **self.profiles.get(key, {})}

    @property
    def limits(self) -> CgroupLimits | None:
        p = self.profile
        if not p.get("mem"):
            return None
        return CgroupLimits(self.unix_name, parse_memory(p["mem"]), float(p.get("cpu", 1)))

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        entry = pwd.getpwnam(self.unix_name)
        env.update(USER=entry.pw_name, LOGNAME=entry.pw_name, HOME=entry.pw_dir,
                   SHELL=entry.pw_shell or "/bin/bash")
        return env

    def make_preexec_fn(self, name: str):
        drop = set_user_setuid(self.unix_name)
        limits = self.limits

        def preexec() -> None:  # between fork and exec, as root
            if limits is not None:
                limits.join()
            os.umask(0o077)
            drop()

        return preexec

    def _prepare_account(self) -> pwd.struct_passwd:
        entry = ensure_account(self.unix_name, Path(self.homes) / self.unix_name)
        home = Path(entry.pw_dir)
        if self.notebooks and not (home / "tutorials").exists():
            target = home / "tutorials"
            shutil.copytree(self.notebooks, target,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
            _chown_tree(target, entry.pw_uid, entry.pw_gid)
            for dirpath, _dirnames, filenames in os.walk(target):
                os.chmod(dirpath, 0o700)
                for name in filenames:
                    os.chmod(os.path.join(dirpath, name), 0o600)
        env: dict[str, str] = {"VANOTEBOOK_PROFILE": self.profile["key"],
                               "VANOTEBOOK_ACCOUNT": entry.pw_name}
        if not self.profile.get("gpu"):
            env["CUDA_VISIBLE_DEVICES"] = ""
        if self.ca_dir:
            private = home / ".vanotebook"
            private.mkdir(mode=0o700, exist_ok=True)
            os.chown(private, entry.pw_uid, entry.pw_gid)
            creds = ClusterCA(self.ca_dir).issue(entry.pw_name, private / "dask",
                                                 uid=entry.pw_uid, gid=entry.pw_gid)
            env.update(dask_tls_env(creds))
        if self.numba_seed:
            from ._numba import copy_cache

            cache = home / ".cache" / "vanotebook-numba"
            for folder in (home / ".cache", cache):
                folder.mkdir(mode=0o700, exist_ok=True)
                os.chown(folder, entry.pw_uid, entry.pw_gid)
            copy_cache(Path(self.numba_seed), cache, entry.pw_uid, entry.pw_gid)
            env["NUMBA_CACHE_DIR"] = str(cache)
        self.environment = {**self.environment, **env}
        limits = self.limits
        if limits is not None:
            limits.create()
        return entry

    async def start(self) -> tuple[str, int]:
        slots = None
        if self.concurrency > 0:
            slots = self._slots.setdefault(self.concurrency,
                                           asyncio.Semaphore(self.concurrency))
        if slots is None:
            return await self._start_and_wait()
        async with slots:
            return await self._start_and_wait()

    async def _start_and_wait(self) -> tuple[str, int]:
        await asyncio.to_thread(self._prepare_account)
        ip, port = await super().start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.http_timeout
        while loop.time() < deadline and self.proc.poll() is None:
            try:
                _reader, writer = await asyncio.open_connection(ip or "127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            break
        # a server that died or never listened is the hub's to report, as before
        return ip, port

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        limits = self.limits
        if limits is not None:
            # kernels and terminals left behind by the server go with it
            await asyncio.to_thread(limits.remove)
