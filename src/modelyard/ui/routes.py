"""The dashboard's routes under ``/ui``: sign in and out, one page per view, the forms' actions
and the static files. Mounted by ``modelyard.server.app`` with ``mount(app)``.

Pages render data from ``modelyard.views`` (what the REST routes show too) and the
registry/controller calls the REST routes make (never queries of their own); their scripts then
refresh it with ``fetch()`` calls to the REST API, authenticated by the session cookie
(``app.state.session_key``). Forms that change state carry the session's CSRF token. Every page
but ``/ui/login`` and ``/ui/static/*`` needs a session; without one the browser is sent to the
sign-in page. The dashboard imports ``views`` and ``web`` only, never ``server`` (which mounts
it). Every registry or store call runs ``off_loop``: the event loop also carries predictions.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import orjson
import pydantic
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from modelyard.errors import InvalidInput, ModelyardError, Unauthorized
from modelyard.registry import ApiKey
from modelyard.ui.assets import plotly_style_ids, static_path
from modelyard.ui.session import COOKIE, CSRF_FIELD, CSRF_HEADER, Session, SessionStore
from modelyard.version import package_version
from modelyard.views import drift, insights
from modelyard.views.alerts import visible_alerts
from modelyard.views.jobs import visible_jobs
from modelyard.views.models import model_view
from modelyard.web.auth import (
    Capability,
    authorize,
    may_administer,
    model_scope,
    scoped_model,
)
from modelyard.web.errors import error_response
from modelyard.web.keys import CreateKeyRequest, new_key
from modelyard.web.offloop import off_loop
from modelyard.web.services import Services, ServicesDep, services_of

__all__ = ["mount", "router"]

_HERE = Path(__file__).parent
_LOGIN_CSRF = "modelyard_login_csrf"
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
router = APIRouter(include_in_schema=False)

# One entry per page; a page whose part is missing would be left out here rather than faked.
NAV = (
    ("overview", "/ui/", "Overview"),
    ("metrics", "/ui/metrics", "Metrics"),
    ("drift", "/ui/drift", "Drift"),
    ("jobs", "/ui/jobs", "Jobs"),
    ("alerts", "/ui/alerts", "Alerts"),
    ("keys", "/ui/keys", "Keys"),
)

_NOTICES = {
    "rolled-back": "Rolled back: the chosen build serves the model now.",
    "revoked": "The key was revoked.",
}


def mount(app: FastAPI) -> None:
    """Add the dashboard to ``app``; its sessions live in ``app.state`` once services open."""
    app.include_router(router)
    app.state.session_key = _session_key


def _sessions(request: Request) -> SessionStore:
    """The app's session store, made on first use (the registry exists only after startup)."""
    store: SessionStore | None = getattr(request.app.state, "ui_sessions", None)
    if store is None:
        store = SessionStore(services_of(request).registry)
        request.app.state.ui_sessions = store
    return store


def _session_key(request: Request) -> ApiKey | None:
    """The API key of the request's session (for REST calls made by the pages' scripts);
    state-changing methods must send the session's CSRF token in ``X-CSRF-Token``."""
    sessions = _sessions(request)
    session = sessions.get(request.cookies.get(COOKIE))
    if session is None:
        return None
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        sessions.check_csrf(session, request.headers.get(CSRF_HEADER))
    return sessions.key_of(session)


def _render(
    request: Request,
    template: str,
    code: int = 200,
    session: Session | None = None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    page = _env.get_template(template).render(
        session=session,
        csrf=session.csrf if session else "",
        nav=NAV,
        version=package_version(),
        notice=_NOTICES.get(request.query_params.get("notice", "")),
        store_down=_store_down(request),
        **context,
    )
    return HTMLResponse(page, status_code=code, headers={**_SECURITY_HEADERS, **(headers or {})})


def _store_down(request: Request) -> dict[str, Any] | None:
    """The store's health report when it is unavailable (every page then shows a banner)."""
    health = getattr(getattr(request.app.state, "services", None), "store_health", None)
    if health is None or health.available:
        return None
    report: dict[str, Any] = health.report(detail=True)
    report["since"] = _iso_utc(report["since_ms"])
    return report


def _iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/ui/login?" + urllib.parse.urlencode({"next": target}), 303)


Page = Callable[[Session, ApiKey], Awaitable[Response]]


async def _page(request: Request, page: Page) -> Response:
    """Run ``page`` for a signed-in session; sign-in redirect without one; errors as a page."""
    sessions = _sessions(request)
    session = sessions.get(request.cookies.get(COOKIE))
    if session is None:
        return _to_login(request)
    try:
        key = await off_loop(sessions.key_of, session)
        return await page(session, key)
    except Unauthorized:
        return _to_login(request)
    except ModelyardError as error:
        return _render(request, "error.html", error.status, session, error=error, active="")


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (the last value of a name wins)."""
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise InvalidInput(f"the form is {len(body)} bytes; accepted: at most {_MAX_FORM_BYTES}")
    return dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _safe_next(value: str | None) -> str:
    """Only a dashboard path: never another site (no open redirect)."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


# -- sign in and out ------------------------------------------------------------------------------


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/", 303)


@router.get("/ui/login")
async def login_page(request: Request) -> Response:
    return _login_form(request, request.query_params.get("next"))


def _login_form(
    request: Request, next_path: str | None, error: str | None = None, status: int = 200
) -> Response:
    """The sign-in form with a login CSRF token (double submit: cookie and hidden field)."""
    token = secrets.token_urlsafe(32)
    response = _render(
        request,
        "login.html",
        status,
        None,
        login_csrf=token,
        next=_safe_next(next_path),
        error=error,
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
    form = await _form(request)
    cookie = request.cookies.get(_LOGIN_CSRF, "")
    given = form.get(CSRF_FIELD, "")
    if not cookie or not secrets.compare_digest(cookie.encode(), given.encode()):
        return _login_form(
            request, form.get("next"), "The form expired; sign in again.", status=403
        )
    try:
        session = await off_loop(_sessions(request).sign_in, form.get("api_key", ""))
    except ModelyardError as error:
        return _login_form(request, form.get("next"), error.message, status=error.status)
    response = RedirectResponse(_safe_next(form.get("next")), 303)
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


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    sessions = _sessions(request)
    session = sessions.get(request.cookies.get(COOKIE))
    if session is not None:
        form = await _form(request)
        try:
            sessions.check_csrf(session, form.get(CSRF_FIELD))
        except ModelyardError as error:
            return error_response(error)
        sessions.sign_out(session.id)
    response = RedirectResponse("/ui/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response


async def _checked_form(request: Request, session: Session) -> dict[str, str]:
    form = await _form(request)
    _sessions(request).check_csrf(session, form.get(CSRF_FIELD))
    return form


# -- pages ----------------------------------------------------------------------------------------


@router.get("/ui/")
async def overview_page(request: Request, services: ServicesDep) -> Response:
    async def page(session: Session, key: ApiKey) -> Response:
        authorize(key, Capability.READ_MODELS)
        data = await off_loop(insights.overview, services, None, model_scope(key))
        return _render(request, "overview.html", 200, session, active="overview", data=data)

    return await _page(request, page)


@router.get("/ui/models/{name}")
async def model_page(name: str, request: Request, services: ServicesDep) -> Response:
    async def page(session: Session, key: ApiKey) -> Response:
        authorize(key, Capability.READ_MODELS)
        status = await off_loop(model_view, services, name, key)
        builds = status.get("builds", [])
        active = status.get("active") or {}
        log_build = active.get("build_crn") or (builds[0]["crn"] if builds else None)
        wanted = request.query_params.get("log")  # any build's log, a failed one's especially
        if wanted:
            crns = [b["crn"] for b in builds]
            chosen = [c for c in crns if c.rsplit("/", 1)[-1] == wanted]
            if not chosen:
                ids = ", ".join(c.rsplit("/", 1)[-1] for c in crns) or "none"
                raise InvalidInput(
                    f"log={wanted!r} is not a build of model {name!r}; its builds: {ids}"
                )
            log_build = chosen[0]
        log: list[str] = []
        if log_build:
            build_id = log_build.rsplit("/", 1)[-1]
            try:
                log = await off_loop(insights.build_log, services, name, build_id)
            except ModelyardError as error:
                log = [f"(no log: {error.message})"]
        example = next((b.get("example") for b in builds if b.get("ok")), None)
        return _render(
            request,
            "model.html",
            200,
            session,
            active="overview",
            name=name,
            status=status,
            log_build=log_build,
            log=log,
            example=orjson.dumps(example, option=orjson.OPT_INDENT_2).decode(),
            is_admin=may_administer(key),
        )

    return await _page(request, page)


@router.post("/ui/models/{name}/rollback")
async def rollback_action(name: str, request: Request, services: ServicesDep) -> Response:
    async def page(session: Session, key: ApiKey) -> Response:
        form = await _checked_form(request, session)
        authorize(key, Capability.ADMIN)
        build = form.get("build") or None
        await _check_model_scope(services, key, name)
        outcome = await services.controller.rollback(name, build)  # what the REST route calls
        services.models.drop(name)
        if not getattr(outcome, "ok", True):
            raise InvalidInput(
                f"rolling model {name!r} back to {build!r} failed; the running deployment still "
                f"serves: {getattr(outcome, 'error', '') or 'see the build log'}"
            )
        quoted = urllib.parse.quote(name, safe="")
        return RedirectResponse(f"/ui/models/{quoted}?notice=rolled-back", 303)

    return await _page(request, page)


@router.post("/ui/models/{name}/try")
async def try_model(name: str, request: Request, services: ServicesDep) -> Response:
    """The test form's call (a ``fetch()`` with the CSRF header): the body is the function's
    input, sent through ``Gateway.invoke`` like ``POST /api/v1/models/{name}/predict``."""
    try:
        key = await off_loop(_session_key, request)  # a registry read on a cache miss
        if key is None:
            raise Unauthorized("sign in to the dashboard first")
        authorize(key, Capability.CALL)
        body = await request.body()
        await _check_model_scope(services, key, name)
        model = await off_loop(services.models.get, name)
        if len(body) > model.settings.max_body_bytes:
            raise InvalidInput(
                f"the input is {len(body)} bytes; model {name!r} accepts at most "
                f"{model.settings.max_body_bytes}"
            )
    except ModelyardError as error:
        return error_response(error)
    result = await services.gateway.invoke(name, body)
    return Response(result.body(), status_code=result.http_status, media_type="application/json")


@router.get("/ui/metrics")
async def metrics_page(request: Request, services: ServicesDep) -> Response:
    async def page(session: Session, key: ApiKey) -> Response:
        authorize(key, Capability.READ_MODELS)
        options = await _deployment_options(services, key)
        chosen = request.query_params.get("deployment") or (options[0]["crn"] if options else "")
        return _render(
            request,
            "metrics.html",
            200,
            session,
            active="metrics",
            deployments=options,
            chosen=chosen,
            metric=request.query_params.get("metric", ""),
        )

    return await _page(request, page)


async def _check_model_scope(services: Services, key: ApiKey, name: str) -> None:
    """Forbidden when ``key`` is limited to another model, the same answer for an unknown one
    (``auth.scoped_model``: the rule every REST route uses)."""
    await off_loop(scoped_model, services.registry, key, name)


async def _deployment_options(services: Services, key: ApiKey) -> list[dict[str, str]]:
    """The deployments ``key`` may read (a scoped key: its model's only), for the pickers."""
    scope = model_scope(key)
    deployments = await off_loop(services.registry.list_deployments)
    models = {m.crn: m.name for m in await off_loop(services.registry.list_models)}
    deployments = [d for d in deployments if scope is None or d.model_crn == scope]
    return [
        {
            "crn": d.crn,
            "label": f"{models.get(d.model_crn, d.model_crn)} · {d.crn.rsplit('/', 1)[-1][:8]}"
            f" ({d.state.value})",
        }
        for d in deployments
    ]


@router.get("/ui/drift")
async def drift_page(request: Request, services: ServicesDep) -> Response:
    async def page(session: Session, key: ApiKey) -> Response:
        authorize(key, Capability.READ_MODELS)
        options = await _deployment_options(services, key)
        chosen = request.query_params.get("deployment") or (options[0]["crn"] if options else "")
        return _render(
            request,
            "drift.html",
            200,
            session,
            active="drift",
            deployments=options,
            chosen=chosen,
            methods=drift.METHODS,
        )

    return await _page(request, page)


@router.get("/ui/jobs")
async def jobs_page(request: Request, services: ServicesDep) -> Response:
    async def page(session: Session, key: ApiKey) -> Response:
        authorize(key, Capability.READ_MODELS)
        jobs = await off_loop(visible_jobs, services.registry, key)
        return _render(
            request,
            "jobs.html",
            200,
            session,
            active="jobs",
            data={"jobs": jobs, "admin": may_administer(key)},
            chosen=request.query_params.get("job", ""),
        )

    return await _page(request, page)


@router.get("/ui/alerts")
async def alerts_page(request: Request, services: ServicesDep) -> Response:
    async def page(session: Session, key: ApiKey) -> Response:
        authorize(key, Capability.READ_MODELS)
        show_all = request.query_params.get("all") == "1"
        found = await off_loop(visible_alerts, services, key, show_all)
        return _render(
            request, "alerts.html", 200, session, active="alerts", alerts=found, show_all=show_all
        )

    return await _page(request, page)


@router.get("/ui/keys")
async def keys_page(request: Request, services: ServicesDep) -> Response:
    async def page(session: Session, key: ApiKey) -> Response:
        authorize(key, Capability.ADMIN)
        return await _keys(request, services, session)

    return await _page(request, page)


async def _keys(
    request: Request,
    services: Services,
    session: Session,
    created: Any = None,
    token: str | None = None,
) -> Response:
    keys = await off_loop(services.registry.list_api_keys)
    return _render(
        request,
        "keys.html",
        201 if token else 200,
        session,
        active="keys",
        keys=keys,
        created=created,
        token=token,
    )


@router.post("/ui/keys")
async def create_key_action(request: Request, services: ServicesDep) -> Response:
    async def page(session: Session, key: ApiKey) -> Response:
        form = await _checked_form(request, session)
        authorize(key, Capability.ADMIN)
        try:
            body = CreateKeyRequest(
                name=form.get("name") or "key",
                role=form.get("role") or "user",
                expires=form.get("expires") or "365d",
                scope=form.get("scope") or None,
            )
        except pydantic.ValidationError as exc:
            raise InvalidInput(f"the key is not accepted: {exc.errors()[0]['msg']}") from None
        created, token = await off_loop(new_key, services.registry, body)
        return await _keys(request, services, session, created, token)

    return await _page(request, page)


@router.post("/ui/keys/{key_id}/revoke")
async def revoke_key_action(key_id: str, request: Request, services: ServicesDep) -> Response:
    async def page(session: Session, key: ApiKey) -> Response:
        await _checked_form(request, session)
        authorize(key, Capability.ADMIN)
        await off_loop(services.registry.revoke_api_key, key_id)
        _sessions(request).forget_key(key_id)
        return RedirectResponse("/ui/keys?notice=revoked", 303)

    return await _page(request, page)


# -- static files ---------------------------------------------------------------------------------


@router.get("/ui/static/{name}")
async def static(name: str) -> Response:
    """Only the files in ``STATIC`` (a fixed table): the request never becomes a path."""
    path, media_type = static_path(name)
    return FileResponse(
        path,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
