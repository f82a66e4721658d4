"""Schema 8 -> 9 and the first start with people: a home made by the previous release (its
database built from migrations 1..8 and rows with the columns that release wrote, not by the
current code) is opened by today's code and bootstrapped. Every model, job and key lands in
``admin/default``, keys keep the rights PLAN gives them, nothing is lost; on SQLite and
PostgreSQL. Also: two servers bootstrapping one database at once, and the home's files."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _threads import run_together
from modelyard.ids import new_crn
from modelyard.registry import ProjectRole, Registry, Role
from modelyard.registry._keys import hash_token
from modelyard.store import MetricsStore
from modelyard.store.postgres import PostgresStore
from modelyard.store.schema import CREATE_MIGRATIONS_TABLE, SCHEMA_VERSION, migrations
from modelyard.store.sqlaccess import reading
from modelyard.store.sqlite import SQLiteStore

from .conftest import StoreOpener

T0 = 1_780_000_000_000
YEAR = 365 * 86_400_000
ACCESS = "mya_the-access-key-of-churn-before-people-existed"
TOKENS = {
    "admin": "myk_the-admin-key-before-people-existed",
    "user": "myk_a-user-key-before-people-existed",
    "scoped": "myk_a-scoped-user-key-before-people-existed",
    "run": "myk_a-run-key-before-people-existed",
}
MODEL_CRN = new_crn("model")
RUN_SCOPE = "crn:modelyard:run/00000000-0000-4000-8000-00000000abcd"


def v8_rows() -> list[tuple[str, tuple[Any, ...]]]:
    """What the release at schema version 8 wrote: a model, four keys, two jobs."""
    keys = [
        ("k-admin", "admin", TOKENS["admin"], "admin", None, None),
        ("k-user", "ci", TOKENS["user"], "user", None, T0 + YEAR),
        ("k-scoped", "churn-only", TOKENS["scoped"], "user", MODEL_CRN, T0 + YEAR),
        ("k-run", "run", TOKENS["run"], "run", RUN_SCOPE, T0 + YEAR),
    ]
    rows: list[tuple[str, tuple[Any, ...]]] = [
        (
            "INSERT INTO models (crn, name, access_key_hash, access_key_prefix, settings, "
            "created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (MODEL_CRN, "churn", hash_token(ACCESS), ACCESS[:12], '{"concurrency": 3}', T0, T0),
        )
    ]
    rows += [
        (
            "INSERT INTO api_keys (id, name, key_hash, prefix, role, scope, created_ms, "
            "expires_ms, revoked_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (key_id, name, hash_token(token), token[:12], role, scope, T0, expires),
        )
        for key_id, name, token, role, scope, expires in keys
    ]
    job_columns = (
        "id, name, project, script, args, cron, timezone, every_ms, after_id, manual, "
        "timeout_ms, retries, retry_backoff_ms, env, overlap, catch_up, notify, notify_on, "
        "paused, builtin, created_ms, updated_ms, requirements, monitor"
    )
    for job_id, name, cron, after in (
        ("crn:modelyard:job/00000000-0000-4000-8000-000000000001", "train", "0 * * * *", None),
        (
            "crn:modelyard:job/00000000-0000-4000-8000-000000000002",
            "score",
            None,
            "crn:modelyard:job/00000000-0000-4000-8000-000000000001",
        ),
    ):
        rows.append(
            (
                f"INSERT INTO jobs ({job_columns}) VALUES ({', '.join('?' * 24)})",
                (
                    *(job_id, name, "/srv/p", f"{name}.py", "[]", cron, "UTC", None, after, 0),
                    *(60_000, 0, 1000, "{}", "skip", "latest", "[]", '["failure"]', 0, 0, T0, T0),
                    *("requirements.txt", None),
                ),
            )
        )
    return rows


def build_v8(execute: Callable[[str, tuple[Any, ...]], Any], kind: str) -> None:
    """Schema versions 1..8 from the migration files, recorded as that release recorded them,
    then its rows."""
    execute(CREATE_MIGRATIONS_TABLE, ())
    for migration in migrations(kind)[:8]:
        for statement in migration.statements:
            execute(statement, ())
        execute(
            "INSERT INTO schema_migrations (version, name, modelyard_version, applied_ms) "
            "VALUES (?, ?, ?, ?)",
            (migration.version, migration.name, "0.1.0", T0),
        )
    for text, params in v8_rows():
        execute(text, params)


def v8_home(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[], MetricsStore]:
    if backend == "sqlite":
        import sqlite3

        path = tmp_path / "v8.db"
        with sqlite3.connect(path) as conn:
            build_v8(conn.execute, "sqlite")
        return lambda: SQLiteStore(path)
    import psycopg

    url = request.getfixturevalue("postgres_schema_url")
    with psycopg.connect(url) as pg:
        build_v8(
            lambda text, params: pg.execute(text.replace("?", "%s"), params),
            "postgres",
        )
    return lambda: PostgresStore(url)


def _dump(store: MetricsStore, table: str) -> list[tuple[Any, ...]]:
    with reading(store) as cur:
        cur.execute(f"SELECT * FROM {table}")
        return sorted((tuple(row) for row in cur.fetchall()), key=repr)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_home_of_the_previous_release_lands_in_the_default_project(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    opener = v8_home(backend, tmp_path, request)
    with opener() as store:
        assert store.info().schema_version == SCHEMA_VERSION >= 9  # 8 -> today
        registry = Registry(store)
        # Before the bootstrap the old rows are all there, without project or user.
        assert registry.get_model("churn").project_crn is None
        assert registry.authenticate(TOKENS["user"]).user_id is None
        password = registry.people.bootstrap()
        assert password is not None and len(password) >= 20
        people = registry.people
        admin = people.get_user("admin")
        assert admin.is_admin and admin.has_password and admin.disabled_ms is None
        assert people.sign_in("admin", password) == admin
        default = people.default_project()
        assert (default.full_name, [p.crn for p in people.list_projects()]) == (
            "admin/default",
            [default.crn],
        )
        # models and jobs: in the default project, everything else as it was
        model = registry.get_model("churn")
        assert (model.crn, model.project_crn, model.settings.concurrency) == (
            MODEL_CRN,
            default.crn,
            3,
        )
        assert registry.model_by_access_key(ACCESS).crn == MODEL_CRN
        jobs = registry.list_jobs()
        assert [(j.name, j.project_crn) for j in jobs] == [
            ("score", default.crn),
            ("train", default.crn),
        ]
        assert registry.get_job("score").schedule.after == jobs[1].id
        assert jobs[1].requirements == "requirements.txt"
        # keys: admin keys act as user admin; user keys as admin narrowed to default/operator
        keys = {k.id: k for k in registry.list_api_keys()}
        assert registry.authenticate(TOKENS["admin"]) == keys["k-admin"]
        assert (keys["k-admin"].role, keys["k-admin"].user_id) == (Role.ADMIN, admin.id)
        assert (keys["k-admin"].project_crn, keys["k-admin"].project_role) == (None, None)
        for key_id in ("k-user", "k-scoped"):
            key = keys[key_id]
            assert (key.role, key.user_id, key.project_crn, key.project_role) == (
                Role.USER,
                admin.id,
                default.crn,
                ProjectRole.OPERATOR,
            )
            assert key.expires_ms == T0 + YEAR and key.revoked_ms is None
        assert keys["k-scoped"].scope == MODEL_CRN  # still limited to its model
        assert registry.authenticate(TOKENS["scoped"]).project_role is ProjectRole.OPERATOR
        run = keys["k-run"]
        assert (run.user_id, run.project_crn, run.scope) == (None, None, RUN_SCOPE)
        assert people.project_roles(admin.id) == {default.crn: ProjectRole.ADMIN}
        before = {t: _dump(store, t) for t in ("users", "projects", "models", "jobs", "api_keys")}
    with opener() as store:  # the next start: nothing new, nothing changed
        registry = Registry(store)
        assert registry.people.bootstrap() is None
        after = {t: _dump(store, t) for t in before}
        assert after == before
        assert registry.create_model("fresh")[0].project_crn == default.crn


def test_two_servers_starting_together_bootstrap_once(opener: StoreOpener) -> None:
    with opener() as a, opener() as b, opener() as c:
        registries = [Registry(s) for s in (a, b, c)]
        results = run_together([r.people.bootstrap for r in registries])
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == []
        assert sum(r is not None for r in results) == 1  # one password, printed by one server
        people = registries[0].people
        assert [u.name for u in people.list_users()] == ["admin"]
        assert [p.full_name for p in people.list_projects()] == ["admin/default"]
        password = next(r for r in results if r is not None)
        assert people.sign_in("admin", password).name == "admin"


def test_an_admin_password_can_be_given_and_is_checked(registry: Registry) -> None:
    with pytest.raises(Exception, match="8 to 1000"):
        registry.people.bootstrap(admin_password="short")
    assert registry.people.list_users() == []
    assert registry.people.bootstrap(admin_password="chosen by the operator") == (
        "chosen by the operator"
    )
    assert registry.people.sign_in("admin", "chosen by the operator").name == "admin"
    assert registry.people.bootstrap(admin_password="another one entirely") is None


def test_the_home_gets_the_admin_password_and_key_0600_once(tmp_path: Path) -> None:
    from modelyard.web.home import ensure_admin_key, prepare_home

    home = prepare_home(tmp_path / "home")
    (home / "admin.password").write_text("left from an earlier database\n")
    with SQLiteStore(home / "modelyard.db") as store:
        registry = Registry(store)
        first = ensure_admin_key(home, registry)
        assert first.admin_token is not None and first.admin_password is not None
        for name, secret in (
            ("admin.key", first.admin_token),
            ("admin.password", first.admin_password),
        ):
            path = home / name
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert path.read_text() == secret + "\n"
        key = registry.authenticate(first.admin_token)
        admin = registry.people.get_user("admin")
        assert (key.role, key.user_id) == (Role.ADMIN, admin.id)
        assert registry.people.sign_in("admin", first.admin_password) == admin
        again = ensure_admin_key(home, registry)
        assert (again.admin_token, again.admin_password) == (None, None)
        assert (home / "admin.password").read_text() == first.admin_password + "\n"


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_server_prints_the_admin_password_once(
    modelyard_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelyard.server.app import create_app
    from modelyard.web.services import ServerConfig

    async def start() -> None:
        app = create_app(ServerConfig(home=modelyard_home, port=_free_port()))
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(start())
    password = (modelyard_home / "admin.password").read_text().strip()
    out = capsys.readouterr().out
    assert out.count(password) == 1 and "Created user 'admin'" in out
    asyncio.run(start())
    assert password not in capsys.readouterr().out
