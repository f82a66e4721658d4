"""``modelyard.web.access`` against a real registry (SQLite and PostgreSQL): role resolution from
own rows, teams and ownership; a key's narrowing; server administrators; run keys of a deployment
and of a job run; a disabled user; and the 404-vs-403 rule with its messages.

The world: ``admin`` (server administrator, made by ``bootstrap``) owns ``default``; ``alice``
owns project ``churn``; ``bob`` is its viewer; ``carol`` is a viewer in her own row and an
operator through team ``ops``; ``dave`` has no role in ``churn``. Model ``scorer`` and job
``nightly`` live in ``churn``, model ``other`` in ``default``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from _backends import PERSISTENT, open_stores, opener_for
from _wait import wait_until
from modelyard.errors import Forbidden, NotFound, Unauthorized
from modelyard.registry import ApiKey, Model, ProjectRole, Registry
from modelyard.specs.job import JobSpec
from modelyard.store.sqlaccess import sql, transaction
from modelyard.ttlcache import DEFAULT_TTL_S
from modelyard.web.access import (
    CALLER_TTL_S,
    Caller,
    On,
    Right,
    Rule,
    caller_of_key,
    caller_on_loop,
    not_found,
    requires,
)


@dataclass
class World:
    registry: Registry
    churn: str  # project CRN
    default: str
    scorer: Model
    other: Model

    def key(self, user: str | None, role: str = "user", **narrow: str) -> ApiKey:
        key, _ = self.registry.create_api_key(f"{user}-key", role=role, user=user, **narrow)
        return key

    def caller(self, user: str | None, role: str = "user", **narrow: str) -> Caller:
        return caller_of_key(self.registry, self.key(user, role, **narrow))


@pytest.fixture(params=PERSISTENT)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    store = opener_for(request.param, request, tmp_path)()
    try:
        registry = Registry(store)
        people = registry.people
        people.bootstrap("admin-password-1")
        for name in ("alice", "bob", "carol", "dave"):
            people.create_user(name)
        churn = people.create_project("churn", owner="alice")
        people.set_collaborator(churn.crn, "user", "bob", "viewer")
        people.set_collaborator(churn.crn, "user", "carol", "viewer")
        people.create_team("ops")
        people.add_member("ops", "carol")
        people.set_collaborator(churn.crn, "team", "ops", "operator")
        scorer, _ = registry.create_model("scorer", project_crn=churn.crn)
        other, _ = registry.create_model("other")
        default = people.default_project().crn
        yield World(registry, churn.crn, default, scorer, other)
    finally:
        store.close()


def test_roles_are_the_highest_of_own_row_teams_and_ownership(world: World) -> None:
    assert world.caller("alice").role_in(world.churn) is ProjectRole.ADMIN  # the owner
    assert world.caller("bob").role_in(world.churn) is ProjectRole.VIEWER
    carol = world.caller("carol")
    assert carol.role_in(world.churn) is ProjectRole.OPERATOR  # team beats her own viewer row
    assert carol.may(Right.OPERATE, world.churn, world.scorer.crn)
    assert not carol.may(Right.CHANGE, world.churn, world.scorer.crn)
    dave = world.caller("dave")
    assert dave.role_in(world.churn) is None
    assert dave.visible_projects() == frozenset()
    assert not dave.sees_model(world.scorer)
    assert dave.actor == "dave" and not dave.server_admin


def test_a_key_narrows_to_one_project_a_role_and_a_model(world: World) -> None:
    alice = world.caller("alice", project=world.churn, project_role="viewer")
    assert dict(alice.roles) == {world.churn: ProjectRole.VIEWER}
    assert alice.may(Right.READ, world.churn, world.scorer.crn)
    assert not alice.may(Right.CHANGE, world.churn, world.scorer.crn)
    scoped = world.caller("alice", scope=world.scorer.crn)
    assert scoped.may(Right.CHANGE, world.churn, world.scorer.crn)
    second, _ = world.registry.create_model("second", project_crn=world.churn)
    assert not scoped.may(Right.READ, world.churn, second.crn)  # another model of the project
    assert not scoped.may(Right.READ, world.churn)  # nor what belongs to no model (jobs)
    assert scoped.sees_model(world.scorer) and not scoped.sees_model(second)


def test_only_an_admin_key_of_a_server_admin_acts_as_server_admin(world: World) -> None:
    admin = world.caller("admin", role="admin")
    assert admin.server_admin and admin.visible_projects() is None
    assert admin.role_in(world.churn) is ProjectRole.ADMIN  # everywhere, without a row
    assert admin.may(Right.SERVER, None)
    user_key = world.caller("admin", role="user")
    assert not user_key.server_admin
    assert user_key.role_in(world.churn) is None  # a user key: the user's project roles only
    assert user_key.role_in(world.default) is ProjectRole.ADMIN  # admin owns default
    with pytest.raises(Forbidden, match="user 'admin' is not a server administrator"):
        user_key.check(Right.SERVER, None, "users 'x'")
    narrowed = world.caller("admin", role="user", project=world.default, project_role="viewer")
    assert not narrowed.server_admin
    assert dict(narrowed.roles) == {world.default: ProjectRole.VIEWER}


def test_a_disabled_user_is_refused_at_once_naming_the_user(world: World) -> None:
    key = world.key("bob")
    assert caller_of_key(world.registry, key).user is not None  # cached now
    world.registry.people.set_disabled("bob", True)
    with pytest.raises(Unauthorized, match="user 'bob' is disabled"):
        caller_of_key(world.registry, key)
    world.registry.people.set_disabled("bob", False)
    assert caller_of_key(world.registry, key).role_in(world.churn) is ProjectRole.VIEWER


@pytest.mark.parametrize("kind", PERSISTENT)
def test_another_server_refuses_a_disabled_user_within_3_s(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two servers on one database: a user disabled through one is refused by the other once
    its caches expire (people's 2 s, then the resolved Caller's ``CALLER_TTL_S``)."""
    opener = opener_for(kind, request, tmp_path)
    with open_stores(opener, 2) as (one, two):
        here, there = Registry(one), Registry(two)
        here.people.bootstrap("admin-password-1")
        here.people.create_user("bob")
        _, token = here.create_api_key("bob-key", user="bob")
        key = there.authenticate(token)
        assert caller_of_key(there, key).user is not None  # cached over there now
        here.people.set_disabled("bob", True)
        started = time.monotonic()

        def refused() -> bool:
            try:
                caller_of_key(there, key)
            except Unauthorized as exc:
                return "user 'bob' is disabled" in exc.message
            return False

        wait_until(refused, timeout_s=5, what="the other server to refuse bob")
        assert time.monotonic() - started <= DEFAULT_TTL_S + CALLER_TTL_S + 0.5


def test_a_role_change_takes_effect_at_once(world: World) -> None:
    key = world.key("bob")
    assert not caller_of_key(world.registry, key).may(Right.CHANGE, world.churn, world.scorer.crn)
    world.registry.people.set_collaborator(world.churn, "user", "bob", "contributor")
    assert caller_of_key(world.registry, key).may(Right.CHANGE, world.churn, world.scorer.crn)


def test_a_deployment_run_key_operates_its_own_model_only(world: World) -> None:
    key, _ = world.registry.create_api_key("replicas", role="run", scope=world.scorer.crn)
    run = caller_of_key(world.registry, key)
    assert run.user is None and run.is_run_key and run.actor == f"key:{key.id}"
    assert dict(run.roles) == {world.churn: ProjectRole.OPERATOR}
    assert run.may(Right.OPERATE, world.churn, world.scorer.crn)
    assert not run.may(Right.CHANGE, world.churn, world.scorer.crn)
    second, _ = world.registry.create_model("second", project_crn=world.churn)
    assert not run.may(Right.OPERATE, world.churn, second.crn)
    assert not run.may(Right.READ, world.default, world.other.crn)
    with pytest.raises(Forbidden, match="is a run key"):
        run.check(Right.SIGNED_IN, None, "keys 'x'")


def test_a_job_run_key_operates_its_jobs_project(world: World) -> None:
    registry = world.registry
    spec = JobSpec(name="nightly", project="/srv/project", script="monitor.py", manual=True)
    job = registry.create_job(spec, world.churn)
    queued = registry.create_run(job.id, 0, 1, "manual")
    key, _ = registry.create_api_key("run", role="run", scope=queued.id)
    run = caller_of_key(registry, key)
    assert dict(run.roles) == {world.churn: ProjectRole.OPERATOR}
    assert run.run_crn == queued.id and run.job_id == job.id and run.model_scope is None
    assert run.may(Right.OPERATE, world.churn, world.scorer.crn)  # a monitor reads any model
    assert not run.may(Right.OPERATE, world.default, world.other.crn)


def test_404_for_no_role_and_403_naming_role_and_project_for_too_low(world: World) -> None:
    what = "model 'scorer'"
    with pytest.raises(NotFound) as hidden:
        world.caller("dave").check(Right.READ, world.churn, what, world.scorer.crn)
    assert hidden.value.message == not_found("model", "scorer").message  # an unknown name's
    assert "churn" not in hidden.value.message
    with pytest.raises(Forbidden) as low:
        world.caller("bob").check(Right.CHANGE, world.churn, what, world.scorer.crn)
    assert low.value.message == (
        "user 'bob' is viewer in project 'alice/churn'; changing model 'scorer' needs "
        "contributor or higher (right 'change')"
    )
    narrowed = world.caller("alice", project_role="viewer")
    with pytest.raises(Forbidden, match=r"alice.*viewer.*alice/churn.*narrowed to viewer"):
        narrowed.check(Right.OPERATE, world.churn, what, world.scorer.crn)
    with pytest.raises(NotFound):  # a key limited to another model: as if it did not exist
        world.caller("alice", scope=world.scorer.crn).check(
            Right.READ, world.default, "model 'other'", world.other.crn
        )


def test_keys_without_a_user_belong_to_nobody(world: World) -> None:
    """A key row without a user (as a home from before users holds until the server's start
    gives it one) is refused, naming the key."""
    registry = world.registry
    key, token = registry.create_api_key("old", user="bob")
    store = registry.store
    transaction(
        store,
        lambda cur: cur.execute(
            sql(store, "UPDATE api_keys SET user_id = NULL WHERE id = ?"), (key.id,)
        ),
    )
    with pytest.raises(Unauthorized, match=f"API key {key.id} .*belongs to no user"):
        caller_of_key(registry, registry.authenticate(token))


def test_the_loop_path_answers_from_the_caches(world: World) -> None:
    registry = world.registry
    _, token = registry.create_api_key("bob-key", user="bob")

    async def twice() -> tuple[Caller, Caller]:
        first = await caller_on_loop(registry, f"Bearer {token}")  # a miss: on a thread
        return first, await caller_on_loop(registry, f"Bearer {token}")

    first, again = asyncio.run(twice())
    assert again is first  # the same cached Caller, no thread, no database
    with pytest.raises(Unauthorized, match="needs an API key"):
        asyncio.run(caller_on_loop(registry, None))
    registry.people.set_disabled("bob", True)  # the loop path sees it at once too
    with pytest.raises(Unauthorized, match="user 'bob' is disabled"):
        asyncio.run(caller_on_loop(registry, f"Bearer {token}"))


def test_requires_carries_its_rule() -> None:
    dependency = requires(Right.CHANGE, On.MODEL, run_keys=False)
    assert dependency.rule == Rule(Right.CHANGE, On.MODEL, False)  # type: ignore[attr-defined]
    assert requires(Right.OPERATE, On.RUN, run_keys=True).rule.run_keys  # type: ignore[attr-defined]
