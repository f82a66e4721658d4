"""The authorization matrix, tested exhaustively: every route the app serves (REST, the gateway's
model calls) x every kind of caller (each project role, a server administrator, a user with no
role, a deployment's run key, a job run's key) x the caller's own project and another one.

How an answer is judged:
- Every route carries a rule (``web.access.Rule``: a right, where the target's project comes
  from, whether run keys may use it), found on its ``requires`` dependency; the gateway's raw
  routes are in ``GATEWAY_RULES``. A route without a rule fails ``test_every_route_has_a_rule``,
  and ``EXPECTED`` is the matrix written down: a route whose rule changes fails until the table
  (the documented matrix, docs/teams.md) is changed with it.
- Allowed: the answer is the one a server administrator gets for the same request on an
  identical object of its own (a project with the same model, build, deployment, prediction,
  job and run), so an allowed call is judged by what the handler does (200, 204, 422 for the
  deliberately empty body of a state-changing route, 409...), never by a guess.
- Refused with a role too low: 403, and the message names the role the route needs.
- The object is in a project the caller has no role in (or names another model than a key's
  own): 404 with the same message as an unknown name, so existence does not leak.
- Lists: 200 and nothing of the other project in the answer.

Each caller acts on its own copy of the objects, so a state-changing call by one cannot change
what another sees; the routes that delete come last.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from modelyard.registry import ProjectRole, Registry
from modelyard.specs.job import JobSpec
from modelyard.store.base import Identity, Prediction
from modelyard.web.access import NEEDED, On, Right, Rule

from ._cast import stopped_deployment
from .conftest import Api

pytestmark = pytest.mark.slow

ROLES = [role.value for role in ProjectRole]
T0 = 1_700_000_000_000  # when the matrix's prediction was made (timestamps must be after 2000)

# The gateway's model calls and /metrics are raw Starlette routes (the hot path has no FastAPI
# dependency): their rule is stated here and enforced in server/gateway_routes.py and ops.py.
GATEWAY_RULES: dict[tuple[str, str], Rule] = {
    ("POST", "/model"): Rule(Right.OPERATE, On.MODEL),
    ("POST", "/api/v1/models/{name}/predict"): Rule(Right.OPERATE, On.MODEL),
    ("POST", "/api/v1/models/{name}/predict_batch"): Rule(Right.OPERATE, On.MODEL),
    # Prometheus: every project's models, so server administrators (or --public-metrics).
    ("GET", "/metrics"): Rule(Right.SERVER),
}
OPEN_ROUTES = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/healthz"),
}


def _rule_of(route: Any) -> Rule | None:
    """The Rule on a FastAPI route's ``requires`` dependency (searched through sub-dependencies)."""
    dependant = getattr(route, "dependant", None)
    stack = list(dependant.dependencies) if dependant is not None else []
    while stack:
        dep = stack.pop()
        rule = getattr(dep.call, "rule", None)
        if isinstance(rule, Rule):
            return rule
        stack.extend(dep.dependencies)
    return None


def routes(app: Any) -> list[tuple[str, str, Any]]:
    """(method, full path template, route) for every API route, through included routers."""
    found: list[tuple[str, str, Any]] = []

    def walk(items: list[Any], prefix: str) -> None:
        for route in items:
            if isinstance(route, Route):
                for method in sorted(route.methods or ()):
                    if method != "HEAD":
                        found.append((method, prefix + route.path, route))
            elif hasattr(route, "original_router"):
                walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif hasattr(route, "routes"):  # a mounted app (static files): not an API route
                continue
            else:
                raise AssertionError(f"unexpected route type {route!r}: teach this test about it")

    walk(app.routes, "")
    return found


def api_routes(app: Any) -> dict[tuple[str, str], Rule | None]:
    """Every REST and gateway route with its rule; the dashboard (/ui) is covered by
    tests/ui (it answers with pages and redirects, and decides with the same Caller)."""
    table: dict[tuple[str, str], Rule | None] = {}
    for method, path, route in routes(app):
        if (method, path) in OPEN_ROUTES or path == "/" or path.startswith("/ui"):
            continue
        table[(method, path)] = GATEWAY_RULES.get((method, path)) or _rule_of(route)
    return table


@dataclass
class Objects:
    """One project's copy of everything a route can name."""

    project_crn: str
    project_ref: str
    model: str
    model_crn: str
    access_key: str
    build_crn: str
    deployment_crn: str
    uuid: str
    job: str
    run_id: str
    spare_key_id: str = ""


@dataclass
class Principal:
    """A caller: its token, its own objects, and the role it has in their project."""

    name: str
    token: str
    own: Objects
    role: ProjectRole | None  # None: the server administrator (allowed everything)
    kind: str = "user"  # "user", "admin", "outsider", "deployment-key", "run-key"
    answers: dict[tuple[str, str, str], httpx.Response] = field(default_factory=dict)


def _objects(registry: Registry, project_crn: str, ref: str, tag: str, folder: Path) -> Objects:
    model, access_key, build, deployment = stopped_deployment(registry, f"m-{tag}", project_crn)
    prediction = str(uuid.uuid4())
    registry.store.write_predictions(
        [
            Prediction(
                prediction,
                Identity(model.crn, build.crn, deployment.crn),
                T0 + 1_000,
                T0 + 1_001,
                {"x": 1.0},
            )
        ]
    )
    job = registry.create_job(
        JobSpec(name=f"j-{tag}", project=str(folder), script="job.py", manual=True),
        project_crn,
    )
    run = registry.create_run(job.id, 0, 1, "manual")
    return Objects(
        project_crn=project_crn,
        project_ref=ref,
        model=model.name,
        model_crn=model.crn,
        access_key=access_key,
        build_crn=build.crn,
        deployment_crn=deployment.crn,
        uuid=prediction,
        job=job.name,
        run_id=run.id,
        spare_key_id="",
    )


def _world(api: Api, folder: Path) -> tuple[list[Principal], Principal, Objects]:
    """Users, projects and objects: one project per role (owned by 'olga', the role's user a
    collaborator), the administrator's own project, and 'other' that nobody here has a role in."""
    registry = api.services.registry
    people = registry.people
    people.create_user("olga")
    (folder / "job.py").write_text("print('hi')\n")
    principals: list[Principal] = []
    for role in ROLES:
        user = f"u-{role}"
        people.create_user(user)
        project = people.create_project(f"p-{role}", owner="olga")
        people.set_collaborator(project.crn, "user", user, role)
        own = _objects(registry, project.crn, project.full_name, role, folder)
        spare, _ = registry.create_api_key(f"{user}-spare", role="user", user=user)
        own.spare_key_id = spare.id
        _, token = registry.create_api_key(f"{user}-key", role="user", user=user)
        principals.append(Principal(user, token, own, ProjectRole(role)))
    mine = people.create_project("p-admin", owner="admin")
    admin_own = _objects(registry, mine.crn, mine.full_name, "admin-own", folder)
    spare, _ = registry.create_api_key(
        "admin-spare", role="admin", expires_in_ms=None, user="admin"
    )
    admin_own.spare_key_id = spare.id
    admin = Principal("admin", api.admin, admin_own, None, kind="admin")
    other_project = people.create_project("other", owner="olga")
    other = _objects(registry, other_project.crn, other_project.full_name, "other", folder)
    olga_key, _ = registry.create_api_key("olga-key", role="user", user="olga")
    other.spare_key_id = olga_key.id  # another user's key: revoking it is as if it were unknown
    people.create_user("outsider")
    _, outsider_token = registry.create_api_key("outsider-key", role="user", user="outsider")
    operator = principals[1]
    principals.append(Principal("outsider", outsider_token, other, None, kind="outsider"))
    _, deployment_token = registry.create_api_key(
        "deployment-key", role="run", scope=operator.own.model_crn
    )
    principals.append(
        Principal("deployment-key", deployment_token, operator.own, None, kind="deployment-key")
    )
    _, run_token = registry.create_api_key("run-key", role="run", scope=operator.own.run_id)
    principals.append(Principal("run-key", run_token, operator.own, None, kind="run-key"))
    return principals, admin, other


# -- requests -----------------------------------------------------------------------------------
def _name_for(path: str, objects: Objects) -> str:
    if path.startswith(("/api/v1/models/", "/ui/models/")):
        return objects.model
    if path.startswith("/api/v1/jobs/"):
        return objects.job
    if path.startswith("/api/v1/monitors/"):
        return "watch"
    if "/secrets/" in path:
        return "MATRIX_SECRET"
    if "/collaborators/" in path:
        return "u-viewer"
    return "nobody-here"  # users: a name that does not exist (server admins get 404)


def fill(path: str, objects: Objects) -> str:
    values = {
        "run_id": objects.run_id.rpartition("/")[2],  # path segments: the CRNs' uuids
        "key_id": objects.spare_key_id,
        "build_id": objects.build_crn.rpartition("/")[2],
        "uuid": objects.uuid,
        "project": objects.project_crn.rpartition("/")[2],  # a path segment: the CRN's uuid
        "kind": "user",
        "team": "nobody-team",
        "user": "nobody-here",
        "digest": "0" * 64,
        "sha256": "0" * 64,
        "name": _name_for(path, objects),
    }
    return re.sub(
        r"\{(\w+)(:\w+)?\}",
        lambda m: values.get(m.group(1), "sample"),
        path,
    )


def query(objects: Objects) -> dict[str, str]:
    """What a route's query may name: the objects of ``objects`` under every name the routes use
    (unused names are ignored by a route)."""
    found = {
        "model_crn": objects.model_crn,
        "deployment_crn": objects.deployment_crn,
        "deployment": objects.deployment_crn,
        "model": objects.model,
        "key": "x",
        "modelCrn": objects.model_crn,
        "modelDeploymentCrn": objects.deployment_crn,
        "feature": "x",
        "metric": "x",
        "start_ms": str(T0),
        "end_ms": str(T0 + 60_000),
        "after_ms": str(T0),
        "through_ms": str(T0 + 60_000),
        "window_ms": "60000",
        "connection": "labels-db",
    }
    found["project"] = objects.project_crn
    return found


def body(method: str, path: str, objects: Objects) -> Any:
    """A valid body for routes whose rule is checked on what the body names (On.BODY); ``{}``
    elsewhere: the rule is checked before the body is read, so an allowed caller gets the
    handler's 422 and nothing changes."""
    deployment = objects.deployment_crn
    window = {"start_ms": T0, "end_ms": T0 + 60_000}
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/api/v1/metrics/predictions"): {
            "predictions": [
                {
                    "predictionUuid": str(uuid.uuid4()),
                    "modelCrn": objects.model_crn,
                    "modelBuildCrn": objects.build_crn,
                    "modelDeploymentCrn": deployment,
                    "startTimeStampMs": T0 + 2_000,
                    "endTimeStampMs": T0 + 2_001,
                    "metrics": {"x": 2.0},
                }
            ]
        },
        ("POST", "/api/v1/metrics/delayed"): {
            "predictionUuid": objects.uuid,
            "metrics": {"label": 1},
        },
        ("POST", "/api/v1/metrics/delayed/batch"): {
            "items": [{"predictionUuid": objects.uuid, "metrics": {"label": 1}}],
        },
        ("POST", "/api/v1/metrics/aggregate"): {
            "modelDeploymentCrn": deployment,
            "startTimeStampMs": T0,
            "endTimeStampMs": T0 + 60_000,
            "metrics": {"auc": 0.5},
        },
        ("POST", "/api/v1/runs/{run_id}/metrics"): {"metrics": {"loss": 0.1}},
        ("POST", "/api/v1/monitors/label-times"): {
            "deployment": deployment,
            "key": "label",
            "uuids": [objects.uuid],
        },
        ("POST", "/api/v1/monitors/distribution"): {
            "deployment": deployment,
            "key": "x",
            "ranks": [0.5],
            **window,
        },
        ("PUT", "/api/v1/monitors/{name}/state"): {
            "deployment": deployment,
            "labels_through_ms": T0,
        },
        ("PUT", "/api/v1/monitors/{name}/results"): {
            "deployment": deployment,
            "source": "matrix",
            "n": 1,
            "metrics": {"auc": 0.5},
            **window,
        },
        ("POST", "/api/v1/monitors/{name}/alerts"): {"deployment": deployment, "rules": []},
        ("PUT", "/api/v1/monitors/{name}/labels"): {
            "deployment": deployment,
            "record": {"connection": "labels-db", "started_ms": T0, "finished_ms": T0},
        },
        ("POST", "/api/v1/references"): {
            "deployment": deployment,
            "name": "training",
            "columns": {"x": [1.0, 2.0, 3.0]},
        },
        ("POST", "/model"): {"accessKey": objects.access_key, "request": {"x": 1}},
    }
    return bodies.get((method, path), {})


def _order(item: tuple[tuple[str, str], Rule | None]) -> tuple[int, str, str]:
    """Reads and changes first, deletions last (a deleted object changes later answers), and
    the project's own deletion after everything in it; rotating access keys after the calls
    that use them."""
    (method, path), _ = item
    if (method, path) == ("DELETE", "/api/v1/projects/{project}"):
        return (3, path, method)
    if method == "DELETE":
        return (2, path, method)
    if path.endswith("/rotate-key"):  # the access keys POST /model is called with change
        return (1, path, method)
    return (0, path, method)


async def ask(
    client: httpx.AsyncClient, principal: Principal, method: str, path: str, rule: Rule, on: Objects
) -> httpx.Response:
    return await client.request(
        method,
        fill(path, on),
        params=query(on),
        json=body(method, path, on),
        headers={"Authorization": f"Bearer {principal.token}"},
    )


# -- judging ------------------------------------------------------------------------------------
def _is_hidden(answer: httpx.Response) -> bool:
    """The 404 an unknown name gets (a project's object, or another user's key)."""
    hidden = (
        "not in a project you can see",
        "is not known, or not yours",
        "is not a project you can see",  # the dashboard's project switcher
    )
    return answer.status_code == 404 and any(text in answer.text for text in hidden)


def _needs_project_role(rule: Rule) -> bool:
    return rule.right in NEEDED


def expected_kind(principal: Principal, rule: Rule, path: str, own: bool) -> str:
    """'allowed', 'forbidden' (403 naming the role needed) or 'hidden' (the 404 of an unknown
    object) for ``principal`` on its own objects (``own``) or another project's."""
    if principal.kind == "admin":
        return "allowed"
    if principal.kind in ("deployment-key", "run-key"):
        if not rule.run_keys:
            return "forbidden"
        if principal.kind == "deployment-key" and rule.on in (On.JOB, On.RUN):
            # a deployment's key reaches its own model's metrics only; runs of its own project
            # are refused, those of others are as if unknown
            return "forbidden" if own else "hidden"
        return "allowed" if own else "hidden"
    if rule.right is Right.SERVER:
        return "forbidden"
    if rule.right is Right.SIGNED_IN:  # the caller's own things; another user's key: unknown
        return "allowed" if own or "{" not in path else "hidden"
    if rule.on is On.NONE:  # a list: answered and filtered, or a filter naming an unseen project
        return "allowed" if own else "list"
    if not own or principal.role is None:
        return "hidden"
    return "allowed" if principal.role.rank >= NEEDED[rule.right].rank else "forbidden"


def judge(
    principal: Principal,
    rule: Rule,
    path: str,
    answer: httpx.Response,
    reference: httpx.Response,
    own: bool,
    other: Objects,
) -> str | None:
    """None when ``answer`` is right; else what is wrong."""
    kind = expected_kind(principal, rule, path, own)
    if kind == "allowed":
        return _allowed(principal, rule, answer, reference, other)
    if kind == "list":
        return (
            None
            if _is_hidden(answer)
            else _unfiltered(answer, other, "a list filtered by an unseen project")
        )
    if kind == "forbidden":
        return _forbidden(principal, rule, answer)
    if not _is_hidden(answer):
        return f"hidden: expected the 404 of an unknown object, got {answer.status_code}"
    if other.project_ref in answer.text:  # its owner/name: the request sent only ids
        return "the 404 names the project the caller has no role in"
    return None


def _allowed(
    principal: Principal,
    rule: Rule,
    answer: httpx.Response,
    reference: httpx.Response,
    other: Objects,
) -> str | None:
    status = answer.status_code
    if status != reference.status_code or status in (401, 403) or _is_hidden(answer):
        return f"allowed: expected {reference.status_code} like the administrator, got {status}"
    if rule.on is On.NONE and principal.kind != "admin" and answer.request.method == "GET":
        return _unfiltered(answer, other, "a list")
    return None


def _unfiltered(answer: httpx.Response, other: Objects, what: str) -> str | None:
    if answer.status_code != 200:
        return f"{what}: expected 200, got {answer.status_code}"
    for leak in (other.model, other.model_crn, other.project_crn, other.job):
        if leak in answer.text:
            return f"{what} shows {leak!r} of a project the caller has no role in"
    return None


def _forbidden(principal: Principal, rule: Rule, answer: httpx.Response) -> str | None:
    if answer.status_code != 403:
        return f"forbidden: expected 403, got {answer.status_code}"
    if _needs_project_role(rule) and principal.kind not in ("deployment-key", "run-key"):
        needed = NEEDED[rule.right].value
        if needed not in answer.text:
            return f"the 403 does not name the role needed ({needed})"
    return None


def _problems(results: Iterator[str | None]) -> list[str]:
    return [problem for problem in results if problem]


def test_every_route_has_a_rule(with_api: Any) -> None:
    async def scenario(api: Api) -> None:
        table = api_routes(api.app)
        assert len(table) >= 60
        missing = sorted(f"{m} {p}" for (m, p), rule in table.items() if rule is None)
        assert not missing, f"routes without an authorization rule: {missing}"
        declared = {key: rule for key, rule in table.items() if rule is not None}
        assert declared == EXPECTED, _diff(declared)

    with_api(scenario)


def _diff(declared: dict[tuple[str, str], Rule]) -> str:
    lines = []
    for key in sorted(set(declared) | set(EXPECTED)):
        if declared.get(key) != EXPECTED.get(key):
            lines.append(f"{key}: declared {declared.get(key)}, expected {EXPECTED.get(key)}")
    return "\n".join(lines)


def test_the_matrix(with_api: Any, tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        principals, admin, other = _world(api, tmp_path)
        for objects in {id(p.own): p.own for p in [*principals, admin]}.values():
            answer = await api.client.post(  # a reference sample for GET /references/data
                "/api/v1/references",
                json=body("POST", "/api/v1/references", objects),
                headers=api.auth(),
            )
            assert answer.status_code < 300, answer.text
        table = sorted(
            ((key, rule) for key, rule in api_routes(api.app).items() if rule is not None),
            key=_order,
        )
        problems: list[str] = []
        checked = 0
        for (method, path), rule in table:
            reference = await ask(api.client, admin, method, path, rule, admin.own)
            assert reference.status_code not in (401, 403), (method, path, reference.text)
            assert not _is_hidden(reference), (method, path, reference.text)
            for principal in principals:
                for own in (True, False):
                    if principal.kind == "outsider" and own:
                        continue  # its "own" objects are the other project's: covered below
                    target = principal.own if own else other
                    answer = await ask(api.client, principal, method, path, rule, target)
                    checked += 1
                    problem = judge(principal, rule, path, answer, reference, own, other)
                    if problem:
                        where = "own project" if own else "other project"
                        problems.append(
                            f"{method} {path} as {principal.name} ({where}): {problem}; "
                            f"answer {answer.status_code} {answer.text[:200]}"
                        )
        assert checked >= 60 * 2 * len(principals) - 60, checked
        assert not problems, "\n".join(problems)

    with_api(scenario)


READ, OPERATE, CHANGE, MANAGE = Right.READ, Right.OPERATE, Right.CHANGE, Right.MANAGE
SERVER, SIGNED_IN = Right.SERVER, Right.SIGNED_IN

EXPECTED: dict[tuple[str, str], Rule] = {
    ("GET", "/api/v1/alerts"): Rule(READ, On.NONE),
    ("GET", "/api/v1/audit"): Rule(MANAGE, On.BODY),
    ("GET", "/api/v1/cluster"): Rule(READ, On.NONE),
    ("GET", "/api/v1/drift"): Rule(READ, On.BODY),
    ("GET", "/api/v1/drift/distributions"): Rule(READ, On.BODY),
    ("GET", "/api/v1/drift/groups"): Rule(READ, On.BODY),
    ("GET", "/api/v1/experiments"): Rule(READ, On.NONE),
    ("POST", "/api/v1/experiments"): Rule(CHANGE, On.QUERY_PROJECT),
    ("GET", "/api/v1/experiments/compare"): Rule(READ, On.NONE),
    ("GET", "/api/v1/experiments/{run_id}"): Rule(READ, On.RUN),
    ("DELETE", "/api/v1/experiments/{run_id}"): Rule(CHANGE, On.RUN),
    ("POST", "/api/v1/experiments/{run_id}/cancel"): Rule(OPERATE, On.RUN),
    ("GET", "/api/v1/experiments/{run_id}/files"): Rule(READ, On.RUN),
    ("GET", "/api/v1/experiments/{run_id}/files/{path:path}"): Rule(READ, On.RUN),
    ("GET", "/api/v1/experiments/{run_id}/logs"): Rule(READ, On.RUN),
    ("GET", "/api/v1/jobs"): Rule(READ, On.NONE),
    ("POST", "/api/v1/jobs"): Rule(CHANGE, On.QUERY_PROJECT),
    ("DELETE", "/api/v1/jobs/{name}"): Rule(CHANGE, On.JOB),
    ("GET", "/api/v1/jobs/{name}"): Rule(READ, On.JOB),
    ("PATCH", "/api/v1/jobs/{name}"): Rule(CHANGE, On.JOB),
    ("POST", "/api/v1/jobs/{name}/pause"): Rule(CHANGE, On.JOB),
    ("POST", "/api/v1/jobs/{name}/resume"): Rule(CHANGE, On.JOB),
    ("POST", "/api/v1/jobs/{name}/run"): Rule(OPERATE, On.JOB),
    ("GET", "/api/v1/jobs/{name}/runs"): Rule(READ, On.JOB),
    ("GET", "/api/v1/keys"): Rule(SIGNED_IN, On.NONE),
    ("POST", "/api/v1/keys"): Rule(SIGNED_IN, On.NONE),
    ("DELETE", "/api/v1/keys/{key_id}"): Rule(SIGNED_IN, On.NONE),
    ("GET", "/api/v1/me"): Rule(SIGNED_IN, On.NONE),
    ("PUT", "/api/v1/me/password"): Rule(SIGNED_IN, On.NONE),
    ("GET", "/api/v1/metrics"): Rule(READ, On.BODY, run_keys=True),
    ("POST", "/api/v1/metrics/aggregate"): Rule(OPERATE, On.BODY, run_keys=True),
    ("POST", "/api/v1/metrics/delayed"): Rule(OPERATE, On.BODY, run_keys=True),
    ("POST", "/api/v1/metrics/delayed/batch"): Rule(OPERATE, On.BODY, run_keys=True),
    ("GET", "/api/v1/metrics/distribution"): Rule(READ, On.BODY, run_keys=True),
    ("POST", "/api/v1/metrics/predictions"): Rule(OPERATE, On.BODY, run_keys=True),
    ("GET", "/api/v1/models"): Rule(READ, On.NONE),
    ("DELETE", "/api/v1/models/{name}"): Rule(CHANGE, On.MODEL),
    ("GET", "/api/v1/models/{name}"): Rule(READ, On.MODEL),
    ("GET", "/api/v1/models/{name}/builds"): Rule(READ, On.MODEL),
    ("GET", "/api/v1/models/{name}/builds/{build_id}/log"): Rule(READ, On.MODEL),
    ("POST", "/api/v1/models/{name}/deploy"): Rule(CHANGE, On.MODEL_OR_CREATE),
    ("GET", "/api/v1/models/{name}/logs"): Rule(READ, On.MODEL),
    ("POST", "/api/v1/models/{name}/predict"): Rule(OPERATE, On.MODEL),
    ("POST", "/api/v1/models/{name}/predict_batch"): Rule(OPERATE, On.MODEL),
    ("GET", "/api/v1/models/{name}/predictions"): Rule(READ, On.MODEL),
    ("POST", "/api/v1/models/{name}/rollback"): Rule(CHANGE, On.MODEL),
    ("POST", "/api/v1/models/{name}/rotate-key"): Rule(CHANGE, On.MODEL),
    ("POST", "/api/v1/models/{name}/scale"): Rule(CHANGE, On.MODEL),
    ("POST", "/api/v1/models/{name}/start"): Rule(CHANGE, On.MODEL),
    ("POST", "/api/v1/models/{name}/stop"): Rule(CHANGE, On.MODEL),
    ("GET", "/api/v1/models/{name}/tech"): Rule(READ, On.MODEL),
    ("GET", "/api/v1/models/{name}/timeline"): Rule(READ, On.MODEL),
    ("GET", "/api/v1/models/{name}/compare"): Rule(READ, On.MODEL),
    ("POST", "/api/v1/monitors/distribution"): Rule(READ, On.BODY, run_keys=True),
    ("GET", "/api/v1/monitors/keys"): Rule(READ, On.BODY, run_keys=True),
    ("POST", "/api/v1/monitors/label-times"): Rule(READ, On.BODY, run_keys=True),
    ("GET", "/api/v1/monitors/late-labels"): Rule(READ, On.BODY, run_keys=True),
    ("GET", "/api/v1/monitors/resolve"): Rule(READ, On.BODY, run_keys=True),
    ("POST", "/api/v1/monitors/{name}/alerts"): Rule(OPERATE, On.BODY, run_keys=True),
    ("GET", "/api/v1/monitors/connection"): Rule(READ, On.BODY, run_keys=True),
    ("GET", "/api/v1/monitors/{name}/labels"): Rule(READ, On.BODY, run_keys=True),
    ("PUT", "/api/v1/monitors/{name}/labels"): Rule(OPERATE, On.BODY, run_keys=True),
    ("GET", "/api/v1/monitors/{name}/results"): Rule(READ, On.BODY, run_keys=True),
    ("PUT", "/api/v1/monitors/{name}/results"): Rule(OPERATE, On.BODY, run_keys=True),
    ("GET", "/api/v1/monitors/{name}/state"): Rule(READ, On.BODY, run_keys=True),
    ("PUT", "/api/v1/monitors/{name}/state"): Rule(OPERATE, On.BODY, run_keys=True),
    ("GET", "/api/v1/overview"): Rule(READ, On.NONE),
    ("GET", "/api/v1/predictions/{uuid}"): Rule(READ, On.BODY),
    ("GET", "/api/v1/projects"): Rule(SIGNED_IN, On.NONE),
    ("POST", "/api/v1/projects"): Rule(SIGNED_IN, On.NONE),
    ("DELETE", "/api/v1/projects/{project}"): Rule(MANAGE, On.PROJECT),
    ("GET", "/api/v1/projects/{project}"): Rule(READ, On.PROJECT),
    ("GET", "/api/v1/projects/{project}/collaborators"): Rule(READ, On.PROJECT),
    ("DELETE", "/api/v1/projects/{project}/collaborators/{kind}/{name}"): Rule(MANAGE, On.PROJECT),
    ("PUT", "/api/v1/projects/{project}/collaborators/{kind}/{name}"): Rule(MANAGE, On.PROJECT),
    ("GET", "/api/v1/projects/{project}/secrets"): Rule(READ, On.PROJECT),
    ("DELETE", "/api/v1/projects/{project}/secrets/{name}"): Rule(CHANGE, On.PROJECT),
    ("PUT", "/api/v1/projects/{project}/secrets/{name}"): Rule(CHANGE, On.PROJECT),
    ("GET", "/api/v1/projects/{project}/connections"): Rule(READ, On.PROJECT),
    ("POST", "/api/v1/projects/{project}/connections"): Rule(CHANGE, On.PROJECT),
    ("GET", "/api/v1/projects/{project}/connections/{name}"): Rule(READ, On.PROJECT),
    ("PATCH", "/api/v1/projects/{project}/connections/{name}"): Rule(CHANGE, On.PROJECT),
    ("DELETE", "/api/v1/projects/{project}/connections/{name}"): Rule(CHANGE, On.PROJECT),
    ("POST", "/api/v1/projects/{project}/connections/{name}/test"): Rule(OPERATE, On.PROJECT),
    ("GET", "/api/v1/references"): Rule(READ, On.NONE),
    ("POST", "/api/v1/references"): Rule(CHANGE, On.BODY),
    ("GET", "/api/v1/references/data"): Rule(READ, On.BODY, run_keys=True),
    ("GET", "/api/v1/runs/{run_id}"): Rule(READ, On.RUN, run_keys=True),
    ("POST", "/api/v1/runs/{run_id}/cancel"): Rule(OPERATE, On.RUN),
    ("GET", "/api/v1/runs/{run_id}/logs"): Rule(READ, On.RUN, run_keys=True),
    ("POST", "/api/v1/runs/{run_id}/files"): Rule(OPERATE, On.RUN, run_keys=True),
    ("PUT", "/api/v1/runs/{run_id}/files/{path:path}"): Rule(OPERATE, On.RUN, run_keys=True),
    ("POST", "/api/v1/runs/{run_id}/metrics"): Rule(OPERATE, On.RUN, run_keys=True),
    ("GET", "/api/v1/series"): Rule(READ, On.BODY),
    ("GET", "/api/v1/series/keys"): Rule(READ, On.BODY),
    ("GET", "/api/v1/teams"): Rule(SIGNED_IN, On.NONE),
    ("POST", "/api/v1/teams"): Rule(SERVER, On.NONE),
    ("DELETE", "/api/v1/teams/{team}"): Rule(SERVER, On.NONE),
    ("DELETE", "/api/v1/teams/{team}/members/{user}"): Rule(SERVER, On.NONE),
    ("PUT", "/api/v1/teams/{team}/members/{user}"): Rule(SERVER, On.NONE),
    ("POST", "/api/v1/uploads"): Rule(CHANGE, On.QUERY_PROJECT),
    ("PUT", "/api/v1/uploads/blobs/{digest}"): Rule(CHANGE, On.QUERY_PROJECT),
    ("POST", "/api/v1/uploads/missing"): Rule(CHANGE, On.QUERY_PROJECT),
    ("GET", "/api/v1/users"): Rule(SERVER, On.NONE),
    ("POST", "/api/v1/users"): Rule(SERVER, On.NONE),
    ("POST", "/api/v1/users/{name}/disable"): Rule(SERVER, On.NONE),
    ("POST", "/api/v1/users/{name}/enable"): Rule(SERVER, On.NONE),
    ("PUT", "/api/v1/users/{name}/password"): Rule(SERVER, On.NONE),
    ("GET", "/metrics"): Rule(SERVER, On.NONE),
    ("POST", "/model"): Rule(OPERATE, On.MODEL),
}


# -- the dashboard ------------------------------------------------------------------------------
async def _dashboard_session(api: Api, token: str) -> tuple[httpx.AsyncClient, str]:
    """A client signed in to the dashboard with ``token`` (the API-key form), and its CSRF."""
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app), base_url="http://testserver", timeout=60
    )
    page = await client.get("/ui/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    answer = await client.post(
        "/ui/login", data={"csrf": found.group(1), "api_key": token, "next": "/ui/"}
    )
    assert answer.status_code == 303, answer.text
    overview = await client.get("/ui/")
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)"', overview.text)
    assert meta, overview.text
    return client, meta.group(1)


def _form(path: str, objects: Objects, csrf: str) -> dict[str, str]:
    """What a dashboard form posts; the collaborator set is a team with no members, so no
    caller's view changes."""
    form = {"csrf": csrf, "project": objects.project_crn, "action": "set"}
    if path == "/ui/project/collaborators":
        form |= {"kind": "team", "name": "matrix-team", "role": "viewer"}
    elif path == "/ui/secrets":
        form |= {"name": "MATRIX_SECRET", "value": "v"}
    elif path == "/ui/keys":
        form |= {"name": "matrix"}
    return form


async def _ui_ask(
    client: httpx.AsyncClient, csrf: str, method: str, path: str, rule: Rule, on: Objects
) -> httpx.Response:
    """A page shown for the project of ``on`` (the switcher's ``?project=``), an object's page,
    or a form posted."""
    url = fill(path, on)
    if method == "GET":
        lists = rule.on is On.NONE and rule.right is not Right.SERVER
        return await client.get(url, params={"project": on.project_crn} if lists else None)
    if path.endswith("/try"):  # the page's fetch(): the function's input, the CSRF header
        return await client.post(url, json={"x": 1}, headers={"X-CSRF-Token": csrf})
    return await client.post(url, data=_form(path, on, csrf))


def _ui_kind(principal: Principal, rule: Rule, own: bool) -> str:
    if principal.kind == "admin":
        return "allowed"
    if rule.right is Right.SERVER:
        return "forbidden"
    if rule.on is On.NONE:
        if rule.right is Right.MANAGE:  # the audit page: the projects the caller administers
            if not own:
                return "list"
            return "allowed" if principal.role is ProjectRole.ADMIN else "forbidden"
        return "allowed" if own else "list"
    return expected_kind(principal, rule, "", own)


def test_the_dashboard_matrix(with_api: Any, tmp_path: Path) -> None:
    """The same matrix for the dashboard's routes (``ui.routes.RULES``): pages and forms, signed
    in as each human caller with the API-key form; run keys may not sign in at all."""
    from modelyard.ui.routes import RULES, router

    async def scenario(api: Api) -> None:
        principals, admin, other = _world(api, tmp_path)
        api.services.registry.people.create_team("matrix-team")
        served = {(m, r.path) for r in router.routes for m in getattr(r, "methods", ()) or ()}
        served = {(m, p) for m, p in served if m != "HEAD"}
        assert served == set(RULES), "dashboard routes and ui.routes.RULES disagree"
        humans = [p for p in principals if p.kind in ("user", "outsider")]
        sessions = {}
        for principal in [admin, *humans]:
            sessions[principal.name] = await _dashboard_session(api, principal.token)
        table = sorted(((k, r) for k, r in RULES.items() if r is not None), key=_order)
        problems = []
        for (method, path), rule in table:
            client, csrf = sessions["admin"]
            reference = await _ui_ask(client, csrf, method, path, rule, admin.own)
            assert reference.status_code not in (401, 403), (method, path, reference.text)
            assert not _is_hidden(reference), (method, path, reference.text)
            for principal in humans:
                client, csrf = sessions[principal.name]
                for own in (True, False):
                    if principal.kind == "outsider" and own:
                        continue
                    target = principal.own if own else other
                    answer = await _ui_ask(client, csrf, method, path, rule, target)
                    kind = _ui_kind(principal, rule, own)
                    problem = _ui_judge(kind, answer, reference, other)
                    if problem:
                        where = "own project" if own else "other project"
                        problems.append(
                            f"{method} {path} as {principal.name} ({where}): {problem}; "
                            f"answer {answer.status_code} {_text(answer)[:300]}"
                        )
        for client, _ in sessions.values():
            await client.aclose()
        assert not problems, "\n".join(problems)

    with_api(scenario)


def _ui_judge(
    kind: str, answer: httpx.Response, reference: httpx.Response, other: Objects
) -> str | None:
    status = answer.status_code
    if kind == "allowed":
        if status != reference.status_code or _is_hidden(answer):
            return f"allowed: expected {reference.status_code} like the administrator, got {status}"
        return None
    if kind == "list":
        if _is_hidden(answer):
            return None
        if status != 200:
            return f"a page filtered by an unseen project: expected 200 or 404, got {status}"
        if other.model in answer.text or other.job in answer.text:
            return "a page shows what belongs to a project the caller has no role in"
        return None
    if kind == "forbidden":
        return None if status == 403 else f"forbidden: expected 403, got {status}"
    if not _is_hidden(answer):
        return f"hidden: expected the 404 of an unknown object, got {status}"
    return None


def _text(answer: httpx.Response) -> str:
    """A page's error message (its <main>), else the answer's start."""
    found = re.search(r"<main[^>]*>(.*?)</main>", answer.text, re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1) if found else answer.text))


def test_an_ambiguous_run_prefix_lists_no_other_projects_runs(
    with_api: Any, tmp_path: Path
) -> None:
    """A run prefix two runs share: a server administrator is shown the candidates (every run is
    theirs to see); anyone else gets no list, since it may name runs of projects they have no
    role in."""
    from modelyard.store import sqlaccess

    async def scenario(api: Api) -> None:
        principals, _, other = _world(api, tmp_path)
        operator = principals[1]
        store = api.services.registry.store
        for objects, tail in ((operator.own, "1"), (other, "2")):
            new = f"crn:modelyard:run/abcd0000-0000-4000-8000-00000000000{tail}"
            sqlaccess.transaction(
                store,
                lambda cur, old=objects.run_id, new=new: cur.execute(
                    sqlaccess.sql(store, "UPDATE job_runs SET id = ? WHERE id = ?"), (new, old)
                ),
            )
        admin = await api.client.get("/api/v1/runs/abcd", headers=api.auth())
        assert admin.status_code == 400 and "abcd0000-0000-4000-8000-000000000002" in admin.text
        mine = await api.client.get("/api/v1/runs/abcd", headers=api.auth(operator.token))
        assert mine.status_code == 400, mine.text
        assert "abcd0000" not in mine.json()["error"]["message"].replace("'abcd'", "")
        assert "000000000002" not in mine.text

    with_api(scenario)
