"""Project secret names and values, checked alike by the specs that name secrets (a deploy's, a
job's ``secrets``), the registry that stores them and the REST API that sets them.

A secret reaches a replica or a run as an environment variable of the same name, so a name is
what a shell accepts as one, in capitals (``API_TOKEN``), and never a ``MODELYARD_`` name: those
carry the server's own identity and keys to replicas and runs, and a secret must not replace them.
Messages name the bad *name* and what is accepted, never a value: a value is the secret itself.

>>> check_secret_names(["DB_PASSWORD", "API_TOKEN", "DB_PASSWORD"])
('DB_PASSWORD', 'API_TOKEN')
>>> check_secret_name("db_password")
Traceback (most recent call last):
...
modelyard.errors.InvalidInput: secret name 'db_password' is not accepted; expected capitals, \
digits and '_', 1 to 128 characters, not starting with a digit (e.g. 'DB_PASSWORD'), and not \
starting with 'MODELYARD_'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from modelyard.errors import InvalidInput

__all__ = [
    "MAX_SECRETS",
    "MAX_SECRET_BYTES",
    "SECRET_NAME_RULE",
    "check_secret_name",
    "check_secret_names",
    "check_secret_value",
    "check_secrets_not_in_env",
]

SECRET_NAME_RULE = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
MAX_SECRET_BYTES = 64 * 1024  # UTF-8 bytes of one value
MAX_SECRETS = 100  # names one deployment or job may ask for
_RESERVED_PREFIX = "MODELYARD_"
_ACCEPTED = (
    "capitals, digits and '_', 1 to 128 characters, not starting with a digit "
    f"(e.g. 'DB_PASSWORD'), and not starting with {_RESERVED_PREFIX!r}"
)


def check_secret_name(name: object) -> str:
    """``name`` if it can name a secret (an environment variable); InvalidInput naming it."""
    if (
        not isinstance(name, str)
        or SECRET_NAME_RULE.match(name) is None
        or name.startswith(_RESERVED_PREFIX)
    ):
        shown = repr(name) if isinstance(name, str) else f"of type {type(name).__name__}"
        raise InvalidInput(
            f"secret name {shown[:140]} is not accepted; expected {_ACCEPTED}",
            argument="secrets",
        )
    return name


def check_secret_names(names: object) -> tuple[str, ...]:
    """A list of secret names, each checked, duplicates dropped (first kept), at most
    ``MAX_SECRETS``; None is no secrets."""
    if names is None:
        return ()
    if isinstance(names, str | bytes) or not isinstance(names, Iterable):
        raise InvalidInput(
            f"secrets={names!r:.200} is not accepted; expected a list of secret names such as "
            "['DB_PASSWORD']",
            argument="secrets",
        )
    checked = tuple(dict.fromkeys(check_secret_name(name) for name in names))
    if len(checked) > MAX_SECRETS:
        raise InvalidInput(
            f"secrets names {len(checked)} secrets; accepted: at most {MAX_SECRETS}",
            argument="secrets",
        )
    return checked


def check_secret_value(name: str, value: object) -> str:
    """``value`` if it can be a secret's value: a string of at most 64 KiB (UTF-8) without NUL
    (an environment variable cannot hold one). The message names the secret and the rule, never
    the value."""
    if not isinstance(value, str):
        raise InvalidInput(
            f"the value of secret {name!r} is a {type(value).__name__}; expected a string",
            argument="value",
        )
    if not value:
        raise InvalidInput(
            f"the value of secret {name!r} is empty; expected at least one character "
            "(delete the secret to remove it)",
            argument="value",
        )
    if "\x00" in value:
        raise InvalidInput(
            f"the value of secret {name!r} holds a NUL character, which no environment "
            "variable can; expected text without NUL",
            argument="value",
        )
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise InvalidInput(
            f"the value of secret {name!r} is not valid Unicode text (a lone surrogate); "
            "expected UTF-8 text",
            argument="value",
        ) from None
    if size > MAX_SECRET_BYTES:
        raise InvalidInput(
            f"the value of secret {name!r} is {size} bytes; accepted: at most "
            f"{MAX_SECRET_BYTES} bytes (64 KiB) of UTF-8",
            argument="value",
        )
    return value


def check_secrets_not_in_env(secrets: Iterable[str], env: Iterable[str]) -> None:
    """A variable comes from ``env`` or from ``secrets``, never both (which would win?):
    InvalidInput naming the first name in both."""
    both = sorted(set(secrets) & set(env))
    if both:
        raise InvalidInput(
            f"{both[0]!r} is both in env and in secrets; a variable comes from one of them: "
            "drop it from env (or from secrets)",
            argument="secrets",
        )
