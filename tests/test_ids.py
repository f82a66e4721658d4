from __future__ import annotations

import time
import uuid

import pytest

from modelyard.errors import InvalidInput
from modelyard.ids import check_crn, is_uuid, new_crn, new_prediction_uuid


def test_new_crn_has_kind_and_uuid() -> None:
    crn = new_crn("deployment")
    assert crn.startswith("crn:modelyard:deployment/")
    assert is_uuid(crn.rsplit("/", 1)[1])
    assert new_crn("model") != new_crn("model")


def test_unknown_kind_is_refused_with_the_accepted_kinds() -> None:
    with pytest.raises(InvalidInput, match=r"'runner'.*model, build, deployment"):
        new_crn("runner")


def test_prediction_uuid_is_uuid_text() -> None:
    assert is_uuid(new_prediction_uuid())
    assert not is_uuid("not-a-uuid")
    assert not is_uuid(42)


def test_prediction_uuids_are_version_7_with_the_minting_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    text = new_prediction_uuid()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(text)
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert str(parsed) == text  # canonical lowercase form, as str(uuid.uuid4()) gives
    assert before <= parsed.int >> 80 <= after


def test_prediction_uuids_sort_by_time_as_text_and_do_not_repeat() -> None:
    """Text order follows minting time across milliseconds (what keeps the store's uuid index
    appending); within one millisecond the 74 random bits keep them apart."""
    minted = []
    for _ in range(20):
        minted.append(new_prediction_uuid())
        deadline = time.monotonic() + 1
        while time.time_ns() // 1_000_000 == uuid.UUID(minted[-1]).int >> 80:
            assert time.monotonic() < deadline
    assert minted == sorted(minted)
    many = [new_prediction_uuid() for _ in range(50_000)]
    assert len(set(many)) == len(many)


def test_check_crn_accepts_foreign_crns_and_names_bad_arguments() -> None:
    assert check_crn("crn:cdp:ml:us-west-1:abc:workspace:x/y", "model", "model_crn")
    with pytest.raises(InvalidInput, match="model_deployment_crn='abc' is not a CRN"):
        check_crn("abc", "deployment", "model_deployment_crn")
    with pytest.raises(InvalidInput, match="model_crn must be a non-empty CRN"):
        check_crn("", "model", "model_crn")
