"""The server's home folder on first start: the folder, the database and an admin API key.

The admin key is written to ``$MODELYARD_HOME/admin.key`` (mode 0600, created with that mode so
it is never readable by others, not even for an instant) and returned once so the server can
print it. Later starts find the file and create nothing. Deleting the file makes the next start
mint a new admin key (the old one stays valid until revoked).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from modelyard.homedir import make_home
from modelyard.registry import Registry

__all__ = ["ADMIN_KEY_FILE", "SERVER_FILE", "FirstStart", "ensure_admin_key", "prepare_home"]

ADMIN_KEY_FILE = "admin.key"
SERVER_FILE = "server.json"


@dataclass(frozen=True, slots=True)
class FirstStart:
    """``admin_token`` is the new admin key (None when one existed already)."""

    home: Path
    admin_token: str | None


def prepare_home(home: str | os.PathLike[str]) -> Path:
    """Create ``home`` (mode 0700) if needed; InvalidInput if it exists and is not a folder.

    The same function the SDK and the store use (``modelyard.homedir``), so the home has the same
    modes whoever creates it first.
    """
    return make_home(Path(home).expanduser().resolve())


def ensure_admin_key(home: Path, registry: Registry) -> FirstStart:
    """Mint and write the admin key unless ``home/admin.key`` exists."""
    key_file = home / ADMIN_KEY_FILE
    if key_file.exists():
        return FirstStart(home, None)
    _, token = registry.create_api_key("admin", role="admin", expires_in_ms=None)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):  # a umask cannot widen it, but be explicit
        os.chmod(key_file, 0o600)
    return FirstStart(home, token)
