"""Code stays small enough to read: modules, functions and parameter lists, over src/modelyard.

- a module has at most ``MAX_MODULE_LINES`` lines;
- a function (or method) spans at most ``MAX_FUNCTION_LINES`` lines, from ``def`` to its last line;
- a function takes at most ``MAX_PARAMETERS`` parameters, counted as ruff's PLR0913 counts them
  (``self``/``cls`` of a method are not counted; ``*args``/``**kwargs`` are not counted).

A function may go over when a comment says why, on its ``def`` line or the line above it (above
its decorators too): ``# shape: <why>``, e.g. ``# shape: one table of routes, reads top to bottom``.
For the parameter count, ruff's own ``# noqa: PLR0913 <why>`` on the ``def`` line also serves,
with the reason after the code. A marker without a reason does not count. Modules have no marker:
split them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "modelyard"

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
MAX_PARAMETERS = 8  # the same as [tool.ruff.lint.pylint] max-args in pyproject.toml

SHAPE = re.compile(r"#\s*shape:\s*\S")
NOQA_ARGS = re.compile(r"#\s*noqa:[^#]*\bPLR0913\b[\s,:;.-]*[A-Za-z]")


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


Function = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(tree: ast.AST) -> Iterator[tuple[Function, bool]]:
    """Every function, nested ones too, with whether it is a method (directly in a class body)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, Function):
                yield child, isinstance(node, ast.ClassDef)
            stack.append(child)


def _parameters(func: Function, method: bool) -> int:
    args = func.args
    positional = [*args.posonlyargs, *args.args]
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in func.decorator_list)
    if method and not static and positional:
        positional = positional[1:]  # self or cls
    return len(positional) + len(args.kwonlyargs)


def _comment_lines(func: Function, lines: list[str]) -> list[str]:
    """The def line, the line above it, and the line above its first decorator."""
    first = min([func.lineno, *(d.lineno for d in func.decorator_list)])
    numbers = {func.lineno, func.lineno - 1, first - 1}
    return [lines[n - 1] for n in sorted(numbers) if 1 <= n <= len(lines)]


def shape_problems(path: Path, root: Path = PACKAGE.parents[1]) -> list[str]:
    """What in ``path`` is over the limits, each as ``file:line: what``."""
    text = path.read_text()
    name = path.relative_to(root)
    lines = text.splitlines()
    problems = []
    if len(lines) > MAX_MODULE_LINES:
        problems.append(f"{name}:1: module has {len(lines)} lines > {MAX_MODULE_LINES}")
    for func, method in _functions(ast.parse(text, filename=str(path))):
        near = _comment_lines(func, lines)
        explained = any(SHAPE.search(line) for line in near)
        length = (func.end_lineno or func.lineno) - func.lineno + 1
        if length > MAX_FUNCTION_LINES and not explained:
            problems.append(
                f"{name}:{func.lineno}: {func.name}() spans {length} lines > {MAX_FUNCTION_LINES}"
            )
        count = _parameters(func, method)
        noqa = NOQA_ARGS.search(lines[func.lineno - 1])
        if count > MAX_PARAMETERS and not (explained or noqa):
            problems.append(
                f"{name}:{func.lineno}: {func.name}() takes {count} parameters > {MAX_PARAMETERS}"
            )
    return problems


def test_modules_and_functions_stay_small() -> None:
    problems = [problem for path in _sources() for problem in shape_problems(path)]
    assert not problems, (
        f"{len(problems)} shapes over the limits (split, or say why with '# shape: <why>' on the"
        " def line or the line above):\n" + "\n".join(problems)
    )


def test_the_shape_rules(tmp_path: Path) -> None:
    """What counts and what excuses, on a made-up module."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    nine = ", ".join(f"a{i}" for i in range(9))
    eight = ", ".join(f"a{i}" for i in range(8))
    source = (
        f"def long():\n{body}\n"  # 81 lines
        f"# shape: one table, reads top to bottom\ndef long_but_said():\n{body}\n"
        f"@decorated\ndef long_decorated():  # shape: generated dispatch\n{body}\n"
        f"def wide({nine}):\n    pass\n"
        f"def wide_noqa({nine}):  # noqa: PLR0913 - mirrors the wire format\n    pass\n"
        f"def wide_noqa_bare({nine}):  # noqa: PLR0913\n    pass\n"
        f"def at_limit({eight}, *args, **kwargs):\n    pass\n"
        f"class C:\n    def method(self, {eight}):\n        pass\n"
        f"    @staticmethod\n    def static(self, {eight}):\n        pass\n"
        f"    # shape:\n    def empty_marker(self, {nine}):\n        pass\n"
    )
    path = tmp_path / "sample.py"
    path.write_text(source)
    problems = [p.split(": ", 1)[1] for p in shape_problems(path, root=tmp_path)]
    assert problems == [
        f"long() spans {MAX_FUNCTION_LINES + 1} lines > {MAX_FUNCTION_LINES}",
        "wide() takes 9 parameters > 8",
        "wide_noqa_bare() takes 9 parameters > 8",
        "static() takes 9 parameters > 8",
        "empty_marker() takes 9 parameters > 8",
    ]
