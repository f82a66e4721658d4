"""Answered means kept: SIGKILL the server in the middle of prediction traffic, start it again on
the same home, and every prediction that was answered 200 is in the store exactly once.

The server is a real ``modelyard server`` process (temp home, loopback), its model a real replica
deployed over the REST API; 8 asyncio clients call ``POST /api/v1/models/{name}/predict`` without
pauses, so the SIGKILL lands while requests are in flight (never in a quiet moment between them)
and, with the writer's flush interval at 1 s, while answered records still wait in its queue. The
records come back through the journal (``<home>/journal``), which the next start replays before
it serves. Requests cut off by the kill got no answer: the caller was promised nothing, and they
may or may not be stored.

Marked ``slow``: a deploy and two server starts, about 15 s. Run by hand in a loop for the proof
(``for i in $(seq 30); do pytest -q tests/reliability/test_sigkill_server.py; done``).
"""

from __future__ import annotations

import asyncio
import random
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _async import run
from _server import ServerProcess
from modelyard.store.base import Query, RecordKind
from modelyard.store.sqlite import SQLiteStore

pytestmark = pytest.mark.slow

MODEL = "kept"
PREDICT = """
    import modelyard


    @modelyard.model_metrics
    def predict(args):
        modelyard.track_metric("x", args["x"])
        return {"double": args["x"] * 2}
"""


class Server(ServerProcess):
    """``modelyard server`` on a loopback port and a home; ``kill`` is SIGKILL, ``stop`` SIGTERM.

    Records wait up to 1 s in the writer's queue (default 200 ms): a kill at any moment finds
    answered records there, which only the journal keeps."""

    def __init__(self, home: Path) -> None:
        super().__init__(home, settings={"MODELYARD_FLUSH_INTERVAL": "1s"})

    def deploy(self, folder: Path) -> dict[str, Any]:
        body = {"project": str(folder), "example": {"x": 1}, "replicas": 1}
        answer = httpx.post(
            f"{self.base}/api/v1/models/{MODEL}/deploy", json=body, headers=self.auth, timeout=180
        )
        assert answer.status_code == 201, answer.text
        outcome: dict[str, Any] = answer.json()
        return outcome


@pytest.fixture
def server(modelyard_home: Path) -> Iterator[Server]:
    started = Server(modelyard_home).start()
    try:
        yield started
    finally:
        started.stop()


async def drive(server: Server, clients: int, least: int, kill: bool) -> list[str]:
    """``clients`` callers without pauses; after ``least`` answers of 200 (and a random moment
    more, when ``kill``) the server is SIGKILLed. Returns the uuids answered 200."""
    answered: list[str] = []
    stop = asyncio.Event()

    async def caller(index: int, client: httpx.AsyncClient) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                answer = await client.post(
                    f"/api/v1/models/{MODEL}/predict", json={"x": index * 1_000_000 + n}
                )
            except httpx.TransportError:
                return  # cut off by the kill: no answer, nothing promised
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["success"] is True and body["response"]["prediction"]["double"] % 2 == 0
            answered.append(body["uuid"])

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(
        base_url=server.base, headers=server.auth, timeout=30, limits=limits
    ) as client:
        tasks = [asyncio.ensure_future(caller(i, client)) for i in range(clients)]
        while len(answered) < least:
            await asyncio.sleep(0.005)
            assert not all(t.done() for t in tasks), "every caller stopped"
        if kill:
            await asyncio.sleep(random.uniform(0.0, 0.4))  # a random moment, under load
            await asyncio.to_thread(server.kill)
        stop.set()
        await asyncio.gather(*tasks)
    return answered


def stored(home: Path, model_crn: str) -> Counter[str]:
    """How many records each prediction uuid of the model has in the home's store."""
    kinds = frozenset({RecordKind.PREDICTION})
    counts: Counter[str] = Counter()
    with SQLiteStore(home / "modelyard.db") as store:
        for batch in store.scan(Query(model_crn=model_crn, kinds=kinds)):
            counts.update(u for u in batch.uuid if u is not None)
    return counts


def test_sigkill_under_load_loses_and_duplicates_no_answered_prediction(
    server: Server, tmp_path: Path
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "predict.py").write_text(textwrap.dedent(PREDICT))
    model_crn = server.deploy(folder)["model"]["crn"]
    before = run(drive(server, clients=8, least=300, kill=True), timeout_s=180)
    assert len(before) >= 300
    server.start()  # same home: the journal is replayed before anything is served
    after = run(drive(server, clients=8, least=50, kill=False), timeout_s=180)
    server.stop()  # a clean stop: the writer flushes, the journal empties
    counts = stored(server.home, model_crn)
    answered = before + after
    assert len(set(answered)) == len(answered)
    lost = [u for u in answered if counts[u] == 0]
    duplicated = [u for u, n in counts.items() if n > 1]
    assert lost == [] and duplicated == [], (len(lost), len(duplicated), len(answered))
    assert list((server.home / "journal").glob("*.journal")) == []
