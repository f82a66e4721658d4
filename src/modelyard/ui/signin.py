"""Signing in and out of the dashboard, and the hook that lets a session's cookie stand for the
caller in REST calls made by the pages' scripts (``app.state.session_caller``).

The sign-in form takes a user name and password (the primary way) or an API key (the second
one, for automation and for homes without passwords yet). Every attempt is audited through
``registry.audit.record`` (``ui.sign_in``, outcome ``ok`` or ``denied``, the client's address,
never the password or key), and failed ones are rate-limited per name and address
(``session.FailedSignIns``). The form itself carries a login CSRF token (double submit: a cookie
scoped to ``/ui/login`` and a hidden field), so another site cannot sign a browser in.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import RedirectResponse, Response

from modelyard.errors import ModelyardError
from modelyard.registry import Registry
from modelyard.ui.common import Ctx, form, page, render, router, safe_next, sessions
from modelyard.ui.session import COOKIE, CSRF_FIELD, CSRF_HEADER, Session
from modelyard.web.access import Caller
from modelyard.web.errors import error_response
from modelyard.web.offloop import off_loop
from modelyard.web.services import services_of

__all__ = ["install", "session_caller"]

_LOGIN_CSRF = "modelyard_login_csrf"
_log = logging.getLogger(__name__)


def install(app: FastAPI) -> None:
    """Let the REST dependency (``web.access.requires``) take a dashboard session's caller."""
    app.state.session_caller = session_caller


def session_caller(request: Request) -> Caller | None:
    """The caller of the request's dashboard session (None: no session). State-changing methods
    must send the session's CSRF token in ``X-CSRF-Token``; Unauthorized once the session's user
    is disabled or its key revoked. Blocking on a cache miss (``requires`` runs on a thread)."""
    store = sessions(request)
    session = store.get(request.cookies.get(COOKIE))
    if session is None:
        return None
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        store.check_csrf(session, request.headers.get(CSRF_HEADER))
    return store.caller_of(session)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/", 303)


@router.get("/ui/login")
async def login_page(request: Request) -> Response:
    return _login_form(request, request.query_params.get("next"))


def _login_form(
    request: Request,
    next_path: str | None,
    error: str | None = None,
    status: int = 200,
    name: str = "",
) -> Response:
    """The sign-in form with a login CSRF token (double submit: cookie and hidden field)."""
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        status,
        None,
        login_csrf=token,
        next=safe_next(next_path),
        error=error,
        name=name,
    )
    response.set_cookie(
        _LOGIN_CSRF,
        token,
        max_age=1800,
        path="/ui/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/ui/login")
async def login(request: Request) -> Response:
    fields = await form(request)
    cookie = request.cookies.get(_LOGIN_CSRF, "")
    given = fields.get(CSRF_FIELD, "")
    if not cookie or not secrets.compare_digest(cookie.encode(), given.encode()):
        return _login_form(
            request, fields.get("next"), "The form expired; sign in again.", status=403
        )
    address = request.client.host if request.client else "unknown"
    name = fields.get("name", "").strip()
    try:
        session = await off_loop(_sign_in, request, fields, name, address)
    except ModelyardError as error:
        headers = {}
        if "retry_after_s" in error.details:
            headers["Retry-After"] = str(error.details["retry_after_s"])
        response = _login_form(
            request, fields.get("next"), error.message, status=error.status, name=name
        )
        response.headers.update(headers)
        return response
    response = RedirectResponse(safe_next(fields.get("next")), 303)
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=(session.expires_ms // 1000) - int(time.time()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(_LOGIN_CSRF, path="/ui/login")
    return response


def _sign_in(request: Request, fields: dict[str, str], name: str, address: str) -> Session:
    """A session for the form's name and password, or else its API key; audited either way.
    Blocking (argon2 and registry reads)."""
    store = sessions(request)
    registry = services_of(request).registry
    token = fields.get("api_key", "").strip()
    if name or not token:
        store.failures.check(name, address)  # 429 before any password check
        try:
            session = store.sign_in_password(name, fields.get("password", ""))
        except ModelyardError as error:
            store.failures.failed(name, address)
            _audit(registry, name or "anonymous", "denied", address, error.status, "password")
            raise
        store.failures.succeeded(name, address)
        _audit(registry, name, "ok", address, 200, "password")
        return session
    try:
        session = store.sign_in_key(token)
    except ModelyardError as error:
        _audit(registry, "anonymous", "denied", address, error.status, "api_key")
        raise
    _audit(registry, session.actor, "ok", address, 200, "api_key")
    return session


def _audit(
    registry: Registry, actor: str, outcome: str, address: str, status: int, method: str
) -> None:
    """``registry.audit.record`` for a sign-in; never the password or key. A failure to write
    the log is logged, not shown: it must not decide whether someone may sign in."""
    audit: Any = getattr(registry, "audit", None)
    if audit is None:
        return
    try:
        audit.record(
            actor=actor,
            action="ui.sign_in",
            address=address,
            outcome=outcome,
            status=status,
            details={"method": method},
        )
    except Exception:  # audited best effort: a failure is reported in the server log
        _log.exception("could not audit the sign-in of %r", actor)


@router.get("/ui/switch")
async def switch_project(request: Request) -> Response:
    """The header's project switcher: ``page`` applies ``?project=`` to the session, then back
    to the page the switcher was on (``next``, a dashboard path only)."""

    async def body(ctx: Ctx) -> Response:
        return RedirectResponse(safe_next(request.query_params.get("next")), 303)

    return await page(request, body)


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    store = sessions(request)
    session = store.get(request.cookies.get(COOKIE))
    if session is not None:
        fields = await form(request)
        try:
            store.check_csrf(session, fields.get(CSRF_FIELD))
        except ModelyardError as error:
            return error_response(error)
        store.sign_out(session.id)
    response = RedirectResponse("/ui/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response
