"""``run_server``: the app on uvicorn, loopback by default, a clean stop on SIGTERM/SIGINT.

uvicorn turns SIGTERM and SIGINT into a graceful shutdown that runs the app's lifespan exit:
deployments are stopped (and come back at the next start), the last records are flushed.
"""

from __future__ import annotations

import ipaddress
import sys

from modelyard.errors import InvalidInput
from modelyard.server.services import ServerConfig

__all__ = ["is_loopback", "run_server"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run_server(config: ServerConfig, log_level: str = "info") -> None:
    """Serve until stopped. Binding to a non-loopback address prints a warning first."""
    import uvicorn

    from modelyard.server.app import create_app

    if not 0 < config.port < 65536:
        raise InvalidInput(f"port={config.port!r} is out of range; accepted: 1 to 65535")
    if not is_loopback(config.host):
        sys.stderr.write(
            f"warning: binding to {config.host}, reachable from other machines; every route but "
            "/healthz and the OpenAPI docs needs an API key, but traffic is plain HTTP: put a "
            "TLS proxy in front\n"
        )
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
