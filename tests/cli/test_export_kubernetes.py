"""``modelyard export kubernetes``: the manifests validate against Kubernetes 1.37's schemas
(kubernetes-validate, strict) and KubeRay v1.7.0's RayCluster schema (jsonschema, plus a check
that no field would be pruned), render with ``kubectl kustomize``, and the server container's
command and environment start this Modelyard with the admin key from the Secret. No cluster
runs here: nothing is applied."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from _cli import run_main
from _wait import wait_until
from modelyard.cli.kube_manifests import KubeOptions, deployment, ray_cluster
from modelyard.runtime import free_port
from modelyard.settings import SETTINGS

K8S = "1.37.0"
SCHEMA = Path(__file__).parent.parent / "data" / "kuberay" / "raycluster-v1-openapi-schema.json"
FULL = ["--ray", "--postgres-secret", "pg", "--ray-gpu-workers", "1", "--image", "reg/my:1"]


def _export(capsys: pytest.CaptureFixture[str], out: Path, *args: str) -> dict[str, Any]:
    code, stdout, err = run_main(capsys, "export", "kubernetes", "--out", str(out), "--json", *args)
    assert code == 0, err
    written = json.loads(stdout)
    return {Path(r["file"]).name: yaml.safe_load(Path(r["file"]).read_text()) for r in written}


def _pruned(obj: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Fields the API server would drop silently: not in a structural schema's properties."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in schema:
        return []
    found: list[str] = []
    if isinstance(obj, dict) and "properties" in schema:
        for key, value in obj.items():
            if key not in schema["properties"]:
                found.append(f"{where}.{key}")
            else:
                found += _pruned(value, schema["properties"][key], f"{where}.{key}")
    elif isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            found += _pruned(item, schema["items"], f"{where}[{i}]")
    return found


def _check_ray_cluster(obj: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(obj, schema)
    assert _pruned(obj, schema) == []


@pytest.mark.parametrize("args", [[], FULL], ids=["sqlite", "postgres-ray-gpu"])
def test_manifests_validate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str]
) -> None:
    files = _export(capsys, tmp_path / "out", *args)
    kinds = {name: obj["kind"] for name, obj in files.items()}
    for obj in files.values():
        if obj["kind"] == "RayCluster":
            _check_ray_cluster(obj)
        elif obj["kind"] != "Kustomization":
            kubernetes_validate.validate(obj, K8S, strict=True)
    assert sorted(files["kustomization.yaml"]["resources"]) == sorted(
        set(files) - {"kustomization.yaml"}
    )
    pod = files["deployment.yaml"]["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert {
        p["httpGet"]["path"]
        for p in (server[k] for k in ("startupProbe", "livenessProbe", "readinessProbe"))
    } == {"/healthz"}
    assert server["resources"]["requests"] and pod["securityContext"]["runAsNonRoot"]
    assert pod["enableServiceLinks"] is False  # MODELYARD_PORT etc. would reach the settings
    env = {e["name"]: e for e in server["env"]}
    if args:
        assert kinds["raycluster.yaml"] == "RayCluster"
        assert env["MODELYARD_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "pg"
        ray = files["raycluster.yaml"]["spec"]
        assert ray["authOptions"] == {"mode": "token"} and ray["rayVersion"] == "2.60.0"
        gpu = ray["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["resources"]
        assert gpu["limits"]["nvidia.com/gpu"] == "1"
        assert server["image"] == "reg/my:1"
    else:
        assert "raycluster.yaml" not in files and "MODELYARD_DATABASE_URL" not in env
        # Every setting the server is given exists (the Ray ones are checked by the Ray work).
        known = {s.env for s in SETTINGS.values()}
        assert {n for n in env if n.startswith("MODELYARD_")} <= known


def test_validators_can_fail() -> None:
    """The checks above are not vacuous: a misspelt field fails each of them."""
    bad = deployment(KubeOptions(image="x"))
    bad["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S, strict=True)
    cluster = ray_cluster(KubeOptions(image="x", ray=True))
    cluster["spec"]["authOptions"]["mode"] = "tokens"
    with pytest.raises(jsonschema.ValidationError, match="tokens"):
        _check_ray_cluster(cluster)
    cluster = ray_cluster(KubeOptions(image="x", ray=True))
    cluster["spec"]["authOption"] = {"mode": "token"}
    with pytest.raises(AssertionError, match="authOption"):
        _check_ray_cluster(cluster)


def test_secret_is_private_and_kept(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _export(capsys, out)["secret.yaml"]["stringData"]
    assert first["admin-key"].startswith("myk_") and len(first["admin-key"]) >= 47
    assert stat.S_IMODE((out / "secret.yaml").stat().st_mode) == 0o600
    code, _, err = run_main(capsys, "export", "kubernetes", "--out", str(out))
    assert code == 2 and "is not empty" in err and "--force" in err
    again = _export(capsys, out, "--force", "--ray")
    assert again["secret.yaml"]["stringData"] == first and "raycluster.yaml" in again
    assert sorted(p.name for p in out.iterdir()) == sorted(again)  # no staging folder left
    code, _, err = run_main(
        capsys, "export", "kubernetes", "--out", str(tmp_path / "o2"), "--name", "My_App"
    )
    assert code == 2 and "'My_App' is not a Kubernetes name" in err
    code, _, err = run_main(
        capsys, "export", "kubernetes", "--out", str(tmp_path / "o3"), "--ray-gpu-workers", "1"
    )
    assert code == 2 and "needs --ray" in err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed here")
def test_kubectl_kustomize_renders(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    files = _export(capsys, tmp_path / "out", *FULL)
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path / "out")], capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    objects = [o for o in yaml.safe_load_all(rendered.stdout) if o]
    assert sorted(o["kind"] for o in objects) == sorted(
        o["kind"] for n, o in files.items() if n != "kustomization.yaml"
    )
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "modelyard"
        if obj["kind"] == "RayCluster":
            _check_ray_cluster(obj)
        else:
            kubernetes_validate.validate(obj, K8S, strict=True)


@pytest.mark.slow
def test_container_command_starts_this_server(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The Deployment's command and environment, with the volumes as local folders, start a
    server whose admin key is the Secret's; the probe's /healthz answers."""
    files = _export(capsys, tmp_path / "out")
    secret = files["secret.yaml"]["stringData"]
    server = files["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "admin-key").write_text(secret["admin-key"])
    local = {
        "/var/lib/modelyard": str(tmp_path / "home"),
        "/etc/modelyard/secrets": str(tmp_path / "secrets"),
        "/tmp": str(tmp_path),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    for item in server["env"]:
        value = item.get("value") or secret[item["valueFrom"]["secretKeyRef"]["key"]]
        for path, here in local.items():
            if value == path or value.startswith(path + "/"):
                value = here + value[len(path) :]
                break
        env[item["name"]] = value
    port = free_port()
    argv = [str(Path(sys.executable).parent / "modelyard"), *server["command"][1:]]
    argv = [local.get(a, a) for a in argv]
    argv[argv.index("0.0.0.0")] = "127.0.0.1"
    argv[argv.index("8765")] = str(port)
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: proc.poll() is not None or _answers(base + "/healthz"), timeout_s=60)
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        auth = {"Authorization": f"Bearer {secret['admin-key']}"}
        assert httpx.get(f"{base}/api/v1/models", headers=auth).status_code == 200
        assert not (tmp_path / "home" / "admin.key").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
