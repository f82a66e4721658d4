"""Serving throughput and latency: the bare floor, Modelyard (recording on, 1 and 2 replicas,
adaptive batching) and MLflow's ``mlflow models serve``, with one load generator for all.

Every contender answers single-row requests to the same scikit-learn model (StandardScaler +
LogisticRegression fitted on ``load_breast_cancer``), on 127.0.0.1:

- ``floor``: a bare uvicorn ASGI app (uvloop, httptools) that parses the body with orjson and calls
  ``predict_proba``: what the model costs behind the fastest plain Python HTTP server;
- ``modelyard 1r`` / ``2r``: a real ``modelyard server`` in a temp home, the model deployed over
  REST, its ``predict`` decorated with ``@model_metrics`` and tracking the input row and the
  probability; called on ``POST /api/v1/models/{name}/predict`` and the reference ``POST /model``;
- ``modelyard batch``: the same file plus ``predict_batch`` (one ``predict_proba`` over a batch),
  deployed with ``track_io`` so each item's record still holds its input and output;
- ``mlflow``: ``mlflow models serve --env-manager local`` of the same pipeline saved with
  ``mlflow.sklearn.save_model`` (``predict_proba``, with a signature), in its own virtualenv under
  ``benchmarks/.envs/mlflow`` that this script creates (or completes) on first use.

The load generator is ``wrk`` (installed with apt-get if missing, saying so) with a Lua script for
the POST body; without it, a small asyncio keep-alive client. It shares the two cores with the
servers, so its CPU time is reported next to each figure, as is the servers' own CPU time. Each
figure (req/s, p50, p99 at concurrency 1, 8 and 64) is the median of ``--repeat`` rounds, every
contender measured in each round (interleaved, all servers up at once). After each
Modelyard run the prediction records of the deployment are counted in the store and compared
with the requests the generator saw answered with 200.

    .venv/bin/python benchmarks/serving.py            # 10 s runs, 3 rounds: about 13 minutes
    .venv/bin/python benchmarks/serving.py --quick    # 2 s runs, 1 repeat, no MLflow: a smoke run
    .venv/bin/python benchmarks/serving.py --only floor,batch --concurrency 64   # batching alone
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from _common import Figure, Report
from modelyard.runtime import free_port
from server import start_server

HERE = Path(__file__).resolve().parent
MLFLOW_ENV = HERE / ".envs" / "mlflow"
# mlflow-skinny has pyfunc, the scoring server (FastAPI + uvicorn) and the sklearn flavour; the
# flavour saves with skops by default, and the model itself needs scikit-learn and pandas.
MLFLOW_REQUIREMENTS = ["mlflow-skinny>=3", "scikit-learn", "pandas", "skops"]
CONCURRENCY = (1, 8, 64)
# What --only selects from: the floor, Modelyard with 1 or 2 replicas (both routes), Modelyard
# with batching, MLflow.
GROUPS = ("floor", "1r", "2r", "batch", "mlflow")

# The model, shared by every contender's files: fitted at import (about 50 ms, deterministic).
LR_MODEL = """
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    MODEL = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
"""

PREDICT = """
    import numpy as np

    import modelyard
    from lr_model import MODEL


    @modelyard.model_metrics
    def predict(args):
        features = args["features"]
        row = np.asarray(features, dtype=float).reshape(1, -1)
        probability = float(MODEL.predict_proba(row)[0, 1])
        modelyard.track_metric("input", features)
        modelyard.track_metric("probability", probability)
        return {"probability": probability}
"""

# Undecorated on purpose: a decorated batch function has one record per call, whose tracked
# metrics are copied to every item; --track-io gives each item its own input and output instead.
PREDICT_BATCH = """

    def predict_batch(items):
        rows = np.asarray([item["features"] for item in items], dtype=float)
        return [{"probability": float(p)} for p in MODEL.predict_proba(rows)[:, 1]]
"""

FLOOR_APP = """
    import numpy as np
    import orjson

    from lr_model import MODEL

    HEADERS = [(b"content-type", b"application/json")]


    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        if scope["method"] != "POST":  # the benchmark's readiness probe
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        features = orjson.loads(b"".join(chunks))["features"]
        row = np.asarray(features, dtype=float).reshape(1, -1)
        body = orjson.dumps({"probability": float(MODEL.predict_proba(row)[0, 1])})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*HEADERS, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
"""

MLFLOW_SAVE = """
    import json, sys
    import mlflow, mlflow.sklearn, pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer(as_frame=True)
    X = data.data
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, data.target)
    signature = infer_signature(X, model.predict_proba(X))
    mlflow.sklearn.save_model(model, sys.argv[1], signature=signature,
                              pyfunc_predict_fn="predict_proba")
    print(json.dumps({"mlflow": mlflow.__version__, "columns": list(X.columns)}))
"""

WRK_LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n@@RESULT {{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class Target:
    """One URL with its body and headers: what a load run sends, over and over."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    """What one load run measured. ``ok`` counts the 2xx answers the generator saw."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    ok: int
    errors: dict[str, int]
    generator_cpu_s: float
    server_cpu_s: float  # the contender's processes with their children (replicas)
    seconds: float
    records: int | None = None
    front_cpu_s: float = 0.0  # the contender's first process alone (modelyard: the server)


def lua_string(data: bytes) -> str:
    """A Lua long string literal that cannot be closed by the data inside it."""
    level = 0
    while b"]" + b"=" * level + b"]" in data:
        level += 1
    eq = "=" * level
    return f"[{eq}[{data.decode()}]{eq}]"


def ensure_wrk(console: Any) -> str | None:
    """The path of ``wrk``, installing the Debian package once if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    console.print("wrk is not installed: installing the Debian package with apt-get install wrk")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    done = subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-q", "wrk"], capture_output=True, text=True
    )
    if done.returncode != 0:
        console.print(f"  could not install wrk ({done.stderr.strip()[-300:]}); using asyncio")
    return shutil.which("wrk")


def tree_cpu(pids: list[int]) -> tuple[float, float]:
    """User + system CPU seconds, as now, of these processes with all their children, and of
    the first process alone."""
    total = front = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            try:
                times = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
            if p.pid == pids[0]:
                front = times.user + times.system
    return total, front


def run_wrk(wrk: str, target: Target, concurrency: int, seconds: float, tmp: Path) -> Run:
    headers = "\n".join(
        f"wrk.headers[ {lua_string(k.encode())} ] = {lua_string(v.encode())}"
        for k, v in target.headers.items()
    )
    script = tmp / "post.lua"
    script.write_text(WRK_LUA.format(body=lua_string(target.body), headers=headers))
    threads = min(2, concurrency)
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
    ]
    proc = subprocess.Popen(
        [*argv, "-s", str(script), target.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    # wrk prints little, and only at the end, so reading one pipe then the other cannot block.
    text, error_text = proc.stdout.read().decode(), proc.stderr.read().decode()
    # wait4, not wait: it hands back the generator's own rusage (its CPU time on the shared cores).
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    line = next((ln for ln in text.splitlines() if ln.startswith("@@RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {error_text or text}")
    res = orjson.loads(line.removeprefix("@@RESULT "))
    duration = res["duration_us"] / 1e6
    errors = {k: res[k] for k in ("connect", "read", "write", "status", "timeout") if res[k]}
    ok = res["requests"] - res["status"]
    return Run(
        rps=ok / duration,
        p50_ms=res["p50_us"] / 1000,
        p99_ms=res["p99_us"] / 1000,
        requests=res["requests"],
        ok=ok,
        errors=errors,
        generator_cpu_s=usage.ru_utime + usage.ru_stime,
        server_cpu_s=0.0,
        seconds=duration,
    )


async def _asyncio_load(target: Target, concurrency: int, seconds: float) -> Run:
    """The fallback generator: ``concurrency`` keep-alive connections, one request on each."""
    url = httpx.URL(target.url)
    head = f"POST {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in target.headers.items())
    head += f"Content-Type: application/json\r\nContent-Length: {len(target.body)}\r\n\r\n"
    request = head.encode() + target.body
    latencies: list[float] = []
    counts = {"ok": 0, "status": 0, "read": 0}
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                writer.write(request)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                code = int(status_line.split()[1]) if status_line else 0
                counts["ok" if 200 <= code < 300 else "status"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            counts["read"] += 1
        finally:
            writer.close()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    latencies.sort()
    n = len(latencies) or 1
    return Run(
        rps=counts["ok"] / wall,
        p50_ms=latencies[n // 2] * 1000 if latencies else 0.0,
        p99_ms=latencies[min(n - 1, int(n * 0.99))] * 1000 if latencies else 0.0,
        requests=counts["ok"] + counts["status"],
        ok=counts["ok"],
        errors={k: v for k, v in counts.items() if k != "ok" and v},
        generator_cpu_s=cpu,
        server_cpu_s=0.0,
        seconds=wall,
    )


class Load:
    """The one load generator every contender gets: wrk, or the asyncio client without it."""

    def __init__(self, wrk: str | None, tmp: Path) -> None:
        self.wrk = wrk
        self.tmp = tmp
        self.name = "wrk" if wrk else "asyncio"

    def run(self, target: Target, concurrency: int, seconds: float, server_pids: list[int]) -> Run:
        before = tree_cpu(server_pids)
        if self.wrk:
            result = run_wrk(self.wrk, target, concurrency, seconds, self.tmp)
        else:
            import uvloop

            result = uvloop.run(_asyncio_load(target, concurrency, seconds))
        after = tree_cpu(server_pids)
        result.server_cpu_s = after[0] - before[0]
        result.front_cpu_s = after[1] - before[1]
        return result


# ---------------------------------------------------------------------------------------------
# Contenders: each is a context manager that starts its processes, yields targets, stops them.


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before answering")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer on {url} within {timeout_s:.0f} s")


def stop(proc: subprocess.Popen[bytes], grace_s: float = 30) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``: no benchmark process outlives the script."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def write_project(folder: Path, batch: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lr_model.py").write_text(textwrap.dedent(LR_MODEL))
    code = textwrap.dedent(PREDICT) + (textwrap.dedent(PREDICT_BATCH) if batch else "")
    (folder / "predict.py").write_text(code)
    return folder


@contextmanager
def floor(tmp: Path, body: bytes) -> Iterator[tuple[Target, list[int]]]:
    folder = write_project(tmp / "floor", batch=False)
    (folder / "floor_app.py").write_text(textwrap.dedent(FLOOR_APP))
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "floor_app:app", "--port", str(port)]
    argv += ["--host", "127.0.0.1", "--loop", "uvloop", "--http", "httptools"]
    argv += ["--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(argv, cwd=folder)
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc, "the floor app")
        yield Target(f"http://127.0.0.1:{port}/predict", body), [proc.pid]
    finally:
        stop(proc)


class Modelyard:
    """A real ``modelyard server`` in a temp home, driven over its REST API."""

    def __init__(self, tmp: Path) -> None:
        self.home = tmp / "home"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.auth: dict[str, str] = {}

    def __enter__(self) -> Modelyard:
        self.proc = start_server(self.home, self.port)
        admin = (self.home / "admin.key").read_text().strip()
        self.auth = {"Authorization": f"Bearer {admin}"}
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop(self.proc, grace_s=60)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        answer = httpx.request(
            method, f"{self.base}{path}", json=body, headers=self.auth, timeout=600
        )
        if answer.status_code >= 400:
            raise RuntimeError(f"{method} {path} answered {answer.status_code}: {answer.text}")
        return answer.json() if answer.content else None

    def deploy(
        self, name: str, project: Path, example: Any, replicas: int = 1, **settings: Any
    ) -> dict[str, Any]:
        body = {"project": str(project), "example": example, "replicas": replicas}
        body["settings"] = settings
        outcome: dict[str, Any] = self.api("POST", f"/api/v1/models/{name}/deploy", body)
        return outcome

    def pids(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid]  # replicas are its children; tree_cpu counts them

    def records(self, deployment_crn: str) -> int:
        """Prediction records of a deployment in the server's SQLite store, read-only.

        Waits past the writer's flush interval (200 ms) first, so what was answered is durable.
        """
        time.sleep(0.6)
        uri = f"file:{self.home / 'modelyard.db'}?mode=ro"
        with sqlite3.connect(uri, uri=True, timeout=30) as db:
            row = db.execute(
                "SELECT count(*) FROM predictions p JOIN identities i ON p.deployment_id = i.id "
                "WHERE i.deployment_crn = ?",
                (deployment_crn,),
            ).fetchone()
        return int(row[0])


def mlflow_python(console: Any) -> Path:
    """The MLflow venv's python, created or completed with what ``models serve`` needs."""
    python = MLFLOW_ENV / "bin" / "python"
    if not python.exists():
        console.print(f"creating {MLFLOW_ENV} (first use)")
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_ENV)], check=True)
    probe = "import mlflow.pyfunc.scoring_server, sklearn, pandas, skops, uvicorn"
    if subprocess.run([python, "-c", probe], capture_output=True).returncode != 0:
        console.print(f"installing {' '.join(MLFLOW_REQUIREMENTS)} into {MLFLOW_ENV}")
        done = subprocess.run(
            [python, "-m", "pip", "install", "-q", *MLFLOW_REQUIREMENTS],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip install failed: {done.stderr.strip()[-500:]}")
    return python


@contextmanager
def mlflow_server(
    tmp: Path, features: list[float], console: Any, info: dict[str, Any]
) -> Iterator[tuple[Target, list[int]]]:
    python = mlflow_python(console)
    script = tmp / "mlflow_save.py"
    script.write_text(textwrap.dedent(MLFLOW_SAVE))
    model_dir = tmp / "mlflow-model"
    saved = subprocess.run(
        [python, str(script), str(model_dir)], capture_output=True, text=True, cwd=tmp
    )
    if saved.returncode != 0:
        raise RuntimeError(f"save_model failed: {saved.stderr.strip()[-500:]}")
    meta = orjson.loads(saved.stdout.strip().splitlines()[-1])
    info["mlflow_version"] = meta["mlflow"]
    port = free_port()
    mlflow = MLFLOW_ENV / "bin" / "mlflow"
    argv = [str(mlflow), "models", "serve", "-m", str(model_dir), "--env-manager", "local"]
    argv += ["-h", "127.0.0.1", "-p", str(port)]
    # `models serve` execs `uvicorn` found on PATH: the venv's bin must come first, as when the
    # venv is activated.
    path = f"{MLFLOW_ENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": f"file://{tmp / 'mlruns'}"}
    log_path = tmp / "mlflow-serve.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        try:
            wait_http(f"http://127.0.0.1:{port}/ping", proc, "mlflow models serve", 180)
        except RuntimeError as exc:
            tail = log_path.read_text(errors="replace").strip()[-400:]
            raise RuntimeError(f"{exc}; its log ends: {tail}") from exc
        body = orjson.dumps({"dataframe_split": {"columns": meta["columns"], "data": [features]}})
        check = httpx.post(
            f"http://127.0.0.1:{port}/invocations",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        if check.status_code != 200:
            raise RuntimeError(f"/invocations answered {check.status_code}: {check.text[:300]}")
        info["mlflow_answer"] = check.json()
        yield Target(f"http://127.0.0.1:{port}/invocations", body), [proc.pid]
    finally:
        stop(proc)
        log.close()


# ---------------------------------------------------------------------------------------------


@dataclass
class Series:
    """Every run of one contender at one concurrency."""

    contender: str
    concurrency: int
    runs: list[Run] = field(default_factory=list)

    def median(self, key: str) -> float:
        return statistics.median(getattr(r, key) for r in self.runs)


@dataclass
class Contender:
    """One thing under load: its target, the processes whose CPU counts, and how to count its
    prediction records (None when it keeps none)."""

    name: str
    target: Target
    pids: list[int]
    count_records: Callable[[], int] | None = None


def measure(
    load: Load,
    contenders: list[Contender],
    args: argparse.Namespace,
    results: dict[tuple[str, int], Series],
) -> None:
    """Every contender at every concurrency, ``repeat`` rounds. The rounds are interleaved
    (round 1 of all, then round 2...), so a burst of load from the machine's other users hits
    every contender alike instead of one of them."""
    for contender in contenders:  # warm-up: connections, thread pools, sklearn's first calls
        load.run(contender.target, 8, min(2.0, args.seconds), contender.pids)
    for _ in range(args.repeat):
        for contender in contenders:
            for c in args.concurrency:
                count = contender.count_records
                before = count() if count else 0
                run = load.run(contender.target, c, args.seconds, contender.pids)
                if count is not None:
                    run.records = count() - before
                series = results.setdefault((contender.name, c), Series(contender.name, c))
                series.runs.append(run)
                recorded = f", records {run.records}/{run.ok}" if run.records is not None else ""
                print(
                    f"  {contender.name} c={c}: {run.rps:,.0f} req/s, p50 {run.p50_ms:.2f} ms, "
                    f"p99 {run.p99_ms:.2f} ms, errors {run.errors or 0}, generator cpu "
                    f"{run.generator_cpu_s:.1f} s, server cpu {run.server_cpu_s:.1f} s "
                    f"({run.front_cpu_s:.1f} s front process){recorded}",
                    flush=True,
                )


def modelyard_contenders(
    yard: Modelyard,
    tmp: Path,
    body_native: bytes,
    example: dict[str, Any],
    only: frozenset[str] = frozenset(GROUPS),
) -> list[Contender]:
    """Three models on one server: ``lr`` (1 replica), ``lr2`` (2 replicas) of the same project,
    ``lr-batch`` (the file with ``predict_batch``). Idle replicas cost next to nothing. ``only``:
    the groups (``1r``, ``2r``, ``batch``) to deploy and measure."""
    out = []

    def counter(crn: str) -> Callable[[], int]:
        return lambda: yard.records(crn)

    project = write_project(tmp / "project", batch=False)
    for model, replicas in (("lr", 1), ("lr2", 2)):
        if f"{replicas}r" not in only:
            continue
        outcome = yard.deploy(model, project, example, replicas=replicas)
        crn, key = outcome["deployment"]["crn"], outcome["access_key"]
        native = Target(f"{yard.base}/api/v1/models/{model}/predict", body_native, yard.auth)
        envelope = orjson.dumps({"accessKey": key, "request": example})
        reference = Target(f"{yard.base}/model", envelope, yard.auth)
        for route, target in (("predict", native), ("/model", reference)):
            out.append(
                Contender(f"modelyard {replicas}r {route}", target, yard.pids(), counter(crn))
            )
    if "batch" not in only:
        return out
    batched = write_project(tmp / "project-batch", batch=True)
    # Default concurrency (8): the gateway gives a replica that serves a batch function
    # concurrency x max_batch_size requests at once (8 x 32), so batches fill up to 32.
    outcome = yard.deploy("lr-batch", batched, example, track_io=True)
    target = Target(f"{yard.base}/api/v1/models/lr-batch/predict", body_native, yard.auth)
    out.append(
        Contender(
            "modelyard batch predict", target, yard.pids(), counter(outcome["deployment"]["crn"])
        )
    )
    return out


def report(results: dict[tuple[str, int], Series], params: dict[str, Any]) -> Report:
    rep = Report("serving", params)
    floors = {c: s for (name, c), s in results.items() if name == "floor"}
    for (name, c), series in results.items():
        rps = [r.rps for r in series.runs]
        figure = Figure(
            f"{name} c={c}",
            "req/s",
            rps,
            cpu_s=[r.generator_cpu_s for r in series.runs],
            wall_s=[r.seconds for r in series.runs],
        )
        records = [r.records for r in series.runs if r.records is not None]
        answered = [r.ok for r in series.runs if r.records is not None]
        figure.note = (
            f"p50 {series.median('p50_ms'):.2f} ms, p99 {series.median('p99_ms'):.2f} ms, "
            f"server cpu {series.median('server_cpu_s'):.1f} s "
            f"(front {series.median('front_cpu_s'):.1f})"
            + (f", records {sum(records)}/{sum(answered)}" if records else "")
        )
        base = floors.get(c)
        baseline = None
        if name != "floor" and base is not None:
            baseline = Figure(f"floor c={c}", "req/s", [r.rps for r in base.runs])
        rep.add(figure, baseline)
    rep.params["runs"] = {
        f"{name} c={c}": [asdict(r) for r in s.runs] for (name, c), s in results.items()
    }
    return rep


def targets(results: dict[tuple[str, int], Series]) -> list[str]:
    """The issue's targets (issue 13), each computed from this run's figures: one replica at
    c=8 >= 0.7x the floor, two replicas >= 0.9x, c=1 added p50 < 0.4 ms; batching > 1x."""
    lines = []

    def get(name: str, c: int) -> Series | None:
        return results.get((name, c))

    floor8, floor64, floor1 = get("floor", 8), get("floor", 64), get("floor", 1)
    for name, goal in (
        ("modelyard 1r predict", 0.7),
        ("modelyard 1r /model", 0.7),
        ("modelyard 2r predict", 0.9),
        ("modelyard 2r /model", 0.9),
    ):
        s = get(name, 8)
        if floor8 and s:
            ratio = s.median("rps") / floor8.median("rps")
            verdict = "met" if ratio >= goal else "NOT met"
            lines.append(f"{name} c=8: {ratio:.2f} x the floor's req/s (>= {goal}): {verdict}")
    s = get("modelyard batch predict", 64)
    if floor64 and s:
        ratio = s.median("rps") / floor64.median("rps")
        verdict = "met" if ratio > 1 else "NOT met"
        lines.append(f"(c) batching c=64: {ratio:.2f} x the floor's req/s (> 1): {verdict}")
    for name in ("modelyard 1r predict", "modelyard 1r /model"):
        s = get(name, 1)
        if floor1 and s:
            added = s.median("p50_ms") - floor1.median("p50_ms")
            verdict = "met" if added < 0.4 else "NOT met"
            lines.append(f"added p50 at c=1, {name}: {added:.2f} ms (< 0.4 ms): {verdict}")
    for (name, _), series in results.items():
        for run in series.runs:
            if run.records is not None and run.records < run.ok:
                lines.append(f"LOST RECORDS: {name}: {run.records} records for {run.ok} answers")
    if not any(line.startswith("LOST") for line in lines):
        counted = [r for s in results.values() for r in s.runs if r.records is not None]
        if counted:
            lines.append(
                f"records: every answered Modelyard request recorded in all {len(counted)} runs "
                f"({sum(r.records or 0 for r in counted)} records, "
                f"{sum(r.ok for r in counted)} answers seen by the generator; the excess is "
                "requests answered after the generator stopped counting)"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s runs, 1 repeat, no MLflow")
    parser.add_argument("--seconds", type=float, default=None, help="per run (default 10)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per figure (default 3)")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--mlflow", choices=("auto", "yes", "no"), default="auto")
    parser.add_argument("--generator", choices=("auto", "wrk", "asyncio"), default="auto")
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"contenders to start and measure, comma-separated from {','.join(GROUPS)} "
        "(default all; mlflow also follows --mlflow)",
    )
    args = parser.parse_args()
    only = frozenset(g.strip() for g in args.only.split(",") if g.strip())
    if not only or not only <= set(GROUPS):
        parser.error(f"--only {args.only!r}: expected names from {','.join(GROUPS)}")
    args.seconds = args.seconds or (2.0 if args.quick else 10.0)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    rep = Report("serving", {})
    console = rep.console

    from sklearn.datasets import load_breast_cancer

    features = [float(v) for v in load_breast_cancer().data[0]]
    example = {"features": features}
    body = orjson.dumps(example)
    results: dict[tuple[str, int], Series] = {}
    skipped: dict[str, str] = {}
    info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as name:
        tmp = Path(name)
        wrk = None if args.generator == "asyncio" else ensure_wrk(console)
        if args.generator == "wrk" and wrk is None:
            raise SystemExit("wrk was asked for and could not be installed")
        load = Load(wrk, tmp)
        console.print(f"load generator: {load.name}; {args.seconds:g} s runs x {args.repeat}")
        with ExitStack() as running:  # every server stops at the end, also on error
            contenders: list[Contender] = []
            if "floor" in only:
                console.print("starting (a) the floor: bare uvicorn + the model")
                target, pids = running.enter_context(floor(tmp, body))
                contenders.append(Contender("floor", target, pids))
            if only & {"1r", "2r", "batch"}:
                console.print("starting (b, c) Modelyard: a real server, recording on")
                yard = running.enter_context(Modelyard(tmp))
                contenders += modelyard_contenders(yard, tmp, body, example, only)
            if "mlflow" not in only:
                skipped["mlflow"] = "not among --only"
            elif args.mlflow == "yes" or (args.mlflow == "auto" and not args.quick):
                console.print("starting (d) MLflow models serve")
                try:
                    target, pids = running.enter_context(
                        mlflow_server(tmp, features, console, info)
                    )
                    contenders.append(Contender("mlflow", target, pids))
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    skipped["mlflow"] = str(exc)
                    console.print(f"  MLflow not measured: {exc}")
            else:
                skipped["mlflow"] = "quick mode; pass --mlflow yes to include it"
            measure(load, contenders, args, results)
    params = {
        "only": sorted(only),
        "seconds": args.seconds,
        "repeat": args.repeat,
        "concurrency": args.concurrency,
        "generator": load.name,
        "model": "StandardScaler + LogisticRegression(max_iter=1000) on load_breast_cancer",
        **info,
    }
    final = report(results, params)
    for what, why in skipped.items():
        final.skip(what, why)
    final.console.print(final.table())
    lines = targets(results)
    for line in lines:
        final.console.print(line, highlight=False)
    final.params["targets"] = lines
    out = final.write()
    final.console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
