"""The simulated web app's own database: its "CRM", a SQLite file apart from Modelyard's.

A real telco keeps customers and their cancellations in its own systems, not in the ML platform.
The web app writes here which prediction uuid it got for which customer; cancellations (churn
events) arrive here later; the monitoring job joins the two by uuid to tell Modelyard the ground
truth. WAL mode and a busy timeout let the web app (the demo process) write while the job (a
separate process) reads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from modelyard.errors import InvalidInput

__all__ = ["Crm"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    uuid TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    predicted_ms INTEGER NOT NULL,
    churn_probability REAL NOT NULL,
    latency_ms REAL NOT NULL,
    labelled_ms INTEGER
);
CREATE INDEX IF NOT EXISTS predictions_unlabelled ON predictions (predicted_ms)
    WHERE labelled_ms IS NULL;
CREATE TABLE IF NOT EXISTS churn_events (
    customer_id TEXT PRIMARY KEY,
    churned_ms INTEGER NOT NULL
);
"""


class Crm:
    """One connection to the CRM file (one per thread or process; the file may be shared)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def record_predictions(self, rows: Iterable[tuple[str, str, int, float, float]]) -> None:
        """Store (uuid, customer_id, predicted_ms, churn_probability, latency_ms) rows."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO predictions (uuid, customer_id, predicted_ms, churn_probability, "
                "latency_ms) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def record_churn(self, events: Iterable[tuple[str, int]]) -> None:
        """Store (customer_id, churned_ms) cancellations; a repeated customer is kept once."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO churn_events (customer_id, churned_ms) VALUES (?, ?)",
                events,
            )

    def outcomes_due(self, before_ms: int) -> list[tuple[str, int, int]]:
        """(uuid, churned 0/1, predicted_ms) of unlabelled predictions made before ``before_ms``.

        A customer with a churn event churned; one without, whose observation horizon has passed
        (the caller's ``before_ms``), stayed: that absence is the negative label.
        """
        if type(before_ms) is not int:
            raise InvalidInput(f"before_ms={before_ms!r} must be epoch milliseconds (an int)")
        rows = self._db.execute(
            "SELECT p.uuid, e.customer_id IS NOT NULL, p.predicted_ms FROM predictions p "
            "LEFT JOIN churn_events e ON e.customer_id = p.customer_id "
            "WHERE p.labelled_ms IS NULL AND p.predicted_ms < ? ORDER BY p.predicted_ms",
            (before_ms,),
        ).fetchall()
        return [(str(u), int(c), int(t)) for u, c, t in rows]

    def mark_labelled(self, uuids: Sequence[str], at_ms: int) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "UPDATE predictions SET labelled_ms = ? WHERE uuid = ?", [(at_ms, u) for u in uuids]
            )

    def counts(self) -> dict[str, int]:
        """Predictions, churn events and labelled predictions stored so far."""
        one = self._db.execute
        return {
            "predictions": int(one("SELECT count(*) FROM predictions").fetchone()[0]),
            "churn_events": int(one("SELECT count(*) FROM churn_events").fetchone()[0]),
            "labelled": int(
                one("SELECT count(*) FROM predictions WHERE labelled_ms IS NOT NULL").fetchone()[0]
            ),
        }

    def latencies(self) -> list[tuple[int, float]]:
        """(predicted_ms, round-trip latency ms) of every call, oldest first."""
        rows = self._db.execute(
            "SELECT predicted_ms, latency_ms FROM predictions ORDER BY predicted_ms"
        ).fetchall()
        return [(int(t), float(v)) for t, v in rows]
