"""The dashboard's pages about people: the project (its collaborators and their roles), the
audit log and the project's secrets.

- Project: everyone with a role in it sees who collaborates with which role; the project's
  admins (and server admins) change roles, add and remove collaborators. The registry refuses
  removing or demoting the last admin and names the accepted roles and kinds.
- Audit: server admins see every entry (sign-ins included); a project's admins see the entries
  of the projects they administer. Filters: the switcher's project, a user, a time range.
- Secrets: names, who set them and when, never a value (the registry cannot even show one
  here: ``Secrets.list`` returns ``SecretInfo``). Contributors set a value through a
  ``type=password`` field, and delete.

Every form carries the session's CSRF token; every action checks the caller's right again
(``Caller.check``: 404 without a role in the project, 403 naming the role needed).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from fastapi import Request
from starlette.responses import RedirectResponse, Response

from modelyard.clock import now_ms
from modelyard.errors import Forbidden, InvalidInput
from modelyard.registry._records import Project, ProjectRole
from modelyard.ui.common import Ctx, checked_form, page, render, router
from modelyard.web.access import Right, not_found
from modelyard.web.offloop import off_loop
from modelyard.web.services import Services, ServicesDep

__all__ = ["SINCE"]

SINCE = {"1h": 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000, "30d": 30 * 86_400_000}
"""The audit page's time ranges (``since``), besides "all"."""
_AUDIT_ROWS = 500
_ROLES = tuple(role.value for role in ProjectRole)


def _target(ctx: Ctx, crn: str) -> Project:
    """The project a form names (by CRN) among those the caller sees; 404 like an unknown one."""
    for project in ctx.projects:
        if project.crn == crn:
            return project
    raise not_found("project", crn)


# -- project and collaborators --------------------------------------------------------------------


@router.get("/ui/project")
async def project_page(request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        project = ctx.chosen
        collaborators: list[Any] = []
        if project is not None:
            collaborators = await off_loop(services.registry.people.collaborators, project.crn)
        return render(
            request,
            "project.html",
            200,
            ctx,
            active="project",
            project=project,
            collaborators=collaborators,
            role=ctx.caller.role_in(project.crn) if project else None,
            may_manage=project is not None and ctx.may(Right.MANAGE, project.crn),
            roles=_ROLES,
        )

    return await page(request, body)


@router.post("/ui/project/collaborators")
async def collaborators_action(request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        form = await checked_form(request, ctx.session)
        project = _target(ctx, form.get("project", ""))
        ctx.check(Right.MANAGE, project.crn, f"project {project.full_name!r}")
        action, kind, name = form.get("action", ""), form.get("kind", "user"), form.get("name", "")
        people = services.registry.people
        if action == "set":
            await off_loop(people.set_collaborator, project.crn, kind, name, form.get("role", ""))
            notice = "collaborator-set"
        elif action == "remove":
            await off_loop(people.remove_collaborator, project.crn, kind, name)
            notice = "collaborator-removed"
        else:
            raise InvalidInput(f"action={action!r} is not accepted; expected 'set' or 'remove'")
        quoted = urllib.parse.quote(project.crn, safe="")
        return RedirectResponse(f"/ui/project?project={quoted}&notice={notice}", 303)

    return await page(request, body)


# -- audit ----------------------------------------------------------------------------------------


def _audit_projects(ctx: Ctx) -> list[str] | None:
    """The projects whose entries the caller may read on this page (None: every entry, a server
    admin with no project chosen); Forbidden for a caller who administers none of them."""
    chosen = ctx.chosen
    if ctx.caller.server_admin:
        return None if chosen is None else [chosen.crn]
    if chosen is not None:
        ctx.caller.check(Right.MANAGE, chosen.crn, f"project {chosen.full_name!r}")
        return [chosen.crn]
    mine = [crn for crn, role in ctx.caller.roles.items() if role is ProjectRole.ADMIN]
    if not mine:
        raise Forbidden(
            f"the audit log is for server admins and project admins, and {ctx.caller.actor!r} "
            "is admin of no project; accepted: admin role in a project (its entries) or a "
            "server admin (every entry)",
            actor=ctx.caller.actor,
        )
    return mine


def _audit_filters(request: Request) -> tuple[str | None, str, int | None]:
    actor = request.query_params.get("user", "").strip() or None
    since = request.query_params.get("since", "24h")
    if since not in (*SINCE, "all"):
        raise InvalidInput(
            f"since={since!r} is not accepted; expected one of: {', '.join((*SINCE, 'all'))}"
        )
    since_ms = None if since == "all" else now_ms() - SINCE[since]
    return actor, since, since_ms


def _entries(
    services: Services, projects: list[str] | None, actor: str | None, since_ms: int | None
) -> list[Any]:
    """Newest first, at most ``_AUDIT_ROWS``, from each allowed project. Blocking."""
    audit = services.registry.audit
    if projects is None:
        return list(audit.list(actor=actor, since_ms=since_ms, limit=_AUDIT_ROWS))
    found: list[Any] = []
    for crn in projects:
        found.extend(audit.list(project_crn=crn, actor=actor, since_ms=since_ms, limit=_AUDIT_ROWS))
    found.sort(key=lambda entry: entry.seq, reverse=True)
    return found[:_AUDIT_ROWS]


@router.get("/ui/audit")
async def audit_page(request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        projects = _audit_projects(ctx)
        actor, since, since_ms = _audit_filters(request)
        entries = await off_loop(_entries, services, projects, actor, since_ms)
        return render(
            request,
            "audit.html",
            200,
            ctx,
            active="audit",
            entries=entries,
            names={p.crn: p.full_name for p in ctx.projects},
            user=actor or "",
            since=since,
            ranges=(*SINCE, "all"),
            limit=_AUDIT_ROWS,
        )

    return await page(request, body)


# -- secrets --------------------------------------------------------------------------------------


@router.get("/ui/secrets")
async def secrets_page(request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        project = ctx.chosen
        found: list[Any] = []
        if project is not None:
            found = await off_loop(services.registry.secrets.list, project.crn)
        return render(
            request,
            "secrets.html",
            200,
            ctx,
            active="secrets",
            project=project,
            secrets=found,
            may_change=project is not None and ctx.may(Right.CHANGE, project.crn),
        )

    return await page(request, body)


@router.post("/ui/secrets")
async def secrets_action(request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        form = await checked_form(request, ctx.session)
        project = _target(ctx, form.get("project", ""))
        action, name = form.get("action", ""), form.get("name", "").strip()
        what = f"secret {name!r} of project {project.full_name!r}"
        ctx.check(Right.CHANGE, project.crn, what)
        secrets = services.registry.secrets
        if action == "set":
            value = form.get("value", "")
            await off_loop(secrets.set, project.crn, name, value, ctx.caller.actor)
            notice = "secret-set"
        elif action == "delete":
            await off_loop(secrets.delete, project.crn, name)
            notice = "secret-deleted"
        else:
            raise InvalidInput(f"action={action!r} is not accepted; expected 'set' or 'delete'")
        quoted = urllib.parse.quote(project.crn, safe="")
        return RedirectResponse(f"/ui/secrets?project={quoted}&notice={notice}", 303)

    return await page(request, body)
