"""Monitor state: window results, label marks, alert episodes and reference samples.

The tables of migration 0005 (``monitor_results``, ``monitor_state``, ``alerts``,
``monitor_references``) are control-plane state like jobs and runs, so the registry keeps them.
The monitors part decides what to compute and which alerts fire; it keeps and reads its state
only through ``Registry.monitors`` (this class): no SQL lives in ``modelyard.monitors``. What a
monitor reads of predictions and labels goes through the store's query interface instead
(``MetricsStore.scan``, ``label_times``, ``label_arrivals``, ``delayed_keys``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from modelyard.registry._db import Clock, Cursor, Db

__all__ = ["AlertEpisode", "MonitorRecords", "StoredResult"]

_PARTIAL_LIKE = '%"window.partial":true%'  # orjson writes no spaces
_ALERT_COLUMNS = (
    "id, monitor, deployment_crn, rule, state, first_window_start_ms, last_window_end_ms, value, "
    "breaching, fired_ms, resolved_ms, resolved_window_start_ms"
)
_REFERENCE_COLUMNS = "deployment_crn, name, rows, total_rows, columns, created_ms"


@dataclass(frozen=True)
class StoredResult:
    """A window result as kept in ``monitor_results``."""

    start_ms: int
    end_ms: int
    n: int
    metrics: dict[str, Any]


class AlertEpisode(Protocol):
    """One firing of one rule, as the monitors part derives it from a monitor's windows."""

    rule: str
    first_start_ms: int
    last_end_ms: int
    value: float | None
    breaching: dict[str, float]
    resolved_start_ms: int | None


def _alert(row: Sequence[Any]) -> dict[str, Any]:
    names = [c.strip() for c in _ALERT_COLUMNS.split(",")]
    out = dict(zip(names, row, strict=True))
    out["breaching"] = orjson.loads(out["breaching"])
    return out


class MonitorRecords:
    """What monitors keep between runs, in the registry's database (see the module docstring)."""

    def __init__(self, db: Db, clock: Clock) -> None:
        self._db = db
        self._now = clock

    # -- window results and the label mark ------------------------------------------------------
    def state(self, monitor: str, deployment: str) -> tuple[set[int], int | None]:
        """(starts of the windows stored for ``deployment``, partial ones left out; the
        monitor's labels-through mark), read in one snapshot."""
        db = self._db
        with db.read() as cur:
            rows = db.exec(
                cur,
                "SELECT start_ms FROM monitor_results WHERE monitor = ? "
                "AND deployment_crn = ? AND metrics NOT LIKE ?",
                (monitor, deployment, _PARTIAL_LIKE),
            ).fetchall()
            mark = db.exec(
                cur, "SELECT labels_through_ms FROM monitor_state WHERE monitor = ?", (monitor,)
            ).fetchone()
        return {int(r[0]) for r in rows}, (int(mark[0]) if mark else None)

    def result(self, monitor: str, deployment: str, start_ms: int) -> StoredResult | None:
        """The stored result of one window, if any."""
        with self._db.read() as cur:
            row = self._db.exec(
                cur,
                "SELECT start_ms, end_ms, n, metrics FROM monitor_results "
                "WHERE monitor = ? AND deployment_crn = ? AND start_ms = ?",
                (monitor, deployment, start_ms),
            ).fetchone()
        if row is None:
            return None
        return StoredResult(int(row[0]), int(row[1]), int(row[2]), orjson.loads(row[3]))

    def results(self, monitor: str) -> list[tuple[int, int, dict[str, Any]]]:
        """(start_ms, end_ms, metrics) of every window the monitor keeps, in window order."""
        with self._db.read() as cur:
            rows = self._db.exec(
                cur,
                "SELECT start_ms, end_ms, metrics FROM monitor_results WHERE monitor = ? "
                "ORDER BY start_ms",
                (monitor,),
            ).fetchall()
        return [(int(s), int(e), orjson.loads(m)) for s, e, m in rows]

    def save_result(
        self,
        monitor: str,
        deployment: str,
        start_ms: int,
        end_ms: int,
        n: int,
        metrics: dict[str, Any],
    ) -> None:
        """Keep ``metrics`` as the window's one result (replacing an earlier one)."""
        labelled = metrics.get("labelled") or 0
        text = orjson.dumps(metrics).decode()
        db = self._db

        def write(cur: Cursor) -> None:
            db.exec(
                cur,
                "DELETE FROM monitor_results WHERE monitor = ? AND start_ms = ?",
                (monitor, start_ms),
            )
            db.exec(
                cur,
                "INSERT INTO monitor_results (monitor, deployment_crn, start_ms, end_ms, n, "
                "labelled, metrics, computed_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (monitor, deployment, start_ms, end_ms, n, labelled, text, self._now()),
            )

        db.write(write)

    def save_mark(self, monitor: str, deployment: str, through_ms: int) -> None:
        """Remember that labels tracked up to ``through_ms`` have been looked at."""
        db = self._db

        def write(cur: Cursor) -> None:
            db.exec(cur, "DELETE FROM monitor_state WHERE monitor = ?", (monitor,))
            db.exec(
                cur,
                "INSERT INTO monitor_state (monitor, deployment_crn, labels_through_ms, "
                "updated_ms) VALUES (?, ?, ?, ?)",
                (monitor, deployment, through_ms, self._now()),
            )

        db.write(write)

    # -- alerts ---------------------------------------------------------------------------------
    def reconcile_alerts(
        self, monitor: str, deployment: str, episodes: Sequence[AlertEpisode]
    ) -> list[int]:
        """Make table ``alerts`` hold ``episodes`` (the whole history, derived again): new ones
        inserted, changed ones updated, firing ones no episode supports any more resolved.
        Returns the ids whose notification is due: new, and newly resolved."""
        now = self._now()
        db = self._db

        def reconcile(cur: Cursor) -> list[int]:
            stored = {
                (r[3], int(r[5])): _alert(r)
                for r in db.exec(
                    cur, f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE monitor = ?", (monitor,)
                ).fetchall()
            }
            changed: list[int] = []
            for ep in episodes:
                old = stored.pop((ep.rule, ep.first_start_ms), None)
                if old is None:
                    changed.append(self._insert_alert(cur, monitor, deployment, ep, now))
                elif self._update_alert(cur, old, ep, now):
                    changed.append(int(old["id"]))
            # An episode no recomputed history supports any more (late labels lifted the
            # metric): it is over, and says so once.
            for old in stored.values():
                if old["state"] == "firing":
                    db.exec(
                        cur,
                        "UPDATE alerts SET state = 'resolved', resolved_ms = ? WHERE id = ?",
                        (now, old["id"]),
                    )
                    changed.append(int(old["id"]))
            return changed

        return db.write(reconcile)

    def _insert_alert(
        self, cur: Cursor, monitor: str, deployment: str, ep: AlertEpisode, now: int
    ) -> int:
        state = "firing" if ep.resolved_start_ms is None else "resolved"
        self._db.exec(
            cur,
            "INSERT INTO alerts (monitor, deployment_crn, rule, state, first_window_start_ms, "
            "last_window_end_ms, value, breaching, fired_ms, resolved_ms, "
            "resolved_window_start_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                monitor,
                deployment,
                ep.rule,
                state,
                ep.first_start_ms,
                ep.last_end_ms,
                ep.value,
                orjson.dumps(ep.breaching).decode(),
                now,
                now if state == "resolved" else None,
                ep.resolved_start_ms,
            ),
        )
        found = self._db.exec(
            cur,
            "SELECT id FROM alerts WHERE monitor = ? AND rule = ? AND first_window_start_ms = ?",
            (monitor, ep.rule, ep.first_start_ms),
        ).fetchone()
        return int(found[0])

    def _update_alert(self, cur: Cursor, old: dict[str, Any], ep: AlertEpisode, now: int) -> bool:
        """Bring a stored episode up to date; True when it has just resolved."""
        state = "firing" if ep.resolved_start_ms is None else "resolved"
        newly_resolved = old["state"] == "firing" and state == "resolved"
        self._db.exec(
            cur,
            "UPDATE alerts SET state = ?, last_window_end_ms = ?, value = ?, resolved_ms = ?, "
            "resolved_window_start_ms = ? WHERE id = ?",
            (
                state,
                ep.last_end_ms,
                ep.value,
                now if newly_resolved else old["resolved_ms"] if state == "resolved" else None,
                ep.resolved_start_ms,
                old["id"],
            ),
        )
        return newly_resolved

    def alerts(
        self,
        *,
        all_states: bool = False,
        monitor: str | None = None,
        deployment_crn: str | None = None,
    ) -> list[dict[str, Any]]:
        """Alert episodes, newest first: only those firing unless ``all_states``."""
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE 1 = 1"
        params: list[Any] = []
        if not all_states:
            sql += " AND state = 'firing'"
        if monitor is not None:
            sql += " AND monitor = ?"
            params.append(monitor)
        if deployment_crn is not None:
            sql += " AND deployment_crn = ?"
            params.append(deployment_crn)
        sql += " ORDER BY id DESC"
        with self._db.read() as cur:
            rows = self._db.exec(cur, sql, params).fetchall()
        return [_alert(r) for r in rows]

    # -- reference samples ----------------------------------------------------------------------
    def save_reference(
        self,
        deployment: str,
        name: str,
        rows: int,
        total_rows: int,
        columns: list[str],
        data: bytes,
    ) -> int:
        """Keep a reference sample (replacing one of the same name); returns its created_ms."""
        created = self._now()
        params = (deployment, name, rows, total_rows, orjson.dumps(columns).decode(), data, created)
        db = self._db

        def write(cur: Cursor) -> None:
            db.exec(
                cur,
                "DELETE FROM monitor_references WHERE deployment_crn = ? AND name = ?",
                (deployment, name),
            )
            db.exec(
                cur,
                "INSERT INTO monitor_references "
                "(deployment_crn, name, rows, total_rows, columns, data, created_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                params,
            )

        db.write(write)
        return created

    def reference_data(self, deployment: str, name: str) -> tuple[list[str], bytes] | None:
        """(column names, stored data) of a reference sample, or None if there is none."""
        with self._db.read() as cur:
            row = self._db.exec(
                cur,
                "SELECT columns, data FROM monitor_references WHERE deployment_crn = ? "
                "AND name = ?",
                (deployment, name),
            ).fetchone()
        return None if row is None else (orjson.loads(row[0]), bytes(row[1]))

    def references(self, deployment: str | None = None) -> list[dict[str, Any]]:
        """Stored samples (all, or one deployment's) without their data, by deployment, name."""
        sql = f"SELECT {_REFERENCE_COLUMNS} FROM monitor_references"
        params: tuple[Any, ...] = ()
        if deployment is not None:
            sql += " WHERE deployment_crn = ?"
            params = (deployment,)
        sql += " ORDER BY deployment_crn, name"
        with self._db.read() as cur:
            rows = self._db.exec(cur, sql, params).fetchall()
        return [
            {
                "deployment_crn": r[0],
                "name": r[1],
                "rows": int(r[2]),
                "total_rows": int(r[3]),
                "columns": orjson.loads(r[4]),
                "created_ms": int(r[5]),
            }
            for r in rows
        ]
