"""Projects: how they are named, unique per owner, their collaborators and the last admin, when
they may be deleted, the models and jobs they own, and the API keys narrowed to them."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.registry import ProjectRole, Registry, Role
from modelyard.specs import JobSpec
from modelyard.specs.experiment import ExperimentSpec
from modelyard.store.sqlaccess import reading, sql, transaction


def _people(registry: Registry, *names: str) -> None:
    for name in names:
        registry.people.create_user(name)


def test_a_project_is_named_by_crn_uuid_owner_slash_name_or_a_unique_bare_name(
    registry: Registry,
) -> None:
    people = registry.people
    _people(registry, "alice", "bob")
    churn = people.create_project("churn", owner="alice", description="who leaves")
    theirs = people.create_project("churn", owner="bob")
    fraud = people.create_project("fraud", owner="bob")
    uuid = churn.crn.removeprefix("crn:modelyard:project/")
    assert churn.crn.startswith("crn:modelyard:project/") and len(uuid) == 36
    assert (churn.full_name, churn.owner, churn.description) == (
        "alice/churn",
        "alice",
        "who leaves",
    )
    for ref in (churn.crn, uuid, "alice/churn"):
        assert people.get_project(ref) == churn
    assert people.get_project("fraud") == fraud
    with pytest.raises(InvalidInput) as ambiguous:
        people.get_project("churn")
    assert "alice/churn, bob/churn" in ambiguous.value.message
    assert ambiguous.value.details["candidates"] == ["alice/churn", "bob/churn"]
    assert people.get_project("churn", visible=[theirs.crn, fraud.crn]) == theirs
    with pytest.raises(NotFound) as unknown:
        people.get_project("nope")
    with pytest.raises(NotFound) as hidden:
        people.get_project("fraud", visible=[churn.crn])
    # a project the caller cannot see answers exactly as one that does not exist
    assert hidden.value.message == unknown.value.message.replace("'nope'", "'fraud'")
    assert "'nope'" in unknown.value.message and "owner/name" in unknown.value.message
    for ref in ("carol/churn", "crn:modelyard:project/00000000-0000-4000-8000-000000000000"):
        with pytest.raises(NotFound, match="was not found"):
            people.get_project(ref)
    with pytest.raises(InvalidInput, match="project ''"):
        people.get_project("")
    assert [p.full_name for p in people.list_projects()] == [
        "alice/churn",
        "bob/churn",
        "bob/fraud",
    ]


def test_names_are_unique_per_owner_and_follow_the_model_name_rule(registry: Registry) -> None:
    people = registry.people
    _people(registry, "alice")
    people.create_project("churn", owner="alice")
    with pytest.raises(Conflict, match=r"'alice' already has a project named 'churn'"):
        people.create_project("churn", owner="alice")
    for bad in ("Churn", "churn_v2", "", "x" * 64):
        with pytest.raises(InvalidInput) as info:
            people.create_project(bad, owner="alice")
        assert repr(bad) in info.value.message and "^[a-z0-9][a-z0-9-]{0,62}$" in str(info.value)
    with pytest.raises(NotFound, match="user 'zed' does not exist; known users: alice"):
        people.create_project("fraud", owner="zed")
    with pytest.raises(InvalidInput, match="description"):
        people.create_project("fraud", owner="alice", description="x" * 2001)
    assert len(people.list_projects()) == 1


def test_collaborators_are_listed_replaced_and_removed(registry: Registry) -> None:
    people = registry.people
    _people(registry, "alice", "bob", "carol")
    people.create_team("ops")
    churn = people.create_project("churn", owner="alice")
    people.set_collaborator("alice/churn", "user", "bob", "viewer")
    people.set_collaborator(churn.crn, "team", "ops", "operator")
    people.set_collaborator(churn.crn, "user", "carol", "contributor")
    listed = [(c.kind, c.name, c.role) for c in people.collaborators(churn.crn)]
    assert listed == [
        ("user", "alice", ProjectRole.ADMIN),  # the owner first, always admin
        ("user", "bob", ProjectRole.VIEWER),
        ("user", "carol", ProjectRole.CONTRIBUTOR),
        ("team", "ops", ProjectRole.OPERATOR),
    ]
    replaced = people.set_collaborator(churn.crn, "user", "bob", ProjectRole.ADMIN)
    assert replaced.role is ProjectRole.ADMIN and replaced.name == "bob"
    people.remove_collaborator(churn.crn, "team", "ops")
    assert [c.name for c in people.collaborators(churn.crn)] == ["alice", "bob", "carol"]
    with pytest.raises(NotFound) as info:
        people.remove_collaborator(churn.crn, "team", "ops")
    assert "team 'ops' is not a collaborator" in info.value.message
    assert "user alice, user bob, user carol" in info.value.message
    with pytest.raises(InvalidInput) as bad_role:
        people.set_collaborator(churn.crn, "user", "bob", "owner")
    assert "'owner'" in bad_role.value.message
    assert "viewer, operator, contributor, admin" in bad_role.value.message
    with pytest.raises(InvalidInput, match=r"kind 'group'.*accepted: user, team"):
        people.set_collaborator(churn.crn, "group", "ops", "viewer")
    with pytest.raises(NotFound, match="user 'zed'"):
        people.set_collaborator(churn.crn, "user", "zed", "viewer")
    with pytest.raises(NotFound, match="project 'alice/nope' was not found"):
        people.set_collaborator("alice/nope", "user", "bob", "viewer")


def test_the_last_admin_of_a_project_stays(registry: Registry) -> None:
    people = registry.people
    _people(registry, "alice", "bob", "carol")
    churn = people.create_project("churn", owner="alice")
    # The owner is always admin: neither removed nor downgraded.
    with pytest.raises(
        Conflict, match="'alice' owns project 'alice/churn' and is always its admin"
    ):
        people.remove_collaborator(churn.crn, "user", "alice")
    with pytest.raises(Conflict, match="always its admin"):
        people.set_collaborator(churn.crn, "user", "alice", "viewer")
    # With the owner disabled, the last enabled admin cannot be removed or downgraded...
    people.set_collaborator(churn.crn, "user", "bob", "admin")
    people.set_disabled("alice", True)
    with pytest.raises(Conflict) as info:
        people.remove_collaborator(churn.crn, "user", "bob")
    assert "without an enabled admin" in info.value.message and "'alice'" in info.value.message
    with pytest.raises(Conflict, match="without an enabled admin"):
        people.set_collaborator(churn.crn, "user", "bob", "contributor")
    # ...but can once another admin is there (here: through a team).
    people.create_team("leads")
    people.add_member("leads", "carol")
    people.set_collaborator(churn.crn, "team", "leads", "admin")
    people.set_collaborator(churn.crn, "user", "bob", "contributor")
    with pytest.raises(Conflict, match="without an enabled admin"):
        people.remove_collaborator(churn.crn, "team", "leads")
    assert {c.name: c.role for c in people.collaborators(churn.crn)} == {
        "alice": ProjectRole.ADMIN,
        "bob": ProjectRole.CONTRIBUTOR,
        "leads": ProjectRole.ADMIN,
    }


def _secret_row(registry: Registry, project_crn: str) -> None:
    transaction(
        registry.store,
        lambda cur: cur.execute(
            sql(
                registry.store,
                "INSERT INTO secrets (project_crn, name, ciphertext, set_by, created_ms, "
                "updated_ms) VALUES (?, ?, ?, ?, ?, ?)",
            ),
            (project_crn, "TOKEN", b"ciphertext", "alice", 1, 1),
        ),
    )


def _count(registry: Registry, table: str, project_crn: str) -> int:
    with reading(registry.store) as cur:
        cur.execute(
            sql(registry.store, f"SELECT COUNT(*) FROM {table} WHERE project_crn = ?"),
            (project_crn,),
        )
        return int(cur.fetchone()[0])


def test_a_project_is_deleted_only_when_it_owns_no_models_or_jobs(registry: Registry) -> None:
    people = registry.people
    assert people.bootstrap() is not None
    _people(registry, "alice", "bob")
    churn = people.create_project("churn", owner="alice")
    people.set_collaborator(churn.crn, "user", "bob", "viewer")
    _secret_row(registry, churn.crn)
    for name in ("a", "b", "c", "d", "e", "f"):
        registry.create_model(f"model-{name}", project_crn=churn.crn)
    registry.create_job(
        JobSpec(name="nightly", project="/srv/p", script="s.py", manual=True), churn.crn
    )
    with pytest.raises(Conflict) as info:
        people.delete_project("alice/churn")
    message = info.value.message
    assert "model 'model-a'" in message and "model 'model-e'" in message
    assert "more models" in message and "job 'nightly'" in message
    for name in ("a", "b", "c", "d", "e", "f"):
        registry.delete_model(f"model-{name}")
    registry.delete_job("nightly")
    people.delete_project(churn.crn)
    assert _count(registry, "collaborators", churn.crn) == 0
    assert _count(registry, "secrets", churn.crn) == 0
    with pytest.raises(NotFound):
        people.get_project(churn.crn)
    assert bob_roles(registry) == {}
    with pytest.raises(Conflict, match="'admin/default' is the default project"):
        people.delete_project("admin/default")


def bob_roles(registry: Registry) -> dict[str, Any]:
    return dict(registry.people.project_roles(registry.people.get_user("bob").id))


def test_models_and_jobs_belong_to_a_project_the_default_one_unless_named(
    registry: Registry,
) -> None:
    people = registry.people
    before, _ = registry.create_model("early")  # no people yet: no project until the bootstrap
    assert before.project_crn is None
    people.bootstrap()
    default = people.default_project()
    assert default.full_name == "admin/default"
    assert registry.get_model("early").project_crn == default.crn
    _people(registry, "alice")
    churn = people.create_project("churn", owner="alice")
    plain, _ = registry.create_model("plain")
    mine, _ = registry.create_model("mine", project_crn="alice/churn")
    assert (plain.project_crn, mine.project_crn) == (default.crn, churn.crn)
    assert registry.get_model("mine") == mine
    assert [m.name for m in registry.list_models(project_crn=churn.crn)] == ["mine"]
    assert [m.name for m in registry.list_models(default.crn)] == ["early", "plain"]
    assert len(registry.list_models()) == 3
    assert registry.update_model("mine", concurrency=2).project_crn == churn.crn
    with pytest.raises(NotFound, match="project 'alice/nope'"):
        registry.create_model("lost", project_crn="alice/nope")
    spec = JobSpec(name="train", project="/srv/p", script="train.py", manual=True)
    train = registry.create_job(spec, churn.crn)
    other = registry.create_job(JobSpec(name="other", project="/srv/p", script="o.py", manual=True))
    assert (train.project_crn, other.project_crn) == (churn.crn, default.crn)
    assert registry.get_job("train").project_crn == churn.crn
    assert [j.name for j in registry.list_jobs(churn.crn)] == ["train"]
    assert registry.update_job("train", retries=2).project_crn == churn.crn
    with pytest.raises(InvalidInput, match="belongs to another project"):
        registry.create_job(
            JobSpec(name="score", project="/srv/p", script="s.py", after="other"), churn.crn
        )
    with pytest.raises(InvalidInput, match="belongs to another project"):
        registry.update_job("train", after="other")
    assert (
        registry.create_job(
            JobSpec(name="score", project="/srv/p", script="s.py", after="train"), churn.crn
        ).schedule.after
        == train.id
    )


def test_api_keys_belong_to_a_user_and_are_narrowed_at_most_to_their_role(
    registry: Registry,
) -> None:
    people = registry.people
    people.bootstrap()
    _people(registry, "bob")
    people.create_user("root", admin=True)
    churn = people.create_project("churn", owner="admin")
    people.set_collaborator(churn.crn, "user", "bob", "contributor")
    model, _ = registry.create_model("churn-model", project_crn=churn.crn)
    registry.create_model("other-model")  # in the default project

    key, token = registry.create_api_key(
        "bob-ci", user="bob", project="churn", project_role="operator", scope="churn-model"
    )
    assert (key.role, key.user_id, key.project_crn, key.project_role, key.scope) == (
        Role.USER,
        people.get_user("bob").id,
        churn.crn,
        ProjectRole.OPERATOR,
        model.crn,
    )
    assert registry.authenticate(token) == key
    wide, _ = registry.create_api_key("bob-all", user="bob")
    assert (wide.project_crn, wide.project_role) == (None, None)
    root, _ = registry.create_api_key("root", role="admin", expires_in_ms=None, user="root")
    assert sorted(k.name for k in registry.list_api_keys(user_id=key.user_id)) == [
        "bob-all",
        "bob-ci",
    ]
    assert registry.list_api_keys(user_id=root.user_id) == [root]

    refusals: list[tuple[dict[str, Any], str]] = [
        ({}, "user=None is not accepted for a 'user' key"),
        ({"role": "admin", "user": "bob"}, "'bob' is not a server admin"),
        ({"user": "bob", "project_role": "admin", "project": churn.crn}, "above user 'bob'"),
        ({"user": "bob", "project": "admin/default"}, "no role in project 'admin/default'"),
        ({"user": "bob", "project_role": "boss"}, "project_role='boss' is not a project role"),
        ({"user": "bob", "scope": "other-model"}, "where user 'bob' has no role"),
        ({"user": "root", "project": churn.crn, "scope": "other-model"}, "another project"),
        ({"role": "admin", "user": "root", "project": churn.crn}, "never narrowed"),
        ({"role": "run", "user": "bob"}, "a run key has no user"),
        ({"user": "zed"}, "user 'zed' does not exist"),
    ]
    for options, words in refusals:
        with pytest.raises((InvalidInput, NotFound)) as info:
            registry.create_api_key("k", **options)
        assert words in info.value.message, (options, info.value.message)
    assert "accepted: viewer, operator, contributor" in _message(
        registry, user="bob", project=churn.crn, project_role="admin"
    )
    people.set_disabled("bob", True)
    with pytest.raises(InvalidInput, match="'bob' is disabled"):
        registry.create_api_key("late", user="bob")
    # A server admin may narrow a key to any project and role; run keys carry their project.
    admin_key, _ = registry.create_api_key("r", user="root", project="churn", project_role="admin")
    assert admin_key.project_crn == churn.crn
    run, _ = registry.create_api_key("replica", role="run", scope=model.crn)
    assert (run.user_id, run.project_crn) == (None, churn.crn)
    assert len(registry.list_api_keys()) == 5  # bob-ci, bob-all, root, r, replica


def _message(registry: Registry, **options: Any) -> str:
    with pytest.raises(InvalidInput) as info:
        registry.create_api_key("k", **options)
    return info.value.message


def test_a_project_with_experiment_runs_names_them_and_how_to_delete_them(
    registry: Registry,
) -> None:
    people = registry.people
    assert people.bootstrap() is not None
    _people(registry, "alice")
    iris = people.create_project("iris", owner="alice")
    spec = ExperimentSpec(script="fit.py", project="/srv/iris", args=[])
    job = registry.experiments.create(spec, iris.crn, "alice")
    run = registry.update_run(registry.create_run(job.id, 1, 1, "manual").id, state="running")
    run = registry.update_run(run.id, state="succeeded")
    with pytest.raises(Conflict) as info:
        people.delete_project("alice/iris")
    uuid = run.id.rsplit("/", 1)[-1]
    assert f"experiment run {uuid!r}" in info.value.message
    assert "modelyard experiments delete RUN" in info.value.message
    assert "job 'experiment-" not in info.value.message  # not its hidden job's name
    registry.experiments.delete(uuid)
    people.delete_project(iris.crn)
    with pytest.raises(NotFound):
        people.get_project(iris.crn)
