"""Two server processes on one PostgreSQL database: two real Python processes, each running a
``Scheduler`` of its own (its own runtime and home) against the same schema, race for the slots
of one every-second job for a few seconds. Each slot must run exactly once: the claim with a
lease in the database is all that keeps them apart (no shared memory, no shared clock object)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

from modelyard.registry import Registry, RunState
from modelyard.specs import JobSpec
from modelyard.store.postgres import PostgresStore

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SECONDS = 5.0

# One server's scheduler: start at the agreed wall time, schedule for SECONDS, stop.
SERVER = """
import sys, time
from pathlib import Path

from modelyard.jobs.scheduler import Scheduler
from modelyard.registry import Registry
from modelyard.runtime import LocalRuntime, SupervisorConfig
from modelyard.store.postgres import PostgresStore

url, home, owner, start_at, seconds, tick = sys.argv[1:7]
store = PostgresStore(url)
runtime = LocalRuntime(Path(home), config=SupervisorConfig(poll_interval_s=0.05, stop_grace_s=0.3))
scheduler = Scheduler(
    Registry(store), runtime, store, home=home, server_url=None, owner=owner, tick_s=float(tick),
    builtin_jobs=False,
)
time.sleep(max(0.0, float(start_at) - time.time()))
scheduler.start()
print("started", owner, flush=True)
time.sleep(float(seconds))
scheduler.stop(20)
runtime.stop_all(0.2)
store.close()
print("stopped", owner, flush=True)
"""

# The job: each execution appends its slot and process to a shared trace (O_APPEND lines).
TRACE = """
import os
with open(os.environ["TRACE"], "a") as trace:
    trace.write(f"{os.environ['MODELYARD_SCHEDULED_AT']} {os.getpid()}\\n")
"""


def test_two_server_processes_on_one_postgres_run_each_slot_once(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "trace.py").write_text(textwrap.dedent(TRACE))
    trace = tmp_path / "trace.txt"
    with PostgresStore(postgres_schema_url) as store:
        Registry(store).create_job(
            JobSpec(
                name="shared",
                project=str(project),
                script="trace.py",
                every_ms=1000,
                overlap="allow",
                timeout_ms=30_000,
                env={"TRACE": str(trace)},
            )
        )
    start_at = time.time() + 3.0  # both processes import first, then start together
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                SERVER,
                postgres_schema_url,
                str(tmp_path / f"home-{owner}"),
                owner,
                str(start_at),
                str(SECONDS),
                tick,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "MODELYARD_HOME": str(tmp_path / f"home-{owner}")},
        )
        # Different tick periods, so which process reaches a slot first varies from slot to slot.
        for owner, tick in (("server-a", "0.05"), ("server-b", "0.07"))
    ]
    outputs = []
    try:
        for server in servers:
            outputs.append(server.communicate(timeout=60))
    finally:
        for server in servers:
            if server.poll() is None:
                server.kill()
                server.wait()
    for server, (out, err) in zip(servers, outputs, strict=True):
        assert server.returncode == 0, err
        assert out.splitlines()[0].startswith("started") and "stopped" in out, (out, err)

    with PostgresStore(postgres_schema_url) as store:
        registry = Registry(store)
        runs = registry.list_runs(job="shared")
        claims = [registry.slot_claim(r.job_id, r.slot_ms, r.attempt) for r in runs]
    per_slot = Counter((r.slot_ms, r.attempt) for r in runs)
    assert set(per_slot.values()) == {1}, per_slot
    succeeded = sorted(r.slot_ms for r in runs if r.state == RunState.SUCCEEDED)
    assert len(succeeded) >= SECONDS - 2, [(r.slot_ms, r.state) for r in runs]
    # Consecutive slots, none lost between the first and the last that ran.
    assert all(b - a == 1000 for a, b in pairwise(succeeded)), succeeded
    # Each run is the one its slot's claim says started, whichever process won the claim.
    for run, claim in zip(runs, claims, strict=True):
        assert claim is not None and claim.owner in {"server-a", "server-b"}
        assert claim.started_run_id == run.id
    # The scripts' own trace: every slot executed once, by one process.
    executed = Counter(line.split()[0] for line in trace.read_text().splitlines())
    assert set(executed.values()) == {1}, executed
    assert len(executed) >= len(succeeded)
    owners = Counter(c.owner for c in claims if c is not None)
    print(f"slots run: {len(runs)}, claims per process: {dict(owners)}")
