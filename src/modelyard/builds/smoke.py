"""The smoke test a build runs inside its own environment, as a script, with the standard library.

Usage: ``python -I -B -u smoke.py SNAPSHOT_DIR FILE FUNCTION [--example-stdin]``. It imports FILE
from the snapshot by path, checks FUNCTION is callable and, given an example (a JSON object on
stdin, parsed with ``json``: request data is never unpickled), calls it and checks the output
encodes as strict JSON. Progress goes to stdout, failures with their traceback to stderr; the exit
code says which step failed (see the ``EXIT_*`` constants), so the builder can report it without
parsing text.

It runs by path rather than as ``-m modelyard...`` and imports nothing from Modelyard, so a build
environment whose requirements broke Modelyard's own dependencies still gets a clear verdict about
the user's function. ``load_function`` is the one way a snapshot's function is loaded; replicas
should use it too, so what the smoke test checked is what gets served.
"""

from __future__ import annotations

import importlib.util
import json
import keyword
import os
import sys
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = [
    "EXIT_BAD_OUTPUT",
    "EXIT_CALL_FAILED",
    "EXIT_IMPORT_FAILED",
    "EXIT_NOT_CALLABLE",
    "EXIT_OK",
    "EXIT_USAGE",
    "FALLBACK_MODULE_NAME",
    "load_function",
    "main",
    "module_name",
]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_IMPORT_FAILED = 3
EXIT_NOT_CALLABLE = 4
EXIT_CALL_FAILED = 5
EXIT_BAD_OUTPUT = 6

FALLBACK_MODULE_NAME = "modelyard_user_model"
_SHOWN_CHARS = 2000


def module_name(file: str) -> str:
    """The name the user's file is imported under: its stem, unless that would shadow a module.

    ``predict.py`` becomes ``predict`` (so classes defined there have a sensible ``__module__``);
    ``json.py`` or ``code.py`` would hide the standard library's module for everything imported
    later, so such files get the neutral ``modelyard_user_model`` instead.
    """
    stem = os.path.splitext(os.path.basename(file))[0]
    if (
        stem.isidentifier()
        and not keyword.iskeyword(stem)
        and stem not in sys.modules
        and stem not in sys.stdlib_module_names
        and stem not in sys.builtin_module_names
    ):
        return stem
    return FALLBACK_MODULE_NAME


def load_function(snapshot_dir: str, file: str, function: str) -> Callable[..., Any]:
    """Import ``file`` (relative to ``snapshot_dir``) by path and return its ``function``.

    The snapshot folder goes first on ``sys.path`` so the file can import its sibling modules.
    Raises ImportError-family errors from the import, AttributeError when the name is missing and
    TypeError when it is not callable.
    """
    root = os.path.abspath(snapshot_dir)
    path = os.path.join(root, file)
    if root not in sys.path:
        sys.path.insert(0, root)
    name = module_name(file)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file!r}: not a Python source file", path=path)
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    if not hasattr(module, function):
        public = sorted(n for n, v in vars(module).items() if callable(v) and n[:1] != "_")
        raise AttributeError(
            f"{file!r} defines no {function!r}; callables it defines: {', '.join(public) or '-'}"
        )
    target = getattr(module, function)
    if not callable(target):
        raise TypeError(
            f"{file}:{function} is a {type(target).__name__}, not a function; "
            "point --function at a callable that takes the request dict"
        )
    return target  # type: ignore[no-any-return]


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4) or (len(argv) == 4 and argv[3] != "--example-stdin"):
        print("usage: smoke.py SNAPSHOT_DIR FILE FUNCTION [--example-stdin]", file=sys.stderr)
        return EXIT_USAGE
    snapshot_dir, file, function = argv[:3]
    example: Any = None
    if len(argv) == 4:
        try:
            example = json.loads(sys.stdin.read())
        except ValueError as exc:
            print(f"smoke test: the example is not JSON ({exc})", file=sys.stderr)
            return EXIT_USAGE
    os.chdir(snapshot_dir)

    print(f"smoke test: importing {file}", flush=True)
    try:
        target = load_function(snapshot_dir, file, function)
    except (AttributeError, TypeError) as exc:
        print(f"smoke test failed: {exc}", file=sys.stderr)
        return EXIT_NOT_CALLABLE
    except BaseException:
        print(f"smoke test failed: importing {file} raised:", file=sys.stderr)
        traceback.print_exc()
        return EXIT_IMPORT_FAILED
    print(f"smoke test: {file}:{function} is callable", flush=True)
    if len(argv) == 3:
        print("smoke test: no example given, the function was not called", flush=True)
        return EXIT_OK

    try:
        output = target(example)
    except BaseException:
        print(f"smoke test failed: {function}(example) raised:", file=sys.stderr)
        traceback.print_exc()
        return EXIT_CALL_FAILED
    try:
        encoded = json.dumps(output, allow_nan=False, default=_array_as_list)
    except (TypeError, ValueError) as exc:
        print(
            f"smoke test failed: {function}(example) returned a {type(output).__name__} that is "
            f"not JSON ({exc}); return dicts, lists, strings, numbers, booleans or None "
            "(numpy scalars and arrays are accepted; NaN and Infinity are not JSON)",
            file=sys.stderr,
        )
        return EXIT_BAD_OUTPUT
    shown = encoded if len(encoded) <= _SHOWN_CHARS else encoded[:_SHOWN_CHARS] + "..."
    print(f"smoke test: {function}(example) returned {shown}", flush=True)
    return EXIT_OK


def _array_as_list(value: Any) -> Any:
    """numpy scalars and arrays as the replica encodes them (orjson's numpy support): through
    their ``tolist``, found by duck typing because this script imports no third-party package."""
    tolist = getattr(value, "tolist", None)
    if tolist is None or not callable(tolist):
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return tolist()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
