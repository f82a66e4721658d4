"""``/api/v1/models``: deploy, roll back, scale, stop, start, delete, builds, logs, access keys.

Project paths are paths on the server's machine (the CLI runs on the same host): absolute,
existing folders. ``file`` and ``requirements`` must stay inside the project; the build checks
them again against the snapshot.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from modelyard.errors import InvalidInput, NotFound
from modelyard.registry import ApiKey, ModelSettings
from modelyard.runtime import check_name
from modelyard.server.auth import Capability, requires, scoped_model, shown_env, visible
from modelyard.server.errors import DeployFailed
from modelyard.server.follow import LogFollows, follow_response
from modelyard.server.insights import model_status
from modelyard.server.jsonable import jsonable
from modelyard.server.limits import check_path
from modelyard.server.services import Services
from modelyard.serving.builder import validate_function, validate_project_path
from modelyard.settings import parse_size_bytes

__all__ = ["DeployRequest", "check_project_dir", "model_view", "router"]

router = APIRouter(prefix="/api/v1/models", tags=["models"])
Admin = Annotated[ApiKey, Depends(requires(Capability.ADMIN))]
Reader = Annotated[ApiKey, Depends(requires(Capability.READ_MODELS))]


class DeployRequest(BaseModel):
    """What ``modelyard models deploy`` sends. ``settings`` takes ``ModelSettings`` fields
    (``auth_required``, ``concurrency``, ``request_timeout_s``, ``batch_function``, ``track_io``,
    ``debug``...); for an existing model only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field(description="Absolute path of the project folder on the server's host.")
    file: str = "predict.py"
    function: str = "predict"
    example: Any = None
    requirements: str | None = Field(
        None, description="requirements file, relative to the project (or absolute inside it)"
    )
    replicas: int = Field(1, ge=1, le=256)  # deploy runs at least one (scale may go to 0)
    env: dict[str, str] = Field(default_factory=dict)
    memory: str | int | None = Field(None, description="per replica, e.g. 512M or bytes")
    cpus: float | None = Field(None, gt=0)
    settings: dict[str, Any] = Field(default_factory=dict)


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    build: str | None = None


class ScaleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    replicas: int = Field(ge=0, le=256)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


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


def _deployment_for(deployment: Any, key: ApiKey) -> Any:
    """A deployment's JSON with its ``env`` values masked unless ``key`` may administer."""
    if isinstance(deployment, dict) and isinstance(deployment.get("env"), dict):
        return {**deployment, "env": shown_env(deployment["env"], key)}
    return deployment


def model_view(services: Services, name: str, key: ApiKey) -> dict[str, Any]:
    """``GET /api/v1/models/{name}`` as ``key`` may see it (the dashboard's model page shows the
    same): scope checked first, environment values masked. Blocking (registry reads)."""
    scoped_model(services.registry, key, name)
    body = model_status(services, name)
    if "active" in body:
        body["active"] = _deployment_for(body["active"], key)
    if isinstance(body.get("deployments"), list):
        body["deployments"] = [_deployment_for(d, key) for d in body["deployments"]]
    return body


@router.get("", summary="List models (a key limited to one model: that one only)")
async def list_models(request: Request, key: Reader) -> dict[str, Any]:
    services = _services(request)

    def listed() -> list[dict[str, Any]]:
        out = []
        for model in services.registry.list_models():
            if visible(key, model.crn):
                active = jsonable(services.registry.active_deployment(model.name))
                out.append({**jsonable(model), "active_deployment": _deployment_for(active, key)})
        return out

    return {"models": await asyncio.to_thread(listed)}


@router.post("/{name}/deploy", status_code=201, summary="Create (if new), build and deploy")
async def deploy(name: str, body: DeployRequest, request: Request, key: Admin) -> dict[str, Any]:
    services = _services(request)
    project = check_project_dir(body.project)
    check_path(body.file, "file", "a .py file inside the project such as 'predict.py'")
    file = validate_project_path(body.file, "file", suffix=".py")
    function = validate_function(body.function)
    requirements = _requirements(project, body.requirements)
    memory = None if body.memory is None else parse_size_bytes(str(body.memory), "memory")
    settings = _settings(services, name, body.settings)
    outcome = await services.controller.deploy(
        name,
        str(project),
        file,
        function,
        example=body.example,
        requirements=requirements,
        replicas=body.replicas,
        env=body.env,
        memory_bytes=memory,
        cpus=body.cpus,
        settings=settings,
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
async def show(name: str, request: Request, key: Reader) -> dict[str, Any]:
    return await asyncio.to_thread(model_view, _services(request), name, key)


@router.delete("/{name}", status_code=204, summary="Stop and delete a model (metrics stay)")
async def delete(name: str, request: Request, key: Admin) -> Response:
    services = _services(request)
    await services.controller.delete(name)
    services.models.drop(name)
    return Response(status_code=204)


@router.post("/{name}/rollback", summary="Deploy an earlier build again")
async def rollback(
    name: str, request: Request, key: Admin, body: RollbackRequest | None = None
) -> dict[str, Any]:
    services = _services(request)
    build = body.build if body is not None else None
    if build is not None:  # a CRN, a uuid or an unambiguous uuid prefix of one of its builds
        build = await asyncio.to_thread(services.registry.resolve_build, build, name)
    outcome = await services.controller.rollback(name, build)
    result = _outcome(outcome)
    if not getattr(outcome, "ok", True):
        raise DeployFailed(
            f"rolling model {name!r} back failed; the running deployment still serves",
            **result,
        )
    return result


@router.post("/{name}/scale", summary="Change the number of replicas")
async def scale(name: str, body: ScaleRequest, request: Request, key: Admin) -> dict[str, Any]:
    return _outcome(await _services(request).controller.scale(name, body.replicas))


@router.post("/{name}/stop", summary="Stop every replica (calls get 503)")
async def stop(name: str, request: Request, key: Admin) -> dict[str, Any]:
    return _outcome(await _services(request).controller.stop(name))


@router.post("/{name}/start", summary="Start the latest stopped deployment again")
async def start(name: str, request: Request, key: Admin) -> dict[str, Any]:
    return _outcome(await _services(request).controller.start(name))


@router.get("/{name}/builds", summary="Builds of a model, newest first")
async def builds(name: str, request: Request, key: Reader) -> dict[str, Any]:
    registry = _services(request).registry
    model = await asyncio.to_thread(scoped_model, registry, key, name)
    return {"builds": jsonable(await asyncio.to_thread(registry.list_builds, model.crn))}


@router.post("/{name}/rotate-key", summary="A new access key (the old one stops working)")
async def rotate_key(name: str, request: Request, key: Admin) -> dict[str, Any]:
    services = _services(request)
    access_key = services.registry.rotate_access_key(name)
    services.models.drop(name)
    return {"model": name, "access_key": access_key}


@router.get(
    "/{name}/logs",
    summary="Replica logs as text lines",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def logs(
    name: str,
    request: Request,
    key: Reader,
    replica: Annotated[str | None, Query(description="replica id; default: all")] = None,
    tail: Annotated[int, Query(ge=0, le=100_000)] = 200,
    follow: bool = False,
) -> StreamingResponse:
    services = _services(request)
    await asyncio.to_thread(scoped_model, services.registry, key, name)
    if replica is not None:
        check_name(replica, "replica")
    if follow:  # a stream of its own: ends with its client, bounded per key and in all
        follows: LogFollows = request.app.state.log_follows
        return await follow_response(
            follows, key.id, lambda stop: _follow(services, name, replica, tail, stop)
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
