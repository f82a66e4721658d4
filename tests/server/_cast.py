"""Helpers the in-process server tests share: users with roles in the default project and their
keys, a recorder of every answer (to prove a value appears in none), and a model with a build
and a stopped deployment made straight in the registry (nothing for a server to start)."""

from __future__ import annotations

import sys
from typing import Any

import httpx

from modelyard.registry import Build, Deployment, Model, Registry

from .conftest import Api

__all__ = ["Calls", "cast", "stopped_deployment", "user_token"]


def user_token(api: Api, user: str) -> str:
    """A new ``user`` key of ``user`` (named ``<user>-key``)."""
    _, token = api.services.registry.create_api_key(f"{user}-key", "user", user=user)
    return token


def cast(api: Api, roles: dict[str, str], outsider: str = "dave") -> tuple[str, dict[str, str]]:
    """The default project's uuid, and a key for each of ``roles`` (user: role there, each
    created) and for ``outsider`` (a user with no role in it)."""
    people = api.services.registry.people
    project = people.default_project()
    for name, role in roles.items():
        people.create_user(name)
        people.set_collaborator(project.crn, "user", name, role)
    people.create_user(outsider)
    return project.crn.rsplit("/", 1)[-1], {n: user_token(api, n) for n in (*roles, outsider)}


class Calls:
    """``await calls(method, path, who, **kw)``: a request with ``who``'s key (none for no or an
    unknown ``who``); every answer's text is kept in ``seen``."""

    def __init__(self, api: Api, keys: dict[str, str]) -> None:
        self.api = api
        self.keys = keys
        self.seen: list[str] = []

    async def __call__(
        self, method: str, path: str, who: str | None = None, **kw: Any
    ) -> httpx.Response:
        headers = self.api.auth(self.keys.get(who or ""))
        response = await self.api.client.request(method, path, headers=headers, **kw)
        self.seen.append(response.text)
        return response


def stopped_deployment(
    registry: Registry, name: str, project_crn: str
) -> tuple[Model, str, Build, Deployment]:
    """Model ``name`` in the project (and its access key), a build of it and a deployment left
    stopped: enough for predictions, metrics and monitors to name."""
    model, access_key = registry.create_model(name, project_crn=project_crn)
    build = registry.add_build(
        model.name,
        digest="0" * 64,
        file="predict.py",
        function="predict",
        python=sys.executable,
        env_key="base",
        ok=True,
    )
    deployment = registry.add_deployment(model.name, build.crn, replicas=1, env={})
    registry.set_deployment_state(deployment.crn, "stopped")
    return model, access_key, build, deployment
