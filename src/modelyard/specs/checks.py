"""Argument checks shared by the registry's methods; each message names the argument, the bad
value and what would be accepted."""

from __future__ import annotations

import math
import os
import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import orjson

from modelyard.errors import InvalidInput

__all__ = [
    "MAX_GPUS",
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "MODEL_NAME_RULE",
    "check_accelerator",
    "check_cpus",
    "check_env",
    "check_gpus",
    "check_memory",
    "check_model_name",
    "check_path",
    "check_relative_path",
    "check_replicas",
    "check_text",
    "encode_json",
]

# Names appear in URLs (/api/v1/models/{name}/predict) and in folder names: keep them plain.
MODEL_NAME_RULE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The replica learns its identity from these; a deployment must not override them.
RESERVED_ENV = frozenset({"MODELYARD_MODEL_CRN", "MODELYARD_BUILD_CRN", "MODELYARD_DEPLOYMENT_CRN"})
MAX_ENV_VARS = 256
MAX_ENV_VALUE = 32 * 1024
MAX_REPLICAS = 256
MIN_MEMORY = 16 * 1024**2
MAX_MEMORY = 1024**4
MAX_CPUS = 1024.0
MAX_GPUS = 64
_ACCELERATOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")


def check_model_name(name: object) -> str:
    if not isinstance(name, str) or MODEL_NAME_RULE.match(name) is None:
        raise InvalidInput(
            f"model name {name!r} is not accepted; a name is 1 to 63 characters of lowercase "
            "letters, digits and '-', starting with a letter or digit (e.g. 'churn-v2'), "
            "because it appears in URLs",
            name=repr(name),
        )
    return name


def check_text(argument: str, value: object, *, max_len: int = 1000, optional: bool = False) -> Any:
    """A non-empty string of at most ``max_len`` characters (or None when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value or len(value) > max_len:
        extra = " or None" if optional else ""
        raise InvalidInput(
            f"{argument}={value!r} is not accepted; expected a non-empty string of at most "
            f"{max_len} characters{extra}",
            argument=argument,
        )
    return value


def check_relative_path(argument: str, value: object) -> str | None:
    """A path inside the project: relative, without '..', one the file system can take (None:
    no file)."""
    accepted = "a relative path without '..' such as 'requirements.txt', or None"
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise InvalidInput(
            f"{argument}={value!r} is not accepted; expected {accepted}", argument=argument
        )
    text = check_path(value, argument, accepted)
    posix, windows = PurePosixPath(text), PureWindowsPath(text)
    if posix.is_absolute() or windows.is_absolute() or ".." in posix.parts or ".." in windows.parts:
        raise InvalidInput(
            f"{argument}={text!r} is not a path inside the project; expected a relative path "
            "without '..' such as 'requirements.txt', or None",
            argument=argument,
        )
    return text


MAX_PATH_BYTES = 4_096  # PATH_MAX on Linux
MAX_NAME_BYTES = 255  # NAME_MAX: one part of a path


def check_path(value: str, argument: str, accepted: str) -> str:
    """``value`` if the file system can take it as a path: no NUL, at most 4,096 bytes (UTF-8)
    and 255 per part; InvalidInput naming ``argument``, the limit and ``accepted`` otherwise."""
    if "\x00" in value:
        raise InvalidInput(
            f"{argument}={value!r:.200} has a NUL character; expected {accepted}",
            argument=argument,
        )
    try:
        size = len(value.encode())
    except UnicodeEncodeError:  # a lone surrogate: no file has such a name
        raise InvalidInput(
            f"{argument}={value!r:.200} is not valid UTF-8; expected {accepted}", argument=argument
        ) from None
    if size > MAX_PATH_BYTES:
        raise InvalidInput(
            f"{argument}={value[:80]!r}... is {size} bytes long; a path has at most "
            f"{MAX_PATH_BYTES} bytes; expected {accepted}",
            argument=argument,
        )
    longest = max((part for part in value.split("/")), key=lambda part: len(part.encode()))
    if len(longest.encode()) > MAX_NAME_BYTES:
        raise InvalidInput(
            f"{argument}={value[:80]!r}... has a part of {len(longest.encode())} bytes "
            f"({longest[:40]!r}...); one part of a path has at most {MAX_NAME_BYTES} bytes; "
            f"expected {accepted}",
            argument=argument,
        )
    return value


def check_replicas(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REPLICAS:
        raise InvalidInput(
            f"replicas={value!r} is not accepted; expected an integer from 0 to {MAX_REPLICAS}",
            argument="replicas",
        )
    return value


def check_memory(value: object) -> int | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not MIN_MEMORY <= value <= MAX_MEMORY
    ):
        raise InvalidInput(
            f"memory_bytes={value!r} is not accepted; expected None (no limit) or an integer "
            f"number of bytes from {MIN_MEMORY} (16 MiB) to {MAX_MEMORY} (1 TiB)",
            argument="memory_bytes",
        )
    return value


def check_cpus(value: object) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or not 0 < value <= MAX_CPUS
    ):
        raise InvalidInput(
            f"cpus={value!r} is not accepted; expected None (no limit) or a number above 0 "
            f"and at most {MAX_CPUS:g}",
            argument="cpus",
        )
    return float(value)


def check_gpus(value: object) -> int:
    """Whole GPUs asked for: an integer from 0 (none) to ``MAX_GPUS``."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_GPUS:
        raise InvalidInput(
            f"gpus={value!r} is not accepted; expected an integer from 0 to {MAX_GPUS}",
            argument="gpus",
        )
    return value


def check_accelerator(value: object) -> str | None:
    """A GPU type such as 'A100' or 'nvidia-t4' (matched against device names), or None."""
    if value is None or (isinstance(value, str) and _ACCELERATOR.match(value)):
        return value
    raise InvalidInput(
        f"accelerator={value!r:.100} is not accepted; expected a type name of letters, "
        "digits and '_.:-' such as 'A100' or 'nvidia-t4'",
        argument="accelerator",
    )


def check_env(env: object) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise InvalidInput(
            f"env={env!r} is not accepted; expected a dict of variable name -> string value",
            argument="env",
        )
    if len(env) > MAX_ENV_VARS:
        raise InvalidInput(
            f"env has {len(env)} variables; accepted: at most {MAX_ENV_VARS}", argument="env"
        )
    for name, value in env.items():
        if not isinstance(name, str) or _ENV_NAME.match(name) is None:
            raise InvalidInput(
                f"env variable name {name!r} is not accepted; expected letters, digits and '_', "
                "not starting with a digit (e.g. 'MODEL_PATH')",
                argument="env",
            )
        if name in RESERVED_ENV:
            raise InvalidInput(
                f"env variable {name!r} is set by Modelyard for every replica; accepted: any "
                f"name except {', '.join(sorted(RESERVED_ENV))}",
                argument="env",
            )
        if not isinstance(value, str) or len(value) > MAX_ENV_VALUE or "\x00" in value:
            raise InvalidInput(
                f"env variable {name} has value {value!r}; expected a string of at most "
                f"{MAX_ENV_VALUE} characters without NUL bytes",
                argument="env",
            )
    return dict(env)


def encode_json(argument: str, value: object) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        raise InvalidInput(
            f"{argument}={value!r:.200} cannot be stored as JSON ({exc}); accepted: dicts, "
            "lists, strings, numbers, booleans and None",
            argument=argument,
        ) from exc
