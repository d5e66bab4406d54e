"""Where a user's archives live: a personal one, and a shared one read by everyone.

On the gateway, the hub sets ``VANOTEBOOK_ARCHIVE`` to ``archive/`` in each
user's home and ``VANOTEBOOK_SHARED_ARCHIVE`` to one archive that holds the
demo sky and the products published from the gateway. On a laptop, the
personal archive is ``~/.vanotebook/archive`` and the shared one is the demo
sky's archive under `demo_folder` (``~/.cache/vanotebook/demo``). The archive
never writes the demo sky itself: ``vanotebook demo-data`` and
`vanotebook.sky.demo_archive` do (a few seconds, no download).
"""

from __future__ import annotations

import os
from pathlib import Path

from .._errors import VanotebookInputError
from ._archive import Archive

__all__ = ["PERSONAL_ENV", "SHARED_ENV", "demo_folder", "personal_archive", "shared_archive"]

PERSONAL_ENV = "VANOTEBOOK_ARCHIVE"
SHARED_ENV = "VANOTEBOOK_SHARED_ARCHIVE"


def demo_folder() -> Path:
    """Where the demo sky and its archive live when no shared archive is configured."""
    return Path.home() / ".cache" / "vanotebook" / "demo"


def personal_archive() -> Archive:
    """The user's own archive (``$VANOTEBOOK_ARCHIVE``, else ``~/.vanotebook/archive``).

    It is created empty when missing; add images and catalogues to it freely.
    """
    path = os.environ.get(PERSONAL_ENV) or Path.home() / ".vanotebook" / "archive"
    return Archive(Path(path).expanduser())


def shared_archive() -> Archive:
    """The archive everyone reads: the demo sky and the gateway's published products.

    It is ``$VANOTEBOOK_SHARED_ARCHIVE`` when set (the gateway sets it),
    else the demo sky's archive in `demo_folder`.

    Returns
    -------
    Archive

    Raises
    ------
    VanotebookInputError
        ``$VANOTEBOOK_SHARED_ARCHIVE`` names a folder with no archive, or
        none is configured and the demo sky has not been written (write it
        with ``vanotebook demo-data`` or `vanotebook.sky.demo_archive`).
    """
    configured = os.environ.get(SHARED_ENV)
    if configured:
        return Archive(Path(configured).expanduser(), create=False)
    folder = demo_folder()
    if not (folder / "archive").is_dir():
        raise VanotebookInputError(
            SHARED_ENV, "a shared archive, or the demo sky's (write it with "
            f"`vanotebook demo-data {folder}` or vanotebook.sky.demo_archive())",
            f"unset, and no archive at {folder / 'archive'}")
    return Archive(folder / "archive", create=False)
