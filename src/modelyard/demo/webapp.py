"""The simulated web app: it asks the deployed model about its customers through ``POST /model``.

Like any client of the reference API it sends the model's access key in the body and its own API
key as a bearer token, keeps the uuid each answer carries next to the customer id in its own CRM
database, and measures the round trip. Calls go out on a few threads (a web app serves several
users at once), over keep-alive connections to 127.0.0.1 only.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pandas as pd

from modelyard.clock import now_ms
from modelyard.demo.crm import Crm
from modelyard.errors import ModelyardError

__all__ = ["WebApp"]


class WebApp:
    def __init__(
        self, url: str, access_key: str, api_key: str, crm: Crm, *, threads: int = 4
    ) -> None:
        self.url = url
        self._access_key = access_key
        self._client = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=30.0,
            limits=httpx.Limits(max_connections=threads, max_keepalive_connections=threads),
        )
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="webapp")
        self._crm = crm
        self.calls = 0
        self.replicas: Counter[str] = Counter()  # answers per replica (ReplicaID of each)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def _call(self, customer: dict[str, Any]) -> tuple[str, int, float, float, str]:
        started = time.perf_counter()
        at_ms = now_ms()
        answer = self._client.post(
            "/model", json={"accessKey": self._access_key, "request": customer}
        )
        latency_ms = (time.perf_counter() - started) * 1000.0
        body = answer.json()
        if answer.status_code != 200 or not body.get("success"):
            raise ModelyardError(
                f"POST {self.url}/model answered {answer.status_code}: {body!r:.300}; "
                "the demo expects every call to succeed"
            )
        prediction = body["response"]["prediction"]
        probability = float(prediction["churn_probability"])
        return body["uuid"], at_ms, probability, latency_ms, str(body.get("ReplicaID", ""))

    def score(self, customers: pd.DataFrame, customer_ids: list[str]) -> list[str]:
        """Call the model once per customer; store each uuid with its customer id; the uuids."""
        records = customers.to_dict("records")
        answers = list(self._pool.map(self._call, [_plain(r) for r in records]))
        self._crm.record_predictions(
            (uuid, cid, at_ms, probability, latency)
            for (uuid, at_ms, probability, latency, _), cid in zip(
                answers, customer_ids, strict=True
            )
        )
        self.calls += len(answers)
        self.replicas.update(a[4] for a in answers)
        return [a[0] for a in answers]


def _plain(record: dict[Any, Any]) -> dict[str, Any]:
    """numpy scalars to Python ones, so the body is plain JSON."""
    return {str(k): (v.item() if hasattr(v, "item") else v) for k, v in record.items()}
