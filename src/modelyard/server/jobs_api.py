"""``/api/v1/jobs`` and ``/api/v1/runs``: define, change, pause, trigger and inspect jobs; read
runs, their metrics and logs; cancel runs.

Who may do what, in the job's project (``?project=`` on create: where to create it, default the
``default`` project; on the list: an optional filter): viewers read jobs, runs and logs;
operators also run jobs and cancel runs; contributors also create, change, pause, resume and
delete jobs. A job's ``project`` field is a folder on the server's machine: naming one (on create,
or changing it) needs a server administrator, since it is arbitrary code from anywhere on that
machine (``check_server_folder``); a folder uploaded from the client (the body's ``upload``) is what
everyone else sends. A ``run`` key (a job run's own, scoped to that run) may read its own run
and its log (and post the run's metrics, in ``metrics_api``); any other run is "not known" to
it. A job or run in a project the caller has no role in answers 404 as an unknown one. Runs are
named in paths by the uuid part of their id (the ``crn:modelyard:run/<uuid>`` form has a
slash), the same uuid a run sees as ``MODELYARD_RUN_ID``.

A body is read into a ``JobSpec`` (``modelyard.specs``), which checks every field once, as for
the CLI and the registry; the registry adds the parent and cycle checks (a refused change writes
nothing); this module adds what needs the server's machine: the project folder must exist
and the script (or monitor spec) and requirements file must be files of it that its snapshot
keeps (runs execute in the snapshot, which applies .gitignore/.modelyardignore: a file the rules
leave out would pass here and fail every run), and webhooks are tried once so an unreachable
receiver comes back as a ``warnings`` entry instead of a failure. Every job in an answer
carries its next run time (``specs.schedule.next_slot``) and its last run (the JSON shapes are
``modelyard.views.jobs``, which the dashboard shows too).

Routes are plain ``def`` functions (FastAPI's worker threads: the registry blocks), except the
log route, which streams a follow and sends its reads ``off_loop``.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from modelyard.builds.snapshot import ignore_reason
from modelyard.errors import Forbidden, InvalidInput, ModelyardError, NotFound, Unavailable
from modelyard.jobs.notify import check_target, check_webhook
from modelyard.registry import Registry, Run, RunState
from modelyard.runtime.logs import read_log, run_log_path
from modelyard.server.follow import LogFollows, follow_response
from modelyard.server.limits import check_path
from modelyard.server.models import check_project_dir
from modelyard.server.uploads_api import job_folder
from modelyard.specs.job import JobSpec
from modelyard.views.jobs import job_json, run_json, visible_jobs
from modelyard.views.owners import Owners
from modelyard.web.access import Caller, On, Right, not_found, requires
from modelyard.web.offloop import off_loop
from modelyard.web.services import Services, ServicesDep

if TYPE_CHECKING:
    from modelyard.specs.monitor import MonitorSpec

__all__ = ["check_project_file", "check_server_folder", "router", "scheduler_of"]

router = APIRouter(prefix="/api/v1", tags=["jobs"])
Lister = Annotated[Caller, Depends(requires(Right.READ))]  # filtered to what the caller sees
Creator = Annotated[Caller, Depends(requires(Right.CHANGE, On.QUERY_PROJECT))]
JobReader = Annotated[Caller, Depends(requires(Right.READ, On.JOB))]
JobChanger = Annotated[Caller, Depends(requires(Right.CHANGE, On.JOB))]
JobOperator = Annotated[Caller, Depends(requires(Right.OPERATE, On.JOB))]
# A job run's own key reads its own run (the rule refuses any other run as unknown).
RunReader = Annotated[Caller, Depends(requires(Right.READ, On.RUN, run_keys=True))]
RunOperator = Annotated[Caller, Depends(requires(Right.OPERATE, On.RUN))]

_MAX_TAIL = 100_000
_RECENT_RUNS = 20


def _body(body: Any) -> dict[str, Any]:
    """The request body as a JSON object; InvalidInput (400) otherwise."""
    if not isinstance(body, dict):
        raise InvalidInput(f"the request body {body!r:.100} is not a JSON object; expected one")
    return body


def scheduler_of(services: Services, what: str = "jobs") -> Any:
    """The server's scheduler, which carries out job runs and experiments; 503 saying so when
    the server was started without it."""
    scheduler = services.scheduler
    if scheduler is None:
        raise Unavailable(
            "this server runs without a scheduler (started with jobs disabled); start it with "
            f"the scheduler to run {what}"
        )
    return scheduler


# -- checks that need this machine -------------------------------------------------------------
def check_project_file(project: str, value: str, argument: str) -> str:
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


_FILES = {"project", "script", "monitor", "requirements"}


def _check_files(spec: JobSpec, changed: Iterable[str]) -> None:
    """The files ``spec`` names, checked on disk and against the snapshot's ignore rules (the
    script or monitor spec and the requirements file), whenever the project or one of them is
    among the ``changed`` fields. The spec checked every field already."""
    if not _FILES & set(changed):
        return
    if spec.monitor is not None:
        check_project_file(spec.project, spec.monitor, "monitor")
    elif spec.script is not None:
        check_project_file(spec.project, spec.script, "script")
    if spec.requirements is not None:
        check_project_file(spec.project, spec.requirements, "requirements")


def _check_monitor(
    services: Services,
    caller: Caller,
    spec: JobSpec,
    changed: Iterable[str],
    project_crn: str | None,
) -> list[str]:
    """The job's monitor spec, when it runs one and the project or spec changes, checked as a
    run would check it (``MonitorSpec.from_yaml`` and ``monitors.run.check_spec``) against this
    server's store: a bad field, an unknown model or a key the deployment never recorded is
    refused now with the run's message, not at every run. The watched model must be one of the
    job's project (``project_crn``), the only models its runs' key reaches. Returns the run's
    warnings (a deployment with no records yet, a label not seen yet)."""
    monitor = spec.monitor
    if monitor is None or not ({"project", "monitor"} & set(changed)):
        return []
    from modelyard.monitors.access import EmbeddedAccess
    from modelyard.monitors.run import check_spec
    from modelyard.specs.monitor import MonitorSpec

    found: list[str] = []
    try:
        checked = MonitorSpec.from_yaml(Path(spec.project) / monitor)
    except ModelyardError as exc:
        raise _monitor_error(monitor, exc) from None
    _check_watched(services, caller, monitor, checked, project_crn)
    try:
        check_spec(checked, EmbeddedAccess(services.store), found.append)
    except ModelyardError as exc:
        raise _monitor_error(monitor, exc) from None
    return [f"monitor={monitor!r}: {w}" for w in found]


def _monitor_error(monitor: str, exc: ModelyardError) -> InvalidInput:
    details = {**exc.details, "argument": "monitor"}
    return InvalidInput(f"monitor={monitor!r}: {exc.message}", **details)


def _check_watched(
    services: Services,
    caller: Caller,
    monitor: str,
    checked: MonitorSpec,
    project_crn: str | None,
) -> None:
    """The model a monitor spec watches: one the caller may read (404 as unknown otherwise),
    and one of the job's own project, since a run's key reaches only that project's models."""
    owners = Owners(services)
    if checked.model is not None:
        found = owners.check_model(caller, Right.READ, checked.model)
        model_crn = found.crn if found is not None else None
    elif checked.deployment is not None:
        owners.check_deployment(caller, Right.READ, checked.deployment)
        model_crn = owners.deployment_model(checked.deployment)
    else:
        return  # the spec checks that one of the two is given
    model = owners.model(model_crn) if model_crn is not None else None
    if model is None or project_crn is None or model.project_crn == project_crn:
        return  # unknown to a server administrator: check_spec names it
    raise InvalidInput(
        f"monitor={monitor!r} watches model {model.name!r}, which is in another project than "
        "the job, and a job's runs reach only the models of the job's own project; accepted: a "
        "monitor of a model of this project, or create the job in the model's project "
        "(?project=)",
        argument="monitor",
    )


def _warnings(notify: list[str] | None) -> list[str]:
    """One warning per webhook that does not answer now (the job is kept all the same)."""
    found = []
    for target in notify or ():
        if check_target(target) == "webhook":
            problem = check_webhook(target)
            if problem is not None:
                found.append(problem)
    return found


def _run(registry: Registry, value: str) -> Run:
    """The run a path names (its uuid or an unambiguous prefix): the rule (``On.RUN``) has
    resolved it once already and checked the caller's right on its job's project, and a run
    key's that it is its own run."""
    return registry.get_run(registry.resolve_run(value))


def _uploaded(services: Services, caller: Caller, body: dict[str, Any]) -> bool:
    """Replace the body's ``upload`` (an id from ``POST /api/v1/uploads``) by ``project``, the
    folder the server keeps for jobs made from that upload (``uploads_api.job_folder``); True
    when it did. Exactly one of ``project`` and ``upload``."""
    upload = body.pop("upload", None)
    if upload is None:
        return False
    if body.get("project") is not None:
        raise InvalidInput(
            f"project={body['project']!r} and upload={upload!r}: give exactly one, the id of an "
            "upload of the folder (what the CLI sends) or, for server administrators, a folder "
            "on the server's machine",
            argument="upload",
        )
    body["project"] = str(job_folder(services, caller, str(upload)))
    return True


def check_server_folder(caller: Caller, folder: str) -> None:
    """A job's ``project`` given as a path is a folder on the server's machine, and its runs
    execute whatever code sits there: only a server administrator may name one, as for deploying
    from a folder (issue 14). A job made from an upload (``_uploaded``) gets a folder the server
    chose, and does not come through here."""
    if not caller.server_admin:
        raise Forbidden(
            f"{caller.who} is not a server administrator; a job's project folder "
            f"({folder!r}) is a folder on the server's machine, which only a server "
            "administrator's admin key may name; accepted: upload the folder instead (the body's "
            "'upload', which 'modelyard jobs create --project-dir DIR' sends)",
            right=Right.SERVER.value,
            argument="project",
        )


def _check_parent(registry: Registry, caller: Caller, after: str | None) -> None:
    """A job runs after a parent job the caller may read: one in a project they have no role in
    answers as an unknown one, so ``after`` never tells them which jobs exist."""
    if after is None:
        return
    try:
        parent = registry.get_job(after)
    except NotFound:
        if caller.server_admin:
            return  # the registry's own answer names the unknown job
        raise not_found("job", after) from None
    caller.check(Right.READ, parent.project_crn, f"job {after!r}")


def _job_name(registry: Registry, run: Run) -> str | None:
    try:
        return registry.get_job(run.job_id).name
    except NotFound:
        return None


# -- jobs --------------------------------------------------------------------------------------
_JOB_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": JobSpec.body_schema()}},
    }
}
_PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": JobSpec.body_schema(partial=True, leave_out=("name",))}
        },
    }
}


@router.post("/jobs", status_code=201, summary="Define a job", openapi_extra=_JOB_BODY)
def create_job(
    services: ServicesDep,
    caller: Creator,
    body: Annotated[Any, Body(include_in_schema=False)] = None,
    project: Annotated[
        str | None, Query(description="Modelyard project (default: default)")
    ] = None,
) -> JSONResponse:
    """``project`` (the query) is read by the rule: the Modelyard project to create the job in;
    the body's ``project`` is the job's folder."""
    given = {k: v for k, v in _body(body).items() if v is not None}  # None: the default
    uploaded = _uploaded(services, caller, given)  # the folder sent from the client, if any
    spec = JobSpec.parse(given)  # every field checked; InvalidInput (400) naming the bad one
    if not uploaded:
        check_server_folder(caller, spec.project)
    _check_parent(services.registry, caller, spec.after)
    _check_files(spec, given)
    checked = _check_monitor(services, caller, spec, given, caller.project_crn)
    job = services.registry.create_job(spec, project_crn=caller.project_crn)
    warnings = checked + _warnings(list(job.notify))
    shown = job_json(services.registry, job, caller)
    return JSONResponse({"job": shown, "warnings": warnings}, status_code=201)


@router.get("/jobs", summary="List jobs with their next run time and last run")
def list_jobs(
    services: ServicesDep,
    caller: Lister,
    project: Annotated[str | None, Query(description="only this project's jobs")] = None,
) -> dict[str, Any]:
    project_crn = Owners(services).project_filter(caller, project)
    return {"jobs": visible_jobs(services.registry, caller, project_crn)}


@router.get("/jobs/{name}", summary="A job with its next run time and last run")
def show_job(name: str, services: ServicesDep, caller: JobReader) -> dict[str, Any]:
    return job_json(services.registry, services.registry.get_job(name), caller)


@router.patch("/jobs/{name}", summary="Change a job", openapi_extra=_PATCH_BODY)
def update_job(
    name: str,
    services: ServicesDep,
    caller: JobChanger,
    body: Annotated[Any, Body(include_in_schema=False)] = None,
) -> dict[str, Any]:
    changes = dict(_body(body))
    if "timezone" in changes and changes["timezone"] is None:
        changes["timezone"] = "UTC"
    uploaded = _uploaded(services, caller, changes)
    current = services.registry.get_job(name)
    spec = current.spec.changed(changes)  # the job as it would be, checked as a whole
    if "project" in changes and spec.project != current.project and not uploaded:
        check_server_folder(caller, spec.project)
    if "after" in changes:
        _check_parent(services.registry, caller, spec.after)
    _check_files(spec, changes)
    checked = _check_monitor(services, caller, spec, changes, current.project_crn)
    job = services.registry.update_job(current.name, **changes)
    warnings = checked + _warnings(changes.get("notify"))
    return {"job": job_json(services.registry, job, caller), "warnings": warnings}


@router.delete("/jobs/{name}", summary="Delete a job with its runs")
def delete_job(name: str, services: ServicesDep, caller: JobChanger) -> dict[str, Any]:
    job = services.registry.get_job(name)
    services.registry.delete_job(job.id)
    return {"deleted": job.name}


@router.post("/jobs/{name}/pause", summary="Pause a job (no new runs start)")
def pause_job(name: str, services: ServicesDep, caller: JobChanger) -> dict[str, Any]:
    registry = services.registry
    job = registry.set_paused(name, True)
    return job_json(registry, job, caller)


@router.post("/jobs/{name}/resume", summary="Resume a paused job")
def resume_job(name: str, services: ServicesDep, caller: JobChanger) -> dict[str, Any]:
    registry = services.registry
    job = registry.set_paused(name, False)
    return job_json(registry, job, caller)


@router.post("/jobs/{name}/run", status_code=202, summary="Run a job now")
def run_job(name: str, services: ServicesDep, caller: JobOperator) -> JSONResponse:
    scheduler = scheduler_of(services)
    run = scheduler.trigger(name)
    job = services.registry.get_job(run.job_id)
    return JSONResponse(run_json(run, job.name), status_code=202)


@router.get("/jobs/{name}/runs", summary="A job's runs, newest first")
def job_runs(
    name: str,
    services: ServicesDep,
    caller: JobReader,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    state: Annotated[list[str] | None, Query(description="only runs in these states")] = None,
) -> dict[str, Any]:
    job = services.registry.get_job(name)
    runs = services.registry.list_runs(job=job.id, states=state, limit=limit)
    return {"runs": [run_json(run, job.name) for run in runs]}


# -- runs --------------------------------------------------------------------------------------
@router.get("/runs/{run_id}", summary="A run with the metrics it tracked")
def show_run(run_id: str, services: ServicesDep, caller: RunReader) -> dict[str, Any]:
    registry = services.registry
    run = _run(registry, run_id)
    body = run_json(run, _job_name(registry, run))
    body["metrics"] = [
        {"key": m.key, "value": m.value, "tracked_ms": m.tracked_ms}
        for m in registry.run_metrics(run.id)
    ]
    return body


@router.get(
    "/runs/{run_id}/logs",
    summary="A run's output (stdout and stderr) as text lines",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def run_logs(  # async: a follow streams; registry and file reads run off_loop
    run_id: str,
    request: Request,
    services: ServicesDep,
    caller: RunReader,
    tail: Annotated[int | None, Query(ge=0, le=_MAX_TAIL, description="last N lines")] = None,
    follow: bool = False,
) -> StreamingResponse:
    registry = services.registry
    run = await off_loop(_run, registry, run_id)
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
        holder = caller.key.id if caller.key is not None else caller.actor
        return await follow_response(follows, holder, open_lines)
    lines = await off_loop(lambda: list(read_log(path, tail)))
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
def cancel_run(run_id: str, services: ServicesDep, caller: RunOperator) -> dict[str, Any]:
    scheduler = scheduler_of(services)
    full = services.registry.resolve_run(run_id)
    run = scheduler.cancel(full)
    return run_json(run, _job_name(services.registry, run))
