"""Followed logs (``?follow=true``) against a real server process: many followers on a quiet
model leave every other route fast, end when their clients go, and are bounded per key and in
all (429 naming the limit)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from modelyard.runtime import free_port

from .conftest import ServerProcess, start_server

FOLLOWERS_PER_KEY = 3
KEYS = 15  # 45 followers: more than Starlette's 40 shared threads


def _open_follow(port: int, token: str, path: str) -> tuple[socket.socket, bytes]:
    """A follow request on a raw socket, left open; returns it with the answer's head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(
        f"GET {path}?follow=true HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head


def _timed_get(server: ServerProcess, path: str, token: str) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    answer = httpx.get(server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=20)
    return time.monotonic() - started, answer


def _user_key(server: ServerProcess, name: str) -> str:
    created = httpx.post(
        server.url + "/api/v1/keys",
        json={"name": name, "role": "user"},
        headers={"Authorization": f"Bearer {server.admin}"},
        timeout=20,
    )
    assert created.status_code == 201, created.text
    token: str = created.json()["token"]
    return token


@pytest.mark.slow
def test_followers_end_with_their_clients_and_are_bounded(
    modelyard_home: Path, tmp_path: Path, project: Path
) -> None:
    port = free_port()
    settings = {
        "MODELYARD_LOG_FOLLOW_PER_KEY": str(FOLLOWERS_PER_KEY),
        "MODELYARD_LOG_FOLLOW_TOTAL": str(FOLLOWERS_PER_KEY * KEYS),
    }
    server = start_server(modelyard_home, port, tmp_path / "server.log", settings=settings)
    logs = "/api/v1/models/churn/logs"
    followers: list[socket.socket] = []
    try:
        deployed = httpx.post(
            server.url + "/api/v1/models/churn/deploy",
            json={"project": str(project)},
            headers={"Authorization": f"Bearer {server.admin}"},
            timeout=180,
        )
        assert deployed.status_code == 201, deployed.text
        tokens = [_user_key(server, f"follower-{i}") for i in range(KEYS)]

        for token in tokens:
            for _ in range(FOLLOWERS_PER_KEY):
                sock, head = _open_follow(port, token, logs)
                assert head.startswith(b"HTTP/1.1 200"), head
                followers.append(sock)

        # 45 quiet followers: static files and every log route still answer at once.
        for path in ("/ui/static/app.css", logs, "/api/v1/models/churn"):
            took, answer = _timed_get(server, path, tokens[0])
            assert answer.status_code == 200, (path, answer.text)
            assert took < 2.0, f"{path} took {took:.1f} s with {len(followers)} followers open"

        # One more for a key at its limit, then one more over all keys: 429 naming the limit.
        took, refused = _timed_get(server, logs + "?follow=true", tokens[0])
        assert refused.status_code == 429, refused.text
        assert refused.headers["Retry-After"] == "5"
        assert "MODELYARD_LOG_FOLLOW_PER_KEY=3" in refused.json()["error"]["message"]
        took, refused = _timed_get(server, logs + "?follow=true", _user_key(server, "one-more"))
        assert refused.status_code == 429, refused.text
        assert "MODELYARD_LOG_FOLLOW_TOTAL=45" in refused.json()["error"]["message"]

        # The clients go: their streams end and give their slots back (all 45 open again).
        for sock in followers:
            sock.close()
        deadline = time.monotonic() + 10
        while True:
            sock, head = _open_follow(port, tokens[-1], logs)
            sock.close()
            if head.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert head.startswith(b"HTTP/1.1 200"), head
        time.sleep(1.0)  # the probe above went away too
        again = [_open_follow(port, token, logs) for token in tokens for _ in range(3)]
        followers.extend(sock for sock, _ in again)
        assert all(head.startswith(b"HTTP/1.1 200") for _, head in again)
        for sock, _ in again:
            sock.close()
        took, answer = _timed_get(server, "/ui/static/app.css", tokens[0])
        assert answer.status_code == 200 and took < 2.0, took
    finally:
        for sock in followers:
            sock.close()
        server.stop()
