"""``ModelSettings``: how a model is served, validated once here so every caller gets the same
messages (field name, bad value, accepted range) and the database never holds a bad value.

Defaults follow the reference platform where it has one (30 s request timeout, 5 MB bodies) and
the replica's defaults otherwise (batches of 32 waiting at most 5 ms; see
``modelyard.serving.replica``). ``concurrency`` None means "the replica's own default", which is
chosen by measurement in the replica module and may change with it: the controller passes
``--concurrency`` only when a model sets one.

Stored as a JSON object: keys this release does not know are ignored on read, missing keys take
their default, so settings survive upgrades both ways.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.errors import InvalidInput
from modelyard.specs.checks import check_accelerator

__all__ = ["SETTINGS_BOUNDS", "ModelSettings"]

_HOUR_S = 3600.0
_GIB = 1024**3

# field -> (lowest, highest, whether the lowest is allowed). One table drives the checks and docs.
SETTINGS_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "concurrency": (1, 256, True),
    "request_timeout_s": (0, _HOUR_S, False),
    "max_queue": (0, 100_000, True),
    "queue_timeout_s": (0, _HOUR_S, False),
    "max_body_bytes": (1, _GIB, True),
    "max_batch_size": (1, 4096, True),
    "max_batch_wait_ms": (0, 10_000, True),
    "gpus": (0, 64, True),
}
_INTEGERS = frozenset({"concurrency", "max_queue", "max_body_bytes", "max_batch_size", "gpus"})
_BOOLEANS = ("auth_required", "track_io", "debug", "retry")
# None: not set, the replica's own default applies.
_OPTIONAL = frozenset({"concurrency"})


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """How one model is served.

    >>> ModelSettings(concurrency=8).request_timeout_s
    30.0
    >>> ModelSettings(max_queue=-1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modelyard.errors.InvalidInput: max_queue=-1 is out of range; accepted: an integer from 0 to...
    """

    auth_required: bool = True
    concurrency: int | None = None
    request_timeout_s: float = 30.0
    max_queue: int = 100
    queue_timeout_s: float = 30.0
    max_body_bytes: int = 5 * 1024 * 1024
    batch_function: str | None = None
    max_batch_size: int = 32
    max_batch_wait_ms: float = 5.0
    track_io: bool = False
    debug: bool = False
    # Resend a request once to another replica when its replica died before answering (no byte
    # of the answer came). False (``--no-retry``): such a request gets 502, for functions that
    # must not run twice (they charge, send, write elsewhere).
    retry: bool = True
    # Whole GPUs each replica gets exclusively (CUDA_VISIBLE_DEVICES locally; Ray's num_gpus),
    # and optionally their type (matched against device names, e.g. 'A100'): docs/resources.md.
    gpus: int = 0
    accelerator: str | None = None

    def __post_init__(self) -> None:
        check_accelerator(self.accelerator)
        for name in _BOOLEANS:
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise InvalidInput(
                    f"{name}={value!r} is not a boolean; accepted: true or false", field=name
                )
        for name, (low, high, low_ok) in SETTINGS_BOUNDS.items():
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            _check_number(name, value, low, high, low_ok, integer=name in _INTEGERS)
            if name not in _INTEGERS:
                object.__setattr__(self, name, float(value))
        function = self.batch_function
        if function is not None and not (isinstance(function, str) and function.isidentifier()):
            raise InvalidInput(
                f"batch_function={function!r} is not a Python function name; accepted: an "
                "identifier such as 'predict_batch', or None for no batch function",
                field="batch_function",
            )

    def replace(self, **changes: Any) -> ModelSettings:
        """A copy with ``changes`` applied (unknown names are refused, naming the accepted ones)."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise InvalidInput(
                f"unknown model setting(s) {', '.join(unknown)}; accepted: "
                f"{', '.join(field_names())}",
                unknown=unknown,
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in field_names()}

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict()).decode()

    @classmethod
    def from_json(cls, text: str) -> ModelSettings:
        """Settings as stored; keys this release does not know are ignored (a newer release may
        have added them), missing keys take their default."""
        raw = orjson.loads(text)
        known = set(field_names())
        return cls(**{k: v for k, v in raw.items() if k in known})


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(ModelSettings))


def _check_number(
    name: str, value: object, low: float, high: float, low_ok: bool, *, integer: bool
) -> None:
    kind = "an integer" if integer else "a number"
    lower = f"from {low:g}" if low_ok else f"above {low:g}"
    accepted = f"{kind} {lower} to {high:g}"
    if name in _OPTIONAL:
        accepted += " (or None for the replica's default)"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(
            f"{name}={value!r} is not {kind}; accepted: {accepted}", field=name, value=repr(value)
        )
    if integer and not isinstance(value, int):
        raise InvalidInput(
            f"{name}={value!r} is not a whole number; accepted: {accepted}",
            field=name,
            value=value,
        )
    if math.isnan(value) or value > high or value < low or (value == low and not low_ok):
        raise InvalidInput(
            f"{name}={value!r} is out of range; accepted: {accepted}", field=name, value=value
        )
