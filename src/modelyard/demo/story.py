"""The main job: a telco serves a churn model, customers churn later, a job keeps score.

Every step goes through the real product, as a user would drive it:

1. a ``modelyard server`` process on a free 127.0.0.1 port, with a fresh home the user can open
   afterwards (``--home``; the database, the admin key, the project, the CRM, the report);
2. a scikit-learn model trained on synthetic customers (``generator``), exported to the project
   and deployed with ``modelyard models deploy ... --replicas 2`` (the CLI);
3. the training sample uploaded as the monitor's reference (``POST /api/v1/references``), an API
   key for the web app (``POST /api/v1/keys``), the recurring job every few seconds
   (``POST /api/v1/jobs``) running ``monitor_job.py``;
4. the web app calls ``POST /model`` for a steady stream of customers and keeps each uuid in its
   CRM; churn events reach the CRM after a delay; the job labels, monitors, alerts;
5. midway, a new customer population arrives (covariate drift) whose churn also follows another
   relationship (concept drift), aligned to a window boundary so every window is either before
   or after it;
6. at the end the job is run once more after the last labels, the results are read back (SDK,
   ``/api/v1/alerts``) and written as a self-contained HTML report.

Processes are stopped on the way out, whatever the way out (an error, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from modelyard.clock import now_ms
from modelyard.demo import generator
from modelyard.demo.crm import Crm
from modelyard.demo.model import train
from modelyard.demo.receiver import WebhookReceiver
from modelyard.demo.report import write_report
from modelyard.demo.results import StoryResults, collect
from modelyard.demo.server_process import ServerProcess, modelyard_command
from modelyard.demo.webapp import WebApp
from modelyard.errors import InvalidInput, ModelyardError

__all__ = ["DEFAULT", "QUICK", "StoryConfig", "prepare_home", "run_story"]

_MARKER = "modelyard-demo.json"
MODEL_NAME = "churn"
JOB_NAME = "churn-monitor"
REPLICAS = 2


@dataclass(frozen=True)
class StoryConfig:
    """How long and how busy the story is. Windows are the monitor's; the job runs once each."""

    window_s: int
    windows_before: int
    windows_after: int
    calls_per_s: int
    horizon_s: float  # how long after a prediction its outcome is known (weeks, compressed)
    train_rows: int = 4000
    seed: int = 7
    # The gateway's tech.* interval (latency percentiles per deployment): a few per story.
    tech_interval_s: float = 10.0

    @property
    def window_ms(self) -> int:
        return self.window_s * 1000


QUICK = StoryConfig(
    window_s=3, windows_before=3, windows_after=3, calls_per_s=100, horizon_s=2, tech_interval_s=5
)
DEFAULT = StoryConfig(window_s=8, windows_before=6, windows_after=6, calls_per_s=60, horizon_s=5)


def prepare_home(home: Path) -> Path:
    """A fresh, empty demo home: a previous demo's home is replaced, anything else refused."""
    home = home.expanduser().resolve()
    if home.exists() and any(home.iterdir()):
        if not (home / _MARKER).is_file():
            raise InvalidInput(
                f"--home {home} exists and is not empty (and not a previous demo's home); "
                "give a new or empty folder"
            )
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    (home / _MARKER).write_text(json.dumps({"created_ms": now_ms()}))
    return home


@contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP end the demo through every ``finally`` below.

    SIGINT is set explicitly too: a shell starts background commands with it ignored, and
    Python then never raises KeyboardInterrupt, so ``kill -INT`` would leave the demo running.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    caught = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, stop) for s in caught}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@dataclass
class _Run:
    """What the story learnt on the way (keys, CRNs) and the timeline of the traffic."""

    home: Path
    config: StoryConfig
    server: ServerProcess
    receiver: WebhookReceiver
    deployment: str = ""
    access_key: str = ""
    app_key: str = ""
    deploy_s: float = 0.0
    train_auc: float = float("nan")
    traffic_start_ms: int = 0
    injected_ms: int = 0
    traffic_end_ms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url,
            headers={"Authorization": f"Bearer {self.server.admin_key}"},
            timeout=60.0,
        )


def run_story(
    home: Path,
    config: StoryConfig = DEFAULT,
    *,
    serve: bool = False,
    console: Console | None = None,
) -> StoryResults:
    """Tell the whole story in ``home`` (see the module docstring); the results and report path."""
    console = console or Console()
    started = time.perf_counter()
    home = prepare_home(home)
    with _signals_raise():
        receiver = WebhookReceiver()
        server: ServerProcess | None = None
        try:
            with _progress(console) as progress:
                task = progress.add_task("starting the server", total=_steps(config))
                server = ServerProcess(home, tech_interval_s=config.tech_interval_s)
                run = _Run(home, config, server, receiver)
                phases = run.extra.setdefault("phases_s", {})
                phases["server start"] = time.perf_counter() - started
                progress.advance(task)
                for name, step in (
                    ("setup", _setup),
                    ("traffic", _traffic),
                    ("final run", _final_run),
                ):
                    began = time.perf_counter()
                    step(run, progress, task)
                    phases[name] = time.perf_counter() - began
                progress.update(task, description="writing the report")
                results = collect(run.server.url, run.server.admin_key, run_info(run), receiver)
                results.seconds = time.perf_counter() - started
                results.report = write_report(home / "report.html", results)
                (home / "results.json").write_bytes(_dumps(results.to_dict()))
                progress.advance(task)
            _summary(console, results, serve)
            if serve:
                _serve(console, server, run)
            return results
        finally:
            if server is not None:
                server.stop()
            receiver.close()


def _steps(config: StoryConfig) -> int:
    return 6 + config.windows_before + config.windows_after + 1


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    with Progress(
        TextColumn("[bold]{task.description:<44}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        yield progress


def run_info(run: _Run) -> dict[str, Any]:
    return {
        "home": str(run.home),
        "url": run.server.url,
        "model": MODEL_NAME,
        "job": JOB_NAME,
        "deployment": run.deployment,
        "window_ms": run.config.window_ms,
        "windows_before": run.config.windows_before,
        "windows_after": run.config.windows_after,
        "replicas": REPLICAS,
        "traffic_start_ms": run.traffic_start_ms,
        "injected_ms": run.injected_ms,
        "traffic_end_ms": run.traffic_end_ms,
        "train_auc": run.train_auc,
        "deploy_s": run.deploy_s,
        "crm": str(run.home / "crm.db"),
        **run.extra,
    }


def _setup(run: _Run, progress: Progress, task: Any) -> None:
    config, home = run.config, run.home
    rng = np.random.default_rng(config.seed)
    progress.update(task, description="training the churn model (scikit-learn)")
    training = generator.customers(rng, config.train_rows)
    churned = generator.draw_churn(rng, training)
    params = train(training, churned)
    run.train_auc = params["train_auc"]
    project = _write_project(run, params)
    progress.advance(task)

    progress.update(task, description=f"deploying it with {REPLICAS} replicas")
    began = time.perf_counter()
    example = json.dumps(_plain_record({str(k): v for k, v in training.iloc[0].items()}))
    deployed = _cli(
        run,
        "models", "deploy", MODEL_NAME, "--project-dir", str(project), "--file", "predict.py",
        "--function", "predict", "--example", example, "--replicas", str(REPLICAS), "--json",
    )  # fmt: skip
    run.deploy_s = time.perf_counter() - began
    run.deployment = deployed["deployment"]["crn"]
    run.access_key = deployed["access_key"]
    progress.advance(task)

    progress.update(task, description="uploading the training sample as reference")
    with run.admin as admin:
        key = _ok(admin.post("/api/v1/keys", json={"name": "churn-webapp", "role": "user"}))
        run.app_key = key["token"]
        reference = training.copy()
        records: list[dict[str, Any]] = training.to_dict("records")  # type: ignore[assignment]
        reference["churn_probability"] = [_score(params, r) for r in records]
        columns = {c: reference[c].tolist() for c in reference.columns}
        body = {"deployment": run.deployment, "name": "training", "columns": columns}
        _ok(
            admin.post(
                "/api/v1/references",
                content=_dumps(body),
                headers={"Content-Type": "application/json"},
            )
        )
        progress.advance(task)

        progress.update(task, description=f"creating the job (every {config.window_s} s)")
        job = {
            "name": JOB_NAME,
            "project": str(project),
            "script": "monitor_job.py",
            "every_ms": config.window_ms,
            "timeout_ms": 120_000,
            "env": {
                "DEMO_CRM": str(home / "crm.db"),
                "DEMO_DEPLOYMENT": run.deployment,
                "DEMO_HORIZON_MS": str(int(config.horizon_s * 1000)),
            },
            "notify": [run.receiver.url],
            "notify_on": ["failure", "timeout"],
        }
        _ok(admin.post("/api/v1/jobs", json=job))
    progress.advance(task)


def _write_project(run: _Run, params: dict[str, Any]) -> Path:
    """The model project in the demo home: predict.py, model.json, the job and its monitor."""
    project = run.home / "project"
    project.mkdir()
    source = resources.files("modelyard.demo.project")
    for name in ("predict.py", "monitor_job.py"):
        (project / name).write_text(source.joinpath(name).read_text())
    (project / "model.json").write_text(json.dumps(params, indent=1))
    spec = {
        "name": "churn",
        "model": MODEL_NAME,
        "reference": {"stored": "training"},
        "features": list(generator.FEATURES),
        "categorical": list(generator.CATEGORICAL),
        "prediction": "churn_probability",
        "label": "churned",
        "window": f"{run.config.window_s}s",
        "alerts": ["drift.flagged > 0", "roc_auc < 0.7"],
        "notify": [run.receiver.url],
    }
    import yaml

    (project / "monitor.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return project


def _traffic(run: _Run, progress: Progress, task: Any) -> None:
    """The web app's calls and the churn events, window after window, drift injected midway."""
    config = run.config
    rng = np.random.default_rng(config.seed + 1)
    crm = Crm(run.home / "crm.db")
    app = WebApp(run.server.url, run.access_key, run.app_key, crm)
    pending: list[tuple[int, str]] = []  # (due ms, customer id) of churn events not yet in
    try:
        # Traffic starts on a window boundary (a window with a handful of calls says nothing
        # but noise) and drift starts on one, so each window is wholly before or after it.
        w = config.window_ms
        progress.update(task, description="waiting for the first window to begin")
        now = (now_ms() // w + 1) * w
        time.sleep((now - now_ms()) / 1000)
        run.traffic_start_ms = now
        run.injected_ms = now + config.windows_before * w
        run.traffic_end_ms = run.injected_ms + config.windows_after * w
        tick_s, next_id, window_seen = 0.25, 0, -1
        # A batch answered after the end may straggle into a window of its own (a handful of
        # predictions): below the monitor's min_labels / min_predictions (30) it is computed
        # without label metrics or drift, so it neither fires nor resolves the demo's alerts.
        while (now := now_ms()) < run.traffic_end_ms:
            drifted = now >= run.injected_ms
            index = (now - run.traffic_start_ms) // w
            if index != window_seen:
                if window_seen >= 0:
                    progress.advance(task)
                window_seen = index
            total = config.windows_before + config.windows_after
            phase = "drifted" if drifted else "as trained"
            progress.update(
                task, description=f"window {index + 1}/{total} ({phase}): {app.calls} calls"
            )
            tick_end = time.monotonic() + tick_s
            n = rng.poisson(config.calls_per_s * tick_s)
            if n:
                batch = generator.customers(rng, n, covariate_drift=drifted)
                ids = [f"C{next_id + i:07d}" for i in range(n)]
                next_id += n
                app.score(batch, ids)
                churn = generator.draw_churn(rng, batch, concept_drift=drifted)
                delays = rng.uniform(0.2, 0.95, n) * config.horizon_s * 1000
                for cid, c, d in zip(ids, churn, delays, strict=True):
                    if c:
                        heapq.heappush(pending, (now_ms() + int(d), cid))
            _release(crm, pending, now_ms())
            time.sleep(max(0.0, tick_end - time.monotonic()))
        progress.advance(task)
        progress.update(task, description="waiting for the last churn events")
        while pending:
            _release(crm, pending, now_ms())
            time.sleep(0.1)
        run.extra["calls"] = app.calls
        run.extra["replicas_served"] = dict(app.replicas)
        run.extra["crm_counts"] = crm.counts()
    finally:
        app.close()
        crm.close()


def _release(crm: Crm, pending: list[tuple[int, str]], now: int) -> None:
    due = []
    while pending and pending[0][0] <= now:
        at, cid = heapq.heappop(pending)
        due.append((cid, at))
    if due:
        crm.record_churn(due)


def _final_run(run: _Run, progress: Progress, task: Any) -> None:
    """Pause the schedule, let a going run end, run the job once more after the last labels."""
    progress.update(task, description="final monitoring run (last labels)")
    settle = run.traffic_end_ms + int(run.config.horizon_s * 1000) + 200
    time.sleep(max(0.0, (settle - now_ms()) / 1000))
    with run.admin as admin:
        _ok(admin.post(f"/api/v1/jobs/{JOB_NAME}/pause"))
        _wait_runs_done(admin)
        queued = _ok(admin.post(f"/api/v1/jobs/{JOB_NAME}/run"))
        final = _wait_runs_done(admin, run_id=str(queued["id"]))
        run.extra["final_run_state"] = final
        runs = _ok(admin.get(f"/api/v1/jobs/{JOB_NAME}/runs", params={"limit": 500}))["runs"]
        run.extra["runs"] = [
            {k: r.get(k) for k in ("id", "state", "trigger", "duration_ms")} for r in runs
        ]
    crm = Crm(run.home / "crm.db")
    try:
        run.extra["crm_counts"] = crm.counts()  # now with every outcome labelled
    finally:
        crm.close()
    progress.advance(task)


def _wait_runs_done(admin: httpx.Client, run_id: str = "", timeout_s: float = 120.0) -> str:
    """Wait until no run of the job is queued or running; the given run's final state."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = _ok(admin.get(f"/api/v1/jobs/{JOB_NAME}/runs", params={"limit": 20}))["runs"]
        going = [r for r in runs if r["state"] in ("queued", "running")]
        if not going:
            if not run_id:
                return ""
            for r in runs:
                if r["id"] == run_id:
                    return str(r["state"])
            return "unknown"
        time.sleep(0.2)
    raise ModelyardError(f"the job {JOB_NAME} still had a run going after {timeout_s:.0f} s")


def _cli(run: _Run, *args: str) -> dict[str, Any]:
    """Run ``modelyard ARGS`` against the demo's server (found through its home) as JSON."""
    env = {**os.environ, "MODELYARD_HOME": str(run.home)}
    for name in ("MODELYARD_URL", "MODELYARD_API_KEY", "MODELYARD_DATABASE_URL"):
        env.pop(name, None)
    done = subprocess.run(
        [*modelyard_command(), *args], capture_output=True, text=True, env=env, timeout=300
    )
    if done.returncode != 0:
        raise ModelyardError(
            f"'modelyard {' '.join(args[:3])} ...' failed with status {done.returncode}: "
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _ok(answer: httpx.Response) -> Any:
    if answer.status_code >= 400:
        raise ModelyardError(
            f"{answer.request.method} {answer.request.url.path} answered {answer.status_code}: "
            f"{answer.text[:500]}"
        )
    return answer.json() if answer.content else {}


def _dumps(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2)


def _plain_record(record: dict[str, Any]) -> dict[str, Any]:
    return {str(k): (v.item() if hasattr(v, "item") else v) for k, v in record.items()}


def _score(params: dict[str, Any], customer: dict[str, Any]) -> float:
    from modelyard.demo.project.predict import churn_probability

    return churn_probability(customer, params)


def _summary(console: Console, results: StoryResults, serve: bool) -> None:
    # soft_wrap: lines are printed whole (the terminal wraps them), so the commands and
    # identifiers it names can be copied from a terminal or a log into the next command.
    console.print(results.summary_text(), soft_wrap=True)


def _serve(console: Console, server: ServerProcess, run: _Run) -> None:
    # The final run paused the schedule; resume it so the dashboard keeps updating.
    with run.admin as admin:
        _ok(admin.post(f"/api/v1/jobs/{JOB_NAME}/resume"))
    console.print(
        f"\n[bold]Dashboard:[/] {server.url}/ui/  (sign in with the admin key in "
        f"{server.home / 'admin.key'})\nThe server keeps running, and the job {JOB_NAME} runs "
        f"again every {run.config.window_s} s; press Ctrl-C to stop them.",
        soft_wrap=True,
    )
    try:
        while server.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping the server ...")
