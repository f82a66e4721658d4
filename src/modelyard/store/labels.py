"""Delayed values by key and by arrival: the SQL behind the store's label queries.

A monitor asks when labels arrived (late-label detection, label coverage) and which label keys
a deployment has received. Delayed values are found through ``prediction_uuids`` (uuid ->
deployment, start_ms) and the ``tracked_ms`` index of ``delayed_metrics`` (migration 0005), so
none of these reads scans the predictions. ``SQLStore`` runs them in its read transactions.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelyard.store.sqltypes import IN_CHUNK, Cursor, Execute, marks

__all__ = ["delayed_keys", "label_arrivals", "label_times"]

# Joins a delayed value (alias d) to the deployment of its prediction (alias i).
_OF_DEPLOYMENT = (
    "JOIN prediction_uuids p ON p.uuid = d.uuid JOIN identities i ON i.id = p.deployment_id"
)


def label_times(
    cur: Cursor, execute: Execute, deployment_crn: str, key: str, uuids: Sequence[str]
) -> dict[str, int]:
    """uuid -> when its first value of ``key`` was tracked, for the deployment's ``uuids``."""
    first: dict[str, int] = {}
    for i in range(0, len(uuids), IN_CHUNK):
        chunk = list(uuids[i : i + IN_CHUNK])
        rows = execute(
            cur,
            f"SELECT d.uuid, MIN(d.tracked_ms) FROM delayed_metrics d {_OF_DEPLOYMENT} "
            f"WHERE d.key = ? AND i.deployment_crn = ? AND d.uuid IN ({marks(len(chunk))}) "
            "GROUP BY d.uuid",
            (key, deployment_crn, *chunk),
        ).fetchall()
        first.update((str(u), int(t)) for u, t in rows)
    return first


def label_arrivals(
    cur: Cursor, execute: Execute, deployment_crn: str, key: str, after_ms: int, through_ms: int
) -> set[int]:
    """start_ms of the deployment's predictions given a value of ``key`` tracked in
    (``after_ms``, ``through_ms``]."""
    rows = execute(
        cur,
        f"SELECT DISTINCT p.start_ms FROM delayed_metrics d {_OF_DEPLOYMENT} "
        "WHERE d.tracked_ms > ? AND d.tracked_ms <= ? AND d.key = ? AND i.deployment_crn = ?",
        (after_ms, through_ms, key, deployment_crn),
    ).fetchall()
    return {int(r[0]) for r in rows}


def delayed_keys(
    cur: Cursor, execute: Execute, deployment_crn: str, keys: Sequence[str], latest: int | None
) -> set[str]:
    """Those of ``keys`` the deployment has delayed values of: among the latest ``latest``
    delayed values of any deployment (an index range on ``tracked_ms``), or among all of the
    deployment's delayed values when ``latest`` is None (one lookup per key)."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return set()
    if latest is not None:
        rows = execute(
            cur,
            "SELECT DISTINCT d.key FROM (SELECT uuid, key FROM delayed_metrics "
            f"ORDER BY tracked_ms DESC LIMIT ?) d {_OF_DEPLOYMENT} "
            f"WHERE i.deployment_crn = ? AND d.key IN ({marks(len(wanted))})",
            (latest, deployment_crn, *wanted),
        ).fetchall()
        return {str(r[0]) for r in rows}
    found: set[str] = set()
    for key in wanted:
        row = execute(
            cur,
            f"SELECT 1 FROM delayed_metrics d {_OF_DEPLOYMENT} "
            "WHERE d.key = ? AND i.deployment_crn = ? LIMIT 1",
            (key, deployment_crn),
        ).fetchone()
        if row is not None:
            found.add(key)
    return found
