"""A connection's definition, checked once: ``ConnectionSpec``, what the CLI builds, the REST API
parses a body into and the registry stores (``registry.connections``).

A connection names where a project's data lives: its ``kind`` (one of ``KINDS``), its address and
options in the clear (``options``: only the names ``OPTIONS[kind]`` lists, each of its type) and
which project secret holds each credential (``secrets``: credential option -> secret name, only
the options ``SECRETS[kind]`` lists). A credential given as a plain option (``password=...``, a
URL with ``user:password@``) is refused, naming the option, never quoting its value: credentials
live in project secrets (``modelyard secrets set NAME``), encrypted, and reach only the process
that reads the data.

>>> spec = ConnectionSpec(
...     name="crm", kind="postgresql",
...     options={"host": "db.internal", "port": "5432", "database": "crm", "user": "reader"},
...     secrets={"password": "CRM_PASSWORD"},
... )
>>> spec.options["port"], spec.secrets
(5432, {'password': 'CRM_PASSWORD'})
>>> ConnectionSpec(name="crm", kind="postgresql", options={"host": "db", "database": "crm",
...     "password": "hunter2"})
Traceback (most recent call last):
...
modelyard.errors.InvalidInput: option 'password' of connection 'crm' is a credential; keep it \
in a project secret instead: 'modelyard secrets set CRM_PASSWORD', then '--secret \
password=CRM_PASSWORD'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from modelyard.errors import InvalidInput
from modelyard.specs._base import Spec
from modelyard.specs.checks import MODEL_NAME_RULE, check_path
from modelyard.specs.secret_names import check_secret_name

__all__ = [
    "CREDENTIAL_OPTIONS",
    "KINDS",
    "OPTIONS",
    "REQUIRED",
    "SECRETS",
    "ConnectionSpec",
    "check_connection_name",
]

KINDS = ("postgresql", "mysql", "sqlite", "s3", "files", "nats", "rabbitmq")

# Option name -> its type: "text", "port", "seconds" (1..3600), "bool", "abspath" (an absolute
# path), "relpath" (a path under the connection's root: no '..'), "url" (http/https),
# "bucket", "servers" (one or more nats:// URLs), "sslmode" (PostgreSQL's).
OPTIONS: dict[str, dict[str, str]] = {
    "postgresql": {
        "host": "text",
        "port": "port",
        "database": "text",
        "user": "text",
        "sslmode": "sslmode",
        "connect_timeout": "seconds",
        "statement_timeout": "seconds",
        "application_name": "text",
    },
    "mysql": {
        "host": "text",
        "port": "port",
        "database": "text",
        "user": "text",
        "ssl": "bool",
        "charset": "text",
        "connect_timeout": "seconds",
        "read_timeout": "seconds",
    },
    "sqlite": {"path": "abspath"},
    "files": {"path": "abspath"},
    "s3": {"bucket": "bucket", "prefix": "relpath", "endpoint_url": "url", "region": "text"},
    "nats": {"servers": "servers", "stream": "text", "subject": "text", "durable": "text"},
    "rabbitmq": {
        "host": "text",
        "port": "port",
        "vhost": "text",
        "queue": "text",
        "user": "text",
        "ssl": "bool",
    },
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "postgresql": ("host", "database"),
    "mysql": ("host", "database"),
    "sqlite": ("path",),
    "files": ("path",),
    "s3": ("bucket",),
    "nats": ("servers", "stream"),
    "rabbitmq": ("host", "queue"),
}
# Credential option -> what it is; only these may be given, and only through ``secrets``.
SECRETS: dict[str, tuple[str, ...]] = {
    "postgresql": ("password",),
    "mysql": ("password",),
    "sqlite": (),
    "files": (),
    "s3": ("access_key_id", "secret_access_key", "session_token"),
    "nats": ("user", "password", "token"),
    "rabbitmq": ("password",),
}
# Names that are credentials whatever the kind: refused as plain options, naming the way out.
CREDENTIAL_OPTIONS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "token",
        "api_key",
        "access_key",
        "access_key_id",
        "secret_key",
        "secret_access_key",
        "session_token",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "credentials",
        "creds",
    }
)
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")
MAX_TEXT = 1000
_FIELDS = ("name", "kind", "options", "secrets")


def check_connection_name(name: object) -> str:
    """``name`` if it can name a connection (it appears in URLs, as model and job names do)."""
    if not isinstance(name, str) or MODEL_NAME_RULE.match(name) is None:
        raise InvalidInput(
            f"connection name {name!r:.100} is not accepted; a name is 1 to 63 characters of "
            "lowercase letters, digits and '-', starting with a letter or digit (e.g. 'crm'), "
            "because it appears in URLs",
            argument="name",
        )
    return name


def _accepted(kind: str) -> str:
    names = ", ".join(f"{name} ({kind_})" for name, kind_ in OPTIONS[kind].items())
    return f"options of a {kind} connection: {names}"


def _bad(where: str, value: object, expected: str) -> InvalidInput:
    return InvalidInput(
        f"{where}={value!r:.200} is not accepted; expected {expected}", argument="options"
    )


def _has_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


def _text(where: str, value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT or "\x00" in value:
        raise _bad(where, value, f"a non-empty string of at most {MAX_TEXT} characters")
    return value


def _int(where: str, value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(where, value, f"{what}: an integer from {low} to {high}")
    return value


def _bool(where: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise _bad(where, value, "true or false")


def _abspath(where: str, value: object) -> str:
    accepted = "an absolute path on the server's host, without '..', such as '/data/labels'"
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise _bad(where, value, accepted)
    text = check_path(value, where, accepted)
    path = PurePosixPath(text)
    if not path.is_absolute() or ".." in path.parts:
        raise _bad(where, text, accepted)
    return text


def _relpath(where: str, value: object) -> str:
    accepted = "a key prefix inside the bucket without '..' or a leading '/', such as 'labels/'"
    if not isinstance(value, str):
        raise _bad(where, value, accepted)
    text = check_path(value, where, accepted) if value else value
    if text.startswith("/") or ".." in PurePosixPath(text).parts:
        raise _bad(where, text, accepted)
    return text


def _url(where: str, value: object, schemes: tuple[str, ...]) -> str:
    text = _text(where, value)
    if _has_password(text):
        raise InvalidInput(
            f"{where} holds a password in its URL (user:password@...); keep credentials in "
            "project secrets and give the URL without them",
            argument="options",
        )
    try:
        parts = urlsplit(text)
        ok = parts.scheme in schemes and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise _bad(where, text, f"a URL such as '{schemes[0]}://host:port'")
    return text


def _servers(where: str, value: object) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items or len(items) > 32:
        raise _bad(where, value, "one to 32 NATS server URLs such as 'nats://host:4222'")
    return [_url(where, str(item).strip(), ("nats", "tls")) for item in items]


def _option(kind: str, where: str, typ: str, value: object) -> Any:
    """``value`` of an option of type ``typ`` (see ``OPTIONS``), converted from the CLI's text."""
    if typ == "port":
        return _int(where, value, 1, 65535, "a port")
    if typ == "seconds":
        return _int(where, value, 1, 3600, "seconds")
    if typ == "bool":
        return _bool(where, value)
    if typ == "abspath":
        return _abspath(where, value)
    if typ == "relpath":
        return _relpath(where, value)
    if typ == "url":
        return _url(where, value, ("https", "http"))
    if typ == "servers":
        return _servers(where, value)
    text = _text(where, value)
    if typ == "bucket" and _BUCKET.match(text) is None:
        raise _bad(where, text, "a bucket name: 3 to 63 lowercase letters, digits, '.' and '-'")
    if typ == "sslmode" and text not in _SSLMODES:
        raise _bad(where, text, f"one of {', '.join(_SSLMODES)}")
    return text


class ConnectionSpec(Spec):
    """A connection: ``name`` (unique in its project), ``kind``, ``options`` in the clear and
    ``secrets`` (credential option -> project secret name). See the module docstring."""

    name: str = Field(description="the connection's name in its project, such as 'crm'")
    kind: str = Field(description=f"one of {', '.join(KINDS)}")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="address and options in the clear (per kind: host, port, database, user; "
        "path; bucket, prefix, endpoint_url, region; servers, stream, subject, durable; host, "
        "port, vhost, queue, user)",
    )
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="credential option -> name of the project secret holding it, such as "
        "{'password': 'CRM_PASSWORD'}",
    )

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: object) -> str:
        return check_connection_name(value)

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: object) -> str:
        if value not in KINDS:
            raise InvalidInput(
                f"kind={value!r:.100} is not accepted; expected one of {', '.join(KINDS)}",
                argument="kind",
            )
        assert isinstance(value, str)
        return value

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        """Options and secrets are checked against the kind, so they are checked together."""
        if not isinstance(data, Mapping):
            return data
        unknown = sorted(str(key) for key in data if key not in _FIELDS)
        if unknown:  # named, never quoted: a stray field may be a credential
            raise InvalidInput(
                f"field {unknown[0]!r:.100} is not accepted in a connection; fields: "
                f"{', '.join(_FIELDS)} (credentials go in secrets, by secret name)",
                argument=unknown[0],
            )
        name, kind = data.get("name"), data.get("kind")
        if not isinstance(name, str) or kind not in KINDS:
            return data  # the field validators name what is wrong
        assert isinstance(kind, str)
        options = _options(name, kind, data.get("options"))
        secrets = _secrets(name, kind, data.get("secrets"))
        missing = [o for o in REQUIRED[kind] if o not in options]
        if missing:
            raise InvalidInput(
                f"connection {name!r} ({kind}) needs option {missing[0]!r}; "
                f"{_accepted(kind)}; required: {', '.join(REQUIRED[kind])}",
                argument="options",
            )
        if kind == "nats" and "token" in secrets and ("user" in secrets or "password" in secrets):
            raise InvalidInput(
                f"connection {name!r} (nats) names both a token and a user/password; expected "
                "one of them: --secret token=NAME, or --secret user=NAME --secret password=NAME",
                argument="secrets",
            )
        return {**data, "options": options, "secrets": secrets}

    def changed(self, options: Mapping[str, Any] | None, secrets: Mapping[str, str] | None) -> Self:
        """This connection with ``options`` and/or ``secrets`` replaced (None keeps them)."""
        return type(self)(
            name=self.name,
            kind=self.kind,
            options=dict(self.options if options is None else options),
            secrets=dict(self.secrets if secrets is None else secrets),
        )


def _options(name: str, kind: str, options: object) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):  # described, not quoted: it may hold a credential
        raise InvalidInput(
            f"options is a {type(options).__name__}; expected a mapping of option -> value; "
            f"{_accepted(kind)}",
            argument="options",
        )
    checked: dict[str, Any] = {}
    for option, value in options.items():
        if not isinstance(option, str):
            raise _bad("option name", option, _accepted(kind))
        lowered = option.lower()
        if lowered in CREDENTIAL_OPTIONS or lowered in SECRETS[kind]:
            secret = f"{name.upper().replace('-', '_')}_{lowered.upper()}"
            raise InvalidInput(
                f"option {option!r} of connection {name!r} is a credential; keep it in a "
                f"project secret instead: 'modelyard secrets set {secret}', then "
                f"'--secret {lowered}={secret}'",
                argument="options",
            )
        typ = OPTIONS[kind].get(option)
        if typ is None:
            raise InvalidInput(
                f"option {option!r:.100} is not accepted for a {kind} connection; "
                f"{_accepted(kind)}",
                argument="options",
            )
        checked[option] = _option(kind, f"option {option}", typ, value)
    return checked


def _secrets(name: str, kind: str, secrets: object) -> dict[str, str]:
    if secrets is None:
        return {}
    accepted = ", ".join(SECRETS[kind]) or "none (this kind takes no credentials)"
    if not isinstance(secrets, Mapping):
        raise _bad("secrets", secrets, f"a mapping of credential -> secret name ({accepted})")
    checked: dict[str, str] = {}
    for option, secret in secrets.items():
        if option not in SECRETS[kind]:
            raise InvalidInput(
                f"credential {option!r:.100} is not accepted for a {kind} connection "
                f"({name!r}); accepted: {accepted}",
                argument="secrets",
            )
        checked[option] = check_secret_name(secret)
    return checked
