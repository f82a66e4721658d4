"""The dashboard's static files: a fixed table from public name to file, nothing else.

``plotly.min.js`` is the copy bundled inside the installed ``plotly`` Python package (the
dashboard's charts work offline, with no CDN and no build step); ``app.js`` and ``app.css`` are
the dashboard's own, beside this module.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from modelyard.errors import NotFound

__all__ = ["STATIC", "plotly_js", "static_path"]

_HERE = Path(__file__).parent / "static"

STATIC: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "plotly.min.js": "text/javascript; charset=utf-8",
}


@cache
def plotly_js() -> Path:
    """Where the installed plotly package keeps its bundled plotly.min.js."""
    spec = importlib.util.find_spec("plotly")  # located, not imported: importing it is slow
    origin = spec.origin if spec is not None else None
    path = Path(origin or ".").parent / "package_data" / "plotly.min.js"
    if origin is None or not path.is_file():
        raise NotFound(
            f"plotly.min.js is missing from the plotly package at {path}; reinstall it with "
            "'pip install --force-reinstall plotly'"
        )
    return path


def static_path(name: str) -> tuple[Path, str]:
    """The file and media type of the static asset ``name``; NotFound for any other name."""
    media_type = STATIC.get(name)
    if media_type is None:
        raise NotFound(f"no static file {name!r}; accepted: {', '.join(sorted(STATIC))}")
    return (plotly_js() if name == "plotly.min.js" else _HERE / name), media_type
