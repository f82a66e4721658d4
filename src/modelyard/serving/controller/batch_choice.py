"""Which batch function a deployment's replicas will serve, told at deploy time.

A replica started without ``--batch-function`` serves every call through a callable named
``predict_batch`` when the model file defines one (``modelyard.serving.replica``): even a lone
call goes through it, so a ``@model_metrics``-decorated ``predict`` is never called and its
``track_metric`` values never reach the records. The issue asks for that auto-detection; this
module makes it visible. It reads the file's syntax tree (``ast``) instead of importing it, so
the server never runs user code in its own process: a top-level ``def``/``async def``,
assignment or import binding the name counts as defined; a name made in some dynamic way is not
seen here (the replica's log line "batching with ..." still says what it serves).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AUTO_BATCH_FUNCTION", "NO_BATCH", "BatchChoice", "batch_choice"]

AUTO_BATCH_FUNCTION = "predict_batch"  # the replica's own rule (replica.AUTO_BATCH_FUNCTION)
NO_BATCH = "none"
_DECORATOR = "model_metrics"


@dataclass(frozen=True, slots=True)
class BatchChoice:
    """``function``: the batch function replicas use (None: each call runs ``function`` alone);
    ``auto``: found by its name rather than named with ``--batch-function``; ``warning``: what
    the user should know about it, or None."""

    function: str | None
    auto: bool
    warning: str | None = None


def batch_choice(path: str | Path, function: str, configured: str | None) -> BatchChoice:
    """The batch function a replica of ``function`` in the file at ``path`` will use, given the
    model's ``batch_function`` setting (None: auto-detect; ``"none"``: no batching)."""
    if configured == NO_BATCH:
        return BatchChoice(None, False)
    if configured is not None:
        return BatchChoice(configured, False)
    if function == AUTO_BATCH_FUNCTION:
        return BatchChoice(None, False)
    try:
        tree = ast.parse(Path(path).read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return BatchChoice(None, False)  # the build's import is the judge of such a file
    if AUTO_BATCH_FUNCTION not in _top_level_names(tree):
        return BatchChoice(None, False)
    warning = None
    if _decorated(tree, function):
        warning = (
            f"{AUTO_BATCH_FUNCTION} was found in the model file and serves every call, so the "
            f"@model_metrics-decorated {function} is never called and its track_metric values "
            f"are not recorded; track them in {AUTO_BATCH_FUNCTION}, or deploy with "
            f"--batch-function {NO_BATCH} to serve {function} alone"
        )
    return BatchChoice(AUTO_BATCH_FUNCTION, True, warning)


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                names.add(alias.asname or alias.name.split(".")[0])
    return names


def _decorated(tree: ast.Module, function: str) -> bool:
    """Whether the top-level ``function`` carries ``@model_metrics`` (bare, called, or as an
    attribute such as ``@modelyard.model_metrics`` or ``@cdsw.model_metrics(dev=True)``)."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Name) and target.id == _DECORATOR:
                    return True
                if isinstance(target, ast.Attribute) and target.attr == _DECORATOR:
                    return True
    return False
