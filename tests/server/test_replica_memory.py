"""A replica's memory limit holds while a function allocates far past it: the kernel refuses the
allocation (``RLIMIT_DATA``, set by the replica once it is up), the call answers ``MemoryError``
and resident memory never goes far past the limit. Polling alone let a 2 GB allocation under a
256 MiB limit reach 776 MB before the kill."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from .conftest import Api

MIB = 1024 * 1024
LIMIT_MIB = 256

HOG = """
import numpy


def predict(args):
    size = args["mb"] * 1024 * 1024
    if args.get("numpy"):
        return {"length": int(numpy.ones(size, dtype=numpy.uint8).sum())}
    data = bytearray(size)  # zero-filled: every page is touched
    return {"length": len(data)}
"""


def _replica_processes() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):  # gone (or a zombie) meanwhile
            if "modelyard.serving.replica" in " ".join(child.cmdline()):
                found.append(child)
    return found


@pytest.mark.slow
def test_a_function_allocating_past_the_limit_gets_memory_error(
    with_api: Any, tmp_path: Path
) -> None:
    project = tmp_path / "hog"
    project.mkdir()
    (project / "predict.py").write_text(HOG)
    peak = 0
    sampling = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not sampling.is_set():
            for proc in _replica_processes():
                with contextlib.suppress(psutil.Error):  # gone meanwhile
                    peak = max(peak, proc.memory_info().rss)
            time.sleep(0.005)

    async def scenario(api: Api) -> None:
        c, h = api.client, api.auth()
        deployed = await c.post(
            "/api/v1/models/hog/deploy",
            json={"project": str(project), "memory": f"{LIMIT_MIB}M"},
            headers=h,
        )
        assert deployed.status_code == 201, deployed.text
        [replica] = api.services.runtime.replicas()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            answer = await c.post("/api/v1/models/hog/predict", json={"mb": 2048}, headers=h)
            with_numpy = await c.post(
                "/api/v1/models/hog/predict", json={"mb": 2048, "numpy": True}, headers=h
            )
        finally:
            sampling.set()
            sampler.join(5)
        print(f"peak resident memory {peak / MIB:.0f} MiB under a {LIMIT_MIB} MiB limit")
        assert "MemoryError" in answer.text, answer.text
        assert "MemoryError" in with_numpy.text, with_numpy.text
        assert peak < (LIMIT_MIB + 32) * MIB, f"resident memory reached {peak / MIB:.0f} MiB"
        # The replica was not killed: same process, and it serves an allocation under the limit.
        for args in ({"mb": 64}, {"mb": 64, "numpy": True}):
            small = await c.post("/api/v1/models/hog/predict", json=args, headers=h)
            assert small.status_code == 200, small.text
            assert str(64 * MIB) in small.text
        [after] = api.services.runtime.replicas()
        assert after.pid == replica.pid and after.restarts == replica.restarts
        log = "\n".join(api.services.controller.logs("hog", None, 50).get(replica.replica_id, []))
        assert "enforced by the kernel: RLIMIT_DATA" in log, log

    with_api(scenario)
