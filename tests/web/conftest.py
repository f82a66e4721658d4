"""Fixtures for the tests of ``modelyard.web`` (auth and scopes, the error shape, the server's
parts): the real app in-process, as the REST tests drive it (``tests/server/conftest.py``)."""

from __future__ import annotations

from server.conftest import Api, project, serve, with_api

__all__ = ["Api", "project", "serve", "with_api"]  # fixtures are found by name
