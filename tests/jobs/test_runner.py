"""One run's lifecycle with real processes: timeouts, retries, the scoped key, the run's
environment, notifications of a finished run and the built-in maintenance jobs."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import psutil
import pytest

from modelyard.errors import Unauthorized
from modelyard.jobs import builtin
from modelyard.jobs.notify import Notifier
from modelyard.jobs.runner import retry_delay_ms
from modelyard.registry import Role, RunState, Trigger

from .conftest import Inbox, World, wait_for
from .test_notify import Receiver

IGNORES_TERM = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
open(os.environ["PIDS"], "w").write(f"{os.getpid()} {child.pid}")
print("waiting", flush=True)
time.sleep(600)
"""


def test_a_timeout_kills_a_script_that_ignores_sigterm_and_its_child(
    world: World, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    world.job(
        "stubborn", world.script("s.py", IGNORES_TERM), timeout_ms=1000, env={"PIDS": str(pids)}
    )
    scheduler = world.scheduler()
    run = scheduler.trigger("stubborn")
    assert scheduler.runner.wait_idle(20)
    done = world.registry.get_run(run.id)
    assert done.state == RunState.TIMED_OUT
    assert 1000 <= done.ended_ms - done.started_ms < 5000
    for pid in map(int, pids.read_text().split()):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_failed_run_is_retried_and_the_retry_succeeds(world: World, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    flaky = world.script(
        "flaky.py",
        """
        import os, sys
        marker = os.environ["MARKER"]
        if not os.path.exists(marker):
            open(marker, "w").close()
            print("first attempt fails")
            sys.exit(2)
        print("second attempt works")
        """,
    )
    world.job("flaky", flaky, retries=2, retry_backoff_ms=100, env={"MARKER": str(marker)})
    world.clock.running()
    scheduler = world.scheduler()
    first = scheduler.trigger("flaky")
    wait_for(lambda: len(world.registry.list_runs(job="flaky")) == 2)
    assert scheduler.runner.wait_idle(20)
    runs = sorted(world.registry.list_runs(job="flaky"), key=lambda r: r.attempt)
    assert [(r.attempt, r.trigger, r.state) for r in runs] == [
        (1, Trigger.MANUAL, RunState.FAILED),
        (2, Trigger.RETRY, RunState.SUCCEEDED),
    ]
    assert runs[0].id == first.id and runs[0].exit_code == 2
    assert runs[1].slot_ms == runs[0].slot_ms
    assert runs[1].started_ms >= runs[0].ended_ms + 80  # the back-off (100 ms +-20 %) was waited
    assert "retry in" in Path(runs[0].log_path).read_text()


def test_retry_delays_grow_exponentially_with_jitter() -> None:
    rng = random.Random(7)
    delays = [retry_delay_ms(1000, attempt, rng) for attempt in (1, 2, 3, 4)]
    for attempt, delay in enumerate(delays, start=1):
        assert 800 * 2 ** (attempt - 1) <= delay <= 1200 * 2 ** (attempt - 1)
    assert len(set(delays)) == 4


SEES_ITSELF = """
import json, os, time
import modelyard
from pathlib import Path

run = modelyard.current_run()
out = Path(os.environ["OUT"])
(out / "seen.json").write_text(json.dumps({
    "job": run.job, "run_id": run.run_id, "scheduled_ms": run.scheduled_ms, "url": run.url,
    "token": os.environ["MODELYARD_API_KEY"], "extra": os.environ["EXTRA"], "cwd": os.getcwd(),
}))
deadline = time.time() + 20
while not (out / "go").exists() and time.time() < deadline:
    time.sleep(0.02)
"""


def test_the_run_sees_its_slot_and_its_key_works_only_while_it_runs(
    world: World, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    world.job(
        "self-aware", world.script("me.py", SEES_ITSELF), env={"OUT": str(out), "EXTRA": "yes"}
    )
    scheduler = world.scheduler(server_url="http://127.0.0.1:8123")
    run = scheduler.trigger("self-aware")
    seen = json.loads(
        wait_for(lambda: (out / "seen.json").exists() and (out / "seen.json").read_text())
    )
    assert seen["job"] == "self-aware"
    assert run.id.endswith("/" + seen["run_id"])
    assert seen["scheduled_ms"] == run.slot_ms
    assert seen["url"] == "http://127.0.0.1:8123" and seen["extra"] == "yes"
    assert Path(seen["cwd"]).parent.name == "snapshots"  # it runs in the project's snapshot
    key = world.registry.authenticate(seen["token"])
    assert key.role == Role.RUN and key.scope == run.id
    assert world.registry.get_run(run.id).api_key_id == key.id
    (out / "go").touch()
    assert scheduler.runner.wait_idle(20)
    assert world.registry.get_run(run.id).state == RunState.SUCCEEDED
    with pytest.raises(Unauthorized) as caught:
        world.registry.authenticate(seen["token"])
    assert caught.value.details["reason"] == "revoked"


def test_a_missing_script_fails_the_run_with_the_reason_in_its_log(world: World) -> None:
    world.job("gone", world.script("gone.py", "print(1)\n"))
    os.remove(world.project / "gone.py")
    scheduler = world.scheduler()
    run = scheduler.trigger("gone")
    assert scheduler.runner.wait_idle(20)
    done = world.registry.get_run(run.id)
    assert done.state == RunState.FAILED and done.exit_code is None
    assert (
        "script='gone.py' is not a file in the project snapshot" in Path(done.log_path).read_text()
    )


def test_a_failed_run_posts_its_summary_to_the_webhook(world: World) -> None:
    receiver = Receiver()
    try:
        script = world.script("boom.py", "print('working')\nraise ValueError('boom')\n")
        world.job("boom", script, notify=[receiver.url], notify_on=["failure"])
        world.job("fine", world.script("fine.py", "print(1)\n"), notify=[receiver.url])
        scheduler = world.scheduler(server_url="http://127.0.0.1:8123")
        run = scheduler.trigger("boom")
        scheduler.trigger("fine")  # succeeds, and success is not in its notify_on: no POST
        assert scheduler.runner.wait_idle(20)
        wait_for(lambda: receiver.bodies)
        assert scheduler.notifier.wait_idle(10)
        [body] = receiver.bodies
    finally:
        receiver.close()
    done = world.registry.get_run(run.id)
    assert body["job"] == "boom" and body["run"] == run.id and body["state"] == "failed"
    assert body["attempt"] == 1 and body["exit_code"] == 1
    assert body["duration_ms"] == done.ended_ms - done.started_ms
    assert body["scheduled_at"].endswith("Z") and body["started_at"] and body["ended_at"]
    assert "ValueError: boom" in body["log_tail"] and "working" in body["log_tail"]
    assert body["link"] == f"http://127.0.0.1:8123/api/v1/runs/{run.id.rsplit('/', 1)[-1]}"


def test_builtin_jobs_are_created_once_and_run_in_process(world: World) -> None:
    scheduler = world.scheduler(builtin_jobs=True)
    scheduler.start()
    builtin.ensure_builtin_jobs(world.registry, world.home)  # again: nothing new
    jobs = {j.name: j for j in world.registry.list_jobs() if j.builtin}
    assert set(jobs) == {builtin.ROLLUP, builtin.RUN_HISTORY}
    assert jobs[builtin.ROLLUP].schedule.every_ms == 3_600_000
    assert jobs[builtin.RUN_HISTORY].schedule.every_ms == 86_400_000
    run = scheduler.trigger(builtin.ROLLUP)
    assert scheduler.runner.wait_idle(20)
    done = world.registry.get_run(run.id)
    assert done.state == RunState.SUCCEEDED
    assert "raw records rolled up: 0" in Path(done.log_path).read_text()


def test_run_history_prunes_old_runs_and_their_logs(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_RUN_HISTORY", "1h")
    world.job("old", world.script("q.py", "print('old')\n"))
    scheduler = world.scheduler(builtin_jobs=True)
    scheduler.start()
    old = scheduler.trigger("old")
    assert scheduler.runner.wait_idle(20)
    old_log = Path(world.registry.get_run(old.id).log_path)
    assert old_log.is_file()
    rotated = old_log.with_name(old_log.name + ".1")  # a copy kept by log rotation goes too
    rotated.write_text("older lines\n")
    world.clock.set(world.clock() + 2 * 3_600_000)  # two hours later: the run is past 1h
    recent = scheduler.trigger("old")
    prune = scheduler.trigger(builtin.RUN_HISTORY)
    assert scheduler.runner.wait_idle(20)
    remaining = {r.id for r in world.registry.list_runs(job="old")}
    assert old.id not in remaining and recent.id in remaining
    assert not old_log.exists() and not rotated.exists()
    text = Path(world.registry.get_run(prune.id).log_path).read_text()
    assert "1 deleted" in text


def test_metrics_tracked_inside_a_run_are_recorded_with_it(world: World) -> None:
    script = world.script(
        "tracks.py",
        "import modelyard\nmodelyard.track_metric('rows', 42)\n"
        "modelyard.track_metrics({'auc': 0.91, 'note': 'ok'})\n",
    )
    world.job("tracks", script)
    scheduler = world.scheduler(server_url=None)  # embedded: the SDK writes next to the run
    run = scheduler.trigger("tracks")
    assert scheduler.runner.wait_idle(30)
    done = world.registry.get_run(run.id)
    assert done.state == RunState.SUCCEEDED, Path(done.log_path).read_text()
    metrics = {m.key: m.value for m in world.registry.run_metrics(run.id)}
    assert metrics == {"rows": 42, "auc": 0.91, "note": "ok"}


def test_a_timed_out_run_emails_the_address_it_names(
    world: World, smtp_server: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, port = smtp_server
    monkeypatch.setenv("MODELYARD_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("MODELYARD_SMTP_PORT", str(port))
    script = world.script("hang.py", "import time\nprint('hanging')\ntime.sleep(60)\n")
    world.job("hangs", script, timeout_ms=1000, notify=["ops@example.com"], notify_on=["timeout"])
    scheduler = world.scheduler(notifier=Notifier(backoff_s=0.05))
    run = scheduler.trigger("hangs")
    assert scheduler.runner.wait_idle(20)
    assert scheduler.notifier.wait_idle(10)
    [(_, recipients, content)] = inbox.messages
    assert recipients == ["ops@example.com"]
    text = content.decode()
    assert "run timed_out" in text and run.id in text and "hanging" in text


def test_a_second_run_of_a_started_slot_is_cancelled_not_run(world: World, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    job = world.job("once", world.script("once.py", f"open({str(ran)!r}, 'a').write('x')\n"))
    slot = 1_790_000_000_000
    assert world.registry.claim_slot(job.id, slot, 1, "server-a", 60_000)
    first = world.registry.create_run(job.id, slot, 1, Trigger.MANUAL)
    world.registry.update_run(first.id, state=RunState.RUNNING)  # started elsewhere
    second = world.registry.create_run(job.id, slot, 1, Trigger.MANUAL)
    scheduler = world.scheduler()
    scheduler.runner.start(job, second)
    assert scheduler.runner.wait_idle(20)
    done = world.registry.get_run(second.id)
    assert done.state == RunState.CANCELLED and done.started_ms is None
    assert "already started as run" in Path(done.log_path).read_text()
    assert not ran.exists()
