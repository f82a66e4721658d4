"""``modelyard store copy`` benchmark: how fast a store moves between SQLite and PostgreSQL.

    .venv/bin/python benchmarks/store_copy.py            # 200,000 records, a few minutes
    .venv/bin/python benchmarks/store_copy.py --quick    # 5,000 records, a smoke run

The source holds N prediction records of 10 float metrics (``benchmarks/store.py``'s records);
each record is two rows, its ``predictions`` row and its ``prediction_uuids`` row, and the copy
moves both (plus the one identity and the schema). Every figure is the median of ``--repeat``
runs, each into a fresh PostgreSQL schema or a new SQLite file, next to baselines measured in the
same run:

- SQLite -> PostgreSQL with ``copy_store``, against the store's own ingest of the same records
  into PostgreSQL (``PostgresStore.write_predictions``, 10,000 per call) and against the floor: a
  psycopg ``COPY`` of the very rows the copy writes (read from the source beforehand, not timed)
  into the same two tables of a fresh store, one transaction per 10,000;
- PostgreSQL -> SQLite with ``copy_store``, against ``SQLiteStore.write_predictions`` of the same
  records into a new file.

Results print as a table and go to ``benchmarks/results/store_copy-<time>.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Figure, Report, Timer, measure, timer
from modelyard.store.copy import copy_store
from modelyard.store.postgres import PostgresStore
from modelyard.store.sqlite import SQLiteStore
from store import DEFAULT_PG_URL, PgSchema, chunks, postgres_available, predictions

BATCH = 10_000


def fill_sqlite(path: Path, n: int) -> None:
    store = SQLiteStore(path, synchronous="NORMAL")
    try:
        for chunk in chunks(predictions(n, 1_700_000_000_000, 1, seed=1), BATCH):
            store.write_predictions(chunk)
    finally:
        store.close()


def copy_run(source: str, make_target: Any, n: int) -> Timer:
    target, cleanup = make_target()
    try:
        with timer() as t:
            report = copy_store(source, target, batch_size=BATCH)
        check(report.tables, n)
    finally:
        cleanup()
    return t


def check(tables: Any, n: int) -> None:
    counts = {t.table: t.target for t in tables}
    if counts["predictions"] != n or counts["prediction_uuids"] != n:
        raise SystemExit(f"copy: {counts} rows, expected {n} predictions and uuids")


def new_schema(url: str) -> Any:
    def make() -> tuple[str, Any]:
        schema = PgSchema(url)
        return schema.url, schema.drop

    return make


def new_file(folder: Path) -> Any:
    def make() -> tuple[str, Any]:
        path = folder / f"copy-{uuid.uuid4().hex[:8]}.db"
        return f"sqlite:///{path}", lambda: [p.unlink() for p in folder.glob(path.name + "*")]

    return make


def pg_ingest(records: list[Any], url: str) -> Timer:
    schema = PgSchema(url)
    try:
        store = PostgresStore(schema.url)
        try:
            with timer() as t:
                for chunk in chunks(records, BATCH):
                    store.write_predictions(chunk)
        finally:
            store.close()
    finally:
        schema.drop()
    return t


def pg_raw_copy(rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]], url: str) -> Timer:
    """The floor: COPY of the copy's own rows into a fresh store's tables, nothing else."""
    import psycopg

    schema = PgSchema(url)
    try:
        PostgresStore(schema.url).close()  # the same tables and indexes as the copy's target
        with psycopg.connect(schema.url) as conn, timer() as t:
            for table, (columns, data) in rows.items():
                for i in range(0, len(data), BATCH):
                    with (
                        conn.cursor() as cur,
                        cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
                    ):
                        for row in data[i : i + BATCH]:
                            copy.write_row(row)
                    conn.commit()
    finally:
        schema.drop()
    return t


def sqlite_ingest(records: list[Any], folder: Path) -> Timer:
    path = folder / f"ingest-{uuid.uuid4().hex[:8]}.db"
    store = SQLiteStore(path)
    try:
        with timer() as t:
            for chunk in chunks(records, BATCH):
                store.write_predictions(chunk)
    finally:
        store.close()
        for p in folder.glob(path.name + "*"):
            p.unlink()
    return t


def source_rows(path: Path) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    conn = sqlite3.connect(path)
    try:
        out = {}
        for table in ("prediction_uuids", "predictions"):
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            out[table] = (columns, conn.execute(f"SELECT * FROM {table}").fetchall())
        return out
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 records: a smoke run")
    parser.add_argument("--records", type=int, default=None, help="records in the source")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median reported)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MODELYARD_TEST_POSTGRES_URL", DEFAULT_PG_URL),
        help="PostgreSQL to copy to and from (a fresh schema per run, dropped afterwards)",
    )
    parser.add_argument("--out", type=Path, help="JSON output path (default benchmarks/results/)")
    args = parser.parse_args(argv)
    n = args.records or (5_000 if args.quick else 200_000)
    repeat = max(1, args.repeat)
    report = Report("store_copy", {"records": n, "batch": BATCH, "repeat": repeat})
    con = report.console
    reason = postgres_available(args.postgres_url)
    if reason:
        con.print(f"[red]{reason}[/]: the copy benchmark needs PostgreSQL")
        return 2
    folder = Path(tempfile.mkdtemp(prefix="modelyard-bench-copy-"))
    pg_source = PgSchema(args.postgres_url)
    try:
        con.rule(f"SQLite -> PostgreSQL: {n:,} records (x 2 rows), batches of {BATCH:,}")
        source = folder / "source.db"
        fill_sqlite(source, n)
        records = predictions(n, 1_700_000_000_000, 1, seed=1)
        ingest = report.add(
            Figure.rate(
                "PostgresStore.write_predictions (baseline)",
                "records/s",
                n,
                measure(lambda: pg_ingest(records, args.postgres_url), repeat),
                f"the store's own ingest, {BATCH:,} per call",
            )
        )
        rows = source_rows(source)
        floor = report.add(
            Figure.rate(
                "psycopg COPY of the copy's rows (floor)",
                "records/s",
                n,
                measure(lambda: pg_raw_copy(rows, args.postgres_url), repeat),
                "rows already in memory; both tables; one transaction per 10,000",
            )
        )
        to_pg = report.add(
            Figure.rate(
                "store copy SQLite -> PostgreSQL",
                "records/s",
                n,
                measure(
                    lambda: copy_run(f"sqlite:///{source}", new_schema(args.postgres_url), n),
                    repeat,
                ),
                "whole command: migrate target, read, COPY, count, sequences",
            ),
            ingest,
        )
        report.params["copy_vs_floor"] = to_pg.median / floor.median

        con.rule(f"PostgreSQL -> SQLite: {n:,} records")
        copy_store(f"sqlite:///{source}", pg_source.url, batch_size=BATCH)
        sqlite_base = report.add(
            Figure.rate(
                "SQLiteStore.write_predictions (baseline)",
                "records/s",
                n,
                measure(lambda: sqlite_ingest(records, folder), repeat),
                f"the store's own ingest, {BATCH:,} per call, synchronous=FULL",
            )
        )
        report.add(
            Figure.rate(
                "store copy PostgreSQL -> SQLite",
                "records/s",
                n,
                measure(lambda: copy_run(pg_source.url, new_file(folder), n), repeat),
                "whole command; target batches with synchronous=NORMAL",
            ),
            sqlite_base,
        )
    finally:
        pg_source.drop()
        shutil.rmtree(folder, ignore_errors=True)
    con.print(report.table())
    con.print(f"copy SQLite -> PostgreSQL / COPY floor: {report.params['copy_vs_floor']:.2f}")
    con.print(f"results: {report.write(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
