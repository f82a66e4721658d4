"""``POST /api/v1/references`` refuses oversized bodies before parsing and too many rows before
building a DataFrame (the real server app in-process, real SQLite store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from _async import run
from modelyard.runtime import free_port
from modelyard.server import ServerConfig, alerts_api, create_app

from .conftest import write_stream


async def scenario(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(ServerConfig(home=home, port=free_port()))
    async with app.router.lifespan_context(app):
        auth = {"Authorization": f"Bearer {(home / 'admin.key').read_text().strip()}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            stream = await asyncio.to_thread(write_stream, app.state.services.store, 1)
            dep = stream.ident.deployment_crn

            async def post(content: bytes | AsyncIterator[bytes]) -> httpx.Response:
                headers = {**auth, "Content-Type": "application/json"}
                return await client.post("/api/v1/references", content=content, headers=headers)

            # the real limit, declared: refused from the header, nothing parsed
            huge = b" " * (alerts_api.MAX_UPLOAD_BYTES + 1)
            answer = await post(huge)
            assert answer.status_code == 413, answer.text
            error = answer.json()["error"]
            assert error["code"] == "payload_too_large"
            assert str(alerts_api.MAX_UPLOAD_BYTES) in error["message"]
            del huge

            # streamed without a length: counted while it arrives
            monkeypatch.setattr(alerts_api, "MAX_UPLOAD_BYTES", 10_000)

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(30):
                    yield b" " * 1000

            answer = await post(chunks())
            assert answer.status_code == 413 and "more than 10000 bytes" in answer.text

            # within the bytes, too many rows: refused before a DataFrame is built
            monkeypatch.setattr(alerts_api, "MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
            monkeypatch.setattr(alerts_api, "MAX_UPLOAD_ROWS", 1000)
            body = {"deployment": dep, "columns": {"tenure": list(range(1001))}}
            answer = await post(orjson.dumps(body))
            assert answer.status_code == 413
            assert "1001 rows" in answer.text and "at most 1000 rows" in answer.text
            body["columns"] = {"tenure": list(range(1000))}
            answer = await post(orjson.dumps(body))
            assert answer.status_code == 201, answer.text
            assert answer.json()["rows"] == 1000

            # not JSON, or a field missing: 400 naming what is accepted
            answer = await post(b"{not json")
            assert answer.status_code == 400 and "not JSON" in answer.text
            answer = await post(orjson.dumps({"deployment": dep}))
            assert answer.status_code == 400 and "columns" in answer.text


def test_reference_uploads_are_capped(
    modelyard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(scenario(modelyard_home, monkeypatch))
