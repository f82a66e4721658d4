"""``modelyard models``: deploy and operate models on a Modelyard server (over its REST API).

The folder to deploy (``--project-dir``) is packed here and uploaded (only the files the server
lacks, ``cli.uploading``), so the server may run on this machine or any other. ``--project``
names the Modelyard project a new model goes into (``?project=``; default: ``modelyard
projects use``, else the server's default project) and filters ``list``; a model's name is
unique on the server, so commands naming a model need no project.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import orjson

from modelyard.cli.args import env_pairs
from modelyard.cli.client import connect
from modelyard.cli.config import project_names, project_option, project_params
from modelyard.cli.output import json_option, print_json, print_mapping, print_rows
from modelyard.errors import InvalidInput, ModelyardError

__all__ = ["models"]

_JSON = json_option()


def _path(name: str, *rest: str) -> str:
    return "/api/v1/models/" + "/".join(quote(p, safe="") for p in (name, *rest))


def _json_arg(text: str, what: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{what}={text!r} is not JSON ({exc}); give a JSON document") from None


def _model_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The ``ModelSettings`` fields the deploy options set (what is not given is left out)."""
    chosen: dict[str, Any] = {
        "batch_function": options["batch_function"],
        "concurrency": options["concurrency"],
        "request_timeout_s": options["timeout"],
    }
    settings = {k: v for k, v in chosen.items() if v is not None}
    if options["no_auth"]:
        settings["auth_required"] = False
    if options["track_io"]:
        settings["track_io"] = True
    if options["debug"]:
        settings["debug"] = True
    if options["no_retry"]:
        settings["retry"] = False
    return settings


@click.group()
def models() -> None:
    """Deploy and operate models on the server (--project-dir is uploaded to it)."""


@models.command()
@click.argument("name")
@click.option(
    "--project-dir",
    "project_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder to deploy (packed here and uploaded to the server); optional with --mlflow, "
    "--onnx or --sklearn (then only the model is sent).",
)
@click.option("--mlflow", default=None, help="Serve an MLflow model folder (path or URI).")
@click.option("--onnx", default=None, help="Serve an .onnx file with onnxruntime.")
@click.option("--sklearn", default=None, help="Serve a scikit-learn .skops (or pickle) file.")
@click.option(
    "--trust-pickle",
    is_flag=True,
    help="Allow a pickle/joblib --sklearn file: loading it runs any code it names.",
)
@click.option(
    "--trust-type",
    "trusted_types",
    multiple=True,
    metavar="TYPE",
    help="A type the .skops file may hold beyond those skops trusts; repeatable.",
)
@click.option(
    "--from-run",
    default=None,
    metavar="RUN",
    help="Add the files an experiment run kept to the folder built.",
)
@project_option()
@click.option("--file", "file", default="predict.py", show_default=True, help="Python file.")
@click.option("--function", default="predict", show_default=True, help="Function to serve.")
@click.option("--example", default=None, help="Example input (JSON) for the build's smoke test.")
@click.option(
    "--requirements",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="requirements.txt inside the project.",
)
@click.option("--replicas", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--env", "env", multiple=True, help="K=V added to each replica's environment.")
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="NAME",
    help="A project secret (modelyard secrets set NAME) each replica gets as environment "
    "variable NAME; repeatable.",
)
@click.option("--memory", default=None, help="Memory limit per replica, e.g. 512M.")
@click.option(
    "--cpus",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="CPUs per replica, enforced (local: cgroup v2 cpu.max, else CPU affinity in whole "
    "CPUs; Ray: the actor's request). See docs/resources.md.",
)
@click.option(
    "--gpus",
    type=click.IntRange(0, 64),
    default=None,
    help="Whole GPUs per replica, each replica's own (CUDA_VISIBLE_DEVICES); a model setting.",
)
@click.option("--accelerator", default=None, help="GPU type for --gpus, e.g. A100.")
@click.option("--batch-function", default=None, help="Function taking a list of inputs.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=None, help="Calls at once.")
@click.option("--timeout", type=float, default=None, help="Request timeout in seconds.")
@click.option("--no-auth", is_flag=True, help="Accept calls without an API key.")
@click.option("--track-io", is_flag=True, help="Record inputs and outputs as metrics.")
@click.option("--debug", is_flag=True, help="Tracebacks in error answers.")
@click.option(
    "--no-retry",
    is_flag=True,
    help="Never resend a request whose replica died before answering (502 instead): for "
    "functions that must not run twice.",
)
@_JSON
def deploy(name: str, as_json: bool, **options: Any) -> None:
    """Create the model if new, build the project and deploy it (rolling, no downtime)."""
    from modelyard.cli.importing import import_source
    from modelyard.cli.uploading import (
        check_kept,
        relative_requirements,
        upload_folder,
        upload_project,
    )
    from modelyard.specs.deploy import DeploySpec  # pydantic loads only for this command

    source = import_source(options)  # what is uploaded, and the model's path inside it
    with source:  # a temporary folder made for a lone model file goes at the end
        project_dir = source.folder
        spec = DeploySpec(  # checked here as the server reads it: bad input sends nothing
            upload="(sent next)",
            from_run=options["from_run"],
            model_format=source.model_format,  # type: ignore[arg-type]  # checked by the spec
            model_path=source.model_path,
            trust_pickle=options["trust_pickle"],
            trusted_types=options["trusted_types"],
            file=options["file"],
            function=options["function"],
            example=None
            if options["example"] is None
            else _json_arg(options["example"], "--example"),
            requirements=relative_requirements(options["requirements"], project_dir),
            replicas=options["replicas"],
            env=env_pairs(options["env"]),
            memory=options["memory"],
            cpus=options["cpus"],
            gpus=options["gpus"],
            accelerator=options["accelerator"],
            settings=_model_settings(options),
            secrets=options["secrets"],
        )
        body = {k: v for k, v in spec.model_dump(mode="json").items() if v is not None}
        kept = {"requirements": spec.requirements}
        if spec.model_format is None:
            kept["file"] = spec.file
        check_kept(project_dir, kept)
        client = connect()
        # Always uploaded, even to a server on this machine: the server never reads our folder.
        params = project_params(options["project"])
        where = upload_project(client, _path(name), options["project"], params.get("project"))
        body["upload"] = upload_folder(client, project_dir, where).id
        try:
            outcome = client.call(
                "POST",
                _path(name, "deploy"),
                body,
                params=params,
                timeout=None,
            )
        except ModelyardError as exc:
            if exc.code == "deploy_failed" and exc.details:
                _print_failed(exc.details, as_json)
            raise
        _print_outcome(outcome, as_json, batching=True)


def _ids(outcome: dict[str, Any]) -> dict[str, Any]:
    def crn(part: Any) -> Any:
        return part.get("crn") if isinstance(part, dict) else part

    return {
        "ok": outcome.get("ok", True),
        "model": crn(outcome.get("model")),
        "build": crn(outcome.get("build")),
        "deployment": crn(outcome.get("deployment")),
        "access_key": outcome.get("access_key"),
    }


def _print_outcome(outcome: dict[str, Any], as_json: bool, batching: bool = False) -> None:
    """The outcome's ids (all of it with --json); a deploy also says which batch function its
    replicas serve, and its warnings go to stderr so --json output stays JSON."""
    for warning in outcome.get("warnings") or ():
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        print_json(outcome)
        return
    shown = _ids(outcome)
    if shown["access_key"] is None:
        shown["access_key"] = "(unchanged; 'modelyard models rotate-key' makes a new one)"
    if batching:
        name = outcome.get("batch_function")
        if name is None:
            shown["batch function"] = "none: each call runs the function alone"
        elif outcome.get("batch_function_auto"):
            shown["batch function"] = f"{name} (found in the file; it serves every call)"
        else:
            shown["batch function"] = f"{name} (--batch-function)"
    print_mapping("Deployed", shown)


def _print_failed(details: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(details)
        return
    shown = _ids(details)
    if shown["access_key"] is None:
        shown.pop("access_key")
    print_mapping("Deploy failed", shown)


@models.command("list")
@project_option(listing=True)
@_JSON
def list_models(project: str | None, all_projects: bool, as_json: bool) -> None:
    """Every model (of the project) with its active deployment."""
    params = project_params(project, all_projects)
    client = connect()
    found = client.call("GET", "/api/v1/models", params=params)["models"]
    if as_json:
        print_json(found)
        return
    names = project_names(client) if found else {}
    rows = []
    for m in found:
        active = m.get("active_deployment") or {}
        crn = m.get("project_crn")
        shown = names.get(crn, crn) if isinstance(crn, str) else None
        rows.append([m["name"], m["crn"], active.get("crn"), active.get("replicas"), shown])
    print_rows("Models", ["name", "crn", "active deployment", "replicas", "project"], rows)


@models.command()
@click.argument("name")
@_JSON
def show(name: str, as_json: bool) -> None:
    """A model: settings, active deployment, replicas."""
    status = connect().call("GET", _path(name))
    if as_json:
        print_json(status)
        return
    print_mapping(f"Model {name}", status)


@models.command()
@click.argument("name")
@_JSON
def builds(name: str, as_json: bool) -> None:
    """Builds of a model, newest first."""
    found = connect().call("GET", _path(name, "builds"))["builds"]
    if as_json:
        print_json(found)
        return
    from modelyard.cli.importing import source_text

    rows = [
        [b["crn"], b["ok"], b["file"], b["function"], b["created_ms"], source_text(b.get("source"))]
        for b in found
    ]
    columns = ["crn", "ok", "file", "function", "created_ms", "source"]
    print_rows(f"Builds of {name}", columns, rows)


@models.command()
@click.argument("name")
@click.option(
    "--build",
    default=None,
    help="Build CRN, uuid or unambiguous uuid prefix (default: the previous deployment's).",
)
@_JSON
def rollback(name: str, build: str | None, as_json: bool) -> None:
    """Deploy an earlier build again (no rebuild)."""
    outcome = connect().call("POST", _path(name, "rollback"), {"build": build}, timeout=None)
    _print_outcome(outcome, as_json)


@models.command()
@click.argument("name")
@click.argument("replicas", type=click.IntRange(0, 256))
@_JSON
def scale(name: str, replicas: int, as_json: bool) -> None:
    """Change the number of replicas."""
    _print_result(
        "Scaled",
        connect().call("POST", _path(name, "scale"), {"replicas": replicas}, timeout=None),
        as_json,
    )


@models.command()
@click.argument("name")
@_JSON
def stop(name: str, as_json: bool) -> None:
    """Stop every replica (calls get 503 until started)."""
    _print_result("Stopped", connect().call("POST", _path(name, "stop"), timeout=None), as_json)


@models.command()
@click.argument("name")
@_JSON
def start(name: str, as_json: bool) -> None:
    """Start the latest stopped deployment again."""
    _print_result("Started", connect().call("POST", _path(name, "start"), timeout=None), as_json)


@models.command()
@click.argument("name")
@_JSON
def delete(name: str, as_json: bool) -> None:
    """Stop and delete a model with its builds and deployments (its metrics stay)."""
    connect().call("DELETE", _path(name), timeout=None)
    if as_json:
        print_json({"model": name, "deleted": True})
    else:
        click.echo(f"deleted model {name}")


@models.command("rotate-key")
@click.argument("name")
@_JSON
def rotate_key(name: str, as_json: bool) -> None:
    """A new access key for a model; the old one stops working."""
    answer = connect().call("POST", _path(name, "rotate-key"))
    if as_json:
        print_json(answer)
    else:
        click.echo(answer["access_key"])


@models.command()
@click.argument("name")
@click.option("--replica", default=None, help="Replica id (default: all).")
@click.option("--tail", type=click.IntRange(0, 100_000), default=200, show_default=True)
@click.option("--follow", is_flag=True, help="Keep printing new lines until the replica stops.")
def logs(name: str, replica: str | None, tail: int, follow: bool) -> None:
    """Replica logs of a model's active deployment."""
    params: dict[str, Any] = {"tail": tail, "follow": follow}
    if replica is not None:
        params["replica"] = replica
    for line in connect().lines(_path(name, "logs"), params):
        click.echo(line)


@models.command()
@click.argument("name")
@click.argument("request")
@click.option("--json", "as_json", is_flag=True, help="Print the answer envelope as JSON.")
def predict(name: str, request: str, as_json: bool) -> None:
    """Call a model with REQUEST (JSON) and print its answer envelope (exit 1 if it failed)."""
    _json_arg(request, "REQUEST")
    _, answer = connect().envelope(_path(name, "predict"), request.encode())
    ok = isinstance(answer, dict) and answer.get("success") is True
    if as_json or not isinstance(answer, dict):
        print_json(answer)
    else:
        print_mapping(f"{name}: {'answer' if ok else 'failed'}", answer)
    if not ok:
        sys.exit(1)  # the envelope above says what failed


def _print_result(title: str, result: Any, as_json: bool) -> None:
    if as_json:
        print_json(result)
    elif isinstance(result, dict):
        print_mapping(title, result)
    else:
        click.echo(f"{title}: {result}")
