"""What every SQL module of the store shares: the cursor type and placeholder lists.

Statements are written with ``?`` placeholders; a backend whose driver wants another style
(PostgreSQL: ``%s``) translates them in ``SQLStore._q``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["IN_CHUNK", "Cursor", "Execute", "marks"]

# sqlite3.Cursor or psycopg.Cursor: both offer execute/executemany/fetchone/fetchall.
Cursor = Any
# Run one statement (``?`` placeholders) on a cursor and return the cursor.
Execute = Callable[[Cursor, str, Sequence[Any]], Cursor]

IN_CHUNK = 500  # values per IN (...) list


def marks(n: int) -> str:
    """``n`` placeholders for an IN list: ``marks(3) == "?,?,?"``."""
    return ",".join("?" * n)
