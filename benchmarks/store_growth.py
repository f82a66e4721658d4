"""Ingest rate against store size: does ``write_predictions`` slow down as the store grows?

    .venv/bin/python benchmarks/store_growth.py                       # 0, 1M, 4M, 10M records
    .venv/bin/python benchmarks/store_growth.py --sizes 0,1000000     # fewer sizes
    .venv/bin/python benchmarks/store.py --growth                      # the same, from store.py

Records as the issue measured them: 10 float metrics each, two deployments alternating, in time
order over 30 days, written with ``write_predictions`` in batches of 10,000. For each store size
the figure is the rate of ``--measure`` more records (median of ``--repeat`` runs, each into a
fresh copy of the filled store) against the empty-store rate of the same run. Ids are either
random (uuid4: what a client may send) or what Modelyard mints (``ids.new_prediction_uuid``);
both are measured, since a client's uuid4 ids cannot be made time-ordered.

Filled stores take minutes to build (10M records are about 3 GB on SQLite), so they are built
once into ``--cache`` (default ``/tmp/modelyard-growth``), named by size, id kind and schema
version, and reused by later runs; delete the folder to rebuild. They are built through the
store's own ``write_predictions`` with the durability switched off and a large cache (the
same rows and indexes, built faster); only the measured runs use the store as shipped.

PostgreSQL: the same, on a private cluster this script starts (``initdb`` + ``pg_ctl`` into the
cache folder, a free loopback port, the server's default settings: shared_buffers 128 MB), so the
figures do not depend on, or disturb, the machine's own server; plus ``PostgresStore`` ingest
against a psycopg ``COPY`` of the same rows into a plain table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Figure, Report, Timer, timer
from modelyard.ids import new_prediction_uuid
from modelyard.store.base import DAY_MS, Identity, Prediction
from modelyard.store.schema import SCHEMA_VERSION
from modelyard.store.sqlite import SQLiteStore

__all__ = ["main", "run_growth"]

METRICS = [f"m{i}" for i in range(10)]
DEPLOYMENTS = [
    Identity(
        model_crn="crn:modelyard:model/growth",
        build_crn="crn:modelyard:build/growth",
        deployment_crn=f"crn:modelyard:deployment/growth-{i}",
    )
    for i in range(2)
]
T0 = 1_790_000_000_000
SPAN_MS = 30 * DAY_MS
BATCH = 10_000
FILL_CHUNK = 100_000
DEFAULT_SIZES = (0, 1_000_000, 4_000_000, 10_000_000)
DEFAULT_CACHE = Path("/tmp/modelyard-growth")


def uuid4_text() -> str:
    return str(uuid.uuid4())


ID_KINDS: dict[str, Callable[[], str]] = {"uuid4": uuid4_text, "minted": new_prediction_uuid}


def records(first: int, n: int, step_ms: float, make_id: Callable[[], str]) -> list[Prediction]:
    """Records ``first .. first + n - 1`` of the series: one every ``step_ms``, two deployments."""
    rng = np.random.default_rng(first)
    values = rng.lognormal(0.0, 1.0, size=(n, len(METRICS))).tolist()
    out = []
    for i, row in enumerate(values):
        index = first + i
        start = T0 + int(index * step_ms)
        out.append(
            Prediction(
                make_id(),
                DEPLOYMENTS[index % 2],
                start,
                start + 3,
                dict(zip(METRICS, row, strict=True)),
            )
        )
    return out


def step_for(size: int) -> float:
    """One record every 259 ms: 10M records span 30 days (smaller stores, the first days)."""
    return SPAN_MS / 10_000_000


# -- SQLite -------------------------------------------------------------------------------------


def sqlite_path(cache: Path, size: int, kind: str) -> Path:
    return cache / f"sqlite-v{SCHEMA_VERSION}-{kind}-{size}.db"


def sqlite_bases(cache: Path, sizes: list[int], kind: str) -> None:
    """Build the filled stores of ``sizes`` that ``cache`` lacks, in one pass: the largest is
    filled and copied aside as it passes each smaller size."""
    missing = [n for n in sizes if n and not sqlite_path(cache, n, kind).exists()]
    if not missing:
        return
    cache.mkdir(parents=True, exist_ok=True)
    building = cache / f"sqlite-{kind}.building"
    for leftover in cache.glob(building.name + "*"):
        leftover.unlink()
    store = SQLiteStore(building, synchronous="NORMAL")
    conn = store._conn  # the builder only: no fsync, a cache that holds the whole uuid index
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-6000000")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    began = time.perf_counter()
    made = 0
    try:
        for size in sorted(missing):
            while made < size:
                n = min(FILL_CHUNK, size - made)
                store.write_predictions(records(made, n, step_for(size), ID_KINDS[kind]))
                made += n
                if made % 1_000_000 == 0:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    print(f"    {kind}: {made:,} ({time.perf_counter() - began:.0f}s)", flush=True)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            shutil.copyfile(building, sqlite_path(cache, size, kind))
    finally:
        store.close()
        for leftover in cache.glob(building.name + "*"):
            leftover.unlink()


def sqlite_run(base: Path, size: int, measure: int, kind: str, work: Path) -> Timer:
    """Write ``measure`` records (after the filled store's last) into a fresh copy of it."""
    path = work / f"run-{uuid.uuid4().hex[:8]}.db"
    if size:
        shutil.copyfile(sqlite_path(base, size, kind), path)
        os.sync()  # the copy's gigabytes on disk first, not written back during the timing
    batch_list = records(size, measure, step_for(size), ID_KINDS[kind])
    store = SQLiteStore(path)
    try:
        with timer() as t:
            for i in range(0, measure, BATCH):
                store.write_predictions(batch_list[i : i + BATCH])
    finally:
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return t


# -- PostgreSQL -----------------------------------------------------------------------------------


class Cluster:
    """A private PostgreSQL cluster in ``folder`` (initdb on first use), on a free loopback port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = 0
        # PostgreSQL refuses to run as root: then its programs run as the ``postgres`` user.
        self.user = "postgres" if os.geteuid() == 0 else None

    def start(self, **settings: str) -> str:
        if not (self.data / "PG_VERSION").exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            if self.user:
                shutil.chown(self.folder, "postgres", "postgres")
            subprocess.run(
                ["initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                check=True,
                capture_output=True,
                user=self.user,
            )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder}"
        options += "".join(f" -c {k}={v}" for k, v in settings.items())
        subprocess.run(
            [
                "pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.folder / "log"),
                "-w",
                "-o",
                options,
                "start",
            ],
            check=True,
            capture_output=True,
            user=self.user,
        )
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        subprocess.run(
            ["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"],
            check=False,
            capture_output=True,
            user=self.user,
        )

    def databases(self) -> set[str]:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}

    def sql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(statement)


def pg_base_name(size: int, kind: str) -> str:
    return f"growth_v{SCHEMA_VERSION}_{kind}_{size}"


def pg_build(cluster: Cluster, sizes: list[int], kind: str) -> None:
    """Fill the databases of ``sizes`` that the cluster lacks through ``PostgresStore``, in one
    pass (a file copy of the database as it passes each size)."""
    from modelyard.store.postgres import PostgresStore

    have = cluster.databases()
    missing = [n for n in sizes if n and pg_base_name(n, kind) not in have]
    if not missing:
        return
    building = f"growth_{kind}_building"
    cluster.sql(f"DROP DATABASE IF EXISTS {building}")
    cluster.sql(f"CREATE DATABASE {building}")
    began = time.perf_counter()
    made = 0
    for size in sorted(missing):
        store = PostgresStore(cluster.url(building))
        store._conn.execute("SET synchronous_commit = off")  # the builder only
        try:
            while made < size:
                n = min(FILL_CHUNK, size - made)
                store.write_predictions(records(made, n, step_for(size), ID_KINDS[kind]))
                made += n
                if made % 1_000_000 == 0:
                    print(f"    {kind}: {made:,} ({time.perf_counter() - began:.0f}s)", flush=True)
            store._conn.execute("VACUUM ANALYZE")
        finally:
            store.close()
        cluster.sql(
            f"CREATE DATABASE {pg_base_name(size, kind)} TEMPLATE {building} STRATEGY FILE_COPY"
        )
    cluster.sql(f"DROP DATABASE {building}")


def pg_run(cluster: Cluster, size: int, measure: int, kind: str) -> Timer:
    """Write ``measure`` records into a fresh file copy of the filled database."""
    from modelyard.store.postgres import PostgresStore

    run = f"growth_run_{uuid.uuid4().hex[:8]}"
    if size:
        cluster.sql(f"CREATE DATABASE {run} TEMPLATE {pg_base_name(size, kind)} STRATEGY FILE_COPY")
    else:
        cluster.sql(f"CREATE DATABASE {run}")
    try:
        batch_list = records(size, measure, step_for(size), ID_KINDS[kind])
        store = PostgresStore(cluster.url(run))
        try:
            with timer() as t:
                for i in range(0, measure, BATCH):
                    store.write_predictions(batch_list[i : i + BATCH])
        finally:
            store.close()
    finally:
        cluster.sql(f"DROP DATABASE {run}")
    return t


def pg_copy_run(cluster: Cluster, measure: int, kind: str) -> Timer:
    """Baseline: a psycopg COPY of the same rows into a plain table, 10,000 per transaction."""
    import orjson
    import psycopg

    run = f"growth_copy_{uuid.uuid4().hex[:8]}"
    cluster.sql(f"CREATE DATABASE {run}")
    try:
        batch_list = records(0, measure, step_for(0), ID_KINDS[kind])
        with psycopg.connect(cluster.url(run)) as conn:
            conn.execute(
                "CREATE TABLE raw (uuid TEXT, deployment_crn TEXT, start_ms BIGINT,"
                " end_ms BIGINT, metrics TEXT)"
            )
            conn.commit()
            with timer() as t:
                for i in range(0, measure, BATCH):
                    with conn.cursor() as cur, cur.copy("COPY raw FROM STDIN") as copy:
                        for p in batch_list[i : i + BATCH]:
                            copy.write_row(
                                (
                                    p.uuid,
                                    p.identity.deployment_crn,
                                    p.start_ms,
                                    p.end_ms,
                                    orjson.dumps(p.metrics).decode(),
                                )
                            )
                    conn.commit()
    finally:
        cluster.sql(f"DROP DATABASE {run}")
    return t


# -- the report -----------------------------------------------------------------------------------


def run_growth(report: Report, args: argparse.Namespace) -> None:  # shape: one table, two backends
    cache: Path = args.cache
    sizes = sorted(set(args.sizes) | {0})
    kinds = args.ids
    work = cache / "runs"
    work.mkdir(parents=True, exist_ok=True)
    con = report.console
    if "sqlite" in args.backends:
        for kind in kinds:
            con.rule(f"SQLite ingest vs store size, {kind} ids, {args.measure:,} records per run")
            empty: Figure | None = None
            sqlite_bases(cache, sizes, kind)
            for size in sizes:
                timers = [
                    sqlite_run(cache, size, args.measure, kind, work) for _ in range(args.repeat)
                ]
                figure = Figure.rate(
                    f"sqlite {kind} ingest at {size:,}", "records/s", args.measure, timers
                )
                added = report.add(figure, empty)
                empty = empty or added
    if "postgres" in args.backends:
        cluster = Cluster(cache / "pg")
        cluster.start()
        try:
            for kind in kinds:
                con.rule(f"PostgreSQL ingest vs store size, {kind} ids")
                empty = None
                if kind == kinds[0]:
                    copy = report.add(
                        Figure.rate(
                            "postgres plain COPY (baseline)",
                            "records/s",
                            args.measure,
                            [pg_copy_run(cluster, args.measure, kind) for _ in range(args.repeat)],
                            "plain table, orjson encode included",
                        )
                    )
                pg_build(cluster, sizes, kind)
                for size in sizes:
                    timers = [pg_run(cluster, size, args.measure, kind) for _ in range(args.repeat)]
                    figure = Figure.rate(
                        f"postgres {kind} ingest at {size:,}", "records/s", args.measure, timers
                    )
                    added = report.add(figure, empty or copy)
                    empty = empty or added
        finally:
            cluster.stop()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--sizes",
        type=lambda text: [int(float(s)) for s in text.split(",")],
        default=list(DEFAULT_SIZES),
        help="store sizes in records, comma-separated (0 is always measured)",
    )
    p.add_argument("--measure", type=int, default=200_000, help="records written per run")
    p.add_argument(
        "--ids",
        type=lambda t: t.split(","),
        default=["uuid4", "minted"],
        help="uuid4 (random, as clients may send), minted (ids.new_prediction_uuid), or both",
    )
    p.add_argument(
        "--backends",
        type=lambda t: t.split(","),
        default=["sqlite", "postgres"],
        help="sqlite, postgres (a private cluster: initdb and pg_ctl on the PATH), or both",
    )
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where filled stores live")


def main(argv: list[str] | None = None) -> int:
    p = parser()
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    report = Report("store-growth", {k: str(v) for k, v in vars(args).items()})
    run_growth(report, args)
    report.console.print(report.table())
    report.console.print(f"results: {report.write(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
