"""The platform's own maintenance, as jobs like any other: visible, pausable, triggerable.

``maintenance-rollup`` (every hour) folds old raw prediction records into rollup buckets with
``store.rollup()``; ``maintenance-run-history`` (daily) deletes job runs older than
``MODELYARD_RUN_HISTORY`` (30 days by default) and their log files, and audit log entries older
than ``MODELYARD_AUDIT_RETENTION`` (365 days by default: the only way entries leave the log),
and project uploads older than a day with the upload blobs no upload used for a day.
Both run in-process on a runner thread (no script, no snapshot): they need the server's store
connection, not a process of their own. They are created at scheduler start if missing, marked
``builtin`` (they cannot be deleted), and their output goes to the run log.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard import settings
from modelyard.errors import NotFound
from modelyard.registry import Job, Registry
from modelyard.runtime.logs import log_files
from modelyard.specs.job import JobSpec, Overlap
from modelyard.specs.schedule import CatchUp
from modelyard.store.base import RollupPolicy

if TYPE_CHECKING:
    from modelyard.jobs.runner import BuiltinContext, BuiltinFn

__all__ = [
    "BUILTINS",
    "BUILTIN_SCRIPT",
    "HOUR_MS",
    "ROLLUP",
    "RUN_HISTORY",
    "UPLOAD_KEEP_MS",
    "ensure_builtin_jobs",
    "prune_audit_log",
    "prune_run_history",
    "prune_uploads",
    "rollup",
]

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
ROLLUP = "maintenance-rollup"
RUN_HISTORY = "maintenance-run-history"
UPLOAD_KEEP_MS = 24 * HOUR_MS  # uploads and unused upload blobs (deploy from a laptop)
# Built-in jobs have no project; their "script" says what runs them, for `jobs show`.
BUILTIN_SCRIPT = "builtin"
_SCHEDULES = {ROLLUP: HOUR_MS, RUN_HISTORY: 24 * HOUR_MS}
_TIMEOUTS = {ROLLUP: 6 * HOUR_MS, RUN_HISTORY: HOUR_MS}


def rollup(ctx: BuiltinContext) -> None:
    """Fold raw records older than ``MODELYARD_RAW_HORIZON`` into rollup buckets."""
    policy = RollupPolicy(raw_horizon_ms=int(settings.get("raw_horizon")))
    ctx.log.write(f"rollup with raw horizon {policy.raw_horizon_ms} ms\n")
    ctx.log.flush()
    report = ctx.store.rollup(policy)
    ctx.log.write(
        f"raw records rolled up: {report.raw_rolled}, buckets written: "
        f"{report.buckets_written}, buckets merged: {report.buckets_merged}\n"
    )


def prune_run_history(ctx: BuiltinContext) -> None:
    """Delete runs older than ``MODELYARD_RUN_HISTORY`` and their log and metrics files."""
    keep_ms = int(settings.get("run_history"))
    cutoff = ctx.now_ms - keep_ms
    pruned = ctx.registry.prune_runs(cutoff)
    files = 0
    for run in pruned:
        if run.log_path:
            for path in log_files(Path(run.log_path)):  # with its rotated copies
                if path.is_file():
                    path.unlink(missing_ok=True)
                    files += 1
        # Run metrics tracked through the SDK live next to the run's other files.
        folder = ctx.home / "runs" / run.id.rsplit("/", 1)[-1]
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
    ctx.log.write(
        f"runs older than {keep_ms} ms (before {cutoff}): {len(pruned)} deleted, "
        f"{files} log files removed\n"
    )
    prune_audit_log(ctx)
    prune_uploads(ctx)


def prune_uploads(ctx: BuiltinContext) -> None:
    """Delete project uploads older than a day and blobs no upload used for a day: a deploy
    uses its upload at once, and a blob pruned too early is only sent again."""
    cutoff = ctx.now_ms - UPLOAD_KEEP_MS
    uploads, blobs = ctx.registry.uploads.prune(cutoff)
    ctx.log.write(f"uploads older than a day: {uploads} deleted, {blobs} unused blobs deleted\n")


def prune_audit_log(ctx: BuiltinContext) -> None:
    """Delete audit log entries older than ``MODELYARD_AUDIT_RETENTION``."""
    keep_ms = int(settings.get("audit_retention"))
    cutoff = ctx.now_ms - keep_ms
    deleted = ctx.registry.audit.prune(cutoff)
    ctx.log.write(f"audit entries older than {keep_ms} ms (before {cutoff}): {deleted} deleted\n")


BUILTINS: dict[str, BuiltinFn] = {ROLLUP: rollup, RUN_HISTORY: prune_run_history}


def ensure_builtin_jobs(registry: Registry, home: Path) -> list[Job]:
    """Create the built-in jobs that do not exist yet (idempotent; two servers may race)."""
    jobs = []
    for name, every_ms in _SCHEDULES.items():
        try:
            jobs.append(registry.get_job(name))
            continue
        except NotFound:
            pass
        try:
            jobs.append(
                registry.create_job(
                    JobSpec(
                        name=name,
                        project=str(Path(home).resolve()),
                        script=BUILTIN_SCRIPT,
                        every_ms=every_ms,
                        timeout_ms=_TIMEOUTS[name],
                        retries=0,
                        retry_backoff_ms=60_000,
                        env={},
                        overlap=Overlap.SKIP,
                        catch_up=CatchUp.LATEST,
                        notify=(),
                        notify_on=("failure",),
                    ),
                    builtin=True,
                )
            )
        except Exception:
            # Another server created it between our lookup and our insert: use theirs.
            jobs.append(registry.get_job(name))
    return jobs
