"""The replica process over real loopback HTTP: protocol, records, errors, batching, limits, stop.

Every replica here is a real ``python -m modelyard.serving.replica`` process on a free port. The
replicas the read-only tests share are started once per module, all at the same time (they spend
their start-up importing, which the two cores do in parallel). Each gets ``MODELYARD_HOME``
pointed at a folder that must still not exist at the end: a replica never opens a store.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from _processes import Replica, replica_argv, start_replica, stop_replica, wait_healthy
from modelyard.builds.smoke import EXIT_IMPORT_FAILED, EXIT_NOT_CALLABLE
from modelyard.runtime import (
    LocalRuntime,
    ReplicaSpec,
    ReplicaStatus,
    SupervisorConfig,
    free_port,
)
from modelyard.serving.replica import ReplicaConfig, parse_args

JSON = {"Content-Type": "application/json"}

MODEL = """
    import asyncio
    import threading
    import time

    import modelyard


    @modelyard.model_metrics
    def decorated(args):
        modelyard.track_metric("tenure", args["tenure"])
        modelyard.track_metrics({"score": 0.25, "tags": ["a", "b"]})
        if args.get("fail"):
            raise ValueError(f"tenure={args['tenure']} is not accepted")
        return {"churn": args["tenure"] > 3}


    def plain(args):
        if isinstance(args, dict) and args.get("fail"):
            raise KeyError("no such customer")
        if isinstance(args, dict) and args.get("set"):
            return {1, 2}
        if isinstance(args, dict) and args.get("exit"):
            raise SystemExit(3)
        return {"echo": args}


    _lock = threading.Lock()
    _running = 0
    _peak = 0


    def slow(args):
        # Counts how many calls run at once; answers the highest count seen so far.
        global _running, _peak
        with _lock:
            _running += 1
            _peak = max(_peak, _running)
        if "mark" in args:  # tells a test the call is running
            open(args["mark"], "w").close()
        time.sleep(args.get("sleep", 0.2))
        with _lock:
            _running -= 1
        return {"peak": _peak}


    def batch(items):
        return [{"i": item["i"], "n": len(items)} for item in items]


    def short_batch(items):
        return items[:-1]


    def numpy_batch(items):
        import numpy

        return numpy.array([item["i"] for item in items]) * 0.5


    async def async_echo(args):
        await asyncio.sleep(0.01)
        return {"echo": args}
"""

AUTO = """
    def predict(args):
        return {"single": args}


    def predict_batch(items):
        return [{"batched": item, "n": len(items)} for item in items]
"""

BROKEN = """
    raise RuntimeError("the model file cannot be imported")
"""


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def _start_in(tmp_path: Path, snapshot: Path, file: str, *args: str) -> Replica:
    """A replica of its own for one test: home and log under the test's ``tmp_path``."""
    return start_replica(snapshot, tmp_path / "home", tmp_path / "log", file, *args)


SHARED = {
    "decorated": ("model.py", "--function", "decorated"),
    "plain": ("model.py", "--function", "plain", "--max-body-bytes", "64K"),
    "plain_io": ("model.py", "--function", "plain", "--track-io"),
    "decorated_debug": ("model.py", "--function", "decorated", "--track-io", "--debug"),
    "slow2": ("model.py", "--function", "slow", "--concurrency", "2"),
    "batched": (
        "model.py",
        *("--function", "plain", "--batch-function", "batch"),
        *("--max-batch-size", "8", "--max-batch-wait-ms", "50", "--concurrency", "1"),
    ),
    "short": ("model.py", "--function", "plain", "--batch-function", "short_batch"),
    "numpy": ("model.py", "--function", "plain", "--batch-function", "numpy_batch"),
    "auto": ("auto.py", "--function", "predict"),
    "auto_off": ("auto.py", "--function", "predict", "--batch-function", "none"),
    "async": ("model.py", "--function", "async_echo"),
}

SHARED_ENV = {"plain_io": {"MODELYARD_MAX_RECORD_BYTES": "1K"}}


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("replica-home") / "home"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("snapshot")
    return _write(root, {"model.py": MODEL, "auto.py": AUTO, "broken.py": BROKEN})


@pytest.fixture(scope="module")
def replicas(snapshot: Path, shared_home: Path) -> Iterator[dict[str, Replica]]:
    logs = snapshot.parent / "logs"
    logs.mkdir(exist_ok=True)
    started = {
        name: start_replica(
            snapshot, shared_home, logs / f"{name}.log", *args, env=SHARED_ENV.get(name)
        )
        for name, args in SHARED.items()
    }
    try:
        for replica in started.values():
            wait_healthy(replica)
        yield started
    finally:
        for replica in started.values():
            if replica.process.poll() is None:
                replica.process.terminate()
        for replica in started.values():
            stop_replica(replica)
    # No replica opened a store or wrote anything under its home.
    assert not shared_home.exists()


def test_healthz_names_the_replica_and_binds_loopback_only(replicas: dict[str, Replica]) -> None:
    replica = replicas["decorated"]
    answer = httpx.get(f"{replica.url}/healthz")
    port = int(replica.url.rsplit(":", 1)[1])
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "replica": f"r-{port}"}
    listening = [
        c.laddr
        for c in psutil.Process(replica.process.pid).net_connections("tcp")
        if c.status == psutil.CONN_LISTEN
    ]
    assert [(addr.ip, addr.port) for addr in listening] == [("127.0.0.1", port)]


def test_decorated_function_answers_with_the_decorator_record(
    replicas: dict[str, Replica],
) -> None:
    before = time.time_ns() // 1_000_000
    body = replicas["decorated"].invoke({"tenure": 7}).json()
    after = time.time_ns() // 1_000_000
    assert body["ok"] is True
    assert body["output"]["prediction"] == {"churn": True}
    record = body["record"]
    assert record["predictionUuid"] == body["output"]["uuid"]
    assert uuid.UUID(record["predictionUuid"]).version == 7  # time-ordered (ids.py)
    assert record["metrics"] == {"tenure": 7, "score": 0.25, "tags": ["a", "b"]}
    assert before <= record["startTimeStampMs"] <= record["endTimeStampMs"] <= after
    assert set(body["timing"]) == {"queue_ms", "function_ms", "batch_size"}
    assert body["timing"]["batch_size"] == 1
    assert 0 <= body["timing"]["queue_ms"] < 1000


def test_undecorated_function_gets_a_minted_record(replicas: dict[str, Replica]) -> None:
    answers = [replicas["plain"].invoke({"n": i}).json() for i in range(3)]
    assert [a["output"] for a in answers] == [{"echo": {"n": i}} for i in range(3)]
    uuids = {a["record"]["predictionUuid"] for a in answers}
    assert len(uuids) == 3
    assert all(uuid.UUID(u).version == 7 for u in uuids)  # time-ordered, as the gateway mints
    assert all(a["record"]["metrics"] == {} for a in answers)
    assert all(set(a) == {"ok", "output", "record", "timing"} for a in answers)


def test_track_io_adds_input_and_output(replicas: dict[str, Replica]) -> None:
    body = replicas["plain_io"].invoke({"tenure": 2, "plan": "basic"}).json()
    assert body["record"]["metrics"] == {
        "input": {"tenure": 2, "plan": "basic"},
        "output": {"echo": {"tenure": 2, "plan": "basic"}},
    }
    # Decorated: the output recorded is the prediction, not the decorator's wrapper.
    body = replicas["decorated_debug"].invoke({"tenure": 1}).json()
    assert body["record"]["metrics"]["input"] == {"tenure": 1}
    assert body["record"]["metrics"]["output"] == {"churn": False}
    assert body["record"]["metrics"]["tenure"] == 1


def test_track_io_leaves_out_values_that_would_pass_the_record_limit(
    replicas: dict[str, Replica],
) -> None:
    big = {"text": "x" * 600}  # input and output (the echo) together pass the 1K limit
    body = replicas["plain_io"].invoke(big).json()
    assert body["ok"] is True
    assert body["output"] == {"echo": big}
    input_bytes = len(json.dumps(big, separators=(",", ":")))
    assert body["record"]["metrics"] == {
        "_io_dropped": {
            "input_bytes": input_bytes,
            "output_bytes": input_bytes + len('{"echo":}'),
            "limit_bytes": 1024,
        }
    }


def test_user_exception_is_a_failed_answer_without_traceback(
    replicas: dict[str, Replica],
) -> None:
    answer = replicas["decorated"].invoke({"tenure": 9, "fail": True})
    assert answer.status_code == 200
    body = answer.json()
    assert body["ok"] is False
    assert body["error"] == {"type": "ValueError", "message": "tenure=9 is not accepted"}
    assert "output" not in body
    # The decorator's record, with what was tracked before the failure and its error marker.
    assert body["record"]["metrics"] == {
        "tenure": 9,
        "score": 0.25,
        "tags": ["a", "b"],
        "_error": {"type": "ValueError", "message": "tenure=9 is not accepted"},
    }
    body = replicas["plain"].invoke({"fail": True}).json()
    assert body["ok"] is False
    assert body["error"] == {"type": "KeyError", "message": "'no such customer'"}
    assert body["record"]["metrics"] == {"_error": body["error"]}


def test_system_exit_in_user_code_fails_the_item_and_the_replica_serves_on(
    replicas: dict[str, Replica],
) -> None:
    body = replicas["plain"].invoke({"exit": True}).json()
    assert body["ok"] is False
    assert body["error"] == {"type": "SystemExit", "message": "3"}
    assert replicas["plain"].invoke({"n": 1}).json()["ok"] is True
    assert replicas["plain"].process.poll() is None


def test_debug_adds_the_traceback(replicas: dict[str, Replica]) -> None:
    body = replicas["decorated_debug"].invoke({"tenure": 4, "fail": True}).json()
    assert body["error"]["type"] == "ValueError"
    assert "Traceback (most recent call last)" in body["error"]["traceback"]
    assert 'raise ValueError(f"tenure=' in body["error"]["traceback"]
    assert body["record"]["metrics"]["input"] == {"tenure": 4, "fail": True}
    assert "output" not in body["record"]["metrics"]


def test_output_that_is_not_json_fails_the_item(replicas: dict[str, Replica]) -> None:
    body = replicas["plain"].invoke({"set": True}).json()
    assert body["ok"] is False
    assert body["error"]["type"] == "TypeError"
    assert "plain returned a set that is not JSON" in body["error"]["message"]
    assert body["record"]["metrics"]["_error"]["type"] == "TypeError"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"{tenure: 3}", "is not JSON"), (b"", "is not JSON"), (b"\xff\xfe", "is not JSON")],
)
def test_a_body_that_is_not_json_is_400(
    replicas: dict[str, Replica], content: bytes, fragment: str
) -> None:
    answer = httpx.post(f"{replicas['plain'].url}/invoke", content=content, headers=JSON)
    assert answer.status_code == 400
    body = answer.json()
    assert body["ok"] is False
    assert body["error"]["code"] == "invalid_input"
    assert fragment in body["error"]["message"]


def test_oversized_body_is_413_and_the_connection_stays_usable(
    replicas: dict[str, Replica],
) -> None:
    url = replicas["plain"].url
    big = b'{"x": "' + b"a" * 70_000 + b'"}'
    with httpx.Client() as client:
        answer = client.post(f"{url}/invoke", content=big, headers=JSON)
        assert answer.status_code == 413
        body = answer.json()
        assert body["ok"] is False
        assert body["error"]["code"] == "payload_too_large"
        assert "65536 bytes" in body["error"]["message"]
        assert "--max-body-bytes" in body["error"]["message"]
        # Chunked (no Content-Length): caught while reading.
        chunks = iter([big[:40_000], big[40_000:]])
        assert client.post(f"{url}/invoke", content=chunks, headers=JSON).status_code == 413
        assert client.post(f"{url}/invoke", json={"ok": 1}).json()["ok"] is True


def test_only_json_for_this_replica_by_name_is_served(replicas: dict[str, Replica]) -> None:
    """A page in a browser on this machine cannot call a replica: a cross-site "simple" POST
    (text/plain, or no type), a rebound DNS name and a foreign Origin are all refused before any
    user code runs; the gateway's own way of calling still works."""
    replica = replicas["plain"]
    port = replica.url.rsplit(":", 1)[1]
    body = b'{"n": 1}'
    refused = [
        ({"Content-Type": "text/plain"}, 415, "unsupported_media_type", "'text/plain'"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type",
         "application/json"),
        ({}, 415, "unsupported_media_type", "None"),
        ({**JSON, "Host": f"evil.example:{port}"}, 403, "forbidden", "evil.example"),
        ({**JSON, "Host": "127.0.0.1:1"}, 403, "forbidden", "127.0.0.1:1"),
        ({**JSON, "Origin": "http://evil.example"}, 403, "forbidden", "http://evil.example"),
        ({**JSON, "Origin": "null"}, 403, "forbidden", "'null'"),
    ]  # fmt: skip
    for path in ("/invoke", "/invoke_batch"):
        for headers, status, code, named in refused:
            data = b"[" + body + b"]" if path == "/invoke_batch" else body
            answer = httpx.post(replica.url + path, content=data, headers=headers)
            assert answer.status_code == status, (path, headers, answer.text)
            error = answer.json()["error"]
            assert error["code"] == code and named in error["message"], error
    assert httpx.get(replica.url + "/healthz", headers={"Host": "evil.example"}).status_code == 403
    accepted = [
        {"Content-Type": "application/json; charset=utf-8"},
        {**JSON, "Host": f"localhost:{port}"},
        {**JSON, "Origin": f"http://127.0.0.1:{port}"},
    ]
    for headers in accepted:
        answer = httpx.post(replica.url + "/invoke", content=body, headers=headers)
        assert answer.status_code == 200 and answer.json()["ok"] is True, (headers, answer.text)


def test_routes_and_methods_answer_in_the_one_error_shape(replicas: dict[str, Replica]) -> None:
    url = replicas["plain"].url
    cases = [
        (httpx.get(f"{url}/predict"), 404, "not_found"),
        (httpx.get(f"{url}/invoke"), 405, "method_not_allowed"),
        (httpx.post(f"{url}/healthz"), 405, "method_not_allowed"),
        (httpx.post(f"{url}/invoke_batch", json={"a": 1}), 400, "invalid_input"),
    ]
    for answer, status, code in cases:
        assert answer.status_code == status
        body = answer.json()
        assert body["ok"] is False
        assert body["error"]["code"] == code
        assert body["error"]["message"]


def test_invoke_batch_without_batch_function_calls_the_function_per_item(
    replicas: dict[str, Replica],
) -> None:
    answer = replicas["decorated"].invoke_batch([{"tenure": 1}, {"tenure": 5, "fail": True}])
    first, second = answer.json()["results"]
    assert first["ok"] is True and first["output"]["prediction"] == {"churn": False}
    assert first["record"]["predictionUuid"] == first["output"]["uuid"]
    assert second["ok"] is False and second["error"]["type"] == "ValueError"
    assert second["record"]["predictionUuid"] != first["record"]["predictionUuid"]
    assert replicas["decorated"].invoke_batch([]).json() == {"results": []}


def test_concurrent_requests_are_grouped_into_batches(replicas: dict[str, Replica]) -> None:
    replica = replicas["batched"]
    with httpx.Client(limits=httpx.Limits(max_connections=20)) as client:

        def call(i: int) -> dict[str, Any]:
            return client.post(f"{replica.url}/invoke", json={"i": i}, timeout=30).json()  # type: ignore[no-any-return]

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(call, range(20)))
    assert all(a["ok"] for a in answers)
    # Each answer is its own item's (order kept through the batch) and says its batch's size.
    assert [a["output"]["i"] for a in answers] == list(range(20))
    sizes = [a["timing"]["batch_size"] for a in answers]
    assert [a["output"]["n"] for a in answers] == sizes
    assert max(sizes) > 1, sizes
    assert max(sizes) <= 8, sizes
    assert len({a["record"]["predictionUuid"] for a in answers}) == 20
    assert all(a["record"]["metrics"] == {} for a in answers)
    # Nothing waits much beyond the 50 ms window plus the batches ahead of it.
    assert all(a["timing"]["queue_ms"] < 2000 for a in answers)


def test_a_lone_request_waits_no_longer_than_the_batch_window(
    replicas: dict[str, Replica],
) -> None:
    body = replicas["batched"].invoke({"i": 1}).json()
    assert body["timing"]["batch_size"] == 1
    assert 40 <= body["timing"]["queue_ms"] < 500, body["timing"]


def test_invoke_batch_calls_the_batch_function_once(replicas: dict[str, Replica]) -> None:
    results = replicas["batched"].invoke_batch([{"i": i} for i in range(5)]).json()["results"]
    assert [r["output"] for r in results] == [{"i": i, "n": 5} for i in range(5)]
    assert [r["timing"]["batch_size"] for r in results] == [5] * 5
    assert len({r["record"]["predictionUuid"] for r in results}) == 5


def test_a_batch_function_may_return_a_numpy_array(replicas: dict[str, Replica]) -> None:
    results = replicas["numpy"].invoke_batch([{"i": i} for i in range(4)]).json()["results"]
    assert [r["output"] for r in results] == [0.0, 0.5, 1.0, 1.5]
    assert replicas["numpy"].invoke({"i": 3}).json()["output"] == 1.5


def test_batch_length_mismatch_fails_every_item_naming_both_lengths(
    replicas: dict[str, Replica],
) -> None:
    results = replicas["short"].invoke_batch([{"i": i} for i in range(3)]).json()["results"]
    assert [r["ok"] for r in results] == [False] * 3
    for r in results:
        assert r["error"]["type"] == "modelyard.serving.replica.BatchOutputError"
        assert "short_batch returned 2 outputs for 3 inputs" in r["error"]["message"]
        assert r["record"]["metrics"]["_error"] == r["error"]
    assert len({r["record"]["predictionUuid"] for r in results}) == 3
    body = replicas["short"].invoke({"i": 0}).json()
    assert body["ok"] is False
    assert "returned 0 outputs for 1 inputs" in body["error"]["message"]


def test_predict_batch_is_found_by_name_unless_turned_off(replicas: dict[str, Replica]) -> None:
    body = replicas["auto"].invoke({"x": 1}).json()
    assert body["output"] == {"batched": {"x": 1}, "n": 1}
    body = replicas["auto_off"].invoke({"x": 1}).json()
    assert body["output"] == {"single": {"x": 1}}
    assert "batching with predict_batch" in replicas["auto"].log.read_text()


def test_async_functions_are_awaited(replicas: dict[str, Replica]) -> None:
    body = replicas["async"].invoke({"x": [1, 2]}).json()
    assert body["ok"] is True
    assert body["output"] == {"echo": {"x": [1, 2]}}
    assert body["timing"]["function_ms"] >= 9


def test_concurrency_limit_is_respected_and_health_answers_meanwhile(
    replicas: dict[str, Replica],
) -> None:
    replica = replicas["slow2"]
    with httpx.Client(base_url=replica.url) as health_client, ThreadPoolExecutor(6) as pool:
        health_client.get("/healthz")  # connect now: only the answer is timed below
        futures = [pool.submit(replica.invoke, {"sleep": 0.6}) for _ in range(6)]
        time.sleep(0.15)
        began = time.perf_counter()
        health = health_client.get("/healthz", timeout=5)
        health_s = time.perf_counter() - began
        answers = [f.result().json() for f in futures]
    assert health.status_code == 200
    # User code blocking the loop would hold the answer until a 0.6 s call ends.
    assert health_s < 0.4, f"/healthz took {health_s:.3f} s while user code ran"
    assert max(a["output"]["peak"] for a in answers) == 2
    # Six 0.6 s calls two at a time: three rounds, so someone queued about two rounds.
    assert max(a["timing"]["queue_ms"] for a in answers) > 1000


def test_a_function_that_cannot_be_loaded_exits_with_the_smoke_test_codes(
    snapshot: Path, tmp_path: Path
) -> None:
    for file, function, code, text in [
        ("model.py", "nope", EXIT_NOT_CALLABLE, "defines no 'nope'"),
        ("broken.py", "predict", EXIT_IMPORT_FAILED, "the model file cannot be imported"),
    ]:
        replica = _start_in(tmp_path, snapshot, file, "--function", function)
        assert replica.process.wait(60) == code
        assert text in replica.log.read_text()
    replica = _start_in(
        tmp_path, snapshot, "model.py", "--function", "plain", "--batch-function", "missing"
    )
    assert replica.process.wait(60) == EXIT_NOT_CALLABLE
    assert "--batch-function 'missing'" in replica.log.read_text()


def test_a_taken_port_exits_1_saying_so(snapshot: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = replica_argv(snapshot, "model.py", port, "r", "--function", "plain")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "address already in use" in done.stderr.lower()


def test_bad_arguments_exit_2_naming_the_value(snapshot: Path, tmp_path: Path) -> None:
    replica = _start_in(tmp_path, snapshot, "model.py", "--function", "plain", "--concurrency", "0")
    assert replica.process.wait(60) == 2
    assert "'0' is below 1" in replica.log.read_text()


def test_sigterm_finishes_the_request_in_flight_and_exits_0(snapshot: Path, tmp_path: Path) -> None:
    replica = _start_in(tmp_path, snapshot, "model.py", "--function", "slow")
    try:
        wait_healthy(replica)
        result: dict[str, Any] = {}

        mark = tmp_path / "running"

        def call() -> None:
            result["answer"] = replica.invoke({"sleep": 1.5, "mark": str(mark)})

        caller = threading.Thread(target=call)
        caller.start()
        deadline = time.monotonic() + 10
        while not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert mark.exists(), "the call never started"
        replica.process.send_signal(signal.SIGTERM)
        time.sleep(0.4)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{replica.url}/healthz", timeout=2)  # no longer accepting
        caller.join(10)
        assert result["answer"].status_code == 200
        assert result["answer"].json()["ok"] is True
        assert replica.process.wait(10) == 0
        assert "stopped" in replica.log.read_text()
    finally:
        stop_replica(replica)


def test_config_argv_parses_back_to_the_same_config() -> None:
    config = ReplicaConfig(
        snapshot="/snap",
        file="predict.py",
        function="predict",
        port=8123,
        replica_id="r1",
        batch_function="predict_many",
        concurrency=3,
        max_batch_size=16,
        max_batch_wait_ms=2.5,
        max_body_bytes=1024,
        track_io=True,
        debug=True,
    )
    argv = config.argv("/usr/bin/python3")
    assert argv[:3] == ["/usr/bin/python3", "-m", "modelyard.serving.replica"]
    assert parse_args(argv[3:]) == config
    plain = ReplicaConfig("/snap", "predict.py", "predict", 8123, "r1")
    assert parse_args(plain.argv()[3:]) == plain
    assert parse_args([*plain.argv()[3:], "--max-body-bytes", "5MB"]).max_body_bytes == 5 * 1024**2


def test_under_the_local_runtime_it_turns_healthy_serves_and_stops_with_exit_0(
    snapshot: Path, tmp_path: Path
) -> None:
    config = ReplicaConfig(str(snapshot), "model.py", "decorated", free_port(), "r1")
    fast = SupervisorConfig(poll_interval_s=0.05, health_interval_s=0.1, stop_grace_s=10)
    with LocalRuntime(tmp_path / "runtime", config=fast) as runtime:
        spec = ReplicaSpec("dep1", "r1", config.argv(), port=config.port, health_path="/healthz")
        runtime.start_replicas([spec])
        deadline = time.monotonic() + 60
        while runtime.replica("r1").status is not ReplicaStatus.HEALTHY:
            assert time.monotonic() < deadline, list(runtime.read_replica_log("dep1", "r1"))
            time.sleep(0.05)
        body = httpx.post(f"http://127.0.0.1:{config.port}/invoke", json={"tenure": 2}).json()
        assert body["record"]["predictionUuid"] == body["output"]["uuid"]
        final = runtime.stop_replica("r1")
    assert final.status is ReplicaStatus.STOPPED
    assert final.last_exit_code == 0
