"""The CLI's side of deploying from anywhere: pack a folder, send what the server lacks.

``modelyard models deploy NAME --project-dir DIR`` always uploads, whether the server runs on
this machine or another: the server then never reads the client's folder, and the same command
works against both. Packing follows a build's snapshot rules (``builds.upload``); only contents
the server does not have yet travel, so a second deploy after changing one file sends one file.
A progress bar (on stderr, only when it is a terminal) shows uploads over 5 MB.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelyard.builds.snapshot import ignore_reason
from modelyard.builds.upload import HttpTransport, Pack, UploadResult, pack_project, send_pack
from modelyard.errors import InvalidInput, NotFound

__all__ = [
    "PROGRESS_BYTES",
    "check_kept",
    "relative_requirements",
    "upload_folder",
    "upload_project",
]

PROGRESS_BYTES = 5 * 1024 * 1024  # smaller uploads finish before a bar would be read


def relative_requirements(requirements: Path | None, project_dir: Path) -> str | None:
    """``--requirements`` as a path inside ``project_dir`` (what the server finds in the
    upload); InvalidInput naming both when it lies outside."""
    if requirements is None:
        return None
    full = requirements if requirements.is_absolute() else Path.cwd() / requirements
    full = Path(full.resolve())
    try:
        return full.relative_to(project_dir).as_posix()
    except ValueError:
        raise InvalidInput(
            f"--requirements {str(requirements)!r} is not inside --project-dir "
            f"{str(project_dir)!r}; expected a requirements file inside the folder deployed",
            argument="requirements",
        ) from None


def check_kept(project_dir: Path, files: Mapping[str, str | None]) -> None:
    """Each named file (``--file``, ``--script``, ``--monitor``, ``--requirements``: relative
    paths) must be one the upload carries: InvalidInput naming the file and, for an ignored one,
    the ignore file and pattern, before anything is sent (the server would only see it missing)."""
    for argument, rel in files.items():
        if rel is None:
            continue
        if not (project_dir / rel).is_file():
            raise InvalidInput(
                f"--{argument} {rel!r} is not a file inside --project-dir {str(project_dir)!r}; "
                "expected the path of an existing file relative to that folder",
                argument=argument,
            )
        reason = ignore_reason(project_dir, Path(os.path.normpath(rel)).as_posix())
        if reason is not None:
            raise InvalidInput(
                f"--{argument} {rel!r} is left out of the upload by {reason}, as it would be "
                "left out of the snapshot; accepted: a file the ignore rules keep (change the "
                "rule or move the file)",
                argument=argument,
                ignored_by=reason,
            )


def upload_project(
    client: Any, object_path: str, given: str | None, default: str | None
) -> str | None:
    """The Modelyard project an upload is sent in (uploading needs contributor there): ``given``
    (``--project``), else the project of the model or job at ``object_path`` when it exists
    (the deploy or update will need contributor there anyway), else ``default``."""
    if given is not None:
        return given
    try:
        found = client.call("GET", object_path)
    except NotFound:
        return default
    body = found.get("model", found) if isinstance(found, dict) else {}
    crn = body.get("project_crn") if isinstance(body, dict) else None
    return str(crn) if crn else default


def upload_folder(client: Any, project_dir: Path, project: str | None) -> UploadResult:
    """Pack ``project_dir``, send it to ``client``'s server (in the Modelyard ``project``):
    the stored upload."""
    pack = pack_project(project_dir)
    result = _send(pack, HttpTransport(client, project), project_dir.name)
    kept = "; the server had the rest" if result.sent_blobs < len(pack.digests()) else ""
    sys.stderr.write(
        f"uploaded {result.sent_blobs} new of {len(pack.digests())} distinct files "
        f"({result.sent_bytes} of {pack.total_bytes} bytes){kept}\n"
    )
    return result


def _send(pack: Pack, transport: HttpTransport, name: str) -> UploadResult:
    if not sys.stderr.isatty():
        return send_pack(pack, transport)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = progress.add_task(f"uploading {name}", total=None, visible=False)

    def missing(total: int) -> None:
        if total > PROGRESS_BYTES:
            progress.update(task, total=total, visible=True)

    with progress:
        return send_pack(pack, transport, lambda n: progress.advance(task, n), missing)
