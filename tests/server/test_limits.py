"""What the REST API accepts in what it stores or queries by (``modelyard.server.limits``,
``modelyard.server.body_limit``): each case used to answer 500 or store the value, and now
answers 4xx in the one error shape, naming the value and the limit. In-process app, real SQLite.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from modelyard.server.limits import MAX_TIME_MS, MIN_TIME_MS
from modelyard.store.base import Query

from .conftest import Api

DEP = "crn:modelyard:deployment/limits"
T0 = 1_767_225_600_000  # 2026-01-01


def _run(api: Api) -> str:
    """The uuid of a queued run of a job in the registry: run routes name an existing run."""
    from modelyard.specs.job import JobSpec

    home = str(api.services.first_start.home)
    spec = JobSpec.parse({"name": "limits", "project": home, "script": "x.py", "manual": True})
    registry = api.services.registry
    return registry.create_run(registry.create_job(spec).id, 0, 1, "manual").id.rsplit("/")[-1]


def _prediction(uid: str, start: Any = T0, metrics: Any = None) -> dict[str, Any]:
    return {
        "predictionUuid": uid,
        "modelCrn": "crn:modelyard:model/limits",
        "modelBuildCrn": "crn:modelyard:build/limits",
        "modelDeploymentCrn": DEP,
        "startTimeStampMs": start,
        "endTimeStampMs": start,
        "metrics": {"x": 1} if metrics is None else metrics,
    }


def _client(api: Api) -> httpx.AsyncClient:
    """A client that turns an unhandled error into the 500 a real server answers (the default
    transport raises it instead), so every test sees what a client would."""
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60)


def _raw(value: Any) -> bytes:
    """JSON as any client may send it, NaN and Infinity included (Python's json writes them)."""
    return json.dumps(value).encode()


def _error(answer: httpx.Response, status: int, *named: str) -> str:
    assert answer.status_code == status, (answer.request.url, answer.status_code, answer.text)
    message: str = answer.json()["error"]["message"]
    for text in named:
        assert text in message, (text, message)
    return message


async def _stored(api: Api) -> int:
    records, _ = api.services.store.read(Query(deployment_crn=DEP, end_ms=MAX_TIME_MS))
    return len(records)


def test_timestamps_outside_the_stated_range_are_refused(with_api: Callable[..., Any]) -> None:
    async def scenario(api: Api) -> None:
        h = {**api.auth(), "Content-Type": "application/json"}
        async with _client(api) as c:
            ok = await c.post(
                "/api/v1/metrics/predictions", json={"predictions": [_prediction("ok")]}, headers=h
            )
            assert ok.status_code == 204, ok.text
            for bad in (2**63, 2**64, 2**63 - 1, -(10**12), 0, MIN_TIME_MS - 1, MAX_TIME_MS + 1):
                body = {"predictions": [_prediction(str(uuid.uuid4()), start=bad)]}
                answer = await c.post("/api/v1/metrics/predictions", content=_raw(body), headers=h)
                _error(answer, 422, "startTimeStampMs", str(bad))
                aggregate = {
                    "modelDeploymentCrn": DEP,
                    "startTimeStampMs": bad,
                    "endTimeStampMs": T0,
                    "metrics": {"auc": 0.9},
                }
                answer = await c.post("/api/v1/metrics/aggregate", json=aggregate, headers=h)
                _error(answer, 422, "startTimeStampMs", str(bad))
            message = _error(answer, 422)
            assert str(MAX_TIME_MS) in message or str(MIN_TIME_MS) in message
            for query in ("endTimeStampMs=1e30", f"endTimeStampMs={10**30}",
                          f"startTimeStampMs={2**63}", "startTimeStampMs=-1"):  # fmt: skip
                for path in ("/api/v1/metrics", "/api/v1/metrics/distribution"):
                    answer = await c.get(
                        f"{path}?modelDeploymentCrn={DEP}&key=x&{query}", headers=h
                    )
                    _error(answer, 422, query.split("=")[0])
            for path in ("/api/v1/series?metric=x&", "/api/v1/series/keys?", "/api/v1/drift?"):
                answer = await c.get(f"{path}deployment={DEP}&end={2**63}", headers=h)
                _error(answer, 422, "end", str(2**63))
            answer = await c.get(f"/api/v1/metrics?modelDeploymentCrn={DEP}", headers=h)
            assert answer.status_code == 200 and len(answer.json()["metrics"]) == 1
        assert await _stored(api) == 1

    with_api(scenario, jobs=False)


def test_non_finite_metric_values_are_refused_naming_the_key(
    with_api: Callable[..., Any],
) -> None:
    async def scenario(api: Api) -> None:
        h = {**api.auth(), "Content-Type": "application/json"}
        run = _run(api)
        async with _client(api) as c:
            ok = await c.post(
                "/api/v1/metrics/predictions", json={"predictions": [_prediction("p1")]}, headers=h
            )
            assert ok.status_code == 204, ok.text
            for bad in (float("nan"), float("inf"), float("-inf")):
                metrics = {"fine": 1, "bad_key": {"inner": [1, bad]}}
                writes = [
                    ("/api/v1/metrics/predictions",
                     {"predictions": [_prediction(str(uuid.uuid4()), metrics=metrics)]}),
                    ("/api/v1/metrics/delayed", {"predictionUuid": "p1", "metrics": metrics}),
                    ("/api/v1/metrics/aggregate", {"modelDeploymentCrn": DEP,
                     "startTimeStampMs": T0, "endTimeStampMs": T0, "metrics": metrics}),
                    (f"/api/v1/runs/{run}/metrics", {"metrics": metrics}),
                ]  # fmt: skip
                for path, body in writes:
                    answer = await c.post(path, content=_raw(body), headers=h)
                    _error(answer, 400, "bad_key.inner[1]", "NaN or infinity")
            big = b'{"predictionUuid": "p1", "metrics": {"huge": 1e400}}'
            answer = await c.post("/api/v1/metrics/delayed", content=big, headers=h)
            _error(answer, 400, "'huge'")
            record = (await c.get("/api/v1/predictions/p1", headers=h)).json()
            assert record["delayed"] == []  # nothing stored as null
        assert await _stored(api) == 1

    with_api(scenario, jobs=False)


def test_every_metrics_write_has_the_record_limit(
    with_api: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_MAX_RECORD_BYTES", "10K")

    async def scenario(api: Api) -> None:
        h = api.auth()
        value = "v" * 20_000
        run = _run(api)
        async with _client(api) as c:
            ok = await c.post(
                "/api/v1/metrics/predictions", json={"predictions": [_prediction("p1")]}, headers=h
            )
            assert ok.status_code == 204, ok.text
            writes = [
                ("/api/v1/metrics/predictions",
                 {"predictions": [_prediction("p2", metrics={"text": value})]}),
                ("/api/v1/metrics/delayed", {"predictionUuid": "p1", "metrics": {"text": value}}),
                ("/api/v1/metrics/aggregate", {"modelDeploymentCrn": DEP,
                 "startTimeStampMs": T0, "endTimeStampMs": T0, "metrics": {"text": value}}),
                (f"/api/v1/runs/{run}/metrics", {"metrics": {"text": value}}),
            ]  # fmt: skip
            for path, body in writes:
                answer = await c.post(path, json=body, headers=h)
                _error(answer, 413, "MODELYARD_MAX_RECORD_BYTES", "10240")
                assert answer.json()["error"]["code"] == "payload_too_large"
        assert await _stored(api) == 1

    with_api(scenario, jobs=False)


def test_every_route_caps_its_body(with_api: Callable[..., Any]) -> None:
    async def scenario(api: Api) -> None:
        h = api.auth()
        async with _client(api) as c:
            ok = await c.post(
                "/api/v1/metrics/predictions", json={"predictions": [_prediction("p1")]}, headers=h
            )
            assert ok.status_code == 204, ok.text
            source = "s" * (60 * 1024 * 1024)
            body = {"predictionUuid": "p1", "metrics": {"y": 1}, "source": source}
            answer = await c.post("/api/v1/metrics/delayed", json=body, headers=h)
            _error(answer, 413, "MODELYARD_MAX_REQUEST_BYTES", "2097152", "POST")

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
                yield b'{"predictionUuid": "p1", "metrics": {"y": "'
                for _ in range(40):
                    yield b"y" * 100_000
                yield b'"}}'

            hj = {**h, "Content-Type": "application/json"}
            answer = await c.post("/api/v1/metrics/delayed", content=chunks(), headers=hj)
            _error(answer, 413, "more than 2097152", "MODELYARD_MAX_REQUEST_BYTES")
            answer = await c.post("/api/v1/keys", json={"name": "k" * 3_000_000}, headers=h)
            _error(answer, 413, "/api/v1/keys")
            long_source = {"predictionUuid": "p1", "metrics": {"y": 1}, "source": "s" * 201}
            answer = await c.post("/api/v1/metrics/delayed", json=long_source, headers=h)
            _error(answer, 422, "source", "200")
            # A batch of predictions may be larger than a control-plane body (its own cap).
            batch = [_prediction(f"b{i}", metrics={"t": "x" * 900}) for i in range(3_000)]
            answer = await c.post(
                "/api/v1/metrics/predictions", json={"predictions": batch}, headers=h
            )
            assert answer.status_code == 204, answer.text[:300]
            record = (await c.get("/api/v1/predictions/p1", headers=h)).json()
            assert record["delayed"] == []
        assert await _stored(api) == 3_001

    with_api(scenario, jobs=False)


def test_paths_the_file_system_cannot_take_are_bad_input(
    with_api: Callable[..., Any], tmp_path: Any
) -> None:
    (tmp_path / "job.py").write_text("print('hi')\n")

    async def scenario(api: Api) -> None:
        h = api.auth()
        long = "/" + "a" * 5_000
        part = str(tmp_path / ("b" * 300))
        async with _client(api) as c:
            for project, named in ((long, "4096 bytes"), (part, "255 bytes"),
                                   (str(tmp_path) + "\x00x", "NUL")):  # fmt: skip
                answer = await c.post(
                    "/api/v1/models/m/deploy", json={"project": project}, headers=h
                )
                _error(answer, 400, "project=", named)
                job = {"name": "j", "project": project, "script": "job.py", "manual": True}
                answer = await c.post("/api/v1/jobs", json=job, headers=h)
                _error(answer, 400, "project=", named)
            project = str(tmp_path)
            for field, value, named in (
                ("requirements", "/\x00", "NUL"),
                ("requirements", project + "/" + "b" * 300, "255 bytes"),
                ("file", "b" * 300 + ".py", "255 bytes"),
                ("file", "c/" * 3_000 + "x.py", "4096 bytes"),
            ):
                deploy = {"project": project, field: value}
                answer = await c.post("/api/v1/models/m/deploy", json=deploy, headers=h)
                _error(answer, 400, f"{field}=", named)
            for script, named in (("a\x00b", "NUL"), ("c" * 5_000, "4096 bytes"),
                                  ("d" * 300, "255 bytes")):  # fmt: skip
                job = {"name": "j", "project": str(tmp_path), "script": script, "manual": True}
                answer = await c.post("/api/v1/jobs", json=job, headers=h)
                _error(answer, 400, "script=", named)
            names = [job["name"] for job in (await c.get("/api/v1/jobs", headers=h)).json()["jobs"]]
            assert "j" not in names

    with_api(scenario, jobs=False)


def test_model_call_request_nesting_is_limited(with_api: Callable[..., Any]) -> None:
    async def scenario(api: Api) -> None:
        _, access = api.services.registry.create_model("nested")

        def nested(levels: int) -> Any:
            value: Any = 1
            for _ in range(levels):
                value = [value]
            return value

        async with _client(api) as c:
            body = {"accessKey": access, "request": nested(300)}
            answer = await c.post("/model", json=body, headers=api.auth())
            assert answer.status_code == 400, answer.text
            assert "254 levels" in answer.json()["error"]["message"]
            body = {"accessKey": access, "request": nested(254)}
            answer = await c.post("/model", json=body, headers=api.auth())
            assert answer.status_code == 503, answer.text  # accepted; no deployment runs it

    with_api(scenario, jobs=False)


def _sample(schema: dict[str, Any], schemas: dict[str, Any], name: str = "") -> Any:
    """A value that fits ``schema``: required fields only, integers in the stored range."""
    if "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    kinds = [schema, *schema.get("anyOf", [])]
    kind = next((k.get("type") for k in kinds if k.get("type") not in (None, "null")), None)
    if kind == "object":
        return {
            key: _sample(schema["properties"][key], schemas, key)
            for key in schema.get("required", [])
        }
    if kind == "integer":
        return max(int(schema.get("minimum", T0)), min(T0, int(schema.get("maximum", T0))))
    samples = {"number": 0.5, "boolean": True, "array": []}
    if kind in samples:
        return samples[kind]
    return DEP if "eployment" in name else "x"


def test_every_integer_in_the_document_takes_huge_values_without_a_500(
    with_api: Callable[..., Any], tmp_path: Any
) -> None:
    """Each integer query parameter and top-level body field of every operation, in an
    otherwise fitting request, sent 2^63, 2^64 and -2^63-1 (what a 64-bit database column
    cannot hold): an answer below 500 every time, never an overflow deep in the database."""

    async def scenario(api: Api) -> int:
        h = {**api.auth(), "Content-Type": "application/json"}
        document = (await api.client.get("/openapi.json")).json()
        schemas = document["components"]["schemas"]
        tried = 0
        (tmp_path / "job.py").write_text("print('hi')\n")
        known = {"project": str(tmp_path), "script": "job.py"}  # so a job body gets that far
        async with _client(api) as c:
            first = {"predictions": [_prediction("p1")]}  # the deployment becomes known
            assert (await c.post("/api/v1/metrics/predictions", json=first, headers=h)).is_success
            for path, item in document["paths"].items():
                url = path.replace("{run_id}", str(uuid.uuid4()))
                url = url.replace("{", "").replace("}", "")
                for method, operation in item.items():
                    params = {
                        p["name"]: _sample(p["schema"], schemas, p["name"])
                        for p in operation.get("parameters", [])
                        if p["in"] == "query"
                    }
                    content = operation.get("requestBody", {}).get("content", {})
                    schema = content.get("application/json", {}).get("schema")
                    body = None if schema is None else _sample(schema, schemas)
                    if isinstance(body, dict) and "/jobs" in path:
                        body.update(known)
                    targets = [("query", k) for k, v in params.items() if type(v) is int]
                    if isinstance(body, dict):
                        props = (schemas[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema
                                 else schema).get("properties", {})  # fmt: skip
                        for key, prop in props.items():
                            if type(_sample(prop, schemas, key)) is int:
                                targets.append(("body", key))
                    for value in (2**63, 2**64, -(2**63) - 1):
                        for where, key in targets:
                            query, sent = dict(params), dict(body) if body else body
                            (query if where == "query" else sent)[key] = value  # type: ignore[index]
                            answer = await c.request(
                                method,
                                url,
                                params=query,
                                content=None if sent is None else _raw(sent),
                                headers=h,
                            )
                            tried += 1
                            assert answer.status_code < 500, (method, url, key, answer.text)
        return tried

    assert with_api(scenario, jobs=False) > 50
