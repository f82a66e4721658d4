"""``/api/v1/projects/{project}/connections``: a project's connections to where its data lives
(databases, buckets, folders, streams). Definitions only: options in the clear and the *names*
of the project secrets that hold the credentials; no answer here carries a credential's value.

- ``GET .../connections``: the list (viewer or higher);
- ``POST .../connections`` with ``{"name", "kind", "options", "secrets"}``: create (contributor
  or higher, as for secrets: whoever may name a secret may point the server at a place);
- ``GET .../connections/{name}``: one (viewer or higher; a monitor's run reads the definition
  it reads labels through with its run key at ``GET /api/v1/monitors/connection``, by its
  deployment);
- ``PATCH .../connections/{name}`` with ``{"options"?, "secrets"?}``: replace either (the kind
  stays: delete and create for another);
- ``DELETE .../connections/{name}``: remove (contributor or higher);
- ``POST .../connections/{name}/test``: the server resolves the credentials from the project's
  secrets (recorded in the audit log as a ``secrets.read``, names only), connects, and answers
  what it found or exactly why not (operator or higher).

Bodies are read as plain JSON and checked by ``ConnectionSpec`` (the framework's 422 would echo
what was sent: a credential typed by mistake must never come back, nor reach a log). Every
change is in the audit log (``connections.create_connection`` and so on, the connection's name
as the object).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response

from modelyard.connectors import Connection, Credentials
from modelyard.connectors.read import probe
from modelyard.errors import InvalidInput
from modelyard.registry import read_secrets
from modelyard.server.project_scoped import project_listing, project_of
from modelyard.specs.connection import ConnectionSpec, check_connection_name
from modelyard.web.access import Caller, On, Right, project_name, requires
from modelyard.web.services import Services, ServicesDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/projects", tags=["connections"])

Reader = Annotated[Caller, Depends(requires(Right.READ, On.PROJECT))]
Operator = Annotated[Caller, Depends(requires(Right.OPERATE, On.PROJECT))]
Changer = Annotated[Caller, Depends(requires(Right.CHANGE, On.PROJECT))]
_UPDATABLE = ("options", "secrets")


def _body(spec: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": spec}}}}


_CREATE_BODY = _body(ConnectionSpec.body_schema())
_UPDATE_BODY = _body(ConnectionSpec.body_schema(partial=True, leave_out=("name", "kind")))


def _shown(services: Services, found: Connection, project: str | None = None) -> dict[str, Any]:
    return {
        **found.to_dict(),
        "project": project or project_name(services.registry, found.project_crn),
    }


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput(
            f"the body {what} is a JSON {type(body).__name__}, not an object; expected "
            '{"name": "crm", "kind": "postgresql", "options": {...}, "secrets": {...}}'
        )
    return body


@router.get("/{project}/connections", summary="A project's connections (no credential values)")
def list_connections(project: str, services: ServicesDep, caller: Reader) -> dict[str, Any]:
    return project_listing(
        services, caller, "connections", services.registry.connections.list, _shown
    )


@router.post(
    "/{project}/connections",
    status_code=201,
    summary="Create a connection (credentials by project secret name)",
    openapi_extra=_CREATE_BODY,
)
def create_connection(
    project: str,
    request: Request,
    services: ServicesDep,
    caller: Changer,
    body: Annotated[Any, Body(include_in_schema=False)] = None,
) -> dict[str, Any]:
    spec = ConnectionSpec.parse(_object(body, "creating a connection"))
    request.state.audit = {"object": spec.name}
    made = services.registry.connections.create(
        project_of(caller), spec.name, spec.kind, spec.options, spec.secrets, caller.actor
    )
    return {"connection": _shown(services, made)}


@router.get("/{project}/connections/{name}", summary="One connection (no credential values)")
def show_connection(
    project: str, name: str, services: ServicesDep, caller: Reader
) -> dict[str, Any]:
    found = services.registry.connections.get(project_of(caller), name)
    return {"connection": _shown(services, found)}


@router.patch(
    "/{project}/connections/{name}",
    summary="Replace a connection's options and/or secrets",
    openapi_extra=_UPDATE_BODY,
)
def update_connection(
    project: str,
    name: str,
    services: ServicesDep,
    caller: Changer,
    body: Annotated[Any, Body(include_in_schema=False)] = None,
) -> dict[str, Any]:
    changes = _object(body, f"changing connection {name!r}")
    unknown = sorted(str(key) for key in changes if key not in _UPDATABLE)
    if unknown or not changes:
        raise InvalidInput(
            f"a change of connection {name!r} names {unknown[0] if unknown else 'nothing'!r}; "
            f"accepted: {', '.join(_UPDATABLE)} (the kind and name stay: delete and create "
            "for others)",
            argument=unknown[0] if unknown else "body",
        )
    changed = services.registry.connections.update(
        project_of(caller), name, options=changes.get("options"), secrets=changes.get("secrets")
    )
    return {"connection": _shown(services, changed)}


@router.delete("/{project}/connections/{name}", status_code=204, summary="Delete a connection")
def delete_connection(project: str, name: str, services: ServicesDep, caller: Changer) -> Response:
    services.registry.connections.delete(project_of(caller), name)
    return Response(status_code=204)


@router.post(
    "/{project}/connections/{name}/test",
    summary="Connect with the project's secrets and say what is there, or exactly why not",
)
def probe_connection(
    project: str, name: str, services: ServicesDep, caller: Operator
) -> dict[str, Any]:
    project_crn = project_of(caller)
    found = services.registry.connections.get(project_crn, check_connection_name(name))
    values = read_secrets(
        services.registry,
        project_crn,
        found.secrets.values(),
        object=f"connection:{found.name}",
        for_=f"connections test by {caller.actor}",
    )
    credentials = Credentials.resolve(found, values.get)
    result = probe(found, credentials)
    return {"connection": found.name, "kind": found.kind, "ok": result.ok, "detail": result.detail}
