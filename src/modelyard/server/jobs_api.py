"""``/api/v1/jobs`` and ``/api/v1/runs``: define, change, pause, trigger and inspect jobs; read
runs, their metrics and logs; cancel runs.

Who may do what: changes need an ``admin`` key; ``user`` keys read jobs, runs and logs; a
``run`` key (a job run's own, scoped to that run) may read its own run and its log (and post the
run's metrics, in ``metrics_api``). Runs are named in paths by the uuid part of their id (the
``crn:modelyard:run/<uuid>`` form has a slash), the same uuid a run sees as
``MODELYARD_RUN_ID``.

Persistence and checks live in the registry (schedule, bounds, parent, cycle: a refused change
writes nothing); this module adds what needs the server's machine: the project folder must exist
and the script (or monitor spec) and requirements file must be files of it that its snapshot
keeps (runs execute in the snapshot, which applies .gitignore/.modelyardignore: a file the rules
leave out would pass here and fail every run), and webhooks are tried once so an unreachable
receiver comes back as a ``warnings`` entry instead of a failure. Every job in an answer
carries its next run time (``jobs.schedule.next_slot``) and its last run.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelyard.errors import Forbidden, InvalidInput, NotFound, Unavailable
from modelyard.ids import is_uuid
from modelyard.jobs.current import format_slot
from modelyard.jobs.notify import check_target, check_webhook
from modelyard.jobs.schedule import next_slot
from modelyard.registry import ApiKey, Job, Registry, Role, Run, RunState
from modelyard.registry._prefix import check_prefix
from modelyard.runtime.logs import read_log, run_log_path
from modelyard.server.auth import (
    Capability,
    check_unscoped,
    model_scope,
    requires,
    shown_env,
)
from modelyard.server.follow import LogFollows, follow_response
from modelyard.server.limits import check_path
from modelyard.server.models import check_project_dir
from modelyard.server.services import Services
from modelyard.serving.snapshot import ignore_reason

__all__ = ["JobIn", "JobPatch", "job_json", "router", "run_json", "visible_jobs"]

router = APIRouter(prefix="/api/v1", tags=["jobs"])
Admin = Annotated[ApiKey, Depends(requires(Capability.ADMIN))]
Reader = Annotated[ApiKey, Depends(requires(Capability.READ_MODELS))]
# Run keys have only the metrics capability; reading a run checks the key's scope itself.
RunReader = Annotated[ApiKey, Depends(requires(Capability.METRICS))]

_RUN_PREFIX = "crn:modelyard:run/"
_MAX_TAIL = 100_000
_RECENT_RUNS = 20


class _Fields(BaseModel):
    """Fields shared by creation and change; durations in milliseconds."""

    model_config = ConfigDict(extra="forbid", strict=True)

    project: str | None = Field(
        None, description="Absolute path of the project folder on the server's host."
    )
    script: str | None = Field(None, description="The script's path inside the project.")
    monitor: str | None = Field(
        None,
        description="Instead of script: a monitor spec (YAML) inside the project; the job runs "
        "'python -m modelyard.monitors run SPEC'.",
    )
    requirements: str | None = Field(
        None,
        description="A requirements file inside the project: runs use its environment (built "
        "once per distinct requirements and reused, as for model builds).",
    )
    args: list[str] | None = None
    cron: str | None = Field(None, description="Five cron fields, e.g. '*/5 * * * *'.")
    timezone: str | None = Field(None, description="IANA time zone of the cron (default UTC).")
    every_ms: int | None = None
    after: str | None = Field(None, description="Parent job: runs after each success of it.")
    manual: bool | None = None
    timeout_ms: int | None = None
    retries: int | None = None
    retry_backoff_ms: int | None = None
    env: dict[str, str] | None = None
    overlap: str | None = Field(None, description="skip (default), queue or allow")
    catch_up: str | None = Field(None, description="none, latest (default) or all")
    notify: list[str] | None = Field(None, description="Webhook URLs and e-mail addresses.")
    notify_on: list[str] | None = Field(
        None, description="Subset of success, failure, timeout, cancelled."
    )


class JobIn(_Fields):
    """``POST /api/v1/jobs``: a name, a project, a script (or a monitor spec) and exactly one
    schedule (cron, every_ms, after or manual)."""

    name: str


class JobPatch(_Fields):
    """``PATCH /api/v1/jobs/{name}``: only the fields given change; giving any schedule field
    replaces the whole schedule."""


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _parse(model: type[_Fields], body: Any) -> dict[str, Any]:
    """The body checked by ``model``; InvalidInput (400) naming the first bad field."""
    if not isinstance(body, dict):
        raise InvalidInput(f"the request body {body!r:.100} is not a JSON object; expected one")
    try:
        parsed = model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        accepted = ", ".join(sorted(model.model_fields))
        raise InvalidInput(
            f"{where}={first.get('input')!r:.200} is not accepted: {first.get('msg')} "
            f"(fields: {accepted})",
            argument=where,
        ) from None
    return {k: v for k, v in parsed.model_dump(exclude_unset=True).items()}


def _scheduler(services: Services) -> Any:
    scheduler = services.scheduler
    if scheduler is None:
        raise Unavailable(
            "this server runs without a scheduler (started with jobs disabled); start it with "
            "the scheduler to run jobs"
        )
    return scheduler


# -- JSON shapes -------------------------------------------------------------------------------
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
    registry: Registry, job: Job, key: ApiKey, now_ms: int | None = None
) -> dict[str, Any]:
    """A job as the API shows it, with its next run time and last run. The values of its env
    are shown to admin keys only (they may hold secrets the script needs)."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    schedule = job.schedule
    parent = None
    if schedule.after is not None:
        try:
            parent = registry.get_job(schedule.after).name
        except NotFound:
            parent = schedule.after
    upcoming = None if job.paused else next_slot(schedule, now)
    last = registry.list_runs(job=job.id, limit=1)
    env = shown_env(job.env, key)
    return {
        "id": job.id,
        "name": job.name,
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
        "overlap": job.overlap.value,
        "catch_up": job.catch_up.value,
        "notify": list(job.notify),
        "notify_on": list(job.notify_on),
        "paused": job.paused,
        "builtin": job.builtin,
        "created_ms": job.created_ms,
        "updated_ms": job.updated_ms,
        "next_run_ms": upcoming,
        "next_run_at": None if upcoming is None else format_slot(upcoming),
        "last_run": run_json(last[0], job.name) if last else None,
    }


# -- checks that need this machine -------------------------------------------------------------
def _check_file(project: str, value: str, argument: str) -> str:
    """``value`` must be a file inside the project now, and one its snapshot keeps (the runner
    checks the snapshot again at each run); otherwise bad input (400) naming the file and, for
    an ignored one, the ignore file and pattern, so nothing is written. Returns the path
    relative to the project."""
    root = check_project_dir(project)
    check_path(value, argument, f"a path inside the project, such as {_EXAMPLES[argument]!r}")
    if os.path.isabs(value):
        raise InvalidInput(
            f"{argument}={value!r} is absolute; expected a path inside the project, such as "
            f"{_EXAMPLES[argument]!r}",
            argument=argument,
        )
    try:
        full = (root / value).resolve()
        inside = full.is_relative_to(root.resolve()) and full.is_file()
    except OSError as exc:  # too long for this file system, a loop of links, no permission
        raise InvalidInput(
            f"{argument}={value!r:.200} cannot be read in the project {project!r} "
            f"({exc.strerror}); expected the path of an existing file relative to the project "
            "folder",
            argument=argument,
        ) from None
    if not inside:
        raise InvalidInput(
            f"{argument}={value!r} is not a file inside the project {project!r}; expected the "
            "path of an existing file relative to the project folder",
            argument=argument,
        )
    reason = ignore_reason(root, Path(os.path.normpath(value)).as_posix())
    if reason is not None:
        raise InvalidInput(
            f"{argument}={value!r} is left out of the project's snapshot by {reason}, and runs "
            "execute in the snapshot; accepted: a file the ignore rules keep (change the rule "
            "or move the file)",
            argument=argument,
            ignored_by=reason,
        )
    return value


_EXAMPLES = {"script": "monitor.py", "monitor": "monitor.yaml", "requirements": "requirements.txt"}


def _prepare(fields: dict[str, Any], current: Job | None) -> dict[str, Any]:
    """Fields for the registry, with the files they name checked on disk and against the
    snapshot's ignore rules: the script or monitor spec and the requirements file, whenever
    the project or one of them changes."""
    if fields.get("script") is not None and fields.get("monitor") is not None:
        raise InvalidInput(
            f"script={fields['script']!r} and monitor={fields['monitor']!r} were both given; a "
            "job runs either a script or a monitor spec",
            argument="monitor",
        )
    if not ({"project", "script", "monitor", "requirements"} & set(fields)):
        return fields
    project = fields.get("project") or (current.project if current else None)
    if project is None:
        raise InvalidInput(
            "project is missing; a job needs the absolute path of the project folder that "
            "holds its script or monitor spec",
            argument="project",
        )
    if fields.get("monitor") is not None:
        runs: tuple[str, str | None] = ("monitor", fields["monitor"])
    elif fields.get("script") is not None:
        runs = ("script", fields["script"])
    elif current is not None:
        runs = ("monitor", current.monitor) if current.monitor else ("script", current.script)
    else:
        runs = ("script", None)
    if runs[1] is None:
        raise InvalidInput(
            "script is missing; a job needs the script to run inside the project (or a "
            "monitor spec)",
            argument="script",
        )
    _check_file(project, runs[1], runs[0])
    requirements = fields.get("requirements", current.requirements if current else None)
    if requirements is not None:
        _check_file(project, requirements, "requirements")
    return fields


def _check_monitor(services: Services, fields: dict[str, Any], current: Job | None) -> list[str]:
    """The job's monitor spec, when it runs one and the project or spec changes, checked as a
    run would check it (``MonitorSpec.from_yaml`` and ``monitors.run.check_spec``) against this
    server's store: a bad field, an unknown model or a key the deployment never recorded is
    refused now with the run's message, not at every run. Returns the run's warnings (a
    deployment with no records yet, a label not seen yet)."""
    if fields.get("script") is not None:
        return []
    monitor = fields.get("monitor") or (current.monitor if current is not None else None)
    if monitor is None or not ({"project", "monitor"} & set(fields)):
        return []
    from modelyard.errors import ModelyardError
    from modelyard.monitors.access import EmbeddedAccess
    from modelyard.monitors.run import check_spec
    from modelyard.monitors.spec import MonitorSpec

    project = fields.get("project") or (current.project if current is not None else "")
    found: list[str] = []
    try:
        spec = MonitorSpec.from_yaml(Path(project) / monitor)
        check_spec(spec, EmbeddedAccess(services.store), found.append)
    except ModelyardError as exc:
        details = {**exc.details, "argument": "monitor"}
        raise InvalidInput(f"monitor={monitor!r}: {exc.message}", **details) from None
    return [f"monitor={monitor!r}: {w}" for w in found]


def _warnings(notify: list[str] | None) -> list[str]:
    """One warning per webhook that does not answer now (the job is kept all the same)."""
    found = []
    for target in notify or ():
        if check_target(target) == "webhook":
            problem = check_webhook(target)
            if problem is not None:
                found.append(problem)
    return found


def _run_id(registry: Registry, key: ApiKey, value: str) -> str:
    """``crn:modelyard:run/<uuid>`` from the uuid, or an unambiguous prefix of it, in a path.

    Prefixes are resolved here, not in the CLI, so every client gets them and a run key's
    lookups stay within its own run: a prefix never tells a run key which other runs exist.
    """
    if key.role == Role.RUN and not is_uuid(value):
        own = key.scope or ""
        prefix = check_prefix(value, "run", "'modelyard jobs logs 8f5c3d1a'")
        if own.removeprefix(_RUN_PREFIX).startswith(prefix):
            return own
        raise Forbidden(
            f"API key {key.id!r} is a run key and may read only its own run, not {value!r}; "
            "use a user or admin key",
            key_id=key.id,
        )
    return registry.resolve_run(value)


def _readable_run(registry: Registry, key: ApiKey, value: str) -> Run:
    check_unscoped(key, "jobs and runs")  # before the lookup: not found tells nothing either
    run = registry.get_run(_run_id(registry, key, value))
    if key.role == Role.RUN and key.scope != run.id:
        raise Forbidden(
            f"API key {key.id!r} is a run key and may read only its own run, not {run.id!r}; "
            "use a user or admin key",
            key_id=key.id,
        )
    return run


def _job_name(registry: Registry, run: Run) -> str | None:
    try:
        return registry.get_job(run.job_id).name
    except NotFound:
        return None


# -- jobs --------------------------------------------------------------------------------------
_JOB_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": JobIn.model_json_schema()}},
    }
}
_PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": JobPatch.model_json_schema()}},
    }
}


@router.post("/jobs", status_code=201, summary="Define a job", openapi_extra=_JOB_BODY)
async def create_job(
    request: Request, key: Admin, body: Annotated[Any, Body(include_in_schema=False)] = None
) -> JSONResponse:
    services = _services(request)
    fields = _parse(JobIn, body)
    name = fields.pop("name")

    def create() -> tuple[dict[str, Any], list[str]]:
        prepared = _prepare(fields, None)
        if "project" not in prepared:
            raise InvalidInput(
                "project is missing; give the project folder's absolute path", argument="project"
            )
        if prepared.get("timezone") is None:
            prepared.pop("timezone", None)
        given = {k: v for k, v in prepared.items() if v is not None}  # None: the default
        checked = _check_monitor(services, given, None)
        project, script = given.pop("project"), given.pop("script", None)
        job = services.registry.create_job(name, project, script, **given)
        warnings = checked + _warnings(list(job.notify))
        return job_json(services.registry, job, key), warnings

    job, warnings = await asyncio.to_thread(create)
    return JSONResponse({"job": job, "warnings": warnings}, status_code=201)


def visible_jobs(registry: Registry, key: ApiKey) -> list[dict[str, Any]]:
    """The jobs ``key`` may see (``GET /api/v1/jobs`` and the dashboard's jobs page): none for a
    key limited to one model, since a job belongs to no model (its script may read or write any
    model's data). Blocking (registry reads)."""
    if model_scope(key) is not None:
        return []
    now = time.time_ns() // 1_000_000
    return [job_json(registry, job, key, now) for job in registry.list_jobs()]


@router.get("/jobs", summary="List jobs with their next run time and last run")
async def list_jobs(request: Request, key: Reader) -> dict[str, Any]:
    registry = _services(request).registry
    return {"jobs": await asyncio.to_thread(visible_jobs, registry, key)}


@router.get("/jobs/{name}", summary="A job with its next run time and last run")
async def show_job(name: str, request: Request, key: Reader) -> dict[str, Any]:
    check_unscoped(key, "jobs")
    registry = _services(request).registry
    return await asyncio.to_thread(lambda: job_json(registry, registry.get_job(name), key))


@router.patch("/jobs/{name}", summary="Change a job", openapi_extra=_PATCH_BODY)
async def update_job(
    name: str,
    request: Request,
    key: Admin,
    body: Annotated[Any, Body(include_in_schema=False)] = None,
) -> dict[str, Any]:
    services = _services(request)
    fields = _parse(JobPatch, body)

    def update() -> tuple[dict[str, Any], list[str]]:
        current = services.registry.get_job(name)
        prepared = _prepare(fields, current)
        if "timezone" in prepared and prepared["timezone"] is None:
            prepared["timezone"] = "UTC"
        checked = _check_monitor(services, prepared, current)
        job = services.registry.update_job(current.name, **prepared)
        warnings = checked + _warnings(prepared.get("notify"))
        return job_json(services.registry, job, key), warnings

    job, warnings = await asyncio.to_thread(update)
    return {"job": job, "warnings": warnings}


@router.delete("/jobs/{name}", summary="Delete a job with its runs")
async def delete_job(name: str, request: Request, key: Admin) -> dict[str, Any]:
    registry = _services(request).registry

    def delete() -> str:
        job = registry.get_job(name)
        registry.delete_job(job.id)
        return job.name

    return {"deleted": await asyncio.to_thread(delete)}


@router.post("/jobs/{name}/pause", summary="Pause a job (no new runs start)")
async def pause_job(name: str, request: Request, key: Admin) -> dict[str, Any]:
    registry = _services(request).registry
    job = await asyncio.to_thread(registry.set_paused, name, True)
    return job_json(registry, job, key)


@router.post("/jobs/{name}/resume", summary="Resume a paused job")
async def resume_job(name: str, request: Request, key: Admin) -> dict[str, Any]:
    registry = _services(request).registry
    job = await asyncio.to_thread(registry.set_paused, name, False)
    return job_json(registry, job, key)


@router.post("/jobs/{name}/run", status_code=202, summary="Run a job now")
async def run_job(name: str, request: Request, key: Admin) -> JSONResponse:
    services = _services(request)
    scheduler = _scheduler(services)
    run = await asyncio.to_thread(scheduler.trigger, name)
    job = await asyncio.to_thread(services.registry.get_job, run.job_id)
    return JSONResponse(run_json(run, job.name), status_code=202)


@router.get("/jobs/{name}/runs", summary="A job's runs, newest first")
async def job_runs(
    name: str,
    request: Request,
    key: Reader,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    state: Annotated[list[str] | None, Query(description="only runs in these states")] = None,
) -> dict[str, Any]:
    check_unscoped(key, "jobs and runs")
    registry = _services(request).registry

    def listed() -> list[dict[str, Any]]:
        job = registry.get_job(name)
        runs = registry.list_runs(job=job.id, states=state, limit=limit)
        return [run_json(run, job.name) for run in runs]

    return {"runs": await asyncio.to_thread(listed)}


# -- runs --------------------------------------------------------------------------------------
@router.get("/runs/{run_id}", summary="A run with the metrics it tracked")
async def show_run(run_id: str, request: Request, key: RunReader) -> dict[str, Any]:
    registry = _services(request).registry

    def shown() -> dict[str, Any]:
        run = _readable_run(registry, key, run_id)
        body = run_json(run, _job_name(registry, run))
        body["metrics"] = [
            {"key": m.key, "value": m.value, "tracked_ms": m.tracked_ms}
            for m in registry.run_metrics(run.id)
        ]
        return body

    return await asyncio.to_thread(shown)


@router.get(
    "/runs/{run_id}/logs",
    summary="A run's output (stdout and stderr) as text lines",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def run_logs(
    run_id: str,
    request: Request,
    key: RunReader,
    tail: Annotated[int | None, Query(ge=0, le=_MAX_TAIL, description="last N lines")] = None,
    follow: bool = False,
) -> StreamingResponse:
    services = _services(request)
    registry = services.registry
    run = await asyncio.to_thread(_readable_run, registry, key, run_id)
    home = services.first_start.home
    path = run_log_path(home, run.id.rsplit("/", 1)[-1])  # the runtime's checks on the name

    def finished() -> bool:
        try:
            return registry.get_run(run.id).state.finished
        except NotFound:
            return True

    if not path.is_file() and not (run.state == RunState.QUEUED and follow):
        raise NotFound(
            f"run {run.id} has no log yet (state {run.state.value}); a log appears when the "
            "run starts",
            run=run.id,
        )
    if follow:  # a stream of its own: ends with its client, bounded per key and in all

        def open_lines(stop: Callable[[], bool]) -> Iterator[str]:
            def done() -> bool:
                return stop() or finished()

            if not path.is_file():
                return _after_start(path, tail, done)
            return read_log(path, tail, True, 0.2, done)

        follows: LogFollows = request.app.state.log_follows
        return await follow_response(follows, key.id, open_lines)
    lines = await asyncio.to_thread(lambda: list(read_log(path, tail)))
    return StreamingResponse(_newlines(lines), media_type="text/plain; charset=utf-8")


def _after_start(path: Path, tail: int | None, finished: Callable[[], bool]) -> Iterator[str]:
    """Follow a queued run: wait for its log to appear (or the run to end), then follow it."""
    while not path.is_file():
        if finished():
            return
        time.sleep(0.2)
    yield from read_log(path, tail, True, 0.2, finished)


async def _newlines(lines: list[str]) -> AsyncIterator[bytes]:
    """Every line at once: a list needs no thread (a sync iterator would take one per line)."""
    yield b"".join((line + "\n").encode() for line in lines)


@router.post("/runs/{run_id}/cancel", summary="Cancel a queued or running run")
async def cancel_run(run_id: str, request: Request, key: Admin) -> dict[str, Any]:
    services = _services(request)
    scheduler = _scheduler(services)
    full = await asyncio.to_thread(_run_id, services.registry, key, run_id)
    run = await asyncio.to_thread(scheduler.cancel, full)
    return run_json(run, await asyncio.to_thread(_job_name, services.registry, run))
