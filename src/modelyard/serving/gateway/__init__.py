"""The gateway: a prediction's way from the server to a replica and back, in the server's process.

In the order a call meets them:

- ``router.py``: ``Gateway``: model name -> that model's pool, the answer's envelope, and each
  prediction's record handed to the writer before the reply;
- ``pool.py``: ``DeploymentPool``: one deployment's replicas: least-busy choice, a bounded wait
  queue, timeouts and retries of connections that never opened;
- ``replica_client.py``: the HTTP/1.1 client of the gateway -> replica hop (keep-alive, loopback);
- ``prometheus.py``: the gateway's Prometheus metrics;
- ``techstats.py``: per-interval technical metrics written to the store as ``tech.*`` records.

See ``docs/gateway.md``.
"""

from __future__ import annotations

from modelyard.serving.gateway.pool import (
    DeploymentPool,
    EndpointState,
    PoolSettings,
    RecordSink,
    ReplicaEndpoint,
)
from modelyard.serving.gateway.router import Gateway, GatewayResult

__all__ = [
    "DeploymentPool",
    "EndpointState",
    "Gateway",
    "GatewayResult",
    "PoolSettings",
    "RecordSink",
    "ReplicaEndpoint",
]
