"""``secrets`` in a deploy's spec and a job's spec: names checked (the rule of environment
variables, capitals, no ``MODELYARD_``), duplicates dropped, never also in ``env``."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.errors import InvalidInput
from modelyard.specs import DeploySpec, JobSpec


def _job(**extra: Any) -> JobSpec:
    return JobSpec(name="j", project="/srv/p", script="a.py", manual=True, **extra)


def test_secrets_are_names_kept_in_order_without_duplicates() -> None:
    spec = DeploySpec(project="/srv/p", secrets=("B", "A", "B"))
    assert spec.secrets == ("B", "A")
    assert DeploySpec(project="/srv/p").secrets == ()
    assert _job(secrets=["X_1", "_Y"]).secrets == ("X_1", "_Y")
    assert _job(secrets=["A"]).changed({"secrets": ["C"]}).secrets == ("C",)


@pytest.mark.parametrize(
    ("secrets", "problem"),
    [
        (["lower"], "secret name 'lower' is not accepted"),
        (["MODELYARD_API_KEY"], "not starting with 'MODELYARD_'"),
        ("A", "expected a list of secret names"),
        ([1], "secret name of type int is not accepted"),
        ([f"S{i}" for i in range(101)], "at most 100"),
    ],
)
def test_bad_secrets_are_refused_naming_them(secrets: Any, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        DeploySpec(project="/srv/p", secrets=secrets)
    with pytest.raises(InvalidInput, match=problem):
        _job(secrets=secrets)


def test_a_variable_comes_from_env_or_secrets_not_both() -> None:
    with pytest.raises(InvalidInput, match="'TOKEN' is both in env and in secrets"):
        DeploySpec(project="/srv/p", env={"TOKEN": "x"}, secrets=("TOKEN",))
    with pytest.raises(InvalidInput, match="'TOKEN' is both in env and in secrets"):
        _job(env={"TOKEN": "x"}, secrets=["TOKEN"])
