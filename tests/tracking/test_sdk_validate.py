from __future__ import annotations

import datetime
import enum
import math

import numpy as np
import pytest

from modelyard.errors import InvalidInput, PayloadTooLarge
from modelyard.tracking.validate import check_key, check_metrics, check_size, check_value


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -3, 1.5, "text", [1, "a", None], {"a": {"b": [1, 2.5]}}, [], {}],
)
def test_json_values_pass_through_unchanged(value: object) -> None:
    assert check_value(value, "k") == value


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_naming_the_key(bad: float) -> None:
    with pytest.raises(InvalidInput, match=r"'score'.*NaN or infinity"):
        check_value(bad, "score")


def test_nested_bad_values_name_their_path() -> None:
    with pytest.raises(InvalidInput, match=r"'features\.ages\[2\]'"):
        check_value({"ages": [1, 2, math.nan]}, "features")
    with pytest.raises(InvalidInput, match=r"'input\.when'.*datetime.*accepted"):
        check_value({"when": datetime.datetime(2026, 1, 1)}, "input")
    with pytest.raises(InvalidInput, match=r"'m'.*non-string key 3"):
        check_value({3: "x"}, "m")
    with pytest.raises(InvalidInput, match=r"type set"):
        check_value({1, 2}, "s")


def test_number_lists_are_checked_as_a_whole_with_the_same_result() -> None:
    """A list of plain numbers takes a shortcut (``_plain_numbers``); what comes out, and which
    element a refusal names, is what the element-by-element check gives."""
    row = [0.5, 3, True, -2.25, False, 10**30]
    checked = check_value(tuple(row), "input")
    assert checked == row and type(checked) is list
    assert [type(v) for v in checked] == [float, int, bool, float, bool, int]
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(InvalidInput, match=r"'input\[3\]'.*NaN or infinity"):
            check_value([1.0, 2.0, 3.0, bad, 5.0], "input")
    # Finite values whose sum is not finite, and an int too large for a float: still accepted.
    assert check_value([1e308, 1e308], "big") == [1e308, 1e308]
    assert check_value([10**400, 1.5], "huge") == [10**400, 1.5]
    # Anything else in the list: the element-by-element check converts or refuses it.
    assert check_value([1.0, np.float64(2.0)], "mixed") == [1.0, 2.0]
    with pytest.raises(InvalidInput, match=r"'mixed\[1\]'.*datetime"):
        check_value([1.0, datetime.datetime(2026, 1, 1)], "mixed")


def test_numpy_and_enum_values_become_plain_python() -> None:
    class Colour(enum.IntEnum):
        RED = 1

    assert check_value(np.float64(0.25), "p") == 0.25
    assert type(check_value(np.int64(7), "n")) is int
    assert check_value(np.array([[1, 2], [3, 4]]), "a") == [[1, 2], [3, 4]]
    assert check_value(Colour.RED, "c") == 1 and type(check_value(Colour.RED, "c")) is int
    with pytest.raises(InvalidInput, match=r"'v\[1\]'"):
        check_value(np.array([1.0, np.nan]), "v")


@pytest.mark.parametrize("key", ["", None, 3, b"k"])
def test_keys_must_be_non_empty_strings(key: object) -> None:
    with pytest.raises(InvalidInput, match="non-empty string"):
        check_key(key)


def test_metrics_must_be_a_mapping() -> None:
    with pytest.raises(InvalidInput, match=r"metrics must be a dict.*list"):
        check_metrics([("a", 1)])
    assert check_metrics({"a": np.float32(0.5)}) == {"a": 0.5}


def test_size_limit_states_limit_and_size() -> None:
    assert check_size({"a": 1}, limit=100) == len(b'{"a":1}')
    with pytest.raises(PayloadTooLarge, match=r"\b20 bytes, over the limit of 10 bytes") as info:
        check_size({"a": "x" * 12}, limit=10)
    assert info.value.details == {"size": 20, "limit": 10}
