"""The dashboard's Cluster page (``/ui/cluster``): the runtime's nodes with their CPUs, memory
and GPUs (who holds each), how CPU limits are enforced there, what runs on each node with what
it asked for, and what waits for resources and why. It shows ``views.cluster`` (what
``GET /api/v1/cluster`` answers), rendered on the server; reload for a fresh view.
"""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from modelyard.ui.common import Ctx, page, render, router
from modelyard.views.cluster import cluster_view
from modelyard.web.offloop import off_loop
from modelyard.web.services import ServicesDep

__all__ = ["cluster_page"]


@router.get("/ui/cluster")
async def cluster_page(request: Request, services: ServicesDep) -> Response:
    async def body(ctx: Ctx) -> Response:
        view = await off_loop(cluster_view, services, ctx.caller)
        return render(request, "cluster.html", 200, ctx, active="cluster", cluster=view)

    return await page(request, body)
