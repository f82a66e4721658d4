"""``GET /api/v1/cluster``: the runtime's nodes (their CPUs, memory and GPUs), what is placed on
each, and what waits for resources (``views.cluster``; docs/resources.md).

Any caller with a role reads it; what runs is named only where the caller may read it. A plain
``def`` route: FastAPI runs it on its thread pool (it reads the registry and the runtime).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from modelyard.views.cluster import cluster_view
from modelyard.web.access import Caller, Right, requires
from modelyard.web.services import ServicesDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["cluster"])

Reader = Annotated[Caller, Depends(requires(Right.READ))]  # names filtered to what it sees


@router.get("/cluster", summary="Nodes, their CPUs, memory and GPUs, what runs where, what waits")
def cluster(services: ServicesDep, caller: Reader) -> dict[str, Any]:
    return cluster_view(services, caller)
