"""Memory and CPU limits of a user's server, through cgroups (v1 or v2).

Each running server gets a cgroup ``vanotebook/<account>`` in the ``memory``
and ``cpu`` hierarchies; the server, its kernels and terminals are in it. A
kernel that allocates past the limit is killed by the kernel's OOM killer in
that cgroup only: the user loses that kernel, nobody else notices.

Where no writable cgroup hierarchy exists (containers without them, other
systems), the documented fallback is a per-process address-space limit
(``RLIMIT_AS``) of the same size on the server and each of its kernels, and
no CPU limit.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from .._errors import VanotebookInputError

__all__ = ["CgroupLimits", "parse_memory"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_memory(value: str | int) -> int:
    """Bytes of ``value``: an int, or ``"512M"``, ``"4G"``, ``"4GiB"``."""
    if isinstance(value, int) and value > 0:
        return value
    text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (text[:-1], text[-1]) if text and text[-1] in _UNITS else (text, "")
    try:
        n = float(number)
    except ValueError:
        n = -1.0
    if n <= 0:
        raise VanotebookInputError("memory limit", "a size such as 4G or 512M", value)
    return int(n * _UNITS[unit])


@dataclass
class CgroupLimits:
    """The cgroups of one account's server.

    Parameters
    ----------
    name : str
        The account (one cgroup per running server).
    memory : int
        Bytes.
    cpus : float
        Cores (CFS quota).
    root : Path
        Where the hierarchies are mounted.
    """

    name: str
    memory: int
    cpus: float
    root: Path = CGROUP_ROOT

    @classmethod
    def available(cls, root: Path = CGROUP_ROOT) -> str | None:
        """``"v1"`` or ``"v2"`` when this process can make cgroups under ``root``, else None."""
        if os.geteuid() != 0:
            return None
        if (root / "cgroup.controllers").exists():
            return "v2" if os.access(root, os.W_OK) else None
        if all(os.access(root / c, os.W_OK) for c in ("memory", "cpu")):
            return "v1"
        return None

    @property
    def version(self) -> str | None:
        return self.available(self.root)

    def _dirs(self) -> list[Path]:
        if self.version == "v2":
            return [self.root / "vanotebook" / self.name]
        return [self.root / c / "vanotebook" / self.name for c in ("memory", "cpu")]

    def create(self) -> None:
        """Make the cgroups and set the limits (idempotent)."""
        version = self.version
        if version is None:
            return
        if version == "v2":
            parent = self.root / "vanotebook"
            parent.mkdir(exist_ok=True)
            (self.root / "cgroup.subtree_control").write_text("+memory +cpu")
            (parent / "cgroup.subtree_control").write_text("+memory +cpu")
            group = parent / self.name
            group.mkdir(exist_ok=True)
            (group / "memory.max").write_text(str(self.memory))
            (group / "memory.swap.max").write_text("0")
            (group / "cpu.max").write_text(f"{int(self.cpus * 100_000)} 100000")
            return
        mem, cpu = self._dirs()
        for d in (mem, cpu):
            d.mkdir(parents=True, exist_ok=True)
        (mem / "memory.limit_in_bytes").write_text(str(self.memory))
        swap = mem / "memory.memsw.limit_in_bytes"
        if swap.exists():
            with contextlib.suppress(OSError):
                swap.write_text(str(self.memory))
        (cpu / "cpu.cfs_period_us").write_text("100000")
        (cpu / "cpu.cfs_quota_us").write_text(str(int(self.cpus * 100_000)))

    def join(self) -> None:
        """Put the calling process into the cgroups (or, without them, limit its memory).

        Safe to call between fork and exec (``preexec_fn``): it only writes files.
        """
        if self.version is None:
            resource.setrlimit(resource.RLIMIT_AS, (self.memory, self.memory))
            return
        pid = str(os.getpid())
        for d in self._dirs():
            with open(d / "cgroup.procs", "w") as f:
                f.write(pid)

    def pids(self) -> list[int]:
        """Processes in the cgroup now."""
        out: set[int] = set()
        for d in self._dirs():
            with contextlib.suppress(OSError):
                out.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return sorted(out)

    def remove(self, timeout: float = 10.0) -> None:
        """Kill what is left in the cgroups, then remove them."""
        if self.version is None:
            return
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for d in self._dirs():
            with contextlib.suppress(OSError):
                d.rmdir()

    def oom_kills(self) -> int:
        """How many processes of this cgroup the OOM killer has killed (cgroup v1 and v2)."""
        d = self._dirs()[0]
        for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
            try:
                for line in (d / name).read_text().splitlines():
                    k, _, v = line.partition(" ")
                    if k == key:
                        return int(v)
            except OSError:
                continue
        return 0
