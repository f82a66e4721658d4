from __future__ import annotations

import pytest

from modelyard.cli.args import env_pairs
from modelyard.errors import InvalidInput


def test_env_pairs_keep_everything_after_the_first_equals_sign() -> None:
    assert env_pairs(("A=1", "URL=http://x/?a=b", "EMPTY=")) == {
        "A": "1",
        "URL": "http://x/?a=b",
        "EMPTY": "",
    }


@pytest.mark.parametrize("bad", ["NOVALUE", "=v"])
def test_a_pair_without_a_name_or_equals_sign_is_refused_by_value(bad: str) -> None:
    with pytest.raises(InvalidInput, match=rf"--env '{bad}' is not NAME=VALUE"):
        env_pairs((bad,))
