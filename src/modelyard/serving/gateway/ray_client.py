"""The gateway -> replica hop on the Ray runtime: a Ray Serve deployment handle per replica.

A Ray replica's url is ``ray://<application>/<deployment>`` (``runtime/ray/serve.py``: one
application per replica). ``RayReplicaClient`` has ``ReplicaClient``'s interface (``post``,
``get``, ``close``) and calls the replica actor's ``post``/``get`` methods through the handle
(the server is a Ray driver; Serve's HTTP proxy is off). Errors map onto the pool's rules:

- the application is gone, or Serve refused the call before sending it (back-pressure, no
  replica) -> ``ConnectFailed`` (nothing was sent: retry elsewhere, rule 4);
- the actor died or became unreachable with the call in flight (``ActorDiedError``,
  ``ActorUnavailableError``, a lost node) -> ``NoResponse``: Ray Serve does not resend it, the
  pool does (rule 5), once, with the same prediction uuid;
- the call raised in the actor -> ``ExchangeFailed`` (never resent);
- the runtime saw the replica's actor stop serving (``_head.LostReplicas``: a lost node, a
  killed actor) -> ``ConnectFailed`` for a new call and ``NoResponse`` for one in flight (it is
  cancelled): Serve would hold both until it has placed a new actor, tens of seconds;
- the Ray head does not answer (``runtime/ray/_head.py``'s watch) -> ``RayUnavailable`` (503,
  naming the runtime and the head's address), at once for a new call and as soon as the watch
  finds out for a call in flight (which is cancelled): Ray itself would wait, not fail.

A timeout or cancellation from the pool cancels the call in the replica too.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.runtime.ray._head import current_watch, lost_replicas
from modelyard.serving.gateway.replica_client import ConnectFailed, ExchangeFailed, NoResponse

__all__ = ["RayReplicaClient", "parse_ray_url"]

_SCHEME = "ray://"


def parse_ray_url(url: str) -> tuple[str, str]:
    """``ray://APP/DEPLOYMENT`` -> ``(APP, DEPLOYMENT)``.

    >>> parse_ray_url("ray://my-abc-r1-0a0b0c/replica")
    ('my-abc-r1-0a0b0c', 'replica')
    """
    app, _, deployment = url[len(_SCHEME) :].partition("/")
    if not url.startswith(_SCHEME) or not app or not deployment or "/" in deployment:
        raise InvalidInput(
            f"replica url {url!r} is not a Ray replica; expected 'ray://APPLICATION/DEPLOYMENT'"
        )
    return app, deployment


class RayReplicaClient:
    """Calls one Ray Serve replica through its deployment handle (made on first use)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.app, self.deployment = parse_ray_url(url)
        # One handle per method, made on first use (each has its own router: made once).
        self._handles: dict[str, Any] = {}
        self.idle_connections = 0

    def _get_handle(self, method: str) -> Any:
        handle = self._handles.get(method)
        if handle is None:
            from ray import serve

            try:
                base = serve.get_deployment_handle(self.deployment, self.app)
                handle = self._handles[method] = base.options(method_name=method)
            except Exception as exc:
                raise ConnectFailed(
                    f"cannot reach {self.url} on the Ray runtime ({exc.__class__.__name__}: {exc})"
                ) from exc
        return handle

    async def post(self, path: str, body: bytes, headers: bytes = b"") -> tuple[int, bytes]:
        return await self._call("post", path, body, headers)

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self._call("get", path)

    async def close(self) -> None:
        """Stop the handles' routers (their threads talk to the cluster until stopped)."""
        handles, self._handles = list(self._handles.values()), {}
        for handle in handles:
            with contextlib.suppress(Exception):
                await handle.shutdown_async()

    async def _call(self, method: str, *args: Any) -> tuple[int, bytes]:
        from ray import exceptions as rex
        from ray.serve import exceptions as sex

        watch = current_watch()
        if watch is not None:
            watch.check()
        if lost_replicas().is_up(self.app):
            raise ConnectFailed(f"{self.url} lost its replica actor; Ray Serve is replacing it")
        handle = self._get_handle(method)
        try:
            response = handle.remote(*args)
        except Exception as exc:
            raise ConnectFailed(f"Ray Serve did not take the call to {self.url}: {exc}") from exc
        try:
            status, payload = await _unless_lost(response, watch, self.url, self.app)
        except asyncio.CancelledError:
            response.cancel()
            raise
        except (sex.BackPressureError, sex.DeploymentUnavailableError) as exc:
            raise ConnectFailed(f"{self.url} took no call ({exc.__class__.__name__})") from exc
        except (
            rex.ActorDiedError,
            rex.ActorUnavailableError,
            rex.RayActorError,
            sex.ReplicaUnavailableError,
        ) as exc:
            raise NoResponse(
                f"the replica actor behind {self.url} died before answering "
                f"({exc.__class__.__name__})"
            ) from exc
        except (rex.RayError, sex.RayServeException) as exc:
            raise ExchangeFailed(
                f"{self.url} failed the call ({exc.__class__.__name__}: {str(exc)[:500]})"
            ) from exc
        return int(status), bytes(payload)


async def _unless_lost(response: Any, watch: Any, url: str, app: str) -> Any:
    """``await response``, unless the head is found unreachable first (then the watch's
    ``RayUnavailable``) or the replica's actor is found gone (then ``NoResponse``: the pool
    resends it elsewhere); the call is cancelled in both cases."""
    answer = asyncio.ensure_future(response)
    stops = [lost_replicas().future(app)]
    if watch is not None:
        stops.append(watch.down_future())
    try:
        await asyncio.wait((answer, *stops), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        answer.cancel()
        raise
    if answer.done():
        return answer.result()
    error = None if watch is None else watch.error()
    if error is None and not lost_replicas().is_up(app):
        return await answer  # the flag went down again meanwhile: the call goes on
    answer.cancel()
    response.cancel()
    if error is not None:
        raise error
    raise NoResponse(f"the replica actor behind {url} stopped serving before answering")
