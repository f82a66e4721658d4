"""``/openapi.json`` describes the model-call routes (raw Starlette routes FastAPI never sees)
with the reference envelope's schemas, and every ``$ref`` in the document resolves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from server.conftest import Api

PREDICT_PATHS = ("/model", "/api/v1/models/{name}/predict", "/api/v1/models/{name}/predict_batch")


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_openapi_lists_the_predict_routes(with_api: Callable[..., Any]) -> None:
    async def scenario(api: Api) -> dict[str, Any]:
        answer = await api.client.get("/openapi.json")  # public: no key
        assert answer.status_code == 200
        document: dict[str, Any] = answer.json()
        return document

    document = with_api(scenario, jobs=False)
    paths = document["paths"]
    for path in PREDICT_PATHS:
        operation = paths[path]["post"]
        assert operation["security"] == [{"bearer": []}, {}]
        assert "200" in operation["responses"] and "429" in operation["responses"]
    model_call = paths["/model"]["post"]
    assert model_call["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ModelCallRequest"
    }
    envelope = document["components"]["schemas"]["ModelEnvelope"]
    assert {"success", "response", "error", "uuid", "ReplicaID"} <= set(envelope["properties"])
    batch = paths["/api/v1/models/{name}/predict_batch"]["post"]
    assert batch["requestBody"]["content"]["application/json"]["schema"]["type"] == "array"
    ok = batch["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/ModelBatchEnvelope"}
    assert "/api/v1/metrics" in paths  # FastAPI's own routes are still there
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in document["components"]["schemas"], ref
    operation_ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))
