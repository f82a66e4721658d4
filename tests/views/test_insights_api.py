"""The read routes the dashboard draws from (``/api/v1/overview``, ``tech``, ``series``,
``predictions``, ``drift``), over the real app and a real SQLite store filled directly."""

from __future__ import annotations

import re
import time
from typing import Any

from modelyard.store.base import Identity, Prediction, RollupPolicy, Tier

from .conftest import Ui

MIN = 60_000
HOUR = 60 * MIN


def _now() -> int:
    return time.time_ns() // 1_000_000


def _identity(ui: Ui, name: str = "churn") -> Identity:
    model, _ = ui.services.registry.create_model(name)
    ident = Identity(
        model.crn, f"crn:modelyard:build/b-{name}", f"crn:modelyard:deployment/d-{name}"
    )
    ui.services.store.register_identity(ident)
    return ident


def _auth(ui: Ui) -> dict[str, str]:
    return {"Authorization": f"Bearer {ui.admin}"}


def test_tech_series_keeps_or_merges_intervals(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        ident = _identity(ui)
        end = _now()
        start = end - 600 * 10_000
        for i in range(600):  # ten-second intervals, 10 requests, 1 failure each
            s = start + i * 10_000
            ui.services.store.add_aggregate(
                ident.deployment_crn,
                s,
                s + 10_000,
                {
                    "tech.requests": 10,
                    "tech.failures": 1,
                    "tech.rps": 1.0,
                    "tech.latency_p50_ms": 2.0,
                    "tech.latency_p95_ms": 4.0,
                    "tech.latency_p99_ms": float(i % 2 + 5),
                },
            )
        ui.services.store.add_aggregate(ident.deployment_crn, start, end, {"roc_auc": 0.9})
        q = {"start": start, "end": end}
        few = await ui.client.get(
            "/api/v1/models/churn/tech", params={**q, "points": 1000}, headers=_auth(ui)
        )
        body = few.json()
        assert few.status_code == 200 and not body["merged"] and body["intervals"] == 600
        assert body["resolution_ms"] == 10_000 and body["series"]["rps"][0] == 1.0
        merged = await ui.client.get(
            "/api/v1/models/churn/tech", params={**q, "points": 60}, headers=_auth(ui)
        )
        m = merged.json()
        assert m["merged"] and m["resolution_ms"] == 100_000
        assert sum(m["series"]["requests"]) == 6000 and sum(m["series"]["failures"]) == 600
        assert all(abs(r - 1.0) < 1e-9 for r in m["series"]["rps"])  # 100 per 100 s
        assert all(abs(p - 5.5) < 1e-9 for p in m["series"]["p99_ms"][1:-1])  # weighted mean
        bad = await ui.client.get(
            "/api/v1/models/churn/tech", params={"start": end, "end": start}, headers=_auth(ui)
        )
        assert bad.status_code == 400 and "after" in bad.json()["error"]["message"]

    with_ui(scenario)


def test_series_has_raw_rollups_and_aggregates_and_names_the_resolution(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        ident = _identity(ui)
        store = ui.services.store
        now = _now()
        old = now - 40 * 24 * HOUR  # past the raw horizon: rolled up into hour buckets
        store.write_predictions(
            [
                Prediction(f"old-{i}", ident, old + i * 1000, old + i * 1000, {"score": i})
                for i in range(100)
            ]
            + [
                Prediction(f"new-{i}", ident, now - i * 1000, now - i * 1000, {"score": 0.5})
                for i in range(30)
            ]
        )
        store.rollup(
            RollupPolicy(raw_horizon_ms=30 * 24 * HOUR, tiers=(Tier(HOUR, None),)), now_ms=now
        )
        store.add_aggregate(ident.deployment_crn, now - HOUR, now, {"score": 0.7})
        params = {"deployment": ident.deployment_crn, "metric": "score", "start": old - HOUR}
        answer = await ui.client.get("/api/v1/series", params=params, headers=_auth(ui))
        body = answer.json()
        assert answer.status_code == 200, body
        assert len(body["raw"]["t"]) == 30 and not body["raw"]["truncated"]
        assert sum(body["rollup"]["count"]) == 100 and set(body["rollup"]["tier_ms"]) == {HOUR}
        assert abs(sum(body["rollup"]["mean"]) / len(body["rollup"]["mean"]) - 49.5) < 30
        assert body["aggregate"]["value"] == [0.7]
        assert "rollups of 1 h" in body["resolution"] and "raw" in body["resolution"]
        keys = await ui.client.get(
            "/api/v1/series/keys",
            params={"deployment": ident.deployment_crn, "start": old - HOUR},
            headers=_auth(ui),
        )
        assert keys.json()["keys"] == [
            {"key": "score", "kinds": ["aggregate", "prediction", "rollup"]}
        ]
        unknown = await ui.client.get(
            "/api/v1/series",
            params={"deployment": "crn:modelyard:deployment/nope", "metric": "score"},
            headers=_auth(ui),
        )
        assert unknown.status_code == 404

    with_ui(scenario)


def test_series_samples_raw_evenly_beyond_its_limit(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        ident = _identity(ui)
        end = _now()
        start = end - HOUR
        ui.services.store.write_predictions(  # a busy hour: 20,000 predictions, 180 ms apart
            [
                Prediction(f"p{i}", ident, start + i * 180, start + i * 180, {"v": i})
                for i in range(20_000)
            ]
        )
        answer = await ui.client.get(
            "/api/v1/series",
            params={"deployment": ident.deployment_crn, "metric": "v", "start": start, "end": end},
            headers=_auth(ui),
        )
        body = answer.json()
        raw = body["raw"]
        assert raw["sampled"] and 4_000 <= len(raw["t"]) <= 5_000
        assert raw["t"] == sorted(raw["t"])
        # Drawn across the whole hour, not only its first records.
        assert raw["t"][0] - start < HOUR // 100 and end - raw["t"][-1] < HOUR // 50
        assert "raw, sampled: the first 20 predictions of each 14.4 s" in body["resolution"]

    with_ui(scenario)


def test_series_reads_one_tier_per_span_and_skips_rollups_without_the_key(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        ident = _identity(ui)
        store = ui.services.store
        now = _now()
        old = now - 60 * 24 * HOUR
        # 40 days of traffic from 60 days ago, one prediction every 10 minutes: days 30-35 of age
        # rolled into minute buckets, days 35-60 into hour buckets (the default tiers).
        store.write_predictions(
            [
                Prediction(f"o{i}", ident, old + i * 10 * MIN, old + i * 10 * MIN, {"score": 1.0})
                for i in range(40 * 24 * 6)
            ]
        )
        store.rollup(RollupPolicy(raw_horizon_ms=30 * 24 * HOUR), now_ms=now)
        store.add_aggregate(ident.deployment_crn, now - HOUR, now, {"roc_auc": 0.8})
        params = {"deployment": ident.deployment_crn, "start": old, "end": now}
        score = await ui.client.get(
            "/api/v1/series", params={**params, "metric": "score"}, headers=_auth(ui)
        )
        body = score.json()
        rolled = body["rollup"]
        assert set(rolled["tier_ms"]) == {MIN, HOUR}
        assert rolled["tier_ms"].count(MIN) <= 250 < 5 * 24 * 6  # minute tier sampled
        assert 24 * 25 - 2 <= rolled["tier_ms"].count(HOUR) <= 24 * 25  # whole (600 <= 1,500)
        assert len(rolled["t"]) <= 1_500 and "1 min (sampled: one in each" in body["resolution"]
        auc = await ui.client.get(
            "/api/v1/series", params={**params, "metric": "roc_auc"}, headers=_auth(ui)
        )
        assert auc.json()["rollup"]["t"] == [] and auc.json()["aggregate"]["value"] == [0.8]
        assert auc.json()["resolution"] == "aggregates (one point per window)"

    with_ui(scenario)


def test_recent_predictions_and_one_by_uuid_with_its_delayed_history(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        ident = _identity(ui)
        store = ui.services.store
        now = _now()
        store.write_predictions(
            [
                Prediction(
                    f"u{i:03d}",
                    ident,
                    now - 3 * HOUR + i * MIN,
                    now - 3 * HOUR + i * MIN + 5,
                    {"x": i},
                )
                for i in range(150)
            ]
        )
        store.add_delayed("u149", {"label": 0}, "crm", tracked_ms=now - 1000)
        store.add_delayed("u149", {"label": 1}, "audit", tracked_ms=now)
        recent = await ui.client.get(
            "/api/v1/models/churn/predictions", params={"limit": 5}, headers=_auth(ui)
        )
        uuids = [p["predictionUuid"] for p in recent.json()["predictions"]]
        assert uuids == ["u149", "u148", "u147", "u146", "u145"]  # newest first
        one = await ui.client.get("/api/v1/predictions/u149", headers=_auth(ui))
        body = one.json()
        assert body["prediction"]["metrics"] == {"x": 149, "label": 1}
        assert [(d["value"], d["source"]) for d in body["delayed"]] == [(0, "crm"), (1, "audit")]
        assert body["delayed"][1]["tracked_ms"] == now
        missing = await ui.client.get("/api/v1/predictions/nope", headers=_auth(ui))
        assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]

    with_ui(scenario)


def test_recent_predictions_read_newest_first_whatever_the_traffic(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        ident = _identity(ui)
        store = ui.services.store
        now = _now()
        store.write_predictions(  # a quiet spell three days ago, then a busy last minute
            [Prediction(f"q{i}", ident, now - 3 * 24 * HOUR + i, now, {"x": i}) for i in range(3)]
        )
        reads: list[Any] = []
        original = store.read

        def counted(query: Any) -> Any:  # the real read, counted
            reads.append(query)
            return original(query)

        store.read = counted  # type: ignore[method-assign]
        try:
            quiet = await ui.client.get(
                "/api/v1/models/churn/predictions", params={"limit": 5}, headers=_auth(ui)
            )
            assert [p["predictionUuid"] for p in quiet.json()["predictions"]] == ["q2", "q1", "q0"]
            store.write_predictions(
                [Prediction(f"b{i:05d}", ident, now - 30_000 + i, now, {}) for i in range(6_000)]
            )
            busy = await ui.client.get(
                "/api/v1/models/churn/predictions", params={"limit": 3}, headers=_auth(ui)
            )
        finally:
            store.read = original  # type: ignore[method-assign]
        uuids = [p["predictionUuid"] for p in busy.json()["predictions"]]
        assert uuids == ["b05999", "b05998", "b05997"]
        assert reads == []  # no forward pages through the busy minute

    with_ui(scenario)


def test_overview_and_drift_from_monitor_records(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        ident = _identity(ui)
        store = ui.services.store
        now = _now()
        for w in range(3):
            start = now - (3 - w) * HOUR
            store.add_aggregate(
                ident.deployment_crn,
                start,
                start + HOUR,
                {
                    "roc_auc": 0.8 + w / 100,
                    "psi.tenure": 0.1 * w,
                    "psi.plan": 0.05,
                    "drift.flagged": int(w == 2),
                    "drift.flagged_features": ["tenure"] if w == 2 else [],
                },
            )
        overview = await ui.client.get("/api/v1/overview", headers=_auth(ui))
        (row,) = overview.json()["models"]
        # no active deployment in the registry: the row says so and reads nothing further
        assert row["name"] == "churn" and row["state"] == "not serving" and row["rps"] is None
        matrix = await ui.client.get(
            "/api/v1/drift", params={"deployment": ident.deployment_crn}, headers=_auth(ui)
        )
        m = matrix.json()
        assert m["features"] == ["plan", "tenure"] and len(m["windows"]) == 3
        assert m["values"][1] == [0.0, 0.1, 0.2] and m["flagged"][1] == [False, False, True]
        wrong = await ui.client.get(
            "/api/v1/drift",
            params={"deployment": ident.deployment_crn, "method": "magic"},
            headers=_auth(ui),
        )
        assert wrong.status_code == 400 and "psi" in wrong.json()["error"]["message"]
        no_ref = await ui.client.get(
            "/api/v1/drift/distributions",
            params={
                "deployment": ident.deployment_crn,
                "feature": "tenure",
                "start": now - HOUR,
                "end": now,
            },
            headers=_auth(ui),
        )
        assert no_ref.status_code == 404 and "training" in no_ref.json()["error"]["message"]

    with_ui(scenario)


def test_a_run_key_may_not_read_the_dashboard_routes(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        _, run_token = ui.services.registry.create_api_key("job", role="run")
        for path in ("/api/v1/overview", "/api/v1/predictions/x", "/api/v1/models/m/tech"):
            answer = await ui.client.get(path, headers={"Authorization": f"Bearer {run_token}"})
            assert answer.status_code == 403, path

    with_ui(scenario)


def test_a_drift_cell_has_both_distributions_numeric_and_categorical(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        import pandas as pd

        from modelyard.monitors import upload_reference

        ident = _identity(ui)
        store = ui.services.store
        now = _now()
        start = now - HOUR
        store.write_predictions(
            [
                Prediction(
                    f"w{i}",
                    ident,
                    start + i,
                    start + i,
                    {"tenure": float(i), "plan": "pro" if i % 4 else "basic"},
                )
                for i in range(100)
            ]
        )
        reference = pd.DataFrame(
            {
                "tenure": [float(50 + i % 50) for i in range(200)],
                "plan": ["basic"] * 150 + ["pro"] * 50,
            }
        )
        upload_reference(reference, ident.deployment_crn, "training", store=store)
        params = {"deployment": ident.deployment_crn, "start": start, "end": start + HOUR}
        numeric = await ui.client.get(
            "/api/v1/drift/distributions", params={**params, "feature": "tenure"}, headers=_auth(ui)
        )
        n = numeric.json()
        assert numeric.status_code == 200, n
        assert n["kind"] == "numeric" and n["current"]["count"] == 100 and n["current"]["exact"]
        assert abs(sum(n["current"]["shares"]) - 1) < 1e-9
        assert abs(sum(n["reference"]["shares"]) - 1) < 1e-9
        assert n["x_range"] == [0.0, 99.0]  # the window starts at 0, the reference ends at 99
        categorical = await ui.client.get(
            "/api/v1/drift/distributions", params={**params, "feature": "plan"}, headers=_auth(ui)
        )
        c = categorical.json()
        assert c["kind"] == "categorical" and not c["current"]["sampled"]
        assert c["reference"] == {"categories": ["basic", "pro"], "shares": [0.75, 0.25]}
        assert c["current"]["categories"] == ["basic", "pro"]
        assert c["current"]["shares"] == [0.25, 0.75]
        unknown = await ui.client.get(
            "/api/v1/drift/distributions", params={**params, "feature": "nope"}, headers=_auth(ui)
        )
        assert unknown.status_code == 400 and "tenure" in unknown.json()["error"]["message"]

    with_ui(scenario)


def test_a_key_scoped_to_another_model_finds_nothing_else(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        ident = _identity(ui)
        other = _identity(ui, "other")
        now = _now()
        ui.services.store.write_predictions([Prediction("mine", ident, now, now, {"v": 1})])
        _, token = ui.services.registry.create_api_key(
            "scoped", role="user", scope=other.model_crn, user="admin"
        )
        scoped = {"Authorization": f"Bearer {token}"}
        mine = {"deployment": ident.deployment_crn}
        for path, params in (  # every insights route that names a model or deployment
            ("/api/v1/models/churn/tech", {}),
            ("/api/v1/models/churn/builds/b-churn/log", {}),
            ("/api/v1/models/churn/predictions", {}),
            ("/api/v1/predictions/mine", {}),
            ("/api/v1/series", {**mine, "metric": "v"}),
            ("/api/v1/series/keys", mine),
            ("/api/v1/drift", mine),
            ("/api/v1/drift/distributions", {**mine, "feature": "v", "start": 0, "end": now}),
        ):
            # Another model is unknown to the key: the answer of a name that does not exist.
            answer = await ui.client.get(path, params=params, headers=scoped)
            assert answer.status_code == 404, (path, answer.text)
            assert "is not known, or not" in answer.json()["error"]["message"], path
        own = await ui.client.get(
            "/api/v1/series",
            params={"deployment": other.deployment_crn, "metric": "v"},
            headers=scoped,
        )
        assert own.status_code == 200
        listed = await ui.client.get("/api/v1/overview", headers=scoped)
        assert [m["name"] for m in listed.json()["models"]] == ["other"]
        everyone = await ui.client.get("/api/v1/overview", headers=_auth(ui))
        assert sorted(m["name"] for m in everyone.json()["models"]) == ["churn", "other"]
        # The dashboard's pages follow the same rule for a session of that key.
        await ui.sign_in(token)
        page = await ui.client.get("/ui/")
        assert page.status_code == 200
        # The overview is drawn on the server: one row per model the session may see.
        rows = re.findall(
            r'<tr data-state="[^"]+">\s*<th scope="row"><a href="/ui/models/([^"]+)"', page.text
        )
        assert rows == ["other"], page.text
        refused = await ui.client.get("/ui/models/churn")
        assert refused.status_code == 404, refused.text
        # A page's scripts call the API with the session cookie: the same refusal.
        api = await ui.client.get("/api/v1/series", params={**mine, "metric": "v"})
        assert api.status_code == 404

    with_ui(scenario)


def test_the_alerts_page_filters_as_the_api_does(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        from modelyard.store import sqlaccess

        mine = _identity(ui, "mine")
        theirs = _identity(ui, "theirs")
        store = ui.services.store

        def insert(cur: Any) -> None:  # alert rows as a monitor run would leave them
            for monitor, dep in (
                ("watch-mine", mine.deployment_crn),
                ("watch-theirs", theirs.deployment_crn),
                ("watch-gone", "crn:modelyard:deployment/gone"),  # unknown to the store
            ):
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

        sqlaccess.transaction(store, insert)  # a write transaction, not a read snapshot
        _, token = ui.services.registry.create_api_key(
            "scoped", role="user", scope=mine.model_crn, user="admin"
        )
        api = await ui.client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {token}"})
        assert [a["monitor"] for a in api.json()["alerts"]] == ["watch-mine"]
        await ui.sign_in(token)
        page = await ui.client.get("/ui/alerts")
        assert page.status_code == 200, page.text  # an unknown deployment does not break it
        assert "watch-mine" in page.text
        assert "watch-theirs" not in page.text and "watch-gone" not in page.text

    with_ui(scenario)
