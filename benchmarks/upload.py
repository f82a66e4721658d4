"""Deploy from a laptop: uploading a project folder to a real ``modelyard server`` over loopback,
against streaming the same folder with ``tar c | ssh``-style copying.

The project: 200 files, 20 MB in all (random-ish bytes: half random, half repeated text, so
neither compression nor deduplication flatters either side), with a ``predict.py``. Timed:

- ``upload first``: pack (walk with the snapshot's rules, hash), ask ``/uploads/missing``, PUT
  every blob, post the manifest; a fresh project each run, so every blob is new;
- ``materialize``: the server's half, the upload written into a folder from the database
  (``builds.upload.materialize`` reading ``registry.uploads`` on the server's own database,
  the code a deploy runs); ``upload+materialize first`` is their sum per run;
- ``upload after one change``: the same folder with one file changed: one blob travels;
- ``deploy first`` / ``deploy after one change`` (not with ``--no-deploy``): the whole
  ``POST /models/{name}/deploy`` with the upload (materialize, snapshot, environment, smoke
  test, rollout), for scale;
- baseline ``tar over loopback``: a Python ``tarfile`` stream of the same folder (``w|``) over a
  TCP socket on 127.0.0.1 to a receiver process that untars it (``r|``) into a fresh folder,
  timed until the receiver has written the last file. ``tar`` has no memory of the last copy, so
  it is also what a changed folder costs.

Medians of ``--repeat`` (3) runs, printed as ratios to the baseline; JSON under
``benchmarks/results/``.

    .venv/bin/python benchmarks/upload.py [--repeat 3] [--no-deploy]
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import Figure, Report, Timer, timer
from modelyard.builds.upload import (
    HttpTransport,
    check_manifest,
    materialize,
    pack_project,
    send_pack,
)
from modelyard.client import Client
from modelyard.registry import Registry
from modelyard.runtime import free_port
from modelyard.store import open_store
from server import start_server

FILES = 200
TOTAL = 20 * 1024 * 1024
PREDICT = "def predict(args):\n    return {'ok': True, 'x': args.get('x')}\n"

RECEIVER = r"""
import socket, sys, tarfile
port, dest = int(sys.argv[1]), sys.argv[2]
server = socket.create_server(("127.0.0.1", port))
print("ready", flush=True)
conn, _ = server.accept()
with conn, conn.makefile("rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
    tar.extractall(dest, filter="data")
    conn.sendall(b"done")
"""


def make_project(root: Path, seed: int) -> Path:
    """200 files, 20 MB: half random bytes, half repeated text, and a predict.py."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    (root / "predict.py").write_text(f"# run {seed}\n{PREDICT}")  # new content each run
    per = TOTAL // (FILES - 1)
    for i in range(FILES - 1):
        folder = root / f"pkg{i % 10}"
        folder.mkdir(exist_ok=True)
        text = (f"row {i} value {rng.random()}\n" * (per // 60 + 1)).encode()[: per // 2]
        (folder / f"part{i:03}.bin").write_bytes(rng.randbytes(per - len(text)) + text)
    return root


def tar_copy(folder: Path, dest: Path) -> Timer:
    """Stream ``folder`` as a tar over loopback TCP into a receiver process that untars it."""
    import tarfile

    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(port), str(dest)], stdout=subprocess.PIPE
    )
    assert receiver.stdout is not None
    assert receiver.stdout.readline().strip() == b"ready"
    with timer() as t, socket.create_connection(("127.0.0.1", port)) as sock:
        with sock.makefile("wb") as stream, tarfile.open(fileobj=stream, mode="w|") as tar:
            tar.add(folder, arcname=".")
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(4) == b"done"
    receiver.wait(timeout=60)
    return t


def materialize_from_db(home: Path, upload_id: str, dest: Path) -> Timer:
    """The server's half: the upload written into ``dest`` from the server's database."""
    store = open_store(f"sqlite:///{home / 'modelyard.db'}")
    try:
        registry = Registry(store)
        with timer() as t:
            upload = registry.uploads.get(upload_id)
            materialize(check_manifest(upload.manifest), registry.uploads.read_blob, dest)
    finally:
        store.close()
    return t


def change_one(folder: Path, run: int) -> None:
    target = folder / "pkg3" / "part003.bin"
    target.write_bytes(target.read_bytes()[:-20] + f"changed in run {run:08}".encode()[:20])


def run(args: argparse.Namespace, report: Report, work: Path) -> None:
    home = work / "home"
    port = free_port()
    server = start_server(home, port)
    try:
        client = Client(f"http://127.0.0.1:{port}", (home / "admin.key").read_text().strip())
        transport = HttpTransport(client)
        timers: dict[str, list[Timer]] = {k: [] for k in (
            "tar", "first", "materialize", "sum", "second", "deploy1", "deploy2")}  # fmt: skip
        for i in range(args.repeat):
            folder = make_project(work / f"project{i}", seed=i)
            timers["tar"].append(tar_copy(folder, work / f"tar{i}"))
            with timer() as t:
                first = send_pack(pack_project(folder), transport)
            assert first.sent_blobs == FILES, first
            timers["first"].append(t)
            m = materialize_from_db(home, first.id, work / f"mat{i}")
            timers["materialize"].append(m)
            timers["sum"].append(Timer(t.wall + m.wall, t.cpu + m.cpu))
            if not args.no_deploy:
                timers["deploy1"].append(deploy(client, f"up{i}", first.id))
            change_one(folder, i)
            with timer() as t:
                second = send_pack(pack_project(folder), transport)
            assert second.sent_blobs == 1, second
            timers["second"].append(t)
            if not args.no_deploy:
                timers["deploy2"].append(deploy(client, f"up{i}", second.id))
            for path in (folder, work / f"tar{i}", work / f"mat{i}"):
                shutil.rmtree(path, ignore_errors=True)
        add_figures(report, timers, args.no_deploy)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def deploy(client: Client, name: str, upload_id: str) -> Timer:
    with timer() as t:
        outcome = client.call(
            "POST", f"/api/v1/models/{name}/deploy", {"upload": upload_id}, timeout=None
        )
    assert outcome["ok"], outcome
    return t


def add_figures(report: Report, timers: dict[str, list[Timer]], no_deploy: bool) -> None:
    base = report.add(Figure.seconds("tar over loopback (baseline)", timers["tar"]))
    report.add(Figure.seconds("upload first", timers["first"], "all 200 blobs"), base)
    report.add(Figure.seconds("materialize (server)", timers["materialize"]), base)
    report.add(Figure.seconds("upload+materialize first", timers["sum"]), base)
    report.add(Figure.seconds("upload after one change", timers["second"], "1 blob"), base)
    if no_deploy:
        report.skip("deploy", "--no-deploy")
        return
    report.add(Figure.seconds("deploy first (whole)", timers["deploy1"], "build+rollout"), base)
    report.add(Figure.seconds("deploy after one change", timers["deploy2"]), base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-deploy", action="store_true", help="time the upload part only")
    args = parser.parse_args()
    report = Report("upload", {"files": FILES, "bytes": TOTAL, "repeat": args.repeat})
    with tempfile.TemporaryDirectory(prefix="modelyard-upload-bench-") as tmp:
        run(args, report, Path(tmp))
    report.console.print(report.table())
    report.console.print(f"wrote {report.write()}")


if __name__ == "__main__":
    main()
