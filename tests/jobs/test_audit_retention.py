"""The audit log's retention: ``maintenance-run-history`` deletes entries older than
``MODELYARD_AUDIT_RETENTION`` and keeps the rest (a real scheduler, run and registry)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.jobs import builtin
from modelyard.registry import RunState

from .conftest import World

DAY_MS = 86_400_000


def test_maintenance_prunes_audit_entries_past_retention(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_AUDIT_RETENTION", "2d")
    world.registry.audit.record("alice", "models.deploy", object="old")
    world.clock.set(world.clock() + DAY_MS)
    world.registry.audit.record("alice", "models.scale", object="recent")
    world.clock.set(world.clock() + DAY_MS + 3_600_000)  # the first is now 2d 1h old
    scheduler = world.scheduler(builtin_jobs=True)
    scheduler.start()
    prune = scheduler.trigger(builtin.RUN_HISTORY)
    assert scheduler.runner.wait_idle(20)
    done = world.registry.get_run(prune.id)
    assert done.state == RunState.SUCCEEDED
    assert [e.object for e in world.registry.audit.list()] == ["recent"]
    assert done.log_path is not None
    [line] = [x for x in Path(done.log_path).read_text().splitlines() if "audit" in x]
    assert line.startswith("audit entries older than 172800000 ms") and line.endswith(": 1 deleted")


def test_the_default_retention_is_a_year(world: World) -> None:
    world.registry.audit.record("alice", "models.deploy")
    world.clock.set(world.clock() + 364 * DAY_MS)
    scheduler = world.scheduler(builtin_jobs=True)
    scheduler.start()
    scheduler.trigger(builtin.RUN_HISTORY)
    assert scheduler.runner.wait_idle(20)
    assert len(world.registry.audit.list()) == 1
    world.clock.set(world.clock() + 2 * DAY_MS)
    scheduler.trigger(builtin.RUN_HISTORY)
    assert scheduler.runner.wait_idle(20)
    assert world.registry.audit.list() == []
