"""One JSON error shape for every refusal: the API's own errors and the framework's 404, 405, 422
and 500, ``{"error": {"code", "message", "details"?}}``; the gateway routes use the reference
envelope ``{"success": false, "error": {...}}`` with the same inner object."""

from __future__ import annotations

from typing import Any

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
