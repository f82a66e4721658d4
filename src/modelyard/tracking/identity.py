"""Which (model, build, deployment) a process records under.

Three cases, checked in this order:

1. Inside a replica or job the runtime sets ``MODELYARD_DEPLOYMENT_CRN`` (and usually
   ``MODELYARD_BUILD_CRN`` and ``MODELYARD_MODEL_CRN``). A missing model or build CRN is derived
   from the deployment CRN with uuid5, so the same deployment always maps to the same triple.
2. Dev mode uses fixed, well-known identifiers (``DEV_IDENTITY``), the same in every process, so
   notebooks and tests can name them without looking them up.
3. A plain script or notebook with a configured home records under the home's *local* identity:
   three CRNs generated once and kept in ``$MODELYARD_HOME/local-identity.json``. Every script using
   that home shares it; set ``MODELYARD_DEPLOYMENT_CRN`` to keep a script's records apart.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from modelyard import ids, settings
from modelyard.errors import InvalidInput
from modelyard.homedir import make_home, make_private_file
from modelyard.store.base import Identity

__all__ = ["DEV_IDENTITY", "LOCAL_IDENTITY_FILE", "env_identity", "local_identity"]

_ZERO = "00000000-0000-0000-0000-000000000000"
DEV_IDENTITY = Identity(
    model_crn=f"crn:modelyard:model/{_ZERO}",
    build_crn=f"crn:modelyard:build/{_ZERO}",
    deployment_crn=f"crn:modelyard:deployment/{_ZERO}",
)
LOCAL_IDENTITY_FILE = "local-identity.json"

# A fixed namespace so derived CRNs are the same on every machine and in every version.
_NAMESPACE = uuid.UUID("6f1d3c2e-8a47-4f55-9b6e-2d0c7a1e5b90")


def _derive(kind: str, deployment_crn: str) -> str:
    return f"crn:modelyard:{kind}/{uuid.uuid5(_NAMESPACE, f'{kind}:{deployment_crn}')}"


def env_identity() -> Identity | None:
    """The identity the runtime put in the environment, or None outside replicas and jobs."""
    deployment = settings.get("deployment_crn")
    if deployment is None:
        return None
    ids.check_crn(deployment, "deployment", "MODELYARD_DEPLOYMENT_CRN")
    build = settings.get("build_crn") or _derive("build", deployment)
    model = settings.get("model_crn") or _derive("model", deployment)
    ids.check_crn(build, "build", "MODELYARD_BUILD_CRN")
    ids.check_crn(model, "model", "MODELYARD_MODEL_CRN")
    return Identity(model_crn=model, build_crn=build, deployment_crn=deployment)


def local_identity(home: Path | None = None) -> Identity:
    """The home's local identity, created on first use.

    Creation uses an exclusive create of a temporary file and a link into place, so two processes
    starting at once agree on one identity instead of each writing its own.
    """
    home = settings.home() if home is None else home
    path = home / LOCAL_IDENTITY_FILE
    if not path.exists():
        make_home(home)
        fresh = {
            "modelCrn": ids.new_crn("model"),
            "modelBuildCrn": ids.new_crn("build"),
            "modelDeploymentCrn": ids.new_crn("deployment"),
        }
        tmp = home / f".{LOCAL_IDENTITY_FILE}.{os.getpid()}.{uuid.uuid4().hex}"
        make_private_file(tmp)  # 0600 like every file in the home, before anything is in it
        tmp.write_text(json.dumps(fresh, indent=2) + "\n", encoding="utf-8")
        try:
            os.link(tmp, path)  # fails if another process won the race: then read theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Identity(
            model_crn=ids.check_crn(data["modelCrn"], "model", "modelCrn"),
            build_crn=ids.check_crn(data["modelBuildCrn"], "build", "modelBuildCrn"),
            deployment_crn=ids.check_crn(
                data["modelDeploymentCrn"], "deployment", "modelDeploymentCrn"
            ),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(
            f"{path} is not a valid local identity file ({exc}); expected JSON with modelCrn, "
            "modelBuildCrn and modelDeploymentCrn; delete it to have a new identity made"
        ) from exc
