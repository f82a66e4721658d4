"""The monitors' REST routes on the real server app in-process (lifespan, real SQLite store):
alerts and references, authenticated like every other route."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from _async import run
from modelyard.monitors import MonitorSpec, run_monitor
from modelyard.runtime import free_port
from modelyard.server import ServerConfig, Services, create_app

from .conftest import HOUR, T0, reference_frame, write_stream


async def scenario(home: Path) -> None:
    app = create_app(ServerConfig(home=home, port=free_port()))
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        admin = (home / "admin.key").read_text().strip()
        auth = {"Authorization": f"Bearer {admin}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            store = services.store
            stream = await asyncio.to_thread(write_stream, store, 3, drifted=frozenset({2}))
            dep = stream.ident.deployment_crn
            ref = reference_frame(n=500)
            body: dict[str, Any] = {
                "deployment": dep,
                "columns": {c: ref[c].tolist() for c in ["tenure", "charges", "plan"]},
            }
            assert (await client.post("/api/v1/references", json=body)).status_code == 401
            answer = await client.post("/api/v1/references", json=body, headers=auth)
            assert answer.status_code == 201, answer.text
            assert answer.json()["rows"] == 500
            bad = {**body, "columns": {"a": [1, 2], "b": [1]}}
            answer = await client.post("/api/v1/references", json=bad, headers=auth)
            assert answer.status_code == 400 and "lengths" in answer.json()["error"]["message"]
            listed = await client.get(f"/api/v1/references?deployment={dep}", headers=auth)
            assert [r["name"] for r in listed.json()["references"]] == ["training"]

            spec = MonitorSpec.from_dict(
                {
                    "name": "churn",
                    "deployment": dep,
                    "reference": {"stored": "training"},
                    "features": ["tenure", "charges", "plan"],
                    "categorical": ["plan"],
                    "prediction": "probability",
                    "metrics": ["drift"],
                    "window": "1h",
                    "alerts": ["drift.flagged > 0"],
                }
            )
            await asyncio.to_thread(
                run_monitor, spec, now_ms=T0 + 3 * HOUR, store=store, settle_ms=0
            )
            assert (await client.get("/api/v1/alerts")).status_code == 401
            got = (await client.get("/api/v1/alerts", headers=auth)).json()["alerts"]
            assert [(a["rule"], a["state"], a["first_window_start_ms"]) for a in got] == [
                ("drift.flagged > 0", "firing", T0 + 2 * HOUR)
            ]
            other = await client.get("/api/v1/alerts?monitor=other&all=true", headers=auth)
            assert other.json() == {"alerts": []}

            # a key scoped to another model sees none of this deployment's alerts or samples,
            # and the deployment is unknown to it (404, as for one that does not exist)
            services.registry.create_model("someone-else")  # a scope names an existing model
            _, token = services.registry.create_api_key(
                "scoped", "user", scope="someone-else", user="admin"
            )
            scoped = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/api/v1/alerts", headers=scoped)).json() == {"alerts": []}
            seen = await client.get("/api/v1/references", headers=scoped)
            assert seen.json() == {"references": []}
            refused = await client.post("/api/v1/references", json=body, headers=scoped)
            assert refused.status_code == 404, refused.text


def test_alerts_and_references_routes(modelyard_home: Path) -> None:
    run(scenario(modelyard_home))
