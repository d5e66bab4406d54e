"""Where a user's archives live: a personal one, and a shared one read by everyone.

On the gateway, the hub sets ``VANOTEBOOK_ARCHIVE`` to ``archive/`` in each
user's home and ``VANOTEBOOK_SHARED_ARCHIVE`` to one archive that holds the
demo sky and the products published from the gateway. On a laptop, the
personal archive is ``~/.vanotebook/archive`` and the shared one is the demo
sky's archive under ``~/.cache/vanotebook/demo``, written on first use
(a few seconds, no download).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .._errors import VanotebookInputError
from ._archive import Archive

__all__ = ["PERSONAL_ENV", "SHARED_ENV", "personal_archive", "shared_archive"]

PERSONAL_ENV = "VANOTEBOOK_ARCHIVE"
SHARED_ENV = "VANOTEBOOK_SHARED_ARCHIVE"


def _demo_folder() -> Path:
    return Path.home() / ".cache" / "vanotebook" / "demo"


def personal_archive() -> Archive:
    """The user's own archive (``$VANOTEBOOK_ARCHIVE``, else ``~/.vanotebook/archive``).

    It is created empty when missing; add images and catalogues to it freely.
    """
    path = os.environ.get(PERSONAL_ENV) or Path.home() / ".vanotebook" / "archive"
    return Archive(Path(path).expanduser())


def shared_archive(*, build: bool = True,
                   progress: Callable[[str], None] | None = None) -> Archive:
    """The archive everyone reads: the demo sky and the gateway's published products.

    Parameters
    ----------
    build : bool
        When no shared archive is configured and the demo one is missing,
        write the demo sky (`vanotebook.sky.write_demo_data`) to
        ``~/.cache/vanotebook/demo`` first (default True).
    progress : callable, optional
        Called with a message before each step of that build.

    Returns
    -------
    Archive

    Raises
    ------
    VanotebookInputError
        ``$VANOTEBOOK_SHARED_ARCHIVE`` names a folder with no archive, or the
        demo archive is missing and ``build`` is False.
    """
    configured = os.environ.get(SHARED_ENV)
    if configured:
        return Archive(Path(configured).expanduser(), create=False)
    folder = _demo_folder()
    if not (folder / "archive").is_dir():
        if not build:
            raise VanotebookInputError(
                "build", f"True, or the demo archive (vanotebook demo-data {folder})",
                f"False and no archive at {folder / 'archive'}")
        from ..sky import write_demo_data

        write_demo_data(folder, overwrite=folder.exists(), progress=progress)
    return Archive(folder / "archive", create=False)
