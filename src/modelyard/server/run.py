"""``run_server``: the app on uvicorn, loopback by default, a clean stop on SIGTERM/SIGINT.

uvicorn turns SIGTERM and SIGINT into a graceful shutdown that runs the app's lifespan exit:
deployments are stopped (and come back at the next start), the last records are flushed.
Client connections get header and body read deadlines and a cap on how many are open
(``modelyard.server.connections``, settings ``MODELYARD_HTTP_*``, see docs/server.md).
"""

from __future__ import annotations

import ipaddress
import sys

from modelyard.errors import InvalidInput
from modelyard.server.connections import ConnectionLimits, guarded_protocol
from modelyard.web.services import ServerConfig

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
    limits = ConnectionLimits.from_settings()
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        loop="uvloop",
        # httptools, plus header and body read deadlines and a cap on open connections
        http=guarded_protocol(limits),
        timeout_keep_alive=limits.keep_alive_s,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
