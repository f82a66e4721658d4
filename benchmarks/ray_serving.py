"""Serving on the Ray runtime against the local runtime and two baselines, with one load generator.

Every contender answers single-row requests to the same scikit-learn model as
``benchmarks/serving.py`` (whose project files, load generator, MLflow server and measuring loop
this script imports), with 2 replicas, on 127.0.0.1:

- ``local 2r``: a real ``modelyard server`` (local runtime), the model deployed with 2 replicas;
- ``ray 2r``: a real ``modelyard server --runtime ray`` on a two-node loopback Ray cluster
  (``tests/_ray.py``: token auth, a head and a worker of 2 CPUs each), 2 replicas (1 CPU each);
- ``serve handle``: the baseline for Ray's own overhead: a bare Ray Serve deployment (2 replicas,
  the same ``predict_proba``) called through its own deployment handle from a minimal uvicorn
  ASGI app (a Ray driver, as the Modelyard server is), so the same HTTP load generator hits it;
- ``mlflow``: ``mlflow models serve`` of the same pipeline (``serving.py``'s), when its venv is
  there or ``--mlflow yes`` lets ``serving.py`` build it.

Figures: req/s and p50/p99 at c=1, 8 and 64 (medians of ``--repeat`` interleaved rounds), and the
time from ``models deploy`` to the first answer on each runtime. The issue's goals, computed from
this run: the Ray runtime's p50 within 2x of the bare Serve handle's, and its req/s at c=64 above
half the local runtime's.

    .venv/bin/python benchmarks/ray_serving.py                      # 5 s runs, 3 rounds
    .venv/bin/python benchmarks/ray_serving.py --seconds 2 --repeat 1 --mlflow no   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from _common import Figure, Report
from modelyard.runtime import free_port
from serving import (
    MLFLOW_ENV,
    Contender,
    Load,
    Modelyard,
    Series,
    Target,
    ensure_wrk,
    measure,
    mlflow_server,
    stop,
    wait_http,
    write_project,
)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the two-node loopback cluster of the Ray tests

from _ray import RayTestCluster, ray_env, start_cluster  # noqa: E402

REPLICAS = 2

# The bare Ray Serve baseline: the same model in a plain Serve deployment, called through its
# handle from a minimal ASGI app (no Modelyard in the path).
SERVE_FRONT = """
    import os

    import numpy as np
    import orjson
    import ray
    from ray import serve

    HEADERS = [(b"content-type", b"application/json")]


    @serve.deployment(num_replicas={replicas}, max_ongoing_requests=64,
                      ray_actor_options={{"num_cpus": 0.5}})
    class Bare:
        def __init__(self):
            from lr_model import MODEL

            self.model = MODEL

        def predict(self, body):
            features = orjson.loads(body)["features"]
            row = np.asarray(features, dtype=float).reshape(1, -1)
            return orjson.dumps({{"probability": float(self.model.predict_proba(row)[0, 1])}})


    ray.init(address=os.environ["BENCH_RAY_ADDRESS"], namespace="bench",
             runtime_env={{"working_dir": os.environ["BENCH_PROJECT"]}}, log_to_driver=False)
    serve.start(proxy_location="Disabled")
    HANDLE = serve.run(Bare.bind(), name="bench-bare", route_prefix=None).options(
        method_name="predict"
    )


    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        answer = await HANDLE.remote(body) if body else b"{{}}"
        await send({{"type": "http.response.start", "status": 200, "headers": HEADERS}})
        await send({{"type": "http.response.body", "body": answer}})
"""


class RayModelyard(Modelyard):
    """``serving.Modelyard`` on the Ray runtime: the server started with the cluster's settings."""

    def __init__(self, tmp: Path, cluster: RayTestCluster) -> None:
        super().__init__(tmp)
        self.cluster = cluster

    def __enter__(self) -> RayModelyard:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
        env.update(
            MODELYARD_HOME=str(self.home),
            MODELYARD_RUNTIME="ray",
            MODELYARD_RAY_ADDRESS=self.cluster.address,
            MODELYARD_RAY_DASHBOARD_URL=self.cluster.dashboard_url,
            MODELYARD_RAY_AUTH_TOKEN_PATH=str(self.cluster.token_path),
        )
        argv = [sys.executable, "-m", "modelyard.server", "--port", str(self.port)]
        self.proc = subprocess.Popen([*argv, "--log-level", "warning"], env=env)
        wait_http(f"{self.base}/healthz", self.proc, "the Ray-runtime server", 120)
        admin = (self.home / "admin.key").read_text().strip()
        self.auth = {"Authorization": f"Bearer {admin}"}
        return self


def cluster_pids(cluster: RayTestCluster) -> list[int]:
    """The ``ray start`` process of each node: replicas run under them, not under the server."""
    return [proc.pid for proc in cluster._procs.values()]


@contextmanager
def bare_serve(
    tmp: Path, cluster: RayTestCluster, project: Path, body: bytes
) -> Iterator[tuple[Target, list[int]]]:
    folder = tmp / "serve-front"
    folder.mkdir()
    (folder / "serve_front.py").write_text(textwrap.dedent(SERVE_FRONT.format(replicas=REPLICAS)))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(ray_env(cluster.token_path))
    env.update(BENCH_RAY_ADDRESS=cluster.address, BENCH_PROJECT=str(project))
    argv = [sys.executable, "-m", "uvicorn", "serve_front:app", "--port", str(port)]
    argv += ["--host", "127.0.0.1", "--loop", "uvloop", "--http", "httptools"]
    argv += ["--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(argv, cwd=folder, env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc, "the bare Serve front", 180)
        check = httpx.post(f"http://127.0.0.1:{port}/", content=body, timeout=30)
        if check.status_code != 200:
            raise RuntimeError(f"the bare Serve front answered {check.status_code}: {check.text}")
        yield Target(f"http://127.0.0.1:{port}/", body), [proc.pid]
    finally:
        stop(proc)


def first_answer(yard: Modelyard, name: str, project: Path, example: Any) -> float:
    """Seconds from ``POST .../deploy`` to the first 200 of ``predict`` (a new model)."""
    started = time.perf_counter()
    yard.deploy(name, project, example, replicas=REPLICAS)
    with httpx.Client(headers=yard.auth, timeout=60) as client:
        while True:
            answer = client.post(f"{yard.base}/api/v1/models/{name}/predict", json=example)
            if answer.status_code == 200:
                return time.perf_counter() - started
            time.sleep(0.01)


def report(
    results: dict[tuple[str, int], Series], params: dict[str, Any], firsts: dict[str, float]
) -> Report:
    rep = Report("ray_serving", params)
    for (name, c), series in results.items():
        figure = Figure(
            f"{name} c={c}",
            "req/s",
            [r.rps for r in series.runs],
            cpu_s=[r.generator_cpu_s for r in series.runs],
            wall_s=[r.seconds for r in series.runs],
            note=(
                f"p50 {series.median('p50_ms'):.2f} ms, p99 {series.median('p99_ms'):.2f} ms, "
                f"errors {sum(sum(r.errors.values()) for r in series.runs)}"
            ),
        )
        base = results.get(("local 2r", c))
        baseline = None
        if name != "local 2r" and base is not None:
            baseline = Figure(f"local 2r c={c}", "req/s", [r.rps for r in base.runs])
        rep.add(figure, baseline)
    for runtime, seconds in firsts.items():
        rep.add(Figure(f"deploy to first answer, {runtime}", "s", [seconds]))
    return rep


def goals(results: dict[tuple[str, int], Series]) -> list[str]:
    """The issue's goals, from this run: Ray p50 <= 2x the bare Serve handle's; Ray req/s at
    c=64 > 0.5x the local runtime's."""
    lines = []
    for c in (1, 8, 64):
        ray, bare = results.get(("ray 2r", c)), results.get(("serve handle", c))
        if ray and bare:
            ratio = ray.median("p50_ms") / bare.median("p50_ms")
            verdict = "met" if ratio <= 2 else "NOT met"
            lines.append(f"p50 at c={c}: ray 2r {ratio:.2f} x the bare Serve handle's (<= 2): "
                         f"{verdict}")  # fmt: skip
    ray, local = results.get(("ray 2r", 64)), results.get(("local 2r", 64))
    if ray and local:
        ratio = ray.median("rps") / local.median("rps")
        verdict = "met" if ratio > 0.5 else "NOT met"
        lines.append(f"req/s at c=64: ray 2r {ratio:.2f} x local 2r (> 0.5): {verdict}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per run (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument(
        "--mlflow",
        choices=("auto", "yes", "no"),
        default="auto",
        help=f"auto: only if {MLFLOW_ENV} exists (yes builds it, as serving.py does)",
    )
    parser.add_argument("--generator", choices=("auto", "wrk", "asyncio"), default="auto")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    rep = Report("ray_serving", {})
    console = rep.console

    from sklearn.datasets import load_breast_cancer

    features = [float(v) for v in load_breast_cancer().data[0]]
    example = {"features": features}
    body = orjson.dumps(example)
    results: dict[tuple[str, int], Series] = {}
    firsts: dict[str, float] = {}
    info: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="modelyard-raybench-") as name, ExitStack() as up:
        tmp = Path(name)
        wrk = None if args.generator == "asyncio" else ensure_wrk(console)
        load = Load(wrk, tmp)
        console.print(f"load generator: {load.name}; {args.seconds:g} s runs x {args.repeat}")
        console.print("starting a two-node Ray cluster on loopback")
        cluster = start_cluster()
        up.callback(cluster.stop)
        project = write_project(tmp / "project", batch=False)
        contenders: list[Contender] = []
        for runtime, yard in (
            ("local", Modelyard(tmp / "local")),
            ("ray", RayModelyard(tmp / "ray", cluster)),
        ):
            (tmp / runtime).mkdir()
            console.print(f"starting a Modelyard server on the {runtime} runtime")
            up.enter_context(yard)
            firsts[runtime] = first_answer(yard, "lr2", project, example)
            console.print(f"  deploy to first answer: {firsts[runtime]:.2f} s")
            target = Target(f"{yard.base}/api/v1/models/lr2/predict", body, yard.auth)
            pids = yard.pids() + (cluster_pids(cluster) if runtime == "ray" else [])
            contenders.append(Contender(f"{runtime} 2r", target, pids))
        console.print("starting the bare Ray Serve deployment behind its handle")
        target, pids = up.enter_context(bare_serve(tmp, cluster, project, body))
        contenders.append(Contender("serve handle", target, pids + cluster_pids(cluster)))
        if args.mlflow == "yes" or (args.mlflow == "auto" and MLFLOW_ENV.exists()):
            console.print("starting MLflow models serve")
            try:
                target, pids = up.enter_context(mlflow_server(tmp, features, console, info))
                contenders.append(Contender("mlflow", target, pids))
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                skipped["mlflow"] = str(exc)
        else:
            skipped["mlflow"] = f"no {MLFLOW_ENV}; pass --mlflow yes to build it"
        measure(load, contenders, args, results)
        load_average = os.getloadavg()
    params = {
        "seconds": args.seconds,
        "repeat": args.repeat,
        "concurrency": args.concurrency,
        "generator": load.name,
        "replicas": REPLICAS,
        "cluster": "2 Ray nodes of 2 logical CPUs on this machine (tests/_ray.py)",
        "loadavg_before_stopping": load_average,
        **info,
    }
    final = report(results, params, firsts)
    for what, why in skipped.items():
        final.skip(what, why)
    final.console.print(final.table())
    lines = goals(results)
    for line in lines:
        final.console.print(line, highlight=False)
    final.params["goals"] = lines
    final.console.print(f"wrote {final.write()}")


if __name__ == "__main__":
    main()
