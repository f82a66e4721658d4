"""Metrics store benchmark: ingest, bulk read, MLflow's ``log_batch``, bytes on disk.

    .venv/bin/python benchmarks/store.py            # full sizes, several minutes
    .venv/bin/python benchmarks/store.py --quick    # tiny sizes, a smoke run (no MLflow)

Each figure is measured three times (``--repeat``) and the median reported next to a baseline
measured in the same run:

- ingest of prediction records with 10 numeric metrics into SQLite through ``BufferedWriter`` and
  through the direct ``write_predictions`` batch path, against raw ``sqlite3`` ``executemany`` of
  the same rows (JSON-encoded with orjson too) into a plain table with the store's PRAGMAs; into
  PostgreSQL through ``PostgresStore`` against a psycopg ``COPY`` of the same rows;
- reading N records as a DataFrame (``modelyard.read_metrics_frame``, and ``store.scan`` plus the
  SDK's column-wise frame builder) against a raw ``SELECT`` ... ``fetchall`` of the same columns
  through the same driver (and, for context, that SELECT plus an orjson decode and DataFrame);
- the same number of metric points written with MLflow's ``log_batch`` to its SQLite tracking
  store, in a virtualenv this script creates under ``benchmarks/.envs/mlflow``;
- bytes on disk per prediction record, raw and after ``store.rollup`` (both after VACUUM).

Results print as a table and go to ``benchmarks/results/store-<time>.json``. The machine is
shared, so the JSON also keeps every run's wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
import venv
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Figure, Report, Timer, measure, timer
from modelyard.store.base import DAY_MS, HOUR_MS, Identity, Prediction, Query
from modelyard.store.sqlite import SQLiteStore

HERE = Path(__file__).resolve().parent
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


# -- reads --------------------------------------------------------------------------------------


def fill(path: Path, n: int, batch: int) -> Timer:
    """Write ``n`` records through the direct path in slices, so memory stays bounded."""
    store = SQLiteStore(path)
    total = Timer()
    try:
        made = 0
        while made < n:
            size = min(batch * 10, n - made)
            records = predictions(size, 1_700_000_000_000 + made, 1, seed=made)
            with timer() as t:
                for chunk in chunks(records, batch):
                    store.write_predictions(chunk)
            total.wall += t.wall
            total.cpu += t.cpu
            made += size
    finally:
        store.close()
    return total


RAW_SELECT = (
    "SELECT p.uuid, p.start_ms, p.end_ms, p.metrics FROM predictions p"
    " JOIN identities i ON i.id = p.deployment_id"
    " WHERE i.deployment_crn = ? ORDER BY p.start_ms, p.uuid"
)


def raw_select(path: Path, n: int) -> Timer:
    conn = sqlite3.connect(path)
    try:
        with timer() as t:
            rows = conn.execute(RAW_SELECT, (IDENTITY.deployment_crn,)).fetchall()
    finally:
        conn.close()
    check_rows(len(rows), n)
    return t


def raw_select_frame(path: Path, n: int) -> Timer:
    """Context: the raw SELECT, decoded with orjson and turned into columns by hand.

    Batches of 100,000 rows (as the SDK reads), the cyclic GC paused (millions of fresh dicts
    would trigger it over and over), metric columns as float64 arrays: roughly the least a
    DataFrame of JSON-held metrics costs when written by hand.
    """
    import pandas as pd

    conn = sqlite3.connect(path)
    gc.disable()
    try:
        with timer() as t:
            cursor = conn.execute(RAW_SELECT, (IDENTITY.deployment_crn,))
            uuids: list[str] = []
            starts: list[int] = []
            ends: list[int] = []
            metrics: dict[str, list[Any]] = {}
            while rows := cursor.fetchmany(100_000):
                batch_uuids, batch_starts, batch_ends, texts = zip(*rows, strict=True)
                uuids += batch_uuids
                starts += batch_starts
                ends += batch_ends
                decoded = list(map(orjson.loads, texts))
                for key in decoded[0]:
                    metrics.setdefault(key, []).extend([d.get(key) for d in decoded])
            columns: dict[str, Any] = {
                "predictionUuid": uuids,
                "startTimeStampMs": np.array(starts, dtype=np.int64),
                "endTimeStampMs": np.array(ends, dtype=np.int64),
            }
            for key, values in metrics.items():
                columns[key] = np.array(values, dtype=np.float64)
            frame = pd.DataFrame(columns)
    finally:
        gc.enable()
        conn.close()
    check_rows(len(frame), n)
    return t


def scan_frame(path: Path, n: int) -> Timer:
    """``store.scan`` plus the SDK's column-wise frame builder (or a plain one before it lands)."""
    build = frame_builder()
    store = SQLiteStore(path)
    try:
        with timer() as t:
            frame = build(store.scan(Query(deployment_crn=IDENTITY.deployment_crn)))
    finally:
        store.close()
    check_rows(len(frame), n)
    return t


def frame_builder() -> Callable[[Any], Any]:
    try:
        from modelyard.tracking.frame import batch_to_frame
    except ImportError:
        return _plain_frame
    return batch_to_frame


def _plain_frame(batches: Any) -> Any:
    import pandas as pd

    columns: dict[str, list[Any]] = {}
    for batch in batches:
        decoded = orjson.loads("[" + ",".join(batch.metrics) + "]")
        columns.setdefault("predictionUuid", []).extend(batch.uuid)
        columns.setdefault("startTimeStampMs", []).extend(batch.start_ms)
        for key in decoded[0] if decoded else ():
            columns.setdefault(key, []).extend(d.get(key) for d in decoded)
    return pd.DataFrame(columns)


def sdk_frame(path: Path, n: int) -> Timer:
    """``modelyard.read_metrics_frame`` against the same file, opened through the environment."""
    from modelyard import read_metrics_frame

    os.environ["MODELYARD_DATABASE_URL"] = f"sqlite:///{path}"
    try:
        with timer() as t:
            frame = read_metrics_frame(model_deployment_crn=IDENTITY.deployment_crn)
    finally:
        del os.environ["MODELYARD_DATABASE_URL"]
    check_rows(len(frame), n)
    return t


def check_rows(got: int, expected: int) -> None:
    if got != expected:
        raise SystemExit(f"read {got} rows, expected {expected}")


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
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    repeat = max(1, args.repeat)
    report = Report("store", {"sizes": asdict(sizes), "repeat": repeat, "quick": args.quick})
    con = report.console
    folder = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    try:
        ingest_rate = run_ingest(report, sizes, repeat, folder, args)
        run_reads(report, sizes, repeat, folder)
        run_mlflow(report, sizes, repeat, args, ingest_rate)
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
            f"target >= 100,000/s; {sizes.batch:,} per call",
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
    report.add(
        Figure.rate(
            "ingest PostgresStore.write_predictions",
            "records/s",
            n,
            measure(lambda: postgres_direct(records, args.postgres_url, sizes.batch), repeat),
        ),
        pg_raw,
    )
    return direct  # MLflow's log_batch is a batch API too: compare like with like


def run_reads(report: Report, sizes: Sizes, repeat: int, folder: Path) -> None:
    con = report.console
    n = sizes.read
    con.rule(f"read: {n:,} records as a DataFrame")
    path = folder / "read.db"
    loaded = fill(path, n, sizes.batch)
    report.add(
        Figure.rate("bulk load for the read test (one run)", "records/s", n, [loaded]),
    )
    raw = report.add(
        Figure.seconds(
            "read raw SELECT fetchall (baseline)",
            measure(lambda: raw_select(path, n), repeat),
            "sqlite3, uuid/start/end/metrics columns",
        )
    )
    by_hand = report.add(
        Figure.seconds(
            "read raw SELECT + orjson + DataFrame",
            measure(lambda: raw_select_frame(path, n), repeat),
            "context: a hand-written frame",
        ),
        raw,
    )
    report.add(
        Figure.seconds(
            "read store.scan + frame builder",
            measure(lambda: scan_frame(path, n), repeat),
        ),
        raw,
    )
    try:
        from modelyard import read_metrics_frame  # noqa: F401
    except ImportError as exc:
        report.skip("read_metrics_frame", f"not importable from modelyard yet ({exc})")
        return
    sdk = report.add(
        Figure.seconds(
            "read_metrics_frame (SDK)",
            measure(lambda: sdk_frame(path, n), repeat),
            "target within 2x of the raw SELECT",
        ),
        raw,
    )
    report.add(
        Figure(
            "read_metrics_frame vs hand-written frame",
            "s",
            sdk.runs,
            sdk.cpu_s,
            sdk.wall_s,
            note="same runs, compared with the decode-included baseline",
        ),
        by_hand,
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
