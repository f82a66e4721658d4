"""The server's connection to a Ray cluster: a Ray driver with token auth, and the Jobs API client.

Ray is imported here lazily (inside methods), so importing Modelyard never imports Ray. The
connection sets ``RAY_AUTH_MODE`` explicitly (``token`` with a token file, else whatever the
environment says, else ``disabled``): since Ray 2.59 an unset mode lets ``ray.init`` create and
enable a token of its own in ``~/.ray``, which a server must never do behind the operator's back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modelyard.errors import InvalidInput, Unavailable

__all__ = ["NAMESPACE", "RayConnection", "RayUnavailable", "split_address"]

log = logging.getLogger(__name__)

# Every actor, Serve application and job of Modelyard lives in this Ray namespace.
NAMESPACE = "modelyard"
_DASHBOARD_PORT = 8265
_CONNECT_TIMEOUT_S = 2.0
# Ray ends a driver whose head refuses connections for longer than this many seconds (60 by
# default: "Failed to connect to GCS within 60 seconds ... The program will terminate"). The
# server is a driver, and its control plane must outlive a head that is away (``_head.py``
# answers 503 meanwhile), so it waits a week unless the operator set the variable.
_GCS_RECONNECT_VAR = "RAY_gcs_rpc_server_reconnect_timeout_s"
_GCS_RECONNECT_S = str(7 * 24 * 3600)


class RayUnavailable(Unavailable):
    """The Ray head cannot be reached (HTTP 503): the message names the runtime and address."""


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (the head's GCS address) as a pair; refuses anything else.

    >>> split_address("127.0.0.1:6379")
    ('127.0.0.1', 6379)
    """
    text = str(address).strip()
    if text.startswith("ray://"):
        raise InvalidInput(
            f"ray address {address!r} is a Ray Client address; give the head's GCS address "
            "HOST:PORT (e.g. 127.0.0.1:6379): the server is a Ray driver, not a Ray Client"
        )
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(
            f"ray address {address!r} is not HOST:PORT; give the head's GCS address such as "
            "127.0.0.1:6379"
        )
    return host, int(port)


class RayConnection:
    """This process as a Ray driver of the cluster at ``address`` (namespace ``modelyard``).

    ``dashboard_url`` is the head's dashboard (the Jobs API; default ``http://HOST:8265``);
    ``token_path`` is Ray's token file: with it, ``RAY_AUTH_MODE=token`` and every call (the
    driver's RPCs, the Jobs API) carries the token. ``open`` connects; ``close`` disconnects
    (``ray.shutdown``) and puts the ``RAY_AUTH_*`` variables back as they were.
    """

    def __init__(
        self,
        address: str,
        dashboard_url: str | None = None,
        token_path: str | Path | None = None,
    ) -> None:
        self.host, self.port = split_address(address)
        self.address = f"{self.host}:{self.port}"
        url = dashboard_url or f"http://{self.host}:{_DASHBOARD_PORT}"
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise InvalidInput(
                f"ray dashboard url {dashboard_url!r} is not an http(s) URL; give one such as "
                f"http://{self.host}:{_DASHBOARD_PORT}"
            )
        self.dashboard_url = url.rstrip("/")
        self.token_path = None if token_path is None else Path(token_path).expanduser()
        if self.token_path is not None and not self.token_path.is_file():
            raise InvalidInput(
                f"ray token file {str(self.token_path)!r} does not exist; give the file that "
                "holds the cluster's token (RAY_AUTH_TOKEN_PATH of its nodes)"
            )
        self._lock = threading.Lock()
        self._jobs: Any = None
        self._saved_env: dict[str, str | None] | None = None
        self._owns_driver = False

    def __repr__(self) -> str:
        return f"RayConnection({self.address!r}, dashboard={self.dashboard_url!r})"

    @property
    def auth_mode(self) -> str:
        if self.token_path is not None:
            return "token"
        return os.environ.get("RAY_AUTH_MODE") or "disabled"

    def token(self) -> str | None:
        """The cluster's token (read from ``token_path`` each time: a rotated file is picked up)."""
        if self.token_path is None:
            return None
        return self.token_path.read_text(encoding="utf-8").strip()

    def headers(self) -> dict[str, str]:
        token = self.token()
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    def unavailable(self, reason: str) -> RayUnavailable:
        return RayUnavailable(
            f"the Ray runtime at {self.address} is unavailable ({reason}); the Ray head must be "
            f"running and reachable (check with: ray status --address {self.address})"
        )

    def check_reachable(self, timeout_s: float = _CONNECT_TIMEOUT_S) -> None:
        """Raise ``RayUnavailable`` unless the head's GCS port accepts a connection."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout_s):
                pass
        except OSError as exc:
            raise self.unavailable(f"{exc.__class__.__name__}: {exc}") from exc

    def open(self) -> RayConnection:
        """Connect this process to the cluster as a driver (reusing a connection to the same
        cluster a test or another part already made)."""
        self.check_reachable()
        with self._lock:
            self._set_env()
            import ray

            if ray.is_initialized():
                current = ray.get_runtime_context().gcs_address
                if current != self.address:
                    raise InvalidInput(
                        f"this process is already a driver of the Ray cluster at {current}; "
                        f"it cannot also connect to {self.address}"
                    )
                return self
            _reset_token_cache()
            try:
                ray.init(
                    address=self.address,
                    namespace=NAMESPACE,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, TimeoutError) as exc:
                self._restore_env()
                raise self.unavailable(f"{exc.__class__.__name__}: {exc}") from exc
            self._owns_driver = True
        return self

    def jobs(self) -> Any:
        """The Jobs API client (``ray.job_submission.JobSubmissionClient``), made once."""
        with self._lock:
            if self._jobs is None:
                from ray.job_submission import JobSubmissionClient

                try:
                    self._jobs = JobSubmissionClient(self.dashboard_url, headers=self.headers())
                except (ConnectionError, RuntimeError) as exc:
                    raise self.unavailable(
                        f"its Jobs API at {self.dashboard_url} answered: {exc}"
                    ) from exc
            return self._jobs

    def close(self) -> None:
        """Disconnect (when this connection made the driver) and restore the environment."""
        with self._lock:
            if self._owns_driver:
                import ray

                ray.shutdown()
                self._owns_driver = False
            self._jobs = None
            self._restore_env()

    def _set_env(self) -> None:
        if self._saved_env is not None:
            return
        names = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", _GCS_RECONNECT_VAR)
        self._saved_env = {name: os.environ.get(name) for name in names}
        os.environ["RAY_AUTH_MODE"] = self.auth_mode
        os.environ.setdefault(_GCS_RECONNECT_VAR, _GCS_RECONNECT_S)
        if self.token_path is not None:
            os.environ["RAY_AUTH_TOKEN_PATH"] = str(self.token_path)
        elif self.auth_mode == "disabled":
            log.warning(
                "Ray token auth is off for %s: anyone who reaches the cluster's ports can run "
                "code on it (set MODELYARD_RAY_AUTH_TOKEN_PATH)",
                self.address,
            )

    def _restore_env(self) -> None:
        if self._saved_env is None:
            return
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = None


def _reset_token_cache() -> None:
    """Make Ray read the token again: an earlier driver of this process may have left its
    loader's cache empty (Serve's threads ask for the token after the environment is restored)."""
    with contextlib.suppress(Exception):
        from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]

        AuthenticationTokenLoader.instance().reset_cache()
