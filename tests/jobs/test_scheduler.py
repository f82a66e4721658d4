"""The scheduler over a real database and real processes: slots, claims, catch-up, overlap,
pipelines and leftovers of a crashed server.

Most tests drive ``tick()`` with an injected clock (slots come when the test says); the ones that
let schedulers tick on their own threads make the clock run ten times faster than the wall.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from modelyard.errors import Conflict, InvalidInput
from modelyard.jobs.notify import Notifier
from modelyard.jobs.scheduler import default_owner
from modelyard.registry import RunState, Trigger
from modelyard.store.postgres import PostgresStore
from modelyard.store.sqlite import SQLiteStore

from .conftest import T0, Clock, World, make_world, wait_for

QUICK = "print('ran')\n"
MINUTE = 60_000


def finished(world: World, job: str, count: int) -> list:  # type: ignore[type-arg]
    runs = world.registry.list_runs(job=job)
    done = [r for r in runs if r.state not in (RunState.QUEUED, RunState.RUNNING)]
    return done if len(done) >= count else []


def test_a_job_every_second_runs_and_records_runs(world: World) -> None:
    world.job("tick", world.script("tick.py", QUICK), every_ms=1000)
    scheduler = world.scheduler()
    world.clock.running(speed=4)  # a second of schedule every 0.25 s of wall time
    scheduler.start()
    runs = wait_for(lambda: finished(world, "tick", 3))
    scheduler.stop()
    slots = sorted(r.slot_ms for r in runs)
    assert all(r.state == RunState.SUCCEEDED and r.exit_code == 0 for r in runs), runs
    assert all(r.trigger == Trigger.SCHEDULE and r.attempt == 1 for r in runs), runs
    assert all((s - T0) % 1000 == 0 for s in slots)
    assert len(set(slots)) == len(slots)
    run = runs[0]
    assert run.started_ms is not None and run.ended_ms is not None
    assert "ran" in Path(run.log_path).read_text()


def test_a_paused_job_gets_no_runs_until_it_is_resumed(world: World) -> None:
    world.job("paused", world.script("q.py", QUICK), every_ms=MINUTE, catch_up="latest")
    world.registry.set_paused("paused", True)
    scheduler = world.scheduler()
    world.clock.set(T0 + 2 * MINUTE + 5)
    assert scheduler.tick() == []
    world.registry.set_paused("paused", False)
    assert [r.slot_ms for r in scheduler.tick()] == [T0 + 2 * MINUTE]
    assert scheduler.runner.wait_idle(20)


def test_a_restarted_scheduler_does_not_run_a_slot_twice(db_world: World) -> None:
    world = db_world
    world.job("every-minute", world.script("q.py", QUICK), every_ms=MINUTE, catch_up="all")
    world.clock.set(T0 + 3 * MINUTE + 500)
    first = world.scheduler()
    assert sorted(r.slot_ms for r in first.tick()) == [
        T0 + MINUTE,
        T0 + 2 * MINUTE,
        T0 + 3 * MINUTE,
    ]
    assert first.runner.wait_idle(20)
    first.stop()
    # The same server comes back (same owner, same database) a little later in the same minute.
    world.clock.set(T0 + 3 * MINUTE + 20_000)
    second = world.scheduler()
    second.start()
    assert second.tick() == []
    world.clock.set(T0 + 4 * MINUTE + 10)
    assert [r.slot_ms for r in second.tick()] == [T0 + 4 * MINUTE]
    assert second.runner.wait_idle(20)
    slots = Counter(r.slot_ms for r in world.registry.list_runs(job="every-minute"))
    assert set(slots.values()) == {1} and len(slots) == 4


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("none", []),
        ("latest", [10]),
        ("all", [2, 3, 4, 5, 6, 7, 8, 9, 10]),
    ],
)
def test_catch_up_after_downtime(world: World, policy: str, expected: list[int]) -> None:
    every = 5 * MINUTE
    world.job("hourly-ish", world.script("q.py", QUICK), every_ms=every, catch_up=policy)
    world.clock.set(T0 + every + 100)
    before = world.scheduler()
    assert [r.slot_ms for r in before.tick()] == [T0 + every]
    assert before.runner.wait_idle(20)
    before.stop()
    # Down from just after slot 1 until two minutes after slot 10 (past the 1-minute grace).
    world.clock.set(T0 + 10 * every + 2 * MINUTE)
    after = world.scheduler()
    after.start()
    runs = after.tick()
    assert [(r.slot_ms - T0) // every for r in runs] == expected
    assert all(r.trigger == Trigger.CATCH_UP for r in runs)
    assert after.runner.wait_idle(20)
    states = {r.state for r in world.registry.list_runs(job="hourly-ish")}
    assert states == {RunState.SUCCEEDED}
    # Nothing more is due until the next slot.
    assert after.tick() == []


def _two_servers(first: World, second: World) -> None:
    script = first.script("q.py", "import time\ntime.sleep(0.05)\nprint('ran')\n")
    first.job("shared", script, every_ms=1000, overlap="allow")
    a = first.scheduler("server-a")
    b = second.scheduler("server-b")
    first.clock.running(speed=5)
    started = [threading.Thread(target=s.start) for s in (a, b)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    wait_for(lambda: finished(first, "shared", 6), timeout_s=30)
    a.stop()
    b.stop()
    runs = first.registry.list_runs(job="shared")
    per_slot = Counter(r.slot_ms for r in runs)
    assert len(per_slot) >= 6
    assert set(per_slot.values()) == {1}, per_slot
    # Each run is the one its slot's claim says started, whichever server won the claim.
    for run in runs:
        claim = first.registry.slot_claim(run.job_id, run.slot_ms, 1)
        assert claim is not None and claim.owner in {"server-a", "server-b"}
        assert claim.started_run_id == run.id


def test_two_schedulers_on_one_sqlite_file_run_each_slot_once(tmp_path: Path) -> None:
    clock = Clock()
    db = tmp_path / "shared.db"
    first = make_world(tmp_path / "home-a", SQLiteStore(db), tmp_path / "proj", clock)
    second = make_world(tmp_path / "home-b", SQLiteStore(db), tmp_path / "proj", clock)
    try:
        _two_servers(first, second)
    finally:
        first.close()
        second.close()


@pytest.mark.postgres
def test_two_schedulers_on_one_postgres_run_each_slot_once(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    clock = Clock()
    first = make_world(
        tmp_path / "home-a", PostgresStore(postgres_schema_url), tmp_path / "proj", clock
    )
    second = make_world(
        tmp_path / "home-b", PostgresStore(postgres_schema_url), tmp_path / "proj", clock
    )
    try:
        _two_servers(first, second)
    finally:
        first.close()
        second.close()


SLOW = """
import os, time
with open(os.environ["TRACE"], "a") as trace:
    trace.write(f"start {os.getpid()}\\n")
time.sleep(0.5)
with open(os.environ["TRACE"], "a") as trace:
    trace.write(f"end {os.getpid()}\\n")
"""


def _nested(trace: Path) -> bool:
    """True when some run started while another was still going (from the runs' own trace)."""
    going = 0
    for line in trace.read_text().splitlines():
        going += 1 if line.startswith("start") else -1
        if going > 1:
            return True
    return False


@pytest.mark.parametrize("overlap", ["skip", "queue", "allow"])
def test_overlap_policies_with_a_job_slower_than_its_interval(
    world: World, tmp_path: Path, overlap: str
) -> None:
    trace = tmp_path / "trace"
    world.job(
        "slow", world.script("slow.py", SLOW), every_ms=1000, overlap=overlap,
        env={"TRACE": str(trace)},
    )  # fmt: skip
    scheduler = world.scheduler()
    world.clock.running(speed=4)  # a slot every 0.25 s for a 0.5 s job
    scheduler.start()
    wait_for(
        lambda: (
            len(finished(world, "slow", 1)) >= 1 and len(world.registry.list_runs(job="slow")) >= 5
        )
    )
    scheduler.stop()  # cancels what is still going or queued
    runs = world.registry.list_runs(job="slow")
    states = Counter(r.state for r in runs)
    if overlap == "allow":
        assert _nested(trace), "allow starts a slot while the previous run goes on"
        assert states[RunState.SUCCEEDED] >= 1
        assert not any("overlap=skip" in Path(r.log_path).read_text() for r in runs if r.log_path)
        return
    assert not _nested(trace), trace.read_text()
    if overlap == "skip":
        skipped = [
            r for r in runs if r.state == RunState.CANCELLED and r.log_path
            and "overlap=skip" in Path(r.log_path).read_text()
        ]  # fmt: skip
        assert skipped, "a 0.5 s job every 0.25 s must have skipped slots"
    else:
        # queue: slots wait their turn; none is skipped; when the server stopped, the run going
        # and the ones still waiting (never started) were cancelled.
        waiting = [r for r in runs if r.state == RunState.CANCELLED]
        assert len(waiting) >= 1 and sum(r.started_ms is not None for r in waiting) <= 1
        assert not any("overlap=skip" in Path(r.log_path).read_text() for r in runs if r.log_path)


def test_pipeline_stops_at_a_failed_step(db_world: World) -> None:
    world = db_world
    ok = world.script("ok.py", QUICK)
    fail = world.script("fail.py", "import sys\nsys.exit(4)\n")
    world.job("a", ok)
    world.job("b", fail, after="a")
    world.job("c", ok, after="b")
    world.job("x", ok)
    world.job("y", ok, after="x")
    world.job("z", ok, after="y")
    scheduler = world.scheduler()
    first = scheduler.trigger("a")
    second = scheduler.trigger("x")
    assert scheduler.runner.wait_idle(30)
    [a] = world.registry.list_runs(job="a")
    [b] = world.registry.list_runs(job="b")
    assert a.state == RunState.SUCCEEDED and a.trigger == Trigger.MANUAL and a.id == first.id
    assert b.state == RunState.FAILED and b.exit_code == 4
    assert b.trigger == Trigger.PARENT and b.parent_run_id == a.id and b.slot_ms == a.slot_ms
    assert world.registry.list_runs(job="c") == []
    # The same shape with every step succeeding runs to the end, on the first step's slot.
    [z] = world.registry.list_runs(job="z")
    assert z.state == RunState.SUCCEEDED and z.slot_ms == second.slot_ms


def test_run_now_respects_overlap_skip_and_cancel_stops_the_run(world: World) -> None:
    world.job("long", world.script("long.py", "import time\ntime.sleep(30)\n"), retries=3)
    scheduler = world.scheduler()
    run = scheduler.trigger("long")
    wait_for(lambda: world.registry.get_run(run.id).state == RunState.RUNNING)
    with pytest.raises(Conflict, match="overlap policy is 'skip'"):
        scheduler.trigger("long")
    cancelled = scheduler.cancel(run.id)
    assert cancelled.state == RunState.CANCELLED
    assert scheduler.runner.wait_idle(10)
    # Cancelled runs are never retried, whatever the job's retries.
    assert [r.id for r in world.registry.list_runs(job="long")] == [run.id]
    with pytest.raises(Conflict, match="already ended"):
        scheduler.cancel(run.id)


def test_runs_left_running_by_a_crashed_server_are_marked_failed(world: World) -> None:
    job = world.job("left", world.script("q.py", QUICK))
    registry = world.registry
    ours = T0 + 1
    assert registry.claim_slot(job.id, ours, 1, "server-a", 60_000)
    mine = registry.create_run(job.id, ours, 1, Trigger.MANUAL)
    registry.update_run(mine.id, state=RunState.RUNNING, started_ms=ours)
    theirs = T0 + 2
    assert registry.claim_slot(job.id, theirs, 1, "server-b", 60_000)
    other = registry.create_run(job.id, theirs, 1, Trigger.MANUAL)
    registry.update_run(other.id, state=RunState.RUNNING, started_ms=theirs)
    world.clock.set(T0 + 1000)
    scheduler = world.scheduler("server-a")
    scheduler.start()
    assert registry.get_run(mine.id).state == RunState.FAILED
    # server-b's lease is still good: its run is left alone until the lease runs out.
    assert registry.get_run(other.id).state == RunState.RUNNING
    world.clock.set(T0 + 120_000)
    assert [r.id for r in scheduler.recover()] == [other.id]
    assert registry.get_run(other.id).state == RunState.FAILED


SERVER = """
import sys, time
from modelyard.jobs.notify import Notifier
from modelyard.jobs.scheduler import default_owner
from modelyard.jobs.scheduler import Scheduler
from modelyard.registry import Registry
from modelyard.runtime import LocalRuntime
from modelyard.store.sqlite import SQLiteStore

db, home = sys.argv[1], sys.argv[2]
store = SQLiteStore(db)
registry = Registry(store)
scheduler = Scheduler(registry, LocalRuntime(home), store, home=home, server_url=None,
                      owner="server-a", builtin_jobs=False, notifier=Notifier(use_settings=False))
scheduler.start()
print(scheduler.trigger("long").id, flush=True)
time.sleep(600)
"""


def test_a_killed_server_leaves_no_run_running_after_it_comes_back(
    world: World, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    script = world.script(
        "long.py",
        f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n",
    )
    world.job("long", script)
    world.clock.running()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(world.store.location), str(world.home)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        run_id = server.stdout.readline().strip()
        wait_for(lambda: world.registry.get_run(run_id).state == RunState.RUNNING)
        pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text()))
    finally:
        server.kill()  # SIGKILL: no shutdown code runs
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
    assert psutil.pid_exists(pid)  # the run's process group outlived its server
    # The server comes back on the same home and database.
    reaped = world.runtime.reap_leftovers(0.3)
    assert [r["pgid"] for r in reaped] == [pid]
    # Wall time, as the killed server used (the test clock starts in the past).
    scheduler = world.scheduler("server-a", clock=lambda: time.time_ns() // 1_000_000)
    scheduler.start()
    run = world.registry.get_run(run_id)
    assert run.state == RunState.FAILED
    assert "its process is gone" in Path(run.log_path).read_text()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_scheduler_needs_an_owner_and_does_not_start_again_once_stopped(world: World) -> None:
    notifier = Notifier(use_settings=False)
    with pytest.raises(InvalidInput, match="owner=' '"):
        world.scheduler(" ", notifier=notifier)
    notifier.close()
    scheduler = world.scheduler()
    scheduler.start()
    scheduler.stop()
    with pytest.raises(Conflict, match="create a new Scheduler"):
        scheduler.start()


def test_the_default_owner_is_stable_per_home(tmp_path: Path) -> None:
    assert default_owner(tmp_path / "a") == default_owner(tmp_path / "a")
    assert default_owner(tmp_path / "a") != default_owner(tmp_path / "b")
