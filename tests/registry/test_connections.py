"""Project connections in the registry, on SQLite (file and memory) and PostgreSQL: create, list,
get, update, delete; names unique per project; definitions checked by ConnectionSpec; NotFound
and Conflict name the connection and the way out."""

from __future__ import annotations

import pytest

from modelyard.connectors import Connection
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.registry import Registry

from .conftest import MsClock

PG = {"host": "db.internal", "port": "5432", "database": "crm", "user": "reader"}


@pytest.fixture
def project(registry: Registry) -> str:
    registry.people.create_user("alice")
    return registry.people.create_project("churn", owner="alice").crn


def test_create_get_list_update_delete(registry: Registry, project: str, clock: MsClock) -> None:
    made = registry.connections.create(
        project, "crm", "postgresql", PG, {"password": "CRM_PASSWORD"}, "alice"
    )
    assert made == Connection(
        project_crn=project,
        name="crm",
        kind="postgresql",
        options={**PG, "port": 5432},
        secrets={"password": "CRM_PASSWORD"},
        created_by="alice",
        created_ms=clock(),
        updated_ms=clock(),
    )
    registry.connections.create(project, "drop", "files", {"path": "/data/drop"}, None, "alice")
    assert [c.name for c in registry.connections.list(project)] == ["crm", "drop"]
    assert registry.connections.get(project, "crm") == made

    clock.advance(1_000)
    changed = registry.connections.update(project, "crm", options={**PG, "host": "db2"})
    assert changed.options["host"] == "db2" and changed.secrets == made.secrets
    assert (changed.created_ms, changed.updated_ms) == (made.created_ms, clock())
    rekeyed = registry.connections.update(project, "crm", secrets={"password": "NEW_PASSWORD"})
    assert rekeyed.secrets == {"password": "NEW_PASSWORD"} and rekeyed.options["host"] == "db2"

    registry.connections.delete(project, "crm")
    assert [c.name for c in registry.connections.list(project)] == ["drop"]
    with pytest.raises(
        NotFound,
        match=r"connection 'crm' does not exist in project 'alice/churn' "
        r"\(its connections: drop\); 'modelyard connections list",
    ):
        registry.connections.get(project, "crm")
    with pytest.raises(NotFound, match="'crm' does not exist"):
        registry.connections.delete(project, "crm")


def test_names_are_unique_per_project(registry: Registry, project: str) -> None:
    registry.connections.create(project, "crm", "files", {"path": "/a"}, None, "alice")
    with pytest.raises(Conflict, match="connection 'crm' already exists in project 'alice/churn'"):
        registry.connections.create(project, "crm", "files", {"path": "/b"}, None, "alice")
    other = registry.people.create_project("fraud", owner="alice").crn
    registry.connections.create(other, "crm", "files", {"path": "/b"}, None, "alice")
    assert registry.connections.get(other, "crm").options == {"path": "/b"}
    assert registry.connections.get(project, "crm").options == {"path": "/a"}


def test_definitions_are_checked(registry: Registry, project: str) -> None:
    with pytest.raises(InvalidInput, match="option 'password' of connection 'crm' is a credential"):
        registry.connections.create(
            project, "crm", "postgresql", {**PG, "password": "x"}, None, "alice"
        )
    with pytest.raises(InvalidInput, match="kind='oracle'"):
        registry.connections.create(project, "crm", "oracle", {}, None, "alice")
    registry.connections.create(project, "crm", "postgresql", PG, None, "alice")
    with pytest.raises(InvalidInput, match="needs option 'host'"):
        registry.connections.update(project, "crm", options={"database": "crm"})
    assert registry.connections.get(project, "crm").options["host"] == "db.internal"
    with pytest.raises(NotFound, match="project 'crn:modelyard:project/nope' does not exist"):
        registry.connections.list("crn:modelyard:project/nope")
    with pytest.raises(InvalidInput, match="expected a project CRN"):
        registry.connections.list("churn")
