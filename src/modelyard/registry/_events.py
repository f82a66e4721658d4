"""Replica events: a bounded, newest-first log per deployment.

Replica logs and statistics of the reference platform vanish when a replica restarts; these rows
keep what happened to each replica (started, restarted with which back-off, killed for memory...)
for the dashboard and post-mortems. Each insert trims its deployment to the newest ``kept`` rows
(an index range read), so a crash-looping replica cannot grow the table without bound.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelyard.errors import InvalidInput, NotFound
from modelyard.registry._db import Clock, Cursor, Db
from modelyard.registry._records import ReplicaEvent
from modelyard.specs.checks import check_text, encode_json

__all__ = ["DEFAULT_KEPT", "MAX_DETAILS_BYTES", "Events"]

DEFAULT_KEPT = 10_000
MAX_DETAILS_BYTES = 64 * 1024
MAX_LIMIT = 10_000


def _event(row: Any) -> ReplicaEvent:
    return ReplicaEvent(
        id=int(row[0]),
        deployment_crn=row[1],
        replica_id=row[2],
        kind=row[3],
        details=orjson.loads(row[4]),
        at_ms=int(row[5]),
    )


class Events:
    def __init__(self, db: Db, clock: Clock, kept: int = DEFAULT_KEPT) -> None:
        if isinstance(kept, bool) or not isinstance(kept, int) or kept < 1:
            raise InvalidInput(
                f"events_kept={kept!r} is not accepted; expected an integer >= 1 "
                f"(default {DEFAULT_KEPT})"
            )
        self._db = db
        self._now = clock
        self.kept = kept

    def _check_deployment(self, cur: Cursor, crn: object) -> str:
        crn = check_text("deployment_crn", crn, max_len=500)
        row = self._db.exec(cur, "SELECT 1 FROM deployments WHERE crn = ?", (crn,)).fetchone()
        if row is None:
            raise NotFound(
                f"deployment {crn!r} is not registered; list_deployments() shows the known ones",
                deployment_crn=crn,
            )
        return str(crn)

    def record(
        self,
        deployment_crn: str,
        replica_id: str,
        kind: str,
        details: dict[str, Any] | None = None,
        at_ms: int | None = None,
    ) -> ReplicaEvent:
        replica_id = check_text("replica_id", replica_id, max_len=200)
        kind = check_text("kind", kind, max_len=64)
        if details is None:
            details = {}
        if not isinstance(details, dict):
            raise InvalidInput(
                f"details={details!r:.200} is not accepted; expected a dict (JSON object) or None",
                argument="details",
            )
        text = encode_json("details", details)
        if len(text) > MAX_DETAILS_BYTES:
            raise InvalidInput(
                f"details of a {kind!r} event take {len(text)} bytes as JSON; accepted: at most "
                f"{MAX_DETAILS_BYTES}",
                argument="details",
            )
        if at_ms is None:
            at_ms = self._now()
        elif isinstance(at_ms, bool) or not isinstance(at_ms, int) or at_ms < 0:
            raise InvalidInput(
                f"at_ms={at_ms!r} is not accepted; expected epoch milliseconds (an integer >= 0) "
                "or None for now",
                argument="at_ms",
            )
        when = at_ms

        def insert(cur: Cursor) -> ReplicaEvent:
            crn = self._check_deployment(cur, deployment_crn)
            event_id = self._db.insert_id(
                cur,
                "INSERT INTO replica_events (deployment_crn, replica_id, kind, details, at_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                (crn, replica_id, kind, text, when),
            )
            # Keep the newest ``kept``: everything at or below the (kept+1)-th newest id goes.
            self._db.exec(
                cur,
                "DELETE FROM replica_events WHERE deployment_crn = ? AND id <= ("
                "SELECT id FROM replica_events WHERE deployment_crn = ? "
                "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (crn, crn, self.kept),
            )
            return ReplicaEvent(event_id, crn, replica_id, kind, orjson.loads(text), when)

        return self._db.write(insert)

    def list(self, deployment_crn: str, limit: int = 100) -> list[ReplicaEvent]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(
                f"limit={limit!r} is not accepted; expected an integer from 1 to {MAX_LIMIT}",
                argument="limit",
            )
        with self._db.read() as cur:
            crn = self._check_deployment(cur, deployment_crn)
            rows = self._db.exec(
                cur,
                "SELECT id, deployment_crn, replica_id, kind, details, at_ms FROM replica_events "
                "WHERE deployment_crn = ? ORDER BY id DESC LIMIT ?",
                (crn, limit),
            ).fetchall()
        return [_event(row) for row in rows]
