"""Supervised replicas as real processes: health, restarts, backoff, memory, recycle, scale."""

from __future__ import annotations

import http.client
import itertools
import os
import signal
from pathlib import Path

import pytest

from _processes import ended
from modelyard.errors import Conflict, InvalidInput, ModelyardError, NotFound
from modelyard.runtime import (
    Event,
    LocalRuntime,
    ReplicaSpec,
    ReplicaStatus,
    free_port,
)

from .conftest import kinds, wait_until

DEP = "dep1"


def server_spec(
    scripts: dict[str, list[str]], replica_id: str, deployment_id: str = DEP, **kw: object
) -> ReplicaSpec:
    env = kw.pop("env", {})
    return ReplicaSpec(
        deployment_id=deployment_id,
        replica_id=replica_id,
        argv=scripts["server"],
        env=env,  # type: ignore[arg-type]
        port=free_port(),
        health_path="/healthz",
        **kw,  # type: ignore[arg-type]
    )


def status(runtime: LocalRuntime, replica_id: str) -> ReplicaStatus:
    return runtime.replica(replica_id).status


def get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def test_two_replicas_become_healthy_with_their_own_environment(
    runtime: LocalRuntime, scripts: dict[str, list[str]], events: list[Event]
) -> None:
    specs = [
        server_spec(scripts, "r1", env={"GREETING": "hello r1"}, memory_limit_bytes=1 << 30),
        server_spec(scripts, "r2", env={"GREETING": "hello r2"}, cpus=0.5),
    ]
    started = runtime.start_replicas(specs)
    assert [s.status for s in started] == [ReplicaStatus.STARTING] * 2
    assert all(s.pid is not None for s in started)
    wait_until(
        lambda: all(s.status is ReplicaStatus.HEALTHY for s in runtime.replicas(DEP)),
        what="both replicas healthy",
    )
    for spec in specs:
        assert spec.port is not None
        assert get(spec.port, "/env?GREETING") == f"hello {spec.replica_id}"
        assert get(spec.port, "/env?MODELYARD_DEPLOYMENT_ID") == DEP
        assert get(spec.port, "/env?MODELYARD_PORT") == str(spec.port)
    wait_until(lambda: (runtime.replica("r1").rss_bytes or 0) > 1_000_000, what="rss sampled")
    state = runtime.replica("r1")
    assert state.memory_limit_bytes == 1 << 30
    assert state.cpu_percent is not None and state.cpu_percent >= 0
    assert runtime.replica("r2").cpus == 0.5
    wait_until(lambda: "healthy" in kinds(events, "r1"), what="healthy event")
    assert kinds(events, "r1")[:2] == ["started", "healthy"]
    # Each replica runs in its own process group, led by itself.
    for state in runtime.replicas(DEP):
        assert state.pid is not None and os.getpgid(state.pid) == state.pid


def test_killed_replica_comes_back_and_its_log_keeps_both_starts(
    runtime: LocalRuntime, scripts: dict[str, list[str]], events: list[Event]
) -> None:
    runtime.start_replicas([server_spec(scripts, "r1"), server_spec(scripts, "r2")])
    wait_until(lambda: status(runtime, "r1") is ReplicaStatus.HEALTHY, what="r1 healthy")
    first_pid = runtime.replica("r1").pid
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)
    wait_until(
        lambda: (
            runtime.replica("r1").restarts == 1 and status(runtime, "r1") is ReplicaStatus.HEALTHY
        ),
        timeout_s=10,
        what="r1 restarted and healthy",
    )
    state = runtime.replica("r1")
    assert state.pid != first_pid
    assert state.last_exit_code == -signal.SIGKILL
    exited = [e for e in events if e.kind == "exited" and e.replica_id == "r1"]
    assert exited[0].details["signal"] == "SIGKILL"
    assert runtime.replica("r2").restarts == 0
    wait_until(
        lambda: f"stderr of {state.pid}" in state.log_path.read_text(),
        what="second start logged",
    )
    text = state.log_path.read_text()
    assert state.log_path == runtime.home / "logs" / "replicas" / DEP / "r1.log"
    assert text.count("=== modelyard replica dep1/r1 start #") == 2
    assert f"serving r1 on {runtime.replica('r1').port} pid {first_pid}" in text
    assert f"stderr of {first_pid}" in text  # stderr goes to the same file
    assert f"pid {state.pid}" in text
    tail = list(runtime.read_replica_log(DEP, "r1", tail_lines=2))
    assert tail == [f"serving r1 on {state.port} pid {state.pid}", f"stderr of {state.pid}"]


@pytest.mark.slow
def test_crash_loop_backs_off_with_growing_delays(
    runtime: LocalRuntime, scripts: dict[str, list[str]], events: list[Event]
) -> None:
    spec = ReplicaSpec(DEP, "crasher", scripts["crash"])
    runtime.start_replicas([spec])
    # Events reach the handler just after the state changes: wait for the events themselves.
    wait_until(lambda: kinds(events, "crasher").count("restarted") >= 4, what="four restarts")
    # Chosen delays: 0.2, 0.4, 0.8, 1.6 s, each +-20 % (so they grow strictly), and no restart
    # comes before its delay has passed since the exit.
    delays = []
    gaps = []
    exited_at = None
    for event in [e for e in events if e.replica_id == "crasher"]:
        if event.kind == "exited":
            assert event.details["exit_code"] == 3
            exited_at = event.at_ms
        elif event.kind == "restarted" and exited_at is not None:
            delays.append(event.details["backoff_s"])
            gaps.append(event.at_ms - exited_at)
    assert len(delays) >= 4
    for n, delay in enumerate(delays[:4]):
        # backoff_s is rounded to the millisecond: 0.16 may stand for 0.15996
        chosen = 0.2 * 2**n
        assert round(chosen * 0.8, 3) <= delay <= round(chosen * 1.2, 3), delays
    assert all(later > earlier for earlier, later in itertools.pairwise(delays)), delays
    assert all(gap >= delay * 1000 - 5 for gap, delay in zip(gaps, delays, strict=True)), gaps
    assert runtime.replica("crasher").last_exit_code == 3


def test_memory_limit_kills_restarts_and_reports_figures(
    runtime: LocalRuntime, scripts: dict[str, list[str]], events: list[Event]
) -> None:
    limit = 120 * 1024 * 1024
    spec = ReplicaSpec(DEP, "hog", scripts["hog"], memory_limit_bytes=limit)
    runtime.start_replicas([spec])
    wait_until(
        lambda: any(e.kind == "memory_limit_exceeded" for e in events), what="limit exceeded"
    )
    event = next(e for e in events if e.kind == "memory_limit_exceeded")
    assert event.replica_id == "hog" and event.deployment_id == DEP
    assert event.details["limit_bytes"] == limit
    assert event.details["rss_bytes"] > limit
    # Sampled every 50 ms while growing 80 MB/s: caught well before it doubles, even when a
    # loaded machine delays a poll by a second.
    assert event.details["rss_bytes"] < 2 * limit
    killed_pid = event.details["pid"]
    wait_until(lambda: runtime.replica("hog").restarts >= 1, what="hog restarted")
    assert ended(killed_pid)
    assert runtime.replica("hog").last_exit_code == -signal.SIGKILL


@pytest.mark.slow
def test_failing_health_checks_recycle_a_stuck_replica_even_if_it_ignores_sigterm(
    runtime: LocalRuntime, scripts: dict[str, list[str]], events: list[Event]
) -> None:
    spec = server_spec(scripts, "stuck", env={"HANG_AFTER_S": "1.0", "IGNORE_TERM": "1"})
    runtime.start_replicas([spec])
    wait_until(lambda: "recycled" in kinds(events, "stuck"), what="recycle")
    wait_until(lambda: "restarted" in kinds(events, "stuck"), what="restart after recycle")
    seen = kinds(events, "stuck")
    assert seen[:5] == ["started", "healthy", "unhealthy", "recycled", "restarted"], seen
    recycled = next(e for e in events if e.kind == "recycled")
    assert "health check failed 3 times" in recycled.details["reason"]
    # It ignored SIGTERM, so the grace period ran out and SIGKILL ended it.
    assert runtime.replica("stuck").last_exit_code == -signal.SIGKILL


def test_replica_that_never_answers_is_recycled_after_its_startup_timeout(
    runtime: LocalRuntime, scripts: dict[str, list[str]], events: list[Event]
) -> None:
    spec = server_spec(scripts, "mute", env={"HANG_AFTER_S": "0"}, startup_timeout_s=0.6)
    runtime.start_replicas([spec])
    wait_until(lambda: "recycled" in kinds(events, "mute"), what="startup timeout recycle")
    assert "healthy" not in kinds(events, "mute")
    recycled = next(e for e in events if e.kind == "recycled")
    assert "startup_timeout_s=0.6" in recycled.details["reason"]


def test_recycle_on_request_restarts_the_replica(
    runtime: LocalRuntime, scripts: dict[str, list[str]], events: list[Event]
) -> None:
    runtime.start_replicas([server_spec(scripts, "r1")])
    wait_until(lambda: status(runtime, "r1") is ReplicaStatus.HEALTHY, what="healthy")
    runtime.recycle("r1", "request timeout after 30 s")
    wait_until(
        lambda: (
            runtime.replica("r1").restarts == 1 and status(runtime, "r1") is ReplicaStatus.HEALTHY
        ),
        what="recycled and healthy again",
    )
    recycled = [e for e in events if e.kind == "recycled"]
    assert recycled[0].details["reason"] == "request timeout after 30 s"
    assert runtime.replica("r1").last_exit_code == -signal.SIGTERM


def test_stop_and_scale_down_and_up(
    runtime: LocalRuntime, scripts: dict[str, list[str]], events: list[Event]
) -> None:
    specs = [server_spec(scripts, f"r{i}") for i in range(3)]
    runtime.start_replicas(specs)
    wait_until(lambda: len(runtime.replicas(DEP)) == 3, what="three replicas")
    pids = {s.replica_id: s.pid for s in runtime.replicas(DEP)}

    stopped = runtime.stop_replica("r2", grace_s=1.0)
    assert stopped.status is ReplicaStatus.STOPPED
    assert stopped.last_exit_code == -signal.SIGTERM
    assert ended(pids["r2"])
    assert [s.replica_id for s in runtime.replicas(DEP)] == ["r0", "r1"]
    assert "stopped" in kinds(events, "r2")

    states = runtime.scale(DEP, specs[:1])
    assert [s.replica_id for s in states] == ["r0"]
    assert states[0].pid == pids["r0"]  # kept, not restarted

    grown = [specs[0], server_spec(scripts, "r3"), server_spec(scripts, "r4")]
    states = runtime.scale(DEP, grown)
    assert sorted(s.replica_id for s in states) == ["r0", "r3", "r4"]
    wait_until(
        lambda: all(s.status is ReplicaStatus.HEALTHY for s in runtime.replicas(DEP)),
        what="scaled-up replicas healthy",
    )
    runtime.stop_deployment(DEP)
    assert runtime.replicas(DEP) == []


def test_children_left_by_a_dead_leader_are_cleared_before_the_restart(
    runtime: LocalRuntime, scripts: dict[str, list[str]], tmp_path: Path, events: list[Event]
) -> None:
    pid_file = tmp_path / "child.pid"
    spec = ReplicaSpec(DEP, "leaver", scripts["leaver"], env={"CHILD_PID_FILE": str(pid_file)})
    runtime.start_replicas([spec])
    wait_until(lambda: "exited" in kinds(events, "leaver"), what="leader exit")
    child = int(pid_file.read_text())
    wait_until(lambda: ended(child), what="leftover child killed")
    runtime.stop_replica("leaver")


def test_stop_all_leaves_no_process_and_closes_the_runtime(
    no_orphans: str, modelyard_home: Path, scripts: dict[str, list[str]]
) -> None:
    from .conftest import FAST, tagged_processes

    rt = LocalRuntime(modelyard_home, config=FAST)
    rt.start_replicas([server_spec(scripts, "a"), server_spec(scripts, "b", "dep2")])
    # Right after fork, before exec, a child still shows the parent's first environment.
    wait_until(lambda: len(tagged_processes(no_orphans)) == 2, what="both replicas tagged")
    rt.stop_all(grace_s=0.5)
    assert tagged_processes(no_orphans) == []
    with pytest.raises(Conflict, match="stop_all"):
        rt.start_replicas([server_spec(scripts, "c")])
    rt.stop_all()  # a second call is harmless


def test_spec_errors_name_the_value_and_what_is_accepted(
    runtime: LocalRuntime, scripts: dict[str, list[str]], tmp_path: Path
) -> None:
    argv = scripts["server"]
    bad = [
        (ReplicaSpec("crn:modelyard:deployment/x", "r", argv), "deployment_id="),
        (ReplicaSpec(DEP, "../r", argv), "replica_id='../r'"),
        (ReplicaSpec(DEP, "r", []), "non-empty list"),
        (ReplicaSpec(DEP, "r", argv, cwd=tmp_path / "missing"), "not an existing folder"),
        (ReplicaSpec(DEP, "r", argv, health_path="/healthz"), "needs a port"),
        (ReplicaSpec(DEP, "r", argv, port=70000), "port=70000"),
        (ReplicaSpec(DEP, "r", argv, memory_limit_bytes=0), "memory_limit_bytes=0"),
        (ReplicaSpec(DEP, "r", argv, cpus=-1.0), "cpus=-1.0"),
        (ReplicaSpec(DEP, "r", argv, env={"A=B": "x"}), "'A=B'"),
    ]
    for spec, fragment in bad:
        with pytest.raises(InvalidInput) as info:
            runtime.start_replicas([spec])
        assert fragment in str(info.value)
    assert runtime.replicas() == []
    with pytest.raises(InvalidInput, match="more than once"):
        runtime.start_replicas([ReplicaSpec(DEP, "r", argv), ReplicaSpec(DEP, "r", argv)])
    runtime.start_replicas([ReplicaSpec(DEP, "r", scripts["crash"], env={"CRASH_AFTER_S": "60"})])
    with pytest.raises(Conflict, match="already running"):
        runtime.start_replicas([ReplicaSpec(DEP, "r", argv)])
    port = free_port()
    runtime.start_replicas([ReplicaSpec(DEP, "p1", argv, port=port)])
    with pytest.raises(Conflict, match=f"ports \\[{port}\\]"):
        runtime.start_replicas([ReplicaSpec(DEP, "p2", argv, port=port)])
    with pytest.raises(NotFound, match="'nope'"):
        runtime.recycle("nope", "why")
    with pytest.raises(NotFound):
        runtime.stop_replica("nope")
    with pytest.raises(InvalidInput, match="another deployment"):
        runtime.scale("other", [ReplicaSpec(DEP, "r", argv)])
    for exc_type in (InvalidInput, Conflict, NotFound):
        assert issubclass(exc_type, ModelyardError)


def test_a_command_that_cannot_start_is_retried_with_backoff(
    runtime: LocalRuntime, tmp_path: Path, events: list[Event]
) -> None:
    missing = str(tmp_path / "no-such-program")
    runtime.start_replicas([ReplicaSpec(DEP, "ghost", [missing])])
    assert runtime.replica("ghost").status is ReplicaStatus.CRASHED
    wait_until(lambda: kinds(events, "ghost").count("spawn_failed") >= 2, what="retry")
    assert "FileNotFoundError" in events[0].details["error"]
    runtime.stop_replica("ghost")


def test_event_handlers_may_call_back_and_may_fail_without_stopping_supervision(
    no_orphans: str, modelyard_home: Path, scripts: dict[str, list[str]]
) -> None:
    from .conftest import FAST

    seen: list[tuple[str, int]] = []
    holder: list[LocalRuntime] = []

    def handler(event: Event) -> None:
        # Calling into the runtime from a handler must not deadlock (events leave the lock first).
        seen.append((event.kind, len(holder[0].replicas())))
        raise RuntimeError("a broken handler")

    rt = LocalRuntime(modelyard_home, on_event=handler, config=FAST)
    holder.append(rt)
    try:
        rt.start_replicas([ReplicaSpec(DEP, "c", scripts["crash"], env={"CRASH_AFTER_S": "0"})])
        wait_until(lambda: rt.replica("c").restarts >= 1, what="restart despite handler errors")
        follower = rt.read_replica_log(DEP, "c", follow=True)
        assert next(follower).startswith("=== modelyard replica dep1/c start #1")
        rt.stop_replica("c")
        rest = list(follower)  # ends once the replica is stopped
        assert any(line.startswith("crash start pid") for line in rest)
    finally:
        rt.stop_all()
    assert ("started", 1) in seen and ("restarted", 1) in seen
