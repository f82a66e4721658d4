"""Fixtures for the tests of ``modelyard.views`` (what REST and the dashboard both show): the
real app in-process, as the REST tests (``tests/server/conftest.py``) and the dashboard tests
(``tests/ui/conftest.py``) drive it."""

from __future__ import annotations

from server.conftest import Api, with_api
from ui.conftest import Ui, with_ui

__all__ = ["Api", "Ui", "with_api", "with_ui"]  # fixtures are found by name
