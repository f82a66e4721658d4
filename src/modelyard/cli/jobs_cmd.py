"""``modelyard jobs``: define recurring, dependent and manual jobs and follow their runs (over the
server's REST API, ``/api/v1/jobs`` and ``/api/v1/runs``).

The job's folder (``--project-dir``) is packed here and uploaded (only the files the server
lacks); the server keeps it for the job's runs. ``--project`` names the Modelyard project
a new job goes into (``?project=``; default: ``modelyard projects use``, else the server's default
project) and filters ``list``; a job's name is unique on the server, so commands naming a job or
a run need no project. Durations take units (``30s``, ``10m``, ``2h``); the API
itself speaks milliseconds. Runs are named by their uuid, an unambiguous prefix of it (4 or more
characters, as git names commits), or their full ``crn:modelyard:run/`` id. Prefixes are resolved
by the server (``Registry.resolve_run``), not here: there is no list of every run to search
client-side, every REST client gets them too, and a run key's lookups stay within its own run.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import click

from modelyard.cli.args import env_pairs
from modelyard.cli.client import connect
from modelyard.cli.config import project_option, project_params
from modelyard.cli.output import format_time, json_option, print_json, print_mapping, print_rows
from modelyard.errors import InvalidInput
from modelyard.settings import parse_duration_ms

__all__ = ["jobs"]

_JSON = json_option()
_RUN_PREFIX = "crn:modelyard:run/"
F = TypeVar("F", bound=Callable[..., Any])
# Column -> field of a run: times in ms print as local ISO 8601 (the API's *_at are UTC strings).
_RUN_COLUMNS = {
    "uuid": "uuid",
    "state": "state",
    "trigger": "trigger",
    "attempt": "attempt",
    "scheduled_ms": "slot_ms",
    "exit_code": "exit_code",
    "duration_ms": "duration_ms",
}
# UTC text copies of times a table already shows (as local time) from their *_ms field.
_UTC_COPIES = ("scheduled_at", "next_run_at")


def _job_path(name: str, *rest: str) -> str:
    return "/api/v1/jobs/" + "/".join(quote(p, safe="") for p in (name, *rest))


def _run_path(run: str, *rest: str) -> str:
    uuid = run.removeprefix(_RUN_PREFIX)
    return "/api/v1/runs/" + "/".join(quote(p, safe="") for p in (uuid, *rest))


def _duration(text: str | None, option: str) -> int | None:
    return None if text is None else parse_duration_ms(text, option)


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The request body for the options given to ``create`` or ``update`` (the click options of
    ``_job_options``; what is not given is left out)."""
    folder: Path | None = options["project_dir"]
    body: dict[str, Any] = {
        "project": None if folder is None else str(folder.resolve()),
        "script": options["script"],
        "monitor": options["monitor"],
        "requirements": options["requirements"],
        "cron": options["cron"],
        "timezone": options["timezone"],
        "every_ms": _duration(options["every"], "--every"),
        "after": options["after"],
        "timeout_ms": _duration(options["timeout"], "--timeout"),
        "retries": options["retries"],
        "retry_backoff_ms": _duration(options["retry_backoff"], "--retry-backoff"),
        "overlap": options["overlap"],
        "catch_up": options["catch_up"],
        "cpus": options["cpus"],
        "memory": options["memory"],
        "gpus": options["gpus"],
        "accelerator": options["accelerator"],
    }
    body = {k: v for k, v in body.items() if v is not None}
    if options["manual"]:
        body["manual"] = True
    if options["args"]:
        body["args"] = [word for text in options["args"] for word in shlex.split(text)]
    if options["env"]:
        body["env"] = env_pairs(options["env"])
    if options["secrets"]:
        body["secrets"] = list(options["secrets"])
    if options["notify"]:
        body["notify"] = list(options["notify"])
    notify_on = options["notify_on"]
    if notify_on is not None:
        body["notify_on"] = [word.strip() for word in notify_on.split(",") if word.strip()]
    return body


def _send_folder(
    client: Any,
    body: dict[str, Any],
    options: Mapping[str, Any],
    job_path: str,
    given: str | None,
    default: str | None,
) -> None:
    """Upload ``--project-dir`` (as for deploys: the server never reads this machine's folder)
    and name the upload in ``body`` instead of the folder."""
    folder: Path | None = options["project_dir"]
    if folder is None:
        return
    from modelyard.cli.uploading import check_kept, upload_folder, upload_project

    named = ("script", "monitor", "requirements")
    check_kept(folder.resolve(), {name: options.get(name) for name in named})
    body.pop("project", None)
    where = upload_project(client, job_path, given, default)
    body["upload"] = upload_folder(client, folder.resolve(), where).id


def _job_options(required: bool) -> Callable[[F], F]:
    """The definition options shared by ``create`` and ``update``."""

    def decorate(fn: F) -> F:
        options = [
            click.option(
                "--project-dir",
                "project_dir",
                type=click.Path(exists=True, file_okay=False, path_type=Path),
                required=required,
                help="The job's folder (packed here and uploaded to the server).",
            ),
            click.option("--script", default=None, help="Script to run, inside the project."),
            click.option(
                "--monitor",
                default=None,
                metavar="SPEC",
                help="Instead of --script: run the monitor spec SPEC (a YAML file in the "
                "project) with 'python -m modelyard.monitors run SPEC'.",
            ),
            click.option(
                "--requirements",
                default=None,
                metavar="FILE",
                help="Requirements file inside the project: runs use its environment (built "
                "once, reused while the requirements stay the same, as for model builds).",
            ),
            click.option(
                "--args",
                "args",
                multiple=True,
                help="Arguments for the script, split like a shell does ('--window 1d').",
            ),
            click.option("--cron", default=None, help="Schedule: five cron fields, '*/5 * * * *'."),
            click.option("--timezone", default=None, help="Time zone of --cron (default UTC)."),
            click.option("--every", default=None, help="Schedule: an interval such as 30s or 1h."),
            click.option("--after", default=None, help="Schedule: after each success of PARENT."),
            click.option("--manual", is_flag=True, help="Schedule: only when run by hand."),
            click.option("--timeout", default=None, help="Kill a run after this (default 1h)."),
            click.option("--retries", type=int, default=None, help="Retries of a failed run."),
            click.option("--retry-backoff", default=None, help="First retry wait (default 30s)."),
            click.option("--env", "env", multiple=True, help="K=V added to each run's env."),
            *_RESOURCE_OPTIONS,
            click.option(
                "--secret",
                "secrets",
                multiple=True,
                metavar="NAME",
                help="A project secret (modelyard secrets set NAME) each run gets as environment "
                "variable NAME; repeatable (update: replaces the list).",
            ),
            click.option(
                "--overlap",
                type=click.Choice(["skip", "queue", "allow"]),
                default=None,
                help="A slot while a run goes: skip (default), queue or allow.",
            ),
            click.option(
                "--catch-up",
                "catch_up",
                type=click.Choice(["none", "latest", "all"]),
                default=None,
                help="Slots missed while no server ran: none, latest (default) or all.",
            ),
            click.option(
                "--notify", multiple=True, help="Webhook URL or e-mail address (repeatable)."
            ),
            click.option(
                "--notify-on",
                default=None,
                help="Comma-separated outcomes: failure,timeout,success,cancelled.",
            ),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


# What each run may use (docs/resources.md), on create and update.
_RESOURCE_OPTIONS = [
    click.option(
        "--cpus",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="CPUs each run may use (enforced; docs/resources.md).",
    ),
    click.option("--memory", default=None, help="Memory each run may use, e.g. 2G."),
    click.option(
        "--gpus",
        type=click.IntRange(0, 64),
        default=None,
        help="Whole GPUs each run gets exclusively (CUDA_VISIBLE_DEVICES).",
    ),
    click.option("--accelerator", default=None, help="GPU type for --gpus, e.g. A100."),
]


def _schedule(job: dict[str, Any]) -> str:
    kind = job.get("schedule")
    if kind == "cron":
        zone = job.get("timezone") or "UTC"
        return f"cron {job['cron']}" + ("" if zone == "UTC" else f" ({zone})")
    if kind == "every":
        return f"every {job['every_ms'] / 1000:g}s"
    if kind == "after":
        return f"after {job['after']}"
    return "manual"


def _print_job(job: dict[str, Any], warnings: list[str], as_json: bool) -> None:
    if as_json:
        print_json({"job": job, "warnings": warnings})
    else:
        print_mapping(f"Job {job['name']}", _readable(job))
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


def _readable(job: dict[str, Any]) -> dict[str, Any]:
    """A job for a table: its schedule in words first, without the UTC copies of its times."""
    shown = {"schedule": _schedule(job), **job}
    for key in _UTC_COPIES:
        shown.pop(key, None)
    return shown


def _print_run(run: dict[str, Any], title: str, as_json: bool) -> None:
    if as_json:
        print_json(run)
    else:
        print_mapping(title, {k: v for k, v in run.items() if k not in _UTC_COPIES})


@click.group()
def jobs() -> None:
    """Recurring, dependent and manual jobs: define them, run them, read their runs and logs."""


@jobs.command()
@click.argument("name")
@_job_options(required=True)
@project_option()
@_JSON
def create(name: str, project: str | None, as_json: bool, **options: Any) -> None:
    """Define job NAME: a script (or --monitor SPEC) and exactly one schedule (--cron, --every,
    --after or --manual). Bad input changes nothing; an unreachable webhook is a warning."""
    # The schedule is checked first in the words of the options; the rest by the spec.
    body = {"name": name, **_options(options)}
    given = [
        f"--{k.replace('_ms', '')}" for k in ("cron", "every_ms", "after", "manual") if k in body
    ]
    if len(given) != 1:
        raise InvalidInput(
            f"job {name!r} needs exactly one schedule, got {', '.join(given) or 'none'}; give one "
            "of --cron '*/5 * * * *' [--timezone Europe/Paris], --every 30s, --after PARENT or "
            "--manual"
        )
    from modelyard.specs.job import JobSpec  # pydantic loads only for this command

    spec = JobSpec(**body)  # checked here as the server checks it: bad input sends nothing
    sent = {k: v for k, v in spec.model_dump(mode="json").items() if v is not None}
    client, params = connect(), project_params(project)
    _send_folder(client, sent, options, _job_path(name), project, params.get("project"))
    answer = client.call("POST", "/api/v1/jobs", sent, params=params)
    _print_job(answer["job"], answer["warnings"], as_json)


@jobs.command()
@click.argument("name")
@_job_options(required=False)
@_JSON
def update(name: str, as_json: bool, **options: Any) -> None:
    """Change the options given; a schedule option replaces the whole schedule."""
    body = _options(options)
    if not body:
        raise InvalidInput(
            f"nothing to change for job {name!r}; give at least one option (see "
            "'modelyard jobs update --help')"
        )
    client = connect()
    _send_folder(client, body, options, _job_path(name), None, None)
    answer = client.call("PATCH", _job_path(name), body)
    _print_job(answer["job"], answer["warnings"], as_json)


@jobs.command("list")
@project_option(listing=True)
@_JSON
def list_jobs(project: str | None, all_projects: bool, as_json: bool) -> None:
    """Every job (of the project) with its schedule, next run time and last run."""
    params = project_params(project, all_projects)
    found = connect().call("GET", "/api/v1/jobs", params=params)["jobs"]
    if as_json:
        print_json(found)
        return
    rows = []
    for job in found:
        last = job.get("last_run") or {}
        rows.append(
            [
                job["name"],
                _schedule(job),
                "yes" if job["paused"] else "",
                job.get("next_run_ms"),
                last.get("state"),
                last.get("slot_ms"),
                "yes" if job["builtin"] else "",
            ]
        )
    columns = ["name", "schedule", "paused", "next_run_ms", "last run", "last_slot_ms", "built in"]
    print_rows("Jobs", columns, rows)


@jobs.command()
@click.argument("name")
@_JSON
def show(name: str, as_json: bool) -> None:
    """A job's definition, next run time and last run."""
    job = connect().call("GET", _job_path(name))
    if as_json:
        print_json(job)
    else:
        print_mapping(f"Job {name}", _readable(job))


@jobs.command()
@click.argument("name")
@_JSON
def pause(name: str, as_json: bool) -> None:
    """Start no new runs of a job (runs going on finish)."""
    job = connect().call("POST", _job_path(name, "pause"))
    print_json(job) if as_json else click.echo(f"paused job {job['name']}")


@jobs.command()
@click.argument("name")
@_JSON
def resume(name: str, as_json: bool) -> None:
    """Resume a paused job."""
    job = connect().call("POST", _job_path(name, "resume"))
    if as_json:
        print_json(job)
    else:
        upcoming = job.get("next_run_ms")
        when = "-" if upcoming is None else format_time(upcoming)
        click.echo(f"resumed job {job['name']}; next run {when}")


@jobs.command("run")
@click.argument("name")
@_JSON
def run_now(name: str, as_json: bool) -> None:
    """Run a job now (its overlap policy applies); prints the run."""
    run = connect().call("POST", _job_path(name, "run"))
    _print_run(run, f"Run of {name}", as_json)


@jobs.command()
@click.argument("name")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--state", "states", multiple=True, help="Only runs in this state (repeatable).")
@_JSON
def runs(name: str, limit: int, states: tuple[str, ...], as_json: bool) -> None:
    """A job's runs, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if states:
        params["state"] = list(states)
    found = connect().call("GET", _job_path(name, "runs"), params=params)["runs"]
    if as_json:
        print_json(found)
        return
    rows = [[r.get(field) for field in _RUN_COLUMNS.values()] for r in found]
    print_rows(f"Runs of {name}", list(_RUN_COLUMNS), rows)


@jobs.command("show-run")
@click.argument("run")
@_JSON
def show_run(run: str, as_json: bool) -> None:
    """One run (RUN: its uuid, a prefix of 4+ characters, or its id) with its metrics."""
    found = connect().call("GET", _run_path(run))
    _print_run(found, f"Run {found['uuid']}", as_json)


@jobs.command()
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
    """A run's output (stdout and stderr); RUN is its uuid, a prefix of it, or its id."""
    params: dict[str, Any] = {"follow": follow}
    if tail is not None:
        params["tail"] = tail
    client = connect()
    lines = client.lines(_run_path(run, "logs"), params)
    if not as_json:
        for line in lines:
            click.echo(line)
        return
    text = "".join(line + "\n" for line in lines)
    # The state is read after the log, so a followed log comes with the state it ended in.
    found = client.call("GET", _run_path(run))
    print_json({"run": found["id"], "state": found["state"], "log": text})


@jobs.command()
@click.argument("run")
@_JSON
def cancel(run: str, as_json: bool) -> None:
    """Cancel a queued or running run (its whole process group is killed); RUN as in logs."""
    found = connect().call("POST", _run_path(run, "cancel"), timeout=None)
    if as_json:
        print_json(found)
    else:
        click.echo(f"run {found['uuid']} of job {found['job']}: {found['state']}")


@jobs.command()
@click.argument("name")
@_JSON
def delete(name: str, as_json: bool) -> None:
    """Delete a job with its runs (built-in jobs can only be paused)."""
    answer = connect().call("DELETE", _job_path(name))
    print_json(answer) if as_json else click.echo(f"deleted job {answer['deleted']}")
