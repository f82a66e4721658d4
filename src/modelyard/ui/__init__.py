"""The dashboard: server-rendered pages under ``/ui`` with small scripts and Plotly charts.

``mount(app)`` adds it to the server's app. Pages read through the same functions as the REST
API (``modelyard.views.insights``, the registry and controller calls of the REST routes) and
refresh with ``fetch()`` calls to that API, signed in by a session cookie (``session``).
"""

from __future__ import annotations

from modelyard.ui.routes import mount

__all__ = ["mount"]
