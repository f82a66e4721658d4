"""Free loopback ports for replicas."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The kernel picks it; the socket is closed before returning, so another process could take
    the port in between. Callers that lose that race see the replica fail its start and be
    restarted, which is the supervisor's ordinary job.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
