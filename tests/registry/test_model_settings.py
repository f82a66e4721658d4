"""ModelSettings: defaults, bounds with messages naming the field and the accepted range, and
the JSON form kept in the database (tolerant of keys from other releases)."""

from __future__ import annotations

import doctest
import importlib
import math
from typing import Any

import pytest

from modelyard.errors import InvalidInput
from modelyard.registry import SETTINGS_BOUNDS, ModelSettings
from modelyard.serving import replica


def test_defaults_follow_the_reference_platform_and_the_replica() -> None:
    s = ModelSettings()
    assert (s.auth_required, s.request_timeout_s, s.max_body_bytes) == (True, 30.0, 5 * 1024**2)
    assert s.concurrency is None  # the replica's own (measured) default applies
    assert ModelSettings(concurrency=None) == s
    assert s.max_batch_size == replica.DEFAULT_MAX_BATCH_SIZE
    assert s.max_batch_wait_ms == replica.DEFAULT_MAX_BATCH_WAIT_MS
    assert s.max_body_bytes == replica.DEFAULT_MAX_BODY_BYTES
    assert (s.track_io, s.debug, s.batch_function) == (False, False, None)


@pytest.mark.parametrize("name", sorted(SETTINGS_BOUNDS))
def test_every_bound_is_enforced_at_both_ends(name: str) -> None:
    low, high, low_ok = SETTINGS_BOUNDS[name]
    integer = isinstance(getattr(ModelSettings(), name), int)
    edge = int(low) if integer else low
    if low_ok:
        assert getattr(ModelSettings(**{name: edge}), name) == edge
    top = int(high) if integer else high
    assert getattr(ModelSettings(**{name: top}), name) == top
    step = 1 if integer else 0.001
    outside = [top + step, (edge - step) if low_ok else edge, math.nan, -math.inf, math.inf]
    for value in outside:
        if integer and isinstance(value, float):
            continue
        with pytest.raises(InvalidInput) as info:
            ModelSettings(**{name: value})
        message = str(info.value)
        assert message.startswith(f"{name}={value!r}"), message
        assert f"to {high:g}" in message
        assert info.value.details["field"] == name


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        (
            {"concurrency": 257},
            "concurrency=257 is out of range; accepted: an integer from 1 to 256 (or None",
        ),
        ({"concurrency": 2.0}, "concurrency=2.0 is not a whole number"),
        ({"concurrency": True}, "concurrency=True is not an integer"),
        ({"max_batch_size": 4097}, "from 1 to 4096"),
        (
            {"request_timeout_s": 0},
            "request_timeout_s=0 is out of range; accepted: a number above 0 to 3600",
        ),
        ({"queue_timeout_s": "30"}, "queue_timeout_s='30' is not a number"),
        ({"auth_required": "yes"}, "auth_required='yes' is not a boolean"),
        ({"track_io": 1}, "track_io=1 is not a boolean"),
        ({"batch_function": "2fast"}, "batch_function='2fast' is not a Python function name"),
    ],
)
def test_bad_values_name_the_field_value_and_range(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        ModelSettings(**changes)
    assert words in str(info.value)


def test_floats_are_normalised_and_integers_stay_integers() -> None:
    s = ModelSettings(request_timeout_s=5, max_batch_wait_ms=0)
    assert isinstance(s.request_timeout_s, float) and s.request_timeout_s == 5.0
    assert isinstance(s.max_batch_wait_ms, float)
    assert isinstance(ModelSettings(max_queue=0).max_queue, int)


def test_replace_refuses_unknown_names_listing_the_accepted_ones() -> None:
    base = ModelSettings()
    assert base.replace(debug=True).debug is True
    with pytest.raises(InvalidInput) as info:
        base.replace(timeout=3, colour=1)
    message = str(info.value)
    assert "colour, timeout" in message and "request_timeout_s" in message


def test_json_round_trip_ignores_unknown_keys_and_fills_missing_ones() -> None:
    s = ModelSettings(concurrency=7, batch_function="many", track_io=True)
    assert ModelSettings.from_json(s.to_json()) == s
    assert ModelSettings.from_json('{"concurrency": 3, "from_the_future": 1}') == ModelSettings(
        concurrency=3
    )
    with pytest.raises(InvalidInput):
        ModelSettings.from_json('{"concurrency": 0}')


@pytest.mark.parametrize("module", ["modelyard.registry._settings", "modelyard.registry._registry"])
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
