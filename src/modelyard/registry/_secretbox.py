"""``SecretBox``: encrypts and decrypts project secrets with a key kept outside the database.

The cipher is ``cryptography``'s Fernet (AES-128-CBC with an HMAC-SHA256 over the whole token, a
random IV per token): a maintained library's *authenticated* encryption, so a token that was
changed, cut, or made with another key is refused (``InvalidToken``) instead of decrypting to
garbage that a replica would then use as a password. Rolling our own mode, or using unauthenticated
AES, would give neither guarantee.

What is encrypted is not the bare value but ``{"p": project, "n": name, "v": value}``, checked on
the way out: someone who can write to the database but has no key cannot move one secret's
ciphertext into another row (another name, another project) and have it read there.

The key, in this order:

1. ``MODELYARD_SECRETS_KEY``: one Fernet key, or several separated by commas for rotation (the
   first encrypts; every one decrypts: ``MultiFernet``). Put the new key first, re-set the secrets
   (or leave them: old tokens still decrypt), then drop the old key.
2. ``<home>/secrets.key``: created at the first need (the first secret set or read), mode 0600,
   written to a private temporary file and linked into place (``O_EXCL`` semantics: two servers
   starting at once agree on the one key that won, and nobody ever reads a half-written key).

Several servers on one PostgreSQL database must share the key (give each the same
``MODELYARD_SECRETS_KEY``, or copy ``secrets.key``): a server with another key cannot read the
secrets, and says so naming the secret and where its key came from (never the value, never the
key).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from modelyard import settings
from modelyard.errors import InvalidInput, ModelyardError
from modelyard.homedir import FILE_MODE

__all__ = ["KEY_FILE", "SecretBox", "SecretKeyError"]

KEY_FILE = "secrets.key"
_ENV = "MODELYARD_SECRETS_KEY"
_HOW_TO_MAKE = (
    "a Fernet key is 32 bytes in url-safe base64 (44 characters), as "
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' "
    "prints"
)


class SecretKeyError(ModelyardError):
    """A secret cannot be decrypted with this server's key, or the key cannot be read or made.

    A server problem (500), not the caller's: the message names the secret and the key's source
    (``MODELYARD_SECRETS_KEY`` or the key file), never a value or a key."""


def _fernets(text: str, source: str) -> list[Fernet]:
    parts = [part.strip() for part in text.split(",")]
    keys: list[Fernet] = []
    for index, part in enumerate(parts, start=1):
        try:
            keys.append(Fernet(part.encode()))
        except (ValueError, TypeError):
            # The entry is a key, or part of one: say which entry, never what it holds.
            raise InvalidInput(
                f"{source}: entry {index} of {len(parts)} is not a Fernet key; expected one key, "
                f"or several separated by commas (the first encrypts); {_HOW_TO_MAKE}"
            ) from None
    return keys


class SecretBox:
    """Encrypts with the first key and decrypts with any (see the module docstring).

    ``SecretBox.for_home(home)`` reads ``MODELYARD_SECRETS_KEY`` now (a malformed one is refused
    at once, at the server's start) and otherwise uses ``home/secrets.key`` when first needed.
    ``SecretBox(keys=...)`` takes keys directly (tests, tools)."""

    def __init__(self, *, keys: str | None = None, key_file: Path | None = None) -> None:
        if (keys is None) == (key_file is None):
            raise InvalidInput(
                "SecretBox needs exactly one of keys (comma-separated Fernet keys) and key_file "
                "(a path)"
            )
        self._key_file = key_file
        self._lock = threading.Lock()
        self._box: MultiFernet | None = None
        if keys is not None:
            self.source = _ENV
            self._box = MultiFernet(_fernets(keys, _ENV))
        else:
            self.source = f"the key file {key_file}"

    @classmethod
    def for_home(cls, home: str | os.PathLike[str]) -> SecretBox:
        """The server's box: ``MODELYARD_SECRETS_KEY`` if set, else ``<home>/secrets.key``."""
        given = settings.get("secrets_key")
        if given:
            return cls(keys=str(given))
        return cls(key_file=Path(home) / KEY_FILE)

    # -- the key ----------------------------------------------------------------------------------
    def _multi(self) -> MultiFernet:
        with self._lock:
            if self._box is None:
                assert self._key_file is not None
                self._box = MultiFernet(_fernets(self._read_or_make(self._key_file), self.source))
            return self._box

    def _read_or_make(self, path: Path) -> str:
        """The key file's key, made first if the file does not exist yet."""
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            text = _make_key_file(path)
        except OSError as exc:
            raise SecretKeyError(
                f"cannot read {self.source} ({exc.strerror}); it holds the key that decrypts "
                f"the project secrets: make it readable by the server, or set {_ENV}"
            ) from None
        if not text:
            raise SecretKeyError(
                f"{self.source} is empty; it must hold the Fernet key the secrets were "
                f"encrypted with (restore it from a backup, or set {_ENV})"
            )
        return text

    # -- values -----------------------------------------------------------------------------------
    def seal(self, project_crn: str, name: str, value: str) -> bytes:
        """The ciphertext of ``value`` for secret ``name`` of ``project_crn``."""
        payload = orjson.dumps({"p": project_crn, "n": name, "v": value})
        return self._multi().encrypt(payload)

    def unseal(self, project_crn: str, name: str, token: bytes, project_shown: str = "") -> str:
        """The value sealed in ``token`` for this secret; SecretKeyError naming the secret and
        the key's source if this key cannot decrypt it or it belongs to another secret."""
        where = project_shown or project_crn
        try:
            data = orjson.loads(self._multi().decrypt(bytes(token)))
        except InvalidToken:
            raise SecretKeyError(
                f"secret {name!r} of project {where!r} cannot be decrypted with the key from "
                f"{self.source}: it was encrypted with another key (a server sharing this "
                f"database needs the same key), or the stored value was changed; set {_ENV} to "
                "the key it was encrypted with (several keys may be given, comma-separated), or "
                "set the secret again",
                secret=name,
            ) from None
        if not isinstance(data, dict) or data.get("p") != project_crn or data.get("n") != name:
            raise SecretKeyError(
                f"secret {name!r} of project {where!r} holds another secret's ciphertext (it "
                "was copied in the database); set the secret again",
                secret=name,
            )
        value = data.get("v")
        assert isinstance(value, str)
        return value

    def rotated(self, token: bytes) -> bytes:
        """``token`` re-encrypted with the first key (``MultiFernet.rotate``)."""
        return self._multi().rotate(bytes(token))


def _make_key_file(path: Path) -> str:
    """Write a new key to ``path`` unless another process did first; returns the file's key.

    The key goes into a private temporary file (``O_EXCL``, 0600) that is then hard-linked to
    ``path``: the link fails if ``path`` exists, so exactly one key wins and nobody reads a
    half-written file."""
    key = Fernet.generate_key().decode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except OSError as exc:
        raise SecretKeyError(
            f"cannot create the secrets key file {path} ({exc.strerror}); make its folder "
            f"writable by the server, or set {_ENV}"
        ) from None
    try:
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_text().strip()  # another process won: its key is the key
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return key
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
