"""The Modelyard home folder and the private files in it, created with the same modes by everyone.

The home holds the database (every prediction's inputs and outputs), the admin key and the logs,
so it is created 0700 and the SQLite database 0600, whether the server, the CLI or the SDK's
embedded backend gets there first. SQLite creates its ``-wal`` and ``-shm`` files with the mode
of the database file, so creating the database file 0600 before SQLite opens it keeps those
private too. Folders and files that already exist keep their modes: they are the owner's choice.
"""

from __future__ import annotations

import os
from pathlib import Path

from modelyard.errors import InvalidInput

__all__ = ["FILE_MODE", "FOLDER_MODE", "make_home", "make_private_file", "make_private_folder"]

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def make_private_folder(path: str | os.PathLike[str], what: str = "folder") -> Path:
    """Create ``path`` (mode 0700, parents as needed) unless it exists; InvalidInput if it is a
    file. Returns the path as given (expanded, not resolved)."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"{what}={str(folder)!r} exists and is not a folder; give a folder path")
    # The umask can only narrow the mode given to mkdir, never widen it. Parents created on the
    # way get the default mode, as with ``mkdir -p -m 700``.
    folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    return folder


def make_home(path: str | os.PathLike[str]) -> Path:
    """Create the Modelyard home ``path`` (mode 0700) if needed and return it, resolved."""
    return make_private_folder(path, "home").resolve()


def make_private_file(path: str | os.PathLike[str]) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; True if this call created it.

    The file is created with that mode (``O_CREAT | O_EXCL``), so it is never readable by others,
    not even for an instant; a file that exists is left as it is.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True
