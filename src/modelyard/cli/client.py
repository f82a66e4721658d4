"""The CLI's server: which one, which key; the calls themselves go through ``modelyard.client``.

Where the server is: ``MODELYARD_URL`` (+ ``MODELYARD_API_KEY``) when set; otherwise the server on
this machine, found through ``$MODELYARD_HOME/server.json`` (written by ``modelyard server`` at
start) with the admin key from ``$MODELYARD_HOME/admin.key``. Errors come back as the same
ModelyardErrors the SDK raises, with the server's own message (what the CLI prints).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from modelyard import client, settings
from modelyard.errors import ServerUnreachable

__all__ = ["Client", "connect"]


@dataclass(frozen=True, slots=True)
class Client(client.Client):
    """The shared client with the CLI's defaults: a minute per call, and the advice to start
    ``modelyard server`` when nothing answers."""

    timeout: float | None = 60.0
    advice: str = "start it with 'modelyard server' or set MODELYARD_URL"


def connect() -> Client:
    """The server to talk to and the key to send (see the module docstring)."""
    url = settings.get("url")
    key = settings.get("api_key")
    if url:
        return Client(str(url), key)
    home = settings.home()
    server_file = home / "server.json"
    if not server_file.exists():
        raise ServerUnreachable(
            f"no server found: {server_file} does not exist and MODELYARD_URL is not set; start "
            "'modelyard server' on this machine, or set MODELYARD_URL and MODELYARD_API_KEY"
        )
    try:
        found = json.loads(server_file.read_text())
        url = str(found["url"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ServerUnreachable(
            f"{server_file} is not a server file written by 'modelyard server' ({exc}); restart "
            "the server or set MODELYARD_URL"
        ) from exc
    if not key:
        key_file = home / "admin.key"
        if key_file.exists():
            key = key_file.read_text().strip()
    return Client(url, key)
