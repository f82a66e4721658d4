"""Labels for N predictions (default 1,000,000) joined from PostgreSQL and from a Parquet file on
a local S3 server (moto's server mode, a real HTTP server on loopback), by a monitor run's
``labels:`` import (``modelyard.monitors.labels.import_labels`` on a PostgreSQL store): time and
peak memory, against, in the same run,

- the floor: a plain psycopg fetch of the same rows plus one bulk insert (COPY) of them into a
  copy of ``delayed_metrics`` without its indexes (the issue's baseline), and the same into a
  copy with its indexes (what any insert into the table labels are kept in pays);
- the old path: a script calling ``track_delayed_metrics`` once per uuid (5,000, extrapolated).

Each measured phase runs in its own process (peak RSS is that process's ``VmHWM``).

    .venv/bin/python benchmarks/labels_join.py [--n 1000000] [--old 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from typing import Any

PG = "postgresql://postgres@127.0.0.1:5432/test"
T0 = 1_780_000_000_000


def _rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited over exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _access(schema: str) -> Any:
    from modelyard.monitors.access import EmbeddedAccess
    from modelyard.store.postgres import PostgresStore

    return EmbeddedAccess(PostgresStore(f"{PG}?options=-csearch_path%3D{schema}"))


def phase_import(cfg: dict[str, Any], which: str) -> dict[str, Any]:
    from modelyard.monitors.labels import import_labels
    from modelyard.specs.monitor import MonitorSpec

    access = _access(cfg["store_schema"])
    labels: dict[str, Any] = {"uuid_column": "prediction_uuid", "time_column": "t"}
    if which == "pg":
        labels.update(connection="pg", table=f"{cfg['source_schema']}.outcomes", columns={"y": "y"})
    else:
        labels.update(connection="s3", path="labels.parquet", columns={"y": "y_s3"})
    labels["max_rows"] = cfg["n"] + 10
    spec = MonitorSpec.from_dict(
        {
            "name": f"bench-{which}",
            "deployment": cfg["deployment"],
            "prediction": "p",
            "label": "y",
            "window": "1h",
            "metrics": ["classification"],
            "labels": labels,
        }
    )
    start = time.perf_counter()
    record = import_labels(spec, access, cfg["deployment"])
    took = time.perf_counter() - start
    assert record is not None and record.matched == cfg["n"], record
    return {"s": took, "rss_mb": _rss_mb(), "line": record.line()}


def phase_floor(cfg: dict[str, Any], indexed: bool = False) -> dict[str, Any]:
    import psycopg

    start = time.perf_counter()
    with psycopg.connect(PG) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT prediction_uuid, y, t FROM "{cfg["source_schema"]}".outcomes')
        rows = cur.fetchall()
        target = f'"{cfg["store_schema"]}".floor' + ("_indexed" if indexed else "")
        like = f'"{cfg["store_schema"]}".delayed_metrics INCLUDING IDENTITY' + (
            " INCLUDING INDEXES" if indexed else ""
        )
        cur.execute(f"CREATE TABLE {target} (LIKE {like})")
        with cur.copy(f"COPY {target} (uuid, key, value, tracked_ms, source) FROM STDIN") as copy:
            for u, y, t in rows:
                copy.write_row((str(u), "y", str(y), t, "floor"))
        conn.commit()
    return {"s": time.perf_counter() - start, "rss_mb": _rss_mb()}


def phase_old(cfg: dict[str, Any], count: int) -> dict[str, Any]:
    import modelyard

    os.environ["MODELYARD_DATABASE_URL"] = f"{PG}?options=-csearch_path%3D{cfg['store_schema']}"
    uuids = cfg["old_uuids"][:count]
    start = time.perf_counter()
    for i, u in enumerate(uuids):
        modelyard.track_delayed_metrics({"y_old": i % 2}, u)
    took = time.perf_counter() - start
    return {"s": took, "per_uuid_ms": took / count * 1000, "rss_mb": _rss_mb()}


def _setup(n: int, old: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd
    import psycopg
    import pyarrow as pa
    import pyarrow.parquet as pq
    from moto.server import ThreadedMotoServer

    from modelyard.registry import Registry
    from modelyard.store.base import Identity, Prediction
    from modelyard.store.postgres import PostgresStore

    store_schema, source_schema = (f"bench_{uuid.uuid4().hex[:8]}" for _ in range(2))
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{store_schema}"')
        conn.execute(f'CREATE SCHEMA "{source_schema}"')
    store = PostgresStore(f"{PG}?options=-csearch_path%3D{store_schema}")
    registry = Registry(store)
    registry.people.create_user("bench")
    project = registry.people.create_project("bench", owner="bench").crn
    model, _ = registry.create_model("bench", project_crn=project)
    ident = Identity(model.crn, "crn:modelyard:build/b", f"crn:modelyard:deployment/{uuid.uuid4()}")
    uuids = [str(uuid.uuid4()) for _ in range(n + old)]
    for i in range(0, len(uuids), 100_000):
        store.write_predictions(
            [
                Prediction(u, ident, T0 + j, T0 + j + 1, {"p": 0.5})
                for j, u in enumerate(uuids[i : i + 100_000], start=i)
            ]
        )
    labels = pd.DataFrame(
        {"prediction_uuid": uuids[:n], "y": np.arange(n) % 2, "t": T0 + np.arange(n)}
    )
    with psycopg.connect(PG, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            f'CREATE TABLE "{source_schema}".outcomes (prediction_uuid uuid, y int, t bigint)'
        )
        with cur.copy(f'COPY "{source_schema}".outcomes FROM STDIN') as copy:
            for row in labels.itertuples(index=False):
                copy.write_row(row)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    moto.start()
    host, port = moto.get_host_and_port()
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="labels")
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(labels, preserve_index=False), sink)
    s3.put_object(Bucket="labels", Key="labels.parquet", Body=sink.getvalue().to_pybytes())
    pg_options = {"host": "127.0.0.1", "port": "5432", "database": "test", "user": "postgres"}
    registry.connections.create(project, "pg", "postgresql", pg_options, {}, "bench")
    s3_options = {
        "bucket": "labels",
        "endpoint_url": f"http://{host}:{port}",
        "region": "us-east-1",
    }
    secrets = {"access_key_id": "S3_KEY", "secret_access_key": "S3_SECRET"}
    registry.connections.create(project, "s3", "s3", s3_options, secrets, "bench")
    store.close()
    return {
        "n": n,
        "store_schema": store_schema,
        "source_schema": source_schema,
        "deployment": ident.deployment_crn,
        "old_uuids": uuids[n:],
        "_moto": moto,
    }


def _child(cfg: dict[str, Any], phase: str, *args: Any) -> dict[str, Any]:
    env = {**os.environ, "S3_KEY": "k", "S3_SECRET": "s", "MODELYARD_HOME": "/tmp/h3-bench-home"}
    payload = json.dumps({k: v for k, v in cfg.items() if not k.startswith("_")})
    done = subprocess.run(
        [sys.executable, __file__, "--phase", phase, *map(str, args)],
        input=payload,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"phase {phase} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--old", type=int, default=5000)
    parser.add_argument("--phase", default=None)
    parser.add_argument("args", nargs="*")
    args = parser.parse_args()
    if args.phase:
        cfg = json.loads(sys.stdin.read())
        out = {
            "floor": lambda: phase_floor(cfg),
            "floor_indexed": lambda: phase_floor(cfg, indexed=True),
            "import": lambda: phase_import(cfg, args.args[0]),
            "old": lambda: phase_old(cfg, int(args.args[0])),
        }[args.phase]()
        print(json.dumps(out))
        return
    cfg = _setup(args.n, args.old)
    try:
        floor = _child(cfg, "floor")
        indexed = _child(cfg, "floor_indexed")
        pg = _child(cfg, "import", "pg")
        s3 = _child(cfg, "import", "s3")
        old = _child(cfg, "old", args.old)
    finally:
        cfg["_moto"].stop()
        import psycopg

        with psycopg.connect(PG, autocommit=True) as conn:
            for schema in (cfg["store_schema"], cfg["source_schema"]):
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    n = args.n
    old_total = old["per_uuid_ms"] * n / 1000
    print(f"labels for {n:,} predictions (PostgreSQL store)")
    print(f"{'path':58} {'time s':>9} {'peak RSS MB':>12} {'x floor':>8} {'x indexed':>9}")
    rows = [
        ("floor: psycopg fetch + one COPY into delayed_metrics", floor),
        ("floor, indexed: the same COPY with the table's indexes", indexed),
        ("labels: from PostgreSQL (import_labels)", pg),
        ("labels: Parquet on S3 (moto server, import_labels)", s3),
    ]
    for name, r in rows:
        print(
            f"{name:58} {r['s']:9.2f} {r['rss_mb']:12.0f} {r['s'] / floor['s']:8.2f} "
            f"{r['s'] / indexed['s']:9.2f}"
        )
    print(
        f"{'old: track_delayed_metrics per uuid (from ' + str(args.old) + ', extrapolated)':58} "
        f"{old_total:9.0f} {old['rss_mb']:12.0f} {old_total / floor['s']:8.1f}"
    )
    print(pg["line"])
    print(s3["line"])


if __name__ == "__main__":
    main()
