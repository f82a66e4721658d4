"""The dashboard's model and job pages under ``/ui``, the forms' actions and the static files;
``mount(app)`` adds every dashboard route (these, ``signin`` and ``people_pages``) to the app.

Pages render data from ``modelyard.views`` (what the REST routes show too) and the
registry/controller calls the REST routes make (never queries of their own); their scripts then
refresh it with ``fetch()`` calls to the REST API, authenticated by the session cookie
(``app.state.session_caller``). Each page shows what the session's ``Caller`` may see, in the
project the header's switcher chose (or all of the caller's): a model of a project the caller
has no role in answers 404 like an unknown name, and controls (rollback, run now) appear only
for callers whose role allows them (the action checks again). Forms that change state carry the
session's CSRF token. The dashboard imports ``views`` and ``web`` only, never ``server`` (which
mounts it). Every registry or store call runs ``off_loop``: the event loop also carries
predictions.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

import orjson
import pydantic
from fastapi import FastAPI, Request
from starlette.responses import FileResponse, RedirectResponse, Response

from modelyard.errors import Forbidden, InvalidInput, ModelyardError, NotFound, Unauthorized
from modelyard.registry import Model
from modelyard.ui import cluster_page, experiments_page, people_pages, signin, story_pages
from modelyard.ui.assets import static_path
from modelyard.ui.common import Ctx, checked_form, page, render, router, sessions
from modelyard.views import drift, insights
from modelyard.views.alerts import visible_alerts
from modelyard.views.jobs import visible_jobs
from modelyard.views.models import model_view
from modelyard.views.trends import overview_trends
from modelyard.web.access import Caller, On, Right, Rule, not_found
from modelyard.web.errors import error_response
from modelyard.web.keys import CreateKeyRequest, new_key
from modelyard.web.offloop import off_loop
from modelyard.web.services import Services, ServicesDep

__all__ = ["RULES", "mount", "router"]

# Their routes are on ``router`` too.
_PAGE_MODULES = (people_pages, signin, experiments_page, cluster_page, story_pages)

RULES: Mapping[tuple[str, str], Rule | None] = {
    # public: the sign-in form, signing out (a session is optional), the static files
    ("GET", "/"): None,
    ("GET", "/ui/login"): None,
    ("POST", "/ui/login"): None,
    ("POST", "/ui/logout"): None,
    ("GET", "/ui/static/{name}"): None,
    # lists: filtered to what the caller may read (and the switcher's project)
    ("GET", "/ui/"): Rule(Right.READ),
    ("GET", "/ui/metrics"): Rule(Right.READ),
    ("GET", "/ui/drift"): Rule(Right.READ),
    ("GET", "/ui/jobs"): Rule(Right.READ),
    ("GET", "/ui/experiments"): Rule(Right.READ),
    ("GET", "/ui/cluster"): Rule(Right.READ),  # what is placed is filtered to the caller's
    ("GET", "/ui/alerts"): Rule(Right.READ),
    ("GET", "/ui/project"): Rule(Right.READ),
    ("GET", "/ui/secrets"): Rule(Right.READ),
    ("GET", "/ui/switch"): Rule(Right.SIGNED_IN),
    ("GET", "/ui/audit"): Rule(Right.MANAGE),  # the projects the caller administers
    # one object: 404 without a role in its project, 403 with a role too low
    ("GET", "/ui/models/{name}"): Rule(Right.READ, On.MODEL),
    ("GET", "/ui/models/{name}/timeline"): Rule(Right.READ, On.MODEL),
    ("GET", "/ui/models/{name}/compare"): Rule(Right.READ, On.MODEL),
    ("POST", "/ui/models/{name}/rollback"): Rule(Right.CHANGE, On.MODEL),
    ("POST", "/ui/models/{name}/try"): Rule(Right.OPERATE, On.MODEL),
    ("POST", "/ui/project/collaborators"): Rule(Right.MANAGE, On.BODY),
    ("POST", "/ui/secrets"): Rule(Right.CHANGE, On.BODY),
    # server administration
    ("GET", "/ui/keys"): Rule(Right.SERVER),
    ("POST", "/ui/keys"): Rule(Right.SERVER),
    ("POST", "/ui/keys/{key_id}/revoke"): Rule(Right.SERVER),
}
"""What each dashboard route needs (None: public), for the authorization matrix; the handlers
check it with ``Caller.check`` (a dashboard page answers with a page, not a dependency's JSON).
``tests/ui/test_session.py`` fails on a route missing here."""


def mount(app: FastAPI) -> None:
    """Add the dashboard to ``app``; its sessions live in ``app.state`` once services open."""
    app.include_router(router)
    signin.install(app)


def visible_model(services: Services, caller: Caller, name: str) -> Model:
    """The model ``name`` (name or CRN) if ``caller`` sees it; one NotFound for an unknown model
    and for one in a project the caller has no role in (existence must not leak). Blocking."""
    try:
        model = services.registry.get_model(name)
    except NotFound:
        model = None
    if model is None or not caller.sees_model(model):
        raise not_found("model", name)
    return model


def _shown_models(services: Services, ctx: Ctx) -> dict[str, Model]:
    """CRN -> model for the models this page lists (caller and switcher). Blocking."""
    return {m.crn: m for m in services.registry.list_models() if ctx.shows_model(m)}


def _chosen(ctx: Ctx) -> str | None:
    return ctx.chosen.crn if ctx.chosen is not None else None


def _may_everywhere(ctx: Ctx, right: Right) -> bool:
    """Whether ``right`` holds in every project the page shows (controls shown for a list)."""
    if ctx.chosen is not None:
        return ctx.may(right, ctx.chosen.crn)
    return ctx.caller.server_admin or (
        bool(ctx.projects) and all(ctx.may(right, p.crn) for p in ctx.projects)
    )


# -- pages ----------------------------------------------------------------------------------------


@router.get("/ui/")
async def overview_page(request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        data = await off_loop(insights.overview, services, ctx.caller, None, _chosen(ctx))
        trends = await off_loop(overview_trends, services, data["models"], data["generated_ms"])
        return render(
            request, "overview.html", 200, ctx, active="overview", data=data, trends=trends
        )

    return await page(request, body)


@router.get("/ui/models/{name}")
async def model_page(name: str, request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        model = await off_loop(visible_model, services, ctx.caller, name)
        status = await off_loop(model_view, services, name, ctx.caller)
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
        return render(
            request,
            "model.html",
            200,
            ctx,
            active="overview",
            name=name,
            status=status,
            log_build=log_build,
            log=log,
            example=orjson.dumps(example, option=orjson.OPT_INDENT_2).decode(),
            is_admin=ctx.may(Right.CHANGE, model.project_crn, model.crn),
            may_call=ctx.may(Right.OPERATE, model.project_crn, model.crn),
        )

    return await page(request, body)


@router.post("/ui/models/{name}/rollback")
async def rollback_action(name: str, request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        form = await checked_form(request, ctx.session)
        model = await off_loop(visible_model, services, ctx.caller, name)
        ctx.check(Right.CHANGE, model.project_crn, f"model {name!r}", model.crn)
        build = form.get("build") or None
        outcome = await services.controller.rollback(name, build)  # what the REST route calls
        services.models.drop(name)
        if not getattr(outcome, "ok", True):
            raise InvalidInput(
                f"rolling model {name!r} back to {build!r} failed; the running deployment still "
                f"serves: {getattr(outcome, 'error', '') or 'see the build log'}"
            )
        quoted = urllib.parse.quote(name, safe="")
        return RedirectResponse(f"/ui/models/{quoted}?notice=rolled-back", 303)

    return await page(request, body)


@router.post("/ui/models/{name}/try")
async def try_model(name: str, request: Request, services: ServicesDep) -> Response:
    """The test form's call (a ``fetch()`` with the CSRF header): the body is the function's
    input, sent through ``Gateway.invoke`` like ``POST /api/v1/models/{name}/predict``."""
    try:
        caller = await off_loop(signin.session_caller, request)  # a read on a cache miss
        if caller is None:
            raise Unauthorized("sign in to the dashboard first")
        body = await request.body()
        model = await off_loop(visible_model, services, caller, name)
        caller.check(Right.OPERATE, model.project_crn or "", f"model {name!r}", model.crn)
        model_state = await off_loop(services.models.get, name)
        if len(body) > model_state.settings.max_body_bytes:
            raise InvalidInput(
                f"the input is {len(body)} bytes; model {name!r} accepts at most "
                f"{model_state.settings.max_body_bytes}"
            )
    except ModelyardError as error:
        return error_response(error)
    result = await services.gateway.invoke(name, body)
    return Response(result.body(), status_code=result.http_status, media_type="application/json")


@router.get("/ui/metrics")
async def metrics_page(request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        options = await off_loop(_deployment_options, services, ctx)
        chosen = request.query_params.get("deployment") or (options[0]["crn"] if options else "")
        return render(
            request,
            "metrics.html",
            200,
            ctx,
            active="metrics",
            deployments=options,
            chosen=chosen,
            metric=request.query_params.get("metric", ""),
        )

    return await page(request, body)


def _deployment_options(services: Services, ctx: Ctx) -> list[dict[str, str]]:
    """The deployments of the models the page shows, for the pickers. Blocking."""
    models = _shown_models(services, ctx)
    deployments = [d for d in services.registry.list_deployments() if d.model_crn in models]
    return [
        {
            "crn": d.crn,
            "label": f"{models[d.model_crn].name} · {d.crn.rsplit('/', 1)[-1][:8]}"
            f" ({d.state.value})",
        }
        for d in deployments
    ]


@router.get("/ui/drift")
async def drift_page(request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        options = await off_loop(_deployment_options, services, ctx)
        chosen = request.query_params.get("deployment") or (options[0]["crn"] if options else "")
        return render(
            request,
            "drift.html",
            200,
            ctx,
            active="drift",
            deployments=options,
            chosen=chosen,
            methods=drift.METHODS,
        )

    return await page(request, body)


@router.get("/ui/jobs")
async def jobs_page(request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        jobs = await off_loop(visible_jobs, services.registry, ctx.caller, _chosen(ctx))
        return render(
            request,
            "jobs.html",
            200,
            ctx,
            active="jobs",
            data={"jobs": jobs, "admin": _may_everywhere(ctx, Right.OPERATE)},
            chosen=request.query_params.get("job", ""),
        )

    return await page(request, body)


@router.get("/ui/alerts")
async def alerts_page(request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        show_all = request.query_params.get("all") == "1"

        found = await off_loop(
            visible_alerts, services, ctx.caller, show_all, project_crn=_chosen(ctx)
        )
        return render(
            request, "alerts.html", 200, ctx, active="alerts", alerts=found, show_all=show_all
        )

    return await page(request, body)


def _server_admin(ctx: Ctx, what: str) -> None:
    if not ctx.caller.server_admin:
        raise Forbidden(
            f"{what} is for server admins, and {ctx.caller.actor!r} does not have the server "
            "admin role; accepted: a user with the admin role (or their admin key)",
            actor=ctx.caller.actor,
        )


@router.get("/ui/keys")
async def keys_page(request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        _server_admin(ctx, "the keys page")
        return await _keys(request, services, ctx)

    return await page(request, body)


async def _keys(
    request: Request, services: Services, ctx: Ctx, created: Any = None, token: str | None = None
) -> Response:
    keys = await off_loop(services.registry.list_api_keys)
    return render(
        request,
        "keys.html",
        201 if token else 200,
        ctx,
        active="keys",
        keys=keys,
        created=created,
        token=token,
    )


@router.post("/ui/keys")
async def create_key_action(request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        form = await checked_form(request, ctx.session)
        _server_admin(ctx, "creating keys in the dashboard")
        fields: dict[str, Any] = {
            "name": form.get("name") or "key",
            "role": form.get("role") or "user",
            "expires": form.get("expires") or "365d",
        }
        for optional in ("scope", "user", "project", "project_role"):
            fields[optional] = form.get(optional) or None
        try:
            request_body = CreateKeyRequest(**fields)
        except pydantic.ValidationError as exc:
            raise InvalidInput(f"the key is not accepted: {exc.errors()[0]['msg']}") from None
        created, token = await off_loop(new_key, services.registry, request_body, ctx.caller)
        return await _keys(request, services, ctx, created, token)

    return await page(request, body)


@router.post("/ui/keys/{key_id}/revoke")
async def revoke_key_action(key_id: str, request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        await checked_form(request, ctx.session)
        _server_admin(ctx, "revoking keys in the dashboard")
        await off_loop(services.registry.revoke_api_key, key_id)
        sessions(request).forget_key(key_id)
        return RedirectResponse("/ui/keys?notice=revoked", 303)

    return await page(request, body)


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
