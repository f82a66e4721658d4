"""Fast reads of environment variables for the predict path.

``os.environ.get`` re-encodes its key on every call (about 0.6 us a lookup). CPython keeps the
encoded mapping in ``os.environ._data``, which ``os.environ`` itself reads and writes, so looking
up pre-encoded keys there sees exactly the same values for a fraction of the cost. Interpreters
without it fall back to ``os.environ.get``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

__all__ = ["EXPERIMENT_ENV", "RUN_DIR_ENV", "reader"]

#: The working folder of an experiment run (its cwd); ``track_file`` keeps files under it only.
RUN_DIR_ENV = "MODELYARD_RUN_DIR"
#: Set to "1" on experiment runs: ``track_metric`` then records run metrics (scalars only).
EXPERIMENT_ENV = "MODELYARD_EXPERIMENT"


def reader(names: Sequence[str]) -> Callable[[], tuple[str | None, ...]]:
    """A function returning the current values of ``names`` (None when unset), in order."""
    environ = os.environ
    data = getattr(environ, "_data", None)
    encodekey = getattr(environ, "encodekey", None)
    decodevalue = getattr(environ, "decodevalue", None)
    names = tuple(names)
    if isinstance(data, dict) and callable(encodekey) and callable(decodevalue):
        keys = tuple(encodekey(name) for name in names)
        get = data.get

        def snapshot() -> tuple[str | None, ...]:
            return tuple(None if v is None else decodevalue(v) for v in map(get, keys))

        return snapshot

    def slow_snapshot() -> tuple[str | None, ...]:
        return tuple(map(environ.get, names))

    return slow_snapshot
