"""``/api/v1/experiments``: start experiment runs, list, show, compare and cancel them, read
their logs and the files they kept; and ``POST /api/v1/runs/{run_id}/files``, where a running
experiment's ``track_file`` names a file to keep, and ``PUT /api/v1/runs/{run_id}/files/{path}``,
where the SDK sends the bytes of those files when the script ends.

Who may do what, in the experiment's project: viewers read experiments, logs and files;
operators also cancel runs; contributors also start and delete them (``?project=`` on start:
where, default the ``default`` project). The project folder comes as ``upload`` (an id from ``POST
/api/v1/uploads``, what the CLI sends) or, for server administrators only, as ``project`` (a
folder on the server's machine), as for jobs. An experiment is a one-off job of kind
``experiment`` carried out by the job runner (``registry.experiments``), hidden from the jobs
API. ``{run_id}`` is the run's uuid or an unambiguous prefix of it (4 characters or more); a run
in a project the caller has no role in answers 404 as an unknown one, a job's run (not an
experiment) 404 saying so. The JSON shapes are ``modelyard.views.experiments`` (camelCase; the
dashboard shows the same).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.requests import ClientDisconnect

from modelyard.errors import Conflict, InvalidInput, PayloadTooLarge
from modelyard.ids import is_uuid
from modelyard.registry import (
    MAX_RUN_FILE_BYTES,
    RUN_SCOPE_PREFIX,
    RunState,
    check_run_file_path,
)
from modelyard.runtime.logs import run_log_path
from modelyard.server import jobs_api
from modelyard.server.uploads_api import job_folder
from modelyard.specs.experiment import ExperimentSpec
from modelyard.views.experiments import (
    compare_json,
    experiment_json,
    file_json,
    project_names,
    visible_experiments,
)
from modelyard.views.owners import Owners
from modelyard.web.access import Caller, On, Right, requires
from modelyard.web.offloop import off_loop
from modelyard.web.services import Services, ServicesDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["experiments"])
Lister = Annotated[Caller, Depends(requires(Right.READ))]  # filtered to what the caller sees
Creator = Annotated[Caller, Depends(requires(Right.CHANGE, On.QUERY_PROJECT))]
Reader = Annotated[Caller, Depends(requires(Right.READ, On.RUN))]
Operator = Annotated[Caller, Depends(requires(Right.OPERATE, On.RUN))]
Changer = Annotated[Caller, Depends(requires(Right.CHANGE, On.RUN))]
# A running experiment's own key names the files it keeps (like its metrics, in metrics_api).
RunWriter = Annotated[Caller, Depends(requires(Right.OPERATE, On.RUN, run_keys=True))]

_MAX_TAIL = 100_000
_RAW_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": ExperimentSpec.body_schema()}},
    }
}


class RunFileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str


def _spec(services: Services, caller: Caller, body: Any) -> ExperimentSpec:
    """The body as a spec whose ``project`` is a folder of this machine: the upload's folder
    (``upload``), or a folder a server administrator names; its script and requirements files
    checked there (and against the snapshot's ignore rules), so nothing is recorded for a run
    that could never start."""
    if not isinstance(body, dict):
        raise InvalidInput(f"the request body {body!r:.100} is not a JSON object; expected one")
    given = {k: v for k, v in body.items() if v is not None}
    spec = ExperimentSpec.parse(given)  # every field checked first
    if (spec.upload is None) == (spec.project is None):
        raise InvalidInput(
            f"project={spec.project!r} and upload={spec.upload!r}: give exactly one, the id of "
            "an upload of the project folder (what 'modelyard experiments run' sends) or, for "
            "server administrators, a folder on the server's machine",
            argument="upload",
        )
    # A GPU request this machine could never honour would let a run wait forever (or train on
    # the CPU): refused before anything is recorded. The local runtime checks its discovered
    # GPUs (busy ones only make the run wait); Ray places runs on nodes that have them.
    gpus = getattr(getattr(services.runtime, "resources", None), "gpus", None)
    if gpus is not None and spec.gpus:
        gpus.check("the experiment run", spec.gpus, spec.accelerator)
    if spec.upload is not None:
        folder = str(job_folder(services, caller, spec.upload))
        spec = spec.model_copy(update={"project": folder, "upload": None})
    else:
        jobs_api.check_server_folder(caller, spec.project or "")
    assert spec.project is not None
    jobs_api.check_project_file(spec.project, spec.script, "script")
    if spec.requirements is not None:
        jobs_api.check_project_file(spec.project, spec.requirements, "requirements")
    return spec


@router.post(
    "/experiments", status_code=201, summary="Start an experiment run", openapi_extra=_BODY
)
def start_experiment(
    services: ServicesDep,
    caller: Creator,
    body: Annotated[Any, Body(include_in_schema=False)] = None,
    project: Annotated[
        str | None, Query(description="Modelyard project (default: default)")
    ] = None,
) -> JSONResponse:
    """Records the experiment's one-off job and starts its run at once (state queued or
    running). ``project`` (the query) is read by the rule."""
    spec = _spec(services, caller, body)  # a bad body is a 400 whatever the server runs
    scheduler = jobs_api.scheduler_of(services, "experiments")  # before anything is recorded
    registry = services.registry
    job = registry.experiments.create(spec, caller.project_crn, caller.actor)
    try:
        run = scheduler.trigger(job.id)
    except Exception:
        registry.delete_job(job.id)  # nothing half-made: no experiment without its run
        raise
    experiment = registry.experiments.get(run.id)
    shown = experiment_json(experiment, project_names(registry), history=True)
    return JSONResponse(shown, status_code=201)


@router.get("/experiments", summary="Experiment runs, newest first")
def list_experiments(
    services: ServicesDep,
    caller: Lister,
    project: Annotated[str | None, Query(description="only this project's experiments")] = None,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
) -> dict[str, Any]:
    project_crn = Owners(services).project_filter(caller, project)
    return {"experiments": visible_experiments(services.registry, caller, project_crn, limit)}


@router.get("/experiments/compare", summary="Experiment runs side by side, by metric")
def compare_experiments(
    services: ServicesDep,
    caller: Lister,
    runs: Annotated[str, Query(description="run uuids or prefixes, separated by commas")] = "",
    project: Annotated[str | None, Query(description="runs of this project only")] = None,
) -> dict[str, Any]:
    """Each run with its arguments, code version and metric history, and the sorted union of
    their metric keys. ``project`` (optional) requires every run to be of that project. No
    run named answers an empty comparison."""
    project_crn = Owners(services).project_filter(caller, project)
    if not runs.strip(" ,"):  # nothing named: nothing to compare (a filter of nothing)
        return {"runs": [], "metrics": []}
    compared = compare_json(services.registry, caller, runs.split(","))
    if project_crn is not None:
        names = project_names(services.registry)
        wanted = names.get(project_crn, project_crn)
        outside = [r["uuid"] for r in compared["runs"] if r["project"] != wanted]
        if outside:
            raise InvalidInput(
                f"run {outside[0]} is not an experiment of project {wanted!r}; accepted: runs "
                "of that project (or leave out ?project=)",
                argument="runs",
            )
    return compared


@router.get("/experiments/{run_id}", summary="An experiment run with its metrics and files")
def show_experiment(run_id: str, services: ServicesDep, caller: Reader) -> dict[str, Any]:
    registry = services.registry
    experiment = registry.experiments.get(run_id)
    return experiment_json(experiment, project_names(registry), history=True)


@router.get(
    "/experiments/{run_id}/logs",
    summary="An experiment run's output (stdout and stderr) as text lines",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def experiment_logs(  # async: a follow streams (jobs_api.run_logs)
    run_id: str,
    request: Request,
    services: ServicesDep,
    caller: Reader,
    tail: Annotated[int | None, Query(ge=0, le=_MAX_TAIL, description="last N lines")] = None,
    follow: bool = False,
) -> StreamingResponse:
    run = await off_loop(services.registry.experiments.run_of, run_id)
    uuid = run.id.rsplit("/", 1)[-1]
    return await jobs_api.run_logs(uuid, request, services, caller, tail, follow)


@router.post("/experiments/{run_id}/cancel", summary="Cancel a queued or running experiment")
def cancel_experiment(run_id: str, services: ServicesDep, caller: Operator) -> dict[str, Any]:
    registry = services.registry
    run = registry.experiments.run_of(run_id)
    jobs_api.scheduler_of(services, "experiments").cancel(run.id)
    return experiment_json(registry.experiments.get(run.id), project_names(registry))


@router.delete("/experiments/{run_id}", summary="Delete a finished experiment run")
def delete_experiment(run_id: str, services: ServicesDep, caller: Changer) -> dict[str, Any]:
    """The run with its metrics, files and log; Conflict while it is queued or running."""
    run = services.registry.experiments.delete(run_id)
    uuid = run.id.rsplit("/", 1)[-1]
    run_log_path(services.first_start.home, uuid).unlink(missing_ok=True)
    return {"deleted": run.id}


@router.get("/experiments/{run_id}/files", summary="The files an experiment run kept")
def experiment_files(run_id: str, services: ServicesDep, caller: Reader) -> dict[str, Any]:
    return {"files": [file_json(f) for f in services.registry.experiments.files(run_id)]}


@router.get(
    "/experiments/{run_id}/files/{path:path}",
    summary="One kept file's bytes",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_experiment_file(
    run_id: str, path: str, services: ServicesDep, caller: Reader
) -> Response:
    data = services.registry.experiments.file_data(run_id, path)
    name = PurePosixPath(path).name or "file"
    # An ASCII fallback for old clients, the exact (UTF-8, RFC 6266/5987) name for the rest: a
    # header must be latin-1, and a run may keep "modèle.onnx".
    fallback = "".join(c if c.isascii() and c not in '"\\' else "_" for c in name)
    disposition = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
    return Response(
        data, media_type="application/octet-stream", headers={"Content-Disposition": disposition}
    )


@router.post("/runs/{run_id}/files", status_code=204, summary="Keep a file of an experiment run")
def track_run_file(
    run_id: str, body: RunFileIn, services: ServicesDep, caller: RunWriter
) -> Response:
    """``track_file(path)`` inside a running experiment: the file (relative to the run's working
    folder) is read and kept when the run's process ends. Idempotent per path. ``run_id`` is the
    run's uuid (``MODELYARD_RUN_ID``); a run's own key may name files of its own run only."""
    if not is_uuid(run_id):
        raise InvalidInput(
            f"run {run_id!r} is not accepted; expected the run's uuid (MODELYARD_RUN_ID, the last "
            "part of 'crn:modelyard:run/<uuid>')",
            run=run_id,
        )
    services.registry.experiments.track_file(RUN_SCOPE_PREFIX + run_id, body.path)
    return Response(status_code=204)


@router.put(
    "/runs/{run_id}/files/{path:path}",
    summary="Keep a file of a running experiment: its raw bytes, sent when the script ends",
    openapi_extra=_RAW_BODY,
)
async def upload_run_file(
    run_id: str, path: str, request: Request, services: ServicesDep, caller: RunWriter
) -> dict[str, Any]:
    """The SDK sends every file a script tracked when it ends (``tracking/run_uploads``), so
    its files are kept wherever the script ran (on Ray, a cluster node's copy of the working
    folder). Stored as kept, as the runner stores what it reads from the folder (which then
    skips the file); the same checks: a relative path inside the run's folder, at most
    ``MAX_RUN_FILE_BYTES`` each, ``MAX_RUN_FILES`` and ``MAX_RUN_FILES_TOTAL_BYTES`` per run.
    The run must be a running experiment; a run's own key reaches its own run only. Idempotent:
    the same bytes again change nothing. Answers the kept file's JSON."""
    if not is_uuid(run_id):
        raise InvalidInput(
            f"run {run_id!r} is not accepted; expected the run's uuid (MODELYARD_RUN_ID, the last "
            "part of 'crn:modelyard:run/<uuid>')",
            run=run_id,
        )
    normal = check_run_file_path(path)
    experiments = services.registry.experiments
    run = await off_loop(experiments.run_of, run_id)
    if run.state is not RunState.RUNNING:
        raise Conflict(
            f"experiment run {run.id} is {run.state.value}; its files are sent while it is "
            "running only",
            run=run.id,
        )
    data = bytearray()
    try:
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_RUN_FILE_BYTES:
                raise PayloadTooLarge(
                    f"file {normal!r} is more than {MAX_RUN_FILE_BYTES} bytes; accepted: at most "
                    f"{MAX_RUN_FILE_BYTES} bytes ({MAX_RUN_FILE_BYTES // 1024 // 1024} MiB) per "
                    "run file",
                    path=normal,
                    limit=MAX_RUN_FILE_BYTES,
                )
    except ClientDisconnect:  # cut off: nothing was stored, nobody is left to answer
        raise InvalidInput(
            f"the body of file {normal!r} ended after {len(data)} bytes (the client went away); "
            "nothing was stored: send the file again",
            path=normal,
        ) from None
    kept = await off_loop(experiments.keep_file, run.id, normal, bytes(data))
    return file_json(kept)
