"""One JSON error shape for every refusal: the API's own errors and the framework's 404, 405, 422
and 500, ``{"error": {"code", "message", "details"?}}``; the gateway routes use the reference
envelope ``{"success": false, "error": {...}}`` with the same inner object."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import orjson
from fastapi.exceptions import RequestValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.errors import InvalidInput
from modelyard.web.errors import _validation_error, error_response

from .conftest import Api


def _check_shape(body: Any, code: str) -> dict[str, Any]:
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) <= {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


def test_api_errors_share_one_shape(with_api: Any, tmp_path: Any) -> None:
    async def scenario(api: Api) -> None:
        get, post, h = api.client.get, api.client.post, api.auth()
        hj = {**h, "Content-Type": "application/json"}
        delayed = {"predictionUuid": "nope", "metrics": {"y": 1}}
        api.services.registry.create_model("m")  # routes naming a model check it exists first
        cases = [
            (await get("/no/such/route", headers=h), 404, "not_found", "/no/such/route"),
            (await api.client.delete("/healthz"), 405, "method_not_allowed", "GET"),
            (await get("/api/v1/models/ghost", headers=h), 404, "not_found", "ghost"),
            (await post("/api/v1/keys", json={"role": "root"}, headers=h), 400, "invalid_input",
             "'root'"),
            (await post("/api/v1/keys", json={"nmae": "x"}, headers=h), 422, "invalid_input",
             "nmae"),
            (await post("/api/v1/keys", content=b"{not json", headers=hj), 422, "invalid_input",
             "JSON"),
            (await post("/api/v1/models/m/scale", json={"replicas": -1}, headers=h), 422,
             "invalid_input", "replicas"),
            (await get("/api/v1/metrics", headers=h), 400, "invalid_input", "modelCrn"),
            (await get("/api/v1/metrics?modelCrn=crn:modelyard:model/x&kind=bogus", headers=h),
             400, "invalid_input", "bogus"),
            (await post("/api/v1/metrics/delayed", json=delayed, headers=h), 404, "not_found",
             "nope"),
            (await post("/api/v1/models/m/deploy", json={"project": "relative/dir"}, headers=h),
             400, "invalid_input", "relative/dir"),
            (await post("/api/v1/keys", json={}, headers=api.auth("myk_nope")), 401,
             "unauthorized", "unknown"),
        ]  # fmt: skip
        for answer, status, code, named in cases:
            assert answer.status_code == status, (answer.request.url, answer.text)
            assert answer.headers["content-type"].startswith("application/json")
            error = _check_shape(answer.json(), code)
            assert named in error["message"], (named, error["message"])

    with_api(scenario)


def test_gateway_refusals_use_the_reference_envelope(with_api: Any) -> None:
    async def scenario(api: Api) -> None:
        answers = [
            (await api.client.post("/model", content=b"[1, 2", headers=api.auth()), 400),
            (await api.client.post("/model", json={"request": {}}, headers=api.auth()), 401),
            (await api.client.post("/model", json={"accessKey": "mya_x", "request": {}}), 401),
            (await api.client.post("/api/v1/models/ghost/predict", json={}, headers=api.auth()),
             404),
        ]  # fmt: skip
        for answer, status in answers:
            assert answer.status_code == status, answer.text
            body = answer.json()
            assert body["success"] is False
            assert {"code", "message"} <= set(body["error"])

    with_api(scenario)


# -- the error answers never fail themselves ----------------------------------------------------

_BIG = 2**64  # one past what orjson writes
# JSON text as a client may send it (Python's json writes NaN, Infinity and lone surrogates).
_HOSTILE: list[str] = [
    json.dumps(value)
    for value in (
        _BIG,
        -_BIG,
        10**400,
        float("nan"),
        float("inf"),
        "\ud800",
        {"\udfff": 1},
        [_BIG, {"k": ["\ud834", -(2**70)]}],
        "x" * 200_000,
        list(range(5_000)),
    )
]
_HOSTILE += [
    "1e400",
    *('{"a": [' * n + str(_BIG) + "]}" * n for n in (150, 600)),
]  # 300, 1,200 levels

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too
    | st.floats()  # NaN and infinities too
    | st.text(alphabet=st.characters(codec=None)),  # lone surrogates too
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet=st.characters(codec=None)), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, database=None)
@given(value=_json_values, loc=st.lists(st.text() | st.integers(), max_size=4))
def test_validation_error_answer_encodes_any_input(value: Any, loc: list[Any]) -> None:
    """The 422 handler itself, fed any value a client can send as a field's input."""
    exc = RequestValidationError(
        [
            {
                "type": "string_type",
                "loc": ("body", *loc),
                "msg": "Input should be a valid string",
                "input": value,
                "ctx": {"error": ValueError("x")},
            }
        ]
    )
    answer = asyncio.run(_validation_error(None, exc))  # type: ignore[arg-type]
    assert answer.status_code == 422
    body = orjson.loads(answer.body)
    assert body["error"]["code"] == "invalid_input"
    assert "body" in body["error"]["message"]
    assert len(answer.body) < 200_000  # an echo is bounded, whatever was sent


@settings(max_examples=300, deadline=None, database=None)
@given(value=_json_values)
def test_error_response_encodes_any_detail(value: Any) -> None:
    answer = error_response(InvalidInput("bad value", value=value, nested={"v": [value]}))
    assert answer.status_code == 400
    assert orjson.loads(answer.body)["error"]["message"] == "bad value"


def test_every_json_body_route_refuses_hostile_values_without_a_500(
    with_api: Any,
) -> None:
    """Every operation with a JSON body (from /openapi.json), each top-level field and the whole
    body set to values orjson cannot write or that nest deeper than it goes, with an admin and a
    ``user`` key: 4xx in the one shape, never a 500 (it was 500 on 13 operations)."""

    async def scenario(api: Api) -> int:
        transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60)
        created = await api.client.post(
            "/api/v1/keys", json={"name": "u", "role": "user"}, headers=api.auth()
        )
        keys = [api.admin, created.json()["token"]]
        document = (await api.client.get("/openapi.json")).json()
        schemas = document["components"]["schemas"]
        operations = 0
        async with client:
            for path, item in document["paths"].items():
                for method, operation in item.items():
                    content = operation.get("requestBody", {}).get("content", {})
                    if "application/json" not in content:
                        continue
                    operations += 1
                    schema = content["application/json"]["schema"]
                    if "$ref" in schema:
                        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
                    fields = list(schema.get("properties", {})) or [None]
                    url = (
                        path.replace("{run_id}", str(uuid.uuid4()))
                        .replace("{", "")
                        .replace("}", "")
                    )
                    for value in _HOSTILE:
                        for name in fields:
                            raw = value if name is None else f'{{"{name}": {value}}}'
                            for key in keys:
                                headers = {
                                    "Authorization": f"Bearer {key}",
                                    "Content-Type": "application/json",
                                }
                                answer = await client.request(
                                    method, url, content=raw, headers=headers
                                )
                                where = (method, url, name, value[:60], answer.text[:300])
                                assert 400 <= answer.status_code < 500, where
                                error = answer.json()["error"]
                                assert error["code"] and error["message"], where
        return operations

    assert with_api(scenario, jobs=False) >= 13


def test_openapi_declares_authentication_and_every_error_answer(with_api: Any) -> None:
    """Each control-plane operation says it needs the bearer key and lists its error answers in
    the one shape; the schema's bounds are what the routes accept."""

    async def scenario(api: Api) -> dict[str, Any]:
        document: dict[str, Any] = (await api.client.get("/openapi.json")).json()
        # drift/distributions: start and end default to the last hour, as the docs say
        answer = await api.client.get(
            "/api/v1/drift/distributions?deployment=crn:modelyard:deployment/x&feature=f",
            headers=api.auth(),
        )
        assert answer.status_code != 422, answer.text
        return document

    document = with_api(scenario, jobs=False)
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    error = {"$ref": "#/components/schemas/ApiError"}
    operations = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if operation.get("tags") == ["model calls"]:
                continue
            operations += 1
            assert operation["security"] == [{"bearer": []}], (method, path)
            answers = operation["responses"]
            for status in ("400", "401", "403", "404", "422"):
                assert answers[status]["content"]["application/json"]["schema"] == error
            assert ("413" in answers) == ("requestBody" in operation), (method, path)
    assert operations >= 50
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # the 422 answer is the one shape too
    deploy = schemas["DeployRequest"]["properties"]["replicas"]
    assert (deploy["minimum"], deploy["maximum"]) == (1, 256)  # deploy refuses 0
    assert schemas["ScaleRequest"]["properties"]["replicas"]["minimum"] == 0  # scale to zero
    params = document["paths"]["/api/v1/drift/distributions"]["get"]["parameters"]
    required = {p["name"] for p in params if p.get("required")}
    assert {"start", "end"}.isdisjoint(required), required
