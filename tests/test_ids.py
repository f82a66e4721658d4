from __future__ import annotations

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


def test_prediction_uuid_is_uuid4_text() -> None:
    assert is_uuid(new_prediction_uuid())
    assert not is_uuid("not-a-uuid")
    assert not is_uuid(42)


def test_check_crn_accepts_foreign_crns_and_names_bad_arguments() -> None:
    assert check_crn("crn:cdp:ml:us-west-1:abc:workspace:x/y", "model", "model_crn")
    with pytest.raises(InvalidInput, match="model_deployment_crn='abc' is not a CRN"):
        check_crn("abc", "deployment", "model_deployment_crn")
    with pytest.raises(InvalidInput, match="model_crn must be a non-empty CRN"):
        check_crn("", "model", "model_crn")
