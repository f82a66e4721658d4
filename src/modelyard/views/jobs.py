"""Jobs and runs as the API shows them (``GET /api/v1/jobs``, ``/jobs/{name}``, ``/runs/...``)
and the jobs a caller may see (the same list the dashboard's jobs page shows): those of the
projects the caller has a role in.

Blocking (registry reads): routes call these on a worker thread.
"""

from __future__ import annotations

from typing import Any

from modelyard import clock
from modelyard.errors import NotFound
from modelyard.jobs.current import format_slot
from modelyard.registry import Job, Registry, Run
from modelyard.specs.schedule import next_slot
from modelyard.web.access import Caller
from modelyard.web.auth import shown_env

__all__ = ["job_json", "run_json", "visible_jobs"]


def run_json(run: Run, job_name: str | None = None) -> dict[str, Any]:
    """A run as the API shows it; ``uuid`` is what run paths take."""
    return {
        "id": run.id,
        "uuid": run.id.rsplit("/", 1)[-1],
        "job_id": run.job_id,
        "job": job_name,
        "slot_ms": run.slot_ms,
        "scheduled_at": format_slot(run.slot_ms),
        "attempt": run.attempt,
        "trigger": run.trigger.value,
        "state": run.state.value,
        "exit_code": run.exit_code,
        "queued_ms": run.queued_ms,
        "started_ms": run.started_ms,
        "ended_ms": run.ended_ms,
        "duration_ms": run.duration_ms,
        "parent_run_id": run.parent_run_id,
    }


def job_json(
    registry: Registry, job: Job, caller: Caller, now_ms: int | None = None
) -> dict[str, Any]:
    """A job as the API shows it, with its next run time and last run. The values of its env
    are shown only to callers who may change the job (they may hold secrets the script needs);
    everyone else sees the names."""
    now = clock.now_ms() if now_ms is None else now_ms
    schedule = job.schedule
    parent = None
    if schedule.after is not None:
        try:
            parent = registry.get_job(schedule.after).name
        except NotFound:
            parent = schedule.after
    upcoming = None if job.paused else next_slot(schedule, now)
    last = registry.list_runs(job=job.id, limit=1)
    env = shown_env(job.env, caller, job.project_crn)
    return {
        "id": job.id,
        "name": job.name,
        "project_crn": job.project_crn,
        "project": job.project,
        "script": job.script,
        "monitor": job.monitor,
        "requirements": job.requirements,
        "args": list(job.args),
        "schedule": schedule.kind,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "every_ms": schedule.every_ms,
        "after": parent,
        "manual": schedule.manual,
        "timeout_ms": job.timeout_ms,
        "retries": job.retries,
        "retry_backoff_ms": job.retry_backoff_ms,
        "env": env,
        "secrets": list(job.secrets),  # names only: values never leave the server
        "overlap": job.overlap.value,
        "catch_up": job.catch_up.value,
        "notify": list(job.notify),
        "notify_on": list(job.notify_on),
        # cpus, memory, gpus, accelerator each run asks for (docs/resources.md); {}: none
        "resources": {k: v for k, v in job.resources.items() if k != "created_by"},
        "paused": job.paused,
        "builtin": job.builtin,
        "created_ms": job.created_ms,
        "updated_ms": job.updated_ms,
        "next_run_ms": upcoming,
        "next_run_at": None if upcoming is None else format_slot(upcoming),
        "last_run": run_json(last[0], job.name) if last else None,
    }


def visible_jobs(
    registry: Registry, caller: Caller, project_crn: str | None = None
) -> list[dict[str, Any]]:
    """The jobs ``caller`` may see (``GET /api/v1/jobs`` and the dashboard's jobs page), of
    ``project_crn`` only when given: those of the projects the caller has a role in, and none
    for a key limited to one model, since a job belongs to no model (its script may read or
    write any model's data of its project). Blocking (registry reads)."""
    if caller.model_scope is not None:
        return []
    visible = caller.visible_projects()
    now = clock.now_ms()
    return [
        job_json(registry, job, caller, now)
        for job in registry.list_jobs(project_crn)
        if visible is None or job.project_crn in visible
    ]
