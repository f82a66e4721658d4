"""The read section of ``store.py``: N records as a DataFrame against a raw SELECT of the same rows.

For SQLite and PostgreSQL, in one run: the store is filled once through ``write_predictions``,
then each figure is measured ``repeat`` times (median reported):

- the baseline, a raw ``SELECT`` ... ``fetchall`` of the rows through the same driver: the uuid,
  the times and the columns the metrics are stored in (``metrics`` JSON text before schema
  version 7; since then also ``layout_id`` and ``numbers``, the typed values). On PostgreSQL the
  faster of a text-format and a binary-format cursor is the baseline;
- ``modelyard.read_metrics_frame`` on the same database, opened through the environment as a
  user's script would (``MODELYARD_DATABASE_URL``), and ``store.scan`` plus the frame builder.

The figures of one backend are measured in turns (baseline, then each reader, ``repeat`` times),
so that a machine whose load drifts gives each the same conditions.

The same script measures an older tree too (``PYTHONPATH=<old>/src``): it reads whichever schema
the code it imports writes, so before/after tables come from one script.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _common import Figure, Report, Timer, timer
from modelyard.store.base import Identity, Prediction, Query

__all__ = ["run_reads"]

Make = Callable[[int, int, int, int], list[Prediction]]  # (n, start_ms, step_ms, seed)


def _chunks(items: list[Prediction], size: int) -> Iterator[list[Prediction]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def fill(store: Any, n: int, batch: int, make: Make) -> Timer:
    """Write ``n`` records through ``write_predictions`` in slices (memory stays bounded)."""
    total = Timer()
    made = 0
    while made < n:
        size = min(batch * 10, n - made)
        records = make(size, 1_700_000_000_000 + made, 1, made)
        with timer() as t:
            for chunk in _chunks(records, batch):
                store.write_predictions(chunk)
        total.wall += t.wall
        total.cpu += t.cpu
        made += size
    return total


def _columns(names: set[str]) -> str:
    """The stored columns of a record's metrics, as the schema in use has them."""
    typed = ", p.layout_id, p.numbers" if "layout_id" in names else ""
    return f"p.uuid, p.start_ms, p.end_ms, p.metrics{typed}"


def _select(columns: str, mark: str) -> str:
    return (
        f"SELECT {columns} FROM predictions p"
        f" WHERE p.deployment_id = (SELECT id FROM identities WHERE deployment_crn = {mark})"
        " ORDER BY p.start_ms, p.uuid"
    )


def interleaved(runs: dict[str, Callable[[], Timer]], repeat: int) -> dict[str, list[Timer]]:
    """Each run ``repeat`` times, taking turns (a, b, c, a, b, c, ...): on a shared machine whose
    load drifts, figures measured in turns see the same conditions, in blocks they would not."""
    out: dict[str, list[Timer]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            out[name].append(run())
    return out


def _check(got: int, expected: int) -> None:
    if got != expected:
        raise SystemExit(f"read {got} rows, expected {expected}")


# -- SQLite ---------------------------------------------------------------------------------------


def sqlite_select(path: Path, n: int, who: Identity) -> Timer:
    conn = sqlite3.connect(path)
    try:
        names = {row[1] for row in conn.execute("PRAGMA table_info(predictions)")}
        with timer() as t:
            rows = conn.execute(_select(_columns(names), "?"), (who.deployment_crn,)).fetchall()
    finally:
        conn.close()
    _check(len(rows), n)
    return t


def scan_frame(path: Path, n: int, who: Identity) -> Timer:
    from modelyard.store.sqlite import SQLiteStore
    from modelyard.tracking.frame import batch_to_frame

    store = SQLiteStore(path)
    try:
        with timer() as t:
            frame = batch_to_frame(store.scan(Query(deployment_crn=who.deployment_crn), 10_000))
    finally:
        store.close()
    _check(len(frame), n)
    return t


def sdk_frame(url: str, n: int, who: Identity) -> Timer:
    """``modelyard.read_metrics_frame`` against the store at ``url``, opened from the
    environment."""
    from modelyard import read_metrics_frame

    os.environ["MODELYARD_DATABASE_URL"] = url
    try:
        with timer() as t:
            frame = read_metrics_frame(model_deployment_crn=who.deployment_crn)
    finally:
        del os.environ["MODELYARD_DATABASE_URL"]
    _check(len(frame), n)
    return t


# -- PostgreSQL -----------------------------------------------------------------------------------


def postgres_select(url: str, n: int, who: Identity, binary: bool) -> Timer:
    import psycopg

    with psycopg.connect(url) as conn:
        names = {
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'predictions'"
            )
        }
        with conn.cursor(binary=binary) as cur:
            cur.execute("SET LOCAL enable_sort = off")  # as the store does: walk the index
            with timer() as t:
                cur.execute(_select(_columns(names), "%s"), (who.deployment_crn,))
                rows = cur.fetchall()
    _check(len(rows), n)
    return t


# -- the section ----------------------------------------------------------------------------------


def run_reads(  # shape: the section's inputs as store.py holds them
    report: Report,
    n: int,
    batch: int,
    repeat: int,
    folder: Path,
    postgres: Any,
    make: Make,
    who: Identity,
) -> None:
    """The read figures; ``postgres`` is a ``PgSchema`` factory, or a str saying why not."""
    from modelyard.store.sqlite import SQLiteStore

    report.console.rule(f"read: {n:,} records as a DataFrame (SQLite)")
    path = folder / "read.db"
    store = SQLiteStore(path)
    try:
        loaded = fill(store, n, batch, make)
    finally:
        store.close()
    report.add(
        Figure.rate("sqlite bulk load for the read test (one run)", "records/s", n, [loaded])
    )
    runs = interleaved(
        {
            "raw": lambda: sqlite_select(path, n, who),
            "scan": lambda: scan_frame(path, n, who),
            "sdk": lambda: sdk_frame(f"sqlite:///{path}", n, who),
        },
        repeat,
    )
    raw = report.add(
        Figure.seconds(
            "sqlite read: raw SELECT fetchall (baseline)",
            runs["raw"],
            "sqlite3; uuid, times and the stored metrics columns",
        )
    )
    report.add(Figure.seconds("sqlite read: store.scan + frame builder", runs["scan"]), raw)
    report.add(
        Figure.seconds(
            "sqlite read: read_metrics_frame (SDK)",
            runs["sdk"],
            "target within 1.2x of the raw SELECT",
        ),
        raw,
    )
    path.unlink()
    if isinstance(postgres, str):
        report.skip("read PostgreSQL", postgres)
        return
    _postgres_reads(report, n, batch, repeat, postgres, make, who)


def _postgres_reads(  # shape: run_reads' inputs, PostgreSQL's half
    report: Report, n: int, batch: int, repeat: int, schema_of: Any, make: Make, who: Identity
) -> None:
    import psycopg

    from modelyard.store.postgres import PostgresStore

    report.console.rule(f"read: {n:,} records as a DataFrame (PostgreSQL)")
    schema = schema_of()
    try:
        store = PostgresStore(schema.url)
        try:
            loaded = fill(store, n, batch, make)
        finally:
            store.close()
        with psycopg.connect(schema.url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        report.add(
            Figure.rate("postgres bulk load for the read test (one run)", "records/s", n, [loaded])
        )
        runs = interleaved(
            {
                "text": lambda: postgres_select(schema.url, n, who, False),
                "binary": lambda: postgres_select(schema.url, n, who, True),
                "sdk": lambda: sdk_frame(schema.url, n, who),
            },
            repeat,
        )
        text = report.add(
            Figure.seconds(
                "postgres read: raw SELECT fetchall, text cursor",
                runs["text"],
                "psycopg; uuid, times and the stored metrics columns",
            )
        )
        binary = report.add(
            Figure.seconds("postgres read: raw SELECT fetchall, binary cursor", runs["binary"]),
            text,
        )
        raw = text if text.median <= binary.median else binary
        report.add(
            Figure.seconds(
                "postgres read: read_metrics_frame (SDK)",
                runs["sdk"],
                f"target within 1.2x of the raw SELECT (baseline: the faster cursor, {raw.name})",
            ),
            raw,
        )
    finally:
        schema.drop()
