"""Runs and builds named by the start of their uuid, as git names commits: on SQLite (file and
memory) and PostgreSQL, through ``Registry.resolve_run`` and ``Registry.resolve_build``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelyard.errors import InvalidInput, NotFound
from modelyard.registry import Registry, _deployments, _runs
from modelyard.specs import JobSpec

RUN = "crn:modelyard:run/"
BUILD = "crn:modelyard:build/"
# Two ids sharing their first 6 characters: random uuids almost never do, so the test picks them
# (only the id generator is replaced; the lookups run on the real database).
IDS = [
    "8f5c3d1a-0000-4000-8000-000000000001",
    "8f5c3d77-0000-4000-8000-000000000002",
    "1234abcd-0000-4000-8000-000000000003",
]


def _minted(kind: str) -> Iterator[str]:
    for uuid in IDS:
        yield f"crn:modelyard:{kind}/{uuid}"


@pytest.fixture
def runs(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    minted = _minted("run")
    monkeypatch.setattr(_runs, "new_crn", lambda kind: next(minted))
    job = registry.create_job(
        JobSpec(name="monitor", project="/srv/project", script="monitor.py", manual=True)
    )
    return [registry.create_run(job.id, 1_000 * i, 1, "manual").id for i in range(3)]


def test_a_run_is_found_by_its_id_uuid_or_unambiguous_prefix(
    registry: Registry, runs: list[str]
) -> None:
    assert registry.resolve_run(runs[0]) == runs[0]
    assert registry.resolve_run(IDS[0]) == runs[0]
    assert registry.resolve_run("8f5c3d1") == runs[0]
    assert registry.resolve_run("8F5C3D7") == runs[1]
    assert registry.resolve_run("1234") == runs[2]
    assert registry.resolve_run(RUN + "1234ab") == runs[2]


def test_an_ambiguous_prefix_lists_the_candidates(registry: Registry, runs: list[str]) -> None:
    with pytest.raises(InvalidInput) as raised:
        registry.resolve_run("8f5c3d")
    message = raised.value.message
    assert "'8f5c3d' is ambiguous" in message and "give more characters" in message
    assert IDS[0] in message and IDS[1] in message and IDS[2] not in message


def test_short_unknown_and_non_hex_prefixes_are_refused_with_the_rule(
    registry: Registry, runs: list[str]
) -> None:
    with pytest.raises(InvalidInput, match=r"'8f5' is too short.*at least 4 characters"):
        registry.resolve_run("8f5")
    with pytest.raises(NotFound, match="no run id starts with 'abcd'"):
        registry.resolve_run("abcd")
    with pytest.raises(InvalidInput, match="'8f5c%' is not a run id"):
        registry.resolve_run("8f5c%")  # a LIKE wildcard is refused, not matched


def test_a_build_prefix_is_looked_up_within_its_model(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    minted = _minted("build")
    monkeypatch.setattr(_deployments, "new_crn", lambda kind: next(minted))
    registry.create_model("churn")
    registry.create_model("other")
    options = {"digest": "d", "file": "p.py", "function": "predict", "python": "py"}
    first = registry.add_build("churn", env_key="e", ok=True, **options).crn
    second = registry.add_build("other", env_key="e", ok=True, **options).crn
    assert registry.resolve_build("8f5c3d1") == first
    assert registry.resolve_build("8f5c", "churn") == first  # only churn's builds count
    with pytest.raises(InvalidInput, match="ambiguous"):
        registry.resolve_build("8f5c")
    assert registry.resolve_build(BUILD + IDS[1]) == second
    with pytest.raises(NotFound, match="no build id starts with '8f5c3d7'"):
        registry.resolve_build("8f5c3d7", "churn")
