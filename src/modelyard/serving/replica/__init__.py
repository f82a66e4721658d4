"""The replica: the process that serves one build of a model, started by the runtime as
``<build python> -m modelyard.serving.replica --snapshot DIR --file F --function FN ...``.

In the order a call meets them:

- ``process.py``: the command line (``ReplicaConfig``, the contract in ``docs/replica.md``),
  loading the user's function, uvicorn, signals;
- ``app.py``: the ASGI app: ``/healthz``, ``/invoke``, ``/invoke_batch``;
- ``workers.py``: where user code runs: a thread pool behind a semaphore;
- ``batching.py``: adaptive batching of single calls into calls of the batch function;
- ``user_code.py``: one call of the user's function and its answer (output, record, timing).

This package loads no part of the gateway or the controller: a replica starts light.
"""

from __future__ import annotations

from modelyard.serving.replica.embedded import embedded_app
from modelyard.serving.replica.process import (
    AUTO_BATCH_FUNCTION,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_BATCH_WAIT_MS,
    DEFAULT_MAX_BODY_BYTES,
    EXIT_SERVE_FAILED,
    BatchOutputError,
    ReplicaConfig,
    build_app,
    main,
    parse_args,
)

__all__ = [
    "AUTO_BATCH_FUNCTION",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_BATCH_WAIT_MS",
    "DEFAULT_MAX_BODY_BYTES",
    "EXIT_SERVE_FAILED",
    "BatchOutputError",
    "ReplicaConfig",
    "build_app",
    "embedded_app",
    "main",
    "parse_args",
]
