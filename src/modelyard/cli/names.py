"""Naming models, deployments and builds on the command line: a model's name or a CRN.

Wherever a command takes a CRN it also takes the model's name, meaning the model itself, its
active deployment, or that deployment's build, whichever the option is about
(``metrics read --model churn``, ``--deployment churn``). ``--build`` also takes an unambiguous
prefix of a build's uuid (4 characters or more), as git names commits.

Names are looked up where the command reads its records: the server the SDK talks to
(``MODELYARD_URL`` with ``MODELYARD_API_KEY``, so a key limited to one model sees only that
model's name), or the registry in the local store (``MODELYARD_HOME`` or
``MODELYARD_DATABASE_URL``). A name that is not known is an error listing the names that are.
A CRN is taken as it is, since records may come from identities no registry holds (a script's
own ``MODELYARD_DEPLOYMENT_CRN``); a read that finds nothing under an unregistered CRN says which
models are registered instead (``unknown_crn_note``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from modelyard.cli.client import Client
from modelyard.errors import Forbidden, InvalidInput, NotFound
from modelyard.ids import is_uuid

__all__ = ["Known", "known_models", "resolve", "unknown_crn_note"]

Kind = Literal["model", "deployment", "build"]
_CRN = "crn:modelyard:"


@dataclass(frozen=True, slots=True)
class Known:
    """One registered model as the reader may see it."""

    name: str
    crn: str
    deployment: str | None
    build: str | None

    def describe(self) -> str:
        active = f", active deployment {self.deployment}" if self.deployment else ""
        return f"{self.name}'s CRN is {self.crn}{active}"


def resolve(text: str, kind: Kind, option: str) -> str:
    """The CRN that ``text`` (a CRN, a model name, or for builds a uuid prefix) names for the
    option ``option`` (``--deployment``), or an error saying what is known."""
    text = text.strip()
    if text.startswith("crn:") and not text.startswith(_CRN):
        return text  # the SDK takes any CRN-like identity; records may be under it
    if text.startswith(_CRN):
        _check_kind(text, kind, option)
        if kind == "build" and not is_uuid(text.removeprefix(f"{_CRN}build/")):
            return _build_by_prefix(text, option)
        return text
    known = known_models()
    if kind == "build" and _looks_like_prefix(text) and text not in {k.name for k in known}:
        return _build_by_prefix(text, option)  # a model name wins over a uuid prefix
    for model in known:
        if model.name == text:
            return _pick(model, kind, option)
    raise NotFound(
        f"{option} {text!r} is neither a CRN nor a known model name; {_listing(known, text)}"
    )


def unknown_crn_note(crn: str) -> str | None:
    """When ``crn`` is no registered model, deployment or build: a sentence saying what is
    registered (None when it is registered, or when the registry cannot be read)."""
    try:
        known = known_models()
    except (Forbidden, NotFound, InvalidInput):
        return None
    for model in known:
        if crn in (model.crn, model.deployment, model.build):
            return None
    if any(crn.startswith(f"{_CRN}{kind}/") for kind in ("deployment", "build")) and _registered(
        crn
    ):
        return None
    return f"{crn} is not registered here; {_listing(known, None)}"


def known_models() -> list[Known]:
    """The models the reader may see, with their active deployment and its build."""
    from modelyard.tracking import backends

    backend = backends.select()
    if backend.name == "remote":
        client = _client(backend)
        found = client.call("GET", "/api/v1/models")["models"]
        return [_from_json(m) for m in found]
    registry = _registry(backend)
    out = []
    for model in registry.list_models():
        active = registry.active_deployment(model.name)
        out.append(
            Known(
                model.name,
                model.crn,
                None if active is None else active.crn,
                None if active is None else active.build_crn,
            )
        )
    return out


def _client(backend: Any) -> Client:
    """The server the SDK's remote backend talks to, with its key (the CLI's own client)."""
    from modelyard.tracking.remote import RemoteBackend

    assert isinstance(backend, RemoteBackend)
    return Client(backend.url, backend.api_key)


def _registry(backend: Any) -> Any:
    from modelyard.registry import Registry

    return Registry(backend.store)


def _from_json(model: dict[str, Any]) -> Known:
    active = model.get("active_deployment") or {}
    return Known(str(model["name"]), str(model["crn"]), active.get("crn"), active.get("build_crn"))


def _pick(model: Known, kind: Kind, option: str) -> str:
    if kind == "model":
        return model.crn
    chosen = model.deployment if kind == "deployment" else model.build
    if chosen is None:
        raise NotFound(
            f"{option} {model.name!r}: model {model.name!r} has no active deployment, so the name "
            f"names no {kind}; give a {kind} CRN ('modelyard models show {model.name}' lists "
            f"them) or --model {model.name}"
        )
    return chosen


def _check_kind(text: str, kind: Kind, option: str) -> None:
    given = text.removeprefix(_CRN).split("/", 1)[0]
    if given != kind:
        raise InvalidInput(
            f"{option} {text!r} is a {given} CRN, not a {kind} CRN; give a "
            f"crn:modelyard:{kind}/... or a model name (--{given} takes this one)"
        )


def _looks_like_prefix(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdef-" for c in text.lower())


def _build_by_prefix(text: str, option: str) -> str:
    """A build CRN from a uuid prefix, looked up in the registry (or the server's builds)."""
    from modelyard.registry._prefix import SHOWN, check_prefix, choose
    from modelyard.tracking import backends

    backend = backends.select()
    if backend.name != "remote":
        return str(_registry(backend).resolve_build(text))
    prefix = check_prefix(text, "build", f"{option} 3f2a9c")
    client = _client(backend)
    found: list[str] = []
    for model in known_models():
        builds = client.call("GET", "/api/v1/models/" + model.name + "/builds")["builds"]
        found += [b["crn"] for b in builds if b["crn"].startswith(f"{_CRN}build/{prefix}")]
    return choose(
        text, "build", sorted(found)[: SHOWN + 1], "'modelyard models builds MODEL' lists them"
    )


def _registered(crn: str) -> bool:
    """Whether a deployment or build CRN (not an active one) is registered."""
    from modelyard.tracking import backends

    backend = backends.select()
    if backend.name == "remote":
        return True  # the server lists active deployments only; no note rather than a wrong one
    registry = _registry(backend)
    getter: Callable[[str], Any] = (
        registry.get_deployment if "/deployment/" in crn else registry.get_build
    )
    try:
        getter(crn)
    except (NotFound, InvalidInput):
        return False
    return True


def _listing(known: list[Known], wrong: str | None) -> str:
    if not known:
        return (
            "no model is registered where this command reads (deploy one with 'modelyard models "
            "deploy', or give a CRN)"
        )
    names = [k.name for k in known]
    close = difflib.get_close_matches(wrong, names, n=1) if wrong else []
    hint = f"did you mean {close[0]!r}? " if close else ""
    return hint + "known models: " + "; ".join(k.describe() for k in known)
