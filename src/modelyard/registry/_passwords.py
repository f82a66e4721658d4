"""Passwords: argon2id hashes (argon2-cffi), checked in about the same time whether or not the
user exists.

Why argon2id: it is the memory-hard winner of the Password Hashing Competition and the first
choice of RFC 9106 and of OWASP's password storage guidance; memory hardness makes each guess of a
stolen hash cost memory as well as time, which GPUs and ASICs cannot cheapen the way they cheapen
SHA-based schemes. argon2-cffi is the maintained binding of the reference C implementation.

Why the RFC 9106 *low-memory* profile (t=3, m=64 MiB, p=4; about 0.1 s on one core): a sign-in
runs on the server that also serves models, and the first profile (2 GiB per hash) would let a
handful of concurrent sign-ins exhaust its memory. 64 MiB per guess is still far beyond what
makes GPU cracking cheap. When the parameters change, ``verify`` reports that the stored hash
needs rehashing, and the registry stores a new one at the next successful sign-in.

Tokens (API keys, access keys) are not passwords: they are 256 random bits, hashed with plain
SHA-256 (``_keys.py``), since nothing about them can be guessed.
"""

from __future__ import annotations

import secrets
import threading

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

from modelyard import settings
from modelyard.errors import InvalidInput

__all__ = [
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "check_password",
    "dummy_verify",
    "hash_password",
    "new_password",
    "verify_password",
]

MIN_PASSWORD = 8
MAX_PASSWORD = 1000  # argon2 takes any length; a bound keeps a sign-in request cheap to refuse
_HASHERS = {
    "rfc9106-low-memory": PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY),
    # MODELYARD_PASSWORD_HASH=fast: a test suite starts hundreds of servers, each hashing a new
    # admin password; real users never get this one (the setting's help says so).
    "fast": PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1, type=Type.ID),
}


def _hasher() -> PasswordHasher:
    """The hasher of ``MODELYARD_PASSWORD_HASH`` (read at each use, so a change applies to the
    next hash made; verifying reads the parameters stored in the hash itself)."""
    return _HASHERS[str(settings.get("password_hash"))]


_DUMMY: dict[str, str] = {}
_DUMMY_LOCK = threading.Lock()


def check_password(password: object) -> str:
    """The password if it is a string of 8 to 1000 characters; InvalidInput otherwise (the
    message never repeats the password, only its length)."""
    if not isinstance(password, str):
        raise InvalidInput(
            f"password must be a string of {MIN_PASSWORD} to {MAX_PASSWORD} characters, "
            f"not a {type(password).__name__}",
            argument="password",
        )
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(
            f"a password of {len(password)} characters is not accepted; passwords are "
            f"{MIN_PASSWORD} to {MAX_PASSWORD} characters long",
            argument="password",
            length=len(password),
        )
    return password


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string: parameters and salt included) of a checked password."""
    return _hasher().hash(check_password(password))


def verify_password(stored: str, password: str) -> tuple[bool, str | None]:
    """(matches, a new hash to store or None). The new hash is given when the password matched
    and ``stored`` was made with other parameters than today's (``check_needs_rehash``)."""
    try:
        _hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False, None
    if _hasher().check_needs_rehash(stored):
        return True, _hasher().hash(password)
    return True, None


def dummy_verify(password: str) -> None:
    """Spend what a real check spends, for a user that does not exist or has no password: the
    answer's timing then does not tell which names exist."""
    profile = str(settings.get("password_hash"))
    with _DUMMY_LOCK:
        if profile not in _DUMMY:  # one per profile: it must cost what today's hashes cost
            _DUMMY[profile] = _hasher().hash(secrets.token_urlsafe(16))
        stored = _DUMMY[profile]
    verify_password(stored, password)


def new_password() -> str:
    """A generated password (24 URL-safe characters, 144 random bits) for the first admin."""
    return secrets.token_urlsafe(18)
