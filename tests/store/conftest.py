"""Backends for the store contract tests: SQLite file, SQLite in memory, PostgreSQL.

``store`` is an open store of each backend; ``store_opener`` opens a store on the same database
again (None for ``:memory:``, which lives and dies with its one store object). Both come from
``tests/_backends.py``, which the registry tests share.
"""

from __future__ import annotations

from _backends import store, store_opener

__all__ = ["store", "store_opener"]  # fixtures, imported for pytest to find them here
