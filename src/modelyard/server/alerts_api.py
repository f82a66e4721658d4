"""``/api/v1`` routes of monitors: alerts and reference samples.

Thin wrappers around ``modelyard.monitors`` (the CLI calls the same functions) and
``modelyard.views.alerts``; plain ``def`` routes (FastAPI's worker threads), since store reads and
writes block, except the upload, which streams its body and sends the store work ``off_loop``.
Deployments are named by CRN in the query or body, not in the path, since a CRN holds ``/``.

- ``GET /api/v1/alerts?all=false&monitor=&deployment=&project=``: ``{"alerts": [...]}``, newest
  first, firing only unless ``all``: those of the models in projects the caller has a role in
  (a key limited to one model: that model's only).
- ``GET /api/v1/references?deployment=CRN``: ``{"references": [...]}`` without their data.
- ``POST /api/v1/references`` with ``{"deployment": CRN, "name": "training",
  "columns": {"tenure": [...], "plan": [...]}}``: stores the sample (at most 100,000 rows kept).
  The body is read up to ``MAX_UPLOAD_BYTES`` (50 MB; 413 beyond, before any parsing) and may
  hold at most ``MAX_UPLOAD_ROWS`` rows (413 beyond, checked on the parsed lists before a
  DataFrame is built), so one request cannot make the server hold more than a bounded frame.
- ``GET /api/v1/references/data?deployment=CRN&name=training``: the stored sample as columnar
  JSON (``{"columns": {...}, "dtypes": {...}}``), for monitors that run against a server; run
  keys may read it (a job run's: models of its job's project; a deployment's: its own model).

Who may: viewers and above read (lists are filtered, a named deployment is checked: 404 for an
unknown one and for one in a project the caller has no role in); uploading a reference sample
needs contributor in the deployment's model's project.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, ValidationError

from modelyard.errors import InvalidInput, PayloadTooLarge
from modelyard.views.alerts import visible_alerts, visible_references
from modelyard.views.owners import Owners
from modelyard.web.access import Caller, On, Right, requires
from modelyard.web.offloop import off_loop
from modelyard.web.services import ServicesDep

__all__ = ["MAX_UPLOAD_BYTES", "MAX_UPLOAD_ROWS", "router"]

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_UPLOAD_ROWS = 1_000_000

router = APIRouter(prefix="/api/v1", tags=["monitors"])
Reader = Annotated[Caller, Depends(requires(Right.READ))]  # lists, filtered to what it sees
# Uploading a sample changes what monitors compare with: contributors (no run keys).
Uploader = Annotated[Caller, Depends(requires(Right.CHANGE, On.BODY))]
# Monitors read the sample they compare with, also from inside a job (run keys).
DataReader = Annotated[Caller, Depends(requires(Right.READ, On.BODY, run_keys=True))]


class ReferenceUpload(BaseModel):
    deployment: str = Field(description="deployment CRN the sample belongs to")
    name: str = Field(default="training", description="name of the sample")
    columns: dict[str, list[Any]] = Field(description="column name -> values, equal lengths")


@router.get("/alerts", summary="Alerts raised by monitors, newest first")
def alerts(
    services: ServicesDep,
    caller: Reader,
    all: Annotated[bool, Query(description="resolved alerts too")] = False,
    monitor: Annotated[str | None, Query()] = None,
    deployment: Annotated[str | None, Query(description="deployment CRN")] = None,
    project: Annotated[str | None, Query(description="only this project's alerts")] = None,
) -> dict[str, Any]:
    project_crn = Owners(services).project_filter(caller, project)
    return {"alerts": visible_alerts(services, caller, all, monitor, deployment, project_crn)}


@router.get("/references", summary="Reference samples stored for deployments (no data)")
def references(
    services: ServicesDep,
    caller: Reader,
    deployment: Annotated[str | None, Query(description="deployment CRN")] = None,
) -> dict[str, Any]:
    return {"references": visible_references(services, caller, deployment)}


async def _capped_body(request: Request) -> bytes:
    """The body, refused with 413 once it passes ``MAX_UPLOAD_BYTES`` (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise _too_large(f"{int(declared)} bytes")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > MAX_UPLOAD_BYTES:
            raise _too_large(f"more than {MAX_UPLOAD_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(what: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the reference upload is {what}; POST /api/v1/references accepts at most "
        f"{MAX_UPLOAD_BYTES} bytes (50 MB) and {MAX_UPLOAD_ROWS} rows; send a sample (at most "
        "100,000 rows are kept anyway)",
        limit_bytes=MAX_UPLOAD_BYTES,
        limit_rows=MAX_UPLOAD_ROWS,
    )


def _parse_upload(raw: bytes) -> ReferenceUpload:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            f'the reference upload is not JSON ({exc}); send {{"deployment": CRN, '
            '"name": "training", "columns": {"tenure": [...], ...}}'
        ) from None
    if isinstance(data, dict) and isinstance(data.get("columns"), dict):
        for name, values in data["columns"].items():
            if isinstance(values, list) and len(values) > MAX_UPLOAD_ROWS:
                raise PayloadTooLarge(
                    f"reference column {name!r} has {len(values)} rows; POST /api/v1/references "
                    f"accepts at most {MAX_UPLOAD_ROWS} rows (at most 100,000 are kept); send a "
                    "sample",
                    limit_rows=MAX_UPLOAD_ROWS,
                )
    try:
        return ReferenceUpload.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(
            f'reference upload field {where!r}: {first["msg"]}; send {{"deployment": CRN, '
            '"name": "training", "columns": {"tenure": [...], ...}}'
        ) from None


@router.post(
    "/references",
    status_code=201,
    summary="Store a reference sample (columnar JSON, at most 50 MB and 1,000,000 rows)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ReferenceUpload.model_json_schema()}},
        }
    },
)
async def upload(request: Request, services: ServicesDep, caller: Uploader) -> dict[str, Any]:
    """``async``: the body is counted while it streams; the store work runs ``off_loop``."""
    import pandas as pd

    from modelyard.monitors import upload_reference

    body = _parse_upload(await _capped_body(request))
    # The deployment first: 404 or 403 before anything else is said about the upload.
    await off_loop(Owners(services).check_deployment, caller, Right.CHANGE, body.deployment)
    lengths = {name: len(values) for name, values in body.columns.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidInput(
            f"reference columns have different lengths {lengths!r}; every column needs one "
            "value per row"
        )

    def work() -> dict[str, Any]:
        services.store.resolve(body.deployment)  # NotFound for an unknown deployment
        frame = pd.DataFrame(body.columns)
        return upload_reference(frame, body.deployment, body.name, store=services.store)

    return await off_loop(work)


@router.get("/references/data", summary="A stored reference sample as columnar JSON")
def reference_data(
    services: ServicesDep,
    caller: DataReader,
    deployment: Annotated[str, Query(min_length=1, max_length=300, description="CRN")],
    name: Annotated[str, Query(min_length=1, max_length=100)] = "training",
) -> dict[str, Any]:
    from modelyard.monitors.references import reference_columns

    Owners(services).check_deployment(caller, Right.READ, deployment)
    services.store.resolve(deployment)  # NotFound for an unknown deployment
    columns, dtypes = reference_columns(deployment, name, store=services.store)
    return {"deployment_crn": deployment, "name": name, "columns": columns, "dtypes": dtypes}
