"""The server's home folder on first start: the folder, the database, the ``admin`` user and an
admin API key.

Every start runs ``registry.people.bootstrap()`` first (user ``admin``, project ``default``, and
rows of an older home moved into them; see there). When that creates user ``admin``, its
generated password is written to ``$MODELYARD_HOME/admin.password`` and returned once so the
server can print it. The admin key is written to ``$MODELYARD_HOME/admin.key`` and returned once
too; it belongs to the admin user. Both files are mode 0600, created with that mode so they are
never readable by others, not even for an instant. Later starts find the key file and create
nothing. Deleting it makes the next start mint a new admin key (the old one stays valid until
revoked); the password file is only written again if the database has no admin user at all.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from modelyard import settings
from modelyard.errors import InvalidInput, Unauthorized
from modelyard.homedir import make_home
from modelyard.registry import Registry, Role

__all__ = [
    "ADMIN_KEY_FILE",
    "ADMIN_PASSWORD_FILE",
    "SERVER_FILE",
    "FirstStart",
    "ensure_admin_key",
    "prepare_home",
]

ADMIN_KEY_FILE = "admin.key"
ADMIN_PASSWORD_FILE = "admin.password"
SERVER_FILE = "server.json"


@dataclass(frozen=True, slots=True)
class FirstStart:
    """``admin_token`` is the new admin key (None when one existed already);
    ``admin_password`` the password of the ``admin`` user this start created (None when the
    user existed already)."""

    home: Path
    admin_token: str | None
    admin_password: str | None = None


def prepare_home(home: str | os.PathLike[str]) -> Path:
    """Create ``home`` (mode 0700) if needed; InvalidInput if it exists and is not a folder.

    The same function the SDK and the store use (``modelyard.homedir``), so the home has the same
    modes whoever creates it first.
    """
    return make_home(Path(home).expanduser().resolve())


def ensure_admin_key(home: Path, registry: Registry) -> FirstStart:
    """Bootstrap the people (every start), then mint and write the admin key unless
    ``home/admin.key`` exists."""
    password = registry.people.bootstrap()
    if password is not None:
        # A password file left from an earlier database is stale: this one is the admin's now.
        (home / ADMIN_PASSWORD_FILE).unlink(missing_ok=True)
        _write_private(home / ADMIN_PASSWORD_FILE, password)
    given = settings.get("admin_key_file")
    if given:
        _register_given_admin_key(Path(str(given)), registry)
        return FirstStart(home, None, password)
    key_file = home / ADMIN_KEY_FILE
    if key_file.exists():
        return FirstStart(home, None, password)
    admin = registry.people.admin_user()
    _, token = registry.create_api_key("admin", role="admin", expires_in_ms=None, user=admin.id)
    _write_private(key_file, token)
    return FirstStart(home, token, password)


def _register_given_admin_key(path: Path, registry: Registry) -> None:
    """``MODELYARD_ADMIN_KEY_FILE`` (e.g. a Kubernetes Secret): the admin key it holds is
    registered for user ``admin`` unless the database knows it already (a restart, or another
    server on the same database)."""
    what = f"MODELYARD_ADMIN_KEY_FILE={str(path)!r}"
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise InvalidInput(
            f"{what} cannot be read ({exc.strerror}); accepted: a readable file holding an "
            "admin API key (myk_...), or unset it so the first start mints one"
        ) from None
    try:
        key = registry.authenticate(token)
    except Unauthorized as exc:
        reason = exc.details.get("reason")
        if reason != "unknown":
            raise InvalidInput(
                f"the admin key in {what} is {reason} in this database; accepted: a new "
                "token in that file (the server registers it at start)"
            ) from None
        admin = registry.people.admin_user()
        registry.create_api_key(
            "admin (MODELYARD_ADMIN_KEY_FILE)",
            role="admin",
            expires_in_ms=None,
            user=admin.id,
            token=token,
        )
        return
    if key.role is not Role.ADMIN:
        raise InvalidInput(
            f"the key in {what} ({key.prefix}...) has role {key.role.value!r}; accepted: an "
            "admin key, or a new token (the server registers it as an admin key at start)"
        )


def _write_private(path: Path, secret: str) -> None:
    """Create ``path`` (it must not exist) with mode 0600 from the start, holding ``secret``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):  # a umask cannot widen it, but be explicit
        os.chmod(path, 0o600)
