"""Metrics store benchmark: ingest, bulk read, MLflow's ``log_batch``, bytes on disk.

    .venv/bin/python benchmarks/store.py            # full sizes, several minutes
    .venv/bin/python benchmarks/store.py --quick    # tiny sizes, a smoke run (no MLflow)
    .venv/bin/python benchmarks/store.py --growth   # only ingest rate against store size

Each figure is measured three times (``--repeat``) and the median reported next to a baseline
measured in the same run:

- ingest of prediction records with 10 numeric metrics into SQLite through ``BufferedWriter`` and
  through the direct ``write_predictions`` batch path, against raw ``sqlite3`` ``executemany`` of
  the same rows (JSON-encoded with orjson too) into a plain table with the store's PRAGMAs; into
  PostgreSQL through ``PostgresStore`` against a psycopg ``COPY`` of the same rows; the direct
  path with random uuid4 ids and with the time-ordered ids Modelyard mints;
- reading N records as a DataFrame on SQLite and on PostgreSQL (``store_reads.py``):
  ``modelyard.read_metrics_frame`` (and ``store.scan`` plus the SDK's frame builder) against a
  raw ``SELECT`` ... ``fetchall`` of the same rows' stored columns through the same driver;
- the same number of metric points written with MLflow's ``log_batch`` to its SQLite tracking
  store, in a virtualenv this script creates under ``benchmarks/.envs/mlflow``;
- bytes on disk per prediction record, raw and after ``store.rollup`` (both after VACUUM);
- with ``--growth`` instead: ingest rate into stores of 0, 1M, 4M and 10M records, SQLite and
  PostgreSQL, random and time-ordered ids, and PostgreSQL ingest against a plain ``COPY``
  (``store_growth.py``, whose options it takes; the filled stores are built once and kept).

Results print as a table and go to ``benchmarks/results/store-<time>.json``. The machine is
shared, so the JSON also keeps every run's wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
import venv
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Figure, Report, Timer, measure, timer
from modelyard.ids import new_prediction_uuid
from modelyard.store.base import DAY_MS, HOUR_MS, Identity, Prediction
from modelyard.store.sqlite import SQLiteStore
from store_growth import add_arguments as add_growth_arguments
from store_growth import run_growth
from store_reads import run_reads as run_reads_section

HERE = Path(__file__).resolve().parent
SECTIONS = ("ingest", "reads", "mlflow", "rollup")
MLFLOW_ENV = HERE / ".envs" / "mlflow"
# mlflow-skinny has the tracking client and SQL store code; its SQL store needs SQLAlchemy and
# alembic, which only the full ``mlflow`` package pulls in (with a web server, pandas, pyarrow...).
MLFLOW_REQUIREMENTS = ["mlflow-skinny>=2.10", "sqlalchemy>=2", "alembic>=1.12"]
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
METRICS_PER_RECORD = 10
IDENTITY = Identity(
    model_crn="crn:modelyard:model/bench",
    build_crn="crn:modelyard:build/bench",
    deployment_crn="crn:modelyard:deployment/bench",
)


@dataclass(frozen=True)
class Sizes:
    ingest: int  # records per ingest run
    read: int  # records read back as a DataFrame
    mlflow_points: int  # metric points logged to MLflow per run (at most ingest * 10)
    rollup: int  # records inserted over old time and rolled up
    batch: int  # records per write_predictions call / COPY / executemany transaction


FULL = Sizes(ingest=200_000, read=1_000_000, mlflow_points=200_000, rollup=500_000, batch=10_000)
QUICK = Sizes(ingest=3_000, read=5_000, mlflow_points=2_000, rollup=4_000, batch=1_000)


# -- data ---------------------------------------------------------------------------------------


def predictions(n: int, start_ms: int, step_ms: int, seed: int) -> list[Prediction]:
    """``n`` records, one every ``step_ms``, each with 10 float metrics (made before timing)."""
    rng = np.random.default_rng(seed)
    values = rng.lognormal(0.0, 1.0, size=(n, METRICS_PER_RECORD)).tolist()
    names = [f"m{i}" for i in range(METRICS_PER_RECORD)]
    out = []
    for i, row in enumerate(values):
        start = start_ms + i * step_ms
        out.append(
            Prediction(
                str(uuid.uuid4()), IDENTITY, start, start + 3, dict(zip(names, row, strict=True))
            )
        )
    return out


def with_minted_ids(records: list[Prediction]) -> list[Prediction]:
    """The same records under the ids Modelyard mints (``new_prediction_uuid``: time-ordered
    UUIDv7, what the gateway and the decorator give every prediction), in record order."""
    return [replace(p, uuid=new_prediction_uuid()) for p in records]


def chunks(items: list[Prediction], size: int) -> Iterator[list[Prediction]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def raw_row(p: Prediction) -> tuple[str, str, int, int, str]:
    """What a hand-written ingest stores per record: ids, times and the metrics as JSON text."""
    return (
        p.uuid,
        p.identity.deployment_crn,
        p.start_ms,
        p.end_ms,
        orjson.dumps(p.metrics).decode(),
    )


# -- ingest -------------------------------------------------------------------------------------


def sqlite_direct(records: list[Prediction], folder: Path, batch: int) -> Timer:
    path = folder / f"direct-{uuid.uuid4().hex[:8]}.db"
    store = SQLiteStore(path)
    try:
        with timer() as t:
            for chunk in chunks(records, batch):
                store.write_predictions(chunk)
    finally:
        store.close()
    assert_count(path, len(records))
    return t


def sqlite_writer(records: list[Prediction], folder: Path, batch: int) -> Timer:
    from modelyard.store.writer import BufferedWriter

    path = folder / f"writer-{uuid.uuid4().hex[:8]}.db"
    store = SQLiteStore(path)
    writer = BufferedWriter(store)
    try:
        with timer() as t:
            submit = writer.submit
            for record in records:
                submit(record)
            writer.flush()  # returns once everything submitted is committed
    finally:
        writer.close()
        store.close()
    assert_count(path, len(records))
    return t


def sqlite_raw(records: list[Prediction], folder: Path, batch: int) -> Timer:
    """Baseline: executemany into a plain table, same journal mode and sync level as the store."""
    path = folder / f"raw-{uuid.uuid4().hex[:8]}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE raw (uuid TEXT, deployment_crn TEXT, start_ms INTEGER, end_ms INTEGER,"
        " metrics TEXT)"
    )
    try:
        with timer() as t:
            for chunk in chunks(records, batch):
                rows = [raw_row(p) for p in chunk]
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO raw VALUES (?, ?, ?, ?, ?)", rows)
                conn.execute("COMMIT")
        assert conn.execute("SELECT count(*) FROM raw").fetchone()[0] == len(records)
    finally:
        conn.close()
    return t


def assert_count(path: Path, expected: int) -> None:
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT count(*) FROM predictions").fetchone()[0]
    conn.close()
    if found != expected:
        raise SystemExit(f"{path}: {found} records stored, expected {expected}")


def postgres_available(url: str) -> str | None:
    """None if PostgreSQL answers at ``url``, else the reason it does not."""
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at {url} is not reachable ({exc.__class__.__name__}: {exc})"
    return None


class PgSchema:
    """A fresh schema for one run, dropped afterwards (as the test fixtures do)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.base = url
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.name}"')
        sep = "&" if "?" in url else "?"
        self.url = f"{url}{sep}options=-csearch_path%3D{self.name}"

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{self.name}" CASCADE')


def postgres_direct(records: list[Prediction], url: str, batch: int) -> Timer:
    from modelyard.store.postgres import PostgresStore

    schema = PgSchema(url)
    try:
        store = PostgresStore(schema.url)
        try:
            with timer() as t:
                for chunk in chunks(records, batch):
                    store.write_predictions(chunk)
            got = store.info().predictions
        finally:
            store.close()
        if got != len(records):
            raise SystemExit(f"PostgreSQL: {got} records stored, expected {len(records)}")
    finally:
        schema.drop()
    return t


def postgres_copy(records: list[Prediction], url: str, batch: int) -> Timer:
    """Baseline: psycopg COPY of the same rows into a plain table, one transaction per batch."""
    import psycopg

    schema = PgSchema(url)
    try:
        with psycopg.connect(schema.url) as conn:
            conn.execute(
                "CREATE TABLE raw (uuid TEXT, deployment_crn TEXT, start_ms BIGINT,"
                " end_ms BIGINT, metrics TEXT)"
            )
            conn.commit()
            with timer() as t:
                for chunk in chunks(records, batch):
                    with conn.cursor() as cur, cur.copy("COPY raw FROM STDIN") as copy:
                        for p in chunk:
                            copy.write_row(raw_row(p))
                    conn.commit()
    finally:
        schema.drop()
    return t


def postgres_copy_indexed(records: list[Prediction], url: str, batch: int) -> Timer:
    """Second baseline: psycopg COPYs of the same rows into the store's own tables, indexes
    included (``predictions`` keyed by deployment, time and uuid; ``prediction_uuids`` by uuid),
    one transaction per batch: what any ingest into that schema pays."""
    import psycopg

    from modelyard.store.postgres import PostgresStore

    schema = PgSchema(url)
    try:
        PostgresStore(schema.url).close()  # the schema, migrated
        with psycopg.connect(schema.url) as conn:
            dep_id = conn.execute(
                "INSERT INTO identities (deployment_crn, build_crn, model_crn) "
                "VALUES (%s, %s, %s) RETURNING id",
                (IDENTITY.deployment_crn, IDENTITY.build_crn, IDENTITY.model_crn),
            ).fetchone()[0]
            conn.commit()
            with timer() as t:
                for chunk in chunks(records, batch):
                    with conn.cursor() as cur:
                        columns = "deployment_id, start_ms, uuid, end_ms, metrics"
                        with cur.copy(f"COPY predictions ({columns}) FROM STDIN") as copy:
                            for p in chunk:
                                metrics = orjson.dumps(p.metrics).decode()
                                copy.write_row((dep_id, p.start_ms, p.uuid, p.end_ms, metrics))
                        columns = "uuid, deployment_id, start_ms"
                        with cur.copy(f"COPY prediction_uuids ({columns}) FROM STDIN") as copy:
                            for p in chunk:
                                copy.write_row((p.uuid, dep_id, p.start_ms))
                    conn.commit()
    finally:
        schema.drop()
    return t


# -- MLflow -------------------------------------------------------------------------------------

MLFLOW_SCRIPT = r"""
import json, sys, tempfile, time, logging
logging.disable(logging.WARNING)
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
import mlflow

points, repeat, keys = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
runs = []
for r in range(repeat):
    folder = tempfile.mkdtemp(prefix="mlflow-bench-")
    client = MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db")
    run = client.create_run(client.create_experiment("bench"))
    metrics = [
        Metric(f"m{i % keys}", float(i), 1_700_000_000_000 + i // keys, i // keys)
        for i in range(points)
    ]
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, points, 1000):  # log_batch accepts at most 1000 metrics per call
        client.log_batch(run.info.run_id, metrics=metrics[i : i + 1000])
    runs.append([time.perf_counter() - wall, time.process_time() - cpu])
print(json.dumps({"runs": runs, "mlflow": mlflow.__version__}))
"""


def mlflow_python(console: Any) -> Path:
    """The MLflow virtualenv's python, creating the environment on first use."""
    python = MLFLOW_ENV / "bin" / "python"
    stamp = MLFLOW_ENV / ".requirements"
    wanted = "\n".join(MLFLOW_REQUIREMENTS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if MLFLOW_ENV.exists():
        shutil.rmtree(MLFLOW_ENV)
    console.print(f"  creating {MLFLOW_ENV} with {' '.join(MLFLOW_REQUIREMENTS)} (one-off)")
    venv.EnvBuilder(with_pip=True).create(MLFLOW_ENV)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *MLFLOW_REQUIREMENTS],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"pip install {' '.join(MLFLOW_REQUIREMENTS)} failed: {done.stderr[-2000:]}"
        )
    stamp.write_text(wanted)
    return python


def mlflow_runs(python: Path, points: int, repeat: int) -> tuple[list[Timer], str]:
    done = subprocess.run(
        [str(python), "-c", MLFLOW_SCRIPT, str(points), str(repeat), str(METRICS_PER_RECORD)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"MLflow benchmark failed: {done.stderr[-2000:]}")
    result = orjson.loads(done.stdout.strip().splitlines()[-1])
    return [Timer(wall, cpu) for wall, cpu in result["runs"]], result["mlflow"]


# -- bytes on disk ------------------------------------------------------------------------------


def vacuumed_size(path: Path) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return sum(
        os.path.getsize(f"{path}{suffix}")
        for suffix in ("", "-wal")
        if os.path.exists(f"{path}{suffix}")
    )


def table_sizes(path: Path) -> dict[str, int]:
    """Bytes per table and index (SQLite's dbstat), to show where the bytes go."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
        ).fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()
    return {name: int(size) for name, size in rows if size > 8192}


@dataclass
class RollupRun:
    raw_bytes: int
    rolled_bytes: int
    rollup: Timer
    buckets: int
    tables_after: dict[str, int]


def rollup_run(folder: Path, n: int, batch: int, span_ms: int) -> RollupRun:
    """Insert ``n`` records spread over ``span_ms`` ending 31 days ago, roll up, compare sizes."""
    path = folder / f"rollup-{uuid.uuid4().hex[:8]}.db"
    now = int(time.time() * 1000)
    first = now - 31 * DAY_MS - span_ms
    store = SQLiteStore(path)
    try:
        for chunk in chunks(predictions(n, first, max(span_ms // n, 1), seed=n), batch):
            store.write_predictions(chunk)
    finally:
        store.close()
    raw_bytes = vacuumed_size(path)
    store = SQLiteStore(path)
    try:
        with timer() as t:
            report = store.rollup(now_ms=now)
        left = store.info().predictions
    finally:
        store.close()
    if left:
        raise SystemExit(f"rollup left {left} raw records older than the raw horizon")
    rolled_bytes = vacuumed_size(path)
    return RollupRun(raw_bytes, rolled_bytes, t, report.buckets_written, table_sizes(path))


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median reported)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MODELYARD_TEST_POSTGRES_URL", DEFAULT_PG_URL),
        help="PostgreSQL to benchmark (a fresh schema per run, dropped afterwards)",
    )
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--mlflow",
        choices=["auto", "yes", "no"],
        default="auto",
        help="compare with MLflow (auto: yes, except with --quick)",
    )
    parser.add_argument("--out", type=Path, help="JSON output path (default benchmarks/results/)")
    parser.add_argument(
        "--only", help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all)"
    )
    parser.add_argument(
        "--growth", action="store_true", help="only ingest rate against store size (see below)"
    )
    add_growth_arguments(parser.add_argument_group("--growth (store_growth.py)"))
    args = parser.parse_args(argv)
    if args.growth:
        growth = Report("store-growth", {k: str(v) for k, v in vars(args).items()})
        run_growth(growth, args)
        growth.console.print(growth.table())
        growth.console.print(f"results: {growth.write(args.out)}")
        return 0
    sizes = QUICK if args.quick else FULL
    repeat = max(1, args.repeat)
    report = Report("store", {"sizes": asdict(sizes), "repeat": repeat, "quick": args.quick})
    con = report.console
    folder = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    try:
        only = set(args.only.split(",")) if args.only else set(SECTIONS)
        ingest_rate = run_ingest(report, sizes, repeat, folder, args) if "ingest" in only else None
        if "reads" in only:
            run_reads(report, sizes, repeat, folder, args)
        if "mlflow" in only:
            run_mlflow(report, sizes, repeat, args, ingest_rate)
        if "rollup" in only:
            run_rollup(report, sizes, repeat, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    con.print(report.table())
    con.print(f"results: {report.write(args.out)}")
    return 0


def run_ingest(
    report: Report, sizes: Sizes, repeat: int, folder: Path, args: argparse.Namespace
) -> Figure | None:
    con = report.console
    n = sizes.ingest
    con.rule(f"ingest: {n:,} records x {METRICS_PER_RECORD} metrics, batches of {sizes.batch:,}")
    records = predictions(n, 1_700_000_000_000, 1, seed=1)
    raw = report.add(
        Figure.rate(
            "ingest sqlite3 executemany (baseline)",
            "records/s",
            n,
            measure(lambda: sqlite_raw(records, folder, sizes.batch), repeat),
            "plain table, WAL, synchronous=FULL, orjson encode included",
        )
    )
    direct = report.add(
        Figure.rate(
            "ingest SQLiteStore.write_predictions",
            "records/s",
            n,
            measure(lambda: sqlite_direct(records, folder, sizes.batch), repeat),
            f"target >= 100,000/s; {sizes.batch:,} per call; random uuid4 ids",
        ),
        raw,
    )
    minted = with_minted_ids(records)
    report.add(
        Figure.rate(
            "ingest SQLiteStore.write_predictions, minted ids",
            "records/s",
            n,
            measure(lambda: sqlite_direct(minted, folder, sizes.batch), repeat),
            "time-ordered UUIDv7 ids, as the gateway mints them",
        ),
        raw,
    )
    try:
        import modelyard.store.writer  # noqa: F401
    except ImportError as exc:
        report.skip("ingest BufferedWriter", f"modelyard.store.writer not importable ({exc})")
    else:
        report.add(
            Figure.rate(
                "ingest SQLite via BufferedWriter",
                "records/s",
                n,
                measure(lambda: sqlite_writer(records, folder, sizes.batch), repeat),
                "submit one by one, then flush (durable)",
            ),
            raw,
        )
    reason = "--skip-postgres" if args.skip_postgres else postgres_available(args.postgres_url)
    if reason:
        report.skip("ingest PostgreSQL", reason)
        return direct
    pg_raw = report.add(
        Figure.rate(
            "ingest psycopg COPY (baseline)",
            "records/s",
            n,
            measure(lambda: postgres_copy(records, args.postgres_url, sizes.batch), repeat),
            "plain table, orjson encode included",
        )
    )
    pg_indexed = report.add(
        Figure.rate(
            "ingest psycopg COPY into the store's tables (baseline)",
            "records/s",
            n,
            measure(lambda: postgres_copy_indexed(records, args.postgres_url, sizes.batch), repeat),
            "the schema's own tables and indexes, orjson encode included",
        ),
        pg_raw,
    )
    ours = Figure.rate(
        "ingest PostgresStore.write_predictions",
        "records/s",
        n,
        measure(lambda: postgres_direct(records, args.postgres_url, sizes.batch), repeat),
    )
    report.add(ours, pg_raw)
    report.add(replace(ours, name=f"{ours.name} (vs the store's tables)"), pg_indexed)
    report.add(
        Figure.rate(
            "ingest PostgresStore.write_predictions, minted ids",
            "records/s",
            n,
            measure(lambda: postgres_direct(minted, args.postgres_url, sizes.batch), repeat),
            "time-ordered UUIDv7 ids, as the gateway mints them",
        ),
        pg_raw,
    )
    return direct  # MLflow's log_batch is a batch API too: compare like with like


def run_reads(
    report: Report, sizes: Sizes, repeat: int, folder: Path, args: argparse.Namespace
) -> None:
    """SQLite and PostgreSQL, each against a raw SELECT of the same rows (``store_reads.py``)."""
    reason = "--skip-postgres" if args.skip_postgres else postgres_available(args.postgres_url)
    postgres: Any = reason or (lambda: PgSchema(args.postgres_url))
    run_reads_section(
        report,
        sizes.read,
        sizes.batch,
        repeat,
        folder,
        postgres,
        lambda n, start, step, seed: predictions(n, start, step, seed=seed),
        IDENTITY,
    )


def run_mlflow(
    report: Report, sizes: Sizes, repeat: int, args: argparse.Namespace, ours: Figure | None
) -> None:
    con = report.console
    wanted = args.mlflow == "yes" or (args.mlflow == "auto" and not args.quick)
    if not wanted:
        report.skip("MLflow log_batch", "quick mode; pass --mlflow yes to include it")
        return
    points = min(sizes.mlflow_points, sizes.ingest * METRICS_PER_RECORD)
    con.rule(f"MLflow log_batch: {points:,} metric points to its SQLite tracking store")
    try:
        python = mlflow_python(con)
        timers, version = mlflow_runs(python, points, repeat)
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        report.skip("MLflow log_batch", f"{exc.__class__.__name__}: {exc}")
        return
    report.params["mlflow_version"] = version
    theirs = report.add(
        Figure.rate(
            "MLflow log_batch (peer)",
            "points/s",
            points,
            timers,
            f"mlflow {version}, 1,000 points per call",
        )
    )
    if ours is not None:
        report.add(
            Figure(
                f"{ours.name} in points",
                "points/s",
                [r * METRICS_PER_RECORD for r in ours.runs],
                ours.cpu_s,
                ours.wall_s,
                note=f"{METRICS_PER_RECORD} metric points per record",
            ),
            theirs,
        )


def run_rollup(report: Report, sizes: Sizes, repeat: int, folder: Path) -> None:
    con = report.console
    n = sizes.rollup
    span = 10 * DAY_MS
    con.rule(f"bytes on disk: {n:,} records over 10 days, 31+ days old, then rollup")
    runs = [rollup_run(folder, n, sizes.batch, span) for _ in range(repeat)]
    per_hour = n / (span / HOUR_MS)
    raw = report.add(
        Figure("bytes per record, raw (after VACUUM)", "B/record", [r.raw_bytes / n for r in runs])
    )
    report.add(
        Figure(
            "bytes per record, rolled up (after VACUUM)",
            "B/record",
            [r.rolled_bytes / n for r in runs],
            note=f"~{per_hour:,.0f} records per hour bucket; includes the uuid index",
        ),
        raw,
    )

    def part(run: RollupRun, prefixes: tuple[str, ...]) -> float:
        return sum(v for k, v in run.tables_after.items() if k.startswith(prefixes)) / n

    if runs[-1].tables_after:  # SQLite built with dbstat: say where the bytes go
        report.add(
            Figure(
                "  of which bucket summaries",
                "B/record",
                [part(r, ("rollup_buckets", "sqlite_autoindex_rollup_buckets")) for r in runs],
                note="rollup_buckets table and its indexes",
            )
        )
        report.add(
            Figure(
                "  of which the uuid index",
                "B/record",
                [part(r, ("prediction_uuids", "rolled_uuids")) for r in runs],
                note="every uuid stays findable, so late ground truth finds its bucket",
            )
        )
    report.add(
        Figure.rate(
            "rollup speed",
            "records/s",
            n,
            [r.rollup for r in runs],
            f"{runs[0].buckets:,} buckets written",
        )
    )
    report.params["rollup_tables_after_bytes"] = runs[-1].tables_after


if __name__ == "__main__":
    raise SystemExit(main())
