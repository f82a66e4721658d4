"""``/api/v1/models``: deploy, roll back, scale, stop, start, delete, builds, logs, access keys.

Who may: reading a model (show, builds, logs) needs viewer in its Modelyard project; deploying,
rolling back, scaling, stopping, starting, deleting and rotating its access key need
contributor (``web/access.py``). A new model is created in ``?project=`` (default: the server's
``default`` project). The list shows the models of the projects the caller has a role in
(``?project=`` filters to one).

A deploy's code comes from an ``upload`` (the folder sent from the client) or, for server
administrators only, the body's ``project``: a folder on the server's machine (absolute,
existing). ``file`` and ``requirements`` must stay inside the folder; the build checks them
again against the snapshot.

Routes that only read or write the registry are plain ``def`` functions (FastAPI's worker
threads); those that await the controller stay ``async`` and send their registry calls
``off_loop``. Nothing here waits on the database on the event loop the gateway shares.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from modelyard.builds.builder import validate_function, validate_project_path
from modelyard.builds.imported import Staged, discard
from modelyard.errors import InvalidInput, NotFound
from modelyard.registry import ModelSettings
from modelyard.runtime import check_name
from modelyard.server.deploy_imports import needs_staging, stage_deploy
from modelyard.server.follow import LogFollows, follow_response
from modelyard.server.limits import check_path
from modelyard.server.uploads_api import deploy_folder
from modelyard.specs.deploy import DeploySpec
from modelyard.views.models import model_list, model_view
from modelyard.web.access import Caller, On, Right, requires, resolve_project
from modelyard.web.errors import DeployFailed
from modelyard.web.jsonable import jsonable
from modelyard.web.offloop import off_loop
from modelyard.web.services import Services, ServicesDep

__all__ = ["DeployRequest", "check_project_dir", "router"]

router = APIRouter(prefix="/api/v1/models", tags=["models"])
Lister = Annotated[Caller, Depends(requires(Right.READ))]
Reader = Annotated[Caller, Depends(requires(Right.READ, On.MODEL))]
Changer = Annotated[Caller, Depends(requires(Right.CHANGE, On.MODEL))]
Deployer = Annotated[Caller, Depends(requires(Right.CHANGE, On.MODEL_OR_CREATE))]
ProjectQuery = Annotated[
    str | None,
    Query(description="a Modelyard project: owner/name, name, CRN or uuid (lists: a filter)"),
]


class DeployRequest(DeploySpec):
    """What ``modelyard models deploy`` sends: a ``modelyard.specs.DeploySpec`` (named here for
    the API's schema)."""


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    build: str | None = None


class ScaleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    replicas: int = Field(ge=0, le=256)


def check_project_dir(value: str) -> Path:
    """``value`` as an absolute path of an existing folder; InvalidInput naming it otherwise."""
    accepted = "an absolute path of a folder on the server's machine"
    if not value or "\x00" in value:
        raise InvalidInput(f"project={value!r} is empty or has a NUL byte; expected {accepted}")
    path = Path(check_path(value, "project", accepted))
    if not path.is_absolute():
        raise InvalidInput(
            f"project={value!r} is not absolute; expected {accepted} (the CLI sends the "
            "absolute path of the folder you give it)"
        )
    try:
        is_dir = path.is_dir()
        what = "is not a folder" if path.exists() else "does not exist"
    except OSError as exc:  # too long for this file system, a loop of links, no permission
        raise InvalidInput(
            f"project={value!r:.200} cannot be read on the server's machine ({exc.strerror}); "
            f"expected {accepted}"
        ) from None
    if not is_dir:
        raise InvalidInput(f"project={value!r} {what} on the server's machine; expected {accepted}")
    return path


def _requirements(project: Path, value: str | None) -> str | None:
    if value is None:
        return None
    check_path(value, "requirements", "a requirements file inside the project")
    if os.path.isabs(value):
        real = Path(os.path.realpath(value))
        root = Path(os.path.realpath(project))
        if not real.is_relative_to(root):
            raise InvalidInput(
                f"requirements={value!r} is outside the project {str(project)!r}; expected a "
                "file inside the project"
            )
        value = real.relative_to(root).as_posix()
    return validate_project_path(value, "requirements")


def _settings(services: Services, name: str, given: dict[str, Any]) -> ModelSettings:
    try:
        base = services.registry.get_model(name).settings
    except NotFound:
        base = ModelSettings()
    return base.replace(**given) if given else base


def _outcome(outcome: Any) -> dict[str, Any]:
    body = jsonable(outcome)
    return body if isinstance(body, dict) else {"outcome": body}


@router.get("", summary="List the models of the projects you have a role in")
def list_models(
    services: ServicesDep, caller: Lister, project: ProjectQuery = None
) -> dict[str, Any]:
    crn = None if project is None else resolve_project(services.registry, caller, project).crn
    return {"models": model_list(services, caller, crn)}


@router.post("/{name}/deploy", status_code=201, summary="Create (if new), build and deploy")
async def deploy(
    name: str,
    body: DeployRequest,
    services: ServicesDep,
    caller: Deployer,
    project: ProjectQuery = None,  # where a new model goes: the rule resolved it (Deployer)
) -> dict[str, Any]:
    # An upload (from any client) or, for server admins only, a folder on this machine.
    async with deploy_folder(
        services, caller, body.project, body.upload, check_project_dir
    ) as folder:
        if not needs_staging(body):
            return await _deploy(name, body, services, folder, caller.project_crn)
        # An import or --from-run: staged first (refusals here leave no model), removed after.
        staged = await off_loop(stage_deploy, services, caller, body, folder)
        try:
            return await _deploy(name, body, services, staged.folder, caller.project_crn, staged)
        finally:
            await off_loop(discard, staged)


async def _deploy(
    name: str,
    body: DeployRequest,
    services: Services,
    project: Path,
    project_crn: str | None,
    staged: Staged | None = None,
) -> dict[str, Any]:
    given = staged.file if staged is not None and staged.file else body.file
    check_path(given, "file", "a .py file inside the project such as 'predict.py'")
    file = validate_project_path(given, "file", suffix=".py")
    function = validate_function(staged.function if staged and staged.function else body.function)
    planned = staged.requirements if staged is not None else None
    requirements = _requirements(project, body.requirements or planned)
    memory = body.memory_bytes
    settings = await off_loop(_settings, services, name, body.model_settings)
    outcome = await services.controller.deploy(
        name,
        str(project),
        file,
        function,
        example=staged.example if staged is not None else body.example,
        requirements=requirements,
        replicas=body.replicas,
        env=body.env,
        memory_bytes=memory,
        cpus=body.cpus,
        settings=settings,
        secrets=body.secrets,
        project_crn=project_crn,
        source=staged.source if staged is not None and staged.source else None,
    )
    services.models.drop(name)
    result = _outcome(outcome)
    if not getattr(outcome, "ok", True):
        raise DeployFailed(
            f"deploying model {name!r} failed; the running deployment (if any) still serves. "
            f"Log tail:\n{getattr(outcome, 'log_tail', '') or '(empty)'}",
            **result,
        )
    return result


@router.get("/{name}", summary="Model, active deployment, builds and replica states")
def show(name: str, services: ServicesDep, caller: Reader) -> dict[str, Any]:
    return model_view(services, name, caller)


@router.delete("/{name}", status_code=204, summary="Stop and delete a model (metrics stay)")
async def delete(name: str, services: ServicesDep, caller: Changer) -> Response:
    await services.controller.delete(name)
    services.models.drop(name)
    return Response(status_code=204)


@router.post("/{name}/rollback", summary="Deploy an earlier build again")
async def rollback(
    name: str, services: ServicesDep, caller: Changer, body: RollbackRequest | None = None
) -> dict[str, Any]:
    build = body.build if body is not None else None
    if build is not None:  # a CRN, a uuid or an unambiguous uuid prefix of one of its builds
        build = await off_loop(services.registry.resolve_build, build, name)
    outcome = await services.controller.rollback(name, build)
    result = _outcome(outcome)
    if not getattr(outcome, "ok", True):
        raise DeployFailed(
            f"rolling model {name!r} back failed; the running deployment still serves",
            **result,
        )
    return result


@router.post("/{name}/scale", summary="Change the number of replicas")
async def scale(
    name: str, body: ScaleRequest, services: ServicesDep, caller: Changer
) -> dict[str, Any]:
    return _outcome(await services.controller.scale(name, body.replicas))


@router.post("/{name}/stop", summary="Stop every replica (calls get 503)")
async def stop(name: str, services: ServicesDep, caller: Changer) -> dict[str, Any]:
    return _outcome(await services.controller.stop(name))


@router.post("/{name}/start", summary="Start the latest stopped deployment again")
async def start(name: str, services: ServicesDep, caller: Changer) -> dict[str, Any]:
    return _outcome(await services.controller.start(name))


@router.get("/{name}/builds", summary="Builds of a model, newest first")
def builds(name: str, services: ServicesDep, caller: Reader) -> dict[str, Any]:
    model = services.registry.get_model(name)
    return {"builds": jsonable(services.registry.list_builds(model.crn))}


@router.post("/{name}/rotate-key", summary="A new access key (the old one stops working)")
def rotate_key(name: str, services: ServicesDep, caller: Changer) -> dict[str, Any]:
    access_key = services.registry.rotate_access_key(name)
    services.models.drop(name)
    return {"model": name, "access_key": access_key}


@router.get(
    "/{name}/logs",
    summary="Replica logs as text lines",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def logs(  # async: a follow streams; the registry read runs off_loop
    name: str,
    request: Request,
    services: ServicesDep,
    caller: Reader,
    replica: Annotated[str | None, Query(description="replica id; default: all")] = None,
    tail: Annotated[int, Query(ge=0, le=100_000)] = 200,
    follow: bool = False,
) -> StreamingResponse:
    if replica is not None:
        check_name(replica, "replica")
    if follow:  # a stream of its own: ends with its client, bounded per key and in all
        follows: LogFollows = request.app.state.log_follows
        return await follow_response(
            follows,
            caller.key.id if caller.key is not None else caller.actor,
            lambda stop: _follow(services, name, replica, tail, stop),
        )
    by_replica: dict[str, list[str]] = services.controller.logs(name, replica, tail)
    if replica is not None:
        lines: list[str] = by_replica.get(replica, [])
    else:  # several replicas: each line says whose it is
        lines = [f"[{rid}] {line}" for rid, got in by_replica.items() for line in got]
    return StreamingResponse(_newlines(lines), media_type="text/plain; charset=utf-8")


async def _newlines(lines: list[str]) -> AsyncIterator[bytes]:
    """Every line at once: a list needs no thread (a sync iterator would take one per line)."""
    yield b"".join((line if line.endswith("\n") else line + "\n").encode() for line in lines)


def _follow(
    services: Services, name: str, replica: str | None, tail: int, stop: Callable[[], bool]
) -> Iterator[str]:
    """Lines of one replica of the active deployment until it stops or ``stop()`` is true."""
    deployment = services.registry.active_deployment(name)
    if deployment is None:
        raise NotFound(f"model {name!r} has no active deployment whose logs could be followed")
    deployment_id = deployment.crn.rsplit("/", 1)[-1]
    replicas = [r.replica_id for r in services.runtime.replicas(deployment_id)]
    if replica is None:
        if not replicas:
            raise NotFound(f"model {name!r} has no running replica to follow")
        replica = replicas[0]
    elif replica not in replicas:
        raise NotFound(
            f"replica {replica!r} is not a replica of model {name!r}; replicas: "
            f"{', '.join(replicas) or 'none'}"
        )
    return services.runtime.read_replica_log(deployment_id, replica, tail, follow=True, stop=stop)
