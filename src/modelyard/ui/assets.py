"""The dashboard's static files: a fixed table from public name to file, nothing else.

``plotly.min.js`` is the copy bundled inside the installed ``plotly`` Python package (the
dashboard's charts work offline, with no CDN and no build step); ``app.js`` and ``app.css`` are
the dashboard's own, beside this module.

The dashboard's Content-Security-Policy refuses inline ``<style>`` elements, and Plotly injects
two kinds: its own rules (modebar, hover labels), unless the page holds an element with id
``plotly.js-style-global`` and class ``no-inline-styles`` (Plotly's switch for strict CSP) -- the
pages then link ``plotly.css``, those rules as a file -- and, when it loads, the CSS of the map
library it bundles, unless an element with that style's id is already there
(``plotly_style_ids``; the dashboard draws no maps). ``plotly.css`` holds the rules of the
plotly.js version named in its first line; a test compares it with the installed one. To
regenerate it, draw any chart without the policy and copy the ``cssRules`` of
``#plotly.js-style-global`` in insertion order (Plotly inserts each at index 0).
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path

from modelyard.errors import NotFound

__all__ = ["STATIC", "plotly_js", "plotly_style_ids", "static_path"]

_HERE = Path(__file__).parent / "static"

STATIC: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "experiments.js": "text/javascript; charset=utf-8",
    "story.js": "text/javascript; charset=utf-8",
    "format.js": "text/javascript; charset=utf-8",
    "plotly.min.js": "text/javascript; charset=utf-8",
    "plotly.css": "text/css; charset=utf-8",
}

# ``if(!document.getElementById("<id>")){var e=document.createElement("style")``: a style
# element plotly.min.js adds when it loads, unless one with that id exists.
_INJECTED_STYLE = re.compile(
    r'getElementById\("([A-Za-z0-9_.-]+)"\)\)\{var [A-Za-z_$][\w$]*=document\.createElement'
    r'\("style"\)'
)


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


@cache
def plotly_style_ids() -> tuple[str, ...]:
    """Ids of the style elements plotly.min.js injects as it loads (read from the file once)."""
    return tuple(_INJECTED_STYLE.findall(plotly_js().read_text(encoding="utf-8", errors="replace")))


def static_path(name: str) -> tuple[Path, str]:
    """The file and media type of the static asset ``name``; NotFound for any other name."""
    media_type = STATIC.get(name)
    if media_type is None:
        raise NotFound(f"no static file {name!r}; accepted: {', '.join(sorted(STATIC))}")
    return (plotly_js() if name == "plotly.min.js" else _HERE / name), media_type
