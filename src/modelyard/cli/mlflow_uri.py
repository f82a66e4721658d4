"""``--mlflow PATH_OR_URI``: the local MLflow model folder a deploy uploads.

A local path or a ``file://`` URI is used as it is. Any other MLflow URI (``runs:/<run>/<path>``,
``models:/<name>/<version>``, ``models:/<name>@<alias>``, ``mlflow-artifacts:/...``, ``s3://...``)
is downloaded with ``mlflow.artifacts.download_artifacts`` into a temporary folder, removed after
the upload: that needs the ``mlflow`` (or ``mlflow-skinny``) package on the client and the
tracking server in ``MLFLOW_TRACKING_URI``, as MLflow's own commands do. Modelyard itself never
depends on MLflow.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelyard.errors import InvalidInput

__all__ = ["is_remote_uri", "local_model_folder", "mlflow_folder", "resolve_mlflow_uri"]

_MLMODEL = "MLmodel"


def is_remote_uri(value: str) -> bool:
    """True for an MLflow URI that must be downloaded (a scheme other than ``file``)."""
    scheme = urlparse(value).scheme
    return len(scheme) > 1 and scheme != "file"


def local_model_folder(value: str) -> Path:
    """The folder a local path or ``file://`` URI names, checked to be an MLflow model."""
    path = Path(unquote(urlparse(value).path)) if value.startswith("file:") else Path(value)
    path = path.expanduser()
    if not path.exists():
        raise InvalidInput(
            f"--mlflow {value!r} does not exist; expected an MLflow model folder (one holding "
            f"an {_MLMODEL} file), a file:// URI, or a runs:/ or models:/ URI",
            argument="mlflow",
        )
    if not path.is_dir() or not (path / _MLMODEL).is_file():
        raise InvalidInput(
            f"--mlflow {value!r} is not an MLflow model: it has no {_MLMODEL} file; expected "
            "the folder mlflow.<flavour>.save_model wrote (or a logged model's artifacts)",
            argument="mlflow",
        )
    return path.resolve()


@contextmanager
def mlflow_folder(value: str) -> Iterator[Path]:
    """The local MLflow model folder for ``value``; a downloaded one is removed on exit."""
    if not is_remote_uri(value):
        yield local_model_folder(value)
        return
    try:
        from mlflow.artifacts import (  # type: ignore[import-not-found]  # optional
            download_artifacts,
        )
    except ImportError as exc:
        raise InvalidInput(
            f"--mlflow {value!r} is an MLflow URI, and resolving it needs the mlflow package "
            f"here ({exc}); accepted: install it (pip install mlflow-skinny) with "
            "MLFLOW_TRACKING_URI set to your tracking server, or pass the model folder's local "
            "path (e.g. from `mlflow artifacts download -u URI`)",
            argument="mlflow",
        ) from exc
    scratch = Path(tempfile.mkdtemp(prefix="modelyard-mlflow-"))
    try:
        try:
            local = Path(download_artifacts(artifact_uri=value, dst_path=str(scratch)))
        except Exception as exc:
            raise InvalidInput(
                f"--mlflow {value!r} could not be downloaded with MLflow ({exc}); check the "
                "URI and MLFLOW_TRACKING_URI, or pass the model folder's local path",
                argument="mlflow",
            ) from exc
        yield local_model_folder(str(local))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def resolve_mlflow_uri(value: str) -> Path:
    """The local MLflow model folder for ``value`` (see ``mlflow_folder``); a downloaded one is
    removed when the process exits (the CLI is short-lived; a long-lived caller should use
    ``mlflow_folder``, which removes it on leaving the block)."""
    context = mlflow_folder(value)
    folder = context.__enter__()
    atexit.register(context.__exit__, None, None, None)
    return folder
