"""``modelyard export kubernetes``: write the manifests that run Modelyard on a cluster."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import click
import yaml
from cryptography.fernet import Fernet

from modelyard.cli.kube_manifests import KubeOptions, kustomization, manifests
from modelyard.cli.output import json_option, print_json, print_rows
from modelyard.errors import Conflict, InvalidInput
from modelyard.version import package_version

__all__ = ["export"]

_NAME = re.compile(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?")  # a DNS label short enough for suffixes
_SECRET_FILE = "secret.yaml"


@click.group()
def export() -> None:
    """Write what runs Modelyard elsewhere (Kubernetes manifests)."""


@export.command("kubernetes")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--image",
    default=None,
    help="Container image holding modelyard (and modelyard[ray] with --ray); "
    "default modelyard:<this version>.",
)
@click.option("--name", default="modelyard", show_default=True, help="Name of every object.")
@click.option(
    "--postgres-secret",
    default=None,
    help="Secret (key database-url) with the PostgreSQL URL; default: SQLite in the home volume.",
)
@click.option("--ray", is_flag=True, help="Add a KubeRay RayCluster and run the Ray runtime.")
@click.option("--ray-workers", type=click.IntRange(0, 1000), default=1, show_default=True)
@click.option("--ray-gpu-workers", type=click.IntRange(0, 1000), default=0, show_default=True)
@click.option("--storage", default="20Gi", show_default=True, help="Size of the home volume.")
@click.option("--force", is_flag=True, help="Overwrite the files in a non-empty --out.")
@json_option()
def kubernetes(  # noqa: PLR0913 - one parameter per command-line option
    out: Path,
    image: str | None,
    name: str,
    postgres_secret: str | None,
    ray: bool,
    ray_workers: int,
    ray_gpu_workers: int,
    storage: str,
    force: bool,
    as_json: bool,
) -> None:
    """Write Kubernetes manifests and a kustomization into --out (apply: kubectl apply -k OUT).

    \b
    The server's Deployment, Service, home PersistentVolumeClaim and a Secret with a new
    admin key and secrets key (secret.yaml, mode 0600: keep it out of version control; a
    re-export with --force keeps it); with --ray a KubeRay RayCluster with token auth.
    Nothing is sent to a cluster. See docs/kubernetes.md.
    """
    for what, value in (("--name", name), ("--postgres-secret", postgres_secret)):
        if value is not None and not _NAME.fullmatch(value):
            raise InvalidInput(
                f"{what}={value!r} is not a Kubernetes name; accepted: 1 to 40 lower-case "
                "letters, digits and '-', starting with a letter, not ending with '-'"
            )
    if ray_gpu_workers and not ray:
        raise InvalidInput(f"--ray-gpu-workers={ray_gpu_workers} needs --ray; add --ray")
    opts = KubeOptions(
        image=image or f"modelyard:{package_version()}",
        name=name,
        postgres_secret=postgres_secret,
        ray=ray,
        storage=storage,
        ray_workers=ray_workers,
        ray_gpu_workers=ray_gpu_workers,
    )
    written = write(out, opts, force=force)
    rows = [{"file": str(out / f), "kind": k, "name": n} for f, k, n in written]
    if as_json:
        print_json(rows)
    else:
        print_rows(
            f"Wrote {out} (apply: kubectl apply -k {out})",
            ["file", "kind", "name"],
            [[r["file"], r["kind"], r["name"]] for r in rows],
        )


def write(out: Path, opts: KubeOptions, *, force: bool) -> list[tuple[str, str, str]]:
    """Write every file into a fresh folder beside ``out``, then move them in: nothing
    half-written on failure. Returns (file, kind, name) per file."""
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out={str(out)!r} is a file; accepted: a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise Conflict(
            f"--out={str(out)!r} is not empty; accepted: a new or empty folder, or --force to "
            f"overwrite the manifests (its {_SECRET_FILE} is kept)"
        )
    objects = manifests(opts, _secret_values(out / _SECRET_FILE))
    files = [f for f, _ in objects] + ["kustomization.yaml"]
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        for file, obj in [*objects, ("kustomization.yaml", kustomization(files[:-1]))]:
            path = staging / file
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                yaml.safe_dump(obj, handle, sort_keys=False)
            if file != _SECRET_FILE:
                path.chmod(0o644)
        for file in files:
            os.replace(staging / file, out / file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    kinds = [(f, o["kind"], o["metadata"]["name"]) for f, o in objects]
    return [*kinds, ("kustomization.yaml", "Kustomization", "")]


def _secret_values(existing: Path) -> dict[str, str]:
    """The Secret's values: those of an earlier export in the same folder (so a re-export does
    not change the admin key), else new ones."""
    if existing.is_file():
        try:
            found = yaml.safe_load(existing.read_text())["stringData"]
            if {"admin-key", "secrets-key"} <= set(found):
                return {k: str(found[k]) for k in ("admin-key", "secrets-key")}
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            raise InvalidInput(
                f"{existing} is not a Secret written by 'modelyard export kubernetes' ({exc}); "
                "accepted: that file unchanged, or remove it to mint new keys"
            ) from None
    return {
        "admin-key": "myk_" + secrets.token_urlsafe(32),
        "secrets-key": Fernet.generate_key().decode(),
    }
