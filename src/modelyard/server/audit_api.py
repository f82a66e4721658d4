"""``GET /api/v1/audit``: who changed what, when, from where, and how it ended.

Server administrators read the whole log; a project's admins (``Right.MANAGE`` on it) read that
project's entries by naming it in ``?project=`` (its name, ``owner/name``, uuid or CRN). Anyone
else gets 403 naming what they lack, or, for a project they have no role in, the 404 an unknown
project gets. Filters: ``user`` (the actor: a user name or ``key:<id>``), ``since`` and ``until``
(epoch ms, ISO 8601, or a duration before now such as ``7d``), ``action`` (exactly, or a whole
group: ``models`` is every ``models.*``), ``limit`` (1 to 10,000; 1,000 by default) and
``before`` (the ``next_before`` of the previous page). Newest first.

The log is append-only through the API: there is no route to write, change or delete entries
(``web.audit`` writes them; the retention policy, ``MODELYARD_AUDIT_RETENTION``, removes the
oldest). Entries hold no secret and no key (``registry.audit`` scrubs them).

A plain ``def`` route: FastAPI runs it on its thread pool, so the database never holds up the
event loop.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from modelyard.registry import AuditLog
from modelyard.timeparse import parse_time_ms
from modelyard.web.access import Caller, On, Right, project_name, requires, resolve_project
from modelyard.web.jsonable import jsonable
from modelyard.web.services import ServicesDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["audit"])

# MANAGE on the project ?project= names, checked by the handler (SERVER without ?project=).
Auditor = Annotated[Caller, Depends(requires(Right.MANAGE, On.BODY))]


@router.get("/audit", summary="The audit log, newest first (server admins; a project's admins)")
def list_audit(  # noqa: PLR0913 - one per query filter, as the wire has them
    services: ServicesDep,
    caller: Auditor,
    project: Annotated[str | None, Query(description="a project: only its entries")] = None,
    user: Annotated[str | None, Query(description="only this actor's entries")] = None,
    since: Annotated[str | None, Query(description="epoch ms, ISO 8601, or 7d (ago)")] = None,
    until: Annotated[str | None, Query(description="epoch ms, ISO 8601, or 1h (ago)")] = None,
    action: Annotated[str | None, Query(description="models.deploy, or models for all")] = None,
    limit: Annotated[int, Query(ge=1, le=AuditLog.MAX_LIMIT)] = 1000,
    before: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="next_before of the last page")
    ] = None,
) -> dict[str, Any]:
    registry = services.registry
    project_crn = None
    if project is None:
        caller.check(
            Right.SERVER, None, "the whole audit log (a project's admins: add ?project=NAME)"
        )
    else:
        found = resolve_project(registry, caller, project)
        caller.check(Right.MANAGE, found.crn, f"project {found.full_name!r}")
        project_crn = found.crn
    entries = registry.audit.list(
        project_crn=project_crn,
        actor=user,
        since_ms=None if since is None else parse_time_ms(since, "since"),
        until_ms=None if until is None else parse_time_ms(until, "until"),
        action=action,
        limit=limit,
        before_seq=before,
    )
    names: dict[str, str] = {}
    shown = []
    for entry in entries:
        row = jsonable(entry)
        crn = entry.project_crn
        if crn is not None and crn not in names:
            names[crn] = project_name(registry, crn)
        row["project"] = None if crn is None else names[crn]
        shown.append(row)
    full = len(entries) == limit
    return {"entries": shown, "next_before": entries[-1].seq if full and entries else None}
