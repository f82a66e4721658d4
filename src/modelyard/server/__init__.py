"""The Modelyard server: control-plane REST API, model gateway routes, ``/metrics``.

    from modelyard.server import ServerConfig, create_app, run_server
    run_server(ServerConfig(home=Path("~/.modelyard").expanduser()))

See ``docs/server.md`` (starting, keys, security) and ``docs/rest.md`` (routes).
"""

from __future__ import annotations

from modelyard.server.app import PUBLIC_PATHS, create_app
from modelyard.server.run import run_server
from modelyard.web.services import ServerConfig, Services

__all__ = ["PUBLIC_PATHS", "ServerConfig", "Services", "create_app", "run_server"]
