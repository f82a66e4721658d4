"""The controller's parts that need no replica process: specs and ids, the event relay, runtime
events turned into pool health and registry rows, refusals before anything runs, and the
package surface. A real registry (SQLite file) and a real ``LocalRuntime`` stand behind them."""

from __future__ import annotations

import asyncio
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

import _async
import modelyard.serving
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.registry import ModelSettings, Registry
from modelyard.runtime import Event, LocalRuntime, check_health, check_name
from modelyard.serving.controller import Controller, EventRelay
from modelyard.serving.controller.fleet import Fleet, Replica
from modelyard.serving.controller.replica_specs import (
    HEALTH_PATH,
    capacity,
    deployment_id,
    identity,
    new_replica_id,
    replica_spec,
    served_batch,
    snapshot_path,
)
from modelyard.serving.gateway import DeploymentPool, Gateway, ReplicaEndpoint
from modelyard.serving.replica import DEFAULT_CONCURRENCY, parse_args
from modelyard.store.sqlite import SQLiteStore

run = partial(_async.run, timeout_s=30)  # each scenario fails after 30 s


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    store = SQLiteStore(tmp_path / "metrics.db")
    yield Registry(store, cache_ttl_s=0)
    store.close()


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LocalRuntime]:
    with LocalRuntime(tmp_path / "home") as rt:
        yield rt


def deployed(registry: Registry, settings: ModelSettings | None = None) -> tuple[str, str]:
    model, _ = registry.create_model("churn", settings)
    built = registry.add_build(
        "churn", digest="d" * 64, file="src/predict.py", function="predict",
        python="/opt/py/bin/python", env_key="base", ok=True,
    )  # fmt: skip
    deployment = registry.add_deployment(
        "churn", built.crn, replicas=2, env={"THRESHOLD": "0.5"}, memory_bytes=256 << 20, cpus=1.5
    )
    return model.crn, deployment.crn


# -- specs ----------------------------------------------------------------------------------------
def test_replica_spec_follows_the_replica_protocol(registry: Registry, tmp_path: Path) -> None:
    settings = ModelSettings(concurrency=3, max_batch_size=7, track_io=True, debug=True)
    _, crn = deployed(registry, settings)
    deployment = registry.get_deployment(crn)
    model = registry.get_model("churn")
    built = registry.get_build(deployment.build_crn)
    rid = new_replica_id(crn, 1)
    spec = replica_spec(model, built, deployment, home=tmp_path, replica_id=rid, port=8123)
    config = parse_args(list(spec.argv[3:]))  # the replica parses back what we meant
    assert spec.argv[:3] == ["/opt/py/bin/python", "-m", "modelyard.serving.replica"]
    assert config.snapshot == str(tmp_path / "builds" / "snapshots" / ("d" * 64))
    assert (config.file, config.function, config.port) == ("src/predict.py", "predict", 8123)
    assert (config.replica_id, config.concurrency, config.max_batch_size) == (rid, 3, 7)
    assert config.track_io and config.debug and config.max_body_bytes == 5 * 1024 * 1024
    assert config.batch_function is None  # the replica's own default (predict_batch if defined)
    assert spec.env == {
        "THRESHOLD": "0.5",
        "MODELYARD_MODEL_CRN": model.crn,
        "MODELYARD_BUILD_CRN": built.crn,
        "MODELYARD_DEPLOYMENT_CRN": crn,
    }
    assert (spec.port, spec.health_path, spec.memory_limit_bytes, spec.cpus) == (
        8123,
        "/healthz",
        256 << 20,
        1.5,
    )
    assert spec.cwd == snapshot_path(built, tmp_path)
    assert spec.deployment_id == crn.rsplit("/", 1)[-1] == deployment_id(crn)
    assert identity(deployment).deployment_crn == crn
    # No concurrency set: the flag is left out so the replica's measured default applies.
    model = registry.update_model("churn", concurrency=None, batch_function="many")
    spec = replica_spec(model, built, deployment, home=tmp_path, replica_id=rid, port=8123)
    assert "--concurrency" not in spec.argv
    assert parse_args(list(spec.argv[3:])).batch_function == "many"
    override = replica_spec(
        model, built, deployment, home=tmp_path, replica_id=rid, port=1, python="/usr/bin/python3"
    )
    assert override.argv[0] == "/usr/bin/python3"


def test_capacity_is_concurrency_or_a_full_batch_per_worker_slot() -> None:
    assert capacity(ModelSettings()) == DEFAULT_CONCURRENCY == 8  # the replica's default
    assert capacity(ModelSettings(concurrency=3, max_batch_size=7)) == 3
    assert capacity(ModelSettings(concurrency=3, max_batch_size=7), "predict_batch") == 21
    assert capacity(ModelSettings(max_batch_size=32), "many") == 8 * 32
    assert capacity(ModelSettings(concurrency=1, max_batch_size=1), "many") == 1


def test_the_served_batch_function_is_read_from_the_snapshot(
    registry: Registry, tmp_path: Path
) -> None:
    """The same rule the replica follows, from the file the replica will load: the model's
    setting (``none`` turns it off), else ``predict_batch`` when the file defines one."""
    deployed(registry)
    model = registry.get_model("churn")
    built = registry.list_builds("churn")[0]
    source = snapshot_path(built, tmp_path) / built.file
    source.parent.mkdir(parents=True)
    source.write_text("def predict(args):\n    return args\n")
    assert served_batch(built, model.settings, tmp_path).function is None
    source.write_text(
        "def predict(args):\n    return args\n\n\ndef predict_batch(items):\n    return items\n"
    )
    choice = served_batch(built, model.settings, tmp_path)
    assert (choice.function, choice.auto) == ("predict_batch", True)
    model = registry.update_model("churn", batch_function="none")
    assert served_batch(built, model.settings, tmp_path).function is None
    model = registry.update_model("churn", batch_function="many")
    assert served_batch(built, model.settings, tmp_path).function == "many"
    # No snapshot on disk (another home): no batch function is assumed, so capacity stays at
    # the replica's concurrency.
    model = registry.update_model("churn", batch_function=None)
    assert served_batch(built, model.settings, tmp_path / "elsewhere").function is None


def test_replica_ids_are_short_unique_and_safe_as_file_names() -> None:
    crn = "crn:modelyard:deployment/3f0c2a9e-1111-4222-8333-444455556666"
    ids = {new_replica_id(crn, 4) for _ in range(50)}
    assert len(ids) == 50
    for rid in ids:
        assert check_name(rid, "replica_id") == rid
        assert rid.startswith("3f0c2a9e-r4-") and len(rid) == len("3f0c2a9e-r4-") + 6
    with pytest.raises(InvalidInput, match="deployment_id"):
        deployment_id("crn:modelyard:deployment/..")


# -- events ---------------------------------------------------------------------------------------
def test_the_relay_keeps_events_until_connected() -> None:
    relay = EventRelay()
    relay(Event("started", 1, "d", "r1"))
    relay(Event("healthy", 2, "d", "r1"))
    seen: list[str] = []
    relay.connect(lambda event: seen.append(event.kind))
    relay(Event("stopped", 3, "d", "r1"))
    assert seen == ["started", "healthy", "stopped"]


def test_runtime_events_set_pool_health_and_are_recorded(
    registry: Registry, runtime: LocalRuntime
) -> None:
    _, crn = deployed(registry)
    deployment = registry.get_deployment(crn)

    async def scenario() -> None:
        fleet = Fleet(runtime, registry)
        # Before the loop is known events are kept, and handled once it is.
        fleet.on_event(Event("started", 1, deployment_id(crn), "r1", details={"pid": 1}))
        fleet.bind(asyncio.get_running_loop())
        replica = Replica("r1", "churn", crn, deployment_id(crn), 8123)
        fleet.replicas["r1"] = replica
        fleet._deployment_of["r1"] = crn
        pool = DeploymentPool(identity(deployment))
        pool.add_endpoint(ReplicaEndpoint("r1", replica.url, 2))
        replica.pools.append(pool)

        def healthy() -> bool:
            return pool.endpoints()[0].healthy

        for kind, details, expected in [
            ("exited", {"exit_code": -9, "signal": "SIGKILL"}, False),
            ("restarted", {"backoff_s": 0.2}, False),
            ("healthy", {}, True),
            ("unhealthy", {"reason": "HTTP 500"}, False),
            ("healthy", {}, True),
        ]:
            fleet.on_event(Event(kind, 10, deployment_id(crn), "r1", details=details))
            await asyncio.sleep(0.01)
            assert healthy() is expected, kind
        assert replica.failure is None  # a crash is the runtime's to restart
        fleet.on_event(Event("exited", 11, deployment_id(crn), "r1", details={"exit_code": 3}))
        fleet.on_event(Event("exited", 12, None, "someone-else", details={"exit_code": 3}))
        await asyncio.sleep(0.01)
        assert replica.failure is not None and "importing the file raised" in replica.failure
        await asyncio.to_thread(fleet.close)

    run(scenario)
    events = registry.events(crn)
    assert [e.kind for e in reversed(events)] == [
        "started", "exited", "restarted", "healthy", "unhealthy", "healthy", "exited",
    ]  # fmt: skip
    assert events[-1].details == {"pid": 1}
    assert events[-2].details == {"exit_code": -9, "signal": "SIGKILL"}
    assert {e.replica_id for e in events} == {"r1"}  # someone-else's event was not recorded


def test_the_health_probe_accepts_only_the_replica_it_started() -> None:
    def answers_as(port: int, replica_id: str) -> bool:  # what the fleet asks while it starts one
        return check_health(port, HEALTH_PATH, 1.0, replica_id)[0]

    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"status": "ok", "replica": "r1"}' if self.path == "/healthz" else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthz) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.server_address[1]
        try:
            assert answers_as(port, "r1") is True
            assert answers_as(port, "r2") is False  # a stranger on the port is not our replica
        finally:
            server.shutdown()
            thread.join()
    assert answers_as(port, "r1") is False  # nothing listens any more


# -- refusals -------------------------------------------------------------------------------------
def make_controller(registry: Registry, runtime: LocalRuntime, tmp_path: Path) -> Controller:
    return Controller(tmp_path / "home", registry.store, registry, runtime, Gateway())


def test_bad_arguments_are_refused_before_anything_is_created(
    registry: Registry, runtime: LocalRuntime, tmp_path: Path
) -> None:
    for bad in (0, -1, True, 3601):
        with pytest.raises(InvalidInput, match="health_timeout_s"):
            Controller(tmp_path, registry.store, registry, runtime, Gateway(), health_timeout_s=bad)

    async def scenario() -> None:
        controller = make_controller(registry, runtime, tmp_path)
        with pytest.raises(InvalidInput, match="replicas=0"):
            await controller.deploy("churn", tmp_path, "predict.py", "predict", replicas=0)
        with pytest.raises(InvalidInput, match="outside the project"):
            await controller.deploy("churn", tmp_path, "../predict.py", "predict")
        with pytest.raises(InvalidInput, match="identifier"):
            await controller.deploy("churn", tmp_path, "predict.py", "not a name")
        with pytest.raises(InvalidInput, match="does not exist"):
            await controller.deploy("fresh", tmp_path / "missing", "predict.py", "predict")
        (tmp_path / "empty").mkdir()
        with pytest.raises(InvalidInput, match="not a file in the project"):  # the build's
            await controller.deploy("built", tmp_path / "empty", "predict.py", "predict")

    run(scenario)
    # Refused before the model was created, or (the build's refusal) removed with it again: a
    # failed first deploy leaves no model behind.
    assert [m.name for m in registry.list_models()] == []


def test_operations_on_a_model_without_an_active_deployment_say_what_to_do(
    registry: Registry, runtime: LocalRuntime, tmp_path: Path
) -> None:
    registry.create_model("idle")

    async def scenario() -> None:
        controller = make_controller(registry, runtime, tmp_path)
        with pytest.raises(Conflict, match="no active deployment to scale"):
            await controller.scale("idle", 2)
        with pytest.raises(Conflict, match="no active deployment to stop"):
            await controller.stop("idle")
        with pytest.raises(NotFound, match="no stopped deployment to start"):
            await controller.start("idle")
        with pytest.raises(NotFound, match="no replaced deployment to roll back to"):
            await controller.rollback("idle")
        with pytest.raises(InvalidInput, match="replicas=-1"):
            await controller.scale("idle", -1)
        with pytest.raises(NotFound):
            await controller.stop("nobody")
        assert await controller.restore() == {}
        controller.on_stuck("gone-r1-000000")  # an unknown replica: logged, not raised
        await controller.delete("idle")
        await controller.shutdown()

    run(scenario)
    with pytest.raises(NotFound):
        registry.get_model("idle")
    controller = make_controller(registry, runtime, tmp_path)
    with pytest.raises(NotFound):
        controller.status("idle")
    with pytest.raises(InvalidInput, match="tail"):
        controller.logs("idle", tail=-1)


# -- surface --------------------------------------------------------------------------------------
def test_the_package_exports_gateway_and_controller_without_loading_them_in_replicas() -> None:
    names = {"Controller", "DeployOutcome", "EventRelay", "Gateway", "ReplicaEndpoint"}
    assert names <= set(modelyard.serving.__all__)
    assert all(getattr(modelyard.serving, n) is not None for n in modelyard.serving.__all__)
    assert modelyard.serving.Controller is Controller
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = modelyard.serving.Nope  # type: ignore[attr-defined]
    probe = (
        "import sys, modelyard.serving.replica; "
        "heavy = [m for m in ('modelyard.serving.controller', 'modelyard.serving.gateway') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
