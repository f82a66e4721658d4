"""A seeded synthetic churn stream in a real store, and a local webhook receiver.

Predictions are written with the store's own ``write_predictions`` (the SDK's ``@model_metrics``
stamps wall-clock times, and the windows here are hours in the past); labels that arrive late go
through the SDK's ``track_delayed_metrics``. Each window has ``PER_WINDOW`` predictions with
features tenure (numeric), charges (numeric) and plan (categorical), a calibrated score and, for
labelled windows, the realised label in the record.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest

from modelyard.ids import new_crn, new_prediction_uuid
from modelyard.store.base import Identity, MetricsStore, Prediction

HOUR = 3_600_000
T0 = 1_780_000_000_000 // HOUR * HOUR  # an hour boundary in 2026
PER_WINDOW = 300
FEATURES = ["tenure", "charges", "plan"]


def identity() -> Identity:
    return Identity(new_crn("model"), new_crn("build"), new_crn("deployment"))


def _rows(rng: np.random.Generator, n: int, tenure_shift: float = 0.0) -> pd.DataFrame:
    tenure = rng.normal(24.0 + tenure_shift, 8.0, n)
    charges = rng.normal(70.0, 20.0, n)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    logit = -0.08 * (tenure - 24.0) + 0.03 * (charges - 70.0) + np.where(plan == "basic", 0.4, -0.3)
    probability = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(n) < probability).astype(int)
    return pd.DataFrame(
        {
            "tenure": tenure,
            "charges": charges,
            "plan": plan,
            "probability": probability,
            "churned": label,
        }
    )


def reference_frame(seed: int = 1, n: int = 4000) -> pd.DataFrame:
    return _rows(np.random.default_rng(seed), n)


@dataclass
class Stream:
    ident: Identity
    windows: dict[int, pd.DataFrame] = field(default_factory=dict)  # window index -> rows
    uuids: dict[int, list[str]] = field(default_factory=dict)

    def start(self, index: int) -> int:
        return T0 + index * HOUR


def write_stream(
    store: MetricsStore,
    windows: int,
    *,
    drifted: frozenset[int] = frozenset(),
    unlabelled: frozenset[int] = frozenset(),
    seed: int = 7,
    ident: Identity | None = None,
) -> Stream:
    """``windows`` hours of predictions; tenure shifted by 1.2 std in ``drifted`` windows;
    ``unlabelled`` windows carry no label in their records. ``ident``: whose (default: a model
    the registry does not know)."""
    rng = np.random.default_rng(seed)
    stream = Stream(ident or identity())
    for w in range(windows):
        rows = _rows(rng, PER_WINDOW, 9.6 if w in drifted else 0.0)
        times = np.sort(rng.integers(0, HOUR, PER_WINDOW)) + stream.start(w)
        preds, uuids = [], []
        for row, t in zip(rows.itertuples(index=False), times, strict=True):
            metrics: dict[str, Any] = {
                "tenure": float(row.tenure),
                "charges": float(row.charges),
                "plan": str(row.plan),
                "probability": float(row.probability),
            }
            if w not in unlabelled:
                metrics["churned"] = int(row.churned)
            uuid = new_prediction_uuid()
            uuids.append(uuid)
            preds.append(Prediction(uuid, stream.ident, int(t), int(t) + 3, metrics))
        store.write_predictions(preds)
        stream.windows[w] = rows
        stream.uuids[w] = uuids
    return stream


@pytest.fixture
def sdk_store() -> MetricsStore:
    """The SDK's embedded store of this test's home (what ``run_monitor`` uses by default)."""
    from modelyard.monitors._store import monitor_store

    return monitor_store(None)


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.server.received.append(orjson.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Webhook:
    url: str
    received: list[dict[str, Any]]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A real HTTP server on a free loopback port that keeps every JSON body POSTed to it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Webhook(f"http://127.0.0.1:{server.server_address[1]}/hook", server.received)  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class Server:
    """``python -m modelyard.server`` as a real process on the test's home."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def server(modelyard_home: Path, tmp_path: Path) -> Iterator[Server]:
    """A server process over the test's home (SQLite in WAL: this process may write it too)."""
    from modelyard.runtime import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["MODELYARD_HOME"] = str(modelyard_home)
    log = tmp_path / "server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard.server", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    running = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited {proc.returncode}: {running.output}")
            try:
                if httpx.get(running.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
