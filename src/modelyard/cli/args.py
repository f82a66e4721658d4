"""Argument parsing shared by the CLI's command groups."""

from __future__ import annotations

from modelyard.errors import InvalidInput

__all__ = ["env_pairs"]


def env_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--env K=V`` options as a dict; a pair without ``=`` or a name is refused by value."""
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidInput(f"--env {pair!r} is not NAME=VALUE; give for example --env K=V")
        env[name] = value
    return env
