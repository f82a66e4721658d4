"""``/api/v1/projects/{project}/secrets`` against the real app in-process (SQLite and PostgreSQL):
names in, names out, values never in an answer (not even a refusal); who may list (viewer),
set and delete (contributor); the same 404 for a project the caller has no role in as for an
unknown one; the CLI reads the value from stdin and refuses it as an argument."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from server._cast import Calls, cast
from server.conftest import Api

VALUE = "s3cr3t-value-\u00e9-0123456789"


async def _scenario(api: Api) -> None:
    uuid, keys = cast(api, {"bob": "viewer", "carol": "contributor"})
    base = f"/api/v1/projects/{uuid}/secrets"
    call = Calls(api, keys)
    seen = call.seen

    put = await call("PUT", f"{base}/DB_PASSWORD", "carol", json={"value": VALUE})
    assert put.status_code == 200, put.text
    secret = put.json()["secret"]
    assert secret["name"] == "DB_PASSWORD" and secret["set_by"] == "carol"
    assert secret["project"] == "admin/default"
    assert (await call("PUT", f"{base}/API_TOKEN", json={"value": "t0k"})).status_code == 200

    listed = await call("GET", base, "bob")  # a viewer lists names
    assert listed.status_code == 200, listed.text
    assert [s["name"] for s in listed.json()["secrets"]] == ["API_TOKEN", "DB_PASSWORD"]
    assert {s["set_by"] for s in listed.json()["secrets"]} == {"admin", "carol"}

    refused = await call("PUT", f"{base}/DB_PASSWORD", "bob", json={"value": VALUE + "x"})
    assert refused.status_code == 403, refused.text
    assert "viewer" in refused.text and "contributor" in refused.text
    assert (await call("DELETE", f"{base}/API_TOKEN", "bob")).status_code == 403

    hidden = await call("GET", base, "dave")  # no role at all: as if it did not exist
    unknown = await call("GET", "/api/v1/projects/no-such-project/secrets", "dave")
    assert hidden.status_code == unknown.status_code == 404
    assert (await call("PUT", f"{base}/X", "dave", json={"value": VALUE})).status_code == 404

    # Refusals describe the body, never quote it.
    for body in ([VALUE], {"value": VALUE, "extra": VALUE}, {"valeu": VALUE}, VALUE):
        bad = await call("PUT", f"{base}/DB_PASSWORD", "carol", json=body)
        assert bad.status_code == 400, bad.text
    bad = await call("PUT", f"{base}/DB_PASSWORD", content=VALUE.encode()[:-3] + b"{")
    assert bad.status_code in (400, 422), bad.text
    big = await call("PUT", f"{base}/BIG", json={"value": VALUE * 3000})
    assert big.status_code == 400 and "at most 65536 bytes" in big.text
    nul = await call("PUT", f"{base}/NUL", json={"value": VALUE + "\x00"})
    assert nul.status_code == 400 and "NUL" in nul.text
    lower = await call("PUT", f"{base}/db_password", json={"value": VALUE})
    assert lower.status_code == 400 and "'db_password' is not accepted" in lower.text
    reserved = await call("PUT", f"{base}/MODELYARD_API_KEY", json={"value": VALUE})
    assert reserved.status_code == 400 and "MODELYARD_" in reserved.text

    gone = await call("DELETE", f"{base}/API_TOKEN", "carol")
    assert gone.status_code == 204
    again = await call("DELETE", f"{base}/API_TOKEN", "carol")
    assert again.status_code == 404 and "'API_TOKEN' not set in project 'admin/default'" in (
        again.text
    )
    final = await call("GET", base)
    assert [s["name"] for s in final.json()["secrets"]] == ["DB_PASSWORD"]

    assert not [text for text in seen if VALUE in text or VALUE[:12] in text]
    # The value went in, encrypted: the server can read it back for a replica or a run.
    project_crn = api.services.registry.people.default_project().crn
    read = api.services.registry.secrets.values(project_crn, ["DB_PASSWORD"])
    assert read == {"DB_PASSWORD": VALUE}


def test_secrets_routes(with_api: Callable[..., Any]) -> None:
    with_api(_scenario, jobs=False)


@pytest.mark.postgres
def test_secrets_routes_on_postgres(with_api: Callable[..., Any], postgres_schema_url: str) -> None:
    with_api(_scenario, jobs=False, database_url=postgres_schema_url)
