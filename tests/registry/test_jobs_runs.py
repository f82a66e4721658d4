"""Runs, slot claims and run metrics in the registry, on a SQLite file, SQLite in memory and
PostgreSQL: the run state machine, leases and take-overs, the scheduler's last slot, listing,
metrics and pruning. Time comes from the injected clock, so leases expire without sleeping."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.registry import Job, Registry, Run, RunState, SlotClaim, Trigger
from modelyard.specs import JobSpec

from .conftest import T0, MsClock

PROJECT = "/srv/projects/churn"
LEASE = 60_000


def make_job(registry: Registry, name: str = "monitor", **options: Any) -> Job:
    if not {"cron", "every_ms", "after", "manual"} & set(options):
        options["every_ms"] = 60_000
    return registry.create_job(JobSpec(name=name, project=PROJECT, script="monitor.py", **options))


def test_a_run_is_queued_then_moves_through_its_states(registry: Registry, clock: MsClock) -> None:
    job = make_job(registry)
    run = registry.create_run(job.id, T0 + 60_000, 1, "schedule")
    assert run.id.startswith("crn:modelyard:run/")
    assert (run.job_id, run.slot_ms, run.attempt) == (job.id, T0 + 60_000, 1)
    assert run.trigger is Trigger.SCHEDULE and run.state is RunState.QUEUED
    assert run.queued_ms == T0 and run.started_ms is None and run.duration_ms is None
    assert registry.get_run(run.id) == run
    clock.advance(100)
    running = registry.update_run(run.id, state="running", log_path="/logs/r.log")
    assert running.state is RunState.RUNNING and running.started_ms == T0 + 100
    assert running.log_path == "/logs/r.log"
    same = registry.update_run(run.id, state=RunState.RUNNING, api_key_id="key-1")
    assert same.started_ms == T0 + 100 and same.api_key_id == "key-1"  # no second start
    clock.advance(2500)
    done = registry.update_run(run.id, state="succeeded", exit_code=0)
    assert done.state is RunState.SUCCEEDED and done.exit_code == 0
    assert done.ended_ms == T0 + 2600 and done.duration_ms == 2500
    assert registry.get_run(run.id) == done
    assert registry.update_run(run.id) == done  # nothing to change


REFUSED = [
    (["running", "queued"], "cannot go from running to queued; accepted from running: "),
    (["succeeded"], "cannot go from queued to succeeded; accepted from queued: running, "),
    (["timed_out"], "accepted from queued: running, cancelled"),
    (["running", "failed", "running"], "cannot go from failed to running; failed is final"),
    (["cancelled", "running"], "cannot go from cancelled to running; cancelled is final"),
    (["running", "timed_out", "succeeded"], "timed_out is final"),
    (["exploded"], "run state 'exploded' is not accepted; accepted: queued, running"),
]


def test_only_valid_state_transitions_are_accepted(registry: Registry) -> None:
    job = make_job(registry)
    for path, refused in REFUSED:
        run = registry.create_run(job.id, T0, 1, "manual")
        for state in path[:-1]:
            run = registry.update_run(run.id, state=state)
        with pytest.raises(InvalidInput) as caught:
            registry.update_run(run.id, state=path[-1])
        assert refused in str(caught.value), (path, str(caught.value))
        assert registry.get_run(run.id) == run


def test_every_valid_transition(registry: Registry, clock: MsClock) -> None:
    job = make_job(registry, retries=3)
    for ending in ("succeeded", "failed", "timed_out", "cancelled"):
        run = registry.create_run(job.id, T0, 1, "manual")
        registry.update_run(run.id, state="running")
        ended = registry.update_run(run.id, state=ending, exit_code=-9, ended_ms=T0 + 7)
        assert ended.state == ending and ended.ended_ms == T0 + 7 and ended.exit_code == -9
    queued = registry.create_run(job.id, T0, 1, "manual")
    skipped = registry.update_run(queued.id, state="cancelled", started_ms=T0, ended_ms=T0)
    assert skipped.state is RunState.CANCELLED and skipped.duration_ms == 0


def test_create_run_checks_its_arguments(registry: Registry) -> None:
    job = make_job(registry, retries=2)
    parent = registry.create_run(job.id, T0, 1, "schedule")
    child_job = make_job(registry, "child", after=job.name)
    child = registry.create_run("child", T0, 1, Trigger.PARENT, parent_run_id=parent.id)
    assert child.parent_run_id == parent.id and child.job_id == child_job.id
    assert registry.create_run(job.id, T0, 3, "retry").attempt == 3
    for args, error, message in [
        ((job.id, T0, 4, "retry"), InvalidInput, "attempt=4 is not accepted; expected an integer "),
        ((job.id, T0, 0, "retry"), InvalidInput, "from 1 to 3"),
        ((job.id, T0, 1, "cron"), InvalidInput, "trigger='cron' is not accepted; accepted: sched"),
        ((job.id, -1, 1, "manual"), InvalidInput, "slot_ms=-1 is not accepted"),
        (("nope", T0, 1, "manual"), NotFound, "job 'nope' does not exist"),
    ]:
        with pytest.raises(error) as caught:
            registry.create_run(*args)
        assert message in str(caught.value)
    with pytest.raises(NotFound, match="run 'crn:modelyard:run/none' does not exist"):
        registry.create_run(job.id, T0, 1, "parent", parent_run_id="crn:modelyard:run/none")
    with pytest.raises(NotFound, match="does not exist"):
        registry.update_run("crn:modelyard:run/none", state="running")
    with pytest.raises(InvalidInput, match="exit_code='0' is not accepted"):
        registry.update_run(parent.id, exit_code="0")  # type: ignore[arg-type]
    assert len(registry.list_runs()) == 3  # nothing else was written


def test_a_claim_has_one_owner_until_its_lease_expires_unstarted(
    registry: Registry, clock: MsClock
) -> None:
    job = make_job(registry)
    slot = T0 + 60_000
    assert registry.slot_claim(job.id, slot, 1) is None
    assert registry.claim_slot(job.id, slot, 1, "server-a", LEASE)
    assert not registry.claim_slot(job.id, slot, 1, "server-a", LEASE)  # an earlier life has it
    assert not registry.claim_slot(job.id, slot, 1, "server-b", LEASE)
    assert registry.claim_slot(job.id, slot, 2, "server-b", LEASE)  # another attempt
    assert registry.slot_claim(job.id, slot, 1) == SlotClaim(
        job.id, slot, 1, "server-a", T0 + LEASE, T0, None, None
    )
    clock.advance(LEASE - 1)
    assert not registry.claim_slot(job.id, slot, 1, "server-b", LEASE)  # not expired yet
    clock.advance(1)
    assert registry.claim_slot(job.id, slot, 1, "server-b", LEASE)  # expired, never started
    claim = registry.slot_claim(job.name, slot, 1)
    assert claim is not None and claim.owner == "server-b"
    assert claim.lease_until_ms == T0 + 2 * LEASE and claim.claimed_ms == T0 + LEASE
    assert not registry.claim_slot(job.id, slot, 1, "server-a", LEASE)


def test_renewing_keeps_a_claim_and_only_its_owner_can(registry: Registry, clock: MsClock) -> None:
    job = make_job(registry)
    assert registry.claim_slot(job.id, T0, 1, "a", LEASE)
    clock.advance(LEASE - 10)
    assert registry.renew_claim(job.id, T0, 1, "a", LEASE)
    assert not registry.renew_claim(job.id, T0, 1, "b", LEASE)
    assert not registry.renew_claim(job.id, T0 + 1, 1, "a", LEASE)  # never claimed
    clock.advance(LEASE - 10)
    assert not registry.claim_slot(job.id, T0, 1, "b", LEASE)  # renewed: still a's
    claim = registry.slot_claim(job.id, T0, 1)
    assert claim is not None and claim.lease_until_ms == T0 + 2 * LEASE - 10
    for bad, message in [
        ({"lease_ms": 0}, "lease_ms=0 is not accepted"),
        ({"owner": ""}, "owner='' is not accepted"),
    ]:
        options: dict[str, Any] = {"owner": "a", "lease_ms": LEASE} | bad
        with pytest.raises(InvalidInput, match=message):
            registry.claim_slot(job.id, T0 + 5, 1, options["owner"], options["lease_ms"])
    with pytest.raises(NotFound):
        registry.claim_slot("ghost", T0, 1, "a", LEASE)


def test_a_started_slot_is_never_taken_over_nor_started_twice(
    registry: Registry, clock: MsClock
) -> None:
    job = make_job(registry)
    assert registry.claim_slot(job.id, T0, 1, "a", LEASE)
    first = registry.create_run(job.id, T0, 1, "schedule")
    registry.update_run(first.id, state="running")
    claim = registry.slot_claim(job.id, T0, 1)
    assert claim is not None and claim.started_run_id == first.id and claim.started_ms == T0
    clock.advance(10 * LEASE)  # the lease lapsed, but the run started: the slot is done
    assert not registry.claim_slot(job.id, T0, 1, "b", LEASE)
    # A second run of the same slot (a confused scheduler) cannot start.
    second = registry.create_run(job.id, T0, 1, "schedule")
    with pytest.raises(Conflict, match=f"already started as run {first.id}"):
        registry.update_run(second.id, state="running")
    assert registry.get_run(second.id).state is RunState.QUEUED
    assert registry.update_run(second.id, state="cancelled").state is RunState.CANCELLED
    # After a take-over, the first of two runs to start wins.
    assert registry.claim_slot(job.id, T0 + 1, 1, "a", LEASE)
    old = registry.create_run(job.id, T0 + 1, 1, "schedule")
    clock.advance(LEASE)
    assert registry.claim_slot(job.id, T0 + 1, 1, "b", LEASE)
    new = registry.create_run(job.id, T0 + 1, 1, "schedule")
    registry.update_run(new.id, state="running")
    with pytest.raises(Conflict):
        registry.update_run(old.id, state="running")
    # Runs without a claim (nobody raced for them) start freely.
    free = registry.create_run(job.id, T0 + 2, 1, "manual")
    assert registry.update_run(free.id, state="running").state is RunState.RUNNING


def test_last_slot_is_the_latest_first_attempt_claim_without_manual_runs(
    registry: Registry,
) -> None:
    job = make_job(registry)
    assert registry.last_slot(job.id) is None
    registry.claim_slot(job.id, T0 + 60_000, 1, "a", LEASE)
    registry.claim_slot(job.id, T0 + 120_000, 1, "a", LEASE)
    registry.claim_slot(job.id, T0 + 180_000, 2, "a", LEASE)  # a retry's claim
    assert registry.last_slot(job.id) == T0 + 120_000
    # A run-now request claims the current time; it does not move the schedule on.
    registry.claim_slot(job.id, T0 + 150_000, 1, "a", LEASE)
    registry.create_run(job.id, T0 + 150_000, 1, "manual")
    assert registry.last_slot(job.name) == T0 + 120_000
    # A claim whose run is not recorded yet still counts (a scheduler between the two steps).
    registry.claim_slot(job.id, T0 + 240_000, 1, "a", LEASE)
    assert registry.last_slot(job.id) == T0 + 240_000
    other = make_job(registry, "other")
    assert registry.last_slot(other.id) is None


def test_list_runs_filters_and_pages_newest_first(registry: Registry, clock: MsClock) -> None:
    first, second = make_job(registry, "first"), make_job(registry, "second")
    runs: list[Run] = []
    for i in range(6):
        clock.advance(10)
        runs.append(registry.create_run((first, second)[i % 2].id, T0 + i, 1, "schedule"))
    registry.update_run(runs[0].id, state="running")
    registry.update_run(runs[1].id, state="running")
    registry.update_run(runs[1].id, state="failed")
    newest_first = [r.id for r in reversed(runs)]
    assert [r.id for r in registry.list_runs()] == newest_first
    assert [r.id for r in registry.list_runs(job="first")] == newest_first[1::2]
    assert [r.id for r in registry.list_runs(job=second.id, limit=2)] == newest_first[:3:2]
    assert [r.id for r in registry.list_runs(states=["running", "failed"])] == [
        runs[1].id,
        runs[0].id,
    ]
    assert registry.list_runs(states=[]) == []
    page = registry.list_runs(limit=2)
    rest = registry.list_runs(before_ms=page[-1].queued_ms)
    assert [r.id for r in page + rest] == newest_first
    assert [r.id for r in registry.running_runs(first.id)] == [runs[0].id]
    assert registry.running_runs("second") == []
    for options, message in [
        ({"limit": 0}, "limit=0 is not accepted"),
        ({"states": "running"}, "states='running' is not accepted; expected a list"),
        ({"states": ["sleeping"]}, "run state 'sleeping' is not accepted"),
        ({"before_ms": -5}, "before_ms=-5 is not accepted"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            registry.list_runs(**options)
    with pytest.raises(NotFound):
        registry.list_runs(job="third")


def test_run_metrics_keep_every_value_in_order(registry: Registry, clock: MsClock) -> None:
    job = make_job(registry)
    run = registry.create_run(job.id, T0, 1, "schedule")
    assert registry.run_metrics(run.id) == []
    registry.add_run_metrics(run.id, {"accuracy": 0.91, "report": {"rows": 3, "ok": [True]}})
    clock.advance(5)
    registry.add_run_metrics(run.id, {"accuracy": 0.93}, tracked_ms=T0 + 1)
    metrics = registry.run_metrics(run.id)
    assert [(m.key, m.value, m.tracked_ms) for m in metrics] == [
        ("accuracy", 0.91, T0),
        ("report", {"rows": 3, "ok": [True]}, T0),
        ("accuracy", 0.93, T0 + 1),
    ]
    assert all(m.run_id == run.id for m in metrics)
    with pytest.raises(InvalidInput, match="cannot be stored as JSON"):
        registry.add_run_metrics(run.id, {"bad": object()})
    with pytest.raises(InvalidInput, match="metric name='' is not accepted"):
        registry.add_run_metrics(run.id, {"": 1})
    with pytest.raises(InvalidInput, match="bytes as JSON; accepted: at most 65536"):
        registry.add_run_metrics(run.id, {"big": "x" * 70_000})
    with pytest.raises(NotFound):
        registry.add_run_metrics("crn:modelyard:run/none", {"a": 1})
    assert len(registry.run_metrics(run.id)) == 3


def test_prune_runs_returns_old_finished_runs_and_keeps_the_schedule_going(
    registry: Registry, clock: MsClock
) -> None:
    job = make_job(registry)
    old: list[Run] = []
    for slot in (T0 + 60_000, T0 + 120_000):
        assert registry.claim_slot(job.id, slot, 1, "a", LEASE)
        run = registry.create_run(job.id, slot, 1, "schedule")
        registry.update_run(run.id, state="running")
        old.append(registry.update_run(run.id, state="failed", exit_code=1))
        registry.add_run_metrics(run.id, {"n": 1})
    stuck = registry.create_run(job.id, T0 + 1, 1, "manual")  # still queued: kept
    clock.advance(86_400_000)
    recent = registry.create_run(job.id, T0 + 180_000, 1, "manual")
    registry.update_run(recent.id, state="running")
    recent = registry.update_run(recent.id, state="succeeded")
    pruned = registry.prune_runs(T0 + 1_000_000)
    assert [r.id for r in pruned] == [r.id for r in old]
    assert pruned == old
    assert {r.id for r in registry.list_runs()} == {stuck.id, recent.id}
    with pytest.raises(NotFound):
        registry.run_metrics(old[0].id)
    # The job's last scheduled claim stays, so no old slot looks missed; older claims go.
    assert registry.last_slot(job.id) == T0 + 120_000
    assert registry.slot_claim(job.id, T0 + 60_000, 1) is None
    assert not registry.claim_slot(job.id, T0 + 120_000, 1, "b", LEASE)
    assert registry.prune_runs(T0 + 1_000_000) == []
    with pytest.raises(InvalidInput, match="older_than_ms=None is not accepted"):
        registry.prune_runs(None)  # type: ignore[arg-type]
