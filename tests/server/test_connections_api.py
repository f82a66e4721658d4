"""``/api/v1/projects/{project}/connections`` against the real app in-process (SQLite and
PostgreSQL for the registry; a real MariaDB for ``test``): who may list (viewer), create, change
and delete (contributor), test (operator); a credential's value in no answer, no refusal and no
audit entry; ``test`` resolves the project's secrets and says what it found or exactly why not."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import closing
from typing import Any

import orjson
import pytest

from _services import mariadb
from server._cast import Calls, cast
from server.conftest import Api

PASSWORD = f"Conn-pw-{uuid.uuid4().hex}"


def _scenario(user: str) -> Callable[[Api], Any]:
    async def scenario(api: Api) -> None:
        project, keys = cast(api, {"bob": "viewer", "olly": "operator", "carol": "contributor"})
        base = f"/api/v1/projects/{project}/connections"
        call = Calls(api, keys)
        seen = call.seen

        secret = await call(
            "PUT", f"/api/v1/projects/{project}/secrets/MARIA_PASSWORD", json={"value": PASSWORD}
        )
        assert secret.status_code == 200, secret.text
        definition = {
            "name": "maria",
            "kind": "mysql",
            "options": {"host": "127.0.0.1", "port": "3306", "database": "test", "user": user},
            "secrets": {"password": "MARIA_PASSWORD"},
        }
        made = await call("POST", base, "carol", json=definition)
        assert made.status_code == 201, made.text
        shown = made.json()["connection"]
        assert shown["options"]["port"] == 3306 and shown["created_by"] == "carol"
        assert shown["project"] == "admin/default"
        assert (await call("POST", base, "carol", json=definition)).status_code == 409
        assert (await call("POST", base, "olly", json=definition)).status_code == 403

        listed = await call("GET", base, "bob")
        assert [x["name"] for x in listed.json()["connections"]] == ["maria"]
        assert (await call("GET", f"{base}/maria", "bob")).json()["connection"] == shown
        assert (await call("GET", base, "dave")).status_code == 404  # no role: as if unknown

        probe = await call("POST", f"{base}/maria/test", "olly")
        assert probe.status_code == 200, probe.text
        assert probe.json()["ok"] is True, probe.text
        assert probe.json()["ok"] is True and "MariaDB" in probe.json()["detail"]
        assert (await call("POST", f"{base}/maria/test", "bob")).status_code == 403

        await call(
            "PUT", f"/api/v1/projects/{project}/secrets/WRONG", json={"value": PASSWORD + "!"}
        )
        patched = await call(
            "PATCH", f"{base}/maria", "carol", json={"secrets": {"password": "WRONG"}}
        )
        assert patched.status_code == 200 and patched.json()["connection"]["secrets"] == {
            "password": "WRONG"
        }
        failed = (await call("POST", f"{base}/maria/test", "olly")).json()
        assert failed["ok"] is False and "bad credentials" in failed["detail"]
        missing = await call("PATCH", f"{base}/maria", json={"secrets": {"password": "UNSET"}})
        assert missing.status_code == 200
        unset = await call("POST", f"{base}/maria/test")
        assert unset.status_code == 404 and "'UNSET' not set in project" in unset.text

        # Refusals name what is wrong and never quote a credential typed in by mistake.
        for body in (
            {
                **definition,
                "name": "other",
                "options": {**definition["options"], "password": PASSWORD},
            },
            {**definition, "name": "other", "password": PASSWORD},
            {**definition, "name": "other", "options": f"password={PASSWORD}"},
            [PASSWORD],
        ):
            bad = await call("POST", base, json=body)
            assert bad.status_code == 400, bad.text
        bad = await call("PATCH", f"{base}/maria", json={"kind": "postgresql"})
        assert bad.status_code == 400 and "accepted: options, secrets" in bad.text

        assert (await call("DELETE", f"{base}/maria", "olly")).status_code == 403
        assert (await call("DELETE", f"{base}/maria", "carol")).status_code == 204
        gone = await call("GET", f"{base}/maria")
        assert gone.status_code == 404 and "it has no connections yet" in gone.text

        assert api.app.state.audit_recorder.flush(10)
        entries = api.services.registry.audit.list(action="connections")
        actions = {(e.action, e.object, e.outcome) for e in entries}
        assert ("connections.create_connection", "maria", "ok") in actions
        assert ("connections.delete_connection", f"project={project},name=maria", "ok") in actions
        everything = api.services.registry.audit.list()
        reads = [e for e in everything if e.action == "secrets.read"]
        assert reads and reads[-1].object == "connection:maria"
        audit_text = orjson.dumps([e.__repr__() for e in everything]).decode()
        assert PASSWORD not in audit_text
        assert not [text for text in seen if PASSWORD in text]

    return scenario


@pytest.fixture
def maria_user() -> Any:
    conn = mariadb()
    user = f"h2api_{uuid.uuid4().hex[:8]}"
    hosts = ("%", "localhost")
    with closing(conn), conn.cursor() as cur:
        for host in hosts:
            cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{PASSWORD}'")
            cur.execute(f"GRANT SELECT ON test.* TO '{user}'@'{host}'")
    try:
        yield user
    finally:
        with closing(mariadb()) as conn, conn.cursor() as cur:
            for host in hosts:
                cur.execute(f"DROP USER '{user}'@'{host}'")


def test_connections_routes(
    with_api: Callable[..., Any], database: dict[str, Any], maria_user: str
) -> None:
    with_api(_scenario(maria_user), jobs=False, **database)
