"""Stage an import deploy: the deployed folder copied to ``<home>/builds/staging/<id>``, an
experiment run's kept files written into it (``--from-run``), and for a model users already
have (MLflow, ONNX, scikit-learn) the generated entry module (``ENTRY_FILE``) that serves it.
The ordinary build then snapshots the staged folder, so the snapshot holds exactly what runs;
the staged folder is removed once the build is done (``discard``).

Everything here runs before any model is created: a missing file, a pickle without the trust
flag, an example that does not fit the model's inputs is an InvalidInput and nothing is left.
Blocking (copies files): call from a worker thread.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.builds.builder import builds_root, validate_project_path
from modelyard.builds.imported._plan import ENTRY_FILE, ImportPlan
from modelyard.errors import InvalidInput

__all__ = ["FORMATS", "ImportRequest", "Staged", "discard", "stage"]

FORMATS = ("mlflow", "onnx", "sklearn")


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """What to stage: ``model_format`` and ``model_path`` (None: no import, the project's own
    function), the scikit-learn trust options, the deploy's ``example``, and an experiment run
    (its CRN) whose kept files (path -> bytes) go into the folder."""

    model_format: str | None = None
    model_path: str | None = None
    trust_pickle: bool = False
    trusted_types: tuple[str, ...] = ()
    example: Any = None
    run: str | None = None
    run_files: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Staged:
    """The staged ``folder`` and what to build from it: ``file``/``function``/``requirements``
    None keep the deploy's own; ``batch_function`` the entry's; ``source`` what the build
    records (``builds.source``)."""

    folder: Path
    source: dict[str, Any]
    example: Any = None
    file: str | None = None
    function: str | None = None
    batch_function: str | None = None
    requirements: str | None = None


def stage(folder: Path, home: str | os.PathLike[str], request: ImportRequest) -> Staged:
    """Copy ``folder`` to a new staging folder and prepare it (see the module docstring);
    the staging folder is removed again when anything is refused."""
    if request.model_format is not None and request.model_format not in FORMATS:
        raise InvalidInput(
            f"model_format={request.model_format!r} is not accepted; accepted: "
            f"{', '.join(FORMATS)}",
            argument="model_format",
        )
    if request.model_format is not None and (folder / ENTRY_FILE).exists():
        raise InvalidInput(
            f"the folder deployed already holds {ENTRY_FILE!r}, the file an import generates; "
            "accepted: a folder without it (rename that file)",
            argument="project",
        )
    target = builds_root(home) / "staging" / uuid.uuid4().hex
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(folder, target, symlinks=True, copy_function=_link_or_copy)
        return _prepare(target, request)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def discard(staged: Staged) -> None:
    """Remove the staging folder (the build has its own snapshot by now)."""
    shutil.rmtree(staged.folder, ignore_errors=True)


def _prepare(target: Path, request: ImportRequest) -> Staged:
    source: dict[str, Any] = {}
    if request.run is not None:
        written = _write_run_files(target, request.run_files)
        source["run"] = request.run
        source["files"] = written
    if request.model_format is None:
        return Staged(target, source, request.example)
    if request.model_path is None:
        raise InvalidInput(
            f"model_format={request.model_format!r} needs model_path, the model's file or "
            "folder inside the folder deployed ('.' for an MLflow folder sent alone)",
            argument="model_path",
        )
    plan = _plan(target, request)
    (target / ENTRY_FILE).write_text(plan.entry_source, encoding="utf-8")
    source.update(plan.source)
    source.setdefault("kind", plan.kind)
    return Staged(
        target,
        source,
        request.example if request.example is not None else plan.example,
        ENTRY_FILE,
        plan.function,
        plan.batch_function,
        plan.requirements,
    )


def _plan(target: Path, request: ImportRequest) -> ImportPlan:
    path = str(request.model_path)
    if request.model_format == "onnx":
        from modelyard.builds.imported.onnx import plan_onnx

        return plan_onnx(target, path, request.example)
    if request.model_format == "sklearn":
        from modelyard.builds.imported.sklearn import plan_sklearn

        return plan_sklearn(
            target,
            path,
            trust_pickle=request.trust_pickle,
            trusted_types=request.trusted_types,
            example=request.example,
        )
    from modelyard.builds.imported.mlflow import plan_mlflow  # D2's planner, loaded on use

    return plan_mlflow(target, path)


def _write_run_files(target: Path, files: Mapping[str, bytes]) -> list[str]:
    """Write a run's kept files into ``target`` (a file of the same path is replaced: the run's
    output is what the model serves); their paths, sorted."""
    written = []
    for rel, data in sorted(files.items()):
        path = target / validate_project_path(rel, "run file")
        if path.is_dir() or (path.parent.exists() and not path.parent.is_dir()):
            raise InvalidInput(
                f"the run's file {rel!r} collides with a folder or file of the folder deployed; "
                "accepted: run files whose paths are free in it (rename one of them)",
                argument="from_run",
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # never write through a hard link to the deployed folder
        path.write_bytes(data)
        written.append(rel)
    return written


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link where the file system allows (staging copies nothing it need not), else a
    copy. Staging never writes into a copied file: it unlinks before replacing one."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
