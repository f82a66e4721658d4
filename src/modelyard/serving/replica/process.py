"""The replica process: one user function behind a lean ASGI app, on a Unix socket or loopback.

Started by the runtime as::

    <build python> -m modelyard.serving.replica --snapshot DIR --file predict.py \\
        --function predict (--socket PATH | --port P) --replica-id ID \\
        [--batch-function NAME] [--concurrency N] [--max-batch-size B] \\
        [--max-batch-wait-ms W] [--max-body-bytes S] [--track-io] [--debug]

It loads the function with the build smoke test's own ``load_function`` (so what the build checked
is what is served), then serves ``GET /healthz``, ``POST /invoke`` and ``POST /invoke_batch`` as
``docs/design/serving.md`` defines them, on uvicorn with uvloop and httptools: on a Unix domain
socket (``--socket``, what the server uses: the socket's folder must be mode 0700 and ours, the
socket file is created 0600) or on TCP ``127.0.0.1`` (``--port``: tests, benchmarks). It never
writes prediction records: each answer carries its record and the gateway writes it. SIGTERM or
SIGINT stops accepting connections, lets the requests in flight finish, and exits 0.

Batching: ``--batch-function NAME`` names a function that takes a list of inputs and returns a
list of outputs. Without the flag, a callable named ``predict_batch`` in the same file is used if
there is one (and is not the single function itself); ``--batch-function none`` turns batching off.

Default concurrency, by measurement (``benchmarks/replica.py``: 16 keep-alive clients, 3 s runs,
median of 3, on 2 cores shared with other work at load 5 to 8; tables in ``docs/replica.md``):

- scikit-learn ``predict_proba`` on one row (CPU-bound, ~0.4 ms): 1,105 / 1,849 / 1,770 / 2,701
  req/s at concurrency 1 / 2 / 4 / 8 (a second run: 1,177 / - / 1,561 / 2,210, and 2,056 at 16),
  against 1,800 to 2,600 calls/s calling it directly in one thread. The GIL caps the replica near
  one core (2.77 CPU s per 3 s at 8); concurrency 1 stalls on each loop-to-worker hand-off and
  wastes half of that core.
- ``time.sleep(0.02)`` (the GIL released): 52 / 99 / 185 / 387 req/s, linear in threads.

So the default is 8 (``DEFAULT_CONCURRENCY``): best for both kinds, and 16 adds nothing for
CPU-bound code. User code must be thread-safe then; ``--concurrency 1`` serialises calls for code
that is not.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import stat
import sys
import traceback
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from modelyard.builds.smoke import (
    EXIT_IMPORT_FAILED,
    EXIT_NOT_CALLABLE,
    load_function,
    module_name,
)
from modelyard.errors import InvalidInput
from modelyard.runtime.memlimit import apply_memory_limit, limit_from_env
from modelyard.serving.replica.app import ReplicaApp
from modelyard.serving.replica.oneshot import one_write_protocol
from modelyard.serving.replica.user_code import BatchOutputError, UserCode
from modelyard.serving.replica.workers import Workers
from modelyard.settings import parse_size_bytes

__all__ = [
    "AUTO_BATCH_FUNCTION",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_BATCH_WAIT_MS",
    "DEFAULT_MAX_BODY_BYTES",
    "EXIT_SERVE_FAILED",
    "BatchOutputError",
    "ReplicaConfig",
    "build_app",
    "main",
    "parse_args",
]

DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_MAX_BATCH_WAIT_MS = 5.0
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
AUTO_BATCH_FUNCTION = "predict_batch"
# Exit codes: 0 stopped on request; 2 bad arguments; 3 and 4 the smoke test's (the file's import
# raised; no such function); 1 could not serve (port taken, start-up failed; uvicorn logs why).
EXIT_SERVE_FAILED = 1
_NO_BATCH = "none"


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    snapshot: str
    file: str
    function: str
    port: int | None
    replica_id: str
    batch_function: str | None = None  # None: look for predict_batch; "none": no batching
    concurrency: int = DEFAULT_CONCURRENCY
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_batch_wait_ms: float = DEFAULT_MAX_BATCH_WAIT_MS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    track_io: bool = False
    debug: bool = False
    socket: str | None = None  # a Unix socket path instead of the TCP port

    def argv(self, python: str = sys.executable) -> list[str]:
        """The command line that starts this replica (for a ``ReplicaSpec``); parses back equal."""
        argv = [python, "-m", "modelyard.serving.replica", "--snapshot", self.snapshot]
        argv += ["--file", self.file, "--function", self.function]
        if self.socket is not None:
            argv += ["--socket", self.socket]
        else:
            argv += ["--port", str(self.port)]
        argv += ["--replica-id", self.replica_id, "--concurrency", str(self.concurrency)]
        if self.batch_function is not None:
            argv += ["--batch-function", self.batch_function]
        argv += ["--max-batch-size", str(self.max_batch_size)]
        argv += ["--max-batch-wait-ms", repr(self.max_batch_wait_ms)]
        argv += ["--max-body-bytes", str(self.max_body_bytes)]
        if self.track_io:
            argv.append("--track-io")
        if self.debug:
            argv.append("--debug")
        return argv


def _at_least(minimum: float, kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a {kind.__name__}; give a number >= {minimum:g}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is below {minimum:g}; give at least that")
        return value

    parse.__name__ = kind.__name__
    return parse


def _size(text: str) -> int:
    try:
        value = parse_size_bytes(text, "--max-body-bytes")
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive size; give e.g. 5MB")
    return value


def _port(text: str) -> int:
    port: int = _at_least(1, int)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port; give 1..65535")
    return port


def parse_args(argv: Sequence[str]) -> ReplicaConfig:
    """Parse the replica's argv; bad values exit 2 with a message naming value and range."""
    parser = argparse.ArgumentParser(
        prog="python -m modelyard.serving.replica",
        description="Serve one user function over HTTP on 127.0.0.1 (see docs/replica.md).",
    )
    parser.add_argument("--snapshot", required=True, help="build snapshot folder")
    parser.add_argument("--file", required=True, help="file in the snapshot, e.g. predict.py")
    parser.add_argument("--function", required=True, help="function taking one JSON input")
    parser.add_argument(
        "--batch-function",
        default=None,
        help=f"function taking a list of inputs; default: {AUTO_BATCH_FUNCTION} if the file "
        f"defines it; '{_NO_BATCH}' turns batching off",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", help="Unix socket path (its folder mode 0700)")
    where.add_argument("--port", type=_port, help="TCP port on 127.0.0.1")
    parser.add_argument("--replica-id", required=True)
    parser.add_argument(
        "--concurrency",
        type=_at_least(1, int),
        default=DEFAULT_CONCURRENCY,
        help=f"calls of user code at once, in threads (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument("--max-batch-size", type=_at_least(1, int), default=DEFAULT_MAX_BATCH_SIZE)
    parser.add_argument(
        "--max-batch-wait-ms", type=_at_least(0, float), default=DEFAULT_MAX_BATCH_WAIT_MS
    )
    parser.add_argument(
        "--max-body-bytes",
        type=_size,
        default=DEFAULT_MAX_BODY_BYTES,
        help="largest request body (bytes or 512K, 5MB ...); larger ones get 413",
    )
    parser.add_argument("--track-io", action="store_true", help="record input and output")
    parser.add_argument("--debug", action="store_true", help="tracebacks in failed answers")
    ns = parser.parse_args(list(argv))
    return ReplicaConfig(
        snapshot=ns.snapshot,
        file=ns.file,
        function=ns.function,
        port=ns.port,
        replica_id=ns.replica_id,
        batch_function=ns.batch_function,
        concurrency=ns.concurrency,
        max_batch_size=ns.max_batch_size,
        max_batch_wait_ms=ns.max_batch_wait_ms,
        max_body_bytes=ns.max_body_bytes,
        track_io=ns.track_io,
        debug=ns.debug,
        socket=ns.socket,
    )


def load_user_code(config: ReplicaConfig) -> UserCode:
    """Import the user's file once and pick its function and batch function."""
    name = module_name(config.file)  # before loading: afterwards the name is taken
    function = load_function(config.snapshot, config.file, config.function)
    module = sys.modules[name]
    batch_name = config.batch_function
    batch: Callable[[list[Any]], Any] | None = None
    if batch_name is None:
        candidate = getattr(module, AUTO_BATCH_FUNCTION, None)
        if callable(candidate) and config.function != AUTO_BATCH_FUNCTION:
            batch_name, batch = AUTO_BATCH_FUNCTION, candidate
    elif batch_name != _NO_BATCH:
        candidate = getattr(module, batch_name, None)
        if not callable(candidate):
            raise AttributeError(
                f"--batch-function {batch_name!r}: {config.file} defines no callable of that "
                f"name; name a function that takes a list of inputs, or '{_NO_BATCH}'"
            )
        batch = candidate
    return UserCode(
        function,
        config.function,
        batch,
        batch_name if batch is not None else None,
        track_io=config.track_io,
        debug=config.debug,
    )


def build_app(config: ReplicaConfig, code: UserCode) -> ReplicaApp:
    workers = Workers(
        code,
        config.concurrency,
        max_batch_size=config.max_batch_size,
        max_batch_wait_s=config.max_batch_wait_ms / 1000,
    )
    limit = limit_from_env()

    def limit_memory() -> None:
        if limit is None:
            return
        workers.start_threads()  # their stacks count as already there, not as growth
        try:
            applied = apply_memory_limit(limit)
        except OSError as exc:
            print(
                f"replica {config.replica_id}: the kernel refused a memory limit ({exc}); the "
                "supervisor's polling alone enforces it",
                flush=True,
            )
            return
        print(f"replica {config.replica_id}: {applied.describe()}", flush=True)

    return ReplicaApp(
        workers,
        config.replica_id,
        config.max_body_bytes,
        None if config.socket is not None else config.port,
        on_started=limit_memory,
    )


def bind_unix_socket(path: str) -> socket.socket:
    """A listening Unix socket at ``path``, file mode 0600, in a folder only its owner enters.

    A socket file left by a killed predecessor (the same replica restarted) is replaced; anything
    else at ``path``, or a folder other users may enter, is refused (InvalidInput naming both). A
    missing folder is created 0700 (a replica that stopped last removes its empty folder, and a
    temporary folder may be cleaned while the server runs).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.stat(folder)
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise InvalidInput(
            f"the socket folder {folder!r} (mode {stat.S_IMODE(info.st_mode):o}, owner uid "
            f"{info.st_uid}) is open to other users; a replica's socket folder must be mode "
            f"0700 and owned by uid {os.getuid()}, so only the gateway reaches the replica"
        )
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise InvalidInput(
                f"{path!r} exists and is not a socket; give a --socket path that is free or a "
                "socket left by a stopped replica"
            )
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(previous)
    sock.listen(2048)
    return sock


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus re-raising the stop signal after a graceful shutdown.

        uvicorn re-raises SIGTERM once it has drained, so the process would end *by* the signal
        (exit status -15); a replica that stopped cleanly exits 0, so the supervisor can tell a
        requested stop from a crash.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def _on_signal(self, sig: int, frame: FrameType | None) -> None:
            self.handle_exit(sig, frame)

    return Server


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else argv)
    os.chdir(config.snapshot)  # as the smoke test did: relative paths in user code still work
    try:
        code = load_user_code(config)
    except (AttributeError, TypeError) as exc:
        print(f"replica {config.replica_id}: {exc}", file=sys.stderr, flush=True)
        return EXIT_NOT_CALLABLE
    except BaseException:
        print(f"replica {config.replica_id}: importing {config.file} raised:", file=sys.stderr)
        traceback.print_exc()
        return EXIT_IMPORT_FAILED
    app = build_app(config, code)
    sockets: list[socket.socket] | None = None
    if config.socket is not None:
        try:
            sockets = [bind_unix_socket(config.socket)]
        except (InvalidInput, OSError) as exc:
            shown = exc.message if isinstance(exc, InvalidInput) else f"{config.socket!r}: {exc}"
            print(f"replica {config.replica_id}: cannot listen: {shown}", file=sys.stderr)
            return EXIT_SERVE_FAILED
    import uvicorn

    server = _server_class()(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=config.port or 0,  # with a Unix socket: unused (uvicorn serves ``sockets``)
            loop="uvloop",
            http=one_write_protocol(),  # httptools, each answer in one write (oneshot.py)
            lifespan="on",
            access_log=False,
            log_level="warning",
            server_header=False,
            date_header=False,
        )
    )
    batching = (
        f"batching with {code.batch_function_name} (up to {config.max_batch_size} items, "
        f"{config.max_batch_wait_ms:g} ms)"
        if code.batch_function is not None
        else "no batch function"
    )
    where = f"unix:{config.socket}" if sockets else f"http://127.0.0.1:{config.port}"
    print(
        f"replica {config.replica_id}: serving {config.file}:{config.function} on "
        f"{where} (concurrency {config.concurrency}, {batching}, pid {os.getpid()})",
        flush=True,
    )
    try:
        server.run(sockets=sockets)
    except SystemExit as exc:  # uvicorn exits 3 when it cannot bind: 3 means "import failed" here
        if exc.code not in (0, None):
            return EXIT_SERVE_FAILED
        raise
    finally:
        if sockets and config.socket is not None:
            with contextlib.suppress(OSError):
                os.unlink(config.socket)
            with contextlib.suppress(OSError):  # the last one out removes the empty folder
                os.rmdir(os.path.dirname(os.path.abspath(config.socket)))
    if not server.started:
        return EXIT_SERVE_FAILED  # uvicorn logged why (lifespan failure)
    print(f"replica {config.replica_id}: stopped", flush=True)
    return 0
