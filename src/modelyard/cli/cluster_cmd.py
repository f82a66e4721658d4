"""``modelyard cluster``: the runtime's nodes, their CPUs, memory and GPUs, what runs where and
what waits for resources (``GET /api/v1/cluster``; docs/resources.md)."""

from __future__ import annotations

from typing import Any

import click

from modelyard.cli.client import connect
from modelyard.cli.output import json_option, print_json, print_rows

__all__ = ["cluster"]

_MIB = 1024 * 1024


def _mib(value: Any) -> str:
    return "-" if not value else f"{int(value) // _MIB} MiB"


def _gpus(node: dict[str, Any]) -> str:
    parts = [f"{g['id']} {g['name']} ({g['held_by'] or 'free'})" for g in node.get("gpus") or ()]
    return "; ".join(parts) or "none"


def _placed(p: dict[str, Any], node: str) -> list[Any]:
    gpus = ",".join(p.get("gpu_ids") or ()) or (str(p["gpus"]) if p.get("gpus") else "-")
    return [
        node,
        p["kind"],
        p.get("model") or "-",
        p["name"],
        p.get("cpus") or "-",
        _mib(p.get("memory_bytes")),
        gpus,
        p.get("waiting_for") or "-",
    ]


@click.command()
@json_option()
def cluster(as_json: bool) -> None:
    """Nodes (one for the local runtime) with their CPUs, memory and GPUs and how CPU limits
    are enforced; what is placed on each; what waits for resources, and why."""
    view = connect().call("GET", "/api/v1/cluster")
    if as_json:
        print_json(view)
        return
    nodes = view.get("nodes") or []
    print_rows(
        f"Nodes (runtime {view.get('runtime')})",
        ("node", "address", "alive", "cpus", "memory", "cpu_limit", "gpus"),
        [
            [
                n["id"],
                n["address"],
                n["alive"],
                n["cpus"],
                _mib(n["memory_bytes"]),
                n["cpu_limit"],
                _gpus(n),
            ]
            for n in nodes
        ],
    )
    rows = [_placed(p, n["id"]) for n in nodes for p in n.get("placed") or ()]
    rows += [_placed(p, "(waiting)") for p in view.get("waiting") or ()]
    print_rows(
        "Placed and waiting",
        ("node", "kind", "model", "name", "cpus", "memory", "gpus", "waiting_for"),
        rows,
    )
