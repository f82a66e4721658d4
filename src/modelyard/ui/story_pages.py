"""A model's story pages: ``/ui/models/{name}/timeline`` (what changed and what was seen, on one
time axis, with the events also listed in order) and ``/ui/models/{name}/compare`` (two builds or
two periods side by side with the differences, their intervals and a verdict), both linked from
the model page.

They render ``views.timeline`` and ``views.compare`` (what ``GET /api/v1/models/{name}/timeline``
and ``/compare`` answer) into the page; ``static/story.js`` draws the charts from that data. The
range (timeline) and the sides (compare) are the forms' query parameters, so a view is a link.
"""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from modelyard import clock
from modelyard.errors import NotFound
from modelyard.ui.common import Ctx, page, render, router
from modelyard.views import compare as compare_view
from modelyard.views import timeline as timeline_view
from modelyard.views.models import model_view
from modelyard.web.access import Right, not_found
from modelyard.web.offloop import off_loop
from modelyard.web.services import Services, ServicesDep

__all__ = ["compare_page", "timeline_page"]


def _model(services: Services, ctx: Ctx, name: str) -> tuple[str, int]:
    """(name, created_ms) of a model the caller may read; one 404 otherwise. Blocking."""
    try:
        model = services.registry.get_model(name)
    except NotFound:  # an unknown model and an invisible one answer alike
        model = None
    if model is None or not ctx.caller.sees_model(model):
        raise not_found("model", name)
    ctx.caller.check(Right.READ, model.project_crn, f"model {name!r}", model.crn)
    return model.name, model.created_ms


@router.get("/ui/models/{name}/timeline")
async def timeline_page(name: str, request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        _, created = await off_loop(_model, services, ctx, name)
        chosen = request.query_params.get("range", "7d")
        lo, hi = timeline_view.range_bounds(chosen, clock.now_ms(), created)
        data = await off_loop(timeline_view.timeline, services, name, lo, hi)
        return render(
            request,
            "timeline.html",
            200,
            ctx,
            active="overview",
            name=name,
            data=data,
            ranges=list(timeline_view.RANGES),
            chosen=chosen,
        )

    return await page(request, body)


@router.get("/ui/models/{name}/compare")
async def compare_page(name: str, request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        await off_loop(_model, services, ctx, name)
        a = request.query_params.get("a") or None
        b = request.query_params.get("b") or None
        data = await off_loop(compare_view.compare, services, name, a, b)
        status = await off_loop(model_view, services, name, ctx.caller)
        return render(
            request,
            "compare.html",
            200,
            ctx,
            active="overview",
            name=name,
            data=data,
            may_rollback=bool(status.get("active")),
        )

    return await page(request, body)
