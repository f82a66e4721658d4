"""Users, passwords, teams and roles through teams (``registry.people``), on SQLite (file and
memory) and PostgreSQL; and the two lookup caches: dropped at once in the process that changes
something, expired after 2 s in another one on the same database."""

from __future__ import annotations

import time

import pytest
from argon2 import PasswordHasher

from modelyard.errors import Conflict, InvalidInput, NotFound, Unauthorized
from modelyard.registry import ProjectRole, Registry
from modelyard.store.sqlaccess import reading, sql, transaction

from .conftest import FakeClock, MsClock, StoreOpener

PASSWORD = "correct horse battery"


def test_users_are_created_listed_and_found_by_name_or_id(registry: Registry) -> None:
    people = registry.people
    bob = people.create_user("bob", email="bob@example.com")
    alice = people.create_user("alice", admin=True, password=PASSWORD)
    assert (bob.is_admin, bob.has_password, bob.disabled_ms, bob.email) == (
        False,
        False,
        None,
        "bob@example.com",
    )
    assert alice.is_admin and alice.has_password
    assert [u.name for u in people.list_users()] == ["alice", "bob"]
    assert people.get_user("bob") == bob == people.get_user(bob.id) == people.user_by_id(bob.id)
    with pytest.raises(Conflict, match="a user named 'bob' already exists"):
        people.create_user("bob")
    with pytest.raises(NotFound) as missing:
        people.get_user("carol")
    assert "'carol'" in missing.value.message and "alice, bob" in missing.value.message
    with pytest.raises(NotFound, match="user id"):
        people.user_by_id("00000000-0000-4000-8000-000000000000")
    for bad in ("Bob", "-bob", "", "a" * 64, "bob smith", None):
        with pytest.raises(InvalidInput) as info:
            people.create_user(bad)  # type: ignore[arg-type]
        assert repr(bad) in info.value.message and "^[a-z0-9][a-z0-9._-]{0,62}$" in str(info.value)
    with pytest.raises(InvalidInput, match="email='not-an-address'"):
        people.create_user("carol", email="not-an-address")
    assert [u.name for u in people.list_users()] == ["alice", "bob"]  # nothing half-written


@pytest.fixture
def real_password_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default argon2id profile (the suite runs with MODELYARD_PASSWORD_HASH=fast)."""
    monkeypatch.delenv("MODELYARD_PASSWORD_HASH")


def test_passwords_are_argon2id_and_sign_in_refuses_alike(
    registry: Registry, real_password_cost: None
) -> None:
    people = registry.people
    alice = people.create_user("alice", password=PASSWORD)
    people.create_user("keysonly")  # no password: keys only
    people.create_user("gone", password=PASSWORD)
    people.set_disabled("gone", True)
    with reading(registry.store) as cur:
        cur.execute(
            sql(registry.store, "SELECT password_hash FROM users WHERE name = ?"), ("alice",)
        )
        stored = cur.fetchone()[0]
    # argon2id, RFC 9106 low-memory profile: 64 MiB, 3 passes, 4 lanes; salted (PHC string)
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and PASSWORD not in stored
    assert people.sign_in("alice", PASSWORD) == alice
    messages = set()
    for name, password in [
        ("alice", "wrong password"),
        ("nobody", PASSWORD),
        ("keysonly", PASSWORD),
        ("gone", PASSWORD),
        ("alice", ""),
        ("Not A Name", PASSWORD),
    ]:
        with pytest.raises(Unauthorized) as info:
            people.sign_in(name, password)
        messages.add(info.value.message)
        assert password not in info.value.message or not password
    assert len(messages) == 1  # one answer whatever the reason: names do not leak
    for short in ("", "seven77"):
        with pytest.raises(InvalidInput) as refused:
            people.set_password("alice", short)
        message = refused.value.message
        assert f"{len(short)} characters" in message and "8 to 1000" in message
    with pytest.raises(InvalidInput, match="1001 characters"):
        people.set_password("alice", "x" * 1001)
    with pytest.raises(InvalidInput, match="8 to 1000"):
        people.create_user("dave", password="short")
    people.set_password("alice", "a new passphrase")
    with pytest.raises(Unauthorized):
        people.sign_in("alice", PASSWORD)
    assert people.sign_in("alice", "a new passphrase").name == "alice"
    with pytest.raises(NotFound, match="'nobody'"):
        people.set_password("nobody", PASSWORD)


def test_a_hash_with_older_parameters_is_replaced_at_the_next_sign_in(
    registry: Registry, real_password_cost: None
) -> None:
    people = registry.people
    people.create_user("alice")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    transaction(
        registry.store,
        lambda cur: cur.execute(
            sql(registry.store, "UPDATE users SET password_hash = ? WHERE name = ?"),
            (weak, "alice"),
        ),
    )
    assert people.sign_in("alice", PASSWORD).name == "alice"
    with reading(registry.store) as cur:
        cur.execute(
            sql(registry.store, "SELECT password_hash FROM users WHERE name = ?"), ("alice",)
        )
        stored = cur.fetchone()[0]
    assert stored != weak and stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert people.sign_in("alice", PASSWORD).name == "alice"


def test_an_unknown_name_costs_a_password_check_too(
    registry: Registry, real_password_cost: None
) -> None:
    people = registry.people
    people.create_user("alice", password=PASSWORD)

    def sign_in_s(name: str) -> float:
        start = time.perf_counter()
        with pytest.raises(Unauthorized):
            people.sign_in(name, "wrong password")
        return time.perf_counter() - start

    # Alternated and the fastest of each kept, so a busy machine (other tests on parallel
    # workers) slows both kinds alike rather than one run of three.
    rounds = [(sign_in_s("alice"), sign_in_s("nobody")) for _ in range(4)]
    known, unknown = min(k for k, _ in rounds), min(u for _, u in rounds)
    # Both run one argon2id verification (about 0.1 s); a lookup alone would take ~1 ms.
    assert unknown > 0.5 * known and known > 0.5 * unknown, (known, unknown)


def test_disabling_a_user_is_seen_at_once_and_is_idempotent(
    registry: Registry, clock: MsClock
) -> None:
    people = registry.people
    bob = people.create_user("bob")
    assert people.user_by_id(bob.id).disabled_ms is None  # cached now
    clock.advance(5)
    disabled = people.set_disabled("bob", True)
    assert disabled.disabled_ms is not None
    assert people.user_by_id(bob.id).disabled_ms == disabled.disabled_ms  # cache dropped
    clock.advance(5)
    assert people.set_disabled("bob", True).disabled_ms == disabled.disabled_ms
    assert people.set_disabled("bob", False).disabled_ms is None
    assert people.user_by_id(bob.id).disabled_ms is None
    with pytest.raises(InvalidInput, match="disabled='yes'"):
        people.set_disabled("bob", "yes")  # type: ignore[arg-type]


def test_teams_and_their_members(registry: Registry) -> None:
    people = registry.people
    for name in ("alice", "bob", "carol"):
        people.create_user(name)
    team = people.create_team("data-science")
    assert team.members == ()
    people.add_member("data-science", "carol")
    people.add_member("data-science", "alice")
    assert people.add_member("data-science", "alice").members == ("alice", "carol")  # idempotent
    people.create_team("ops")
    assert [(t.name, t.members) for t in people.list_teams()] == [
        ("data-science", ("alice", "carol")),
        ("ops", ()),
    ]
    assert people.get_team(team.id) == people.get_team("data-science")
    with pytest.raises(
        NotFound, match=r"'bob' is not a member of team 'data-science'.*alice, carol"
    ):
        people.remove_member("data-science", "bob")
    assert people.remove_member("data-science", "carol").members == ("alice",)
    with pytest.raises(Conflict, match="'ops' already exists"):
        people.create_team("ops")
    with pytest.raises(
        NotFound, match="team 'nope' does not exist; known teams: data-science, ops"
    ):
        people.add_member("nope", "bob")
    with pytest.raises(NotFound, match="user 'zed'"):
        people.add_member("ops", "zed")
    with pytest.raises(InvalidInput, match="team name 'Ops!'"):
        people.create_team("Ops!")
    people.delete_team("ops")
    assert [t.name for t in people.list_teams()] == ["data-science"]


def test_roles_come_from_ownership_own_rows_and_teams_and_the_highest_wins(
    registry: Registry,
) -> None:
    people = registry.people
    alice, bob, carol = (people.create_user(n) for n in ("alice", "bob", "carol"))
    churn = people.create_project("churn", owner="alice")
    fraud = people.create_project("fraud", owner="bob")
    people.create_team("analysts")
    people.add_member("analysts", "carol")
    people.add_member("analysts", "bob")
    assert people.project_roles(carol.id) == {}
    people.set_collaborator(churn.crn, "team", "analysts", "operator")
    people.set_collaborator(churn.crn, "user", "carol", "viewer")
    assert dict(people.project_roles(alice.id)) == {churn.crn: ProjectRole.ADMIN}
    # carol: viewer of her own, operator through the team: operator wins
    assert dict(people.project_roles(carol.id)) == {churn.crn: ProjectRole.OPERATOR}
    # bob: owner of fraud (admin), operator in churn through the team
    assert dict(people.project_roles(bob.id)) == {
        churn.crn: ProjectRole.OPERATOR,
        fraud.crn: ProjectRole.ADMIN,
    }
    people.set_collaborator(churn.crn, "user", "carol", "contributor")
    assert people.project_roles(carol.id)[churn.crn] is ProjectRole.CONTRIBUTOR
    people.remove_collaborator(churn.crn, "user", "carol")
    assert people.project_roles(carol.id)[churn.crn] is ProjectRole.OPERATOR
    people.remove_member("analysts", "carol")
    assert people.project_roles(carol.id) == {}
    people.delete_team("analysts")  # its rows go with it
    assert dict(people.project_roles(bob.id)) == {fraud.crn: ProjectRole.ADMIN}
    assert [c.name for c in people.collaborators(churn.crn)] == ["alice"]
    with pytest.raises(TypeError):
        people.project_roles(alice.id)[fraud.crn] = ProjectRole.ADMIN  # type: ignore[index]


def test_caches_drop_at_once_here_and_expire_within_2_s_on_another_server(
    opener: StoreOpener, clock: MsClock
) -> None:
    ticks = FakeClock(1000.0)
    with opener() as first_store, opener() as second_store:
        here = Registry(first_store, clock=clock, monotonic=ticks)
        there = Registry(second_store, clock=clock, monotonic=ticks)
        bob = here.people.create_user("bob")
        here.people.create_user("alice")
        churn = here.people.create_project("churn", owner="alice")
        assert there.people.project_roles(bob.id) == {}  # cached on the other server
        assert there.people.user_by_id(bob.id).disabled_ms is None
        assert here.people.project_roles(bob.id) == {}  # cached here too
        here.people.set_collaborator(churn.crn, "user", "bob", "viewer")
        here.people.set_disabled("bob", True)
        assert dict(here.people.project_roles(bob.id)) == {churn.crn: ProjectRole.VIEWER}
        assert here.people.user_by_id(bob.id).disabled_ms is not None
        ticks.advance(1.9)
        assert there.people.project_roles(bob.id) == {}  # stale for at most the TTL...
        assert there.people.user_by_id(bob.id).disabled_ms is None
        ticks.advance(0.1)
        assert dict(there.people.project_roles(bob.id)) == {churn.crn: ProjectRole.VIEWER}
        assert there.people.user_by_id(bob.id).disabled_ms is not None  # ...then seen


def test_the_fast_profile_is_a_setting_and_a_bad_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelyard.registry._passwords import hash_password, verify_password

    monkeypatch.setenv("MODELYARD_PASSWORD_HASH", "fast")
    cheap = hash_password(PASSWORD)
    assert cheap.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    monkeypatch.setenv("MODELYARD_PASSWORD_HASH", "rfc9106-low-memory")
    matches, rehashed = verify_password(cheap, PASSWORD)  # a cheap hash is made again
    assert matches and rehashed is not None and rehashed.startswith("$argon2id$v=19$m=65536,")
    monkeypatch.setenv("MODELYARD_PASSWORD_HASH", "md5")
    with pytest.raises(InvalidInput, match=r"'md5'.*rfc9106-low-memory, fast"):
        hash_password(PASSWORD)
