"""One HTTP health check against a replica on the loopback interface.

The supervisor asks it on its poll (any 2xx is healthy); the serving controller asks it while a
new replica starts, naming the replica it expects (``replica_id``), so a stranger that took the
port between ``free_port()`` and the replica's bind is never mistaken for it.
"""

from __future__ import annotations

import http.client

import orjson

__all__ = ["check_health"]


def check_health(
    port: int, path: str, timeout_s: float, replica_id: str | None = None
) -> tuple[bool, str]:
    """GET ``http://127.0.0.1:<port><path>``; (True, "") on a 2xx answer, else (False, why).

    With ``replica_id`` the answer must also be JSON naming that replica
    (``{"status": "ok", "replica": ID}``, what a replica's ``/healthz`` returns).

    http.client keeps this free of connection pools and proxies: a health check must only ever
    reach the replica on this machine, and must give up after ``timeout_s``.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
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
        return False, f"the answer on port {port} is not from replica {replica_id!r}"
    return True, ""


def _named(body: bytes) -> object:
    """The replica a health answer names (None when it names none)."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return answer.get("replica") if isinstance(answer, dict) else None
