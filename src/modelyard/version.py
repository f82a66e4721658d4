"""The installed package's version, in one place (foundation: imports nothing else of modelyard).

Lower parts ask here instead of ``import modelyard``, whose ``__init__`` brings tracking and jobs
along. Read from the installed metadata on first call, so the version is written only in
pyproject.toml and ``import modelyard`` does not pay for ``importlib.metadata`` (about 15 ms)
until someone asks.

>>> from importlib.metadata import version
>>> package_version() == version("modelyard")
True
"""

from __future__ import annotations

import functools

__all__ = ["package_version"]


@functools.cache
def package_version() -> str:
    """The version of the installed ``modelyard`` distribution, e.g. ``"0.1.0"``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelyard")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"
