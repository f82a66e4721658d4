"""Who may read and write monitors' state, alerts, reference samples and the dashboard's read
routes (``/api/v1/monitors/*``, ``/alerts``, ``/references*``, ``/overview``, ``/series``,
``/drift``, ``/predictions/{uuid}``, ``/models/{name}/tech``) on the real app in-process: the
project of the deployment's model decides; lists show only what the caller's roles reach."""

from __future__ import annotations

import time
from typing import Any

from modelyard.store import sqlaccess
from modelyard.store.base import Prediction

from ._world import World, make_world
from .conftest import Api


def _now() -> int:
    return time.time_ns() // 1_000_000


def _alerts(world: World, monitor: str, deployments: list[str]) -> None:
    """Alert rows as a monitor run would leave them."""
    store = world.api.services.store

    def insert(cur: Any) -> None:  # a write transaction: one in a read snapshot can be refused
        for dep in deployments:
            cur.execute(
                sqlaccess.sql(
                    store,
                    "INSERT INTO alerts (monitor, deployment_crn, rule, state, "
                    "first_window_start_ms, last_window_end_ms, value, breaching, "
                    "fired_ms, resolved_ms, resolved_window_start_ms) "
                    "VALUES (?, ?, 'psi.x > 0.2', 'firing', 1, 2, 0.5, '[]', 3, NULL, NULL)",
                ),
                (monitor, dep),
            )

    sqlaccess.transaction(store, insert)


def test_monitor_routes_read_for_viewers_write_for_operators(
    with_api: Any, database: dict[str, Any]
) -> None:
    async def scenario(api: Api) -> None:
        world = make_world(api)
        c = api.client
        mine, theirs = world.mine.deployment_crn, world.theirs.deployment_crn
        keys = "/api/v1/monitors/keys"
        for who, status in (("vic", 200), ("otto", 200), ("bob", 404), ("admin", 200)):
            answer = await c.get(keys, params={"deployment": mine}, headers=world.auth(who))
            assert answer.status_code == status, (who, answer.text)
        hidden = await c.get(keys, params={"deployment": mine}, headers=world.auth("bob"))
        unknown = await c.get(
            keys, params={"deployment": "crn:modelyard:deployment/x"}, headers=world.auth("bob")
        )
        assert hidden.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
            "crn:modelyard:deployment/x", mine
        )
        resolve = "/api/v1/monitors/resolve"
        answer = await c.get(resolve, params={"model": "fraud"}, headers=world.auth("vic"))
        assert answer.status_code == 404
        mark = {"deployment": mine, "labels_through_ms": 1000}
        for who, status in (("vic", 403), ("bob", 404), ("otto", 204)):
            answer = await c.put("/api/v1/monitors/watch/state", json=mark, headers=world.auth(who))
            assert answer.status_code == status, (who, answer.text)
        state = await c.get(
            "/api/v1/monitors/watch/state", params={"deployment": mine}, headers=world.auth("vic")
        )
        assert state.json()["labels_through_ms"] == 1000

        # Alerts are kept per monitor name: evaluating them needs the right on every deployment
        # the monitor already has alerts of, so no project resolves another's alerts.
        _alerts(world, "shared", [theirs])
        body = {"deployment": mine, "rules": ["psi.x > 0.2"]}
        refused = await c.post(
            "/api/v1/monitors/shared/alerts", json=body, headers=world.auth("otto")
        )
        assert refused.status_code == 404, refused.text
        still = api.services.registry.monitors.alerts(monitor="shared")
        assert [a["state"] for a in still] == ["firing"]
        answer = await c.post("/api/v1/monitors/own/alerts", json=body, headers=world.auth("otto"))
        assert answer.status_code == 200, answer.text

        # A deployment's own key: its model's deployments only.
        registry = api.services.registry
        _, replica = registry.create_api_key("replica", role="run", scope=world.mine.model_crn)
        auth = {"Authorization": f"Bearer {replica}"}
        assert (await c.get(keys, params={"deployment": mine}, headers=auth)).status_code == 200
        assert (await c.get(keys, params={"deployment": theirs}, headers=auth)).status_code == 404

    with_api(scenario, **database)


def test_alerts_and_references_show_what_the_caller_sees(
    with_api: Any, database: dict[str, Any]
) -> None:
    async def scenario(api: Api) -> None:
        world = make_world(api)
        c = api.client
        mine, theirs = world.mine.deployment_crn, world.theirs.deployment_crn
        _alerts(world, "watch-mine", [mine])
        _alerts(world, "watch-theirs", [theirs])
        for who, seen in (
            ("vic", ["watch-mine"]),
            ("bob", ["watch-theirs"]),
            ("admin", ["watch-mine", "watch-theirs"]),
        ):
            answer = await c.get("/api/v1/alerts", headers=world.auth(who))
            assert sorted(a["monitor"] for a in answer.json()["alerts"]) == seen, who
        only = await c.get(
            "/api/v1/alerts", params={"project": "alice/churn"}, headers=world.auth("admin")
        )
        assert [a["monitor"] for a in only.json()["alerts"]] == ["watch-mine"]
        hidden = await c.get(
            "/api/v1/alerts", params={"project": "alice/churn"}, headers=world.auth("bob")
        )
        assert hidden.status_code == 404

        sample = {"deployment": mine, "columns": {"x": [1, 2, 3]}}
        refused = await c.post("/api/v1/references", json=sample, headers=world.auth("otto"))
        assert refused.status_code == 403 and "needs contributor" in refused.text
        refused = await c.post("/api/v1/references", json=sample, headers=world.auth("bob"))
        assert refused.status_code == 404
        made = await c.post("/api/v1/references", json=sample, headers=world.auth("cora"))
        assert made.status_code == 201, made.text
        for who, count in (("vic", 1), ("bob", 0), ("admin", 1)):
            listed = await c.get("/api/v1/references", headers=world.auth(who))
            assert len(listed.json()["references"]) == count, who
        data = "/api/v1/references/data"
        answer = await c.get(data, params={"deployment": mine}, headers=world.auth("vic"))
        assert answer.status_code == 200 and answer.json()["columns"]["x"] == [1, 2, 3]
        answer = await c.get(data, params={"deployment": mine}, headers=world.auth("bob"))
        assert answer.status_code == 404

    with_api(scenario, **database)


def test_dashboard_reads_follow_the_project(with_api: Any, database: dict[str, Any]) -> None:
    async def scenario(api: Api) -> None:
        world = make_world(api)
        c = api.client
        now = _now()
        api.services.store.write_predictions(
            [Prediction("p-mine", world.mine, now - 5, now, {"score": 1.0})]
        )
        for who, models in (("vic", ["churn"]), ("bob", ["fraud"]), ("admin", ["churn", "fraud"])):
            answer = await c.get("/api/v1/overview", headers=world.auth(who))
            assert sorted(m["name"] for m in answer.json()["models"]) == models, who
        only = await c.get(
            "/api/v1/overview", params={"project": "bob/fraud"}, headers=world.auth("admin")
        )
        assert [m["name"] for m in only.json()["models"]] == ["fraud"]
        hidden = await c.get(
            "/api/v1/overview", params={"project": "bob/fraud"}, headers=world.auth("vic")
        )
        assert hidden.status_code == 404

        mine = {"deployment": world.mine.deployment_crn}
        for path, params in (
            ("/api/v1/models/churn/tech", {}),
            ("/api/v1/models/churn/predictions", {}),
            ("/api/v1/predictions/p-mine", {}),
            ("/api/v1/series", {**mine, "metric": "score"}),
            ("/api/v1/series/keys", mine),
            ("/api/v1/drift", mine),
            ("/api/v1/drift/groups", mine),
        ):
            seen = await c.get(path, params=params, headers=world.auth("vic"))
            assert seen.status_code == 200, (path, seen.text)
            hidden = await c.get(path, params=params, headers=world.auth("bob"))
            assert hidden.status_code == 404, (path, hidden.text)
        hidden = await c.get("/api/v1/predictions/p-mine", headers=world.auth("bob"))
        unknown = await c.get("/api/v1/predictions/p-none", headers=world.auth("bob"))
        assert hidden.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
            "p-none", "p-mine"
        )

    with_api(scenario, **database)
