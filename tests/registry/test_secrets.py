"""Project secrets in the registry, on SQLite (file and memory) and PostgreSQL: set, list, delete,
read; the database holds ciphertext only; a wrong key or a moved ciphertext is refused naming the
secret and the key's source, never the value; names and values are checked; the key file is made
once, 0600; key rotation with several keys."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from modelyard.errors import InvalidInput, NotFound
from modelyard.registry import Registry, SecretBox, SecretKeyError, read_secrets
from modelyard.registry._db import Db
from modelyard.specs.job import JobSpec
from modelyard.store import MetricsStore

from .conftest import MsClock

VALUE = "pa55-w0rd-\u00e9t\u00e9-" + "x" * 20


@pytest.fixture
def key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def reg(registry: Registry, key: str) -> Registry:
    registry.secrets.configure(SecretBox(keys=key))
    return registry


@pytest.fixture
def project(reg: Registry) -> str:
    reg.people.create_user("alice")
    return reg.people.create_project("churn", owner="alice").crn


def _raw(store: MetricsStore, project: str) -> list[tuple[str, bytes]]:
    db = Db(store)
    with db.read() as cur:
        rows = db.exec(
            cur, "SELECT name, ciphertext FROM secrets WHERE project_crn = ?", (project,)
        ).fetchall()
    return [(str(r[0]), bytes(r[1])) for r in rows]


def test_set_list_values_delete(reg: Registry, project: str, clock: MsClock) -> None:
    info = reg.secrets.set(project, "DB_PASSWORD", VALUE, "alice")
    assert (info.name, info.set_by, info.created_ms) == ("DB_PASSWORD", "alice", clock())
    clock.advance(5_000)
    again = reg.secrets.set(project, "DB_PASSWORD", VALUE + "2", "bob")
    assert (again.set_by, again.created_ms, again.updated_ms) == ("bob", info.created_ms, clock())
    reg.secrets.set(project, "API_TOKEN", "t0ken", "alice")
    assert [s.name for s in reg.secrets.list(project)] == ["API_TOKEN", "DB_PASSWORD"]
    assert "value" not in repr(reg.secrets.list(project)) and VALUE not in repr(again)
    assert reg.secrets.values(project, ["DB_PASSWORD", "API_TOKEN"]) == {
        "DB_PASSWORD": VALUE + "2",
        "API_TOKEN": "t0ken",
    }
    assert reg.secrets.values(project, []) == {}
    reg.secrets.delete(project, "API_TOKEN")
    assert [s.name for s in reg.secrets.list(project)] == ["DB_PASSWORD"]
    with pytest.raises(NotFound, match="'API_TOKEN' not set in project 'alice/churn'"):
        reg.secrets.delete(project, "API_TOKEN")


def test_the_database_holds_ciphertext_only(
    reg: Registry, project: str, store: MetricsStore
) -> None:
    reg.secrets.set(project, "DB_PASSWORD", VALUE, "alice")
    [(name, token)] = _raw(store, project)
    assert name == "DB_PASSWORD"
    assert VALUE.encode() not in token and b"pa55" not in token
    # Two sets of one value differ (a random IV each time): equal values do not show as equal.
    reg.secrets.set(project, "DB_PASSWORD", VALUE, "alice")
    assert _raw(store, project)[0][1] != token


def test_missing_secrets_are_named_with_the_project(reg: Registry, project: str) -> None:
    reg.secrets.set(project, "DB_PASSWORD", VALUE, "alice")
    with pytest.raises(NotFound) as caught:
        reg.secrets.values(project, ["DB_PASSWORD", "API_TOKEN", "OTHER"])
    message = caught.value.message
    assert "'API_TOKEN', 'OTHER' not set in project 'alice/churn'" in message
    assert "its secrets: DB_PASSWORD" in message and VALUE not in message
    with pytest.raises(NotFound, match="API_TOKEN"):
        reg.secrets.check(project, ["API_TOKEN"])
    reg.secrets.check(project, ["DB_PASSWORD"])  # no error, nothing decrypted
    with pytest.raises(NotFound, match=r"project .* does not exist"):
        reg.secrets.list("crn:modelyard:project/00000000-0000-4000-8000-000000000000")


def test_a_wrong_key_names_the_secret_and_the_key_source(
    registry: Registry, store: MetricsStore, key: str, tmp_path: Path
) -> None:
    registry.secrets.configure(SecretBox(keys=key))
    registry.people.create_user("alice")
    project = registry.people.create_project("churn", owner="alice").crn
    registry.secrets.set(project, "DB_PASSWORD", VALUE, "alice")
    registry.secrets.configure(SecretBox(key_file=tmp_path / "secrets.key"))  # another key
    with pytest.raises(SecretKeyError) as caught:
        registry.secrets.values(project, ["DB_PASSWORD"])
    message = caught.value.message
    assert "secret 'DB_PASSWORD' of project 'alice/churn' cannot be decrypted" in message
    assert f"the key file {tmp_path / 'secrets.key'}" in message
    assert VALUE not in message and key not in message
    assert (tmp_path / "secrets.key").read_text().strip() not in message
    assert caught.value.status == 500


def test_a_ciphertext_moved_to_another_secret_is_refused(
    reg: Registry, project: str, store: MetricsStore
) -> None:
    reg.secrets.set(project, "DB_PASSWORD", VALUE, "alice")
    reg.secrets.set(project, "API_TOKEN", "t0ken", "alice")
    token = dict(_raw(store, project))["DB_PASSWORD"]
    db = Db(store)
    db.write(
        lambda cur: db.exec(
            cur,
            "UPDATE secrets SET ciphertext = ? WHERE project_crn = ? AND name = ?",
            (token, project, "API_TOKEN"),
        )
    )
    with pytest.raises(SecretKeyError, match=r"'API_TOKEN' .* holds another secret's") as caught:
        reg.secrets.values(project, ["API_TOKEN"])
    assert VALUE not in caught.value.message


def test_rotation_with_several_keys(reg: Registry, project: str, key: str) -> None:
    reg.secrets.set(project, "DB_PASSWORD", VALUE, "alice")
    new = Fernet.generate_key().decode()
    reg.secrets.configure(SecretBox(keys=f"{new}, {key}"))  # new first: old tokens still read
    assert reg.secrets.values(project, ["DB_PASSWORD"]) == {"DB_PASSWORD": VALUE}
    assert reg.secrets.rotate() == 1
    reg.secrets.configure(SecretBox(keys=new))  # the old key dropped
    assert reg.secrets.values(project, ["DB_PASSWORD"]) == {"DB_PASSWORD": VALUE}


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("db_password", "not accepted"),
        ("1ST", "not accepted"),
        ("MODELYARD_API_KEY", "not starting with 'MODELYARD_'"),
        ("A" * 129, "1 to 128 characters"),
        ("A-B", "not accepted"),
    ],
)
def test_bad_names_are_refused(reg: Registry, project: str, name: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        reg.secrets.set(project, name, VALUE, "alice")
    assert reg.secrets.list(project) == []


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is empty"),
        ("a\x00b", "NUL"),
        ("x" * (64 * 1024 + 1), "65537 bytes; accepted: at most 65536"),
        ("\u00e9" * (32 * 1024 + 1), "65538 bytes"),
        (42, "is a int; expected a string"),
    ],
)
def test_bad_values_are_refused_without_quoting_them(
    reg: Registry, project: str, value: object, problem: str
) -> None:
    with pytest.raises(InvalidInput, match=problem) as caught:
        reg.secrets.set(project, "DB_PASSWORD", value, "alice")  # type: ignore[arg-type]
    if isinstance(value, str) and value:
        assert value not in caught.value.message
    assert reg.secrets.list(project) == []


def test_the_largest_value_is_accepted(reg: Registry, project: str) -> None:
    value = "y" * (64 * 1024)
    reg.secrets.set(project, "BIG", value, "alice")
    assert reg.secrets.values(project, ["BIG"]) == {"BIG": value}


def test_without_a_key_setting_and_reading_fail_clearly(registry: Registry) -> None:
    registry.people.create_user("alice")
    project = registry.people.create_project("churn", owner="alice").crn
    with pytest.raises(SecretKeyError, match="no secrets key is configured"):
        registry.secrets.set(project, "DB_PASSWORD", VALUE, "alice")
    assert registry.secrets.list(project) == []


def test_reads_for_a_start_are_audited_with_names_only(reg: Registry, project: str) -> None:
    reg.secrets.set(project, "DB_PASSWORD", VALUE, "alice")
    got = read_secrets(reg, project, ["DB_PASSWORD"], object="churn", for_="crn:modelyard:run/x")
    assert got == {"DB_PASSWORD": VALUE}
    [entry] = [e for e in reg.audit.list(project_crn=project) if e.action == "secrets.read"]
    assert (entry.actor, entry.object) == ("system", "churn")
    assert entry.details == {"names": ["DB_PASSWORD"], "for": "crn:modelyard:run/x"}
    assert VALUE not in repr(entry)
    assert read_secrets(reg, project, [], object="churn", for_="x") == {}


def test_the_key_file_is_made_once_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    path = home / "secrets.key"
    boxes = [SecretBox(key_file=path) for _ in range(8)]
    tokens: list[bytes] = []

    def seal(box: SecretBox) -> None:
        tokens.append(box.seal("crn:modelyard:project/p", "A", "v"))

    threads = [threading.Thread(target=seal, args=(box,)) for box in boxes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in home.iterdir()] == ["secrets.key"]  # no temporary left
    reader = SecretBox(key_file=path)
    assert {reader.unseal("crn:modelyard:project/p", "A", t) for t in tokens} == {"v"}


def test_the_environment_key_wins_and_a_bad_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("MODELYARD_SECRETS_KEY", key)
    box = SecretBox.for_home(tmp_path)
    assert box.source == "MODELYARD_SECRETS_KEY"
    box.seal("crn:modelyard:project/p", "A", "v")
    assert not (tmp_path / "secrets.key").exists()
    monkeypatch.setenv("MODELYARD_SECRETS_KEY", f"{key},not-a-key-at-all")
    with pytest.raises(InvalidInput, match="entry 2 of 2 is not a Fernet key") as caught:
        SecretBox.for_home(tmp_path)
    assert "not-a-key-at-all" not in caught.value.message and key not in caught.value.message
    monkeypatch.delenv("MODELYARD_SECRETS_KEY")
    assert SecretBox.for_home(tmp_path).source.startswith("the key file")


def test_deployments_and_jobs_keep_the_names_they_ask_for(reg: Registry, project: str) -> None:
    reg.create_model("churn", project_crn=project)
    build = reg.add_build(
        "churn", digest="d" * 64, file="predict.py", function="predict", python="python",
        env_key="none", ok=True,
    )  # fmt: skip
    deployment = reg.add_deployment("churn", build.crn, secrets=["DB_PASSWORD", "API_TOKEN"])
    assert deployment.secrets == ("DB_PASSWORD", "API_TOKEN")
    assert reg.get_deployment(deployment.crn).secrets == ("DB_PASSWORD", "API_TOKEN")
    assert reg.add_deployment("churn", build.crn).secrets == ()
    with pytest.raises(InvalidInput, match="'A' is both in env and in secrets"):
        reg.add_deployment("churn", build.crn, env={"A": "1"}, secrets=["A"])
    with pytest.raises(InvalidInput, match="'lower' is not accepted"):
        reg.add_deployment("churn", build.crn, secrets=["lower"])

    spec = JobSpec(name="nightly", project="/srv/x", script="a.py", manual=True, secrets=("A",))
    job = reg.create_job(spec, project_crn=project)
    assert job.secrets == ("A",) and reg.get_job("nightly").secrets == ("A",)
    assert reg.get_job("nightly").spec.secrets == ("A",)
    assert reg.update_job("nightly", secrets=["B", "C"]).secrets == ("B", "C")
    assert reg.update_job("nightly", retries=2).secrets == ("B", "C")  # other changes keep them
    assert reg.get_job("nightly").secrets == ("B", "C")
