"""One HTTP health check against a replica on the loopback interface."""

from __future__ import annotations

import http.client

__all__ = ["check_health"]


def check_health(port: int, path: str, timeout_s: float) -> tuple[bool, str]:
    """GET ``http://127.0.0.1:<port><path>``; (True, "") on a 2xx answer, else (False, why).

    http.client keeps this free of connection pools and proxies: a health check must only ever
    reach the replica on this machine, and must give up after ``timeout_s``.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{exc.__class__.__name__}: {exc}"
    finally:
        conn.close()
    if 200 <= response.status < 300:
        return True, ""
    return False, f"HTTP {response.status}"
