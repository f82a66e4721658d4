"""Uploads against the real app in-process: the protocol (missing, put, manifest), its refusals,
a deploy built from an upload, a second deploy that sends one blob, a cut-off PUT, and the
server-folder path kept for server admins."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path
from typing import Any

import pytest

from modelyard.builds.upload import Pack, pack_project

from ._world import make_world
from .conftest import Api

API = "/api/v1/uploads"


async def _send(api: Api, pack: Pack) -> tuple[dict[str, Any], int]:
    """The client's protocol over the in-process app: (the stored upload, PUTs sent)."""
    c, h = api.client, api.auth()
    answer = await c.post(f"{API}/missing", json={"digests": pack.digests()}, headers=h)
    assert answer.status_code == 200, answer.text
    missing = answer.json()["missing"]
    for digest in missing:
        data = (pack.root / pack.sources[digest].rel).read_bytes()
        put = await c.put(f"{API}/blobs/{digest}", content=data, headers=h)
        assert put.status_code == 201, put.text
    created = await c.post(API, json={"manifest": pack.manifest()}, headers=h)
    assert created.status_code == 201, created.text
    return created.json(), len(missing)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_missing_put_and_manifest(
    with_api: Any, project: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_schema_url") if backend == "postgres" else None
    (project / "lib").mkdir()
    (project / "lib" / "util.py").write_text("X = 1\n")
    (project / "same.py").write_text("X = 1\n")  # equal content: one blob
    pack = pack_project(project)

    async def scenario(api: Api) -> None:
        stored, puts = await _send(api, pack)
        assert puts == 2
        assert stored["files"] == 3 and stored["bytes"] == pack.total_bytes
        upload = api.services.registry.uploads.get(stored["id"])
        assert upload.manifest == pack.manifest()
        # everything is there now: a second send puts nothing
        answer = await api.client.post(
            f"{API}/missing", json={"digests": pack.digests()}, headers=api.auth()
        )
        assert answer.json() == {"missing": [], "have": 2}
        again, puts = await _send(api, pack)
        assert puts == 0 and again["id"] != stored["id"]

    with_api(scenario, database_url=url)


def test_put_refuses_bytes_that_do_not_match_and_stores_nothing(with_api: Any) -> None:
    claimed = hashlib.sha256(b"what was promised").hexdigest()
    actual = hashlib.sha256(b"something else").hexdigest()

    async def scenario(api: Api) -> None:
        c, h = api.client, api.auth()
        answer = await c.put(f"{API}/blobs/{claimed}", content=b"something else", headers=h)
        assert answer.status_code == 400, answer.text
        message = answer.json()["error"]["message"]
        assert claimed in message and actual in message
        missing = await c.post(f"{API}/missing", json={"digests": [claimed]}, headers=h)
        assert missing.json()["missing"] == [claimed]
        bad = await c.put(f"{API}/blobs/not-a-digest", content=b"x", headers=h)
        assert bad.status_code == 400 and "'not-a-digest'" in bad.json()["error"]["message"]

    with_api(scenario)


GOOD = {"path": "a.py", "sha256": "a" * 64, "size": 3, "mode": 0o644}


@pytest.mark.parametrize(
    ("manifest", "status", "message"),
    [
        ([{**GOOD, "path": "../evil.py"}], 400, "'../evil.py' has an empty, '.' or '..' part"),
        ([{**GOOD, "path": "/etc/cron.d/x"}], 400, "'/etc/cron.d/x' is absolute"),
        ([GOOD, {"path": "l", "link": "../../x"}], 400, "'l' is a link to '../../x'"),
        ([GOOD, GOOD], 400, "'a.py' appears twice"),
        (
            [{**GOOD, "path": f"f{i}"} for i in range(20_001)],
            413,
            "lists 20001 files, over the limit of 20000 files",
        ),
        ([GOOD], 400, f"manifest entry 'a.py' names blob {'a' * 64}, which the server does not"),
    ],
)
def test_manifest_refusals_name_the_entry_and_the_limit(
    with_api: Any, manifest: list[Any], status: int, message: str
) -> None:
    async def scenario(api: Api) -> None:
        answer = await api.client.post(API, json={"manifest": manifest}, headers=api.auth())
        assert answer.status_code == status, answer.text
        assert message in answer.json()["error"]["message"]

    with_api(scenario)


async def _cut_off_put(api: Api, digest: str, data: bytes, sent: int) -> None:
    """A PUT whose client goes away after ``sent`` of ``len(data)`` bytes (ASGI disconnect)."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": data[:sent], "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    async def send(message: dict[str, Any]) -> None:
        return None

    path = f"{API}/blobs/{digest}"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {api.admin}".encode()),
            (b"content-length", str(len(data)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    with contextlib.suppress(Exception):
        await api.app(scope, receive, send)


async def _deploy(api: Api, name: str, **body: Any) -> dict[str, Any]:
    answer = await api.client.post(
        f"/api/v1/models/{name}/deploy", json={"example": {"x": 1}, **body}, headers=api.auth()
    )
    assert answer.status_code == 201, answer.text
    outcome: dict[str, Any] = answer.json()
    return outcome


@pytest.mark.slow
def test_deploy_from_upload_serves_and_a_change_sends_one_blob(
    with_api: Any, project: Path
) -> None:
    for i in range(5):
        (project / f"data{i}.txt").write_text(f"file {i}\n" * 100)

    async def scenario(api: Api) -> None:
        c, h = api.client, api.auth()
        first, puts = await _send(api, pack_project(project))
        assert puts == 6
        outcome = await _deploy(api, "uploaded", upload=first["id"])
        assert outcome["ok"] is True
        answer = await c.post("/api/v1/models/uploaded/predict", json={"x": 2}, headers=h)
        assert answer.json()["response"]["prediction"] == {"double": 4}
        # the folder the build read is gone once the deploy returned
        assert list((api.services.config.home / "uploads").iterdir()) == []

        predict = project / "predict.py"
        predict.write_text(predict.read_text().replace("* 2}", "* 3}"))
        changed = pack_project(project)
        second, puts = await _send(api, changed)
        assert puts == 1

        # A PUT cut off halfway stores nothing and leaves the running deployment as it was.
        data = b"def predict(args):\n    return 'never served'\n" * 50
        digest = hashlib.sha256(data).hexdigest()
        await _cut_off_put(api, digest, data, len(data) // 2)
        missing = await c.post(f"{API}/missing", json={"digests": [digest]}, headers=h)
        assert missing.json()["missing"] == [digest]
        answer = await c.post("/api/v1/models/uploaded/predict", json={"x": 2}, headers=h)
        assert answer.json()["response"]["prediction"] == {"double": 4}

        await _deploy(api, "uploaded", upload=second["id"])
        answer = await c.post("/api/v1/models/uploaded/predict", json={"x": 2}, headers=h)
        assert answer.json()["response"]["prediction"] == {"double": 6}

        # exactly one of project and upload; an unknown upload is named
        both = await c.post(
            "/api/v1/models/uploaded/deploy",
            json={"project": str(project), "upload": second["id"]},
            headers=h,
        )
        assert both.status_code in (400, 422) and "give exactly one" in both.text
        unknown = await c.post(
            "/api/v1/models/uploaded/deploy", json={"upload": "no-such-upload"}, headers=h
        )
        assert unknown.status_code == 404 and "'no-such-upload'" in unknown.text

    with_api(scenario)


def test_rights_server_folders_and_other_users_uploads(with_api: Any, project: Path) -> None:
    pack = pack_project(project)
    churn = {"project": "alice/churn"}

    async def scenario(api: Api) -> None:
        world = make_world(api)
        c = api.client
        body = {"digests": pack.digests()}
        viewer = await c.post(f"{API}/missing", json=body, params=churn, headers=world.auth("vic"))
        assert viewer.status_code == 403 and "needs contributor" in viewer.text
        stranger = await c.post(
            f"{API}/missing", json=body, params=churn, headers=world.auth("bob")
        )
        assert stranger.status_code == 404

        def upload_as(who: str) -> Any:
            async def go() -> str:
                h = world.auth(who)
                for digest in (await c.post(f"{API}/missing", json=body, params=churn,
                                            headers=h)).json()["missing"]:  # fmt: skip
                    data = (pack.root / pack.sources[digest].rel).read_bytes()
                    put = await c.put(f"{API}/blobs/{digest}", content=data, params=churn,
                                      headers=h)  # fmt: skip
                    assert put.status_code == 201, put.text
                made = await c.post(
                    API, json={"manifest": pack.manifest()}, params=churn, headers=h
                )
                assert made.status_code == 201, made.text
                return str(made.json()["id"])

            return go()

        alices = await upload_as("alice")
        cora = world.auth("cora")
        deploy = "/api/v1/models/newmodel/deploy"
        folder = await c.post(deploy, json={"project": str(project)}, params=churn, headers=cora)
        assert folder.status_code == 403, folder.text
        assert "server administrators only" in folder.json()["error"]["message"]
        theirs = await c.post(deploy, json={"upload": alices}, params=churn, headers=cora)
        assert theirs.status_code == 404 and "sent by another user" in theirs.text
        assert api.services.registry.uploads.get(alices).created_by == "alice"

    with_api(scenario)


def test_a_job_made_from_an_upload_gets_a_folder_the_server_keeps(
    with_api: Any, project: Path
) -> None:
    pack = pack_project(project)
    churn = {"project": "alice/churn"}

    async def scenario(api: Api) -> None:
        world = make_world(api)
        c, cora = api.client, world.auth("cora")
        for digest in pack.digests():
            data = (pack.root / pack.sources[digest].rel).read_bytes()
            put = await c.put(f"{API}/blobs/{digest}", content=data, params=churn, headers=cora)
            assert put.status_code == 201, put.text
        made = await c.post(API, json={"manifest": pack.manifest()}, params=churn, headers=cora)
        upload = made.json()["id"]
        job = {"name": "nightly", "script": "predict.py", "manual": True}
        created = await c.post(
            "/api/v1/jobs", json={**job, "upload": upload}, params=churn, headers=cora
        )
        assert created.status_code == 201, created.text
        folder = Path(api.services.registry.get_job("nightly").project)
        assert folder == api.services.config.home / "uploads" / "jobs" / upload
        assert (folder / "predict.py").read_bytes() == (project / "predict.py").read_bytes()
        # a server folder stays for server admins; both at once is refused
        direct = await c.post(
            "/api/v1/jobs", json={**job, "name": "direct", "project": str(project)},
            params=churn, headers=cora,
        )  # fmt: skip
        assert direct.status_code == 403, direct.text
        both = await c.post(
            "/api/v1/jobs", json={**job, "name": "both", "project": str(project),
                                  "upload": upload}, params=churn, headers=cora,
        )  # fmt: skip
        assert both.status_code == 400 and "give exactly one" in both.text

    with_api(scenario, jobs=False)
