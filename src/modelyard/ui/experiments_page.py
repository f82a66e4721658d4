"""The dashboard's experiments page (``/ui/experiments``): the runs of the projects the caller
sees (and the switcher chose) in a table sorted by any column, charts of a metric across the
chosen runs (its last value per run, and every value over each run), and one run's arguments,
code version, resources, log and kept files, each a download link.

The page renders the run list from ``views.experiments`` (what ``GET /api/v1/experiments``
answers); its script (``static/experiments.js``) then reads the REST API with the session
cookie: ``/experiments/compare`` for the charts' histories, ``/experiments/{run}`` and its
``/logs`` for one run, ``/experiments/{run}/files/{path}`` for a download. Cancel appears for
callers who may operate in every project shown (the REST route checks again).
"""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from modelyard.ui.common import Ctx, page, render, router
from modelyard.views.experiments import visible_experiments
from modelyard.web.access import Right
from modelyard.web.offloop import off_loop
from modelyard.web.services import ServicesDep

__all__ = ["PAGE_LIMIT", "experiments_page"]

PAGE_LIMIT = 200  # runs listed; older ones stay reachable by the CLI and the REST API


def _may_operate(ctx: Ctx) -> bool:
    if ctx.chosen is not None:
        return ctx.may(Right.OPERATE, ctx.chosen.crn)
    return ctx.caller.server_admin or (
        bool(ctx.projects) and all(ctx.may(Right.OPERATE, p.crn) for p in ctx.projects)
    )


@router.get("/ui/experiments")
async def experiments_page(request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        chosen = ctx.chosen.crn if ctx.chosen is not None else None
        found = await off_loop(
            visible_experiments, services.registry, ctx.caller, chosen, PAGE_LIMIT
        )
        return render(
            request,
            "experiments.html",
            200,
            ctx,
            active="experiments",
            data={"experiments": found, "operate": _may_operate(ctx), "limit": PAGE_LIMIT},
            chosen=request.query_params.get("run", ""),
        )

    return await page(request, body)
