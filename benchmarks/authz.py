"""What projects and roles cost on the predict path: one real server, one model (1 replica), the
same requests sent with two keys, interleaved round by round:

- ``admin key``: the server administrator's key (the baseline: what one shared admin key did
  before projects existed; it skips no check, it passes them all at once);
- ``operator key``: a user who is an operator of the model's project through a team, calling with
  a key narrowed to that project and to the role ``operator`` (every step of the resolution runs:
  user, team roles, the key's narrowing, the project's role check).

Both go through ``POST /api/v1/models/{name}/predict`` with recording on (the model and load
generator of ``benchmarks/serving.py``). Reported: p50 at c=1 and req/s at c=8, medians of
``--repeat`` rounds (the two keys' order swapped every round), and the operator key's figures as
ratios of the admin key's from the same run. The issue's goal is a cost under 3 % either way.

    .venv/bin/python benchmarks/authz.py            # 10 s runs, 5 rounds: about 4 minutes
    .venv/bin/python benchmarks/authz.py --quick    # 2 s runs, 1 round: a smoke run
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import orjson

from _common import Figure, Report
from serving import (
    Contender,
    Load,
    Modelyard,
    Series,
    Target,
    ensure_wrk,
    measure,
    write_project,
)


def operator_key(yard: Modelyard) -> str:
    """A user who is an operator of the default project through a team, and their key narrowed
    to that project and role."""
    yard.api("POST", "/api/v1/users", {"name": "ops-user"})
    yard.api("POST", "/api/v1/teams", {"name": "ops"})
    yard.api("PUT", "/api/v1/teams/ops/members/ops-user")
    project = yard.api("GET", "/api/v1/projects?name=default")["projects"][0]
    uuid = project["crn"].rpartition("/")[2]
    yard.api("PUT", f"/api/v1/projects/{uuid}/collaborators/team/ops", {"role": "operator"})
    created = yard.api(
        "POST",
        "/api/v1/keys",
        {
            "name": "ops-bench",
            "role": "user",
            "user": "ops-user",
            "project": project["crn"],
            "project_role": "operator",
        },
    )
    token: str = created["token"]
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s runs, 1 round")
    parser.add_argument("--seconds", type=float, default=None, help="per run (default 10)")
    parser.add_argument("--repeat", type=int, default=None, help="rounds (default 5)")
    args = parser.parse_args()
    args.seconds = args.seconds or (2.0 if args.quick else 10.0)
    args.repeat = args.repeat or (1 if args.quick else 5)
    args.concurrency = [1, 8]
    rep = Report("authz", {"seconds": args.seconds, "repeat": args.repeat})

    from sklearn.datasets import load_breast_cancer

    example = {"features": [float(v) for v in load_breast_cancer().data[0]]}
    body = orjson.dumps(example)
    results: dict[tuple[str, int], Series] = {}
    with tempfile.TemporaryDirectory(prefix="modelyard-authz-") as name:
        tmp = Path(name)
        load = Load(ensure_wrk(rep.console), tmp)
        with Modelyard(tmp) as yard:
            yard.deploy("lr", write_project(tmp / "project", batch=False), example)
            url = f"{yard.base}/api/v1/models/lr/predict"
            token = operator_key(yard)
            contenders = [
                Contender("admin key", Target(url, body, dict(yard.auth)), yard.pids()),
                Contender(
                    "operator key",
                    Target(url, body, {"Authorization": f"Bearer {token}"}),
                    yard.pids(),
                ),
            ]
            # One round at a time, the order swapped every round: the store grows with every run,
            # so always measuring one key second would charge it the bigger store.
            rounds = argparse.Namespace(**{**vars(args), "repeat": 1})
            for round_ in range(args.repeat):
                ordered = contenders if round_ % 2 == 0 else contenders[::-1]
                measure(load, ordered, rounds, results)
    _report(rep, results)


def _report(rep: Report, results: dict[tuple[str, int], Series]) -> None:
    """Each figure of the operator key against the admin key's from the same run."""
    for c, key, unit in ((1, "p50_ms", "ms"), (8, "rps", "req/s"), (1, "rps", "req/s")):
        what = "p50" if key == "p50_ms" else "req/s"
        base = rep.add(
            Figure(
                f"admin key c={c} {what}",
                unit,
                [getattr(r, key) for r in results[("admin key", c)].runs],
            )
        )
        rep.add(
            Figure(
                f"operator key c={c} {what}",
                unit,
                [getattr(r, key) for r in results[("operator key", c)].runs],
            ),
            baseline=base,
        )
    rep.console.print(rep.table())
    rep.console.print(f"written to {rep.write()}")


if __name__ == "__main__":
    main()
