"""The CLI's HTTP client: which server, which key, and errors back as ModelyardErrors.

Where the server is: ``MODELYARD_URL`` (+ ``MODELYARD_API_KEY``) when set; otherwise the server on
this machine, found through ``$MODELYARD_HOME/server.json`` (written by ``modelyard server`` at
start) with the admin key from ``$MODELYARD_HOME/admin.key``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from modelyard import errors, settings
from modelyard.errors import ModelyardError, Unavailable

__all__ = ["Client", "ServerUnreachable", "connect"]

_BY_STATUS: dict[int, type[ModelyardError]] = {
    400: errors.InvalidInput,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    422: errors.InvalidInput,
    429: errors.Overloaded,
    502: errors.ReplicaFailed,
    503: errors.Unavailable,
    504: errors.GatewayTimeout,
}


class ServerUnreachable(Unavailable):
    """No server answered at the URL the CLI found."""

    code = "server_unreachable"


@dataclass(frozen=True, slots=True)
class Client:
    url: str
    api_key: str | None

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = 60.0,
        raw: bytes | None = None,
    ) -> Any:
        """One request: the decoded JSON answer (None when empty) or the server's error."""
        headers = self._headers()
        content = raw if raw is not None else None
        if body is not None:
            content = orjson.dumps(body)
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = httpx.request(
                method,
                self.url + path,
                content=content,
                params=params,
                headers=headers,
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise error_from(response)
        return orjson.loads(response.content) if response.content else None

    def envelope(self, path: str, content: bytes) -> tuple[int, Any]:
        """POST to a gateway route: (status, envelope) whatever the status, since a failed
        prediction's envelope is the answer to show; errors without an envelope still raise."""
        headers = {**self._headers(), "Content-Type": "application/json"}
        try:
            response = httpx.post(self.url + path, content=content, headers=headers, timeout=None)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        enveloped = isinstance(body, dict) and "success" in body
        if response.status_code in (401, 403, 404) or (
            response.status_code >= 400 and not enveloped
        ):
            raise error_from(response)
        return response.status_code, body

    def lines(self, path: str, params: dict[str, Any]) -> Iterator[str]:
        """A streamed text answer, line by line (``logs --follow``)."""
        try:
            with httpx.stream(
                "GET", self.url + path, params=params, headers=self._headers(), timeout=None
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from(response)
                yield from response.iter_lines()
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: Exception) -> ServerUnreachable:
        return ServerUnreachable(
            f"no answer from the Modelyard server at {self.url} ({exc.__class__.__name__}: "
            f"{exc}); start it with 'modelyard server' or set MODELYARD_URL"
        )


def error_from(response: httpx.Response) -> ModelyardError:
    """The server's ``{"error": {"code", "message", "details"}}`` (or the gateway's envelope)
    as the matching ModelyardError, keeping its message and details."""
    message = response.text[:2000] or response.reason_phrase
    details: dict[str, Any] = {}
    code: str | None = None
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = str(body["error"].get("message", message))
        code = body["error"].get("code")
        got = body["error"].get("details")
        if isinstance(got, dict):
            details = got
    cls = _BY_STATUS.get(response.status_code, ModelyardError)
    error = cls(message, **details)
    error.status = response.status_code
    if isinstance(code, str):
        error.code = code  # the server's own code, e.g. deploy_failed
    return error


def connect() -> Client:
    """The server to talk to and the key to send (see the module docstring)."""
    url = settings.get("url")
    key = settings.get("api_key")
    if url:
        return Client(str(url).rstrip("/"), key)
    home = settings.home()
    server_file = home / "server.json"
    if not server_file.exists():
        raise ServerUnreachable(
            f"no server found: {server_file} does not exist and MODELYARD_URL is not set; start "
            "'modelyard server' on this machine, or set MODELYARD_URL and MODELYARD_API_KEY"
        )
    try:
        found = json.loads(server_file.read_text())
        url = str(found["url"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ServerUnreachable(
            f"{server_file} is not a server file written by 'modelyard server' ({exc}); restart "
            "the server or set MODELYARD_URL"
        ) from exc
    if not key:
        key_file = home / "admin.key"
        if key_file.exists():
            key = key_file.read_text().strip()
    return Client(url.rstrip("/"), key)
