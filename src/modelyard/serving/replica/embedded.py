"""The replica as an ASGI app in a process someone else runs (a Ray Serve actor).

``embedded_app(args)`` takes the replica's own arguments (``docs/replica.md``, without
``python -m modelyard.serving.replica``), loads the user's function exactly as ``main`` does and
returns the app; the host drives its lifespan and requests. ``--socket``/``--port`` are parsed
but unused: the host decides how requests arrive (no Host or Origin check: nothing but the host
can reach the app). ``--snapshot`` may be relative (the actor's
working directory is the unpacked snapshot); the process moves into it, as ``main`` does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from modelyard.serving.replica.app import ReplicaApp
from modelyard.serving.replica.process import build_app, load_user_code, parse_args

__all__ = ["embedded_app"]


def embedded_app(args: Sequence[str]) -> ReplicaApp:
    """The replica's app for ``args``; raises what loading the user's function raised."""
    # No socket, no port: nothing reaches the app but its host, so no Host/Origin check.
    config = dataclasses.replace(parse_args(args), socket="(embedded)", port=None)
    os.chdir(config.snapshot)
    return build_app(config, load_user_code(config))
