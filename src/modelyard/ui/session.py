"""Dashboard sessions: sign in once with an API key, then a cookie instead of a bearer header.

The cookie holds only a random session id (``secrets.token_urlsafe(32)``); the server maps it, in
memory, to the key's id and role, an expiry and the session's CSRF token. The API key itself is
never kept: the key is looked up again by id at most every ``DEFAULT_TTL_S`` (2 s, the registry's
own cache lifetime for API keys), so a revoked or expired key ends its sessions within that time,
as it does for bearer calls seen by another server process. Only ``admin`` and ``user`` keys may
sign in: a ``run`` key (a job's) may not read model state, so every page would refuse it.
Sessions live in the server process and end when it stops (signing in again is one paste of a
key).

Cookie: ``HttpOnly`` (page scripts cannot read it), ``SameSite=Strict`` (no other site's page can
make the browser send it), ``Path=/``, ``Secure`` when the dashboard is served over HTTPS.

Cross-site request forgery: a synchronizer token. Each session has its own random token; every
state-changing form carries it in a hidden ``csrf`` field and every ``fetch()`` that changes state
sends it in the ``X-CSRF-Token`` header; a request whose token does not match (compared in
constant time) is refused with 403, whatever SameSite already did.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

from modelyard.clock import now_ms
from modelyard.errors import Forbidden, Unauthorized
from modelyard.registry import DEFAULT_TTL_S, ApiKey, Registry
from modelyard.ttlcache import TTLCache
from modelyard.web.auth import ALLOWED_ROLES, Capability

__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_TTL_MS",
    "Session",
    "SessionStore",
]

COOKIE = "modelyard_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL_MS = 8 * 3_600_000  # a working day; then sign in again
_MAX_SESSIONS = 10_000  # a bound on memory if something signs in in a loop


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in browser: whose key, its role at sign-in, when it ends, its CSRF token."""

    id: str
    key_id: str
    key_name: str
    role: str
    csrf: str
    expires_ms: int


class SessionStore:
    """Session id -> ``Session``, in memory, thread-safe, with expiry."""

    def __init__(self, registry: Registry, ttl_ms: int = SESSION_TTL_MS) -> None:
        self._registry = registry
        self._ttl_ms = ttl_ms
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        # key id -> key: a cookie-authenticated call costs no database read while the entry is
        # younger than the registry's own TTL for API keys.
        self._keys: TTLCache[ApiKey] = TTLCache(DEFAULT_TTL_S, max_entries=_MAX_SESSIONS)

    def sign_in(self, token: str) -> Session:
        """A new session for the API key ``token``; Unauthorized if the key is not valid."""
        token = token.strip()
        if not token:
            raise Unauthorized("no API key given; paste a key created with 'modelyard keys create'")
        key = self._registry.authenticate(token)
        allowed = ALLOWED_ROLES[Capability.READ_MODELS]
        if key.role not in allowed:
            roles = ", ".join(sorted(str(r) for r in allowed))
            raise Forbidden(
                f"API key {key.name!r} has role {str(key.role)!r}, which cannot use the "
                f"dashboard (it may only track metrics); sign in with a key of role: {roles}",
                key_id=key.id,
                role=str(key.role),
            )
        session = Session(
            id=secrets.token_urlsafe(32),
            key_id=key.id,
            key_name=key.name,
            role=str(key.role),
            csrf=secrets.token_urlsafe(32),
            expires_ms=now_ms() + self._ttl_ms,
        )
        with self._lock:
            self._drop_expired()
            if len(self._sessions) >= _MAX_SESSIONS:  # oldest first out
                oldest = min(self._sessions.values(), key=lambda s: s.expires_ms)
                del self._sessions[oldest.id]
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session for a cookie value (None when unknown or expired)."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires_ms <= now_ms():
                del self._sessions[session_id]
                session = None
        return session

    def sign_out(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)

    def key_of(self, session: Session) -> ApiKey:
        """The session's API key as the registry has it now; Unauthorized once it is revoked or
        expired (the session ends with it)."""
        now = now_ms()
        cached = self._keys.get(session.key_id)
        if cached is not None:
            if cached.active_at(now):
                return cached
        else:
            generation = self._keys.generation()  # a forget_key() during the read wins
            for key in self._registry.list_api_keys():
                if key.id == session.key_id:
                    self._keys.put(key.id, key, generation)
                    if key.active_at(now):
                        return key
                    break
        self.sign_out(session.id)
        raise Unauthorized(
            f"the API key {session.key_id!r} behind this session was revoked or has expired; "
            "sign in again with a valid key"
        )

    def forget_key(self, key_id: str) -> None:
        """Drop the cached copy of a key (the dashboard revoked it: its sessions end now, not
        within the cache's lifetime)."""
        self._keys.discard(key_id)

    @staticmethod
    def check_csrf(session: Session, given: str | None) -> None:
        """Forbidden unless ``given`` is this session's CSRF token."""
        if not given or not secrets.compare_digest(given.encode(), session.csrf.encode()):
            raise Forbidden(
                "the form's CSRF token is missing or does not match this session; reload the "
                "page and submit again (scripts send it in the X-CSRF-Token header)"
            )

    def _drop_expired(self) -> None:
        now = now_ms()
        for sid in [sid for sid, s in self._sessions.items() if s.expires_ms <= now]:
            del self._sessions[sid]
