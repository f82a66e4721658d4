"""Dependencies point down: the import graph of ``src/modelyard`` against the one list of layers.

``LAYERS`` below is the map (docs/design/ draws the same one): parts listed lowest first, and a
part may import only parts of LOWER layers. Two parts on the same layer may not import each other,
and nothing imports the public facade (``modelyard/__init__.py``, ``cdsw.py``) from inside the
package: ``import modelyard`` or ``from modelyard import __version__`` in a lower part is an upward
import of the package root, which imports tracking and jobs (use ``modelyard.version``).
``from modelyard import settings`` names the foundation module ``modelyard.settings``, not the root.

Every import counts, also those inside functions (that is how cycles hide) and those under
``if TYPE_CHECKING:`` for the layering rule, since a type-only upward import is still a dependency
on the higher part. The cycle check (between MODULES, not just parts) skips the TYPE_CHECKING
imports: they never run, so they cannot make an import order matter, and a type-only back
reference is the usual way for two modules of one part to name each other's types. Imports made
from strings (``importlib.import_module`` in a package's lazy ``__getattr__``) are not seen; they
stay inside their own part. A ``__main__.py`` is a program entry point (``python -m
modelyard.server`` runs the CLI's ``server`` command): nothing imports it, so it may use any part.

A new top-level part (a sub-package or a root module) must be placed in ``LAYERS`` deliberately:
the test fails while one exists that the list does not name, or the list names one that is gone.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "modelyard"

# The root modules that make up the foundation part. They may import one another (settings and
# errors do) and nothing else of modelyard.
FOUNDATION = frozenset(
    {
        "backoff",
        "clock",
        "errors",
        "homedir",
        "ids",
        "settings",
        "settings_doc",
        "timeparse",
        "ttlcache",
        "version",
    }
)

# THE allowed order, lowest first (the design pages in docs/design/ draw it). Each entry is a layer;
# a layer holding several parts forbids imports between them. "__init__" is the package root.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("foundation",),
    ("analysis",),
    ("specs",),
    ("store", "connectors"),  # connectors read external sources; neither imports the other
    ("client",),
    ("tracking",),
    ("registry",),
    ("runtime",),
    ("builds",),
    ("serving",),
    ("jobs",),
    ("monitors",),
    ("web",),  # below views: views read through Services and filter by the caller's scopes (auth)
    ("views",),
    ("ui",),
    ("server",),
    ("demo",),  # below cli: ``modelyard demo`` (cli/demo_cmd.py) runs it; demo imports no cli
    ("cli",),
    ("__init__", "cdsw"),
)

# Not library code: the demo's sample user project, copied out and deployed as a user's project
# is, so it uses the public ``import modelyard`` like any user script. Its own imports are not
# checked; importing it counts as importing demo (the demo's story scores with its predict.py).
EXCLUDED = ("modelyard.demo.project",)

LAYER_OF = {part: index for index, layer in enumerate(LAYERS) for part in layer}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted (a submodule when one exists, else its package)
    path: Path
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _excluded(module: str) -> bool:
    return any(module == e or module.startswith(e + ".") for e in EXCLUDED)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def part_of(module: str) -> str:
    """The part a dotted module belongs to: a sub-package, the foundation, cdsw or the root."""
    pieces = module.split(".")
    if len(pieces) == 1:
        return "__init__"
    if pieces[1] in FOUNDATION:
        return "foundation"
    return pieces[1]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


ImportNode = ast.Import | ast.ImportFrom


def _walk(node: ast.AST, type_only: bool = False) -> Iterator[tuple[ImportNode, bool]]:
    """Every import node under ``node`` with whether it sits under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ImportNode):
            yield child, type_only
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk_stmt(stmt, True)
            for stmt in child.orelse:
                yield from _walk_stmt(stmt, type_only)
        else:
            yield from _walk(child, type_only)


def _walk_stmt(stmt: ast.stmt, type_only: bool) -> Iterator[tuple[ImportNode, bool]]:
    if isinstance(stmt, ImportNode):
        yield stmt, type_only
    else:
        yield from _walk(stmt, type_only)


def _resolve_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    anchor = package[: len(package) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node, type_only in _walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = _resolve_base(module, is_package, node)
            for alias in node.names:
                # ``from modelyard import settings`` imports the submodule modelyard.settings;
                # ``from modelyard import __version__`` takes a name from the package itself.
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in modules else base)
        for target in targets:
            if target != "modelyard" and not target.startswith("modelyard."):
                continue
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]  # a name inside a module, or a missing module
            imp = Import(module, target, path, node.lineno, type_only)
            if target != module and imp not in found:
                found.append(imp)
    return found


def all_imports() -> list[Import]:
    modules = _modules()
    checked = {name: path for name, path in modules.items() if not _excluded(name)}
    return [imp for name, path in checked.items() for imp in imports_of(name, path, modules)]


def _where(imp: Import) -> str:
    return f"{imp.path.relative_to(SRC.parent)}:{imp.line}"


def layer_violations(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        if imp.source.endswith(".__main__"):
            continue  # a program entry point (python -m): nothing imports it, it may use any part
        source, target = part_of(imp.source), part_of(imp.target)
        if source == target or source not in LAYER_OF or target not in LAYER_OF:
            continue  # inside one part; unplaced parts fail test_every_part_is_placed
        low, high = LAYER_OF[source], LAYER_OF[target]
        if high < low:
            continue
        kind = "a same-layer part" if high == low else "a higher part"
        problems.append(
            f"{_where(imp)}: {source} (layer {low}) imports {kind}, {target} (layer {high}),"
            f" via {imp.target}{' (type-only)' if imp.type_only else ''}"
        )
    return problems


def import_cycles(imports: list[Import]) -> list[list[Import]]:
    """One cycle (as its import statements) per strongly connected group of modules."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if not imp.type_only:
            edges.setdefault(imp.source, {}).setdefault(imp.target, imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_one_cycle(sorted(group), edges) for group in groups]


def _one_cycle(group: list[str], edges: dict[str, dict[str, Import]]) -> list[Import]:
    """A shortest way from the group's first module back to itself (breadth first)."""
    start, members = group[0], set(group)
    came: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt, imp in sorted(edges.get(node, {}).items()):
                if nxt not in members or nxt in came:
                    continue
                came[nxt] = imp
                if nxt == start:
                    path = [imp]
                    while path[0].source != start:
                        path.insert(0, came[path[0].source])
                    return path
                following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle found in {group}")  # pragma: no cover


def _top_level_parts() -> set[str]:
    parts = set()
    for path in PACKAGE.iterdir():
        if path.suffix == ".py":
            parts.add(path.stem)
        elif path.is_dir() and (path / "__init__.py").exists():
            parts.add(path.name)
    return parts


def test_every_part_is_placed() -> None:
    """A new sub-package or root module gets a layer on purpose, and the list holds no ghosts."""
    existing = _top_level_parts()
    placed = set(FOUNDATION) | {part for layer in LAYERS for part in layer} - {"foundation"}
    assert not existing - placed, (
        f"place these parts in LAYERS (or FOUNDATION) of {__file__}: {sorted(existing - placed)}"
    )
    assert not placed - existing, (
        f"LAYERS names parts that do not exist: {sorted(placed - existing)}"
    )


def test_dependencies_point_down() -> None:
    problems = layer_violations(all_imports())
    assert not problems, f"{len(problems)} imports break the layers:\n" + "\n".join(problems)


def test_no_import_cycles() -> None:
    cycles = import_cycles(all_imports())
    described = [
        " -> ".join([cycle[0].source, *(imp.target for imp in cycle)])
        + "\n"
        + "\n".join(f"    {_where(imp)}: {imp.source} imports {imp.target}" for imp in cycle)
        for cycle in cycles
    ]
    assert not cycles, f"{len(cycles)} import cycles:\n" + "\n".join(described)


def test_the_checker_sees_what_it_must(tmp_path: Path) -> None:
    """The resolution rules the two tests above rely on, on made-up modules."""
    modules = {"modelyard": PACKAGE, "modelyard.settings": PACKAGE, "modelyard.store": PACKAGE}
    modules |= {"modelyard.store.schema": PACKAGE, "modelyard.store.base": PACKAGE}
    source = (
        "from typing import TYPE_CHECKING\n"
        "from modelyard import settings, __version__\n"
        "import modelyard.store.schema\n"
        "from . import base\n"
        "from .schema import SCHEMA_VERSION\n"
        "def later():\n"
        "    from modelyard.store import SQLiteStore\n"
        "if TYPE_CHECKING:\n"
        "    from modelyard.tracking import track_metric\n"
    )
    path = tmp_path / "sqlite.py"
    path.write_text(source)
    found = imports_of("modelyard.store.sqlite", path, modules)
    assert [(i.target, i.line, i.type_only) for i in found] == [
        ("modelyard.settings", 2, False),
        ("modelyard", 2, False),
        ("modelyard.store.schema", 3, False),
        ("modelyard.store.base", 4, False),
        ("modelyard.store.schema", 5, False),
        ("modelyard.store", 7, False),
        ("modelyard", 9, True),
    ]
    assert part_of("modelyard.settings") == "foundation"
    assert part_of("modelyard") == "__init__"
    assert part_of("modelyard.serving.gateway.app") == "serving"


def test_the_checker_catches_what_it_must() -> None:
    """Upward, same-layer and cyclic imports are reported; type-only ones break no cycle."""
    path = PACKAGE / "store" / "schema.py"

    def imp(source: str, target: str, type_only: bool = False) -> Import:
        return Import(source, target, path, 1, type_only)

    problems = layer_violations(
        [
            imp("modelyard.store.schema", "modelyard"),  # the root, for __version__
            imp("modelyard.cdsw", "modelyard"),  # the facade's two parts
            imp("modelyard.store.schema", "modelyard.server.app", type_only=True),
            imp("modelyard.server.app", "modelyard.store.schema"),  # downward: fine
            imp("modelyard.server.__main__", "modelyard.cli"),  # an entry point: fine
        ]
    )
    assert [p.split(": ", 1)[1] for p in problems] == [
        "store (layer 3) imports a higher part, __init__ (layer 18), via modelyard",
        "cdsw (layer 18) imports a same-layer part, __init__ (layer 18), via modelyard",
        "store (layer 3) imports a higher part, server (layer 15), via modelyard.server.app"
        " (type-only)",
    ]
    a, b, c = "modelyard.jobs.a", "modelyard.jobs.b", "modelyard.jobs.c"
    cycles = import_cycles([imp(a, b), imp(b, c), imp(c, a), imp(c, b)])
    assert [[i.source for i in cycle] for cycle in cycles] == [[a, b, c]]
    assert import_cycles([imp(a, b), imp(b, a, type_only=True)]) == []
