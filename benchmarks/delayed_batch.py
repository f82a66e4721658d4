"""Delayed metrics for N predictions (default 100,000) through the SDK's remote backend and a real
server process (SQLite store, loopback): the batch form of ``track_delayed_metrics`` (a list of
(uuid, metrics) pairs, sent in chunks that fit the body limit) against the single form, one
request per uuid (``--single`` uuids, default 2,000, extrapolated to N), in the same run.

    .venv/bin/python benchmarks/delayed_batch.py [--n 100000] [--single 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

T0 = 1_780_000_000_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=2000)
    args = parser.parse_args()
    from modelyard.runtime import free_port
    from modelyard.store import Identity, Prediction, open_store

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        who = Identity(
            "crn:modelyard:model/m", "crn:modelyard:build/b", "crn:modelyard:deployment/d"
        )
        uuids = [str(uuid.uuid4()) for _ in range(args.n + args.single)]
        with open_store(f"sqlite:///{home / 'modelyard.db'}") as store:
            for i in range(0, len(uuids), 50_000):
                store.write_predictions(
                    [
                        Prediction(u, who, T0 + j, T0 + j + 1, {"p": 0.5})
                        for j, u in enumerate(uuids[i : i + 50_000], start=i)
                    ]
                )
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
        env["MODELYARD_HOME"] = str(home)
        with open(home / "server.log", "ab") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "modelyard.server", "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.1)
            os.environ["MODELYARD_URL"] = url
            os.environ["MODELYARD_API_KEY"] = (home / "admin.key").read_text().strip()
            import modelyard

            items = [(u, {"truth": i % 2}) for i, u in enumerate(uuids[: args.n])]
            start = time.perf_counter()
            result = modelyard.track_delayed_metrics(items)
            batch_s = time.perf_counter() - start
            assert result.stored == args.n, result
            start = time.perf_counter()
            for i, u in enumerate(uuids[args.n :]):
                modelyard.track_delayed_metrics({"truth": i % 2}, u)
            single_s = (time.perf_counter() - start) / args.single * args.n
        finally:
            server.terminate()
            server.wait(30)
    print(f"delayed metrics for {args.n:,} predictions, SDK remote backend, real server (SQLite)")
    print(f"{'batch form (chunks of 20,000)':50} {batch_s:8.2f} s {args.n / batch_s:10,.0f} /s")
    print(
        f"{'single form (from ' + str(args.single) + ', extrapolated)':50} {single_s:8.2f} s "
        f"{args.n / single_s:10,.0f} /s"
    )
    print(f"speed-up: {single_s / batch_s:.0f}x")


if __name__ == "__main__":
    main()
