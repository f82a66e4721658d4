"""The remote backend sends each tracked file's bytes when the script ends
(``tracking.run_uploads``): what goes on the wire, the checks made first (the runner's: inside
the folder, a regular file, the limits), and failures told on stderr, never raised.

A stdlib HTTP server on 127.0.0.1 stands in for the Modelyard server to see the raw wire (the
server's side is ``tests/server/test_run_file_uploads.py``, with a real experiment run through a
real server process); the hook is called directly, as ``atexit`` would call it."""

from __future__ import annotations

import http.server
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelyard
from modelyard.client import Client
from modelyard.tracking import run_uploads
from modelyard.tracking._env import EXPERIMENT_ENV, RUN_DIR_ENV
from modelyard.tracking.files import MAX_RUN_FILE_BYTES

RUN = "0190f0b2-6a2b-7c3d-8e4f-0000000000bb"
Seen = tuple[str, str, dict[str, str], bytes]


@pytest.fixture
def server() -> Iterator[tuple[str, list[Seen]]]:
    """A loopback server: 204 to POST, 200 with a small JSON to PUT; records every request."""
    seen: list[Seen] = []

    class Answer(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
            data = b'{"state": "kept"}' if self.command == "PUT" else b""
            self.send_response(200 if data else 204)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_PUT = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "runs" / RUN / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("MODELYARD_RUN_ID", RUN)
    monkeypatch.setenv(RUN_DIR_ENV, str(work))
    monkeypatch.setenv(EXPERIMENT_ENV, "1")
    monkeypatch.setenv("MODELYARD_API_KEY", "myk_runkey")
    return work


def _remote(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MODELYARD_URL", url)


def test_each_tracked_file_is_sent_once_as_it_is_at_the_end(
    run_dir: Path, server: tuple[str, list[Seen]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = server
    _remote(monkeypatch, url)
    (run_dir / "out").mkdir()
    (run_dir / "out" / "model v1.bin").write_bytes(b"early")
    modelyard.track_file("out/model v1.bin")
    modelyard.track_file(run_dir / "out" / "model v1.bin")  # the same file: sent once
    (run_dir / "out" / "model v1.bin").write_bytes(b"as it ended")
    assert run_uploads.tracked() == [(RUN, "out/model v1.bin")]
    assert [s[0] for s in seen] == ["POST", "POST"]  # nothing sent before the end

    err = io.StringIO()
    outcomes = run_uploads.upload_tracked(err)
    assert outcomes == [run_uploads.Sent(RUN, "out/model v1.bin", 11, None)]
    method, path, headers, body = seen[-1]
    assert (method, path, body) == (
        "PUT",
        f"/api/v1/runs/{RUN}/files/out/model%20v1.bin",
        b"as it ended",
    )
    assert headers["Authorization"] == "Bearer myk_runkey"
    assert headers["Content-Type"] == "application/octet-stream"
    assert err.getvalue() == "" and run_uploads.tracked() == []
    assert run_uploads.upload_tracked(err) == []  # a second call has nothing left


def test_what_cannot_be_sent_is_said_on_stderr_and_never_raised(
    run_dir: Path,
    server: tuple[str, list[Seen]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    url, seen = server
    _remote(monkeypatch, url)
    outside = tmp_path / "outside.txt"
    outside.write_text("not the run's")
    for name in ("gone.txt", "link.txt", "pipe", "big.bin", "ok.txt"):
        (run_dir / name).write_text(name)
        modelyard.track_file(name)
    os.remove("gone.txt")
    os.remove("link.txt")
    os.symlink(outside, "link.txt")
    os.remove("pipe")
    os.mkfifo("pipe")  # opened without blocking: it must not hold the script's exit
    with open("big.bin", "wb") as big:
        big.truncate(MAX_RUN_FILE_BYTES + 1)
    posts = len(seen)

    err = io.StringIO()
    outcomes = {o.path: o for o in run_uploads.upload_tracked(err)}
    assert outcomes["ok.txt"].error is None
    assert "does not exist when the script ended" in str(outcomes["gone.txt"].error)
    assert "outside the run's folder" in str(outcomes["link.txt"].error)
    assert "not a regular file" in str(outcomes["pipe"].error)
    assert f"at most {MAX_RUN_FILE_BYTES} bytes" in str(outcomes["big.bin"].error)
    assert [s[1].rsplit("/", 1)[-1] for s in seen[posts:]] == ["ok.txt"]
    lines = err.getvalue().splitlines()
    assert len(lines) == 4 and all(line.startswith("[modelyard] file '") for line in lines)
    assert f"'gone.txt' of run {RUN} was not sent to the server: it does not exist" in lines[0]

    # No server answering: said, not raised.
    (run_dir / "late.txt").write_text("late")
    run_uploads.remember(Client("http://127.0.0.1:9", "k"), RUN, "late.txt", str(run_dir))
    (outcome,) = run_uploads.upload_tracked(err)
    assert "no answer from http://127.0.0.1:9" in str(outcome.error)
    assert "'late.txt'" in err.getvalue().splitlines()[-1]


def test_the_run_limits_hold_before_anything_is_sent(
    run_dir: Path, server: tuple[str, list[Seen]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = server
    _remote(monkeypatch, url)
    monkeypatch.setattr(run_uploads, "MAX_RUN_FILES", 2)  # 100 in use
    monkeypatch.setattr(run_uploads, "MAX_RUN_FILES_TOTAL_BYTES", 10)  # 256 MiB in use
    for name, data in (("a", b"12345"), ("b", b"123456"), ("c", b"1234"), ("d", b"1")):
        (run_dir / name).write_bytes(data)
        modelyard.track_file(name)
    err = io.StringIO()
    errors = {o.path: o.error for o in run_uploads.upload_tracked(err)}
    assert errors["a"] is None and errors["c"] is None
    assert "bring the run's files to 11 bytes; accepted: at most 10" in str(errors["b"])
    assert "at most 2 files per run" in str(errors["d"])
    assert [s[1][-2:] for s in seen if s[0] == "PUT"] == ["/a", "/c"]
