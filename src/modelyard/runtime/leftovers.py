"""Records of live process groups, so groups left by a runtime that died can be found and killed.

Replicas and runs lead their own process groups, so they outlive a server that is SIGKILLed or
crashes.
While a group runs, a small JSON record under ``<home>/run/`` names its process group and the
marker variables the runtime put in its environment. A new runtime calls :func:`reap` (through
``LocalRuntime.reap_leftovers``) at boot: a group is killed only if a live member still carries
the recorded marker, so an unrelated process that happens to reuse the number is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psutil

from modelyard.clock import now_ms
from modelyard.runtime.logs import check_name
from modelyard.runtime.procs import sample_groups, signal_group

__all__ = [
    "forget",
    "marker_matches",
    "new_marker",
    "reap",
    "record",
    "records_root",
    "replica_record",
    "run_record",
]

log = logging.getLogger(__name__)


def records_root(home: Path) -> Path:
    return Path(home) / "run"


def replica_record(home: Path, deployment_id: str, replica_id: str) -> Path:
    return (
        records_root(home)
        / "replicas"
        / check_name(deployment_id, "deployment_id")
        / f"{check_name(replica_id, 'replica_id')}.json"
    )


def run_record(home: Path, run_id: str) -> Path:
    return records_root(home) / "runs" / f"{check_name(run_id, 'run_id')}.json"


def new_marker() -> dict[str, str]:
    """A variable unique to one start, put in the group's environment and in its record."""
    return {"MODELYARD_GROUP_TOKEN": uuid.uuid4().hex}


def record(path: Path, pgid: int, marker: dict[str, str], argv: list[str]) -> None:
    """Write (atomically) that group ``pgid`` runs with ``marker`` in its environment.

    A record that cannot be written (disk full, folder removed) is logged and skipped: the
    process runs anyway, and only the clean-up after a crash would miss it.
    """
    body = {"pgid": pgid, "marker": marker, "argv": argv, "recorded_ms": now_ms()}
    tmp = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(orjson.dumps(body))
        os.replace(tmp, path)
    except OSError:
        log.warning("could not record process group %s in %s", pgid, path, exc_info=True)


def forget(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _carries(proc: psutil.Process, marker: dict[str, str]) -> bool:
    try:
        env = proc.environ()
    except psutil.Error:
        return False
    return all(env.get(key) == value for key, value in marker.items())


def reap(home: Path, grace_s: float = 5.0) -> list[dict[str, Any]]:
    """Kill every recorded group that still runs with its marker; remove all records.

    Returns the records of the groups that were killed (with ``pids``). Call this only when no
    other runtime uses the same home, since it treats every recorded group as abandoned.
    """
    root = records_root(home)
    if not root.is_dir():
        return []
    found: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(root.rglob("*.json")):
        try:
            body = orjson.loads(path.read_bytes())
            pgid = int(body["pgid"])
            marker = {str(k): str(v) for k, v in dict(body["marker"]).items()}
        except (OSError, ValueError, KeyError, TypeError):
            forget(path)  # unreadable: nothing can be matched against it
            continue
        found.append((path, {**body, "pgid": pgid, "marker": marker}))
    samples = sample_groups(body["pgid"] for _, body in found)
    killed: list[dict[str, Any]] = []
    for _path, body in found:
        sample = samples.get(body["pgid"])
        if sample is None or not marker_matches(sample.processes, body["marker"]):
            continue
        signal_group(body["pgid"], signal.SIGTERM)
        killed.append({**body, "pids": sorted(p.pid for p in sample.processes)})
    deadline = time.monotonic() + grace_s
    give_up = deadline + 5.0  # a process stuck in the kernel ignores even SIGKILL for a while
    pending = {body["pgid"] for body in killed}
    killed_hard = False
    while pending and time.monotonic() < give_up:
        pending = set(sample_groups(pending))
        if pending and not killed_hard and time.monotonic() >= deadline:
            for pgid in pending:
                signal_group(pgid, signal.SIGKILL)
            killed_hard = True
        if pending:
            time.sleep(0.05)
    for path, _body in found:
        forget(path)
    return killed


def marker_matches(processes: list[psutil.Process], marker: dict[str, str]) -> bool:
    """True if any of ``processes`` has every ``marker`` variable in its environment."""
    return bool(marker) and any(_carries(proc, marker) for proc in processes)
