"""Jobs in the registry, on a SQLite file, SQLite in memory and PostgreSQL: what is stored, what
is refused (and that a refusal writes nothing), pipelines and their cycles, deletion rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.registry import CatchUp, Job, JobSchedule, Overlap, Registry
from modelyard.specs import JobSpec

from .conftest import T0, MsClock

PROJECT = str(Path("/srv/projects/churn").absolute())


def job(registry: Registry, name: str, **options: Any) -> Job:
    if not {"cron", "every_ms", "after", "manual"} & set(options):
        options["manual"] = True
    return registry.create_job(JobSpec(name=name, project=PROJECT, script="monitor.py", **options))


def test_a_job_is_stored_with_its_defaults_and_read_back_by_name_or_id(
    registry: Registry,
) -> None:
    created = registry.create_job(
        JobSpec(
            name="nightly-drift",
            project=PROJECT,
            script="jobs/monitor.py",
            args=["--window", "1d", "ünïcode"],
            cron="30 2 * * *",
            timezone="Europe/Paris",
            env={"THRESHOLD": "0.2"},
            notify=["https://hooks.example.com/x", "ops@example.com"],
            notify_on=["timeout", "success"],
        )
    )
    assert created.id.startswith("crn:modelyard:job/")
    assert created.name == "nightly-drift"
    assert created.project == PROJECT and created.script == "jobs/monitor.py"
    assert created.args == ("--window", "1d", "ünïcode")
    assert created.schedule == JobSchedule(cron="30 2 * * *", timezone="Europe/Paris", anchor_ms=T0)
    assert created.schedule.kind == "cron"
    assert (created.timeout_ms, created.retries, created.retry_backoff_ms) == (3_600_000, 0, 30_000)
    assert created.overlap is Overlap.SKIP and created.catch_up is CatchUp.LATEST
    assert created.notify == ("https://hooks.example.com/x", "ops@example.com")
    assert created.notify_on == ("success", "timeout")  # canonical order
    assert created.env == {"THRESHOLD": "0.2"}
    assert not created.paused and not created.builtin
    assert created.created_ms == created.updated_ms == T0
    assert registry.get_job("nightly-drift") == created
    assert registry.get_job(created.id) == created
    assert registry.list_jobs() == [created]


def test_every_schedule_kind_round_trips(registry: Registry) -> None:
    every = job(registry, "every", every_ms=30_000, overlap="queue", catch_up="all")
    manual = job(registry, "manual", manual=True, overlap="allow", catch_up="none")
    after = job(registry, "after", after="every", retries=3, retry_backoff_ms=0)
    at_daily = job(registry, "daily", cron="@daily")
    assert every.schedule == JobSchedule(every_ms=30_000, anchor_ms=T0)
    assert manual.schedule == JobSchedule(manual=True, anchor_ms=T0)
    assert after.schedule == JobSchedule(after=every.id, anchor_ms=T0)  # stored as the id
    assert at_daily.schedule.cron == "0 0 * * *"
    assert (every.overlap, every.catch_up) == (Overlap.QUEUE, CatchUp.ALL)
    assert (manual.overlap, manual.catch_up) == (Overlap.ALLOW, CatchUp.NONE)
    assert registry.list_jobs() == [after, at_daily, every, manual]  # by name
    assert [registry.get_job(j.id) for j in (every, manual, after)] == [every, manual, after]


BAD: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"name": "Bad_Name"}, InvalidInput, "job name 'Bad_Name' is not accepted"),
    ({"cron": "0 25 * * *"}, InvalidInput, "field 2 (hour) '25' is out of range 0-23"),
    ({"cron": "* * * * *", "every_ms": 5000}, InvalidInput, "got cron='* * * * *', every_ms=5000"),
    ({"manual": False}, InvalidInput, "exactly one schedule, got none"),
    ({"cron": "0 * * * *", "timezone": "Mars/Olympus"}, InvalidInput, "not an IANA time zone"),
    ({"every_ms": 60_000, "timezone": "Europe/Paris"}, InvalidInput, "applies to cron schedules"),
    ({"every_ms": 500}, InvalidInput, "every_ms=500 is not accepted"),
    ({"after": "nobody"}, NotFound, "job 'nobody' does not exist; known jobs: existing"),
    ({"timeout_ms": 999}, InvalidInput, "timeout_ms=999 is not accepted; expected milliseconds"),
    ({"timeout_ms": 7 * 86_400_000 + 1}, InvalidInput, "to 604800000 (7 days)"),
    ({"retries": 11}, InvalidInput, "retries=11 is not accepted; expected an integer from 0 to 10"),
    ({"retries": True}, InvalidInput, "retries=True is not accepted"),
    ({"retry_backoff_ms": -1}, InvalidInput, "retry_backoff_ms=-1 is not accepted"),
    ({"overlap": "sometimes"}, InvalidInput, "overlap='sometimes' is not accepted; accepted: skip"),
    ({"catch_up": "most"}, InvalidInput, "catch_up='most' is not accepted; accepted: none"),
    ({"env": {"MODELYARD_RUN_ID": "x"}}, InvalidInput, "'MODELYARD_RUN_ID' is set by Modelyard"),
    ({"env": {"1X": "y"}}, InvalidInput, "env variable name '1X' is not accepted"),
    ({"args": "--flag"}, InvalidInput, "args='--flag' is not accepted; expected a list"),
    ({"args": [1]}, InvalidInput, "args item 1 is not accepted"),
    ({"notify": ["ftp://x"]}, InvalidInput, "'ftp://x' is neither a webhook URL nor an e-mail"),
    ({"notify_on": ["failure", "crash"]}, InvalidInput, "'crash' is not an outcome"),
    ({"project": "relative/dir"}, InvalidInput, "project='relative/dir' is not an absolute path"),
    ({"script": "../outside.py"}, InvalidInput, "script='../outside.py' is not a path inside"),
    ({"script": "/abs/monitor.py"}, InvalidInput, "is not a path inside the project"),
    ({"builtin": "yes"}, InvalidInput, "builtin='yes' is not accepted"),
    ({"name": "existing"}, Conflict, "a job named 'existing' already exists"),
]


def test_bad_job_definitions_are_refused_and_write_nothing(registry: Registry) -> None:
    # One database for all cases (a fresh PostgreSQL schema per case would cost seconds).
    existing = job(registry, "existing", every_ms=60_000)
    for change, error, message in BAD:
        options: dict[str, Any] = {"name": "fresh", "project": PROJECT, "script": "monitor.py"}
        options.update(change)
        if not {"cron", "every_ms", "after", "manual"} & set(options):
            options["manual"] = True
        builtin = options.pop("builtin", False)
        with pytest.raises(error) as caught:
            registry.create_job(JobSpec(**options), builtin=builtin)
        assert message in str(caught.value), (change, str(caught.value))
        assert registry.list_jobs() == [existing], change


def test_a_builtin_job_is_created_like_the_scheduler_does_and_cannot_be_deleted(
    registry: Registry,
) -> None:
    rollup = registry.create_job(
        JobSpec(name="maintenance-rollup", project=PROJECT, script="builtin", every_ms=3_600_000),
        builtin=True,
    )
    assert rollup.builtin
    with pytest.raises(Conflict, match=r"'maintenance-rollup' is built in .* pause it instead"):
        registry.delete_job("maintenance-rollup")
    assert registry.set_paused("maintenance-rollup", True).paused
    assert registry.get_job(rollup.id).paused


def test_pause_and_resume(registry: Registry, clock: MsClock) -> None:
    job(registry, "a", every_ms=1000)
    clock.advance(5)
    paused = registry.set_paused("a", True)
    assert paused.paused and paused.updated_ms == T0 + 5
    assert not registry.set_paused("a", False).paused
    with pytest.raises(InvalidInput, match="paused='no' is not accepted"):
        registry.set_paused("a", "no")  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="job 'b' does not exist; known jobs: a"):
        registry.set_paused("b", True)


def test_pipelines_children_and_cycles(registry: Registry) -> None:
    extract = job(registry, "extract", cron="0 * * * *")
    train = job(registry, "train", after="extract")
    score = job(registry, "score", after=train.id)  # the parent by id works too
    report = job(registry, "report", after="extract")
    assert [j.name for j in registry.children_of(extract.id)] == ["report", "train"]
    assert [j.name for j in registry.children_of("train")] == ["score"]
    assert registry.children_of(score.id) == []
    # Closing the loop is refused with the cycle spelled out, and nothing changes.
    with pytest.raises(InvalidInput) as caught:
        registry.update_job("extract", after="score")
    assert "extract -> train -> score -> extract" in str(caught.value)
    with pytest.raises(InvalidInput, match=r"cannot run after itself \(cycle train -> train\)"):
        registry.update_job("train", after="train")
    assert registry.get_job("extract") == extract
    # Moving a job elsewhere in the tree is fine.
    moved = registry.update_job("report", after="score")
    assert moved.schedule.after == score.id
    assert [j.name for j in registry.children_of("score")] == ["report"]
    with pytest.raises(InvalidInput, match="extract -> train -> score -> report -> extract"):
        registry.update_job("extract", after="report")
    assert registry.get_job("report") == moved and report.id == moved.id


def test_update_checks_like_create_and_replaces_the_schedule_whole(
    registry: Registry, clock: MsClock
) -> None:
    original = job(registry, "a", cron="0 3 * * *", timezone="Europe/Paris", retries=2)
    clock.advance(1000)
    changed = registry.update_job("a", retries=5, args=["x"], env={"K": "v"})
    assert (changed.retries, changed.args, changed.env) == (5, ("x",), {"K": "v"})
    assert changed.schedule == original.schedule and changed.updated_ms == T0 + 1000
    assert changed.created_ms == T0
    # A new cron keeps the time zone; a time zone alone moves the cron.
    assert registry.update_job("a", cron="0 4 * * *").schedule.timezone == "Europe/Paris"
    assert registry.update_job("a", timezone="Asia/Tokyo").schedule.cron == "0 4 * * *"
    # Another kind replaces the schedule (and the time zone goes back to UTC).
    every = registry.update_job("a", every_ms=60_000)
    assert every.schedule == JobSchedule(every_ms=60_000, anchor_ms=T0)
    assert registry.update_job("a", cron="*/5 * * * *").schedule.timezone == "UTC"
    before = registry.get_job("a")
    for changes, message in [
        ({"cron": "0 0 * * 9"}, "field 5 (day of week) '9' is out of range 0-7"),
        ({"cron": "* * * * *", "manual": True}, "exactly one schedule"),
        ({"timeout_ms": 0}, "timeout_ms=0 is not accepted"),
        ({"every_ms": 1000, "timezone": "Europe/Paris"}, "applies to cron schedules only"),
        ({"name": "b"}, "job field 'name' cannot be updated; accepted: project"),
        ({"paused": True}, "set_paused pauses and resumes"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            registry.update_job("a", **changes)
        assert message in str(caught.value), changes
    with pytest.raises(NotFound):
        registry.update_job("a", after="missing")
    assert registry.get_job("a") == before
    with pytest.raises(NotFound, match="job 'zzz' does not exist"):
        registry.update_job("zzz", retries=1)


def test_delete_refuses_parents_naming_their_children_and_removes_runs(
    registry: Registry,
) -> None:
    parent = job(registry, "parent", every_ms=1000)
    job(registry, "child-b", after="parent")
    job(registry, "child-a", after="parent")
    with pytest.raises(Conflict) as caught:
        registry.delete_job("parent")
    assert "'parent' is the parent of child-a, child-b" in str(caught.value)
    assert caught.value.details["children"] == ["child-a", "child-b"]  # type: ignore[attr-defined]
    registry.delete_job("child-a")
    registry.delete_job("child-b")
    assert registry.claim_slot(parent.id, 1000, 1, "me", 60_000)
    run = registry.create_run(parent.id, 1000, 1, "schedule")
    registry.add_run_metrics(run.id, {"rows": 10})
    registry.delete_job("parent")
    assert registry.list_jobs() == []
    with pytest.raises(NotFound):
        registry.get_run(run.id)
    with pytest.raises(NotFound):
        registry.run_metrics(run.id)
    # A new job of the same name starts with a clean slate.
    again = job(registry, "parent", every_ms=1000)
    assert registry.last_slot(again.id) is None
    assert registry.claim_slot(again.id, 1000, 1, "me", 60_000)


def test_unknown_jobs_are_not_found_with_known_names(registry: Registry) -> None:
    with pytest.raises(NotFound, match="no jobs are defined yet"):
        registry.get_job("a")
    job(registry, "a")
    with pytest.raises(NotFound, match="job 'crn:modelyard:job/x' does not exist; known jobs: a"):
        registry.get_job("crn:modelyard:job/x")
    with pytest.raises(InvalidInput, match="job '' is not accepted"):
        registry.get_job("")
    with pytest.raises(NotFound):
        registry.delete_job("b")
    with pytest.raises(NotFound):
        registry.children_of("b")
