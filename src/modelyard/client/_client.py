"""``Client``: one HTTP client to a Modelyard server (base URL, key, timeouts, JSON both ways).

Every request carries ``Authorization: Bearer <api_key>`` when there is a key, sends its body as
JSON and reads the answer as JSON. An error answer raises the ModelyardError of its ``code``
(``error_from_response``); no answer at all raises ``ServerUnreachable``.

The requests of a process share one connection pool (``httpx.Client``): a fresh one per call cost
about 60 ms, nearly all of it loading the CA store. A forked child gets its own, and
``close_pool()`` closes this process's (the SDK does so once its backends have flushed). httpx is
imported on first use, so importing this module (and ``import modelyard``) does not load it.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from modelyard.client._errors import error_from_response
from modelyard.errors import InvalidInput, ModelyardError, ServerUnreachable

if TYPE_CHECKING:
    import httpx

__all__ = ["Client", "close_pool", "pool"]


class _Default(enum.Enum):
    TIMEOUT = "the client's timeout"


_POOLS: dict[int, httpx.Client] = {}


def pool() -> httpx.Client:
    """This process's shared ``httpx.Client`` (see the module docstring)."""
    import httpx

    pid = os.getpid()  # a forked child must not share the parent's sockets
    found = _POOLS.get(pid)
    if found is None:
        found = _POOLS.setdefault(pid, httpx.Client())
    return found


def close_pool() -> None:
    """Close this process's shared connection pool; the next request opens a new one."""
    found = _POOLS.pop(os.getpid(), None)
    if found is not None:
        found.close()


@dataclass(frozen=True, slots=True)
class Client:
    """The server at ``url`` called with ``api_key``.

    ``timeout`` (seconds, None for none) applies to calls that do not pass their own; ``advice``
    ends the message of ``ServerUnreachable`` (how to get a server to answer).
    """

    url: str
    api_key: str | None = None
    timeout: float | None = 30.0
    advice: str = "check that the server runs and that MODELYARD_URL points at it"

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", self.url.rstrip("/"))

    def headers(self, json_body: bool = False) -> dict[str, str]:
        """The headers of every request: JSON accepted, the key as a bearer token."""
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if json_body:
            headers["Content-Type"] = "application/json"
        return headers

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Any = None,
        timeout: float | _Default | None = _Default.TIMEOUT,
        what: str | None = None,
        data: bytes | None = None,
    ) -> Any:
        """One request with ``body`` as JSON (None: no body), or ``data`` as raw bytes
        (``application/octet-stream``): the decoded JSON answer (None when empty) or the
        server's error as a ModelyardError.

        ``what`` names the call in error messages (``"reading metrics failed with HTTP 404:
        ..."``, the SDK's style); without it an error carries the server's message alone (the
        CLI's style). The exception class is the same either way.
        """
        import httpx

        content = None if body is None else self._encode(body, what)
        headers = self.headers(json_body=content is not None)
        if data is not None:
            content = bytes(data)
            headers["Content-Type"] = "application/octet-stream"
        wait = self.timeout if isinstance(timeout, _Default) else timeout
        try:
            response = pool().request(
                method,
                self.url + path,
                content=content,
                params=params,
                headers=headers,
                timeout=wait,
            )
        except httpx.HTTPError as exc:
            raise self.unreachable(exc, path, what) from exc
        if response.status_code >= 400:
            raise error_from_response(response, what)
        if not response.content:
            return None
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise ModelyardError(
                f"{what or f'{method} {path}'}: {self.url}{path} answered HTTP "
                f"{response.status_code} with a body that is not JSON ({response.text[:200]!r})"
            ) from exc

    def envelope(self, path: str, content: bytes) -> tuple[int, Any]:
        """POST ``content`` to a gateway route: (status, envelope) whatever the status, since a
        failed prediction's envelope is the answer to show; errors without an envelope (and
        401, 403, 404) still raise."""
        import httpx

        try:
            response = pool().post(
                self.url + path, content=content, headers=self.headers(True), timeout=None
            )
        except httpx.HTTPError as exc:
            raise self.unreachable(exc, path) from exc
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        enveloped = isinstance(body, dict) and "success" in body
        status = response.status_code
        if status in (401, 403, 404) or (status >= 400 and not enveloped):
            raise error_from_response(response)
        return status, body

    def lines(self, path: str, params: Any = None) -> Iterator[str]:
        """A streamed text answer, line by line (``logs --follow``), without a timeout."""
        import httpx

        try:
            with pool().stream(
                "GET", self.url + path, params=params, headers=self.headers(), timeout=None
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                yield from response.iter_lines()
        except httpx.HTTPError as exc:
            raise self.unreachable(exc, path) from exc

    def unreachable(
        self, exc: Exception, path: str = "", what: str | None = None
    ) -> ServerUnreachable:
        """The ServerUnreachable for a request to ``path`` that got no answer (``exc``)."""
        why = f"{exc.__class__.__name__}: {exc}"
        if what is None:
            message = f"no answer from the Modelyard server at {self.url} ({why}); {self.advice}"
        else:
            message = f"{what}: no answer from {self.url}{path} ({why}); {self.advice}"
        return ServerUnreachable(message)

    @staticmethod
    def _encode(body: Any, what: str | None) -> bytes:
        try:
            return orjson.dumps(body, default=_plain, option=orjson.OPT_SERIALIZE_NUMPY)
        except orjson.JSONEncodeError as exc:
            prefix = f"{what}: " if what else ""
            raise InvalidInput(f"{prefix}the request body is not JSON-encodable ({exc})") from exc


def _plain(value: Any) -> Any:
    """What orjson cannot encode itself: NumPy values it does not take natively (arrays that are
    not C-contiguous, of objects or strings; ``numpy.str_``) as plain Python; anything else
    refused, named by type."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")
