"""The mild limit on failed sign-ins (``ui.session.FailedSignIns``): per user name and address,
within a sliding window, cleared by a success."""

from __future__ import annotations

import time

import pytest

from modelyard.errors import Overloaded
from modelyard.ui.session import FailedSignIns


def test_failures_are_counted_per_name_and_address_within_the_window() -> None:
    limit = FailedSignIns(limit=3, window_ms=400)
    for _ in range(3):
        limit.check("bob", "10.0.0.1")
        limit.failed("bob", "10.0.0.1")
    with pytest.raises(Overloaded) as refused:
        limit.check("bob", "10.0.0.1")
    message = refused.value.message
    assert "'bob'" in message and "10.0.0.1" in message and "fewer than 3" in message
    assert refused.value.details["retry_after_s"] == 1
    limit.check("bob", "10.0.0.2")  # another address
    limit.check("alice", "10.0.0.1")  # another name
    time.sleep(0.45)  # the window slides past the failures
    limit.check("bob", "10.0.0.1")


def test_a_success_clears_the_count() -> None:
    limit = FailedSignIns(limit=2, window_ms=60_000)
    limit.failed("bob", "::1")
    limit.succeeded("bob", "::1")
    limit.failed("bob", "::1")
    limit.check("bob", "::1")  # one failure since the success: under the limit
    limit.failed("bob", "::1")
    with pytest.raises(Overloaded):
        limit.check("bob", "::1")
