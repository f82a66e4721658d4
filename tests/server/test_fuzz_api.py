"""Schemathesis over the whole OpenAPI document, against a real server process on 127.0.0.1.

Every operation gets ``EXAMPLES`` generated requests that fit its schema and ``EXAMPLES`` that do
not (negative mode: wrong types, out-of-range numbers, missing fields), each sent once with the
admin key and once with a ``user`` key. A case fails on a 500 (or any 5xx but 503, which the
document lists for an unavailable part), a status the document does not list for the operation,
or an answer whose body or content type does not match the document. All failures are collected
and reported together, each with the request that caused it, so one run shows every bug.

The seed is random unless ``MODELYARD_FUZZ_SEED`` is set (the failure message prints the one used,
to replay it); ``MODELYARD_FUZZ_EXAMPLES`` raises the number of examples for a longer hunt, and
``MODELYARD_FUZZ_REPORT`` names a file that receives the summary and every failure.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from modelyard.runtime import free_port

from .conftest import ServerProcess, start_server

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("MODELYARD_FUZZ_EXAMPLES", "20"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class Tally:
    operations: int = 0
    cases: int = 0
    requests: int = 0
    parser_refusals: int = 0
    failures: list[str] = field(default_factory=list)


def _parser_refusal(response: Any) -> bool:
    """uvicorn's own 400 (text/plain), sent by its HTTP parser for a request it cannot frame: a
    request line over 80 KiB (negative mode repeats a list parameter a thousand times) or a
    malformed framing header (negative mode adds headers of any name and value: one run here sent
    an empty ``Content-Length`` to 38 operations). Such a request never reaches the app, whose
    document cannot describe it; the app itself always answers an error in JSON."""
    return response.status_code == 400 and response.content == b"Invalid HTTP request received."


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("fuzz")
    server = start_server(root / "home", free_port(), root / "server.log")
    try:
        yield server
    finally:
        server.stop()


def _user_key(server: ServerProcess) -> str:
    answer = httpx.post(
        server.url + "/api/v1/keys",
        json={"name": "fuzz-user", "role": "user"},
        headers={"Authorization": f"Bearer {server.admin}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token


def _run_operation(
    operation: Any,
    mode: schemathesis.GenerationMode,
    keys: dict[str, str],
    tally: Tally,
    run_seed: int,
) -> None:
    @seed(run_seed)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report, do not minimise
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case[Any]) -> None:
        tally.cases += 1
        for role, token in keys.items():
            headers = {"Authorization": f"Bearer {token}"}
            tally.requests += 1
            try:
                response = case.call(headers=headers, timeout=30)
                if _parser_refusal(response):
                    tally.parser_refusals += 1
                    continue
                case.validate_response(response, checks=CHECKS, headers=headers)
            except (Exception, BaseExceptionGroup) as exc:  # a failed check: report all at the end
                tally.failures.append(f"{operation.label} [{mode.value}, {role} key]: {exc}"[:3000])

    try:
        run()
    except Unsatisfiable:  # negative mode on an operation without parameters: nothing to negate
        if mode.is_positive:
            raise


def test_schemathesis_finds_no_server_error(fuzz_server: ServerProcess) -> None:
    keys = {"admin": fuzz_server.admin, "user": _user_key(fuzz_server)}
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    run_seed = int(os.environ.get("MODELYARD_FUZZ_SEED") or random.randrange(2**32))
    tally = Tally()
    started = time.monotonic()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the document must load whole
        operation = result.ok()
        tally.operations += 1
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            _run_operation(operation, mode, keys, tally, run_seed)
    took = time.monotonic() - started
    summary = (
        f"schemathesis: {tally.operations} operations, {tally.cases} cases, {tally.requests} "
        f"requests in {took:.1f} s, {tally.parser_refusals} refused by the HTTP parser "
        f"(seed {run_seed}, MODELYARD_FUZZ_SEED={run_seed} replays it)"
    )
    print(summary)
    report = "\n\n".join([summary, *tally.failures])  # all of them, for a long hunt
    Path(os.environ.get("MODELYARD_FUZZ_REPORT", os.devnull)).write_text(report + "\n")
    assert tally.operations >= 50, summary
    assert tally.cases > tally.operations, summary
    assert tally.parser_refusals < tally.requests // 10, summary  # the app saw nearly all
    assert not tally.failures, f"{summary}\n{len(tally.failures)} failures:\n\n" + "\n\n".join(
        tally.failures[:30]
    )
    log = fuzz_server.output
    assert "unhandled error" not in log, log[-5000:]
