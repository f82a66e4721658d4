"""One HTTP health check against a replica: on its Unix socket, or on the loopback interface.

The supervisor asks it on its poll (any 2xx is healthy); the serving controller asks it while a
new replica starts, naming the replica it expects (``replica_id``), so a stranger that took the
port between ``free_port()`` and the replica's bind (or a stale socket) is never mistaken for it.
"""

from __future__ import annotations

import http.client
import socket

import orjson

__all__ = ["check_health"]


class _UnixConnection(http.client.HTTPConnection):
    """``http.client`` over a Unix domain socket (the ``Host`` header says ``localhost``)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def check_health(
    where: int | str, path: str, timeout_s: float, replica_id: str | None = None
) -> tuple[bool, str]:
    """GET ``path`` from ``where``: a TCP port on ``127.0.0.1`` (an int) or a Unix socket path
    (a str); (True, "") on a 2xx answer, else (False, why).

    With ``replica_id`` the answer must also be JSON naming that replica
    (``{"status": "ok", "replica": ID}``, what a replica's ``/healthz`` returns).

    http.client keeps this free of connection pools and proxies: a health check must only ever
    reach the replica on this machine, and must give up after ``timeout_s``.
    """
    conn: http.client.HTTPConnection
    if isinstance(where, str):
        conn = _UnixConnection(where, timeout_s)
        shown = f"socket {where}"
    else:
        conn = http.client.HTTPConnection("127.0.0.1", where, timeout=timeout_s)
        shown = f"port {where}"
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{exc.__class__.__name__}: {exc}"
    finally:
        conn.close()
    if not 200 <= response.status < 300:
        return False, f"HTTP {response.status}"
    if replica_id is not None and _named(body) != replica_id:
        return False, f"the answer on {shown} is not from replica {replica_id!r}"
    return True, ""


def _named(body: bytes) -> object:
    """The replica a health answer names (None when it names none)."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return answer.get("replica") if isinstance(answer, dict) else None
