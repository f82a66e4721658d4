"""What every dashboard page shares: the router, the templates, the security headers, the
session lookup that turns a cookie into a ``Caller``, the project switcher's choice, and the
form helpers. The page modules (``routes``, ``signin``, ``people_pages``) add their routes to
``router``; ``mount(app)`` (in ``routes``) includes it.

A page runs through ``page(request, body)``: no session sends the browser to the sign-in page, a
session whose user was disabled or whose key was revoked ends there too, and a ``ModelyardError``
becomes an error page with its status. ``body`` gets a ``Ctx``: the session, the caller, the
projects the caller sees and the one the switcher chose (None: all of them), with ``shows`` and
``shows_model`` to filter lists by both.
"""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from modelyard.errors import InvalidInput, ModelyardError, NotFound, Unauthorized
from modelyard.registry import Model
from modelyard.registry._records import Project
from modelyard.ui import look
from modelyard.ui.assets import plotly_style_ids
from modelyard.ui.session import COOKIE, CSRF_FIELD, Session, SessionStore
from modelyard.version import package_version
from modelyard.web.access import Caller, Right
from modelyard.web.offloop import off_loop
from modelyard.web.services import services_of

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "Ctx",
    "checked_form",
    "form",
    "iso_utc",
    "page",
    "render",
    "router",
    "safe_next",
    "sessions",
    "to_login",
]

_HERE = Path(__file__).parent
_MAX_FORM_BYTES = 64 * 1024


def _style_hash(value: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(value.encode()).digest()).decode() + "'"


# Plotly sets two fixed style attributes: an empty one (colour bars, heatmap images) and
# image-rendering on heatmap images. 'unsafe-hashes' with their hashes allows exactly these two
# values, no other style attribute and no <style> element (see ui/assets.py for Plotly's own).
_PLOTLY_STYLE_ATTRIBUTES = (
    "",
    "".join(
        f"image-rendering: {value}; "
        for value in (
            "optimizeSpeed",
            "-moz-crisp-edges",
            "-o-crisp-edges",
            "-webkit-optimize-contrast",
            "optimize-contrast",
            "crisp-edges",
            "pixelated",
        )
    ),
)
# The dashboard serves every script, style sheet and chart library itself, with no inline
# script or style: a policy of 'self' holds, so an injected <script> or handler cannot run.
# img-src allows data: for Plotly's heatmap images and the page's empty favicon.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-hashes' "
    + " ".join(_style_hash(value) for value in _PLOTLY_STYLE_ATTRIBUTES)
    + "; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,  # every template, whatever its suffix
    undefined=jinja2.StrictUndefined,
)
_env.globals["plotly_style_ids"] = plotly_style_ids
_env.globals.update(look.GLOBALS)
_env.filters.update(look.FILTERS)  # fmt (numbers), badge (states), sparkline
router = APIRouter(include_in_schema=False)

_NOTICES = {
    "rolled-back": "Rolled back: the chosen build serves the model now.",
    "revoked": "The key was revoked.",
    "collaborator-set": "The collaborator's role was saved.",
    "collaborator-removed": "The collaborator was removed.",
    "secret-set": "The secret was saved.",
    "secret-deleted": "The secret was deleted.",
}


@dataclass(frozen=True)
class Ctx:
    """One signed-in page request: who, which projects they see, which one is chosen."""

    request: Request
    session: Session
    caller: Caller
    projects: tuple[Project, ...]  # every project the caller sees, by full name
    chosen: Project | None  # the switcher's choice; None: all of ``projects``

    def shows(self, project_crn: str | None) -> bool:
        """Whether lists on this page keep things of ``project_crn``."""
        if self.chosen is not None:
            return project_crn == self.chosen.crn
        visible = self.caller.visible_projects()
        return visible is None or project_crn in visible

    def shows_model(self, model: Model) -> bool:
        return self.caller.sees_model(model) and self.shows(model.project_crn)

    def may(self, right: Right, project_crn: str | None, model_crn: str | None = None) -> bool:
        return project_crn is not None and self.caller.may(right, project_crn, model_crn)

    def check(
        self, right: Right, project_crn: str | None, what: str, model_crn: str | None = None
    ) -> None:
        """``Caller.check``; once it passes, the audit log's entry for this request (written by
        ``web.audit`` after the response) names the project acted in."""
        self.caller.check(right, project_crn, what, model_crn)
        self.request.state.caller = replace(self.caller, project_crn=project_crn)


def _nav(caller: Caller) -> list[tuple[str, str, str]]:
    """The header's pages: every page the caller may open (audit: server admins and project
    admins; keys: server admins)."""
    nav = [
        ("overview", "/ui/", "Overview"),
        ("metrics", "/ui/metrics", "Metrics"),
        ("drift", "/ui/drift", "Drift"),
        ("jobs", "/ui/jobs", "Jobs"),
        ("experiments", "/ui/experiments", "Experiments"),
        ("alerts", "/ui/alerts", "Alerts"),
        ("project", "/ui/project", "Project"),
        ("secrets", "/ui/secrets", "Secrets"),
        ("cluster", "/ui/cluster", "Cluster"),
    ]
    if caller.server_admin or any(role.rank >= 3 for role in caller.roles.values()):
        nav.append(("audit", "/ui/audit", "Audit"))
    if caller.server_admin:
        nav.append(("keys", "/ui/keys", "Keys"))
    return nav


def sessions(request: Request) -> SessionStore:
    """The app's session store, made on first use (the registry exists only after startup)."""
    store: SessionStore | None = getattr(request.app.state, "ui_sessions", None)
    if store is None:
        store = SessionStore(services_of(request).registry)
        request.app.state.ui_sessions = store
    return store


def render(
    request: Request,
    template: str,
    code: int = 200,
    ctx: Ctx | None = None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    here = request.url.path
    html = _env.get_template(template).render(
        session=ctx.session if ctx else None,
        csrf=ctx.session.csrf if ctx else "",
        nav=_nav(ctx.caller) if ctx else [],
        projects=ctx.projects if ctx else (),
        chosen_project=ctx.chosen if ctx else None,
        here=here if here.startswith("/ui/") else "/ui/",
        version=package_version(),
        notice=_NOTICES.get(request.query_params.get("notice", "")),
        store_down=_store_down(request),
        **context,
    )
    return HTMLResponse(html, status_code=code, headers={**_SECURITY_HEADERS, **(headers or {})})


def _store_down(request: Request) -> dict[str, Any] | None:
    """The store's health report when it is unavailable (every page then shows a banner)."""
    health = getattr(getattr(request.app.state, "services", None), "store_health", None)
    if health is None or health.available:
        return None
    report: dict[str, Any] = health.report(detail=True)
    report["since"] = iso_utc(report["since_ms"])
    return report


def iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/ui/login?" + urllib.parse.urlencode({"next": target}), 303)


Body = Callable[[Ctx], Awaitable[Response]]


async def page(request: Request, body: Body) -> Response:
    """Run ``body`` for a signed-in session; sign-in redirect without one; errors as a page."""
    store = sessions(request)
    session = store.get(request.cookies.get(COOKIE))
    if session is None:
        return to_login(request)
    ctx: Ctx | None = None
    try:
        ctx = await off_loop(_context, request, store, session)
        request.state.caller = ctx.caller  # the audit log names who acted
        return await body(ctx)
    except Unauthorized:
        return to_login(request)
    except ModelyardError as error:
        return render(request, "error.html", error.status, ctx, error=error, active="")


def _context(request: Request, store: SessionStore, session: Session) -> Ctx:
    """The page's ``Ctx``; a ``project`` query parameter (the switcher's form) changes the
    session's chosen project first ("" or "all": every project). Blocking (registry reads)."""
    caller = store.caller_of(session)
    visible = caller.visible_projects()
    everything = services_of(request).registry.people.list_projects()
    projects = tuple(
        sorted(
            (p for p in everything if visible is None or p.crn in visible),
            key=lambda p: p.full_name,
        )
    )
    wanted = request.query_params.get("project")
    if wanted is not None:
        store.choose_project(session, _project_named(projects, wanted))
    chosen_crn = store.project_of(session)
    chosen = next((p for p in projects if p.crn == chosen_crn), None)
    if chosen is None and len(projects) == 1:
        chosen = projects[0]
    return Ctx(request, session, caller, projects, chosen)


def _project_named(projects: tuple[Project, ...], wanted: str) -> str | None:
    """The CRN of the project ``wanted`` (CRN or owner/name) among ``projects``; None for "" or
    "all"; NotFound naming the accepted ones otherwise."""
    if wanted in ("", "all"):
        return None
    for project in projects:
        if wanted in (project.crn, project.full_name):
            return project.crn
    names = ", ".join(p.full_name for p in projects) or "none"
    raise NotFound(
        f"project {wanted!r} is not a project you can see; accepted: all, or one of: {names}",
        project=wanted,
    )


async def form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (the last value of a name wins)."""
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise InvalidInput(f"the form is {len(body)} bytes; accepted: at most {_MAX_FORM_BYTES}")
    return dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


async def checked_form(request: Request, session: Session) -> dict[str, str]:
    """The form, refused (403) unless it carries the session's CSRF token."""
    fields = await form(request)
    sessions(request).check_csrf(session, fields.get(CSRF_FIELD))
    return fields


def safe_next(value: str | None) -> str:
    """Only a dashboard path: never another site (no open redirect)."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"
