from __future__ import annotations

import pytest

from modelyard import errors
from modelyard.errors import InvalidInput, ModelyardError, NotFound, PayloadTooLarge


def test_every_error_is_a_modelyard_error_with_a_status() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, ModelyardError)
        assert 400 <= cls.status <= 599


def test_error_shape_names_code_and_message() -> None:
    err = NotFound("prediction 'abc' not found", uuid="abc")
    assert err.to_dict() == {
        "code": "not_found",
        "message": "prediction 'abc' not found",
        "details": {"uuid": "abc"},
    }


def test_builtin_bases_keep_ordinary_except_clauses_working() -> None:
    with pytest.raises(ValueError):
        raise InvalidInput("bad")
    with pytest.raises(LookupError):
        raise NotFound("missing")
    assert PayloadTooLarge.status == 413
