"""The Kubernetes manifests of ``modelyard export kubernetes``, as plain data.

Each function returns one object as the dict ``kubectl apply`` reads (built here, never templated
text); :func:`manifests` returns them all with the file each goes to, and
:func:`kustomization` lists those files. The server runs as one pod (a Deployment with
``Recreate``: the home is a ReadWriteOnce volume, and a SQLite home must never have two writers):

- the home (database unless PostgreSQL, journal, builds, logs) on a PersistentVolumeClaim;
- the PostgreSQL URL, when used, from a Secret the operator creates (key ``database-url``);
- the admin key and the secrets key in the Secret ``<name>-secrets``, mounted as a file
  (``MODELYARD_ADMIN_KEY_FILE``) and an environment variable (``MODELYARD_SECRETS_KEY``);
- probes on ``/healthz``, resource requests, a non-root read-only container with no
  capabilities, no service account token and no service links (they would set
  ``MODELYARD_PORT`` and friends in the server's environment).

With ``ray``, a KubeRay ``RayCluster`` (``ray.io/v1``) with token authentication runs the Ray
runtime: KubeRay creates its token Secret (named after the cluster, key ``auth_token``) and the
server mounts it. The Ray pods run the same image, which must hold ``modelyard[ray]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "HOME_PATH",
    "PORT",
    "RAY_VERSION",
    "KubeOptions",
    "deployment",
    "home_claim",
    "kustomization",
    "manifests",
    "ray_cluster",
    "secret",
    "server_command",
    "service",
]

PORT = 8765
HOME_PATH = "/var/lib/modelyard"
RAY_VERSION = "2.60.0"  # the version pinned by the ray extra: driver and cluster must match
_SECRETS_PATH = "/etc/modelyard/secrets"
_RAY_TOKEN_PATH = "/etc/modelyard/ray"
_UID = 10001

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class KubeOptions:
    """What the export writes. ``postgres_secret``: the name of a Secret with key
    ``database-url`` (None: SQLite in the home). ``ray_workers``: CPU worker pods of the
    RayCluster; ``ray_gpu_workers``: worker pods with one NVIDIA GPU each (0: none)."""

    image: str
    name: str = "modelyard"
    postgres_secret: str | None = None
    ray: bool = False
    storage: str = "20Gi"
    cpu: str = "1"
    memory: str = "2Gi"
    ray_workers: int = 1
    ray_gpu_workers: int = 0

    @property
    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": "modelyard", "app.kubernetes.io/instance": self.name}

    @property
    def ray_cluster(self) -> str:
        return f"{self.name}-ray"


def manifests(opts: KubeOptions, secrets: dict[str, str]) -> list[tuple[str, Obj]]:
    """(file name, object) for every object: ``secrets`` holds ``admin-key`` and
    ``secrets-key`` (the values of the Secret)."""
    found = [
        ("deployment.yaml", deployment(opts)),
        ("service.yaml", service(opts)),
        ("pvc.yaml", home_claim(opts)),
        ("secret.yaml", secret(opts, secrets)),
    ]
    if opts.ray:
        found.append(("raycluster.yaml", ray_cluster(opts)))
    return found


def kustomization(files: list[str]) -> Obj:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": files,
        "labels": [{"pairs": {"app.kubernetes.io/part-of": "modelyard"}}],
    }


def _meta(opts: KubeOptions, name: str) -> Obj:
    return {"name": name, "labels": dict(opts.labels)}


def secret(opts: KubeOptions, values: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(opts, f"{opts.name}-secrets"),
        "type": "Opaque",
        "stringData": dict(values),
    }


def home_claim(opts: KubeOptions) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(opts, f"{opts.name}-home"),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": opts.storage}},
        },
    }


def service(opts: KubeOptions) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(opts, opts.name),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(opts.labels),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _probe(period: int, failures: int) -> Obj:
    return {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _container_security() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security() -> Obj:
    return {
        "runAsUser": _UID,
        "runAsGroup": _UID,
        "fsGroup": _UID,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _server_env(opts: KubeOptions) -> list[Obj]:
    secrets = f"{opts.name}-secrets"
    env: list[Obj] = [
        {"name": "HOME", "value": "/tmp"},  # pip's and the CLI's caches: the root is read-only
        {"name": "MODELYARD_ADMIN_KEY_FILE", "value": f"{_SECRETS_PATH}/admin-key"},
        {
            "name": "MODELYARD_SECRETS_KEY",
            "valueFrom": {"secretKeyRef": {"name": secrets, "key": "secrets-key"}},
        },
    ]
    if opts.postgres_secret:
        ref = {"name": opts.postgres_secret, "key": "database-url"}
        env.append({"name": "MODELYARD_DATABASE_URL", "valueFrom": {"secretKeyRef": ref}})
    if opts.ray:
        head = f"{opts.ray_cluster}-head-svc"
        env += [
            {"name": "MODELYARD_RUNTIME", "value": "ray"},
            {"name": "MODELYARD_RAY_ADDRESS", "value": f"{head}:6379"},
            {"name": "MODELYARD_RAY_DASHBOARD_URL", "value": f"http://{head}:8265"},
            {"name": "MODELYARD_RAY_AUTH_TOKEN_PATH", "value": f"{_RAY_TOKEN_PATH}/auth_token"},
            {"name": "RAY_AUTH_MODE", "value": "token"},
        ]
    return env


def _server_volumes(opts: KubeOptions) -> tuple[list[Obj], list[Obj]]:
    mode = 0o440  # root:fsGroup, readable by the server's group only
    volumes: list[Obj] = [
        {"name": "home", "persistentVolumeClaim": {"claimName": f"{opts.name}-home"}},
        {"name": "tmp", "emptyDir": {}},
        {
            "name": "secrets",
            "secret": {
                "secretName": f"{opts.name}-secrets",
                "defaultMode": mode,
                "items": [{"key": "admin-key", "path": "admin-key"}],
            },
        },
    ]
    mounts: list[Obj] = [
        {"name": "home", "mountPath": HOME_PATH},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "secrets", "mountPath": _SECRETS_PATH, "readOnly": True},
    ]
    if opts.ray:
        token = {"secretName": opts.ray_cluster, "defaultMode": mode}
        volumes.append({"name": "ray-token", "secret": token})
        mounts.append({"name": "ray-token", "mountPath": _RAY_TOKEN_PATH, "readOnly": True})
    return volumes, mounts


def server_command(opts: KubeOptions) -> list[str]:
    """The server container's command: every address, the home and the URL the runs use."""
    return [
        "modelyard",
        "server",
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--home",
        HOME_PATH,
        "--url",
        f"http://{opts.name}:{PORT}",
    ]


def deployment(opts: KubeOptions) -> Obj:
    volumes, mounts = _server_volumes(opts)
    container = {
        "name": "server",
        "image": opts.image,
        "command": server_command(opts),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": _server_env(opts),
        "volumeMounts": mounts,
        # A start restores every active deployment (builds included): give it 10 minutes.
        "startupProbe": _probe(period=5, failures=120),
        "livenessProbe": _probe(period=10, failures=3),
        "readinessProbe": _probe(period=5, failures=2),
        "resources": {
            "requests": {"cpu": opts.cpu, "memory": opts.memory},
            "limits": {"memory": opts.memory},
        },
        "securityContext": _container_security(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(opts, opts.name),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": dict(opts.labels)},
            "template": {
                "metadata": {"labels": dict(opts.labels)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": _pod_security(),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def _ray_pod(opts: KubeOptions, name: str, resources: Obj, ports: list[Obj]) -> Obj:
    container: Obj = {
        "name": name,
        "image": opts.image,
        "resources": resources,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": {**_container_security(), "readOnlyRootFilesystem": False},
    }
    if ports:
        container["ports"] = ports
    return {
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": _pod_security(),
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        }
    }


def _worker_group(opts: KubeOptions, group: str, replicas: int, gpus: int) -> Obj:
    size: Obj = {"cpu": "2", "memory": "8Gi"}
    limits = {**size, **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    return {
        "groupName": group,
        "replicas": replicas,
        "minReplicas": replicas,
        "maxReplicas": replicas,
        "rayStartParams": {},
        "template": _ray_pod(opts, "ray-worker", {"requests": size, "limits": limits}, []),
    }


def ray_cluster(opts: KubeOptions) -> Obj:
    """The KubeRay cluster: a head that runs no work (``num-cpus: 0``), CPU workers and,
    if asked, GPU workers; token authentication on the dashboard, Jobs API and RPCs."""
    ports = [
        {"name": "gcs", "containerPort": 6379},
        {"name": "dashboard", "containerPort": 8265},
    ]
    head = {"cpu": "1", "memory": "4Gi"}
    groups = [_worker_group(opts, "cpu", opts.ray_workers, 0)]
    if opts.ray_gpu_workers:
        groups.append(_worker_group(opts, "gpu", opts.ray_gpu_workers, 1))
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": _meta(opts, opts.ray_cluster),
        "spec": {
            "rayVersion": RAY_VERSION,
            "authOptions": {"mode": "token"},
            "headGroupSpec": {
                "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
                "template": _ray_pod(
                    opts,
                    "ray-head",
                    {"requests": head, "limits": {"memory": head["memory"]}},
                    ports,
                ),
            },
            "workerGroupSpecs": groups,
        },
    }
