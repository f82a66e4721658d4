"""The model file an import names, checked inside the staged folder."""

from __future__ import annotations

from pathlib import Path

from modelyard.builds.builder import validate_project_path
from modelyard.errors import InvalidInput

__all__ = ["model_file"]

_SHOWN = 20


def model_file(staged: Path, model_path: str, suffixes: tuple[str, ...], flag: str) -> Path:
    """``staged / model_path`` as an existing regular file inside ``staged`` with one of
    ``suffixes``; InvalidInput naming the path and what the folder holds otherwise."""
    rel = validate_project_path(model_path, flag.lstrip("-"))
    path = staged / rel
    root = staged.resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(root) or not resolved.is_file():
        held = sorted(
            p.relative_to(staged).as_posix()
            for p in staged.rglob("*")
            if p.is_file() and p.suffix in suffixes
        )[:_SHOWN]
        raise InvalidInput(
            f"{flag} {model_path!r} is not a file in the folder deployed; accepted: a "
            f"{'/'.join(suffixes)} file in it ({', '.join(held) or 'it holds none'})",
            argument=flag.lstrip("-"),
        )
    if path.suffix.lower() not in suffixes:
        raise InvalidInput(
            f"{flag} {model_path!r} does not end in {' or '.join(suffixes)}; accepted: a "
            f"{'/'.join(suffixes)} file",
            argument=flag.lstrip("-"),
        )
    return path
