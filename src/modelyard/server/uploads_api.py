"""``/api/v1/uploads``: project folders sent from a client machine (deploy from a laptop).

The protocol (``modelyard.builds.upload`` is the client's half):

1. ``POST /api/v1/uploads/missing`` ``{"digests": [...]}`` -> ``{"missing": [...], "have": n}``:
   which file contents the server lacks;
2. ``PUT /api/v1/uploads/blobs/{sha256}`` with the raw bytes of each missing one (streamed, at
   most the per-file limit; stored only when the bytes hash to the name, else 400 naming both);
3. ``POST /api/v1/uploads`` ``{"manifest": [...]}`` -> ``{"id", "files", "bytes"}``: checked
   entry by entry (absolute paths, ``..``, duplicates, links leaving, limits), stored only
   once every blob it names is there.

A deploy (``server.models``) names the id as ``upload``; ``materialized`` writes the upload into
a private temporary folder under the home, the build snapshots it exactly as a folder of the
server's own, and the folder is removed when the deploy returns. A PUT cut off halfway stores
nothing (the bytes are held until the body ends and must hash to the name); a manifest that
was never posted leaves no upload; blobs left by either are content-addressed and harmless.

Every route needs CHANGE (contributor) in the ``?project=`` project: sending code is the first
half of deploying it. An upload is used only by the user who sent it (or a server admin).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect

from modelyard.builds.upload import (
    DEFAULT_MAX_FILES,
    UploadLimits,
    check_digest,
    check_manifest,
    materialize,
)
from modelyard.errors import Forbidden, InvalidInput, NotFound, PayloadTooLarge
from modelyard.registry import Upload
from modelyard.web.access import Caller, On, Right, requires
from modelyard.web.offloop import off_loop
from modelyard.web.services import Services, ServicesDep

__all__ = [
    "BLOB_PATH_PREFIX",
    "JOB_FOLDERS",
    "UPLOAD_FOLDER",
    "deploy_folder",
    "job_folder",
    "materialized",
    "router",
]

BLOB_PATH_PREFIX = "/api/v1/uploads/blobs/"
UPLOAD_FOLDER = "uploads"  # under the home: folders being built from an upload (private)
JOB_FOLDERS = "jobs"  # under UPLOAD_FOLDER: the folders of jobs made from an upload (kept)

router = APIRouter(prefix="/api/v1/uploads", tags=["uploads"])
Changer = Annotated[Caller, Depends(requires(Right.CHANGE, On.QUERY_PROJECT))]
LIMITS = UploadLimits()
_STALE_S = 24 * 3600


class MissingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    digests: list[str] = Field(max_length=DEFAULT_MAX_FILES)


class CreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    manifest: list[Any]


@router.post("/missing", summary="Which of these file digests the server lacks")
def missing(body: MissingRequest, services: ServicesDep, caller: Changer) -> dict[str, Any]:
    digests = [check_digest(d) for d in body.digests]
    lacking = services.registry.uploads.missing(digests)
    return {"missing": lacking, "have": len(set(digests)) - len(lacking)}


@router.put(
    "/blobs/{digest}",
    status_code=201,
    summary="Store one file's bytes under their sha256 (raw body, checked)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def put_blob(
    digest: str, request: Request, services: ServicesDep, caller: Changer
) -> dict[str, Any]:
    digest = check_digest(digest)
    limit = LIMITS.max_file_bytes
    data = bytearray()
    try:
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise PayloadTooLarge(
                    f"blob {digest} is more than {limit} bytes, over the limit of {limit} "
                    "bytes per file; leave the file out with .modelyardignore",
                    digest=digest,
                    limit=limit,
                )
    except ClientDisconnect:  # cut off: nothing was stored, nobody is left to answer
        raise InvalidInput(
            f"the body of blob {digest} ended after {len(data)} bytes (the client went away); "
            "nothing was stored: send the file again",
            digest=digest,
        ) from None
    stored = await off_loop(services.registry.uploads.put_blob, digest, bytes(data))
    return {"sha256": digest, "size": len(data), "stored": stored}


@router.post("", status_code=201, summary="Store a manifest of sent blobs as an upload")
def create(body: CreateRequest, services: ServicesDep, caller: Changer) -> dict[str, Any]:
    entries = check_manifest(body.manifest, LIMITS)
    upload = services.registry.uploads.create([e.to_json() for e in entries], caller.actor)
    return {"id": upload.id, "files": upload.files, "bytes": upload.total_bytes}


def _usable(services: Services, upload_id: str, actor: str, admin: bool) -> Upload:
    """The upload, if ``actor`` sent it (or is a server admin); NotFound as if unknown else."""
    upload = services.registry.uploads.get(upload_id)
    if upload.created_by != actor and not admin:  # another user's upload: as if unknown
        raise NotFound(
            f"upload {upload_id[:100]!r} does not exist, or was sent by another user; send the "
            "folder again (the CLI's deploy does)",
            upload=upload_id[:100],
        )
    return upload


def _write(
    services: Services, upload_id: str, actor: str, admin: bool, under: Path | None = None
) -> Path:
    upload = _usable(services, upload_id, actor, admin)
    entries = check_manifest(upload.manifest, LIMITS)
    root = under or services.config.home / UPLOAD_FOLDER
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if under is None:
        _sweep(root)
    folder = Path(tempfile.mkdtemp(prefix=f"{upload.id}-", dir=root))  # 0700
    try:
        materialize(entries, services.registry.uploads.read_blob, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def _sweep(root: Path) -> None:
    """Remove folders a server killed mid-deploy left (older than a day: not a slow build)."""
    cutoff = time.time() - _STALE_S
    for child in root.iterdir():
        if child.name == JOB_FOLDERS:  # jobs run from their folder again and again: kept
            continue
        with contextlib.suppress(OSError):
            if child.is_dir() and child.stat().st_mtime < cutoff:
                shutil.rmtree(child, ignore_errors=True)


@contextlib.asynccontextmanager
async def materialized(services: Services, caller: Caller, upload_id: str) -> AsyncIterator[Path]:
    """The upload ``upload_id`` written into a fresh private folder under the home, removed on
    exit; NotFound for an unknown upload or one another user sent (a server admin may use any).
    """
    folder = await off_loop(_write, services, upload_id, caller.actor, caller.server_admin)
    try:
        yield folder
    finally:
        await off_loop(shutil.rmtree, folder, True)


@contextlib.asynccontextmanager
async def deploy_folder(
    services: Services,
    caller: Caller,
    project: str | None,
    upload: str | None,
    check_dir: Callable[[str], Path],
) -> AsyncIterator[Path]:
    """The folder a deploy builds: the ``upload`` materialized (removed on exit), or the
    server-side ``project`` folder (``check_dir`` checks it), which only server admins may name:
    it would run any code on this machine the server can read."""
    if upload is not None:
        async with materialized(services, caller, upload) as folder:
            yield folder
        return
    if not caller.server_admin:
        raise Forbidden(
            f"{caller.who} may not build from project={project!r}, a folder on the server's "
            "machine: that is for server administrators only; send the folder instead "
            "('modelyard models deploy NAME --project-dir DIR' uploads it, or give upload=<id> "
            "from POST /api/v1/uploads)",
            project=str(project)[:200],
        )
    yield check_dir(project or "")


def job_folder(services: Services, caller: Caller, upload_id: str) -> Path:
    """The folder of a job made from the upload ``upload_id``: written once under
    ``<home>/uploads/jobs/<upload id>`` and kept (a job's runs snapshot it each time), the same
    folder for every job made from the same upload. Blocking: call from a worker thread."""
    upload = _usable(services, upload_id, caller.actor, caller.server_admin)
    root = services.config.home / UPLOAD_FOLDER / JOB_FOLDERS
    final = root / upload.id
    if final.is_dir():  # written before
        return final
    temp = _write(services, upload_id, caller.actor, caller.server_admin, under=root)
    try:
        os.rename(temp, final)
    except OSError:  # another request wrote it first: same upload, same content
        shutil.rmtree(temp, ignore_errors=True)
        if not final.is_dir():
            raise
    return final
