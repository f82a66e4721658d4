"""The README's "Serve a model" tour, run for real: the same commands, in order, against a real
``modelyard server`` process in a temp home, so the tour cannot drift from the product.

The steps are read from README.md between the ``serve-tour`` markers. Before running a command
the test changes only what must differ on a test machine: the home (a temp folder), the port (a
free one), the ``.venv/bin/`` prefix (this interpreter's folder, as the commands run in a temp
folder) and the placeholders the reader fills in from what earlier steps printed (the access key,
the API key, the model CRN). Everything else runs as written, through bash.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
PORT_IN_README = "8765"


def tour() -> str:
    match = re.search(r"<!-- serve-tour.*?-->(.*?)<!-- /serve-tour -->", README.read_text(), re.S)
    assert match, "README.md has no <!-- serve-tour --> ... <!-- /serve-tour --> section"
    return match.group(1)


def sh_commands(text: str) -> list[str]:
    """The commands of the tour's ```sh blocks: a line ending in a backslash continues on the
    next one, and a here-document runs to its end marker."""
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            command = lines[i]
            heredoc = re.search(r"<<'?(\w+)'?", command)
            while command.endswith("\\"):
                i += 1
                command += "\n" + lines[i]
            if heredoc:
                while lines[i] != heredoc.group(1):
                    i += 1
                    command += "\n" + lines[i]
            commands.append(command)
            i += 1
    return commands


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_the_serving_tour_runs_as_written(tmp_path: Path, modelyard_home: Path) -> None:
    from modelyard.runtime import free_port

    text = tour()
    commands = sh_commands(text)
    port = str(free_port())
    bin_dir = str(Path(sys.executable).parent) + "/"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["COLUMNS"] = "200"  # rich tables as wide as the keys, not the test runner's pipe
    env["MODELYARD_CONFIG"] = str(tmp_path / "cli-config.json")  # not the reader's own
    work = tmp_path / "work"
    work.mkdir()
    printed: dict[str, str] = {}  # placeholder -> the value an earlier step printed
    server: subprocess.Popen[bytes] | None = None
    answers: list[dict[str, object]] = []
    try:
        for command in commands:
            command = command.replace(".venv/bin/", bin_dir).replace(PORT_IN_README, port)
            for placeholder, value in printed.items():
                command = command.replace(placeholder, value)
            if command.startswith("export MODELYARD_HOME="):
                env["MODELYARD_HOME"] = str(modelyard_home)
                continue
            if command.startswith("export "):
                assert "..." not in command, f"a placeholder was never printed: {command}"
                for assignment in command.removeprefix("export ").split():
                    name, _, value = assignment.partition("=")
                    env[name] = value
                continue
            if command.rstrip().endswith("&"):
                assert server is None, "the tour starts one background process: the server"
                server = subprocess.Popen(
                    ["bash", "-c", "exec " + command.rstrip().removesuffix("&")],
                    cwd=work,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
                wait_healthy(f"http://127.0.0.1:{port}/healthz", server)
                continue
            done = subprocess.run(
                ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            for prefix in ("mya_", "myk_", "crn:modelyard:model/"):
                # The longest match: a key's 12-character prefix may be printed beside it.
                found = re.findall(re.escape(prefix) + r"[A-Za-z0-9_\-]+", done.stdout)
                if found:
                    printed[prefix + "..."] = max(found, key=len)
            if command.startswith("curl"):
                answers.append(orjson.loads(done.stdout))
        assert set(printed) == {"mya_...", "myk_...", "crn:modelyard:model/..."}
        assert printed["myk_..."] != (modelyard_home / "admin.key").read_text().strip()
        status = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/models/churn",
            headers={"Authorization": f"Bearer {printed['myk_...']}"},
        ).json()
        # Both replicas serve (the gateway's view; the runtime's own verdict may lag a poll).
        assert [r["in_pool"] for r in status["replicas"]] == [True, True]
        assert status["model"]["crn"] == printed["crn:modelyard:model/..."]
        (answer,) = answers
        assert answer["success"] is True and answer["ReplicaID"], answer
        uuid = str(answer["uuid"])
        time.sleep(0.5)  # past the server's flush interval (200 ms)
        (code,) = python_blocks(text)
        shown = subprocess.run(
            [sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True
        )
        assert shown.returncode == 0, shown.stderr
        assert uuid in shown.stdout and "0.23" in shown.stdout, shown.stdout
    finally:
        output = ""
        if server is not None:
            server.send_signal(signal.SIGTERM)
            output = server.communicate(timeout=60)[0].decode(errors="replace")
    assert "Created the admin API key" in output  # the first start printed it, as the tour says


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within 60 s")
