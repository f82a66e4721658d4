"""JobSpec: built by the CLI, parsed from REST bodies, stored by the registry; every refusal is
InvalidInput naming the field (never pydantic's ValidationError), and changes keep the rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelyard.errors import InvalidInput
from modelyard.specs import CatchUp, JobSchedule, JobSpec, Overlap

BASE: dict[str, Any] = {"name": "nightly", "project": "/srv/churn", "script": "monitor.py"}


def spec(**changes: Any) -> JobSpec:
    return JobSpec(**{**BASE, "manual": True, **changes})


def test_defaults_and_normal_forms() -> None:
    made = spec(cron=None, manual=False, every_ms=60_000, notify_on=["timeout", "success"])
    assert made.schedule == JobSchedule(every_ms=60_000)
    assert (made.overlap, made.catch_up) == (Overlap.SKIP, CatchUp.LATEST)
    assert made.notify_on == ("success", "timeout")  # canonical order
    assert spec(manual=False, cron="@daily").cron == "0 0 * * *"  # macros expanded


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"name": "Bad Name"}, None, "job name 'Bad Name' is not accepted"),
        ({"retries": "3"}, "retries", "retries='3' is not accepted; expected an integer"),
        ({"every_ms": 10, "manual": False}, "every_ms", "every_ms=10 is not accepted"),
        ({"overlap": "sometimes"}, "overlap", "accepted: skip, queue, allow"),
        ({"monitor": "m.yaml"}, "script", "both were given"),
        ({"colour": "blue"}, "colour", "colour='blue' is not accepted"),
        ({"project": "relative"}, "project", "is not an absolute path"),
    ],
)
def test_refusals_are_invalid_input_naming_the_field(
    changes: dict[str, Any], field: str | None, says: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        spec(**changes)
    assert says in info.value.message
    if field is not None:
        assert info.value.details.get("argument") == field


def test_parse_names_a_missing_field_and_refuses_what_is_not_an_object() -> None:
    with pytest.raises(InvalidInput, match=r"^name is missing; expected the job's name"):
        JobSpec.parse({"project": "/srv/churn", "script": "m.py", "manual": True})
    with pytest.raises(InvalidInput, match="is not a JSON object"):
        JobSpec.parse(["not", "a", "mapping"])


def test_a_change_is_checked_as_a_whole_and_a_schedule_replaces_the_old_one() -> None:
    cron = spec(manual=False, cron="0 4 * * *", timezone="Europe/Paris")
    assert cron.changed({"cron": "0 5 * * *"}).timezone == "Europe/Paris"  # the zone stays
    every = cron.changed({"every_ms": 60_000})
    assert (every.cron, every.timezone, every.every_ms) == (None, "UTC", 60_000)
    assert spec().changed({"monitor": "m.yaml"}).script is None  # one replaces the other
    with pytest.raises(InvalidInput, match="job field 'name' cannot be updated"):
        spec().changed({"name": "other"})
    with pytest.raises(InvalidInput, match="retries=11"):
        spec().changed({"retries": 11})


def test_the_body_schema_stands_alone() -> None:
    schema = JobSpec.body_schema()
    assert "$defs" not in json.dumps(schema) and schema["required"] == ["name", "project"]
    assert schema["properties"]["overlap"]["enum"] == ["skip", "queue", "allow"]
    patch = JobSpec.body_schema(partial=True, leave_out=("name",))
    assert "required" not in patch and "name" not in patch["properties"]
