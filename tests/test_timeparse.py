from __future__ import annotations

import pytest

from modelyard.errors import InvalidInput
from modelyard.timeparse import parse_time_ms

NOW = 1_800_000_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1746629493901", 1746629493901),
        ("now", NOW),
        ("2h", NOW - 7_200_000),
        ("30d", NOW - 30 * 86_400_000),
        ("1970-01-01T00:00:01Z", 1000),
        ("1970-01-02", 86_400_000),
        ("1970-01-01T01:00:00+01:00", 0),
    ],
)
def test_accepted_forms(text: str, expected: int) -> None:
    assert parse_time_ms(text, "--since", now=NOW) == expected


def test_bad_time_names_the_option_and_the_accepted_forms() -> None:
    with pytest.raises(InvalidInput, match=r"--until='yesterday-ish'.*epoch milliseconds"):
        parse_time_ms("yesterday-ish", "--until", now=NOW)
