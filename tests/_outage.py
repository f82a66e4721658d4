"""A real ``modelyard server`` on a given database, and clients calling its model under load:
for the tests that take the database away while predictions flow (``test_postgres_outage``).

``Server`` starts ``python -m modelyard.server`` on a free loopback port with its home and
``MODELYARD_DATABASE_URL``; ``deploy`` deploys a one-replica model and keeps its access key.
``under_load(server, scenario)`` runs an async ``scenario`` while ``Load``'s clients call the
model (half through the native route, half through ``POST /model``) and returns every request's
``Outcome``; ``stored_uuids`` counts the model's prediction records in the store.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _async import run
from _server import ServerProcess
from modelyard.store.base import Query, RecordKind
from modelyard.store.postgres import PostgresStore

__all__ = [
    "MODEL",
    "PREDICT",
    "Load",
    "Outcome",
    "Server",
    "stored_uuids",
    "under_load",
    "wait_health",
]

MODEL = "churn"
PREDICT = """
    import modelyard


    @modelyard.model_metrics
    def predict(args):
        modelyard.track_metric("x", args["x"])
        return {"churn": args["x"] % 2 == 0}
"""


class Server(ServerProcess):
    """``modelyard server`` on a free loopback port, its store on the cluster."""

    def __init__(self, home: Path, database_url: str, **settings: str) -> None:
        super().__init__(home, database_url, settings)
        self.access_key = ""  # the model's, once deployed

    def deploy(self, folder: Path) -> str:
        """Deploy ``folder`` as MODEL (one replica); returns the model's CRN."""
        body = {"project": str(folder), "example": {"x": 1}, "replicas": 1}
        answer = httpx.post(
            f"{self.base}/api/v1/models/{MODEL}/deploy", json=body, headers=self.auth, timeout=180
        )
        assert answer.status_code == 201, answer.text
        model = httpx.get(f"{self.base}/api/v1/models/{MODEL}", headers=self.auth, timeout=10)
        crn: str = model.json()["model"]["crn"]
        rotated = httpx.post(
            f"{self.base}/api/v1/models/{MODEL}/rotate-key", headers=self.auth, timeout=30
        )
        self.access_key = rotated.json()["access_key"]
        return crn


Outcome = tuple[float, int | None, str | None, str]  # sent, status, uuid, body


@dataclass
class Load:
    """``workers`` clients calling the model in a loop until ``stop``; every outcome kept."""

    server: Server
    workers: int = 4
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = asyncio.Event()
        self._client = httpx.AsyncClient(
            base_url=self.server.base, headers=self.server.auth, timeout=30
        )
        self._tasks = [asyncio.ensure_future(self._worker(i)) for i in range(self.workers)]

    async def _worker(self, index: int) -> None:
        """Half the clients call the native route (model by name), half ``POST /model`` (model
        by access key): the three cached lookups of the predict path, API key included."""
        n = 0
        while not self._stop.is_set():
            n += 1
            sent = time.monotonic()
            x = index * 1_000_000 + n
            try:
                if index % 2:
                    body = {"accessKey": self.server.access_key, "request": {"x": x}}
                    answer = await self._client.post("/model", json=body)
                else:
                    answer = await self._client.post(
                        f"/api/v1/models/{MODEL}/predict", json={"x": x}
                    )
            except httpx.TransportError as exc:
                self.outcomes.append((sent, None, None, repr(exc)))
            else:
                uuid = answer.json().get("uuid") if answer.status_code == 200 else None
                self.outcomes.append((sent, answer.status_code, uuid, answer.text[:2000]))
            await asyncio.sleep(0.002)

    async def answered_after(self, t: float, count: int, timeout_s: float = 30) -> None:
        """Until ``count`` requests sent after ``t`` were answered 200."""
        deadline = time.monotonic() + timeout_s
        while sum(1 for o in self.outcomes if o[0] > t and o[1] == 200) < count:
            if time.monotonic() > deadline:
                failed = [o for o in self.outcomes if o[1] != 200]
                raise AssertionError(
                    f"fewer than {count} answers of 200 within {timeout_s} s; "
                    f"{len(failed)} failed, the last: {failed[-1:]}"
                )
            await asyncio.sleep(0.02)

    async def stop(self) -> list[Outcome]:
        """Stop the clients (once; again is harmless) and return every outcome."""
        if not self._stop.is_set():
            self._stop.set()
            await asyncio.gather(*self._tasks)
            await self._client.aclose()
        return self.outcomes


def under_load(server: Server, scenario: Callable[[Load], Awaitable[None]]) -> list[Outcome]:
    """Run ``scenario`` while clients call the model; every request's outcome."""

    async def main() -> list[Outcome]:
        load = Load(server)
        try:
            await scenario(load)
        finally:
            await load.stop()
        return load.outcomes

    return run(main())


def stored_uuids(database_url: str, model_crn: str) -> Counter[str]:
    """How many times each prediction uuid of the model is in the store."""
    kinds = frozenset({RecordKind.PREDICTION})
    counts: Counter[str] = Counter()
    with PostgresStore(database_url) as store:
        for batch in store.scan(Query(model_crn=model_crn, kinds=kinds)):
            counts.update(uuid for uuid in batch.uuid if uuid is not None)
    return counts


async def wait_health(
    server: Server, store: str, timeout_s: float = 20, drained: bool = True
) -> dict[str, Any]:
    """Until ``/healthz`` says the store is ``store`` (and, once ``ok`` with ``drained``, nothing
    waits: pass ``drained=False`` while load goes on, when new records are always pending)."""
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = await asyncio.to_thread(server.health)
        settled = store != "ok" or not drained or body["pending_records"] == 0
        if body["store"] == store and settled:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"/healthz did not say store={store} within {timeout_s} s: {body}")
