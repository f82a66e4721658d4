"""Two projects and a cast for access tests, made through ``registry.people`` on the real app.

- ``alice/churn`` (owner alice): vic viewer, otto operator, cora contributor;
- ``bob/fraud`` (owner bob), where none of them has a role.

Each person gets a ``user`` key; ``api.admin`` is the server administrator's key. Each project
gets one model with one deployment the store knows (``Identity``), so metrics, series and
monitors have something to name without deploying.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.registry._records import Project, ProjectRole
from modelyard.store.base import Identity

from .conftest import Api

__all__ = ["ROLES", "World", "make_world"]

ROLES = {"vic": ProjectRole.VIEWER, "otto": ProjectRole.OPERATOR, "cora": ProjectRole.CONTRIBUTOR}


@dataclass
class World:
    api: Api
    churn: Project
    fraud: Project
    tokens: dict[str, str]  # person -> token of their user key
    mine: Identity  # the churn project's model and deployment
    theirs: Identity  # the fraud project's

    def auth(self, who: str) -> dict[str, str]:
        """Headers for ``who`` (a person, or "admin": the server administrator)."""
        token = self.api.admin if who == "admin" else self.tokens[who]
        return {"Authorization": f"Bearer {token}"}


def _identity(api: Api, name: str, project: Project) -> Identity:
    model, _ = api.services.registry.create_model(name, project_crn=project.crn)
    ident = Identity(
        model.crn, f"crn:modelyard:build/b-{name}", f"crn:modelyard:deployment/d-{name}"
    )
    api.services.store.register_identity(ident)
    return ident


def make_world(api: Api) -> World:
    registry = api.services.registry
    people = registry.people
    for name in ("alice", "bob", *ROLES):
        people.create_user(name)
    churn = people.create_project("churn", owner="alice")
    fraud = people.create_project("fraud", owner="bob")
    for name, role in ROLES.items():
        people.set_collaborator(churn.crn, "user", name, role)
    tokens = {}
    for name in ("alice", "bob", *ROLES):
        _, tokens[name] = registry.create_api_key(f"{name}'s key", role="user", user=name)
    mine = _identity(api, "churn", churn)
    theirs = _identity(api, "fraud", fraud)
    return World(api, churn, fraud, tokens, mine, theirs)
