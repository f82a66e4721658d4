"""What ``modelyard models deploy`` uploads for an import (``--mlflow``, ``--onnx``,
``--sklearn``) and where the model lies in it.

With ``--project-dir`` the folder is uploaded as for any deploy and the model must lie inside it
(its path relative to the folder is sent). Without it only the model travels: an MLflow folder
is uploaded as it is (model path ``.``), a lone file is copied into a temporary folder of its
own. With ``--from-run`` a file name that is not on this machine is taken as one of the run's
kept files (the server writes those into the folder before building).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from modelyard.errors import InvalidInput

__all__ = ["ImportSource", "import_source", "source_text"]

_FLAGS = ("mlflow", "onnx", "sklearn")


class ImportSource:
    """The ``folder`` to upload and, for an import, ``model_format`` and ``model_path`` (relative
    to it). Used as a context manager: a temporary folder made for a lone file goes on exit."""

    def __init__(
        self,
        folder: Path,
        model_format: str | None = None,
        model_path: str | None = None,
        temporary: bool = False,
    ) -> None:
        self.folder = folder
        self.model_format = model_format
        self.model_path = model_path
        self.temporary = temporary

    def __enter__(self) -> ImportSource:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.temporary:
            shutil.rmtree(self.folder, ignore_errors=True)


def import_source(options: dict[str, Any]) -> ImportSource:
    """The upload for the deploy ``options`` (see the module docstring); InvalidInput naming
    the flags for two formats at once, a missing model, a model outside ``--project-dir``."""
    given = [flag for flag in _FLAGS if options.get(flag) is not None]
    project_dir: Path | None = options.get("project_dir")
    if len(given) > 1:
        raise InvalidInput(
            f"{' and '.join('--' + f for f in given)} given together; accepted: one of "
            "--mlflow, --onnx, --sklearn per deploy"
        )
    if not given:
        if project_dir is None:
            raise InvalidInput(
                "no --project-dir given; accepted: --project-dir DIR (the folder with the "
                "predict function), or one of --mlflow PATH, --onnx FILE, --sklearn FILE"
            )
        return ImportSource(project_dir.resolve())
    flag = given[0]
    value = str(options[flag])
    local = _mlflow_folder(value) if flag == "mlflow" else Path(value)
    if project_dir is not None:
        return ImportSource(project_dir.resolve(), flag, _inside(local, project_dir, flag))
    if flag == "mlflow":
        if not local.is_dir():
            raise InvalidInput(
                f"--mlflow {value!r} is not a folder on this machine; accepted: an MLflow model "
                "folder (the one holding MLmodel) or an URI mlflow can download"
            )
        return ImportSource(local.resolve(), flag, ".")
    if options.get("requirements") is not None:  # else named outside a temporary folder
        raise InvalidInput(
            f"--requirements {str(options['requirements'])!r} given with --{flag} but without "
            "--project-dir, so only the model file is sent; accepted: --project-dir DIR holding "
            "both the model and the requirements file",
            argument="requirements",
        )
    return _lone_file(local, flag, value, options.get("from_run"))


def source_text(source: Any) -> str:
    """A build's ``source`` in a few words for tables ("-" for a project's own function)."""
    if not isinstance(source, dict) or not source:
        return "-"
    parts = []
    if source.get("kind"):
        parts.append(f"{source['kind']} {source.get('path', '')}".strip())
    if source.get("run"):
        parts.append(f"run {str(source['run']).rsplit('/', 1)[-1][:8]}")
    return ", ".join(parts) or "-"


def _lone_file(local: Path, flag: str, value: str, from_run: str | None) -> ImportSource:
    folder = Path(tempfile.mkdtemp(prefix="modelyard-import-"))
    if local.is_file():
        shutil.copy2(local, folder / local.name)
        return ImportSource(folder, flag, local.name, temporary=True)
    if from_run is not None:  # one of the run's kept files: the server writes it in
        return ImportSource(folder, flag, value, temporary=True)
    shutil.rmtree(folder, ignore_errors=True)
    raise InvalidInput(
        f"--{flag} {value!r} is not a file on this machine; accepted: the path of the model "
        "file (or, with --from-run, the path of a file the run kept)",
        argument=flag,
    )


def _inside(local: Path, project_dir: Path, flag: str) -> str:
    full = local if local.is_absolute() else Path.cwd() / local
    root = project_dir.resolve()
    try:
        rel = full.resolve().relative_to(root).as_posix()
    except ValueError:
        raise InvalidInput(
            f"--{flag} {str(local)!r} is not inside --project-dir {str(project_dir)!r}; "
            "accepted: a model inside the folder deployed, or leave --project-dir out to send "
            "the model alone",
            argument=flag,
        ) from None
    return rel or "."


def _mlflow_folder(value: str) -> Path:
    """A local folder for ``--mlflow``: a path, a ``file://`` URI (percent-escapes decoded), or
    (with mlflow installed here) any URI mlflow can download (``runs:/``, ``models:/``...),
    removed when the command exits."""
    from modelyard.cli.mlflow_uri import resolve_mlflow_uri

    return resolve_mlflow_uri(value)
