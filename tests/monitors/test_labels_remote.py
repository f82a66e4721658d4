"""A monitor job's run with only MODELYARD_URL and its run key imports its labels from PostgreSQL
through a real server process (the connection through ``GET /api/v1/monitors/connection``, the
labels through ``POST /api/v1/metrics/delayed/batch``, the import through
``PUT /api/v1/monitors/{name}/labels``), then computes ROC AUC for the windows."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest
from sklearn.metrics import roc_auc_score

from _services import postgres_schema
from modelyard.ids import new_crn
from modelyard.registry import Registry
from modelyard.specs.job import JobSpec
from modelyard.store.base import Identity, MetricsStore

from .conftest import HOUR, T0, Server, write_stream

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SPEC = """\
name: churn-labels
deployment: {dep}
prediction: probability
label: churned
window: 1h
metrics: [classification, label_coverage]
min_labels: 1
labels:
  connection: warehouse
  table: {schema}.outcomes
  uuid_column: prediction_uuid
  time_column: updated_at
"""


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    with postgres_schema(postgres_url, "h3") as schema:
        yield schema


def test_a_monitor_job_run_imports_labels_from_postgresql(
    sdk_store: MetricsStore, server: Server, tmp_path: Path, postgres_url: str, pg_schema: str
) -> None:
    registry = Registry(sdk_store)
    model, _ = registry.create_model("churn")
    assert model.project_crn is not None
    ident = Identity(model.crn, new_crn("build"), new_crn("deployment"))
    stream = write_stream(sdk_store, 2, unlabelled=frozenset({0, 1}), ident=ident)
    with psycopg.connect(postgres_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            f'CREATE TABLE "{pg_schema}".outcomes '
            "(prediction_uuid uuid, churned int, updated_at timestamptz)"
        )
        rows = [
            (u, int(y), f"2026-06-01T00:00:{i % 60:02d}Z")
            for w in (0, 1)
            for i, (u, y) in enumerate(
                zip(stream.uuids[w], stream.windows[w]["churned"], strict=True)
            )
        ]
        cur.executemany(f'INSERT INTO "{pg_schema}".outcomes VALUES (%s, %s, %s)', rows)
    options = {"host": "127.0.0.1", "port": "5432", "database": "test", "user": "postgres"}
    registry.connections.create(model.project_crn, "warehouse", "postgresql", options, {}, "test")
    job_spec = JobSpec.parse(
        {"name": "churn-monitor", "project": str(tmp_path), "monitor": "m.yaml", "manual": True}
    )
    run = registry.create_run(registry.create_job(job_spec).id, 0, 1, "manual")
    _, run_key = registry.create_api_key("run of a monitor job", "run", scope=run.id)
    spec_file = tmp_path / "m.yaml"
    spec_file.write_text(SPEC.format(dep=ident.deployment_crn, schema=pg_schema))
    empty_home = tmp_path / "no-database-here"
    empty_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env.update(MODELYARD_URL=server.url, MODELYARD_API_KEY=run_key, MODELYARD_HOME=str(empty_home))

    def monitor_run() -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "modelyard.monitors", "run", str(spec_file), "--window",
             f"{T0}..{T0 + 2 * HOUR}"],
            capture_output=True, text=True, env=env, timeout=180, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + server.output
        return done

    done = monitor_run()
    assert "labels from 'warehouse': 600 rows read, 600 matched, 0 unmatched, 0 duplicates" in (
        done.stdout
    )
    assert list(empty_home.iterdir()) == []  # no store was opened on this side
    for w in (0, 1):
        rows = stream.windows[w]
        start = T0 + w * HOUR
        stored = registry.monitors.result("churn-labels", ident.deployment_crn, start)
        assert stored is not None
        assert stored.metrics["roc_auc"] == pytest.approx(
            roc_auc_score(rows["churned"], rows["probability"])
        )
    (first,) = registry.labels.imports("churn-labels")
    assert first.watermark_after == {"datetime": "2026-06-01T00:00:59+00:00"}
    again = monitor_run()  # the rows at the watermark's time again: duplicates, nothing new
    assert "0 unmatched, 10 duplicates" in again.stdout
    command = str(Path(sys.executable).parent / "modelyard")
    cli = subprocess.run(
        [command, "monitors", "labels", "churn-labels", "--deployment", ident.deployment_crn,
         "--json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    listed = orjson.loads(cli.stdout)
    assert [i["rows_read"] for i in listed] == [10, 600]
