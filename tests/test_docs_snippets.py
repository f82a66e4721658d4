"""Every code snippet in README.md and docs/ runs, so none can rot.

- ```python blocks run page by page, in order, in one process per page: a later block of a page
  may use what an earlier one defined, as a reader following the page would. Each page runs
  **twice**, from a **clean environment**: no ``MODELYARD_*`` variable at all (so no
  ``MODELYARD_HOME`` either: the SDK picks its backend as on a new machine) and ``HOME`` a fresh
  empty folder (so ``~/.modelyard`` does not exist at first), in an empty working folder; the
  second run has the same ``HOME`` and folder, with whatever the first run left there (as a
  reader who runs an example again has).
- Every ```sh or ```console block says what the suite does with it (an unmarked one fails
  ``test_every_shell_block_is_run_or_says_why``):
  ``<!-- test: run -->`` runs it as written, twice, from a clean environment as above;
  ``<!-- test: run server -->`` runs it against a real server process
  (``test_snippets_against_a_server``), with ``$URL``, ``$KEY`` (admin), ``MODELYARD_URL``,
  ``MODELYARD_API_KEY`` and ``MODELYARD_HOME`` set, a ``churn`` model deployed from the project
  ``./churn``, and the docs' placeholders for a reader's own values (``PLACEHOLDERS``) replaced
  by real ones; a ```console block's commands are its ``$ `` lines (and their continuations),
  run in order in one shell as in a reader's terminal (a variable set by one is seen by the
  next), the rest is the answer shown to the reader; ``curl`` gets ``--fail-with-body`` so an
  HTTP error fails the test. ```python blocks may be marked ``run server`` too. These run once:
  they change a shared server (a job created twice is rightly refused).
- A block that cannot run by itself (a fragment, an excerpt of an answer, a command that needs
  another machine) says so with ``<!-- test: skip REASON -->``; the reason is required.
- The README's two tours (``serve-tour``, ``monitor-tour``) need a server and values printed by
  earlier steps: tests/test_readme_serve.py runs the first, ``test_monitor_tour`` below the
  second, after doing what the first one did (against a real server process).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from _wait import wait_until

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"(?:<!--\s*(test:[^>]*?)\s*-->[ \t]*\n[ \t]*)?```(\w+)\n(.*?)```", re.S)
_TOUR = re.compile(r"<!-- (serve|monitor)-tour.*?<!-- /\1-tour -->", re.S)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    code: str
    marker: str  # "" or the text after "test:"

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path, *, in_tours: bool = False) -> list[Block]:
    text = page.read_text()
    tours = [m.span() for m in _TOUR.finditer(text)]
    found = []
    for match in _FENCE.finditer(text):
        inside = any(a <= match.start() < b for a, b in tours)
        if inside != in_tours:
            continue
        line = text.count("\n", 0, match.start(2)) + 1
        marker = (match.group(1) or "").removeprefix("test:").strip()
        found.append(Block(page, line, match.group(2), match.group(3), marker))
    return found


def _skip_reason(block: Block) -> str | None:
    if block.marker.startswith("skip"):
        return block.marker.removeprefix("skip").strip()
    return None


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["MODELYARD_HOME"] = str(home)
    env["MODELYARD_CONFIG"] = str(home / "cli-config.json")  # never the reader's own CLI config
    env["COLUMNS"] = "200"
    return env


def _clean_env(root: Path) -> dict[str, str]:
    """A new user's environment: no ``MODELYARD_*`` variable, ``HOME`` a fresh empty folder."""
    user, scratch = root / "user", root / "tmp"
    user.mkdir(exist_ok=True)
    scratch.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["HOME"] = str(user)
    env["TMPDIR"] = str(scratch)  # examples' temporary homes go with the test's folder
    env["COLUMNS"] = "200"
    return env


RUNS = ("first run", "second run")


_DRIVER = """
import json, sys, traceback
namespace = {"__name__": "__main__"}
for name, code in json.load(open(sys.argv[1])):
    try:
        exec(compile(code, name, "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"snippet {name} failed", file=sys.stderr)
        sys.exit(1)
    print(f"--- snippet {name} ok", flush=True)
"""

PYTHON_PAGES = [p for p in PAGES if any(b.lang == "python" for b in blocks(p))]


SHELL = ("sh", "console", "bash", "shell")
RUN_MARKERS = ("run", "run server")


def test_every_skip_says_why() -> None:
    for page in PAGES:
        for block in blocks(page) + blocks(page, in_tours=True):
            if block.marker:
                assert block.marker in RUN_MARKERS or _skip_reason(block), (
                    f"{block.name}: a marker is 'test: run', 'test: run server' or "
                    f"'test: skip REASON', not {block.marker!r}"
                )


def test_every_shell_block_is_run_or_says_why() -> None:
    """Outside the README's tours (run by their own tests), no shell block goes unnoticed."""
    unmarked = [b.name for p in PAGES for b in blocks(p) if b.lang in SHELL and not b.marker]
    assert unmarked == [], (
        "mark each with <!-- test: run -->, <!-- test: run server --> or "
        f"<!-- test: skip REASON -->: {unmarked}"
    )
    # 'test: run' without a server runs ```sh and ```python blocks only: anything else so marked
    # would pass without ever running.
    never_run = [
        b.name
        for p in PAGES
        for b in blocks(p)
        if b.marker == "run" and b.lang not in ("sh", "python")
    ]
    assert never_run == [], f"make these ```sh (or mark them run server): {never_run}"


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_snippets_of_a_page_run(page: Path, tmp_path: Path) -> None:
    todo = [b for b in blocks(page) if b.lang == "python" and b.marker in ("", "run")]
    script = tmp_path / "snippets.json"
    script.write_text(json.dumps([(b.name, b.code) for b in todo]))
    work = tmp_path / "work"
    work.mkdir()
    env = _clean_env(tmp_path)
    for run in RUNS:
        done = subprocess.run(
            [sys.executable, "-c", _DRIVER, str(script)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, f"{run}: " + done.stdout[-2000:] + done.stderr[-4000:]
        assert done.stdout.count("--- snippet ") == len(todo), run


@pytest.mark.parametrize(
    "block",
    [b for p in PAGES for b in blocks(p) if b.lang == "sh" and b.marker == "run"],
    ids=lambda b: b.name,
)
def test_marked_shell_snippets_run(block: Block, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = _clean_env(tmp_path)
    for run in RUNS:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", _local(block.code)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{block.name} ({run})\n{done.stdout}\n{done.stderr}"


def _local(code: str) -> str:
    """The snippet with ``.venv/bin/`` pointing at this interpreter's folder (tests run in
    temporary folders)."""
    return code.replace(".venv/bin/", str(Path(sys.executable).parent) + "/")


@pytest.mark.slow
def test_monitor_tour(tmp_path: Path) -> None:
    """The README's monitor tour, after what the serving tour leaves behind: a server, the churn
    model deployed with two replicas, a few calls through ``POST /model``."""
    from modelyard.demo.server_process import ServerProcess

    readme_blocks = blocks(ROOT / "README.md", in_tours=True)
    serve = [b for b in readme_blocks if b.code.startswith("mkdir -p churn")]
    tour = [b for b in readme_blocks if b.line > _line_of("<!-- monitor-tour")]
    assert serve and tour, "README.md lost its serve-tour project or its monitor-tour"
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    work = tmp_path / "work"
    work.mkdir()
    server = ServerProcess(home)
    try:
        env = _env(home)
        project_step = serve[0].code.split("\n.venv/bin/")[0]  # the mkdir and the heredoc
        subprocess.run(["bash", "-c", project_step], cwd=work, env=env, check=True)
        exe = str(Path(sys.executable).parent / "modelyard")
        deployed = subprocess.run(
            [
                exe,
                "models",
                "deploy",
                "churn",
                "--project-dir",
                "churn",
                "--replicas",
                "2",
                "--example",
                '{"support_calls": 3}',
                "--json",
            ],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
        assert deployed.returncode == 0, f"deploy failed:\n{deployed.stdout}\n{deployed.stderr}"
        outcome = json.loads(deployed.stdout)
        env["MODEL_CRN"] = outcome["model"]["crn"]
        admin = {"Authorization": f"Bearer {server.admin_key}"}
        for calls in range(6):
            answer = httpx.post(
                f"{server.url}/model",
                headers=admin,
                json={"accessKey": outcome["access_key"], "request": {"support_calls": calls}},
            )
            assert answer.json()["success"], answer.text

        # The server writes prediction records in batches (MODELYARD_FLUSH_INTERVAL); a reader
        # labels them minutes later, the test waits until all six are readable.
        def stored() -> int:
            page = httpx.get(
                f"{server.url}/api/v1/metrics",
                headers=admin,
                params={"modelCrn": outcome["model"]["crn"], "kind": "prediction"},
            ).json()
            return len(page["metrics"])

        wait_until(lambda: stored() == 6, what="the six prediction records")
        outputs = []
        for block in tour:
            if block.lang == "python":
                cmd = [sys.executable, "-c", block.code]
            else:
                assert block.marker == "run", f"{block.name} is part of the tour: mark it run"
                cmd = ["bash", "-euo", "pipefail", "-c", _local(block.code)]
            done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"{block.name}\n{done.stdout}\n{done.stderr}"
            outputs.append(done.stdout)
        assert "labelled 6 predictions" in outputs[0]
        job = httpx.get(f"{server.url}/api/v1/jobs/churn-monitor", headers=admin).json()
        assert job["name"] == "churn-monitor"
        # The monitor computed this hour's window(s): ROC AUC 1.0 (churn = support_calls >= 3).
        assert "roc_auc" in outputs[-1] and "label_coverage" in outputs[-1], outputs[-1]
    finally:
        server.stop()


def _line_of(text: str) -> int:
    readme = (ROOT / "README.md").read_text()
    return readme.count("\n", 0, readme.index(text)) + 1


# Placeholders the docs use for a reader's own values, and what test_snippets_against_a_server
# puts in their place (keys of the ``live`` fixture).
PLACEHOLDERS = {
    "<crn>": "deployment",
    "mya_...": "access_key",
    "crn:modelyard:deployment/...": "deployment",
    "/srv/projects/churn": "project",
    "0b7e...": "run_uuid",
}
LIVE = [b for p in PAGES for b in blocks(p) if b.marker == "run server"]

_PREDICT = """
import modelyard


@modelyard.model_metrics
def predict(args):
    tenure = int(args.get("tenure", 0))
    modelyard.track_metrics({"tenure": tenure})
    return {"churn": tenure < 12}
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A server process, the ``churn`` model deployed (1 replica) and one finished job run."""
    from modelyard.demo.server_process import ServerProcess

    root = tmp_path_factory.mktemp("live")
    home, work = root / "home", root / "work"
    home.mkdir(mode=0o700)
    project = work / "churn"
    project.mkdir(parents=True)
    (project / "predict.py").write_text(_PREDICT)
    for script in ("monitor.py", "tick.py"):
        (project / script).write_text(f"print('{script} ran')\n")
    server = ServerProcess(home)
    try:
        env = _env(home)
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"

        def cli(*args: str) -> Any:
            done = subprocess.run(
                ["modelyard", *args, "--json"], cwd=work, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stdout + done.stderr
            return json.loads(done.stdout)

        deployed = cli(
            "models", "deploy", "churn", "--project-dir", "churn", "--file", "predict.py",
            "--function", "predict", "--example", '{"tenure": 3}',
        )  # fmt: skip
        cli("jobs", "create", "warmup", "--project-dir", "churn", "--script", "tick.py", "--manual")
        run = cli("jobs", "run", "warmup")
        env.update(
            URL=server.url,
            KEY=server.admin_key,
            MODELYARD_URL=server.url,
            MODELYARD_API_KEY=server.admin_key,
        )
        yield {
            "work": str(work),
            "env": json.dumps(env),
            "access_key": deployed["access_key"],
            "deployment": deployed["deployment"]["crn"],
            "project": str(project),
            "run_uuid": str(run.get("uuid") or run["run"]["uuid"]),
        }
    finally:
        server.stop()


def _fill(code: str, live: dict[str, str]) -> str:
    for placeholder, key in PLACEHOLDERS.items():
        code = code.replace(placeholder, live[key])
    return code


def console_commands(code: str) -> list[str]:
    """The ``$ `` commands of a console block, each with its continuation lines."""
    commands: list[str] = []
    open_command = False
    for line in textwrap.dedent(code).splitlines():
        if line.startswith("$ ") and not open_command:
            commands.append(line[2:])
        elif open_command:
            commands[-1] += "\n" + line
        else:
            continue  # the answer shown to the reader
        text = commands[-1]
        open_command = text.endswith("\\") or text.count("'") % 2 == 1
    return commands


_DEFINES = re.compile(r"^\$ (URL|KEY)=", re.M)


def test_url_and_key_are_defined_where_used() -> None:
    """A block using ``$URL`` or ``$KEY`` sets them itself, or its page says what they are."""
    undefined = []
    for block in LIVE:
        text = block.page.read_text()
        for name in ("URL", "KEY"):
            used = f"${name}" in block.code
            defined = f"$ {name}=" in block.code or f"`${name}`" in text  # prose names it
            if used and not defined:
                undefined.append(f"{block.name}: ${name}")
    assert undefined == [], f"say what these are, or set them in the block: {undefined}"


@pytest.mark.slow
@pytest.mark.parametrize("block", LIVE, ids=lambda b: b.name)
def test_snippets_against_a_server(block: Block, live: dict[str, str]) -> None:
    env = json.loads(live["env"])
    if _DEFINES.search(block.code):  # it finds the server and key itself: prove it
        env.pop("URL")
        env.pop("KEY")
    if block.lang == "python":
        commands = [[sys.executable, "-c", _fill(block.code, live)]]
    else:
        lines = console_commands(block.code) if block.lang == "console" else [_local(block.code)]
        assert lines, f"{block.name}: a console block shows its commands with '$ '"
        # One shell for the block, as the reader's terminal: variables set earlier are seen.
        script = _fill("\n".join(lines), live).replace("curl ", "curl --fail-with-body ")
        commands = [["bash", "-euo", "pipefail", "-c", script]]
    for cmd in commands:
        done = subprocess.run(
            cmd, cwd=live["work"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{block.name}: {cmd[-1]}\n{done.stdout}\n{done.stderr}"
