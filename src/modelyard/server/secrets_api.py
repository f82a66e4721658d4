"""``/api/v1/projects/{project}/secrets``: a project's secrets by name. Values go in (``PUT``),
never out: every answer here carries names, who set them and when, and nothing else.

- ``GET .../secrets``: the names (viewer or higher);
- ``PUT .../secrets/{name}`` with ``{"value": "..."}``: create or replace (contributor or
  higher); the value is encrypted before it is stored (``registry.secrets``, ``SecretBox``);
- ``DELETE .../secrets/{name}``: remove (contributor or higher).

``{project}`` is a project's uuid or bare name (a CRN or ``owner/name`` holds a ``/``: the CLI
looks the project up and sends its uuid). The body is read as plain JSON and checked here,
not by a pydantic model, because the framework's 422 answer echoes what was sent: a refusal
must never carry the value back (nor into a log). Deployments and jobs name the secrets they
get (``secrets`` in a deploy's body and in a job's spec); the server reads the values only to
start their replicas and runs, and records each such read in the audit log.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Response

from modelyard.errors import InvalidInput
from modelyard.registry import SecretInfo
from modelyard.server.project_scoped import project_listing, project_of
from modelyard.specs.secret_names import (
    MAX_SECRET_BYTES,
    check_secret_name,
    check_secret_value,
)
from modelyard.web.access import Caller, On, Right, project_name, requires
from modelyard.web.services import Services, ServicesDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/projects", tags=["secrets"])

Reader = Annotated[Caller, Depends(requires(Right.READ, On.PROJECT))]
Changer = Annotated[Caller, Depends(requires(Right.CHANGE, On.PROJECT))]

_PUT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "value": {
                            "type": "string",
                            "minLength": 1,
                            "description": "the secret's value (at most "
                            f"{MAX_SECRET_BYTES} bytes of UTF-8, no NUL); never shown again",
                        }
                    },
                    "required": ["value"],
                    "additionalProperties": False,
                }
            }
        },
    }
}


def _shown(services: Services, info: SecretInfo, project: str | None = None) -> dict[str, Any]:
    return {
        "name": info.name,
        "project_crn": info.project_crn,
        "project": project or project_name(services.registry, info.project_crn),
        "set_by": info.set_by,
        "created_ms": info.created_ms,
        "updated_ms": info.updated_ms,
    }


def _value(body: Any, name: str) -> str:
    """The ``value`` of a ``{"value": "..."}`` body. Refusals describe the body's shape and
    never quote it: what was sent may be the secret itself."""
    check_secret_name(name)
    if not isinstance(body, dict):
        raise InvalidInput(
            f"the body setting secret {name!r} is a JSON {type(body).__name__}, not an object; "
            'expected {"value": "<the secret>"}'
        )
    others = [key for key in body if key != "value"]
    if others or "value" not in body:
        raise InvalidInput(
            f"the body setting secret {name!r} has {len(others)} field(s) other than 'value'"
            f"{'' if 'value' in body else ' and no value'}; expected exactly "
            '{"value": "<the secret>"}'
        )
    # Checked (type, size, NUL) here and again by the registry, by messages that never quote it.
    return check_secret_value(name, body["value"])


@router.get("/{project}/secrets", summary="A project's secrets: names and who set them, no values")
def list_secrets(project: str, services: ServicesDep, caller: Reader) -> dict[str, Any]:
    return project_listing(services, caller, "secrets", services.registry.secrets.list, _shown)


@router.put(
    "/{project}/secrets/{name}",
    summary="Create or replace a secret (the value is never shown again)",
    openapi_extra=_PUT_BODY,
)
def set_secret(
    project: str,
    name: str,
    services: ServicesDep,
    caller: Changer,
    body: Annotated[Any, Body(include_in_schema=False)] = None,
) -> dict[str, Any]:
    value = _value(body, name)
    info = services.registry.secrets.set(project_of(caller), name, value, caller.actor)
    return {"secret": _shown(services, info)}


@router.delete("/{project}/secrets/{name}", status_code=204, summary="Delete a secret")
def delete_secret(project: str, name: str, services: ServicesDep, caller: Changer) -> Response:
    services.registry.secrets.delete(project_of(caller), name)
    return Response(status_code=204)
