"""``modelyard experiments``: run a script as an experiment and read its runs (over the server's
REST API, ``/api/v1/experiments``).

``run`` packs the project folder (``--project-dir``, default: the current folder) here and uploads
it, as ``models deploy`` and ``jobs create`` do (``cli.uploading``: only the files the server
lacks travel); the server runs ``python SCRIPT ARGS`` in a snapshot of it. Everything after SCRIPT
goes to the script as written, options included (``--epochs 3``, ``-v``, ``--lr=0.1``), except
this command's own options (``--project``, ``--name``, ...), which may come before or after
SCRIPT: put the script's arguments after ``--`` when one of them has the name of one of ours.

Runs are named by their uuid, an unambiguous prefix of it (4 or more characters) or their full
``crn:modelyard:run/`` id, resolved by the server as for job runs.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import click

from modelyard.cli.args import env_pairs
from modelyard.cli.client import connect
from modelyard.cli.config import project_option, project_params
from modelyard.cli.output import json_option, print_json, print_mapping, print_rows
from modelyard.errors import InvalidInput
from modelyard.settings import parse_duration_ms

__all__ = ["experiments", "script_path"]

_JSON = json_option()
_RUN_PREFIX = "crn:modelyard:run/"
_LIVE = ("queued", "running")
_POLL_S = 0.5
# Fields of an experiment a table shows in this order (the rest follow).
_FIRST = ("uuid", "name", "state", "script", "args", "project", "exitCode", "codeDigest")
_LIST_COLUMNS = ("uuid", "name", "state", "script", "args", "started", "duration_ms", "metrics")


def _path(run: str | None = None, *rest: str) -> str:
    if run is None:
        return "/api/v1/experiments"
    parts = (run.removeprefix(_RUN_PREFIX), *rest)
    return "/api/v1/experiments/" + "/".join(quote(p, safe="") for p in parts)


def script_path(script: str, project_dir: Path, option: str = "SCRIPT") -> str:
    """``script`` as a path inside ``project_dir`` (what the server finds in the upload): a
    relative path is taken inside the folder, an absolute one must lie in it; InvalidInput
    naming both otherwise.

    >>> script_path("train.py", Path("/srv/churn"))
    'train.py'
    >>> script_path("/srv/churn/src/train.py", Path("/srv/churn"))
    'src/train.py'
    >>> script_path("/tmp/train.py", Path("/srv/churn"))
    Traceback (most recent call last):
    ...
    modelyard.errors.InvalidInput: SCRIPT '/tmp/train.py' is not inside --project-dir '/srv/churn...
    """
    given = Path(script)
    if not given.is_absolute():
        return Path(os.path.normpath(given)).as_posix()
    try:
        return Path(os.path.normpath(given)).relative_to(project_dir).as_posix()
    except ValueError:
        raise InvalidInput(
            f"{option} {script!r} is not inside --project-dir {str(project_dir)!r}; expected a "
            "path inside the folder uploaded (relative paths are taken inside it)",
            argument=option.lstrip("-").lower(),
        ) from None


def _body(script: str, args: tuple[str, ...], options: dict[str, Any]) -> dict[str, Any]:
    """The request body (an ``ExperimentSpec`` as JSON, without its upload), checked here as
    the server checks it: bad input sends nothing."""
    from modelyard.specs.experiment import ExperimentSpec  # pydantic loads only for ``run``

    project_dir: Path = options["project_dir"].resolve()
    requirements = options["requirements"]
    timeout = options["timeout"]
    fields: dict[str, Any] = {
        "script": script_path(script, project_dir),
        "args": list(args),
        "upload": "(sent next)",
        "requirements": None
        if requirements is None
        else script_path(requirements, project_dir, "--requirements"),
        "label": options["name"],
        "env": env_pairs(options["env"]),
        "secrets": list(options["secrets"]),
        "timeout_ms": None if timeout is None else parse_duration_ms(timeout, "--timeout"),
        "cpus": options["cpus"],
        "memory": options["memory"],
        "gpus": options["gpus"],
        "accelerator": options["accelerator"],
    }
    spec = ExperimentSpec(**{k: v for k, v in fields.items() if v is not None})
    return {k: v for k, v in spec.model_dump(mode="json").items() if v is not None}


@click.group()
def experiments() -> None:
    """Experiments: run a script with its arguments in a snapshot of a project; compare runs by
    their metrics, arguments and code version; fetch the files they kept."""


@experiments.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": True},
)
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@project_option()
@click.option(
    "--project-dir",
    "project_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="The project folder (packed here and uploaded; SCRIPT is inside it).",
)
@click.option(
    "--requirements",
    default=None,
    metavar="FILE",
    help="Requirements file inside the project: the run uses its environment (built once and "
    "reused while the requirements stay the same, as for models and jobs).",
)
@click.option("--name", default=None, help="A name to tell the run by in lists and charts.")
@click.option("--env", "env", multiple=True, metavar="K=V", help="Added to the run's env.")
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="NAME",
    help="A project secret (modelyard secrets set NAME) the run gets as environment variable "
    "NAME; repeatable.",
)
@click.option("--timeout", default=None, help="Kill the run after this (30m, 2h; default 1h).")
@click.option("--cpus", type=float, default=None, help="CPUs the run may use (enforced).")
@click.option("--memory", default=None, help="Memory limit, e.g. 2G (stopped beyond it).")
@click.option("--gpus", type=int, default=None, help="Whole GPUs the run gets exclusively.")
@click.option("--accelerator", default=None, help="Accelerator type, e.g. nvidia-a100.")
@click.option("--wait", is_flag=True, help="Wait until the run ends; exit 1 unless it succeeded.")
@click.option(
    "--follow",
    is_flag=True,
    help="Print the run's log as it comes, until it ends (implies --wait).",
)
@_JSON
def run(
    script: str, args: tuple[str, ...], project: str | None, as_json: bool, **options: Any
) -> None:
    """Run SCRIPT [ARGS...] as an experiment: the project folder is uploaded and the server runs
    'python SCRIPT ARGS' in a snapshot of it. Prints the run (its uuid names it in the other
    commands). Arguments after SCRIPT go to the script unchanged; after '--', all of them do."""
    from modelyard.cli.uploading import check_kept, upload_folder

    body = _body(script, args, options)
    project_dir: Path = options["project_dir"].resolve()
    check_kept(project_dir, {"script": body["script"], "requirements": body.get("requirements")})
    client, params = connect(), project_params(project)
    body["upload"] = upload_folder(client, project_dir, params.get("project")).id
    found = client.call("POST", _path(), body, params=params)
    if options["follow"]:
        _follow(client, found["uuid"], sys.stdout if not as_json else sys.stderr)
    if options["wait"] or options["follow"]:
        found = _wait(client, found["uuid"])
    if as_json:
        print_json(found)
    else:
        print_mapping(f"Experiment {found['uuid']}", _readable(found))
        if found["state"] in _LIVE:
            click.echo(
                f"follow it with: modelyard experiments logs {found['uuid']} --follow", err=True
            )
    if (options["wait"] or options["follow"]) and found["state"] != "succeeded":
        sys.exit(1)


def _follow(client: Any, uuid: str, out: Any) -> None:
    """Copy the run's log to ``out`` until the run ends (the server ends a followed log)."""
    for line in client.lines(_path(uuid, "logs"), {"follow": True}):
        out.write(line + "\n")
        out.flush()


def _wait(client: Any, uuid: str) -> dict[str, Any]:
    while True:
        found: dict[str, Any] = client.call("GET", _path(uuid))
        if found["state"] not in _LIVE:
            return found
        time.sleep(_POLL_S)


def _metrics_text(metrics: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (metrics or {}).items())


def _readable(found: dict[str, Any]) -> dict[str, Any]:
    """An experiment for a table: identity first, no history, files by name and size."""
    shown = {key: found.get(key) for key in _FIRST}
    shown["args"] = " ".join(found.get("args") or [])
    for key, value in found.items():
        if key not in shown and key not in ("metricHistory", "files", "id"):
            shown[key] = value
    shown["id"] = found.get("id")
    files = found.get("files") or []
    shown["files"] = ", ".join(f"{f['path']} ({f['state']}, {f.get('size')} B)" for f in files)
    return shown


@experiments.command("list")
@project_option(listing=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@_JSON
def list_experiments(project: str | None, all_projects: bool, limit: int, as_json: bool) -> None:
    """Experiment runs, newest first, with the last value of each metric."""
    params: dict[str, Any] = {**project_params(project, all_projects), "limit": limit}
    found = connect().call("GET", _path(), params=params)["experiments"]
    if as_json:
        print_json(found)
        return
    rows = [
        [
            e["uuid"],
            e.get("name"),
            e["state"],
            e["script"],
            " ".join(e.get("args") or []),
            e.get("startedMs"),
            e.get("durationMs"),
            _metrics_text(e.get("metrics")),
        ]
        for e in found
    ]
    print_rows("Experiments", list(_LIST_COLUMNS), rows)


@experiments.command()
@click.argument("run")
@_JSON
def show(run: str, as_json: bool) -> None:
    """One run: state, script and arguments, code version, resources, last metrics, files."""
    found = connect().call("GET", _path(run))
    if as_json:
        print_json(found)
    else:
        print_mapping(f"Experiment {found['uuid']}", _readable(found))


@experiments.command()
@click.argument("run")
@click.option("--tail", type=click.IntRange(0, 100_000), default=None, help="Last N lines.")
@click.option("--follow", is_flag=True, help="Keep printing new lines until the run ends.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print {run, state, log} as JSON (with --follow: once the run has ended).",
)
def logs(run: str, tail: int | None, follow: bool, as_json: bool) -> None:
    """A run's output (stdout and stderr)."""
    params: dict[str, Any] = {}
    if tail is not None:
        params["tail"] = tail
    if follow:
        params["follow"] = True
    client = connect()
    lines = client.lines(_path(run, "logs"), params)
    if not as_json:
        for line in lines:
            click.echo(line)
        return
    text = "".join(line + "\n" for line in lines)
    found = client.call("GET", _path(run))  # after the log: the state it ended in
    print_json({"run": found["id"], "state": found["state"], "log": text})


@experiments.command()
@click.argument("run")
@_JSON
def cancel(run: str, as_json: bool) -> None:
    """Cancel a queued or running experiment (its whole process group is killed)."""
    found = connect().call("POST", _path(run, "cancel"), timeout=None)
    if as_json:
        print_json(found)
    else:
        click.echo(f"experiment {found['uuid']}: {found['state']}")


def compare_rows(found: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The compare table: a column per run, a row per field and then per metric (the metric's
    last value; empty where a run did not track it).

    >>> cols, rows = compare_rows({"runs": [
    ...     {"uuid": "a1", "name": "lr-1", "state": "succeeded", "script": "t.py",
    ...      "args": ["--lr", "1"], "codeDigest": "sha256:ab", "durationMs": 5,
    ...      "metrics": {"acc": 0.9}}], "metrics": ["acc", "loss"]})
    >>> cols
    ['', 'a1']
    >>> rows[-2:]
    [['acc', 0.9], ['loss', None]]
    """
    runs = found["runs"]
    columns = ["", *(r["uuid"] for r in runs)]
    rows: list[list[Any]] = [
        ["name", *(r.get("name") for r in runs)],
        ["state", *(r["state"] for r in runs)],
        ["script", *(r["script"] for r in runs)],
        ["args", *(" ".join(r.get("args") or []) for r in runs)],
        ["code", *(r.get("codeDigest") for r in runs)],
        ["duration_ms", *(r.get("durationMs") for r in runs)],
    ]
    for key in found["metrics"]:
        rows.append([key, *((r.get("metrics") or {}).get(key) for r in runs)])
    return columns, rows


@experiments.command()
@click.argument("runs", nargs=-1, required=True)
@_JSON
def compare(runs: tuple[str, ...], as_json: bool) -> None:
    """Runs side by side: arguments, code version and the last value of each metric (RUNS: two
    or more uuids, prefixes or ids)."""
    names = ",".join(r.removeprefix(_RUN_PREFIX) for r in runs)
    found = connect().call("GET", _path("compare"), params={"runs": names})
    if as_json:
        print_json(found)
        return
    columns, rows = compare_rows(found)
    print_rows("Experiments compared", columns, rows)


@experiments.command()
@click.argument("run")
@_JSON
def files(run: str, as_json: bool) -> None:
    """The files a run kept (track_file): path, state, size, sha256, and why one failed."""
    found = connect().call("GET", _path(run, "files"))["files"]
    if as_json:
        print_json(found)
        return
    columns = ["path", "state", "size", "sha256", "kept_ms", "error"]
    fields = ["path", "state", "size", "sha256", "keptMs", "error"]
    print_rows(f"Files of {run}", columns, [[f.get(k) for k in fields] for f in found])


@experiments.command()
@click.argument("run")
@click.argument("file")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=True, path_type=Path),
    default=None,
    help="Where to write it: a file, a folder, or '-' for stdout (default: its base name here).",
)
@click.option("--force", is_flag=True, help="Replace an existing file.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print {run, file, output, size, sha256} once written (not with -o -).",
)
def download(run: str, file: str, output: Path | None, force: bool, as_json: bool) -> None:
    """Download FILE (its path as 'files' lists it) kept by run RUN."""
    client = connect()
    path = _path(run, "files", *file.split("/"))
    if output is not None and str(output) == "-":
        if as_json:
            raise InvalidInput("-o - writes the file to stdout; leave out --json, or give -o PATH")
        for chunk in _stream(client, path):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    target = output if output is not None else Path(PurePosixPath(file).name)
    if target.is_dir():
        target = target / PurePosixPath(file).name
    if target.exists() and not force:
        raise InvalidInput(
            f"{str(target)!r} exists; give --force to replace it, or -o with another path"
        )
    partial = target.with_name(f".{target.name}.part")
    digest, size = hashlib.sha256(), 0
    try:
        with partial.open("wb") as out:
            for chunk in _stream(client, path):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    if as_json:
        shown = {"run": run, "file": file, "output": str(target), "size": size}
        print_json({**shown, "sha256": digest.hexdigest()})
    else:
        click.echo(f"wrote {target} ({size} bytes)", err=True)


def _stream(client: Any, path: str) -> Iterable[bytes]:
    """The bytes of a GET answer, as they come; the server's error as a ModelyardError."""
    import httpx

    from modelyard.client import error_from_response

    try:
        with httpx.stream(
            "GET", client.url + path, headers=client.headers(), timeout=client.timeout
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise error_from_response(response)
            yield from response.iter_bytes()
    except httpx.HTTPError as exc:
        raise client.unreachable(exc, path) from exc
