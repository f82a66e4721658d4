"""Secret tokens: how they are minted, what is stored of them, and how they are compared.

A token is a recognisable prefix (``mya_`` for a model's access key, ``myk_`` for an API key, so
a leaked one is easy to spot in logs and secret scanners) plus 32 random bytes from ``secrets``
(43 URL-safe characters, 256 bits). The database keeps only the SHA-256 of the whole token and its
first few characters for display: a stolen database gives no usable key. SHA-256 without salt or
stretching is enough for random 256-bit tokens (nothing to brute-force, unlike passwords) and lets
a lookup go straight to a unique index.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = [
    "ACCESS_KEY_PREFIX",
    "API_KEY_PREFIX",
    "DISPLAY_CHARS",
    "display_prefix",
    "hash_token",
    "new_token",
    "same_hash",
]

ACCESS_KEY_PREFIX = "mya_"
API_KEY_PREFIX = "myk_"
# The kind prefix plus 8 random characters: enough to tell keys apart in a listing, far too few
# to guess the remaining 35.
DISPLAY_CHARS = 12


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest that the database stores and looks tokens up by."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def display_prefix(token: str) -> str:
    return token[:DISPLAY_CHARS]


def same_hash(stored: str, computed: str) -> bool:
    """Constant-time comparison, so response timing says nothing about how close a guess was."""
    return hmac.compare_digest(stored.encode("ascii"), computed.encode("ascii"))
