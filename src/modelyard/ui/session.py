"""Dashboard sessions: sign in once with a user name and password (or an API key), then a cookie
instead of a bearer header; each request's session yields a ``Caller`` (``web.access``), so every
page and every REST call a page's script makes decides with the rules the REST API uses.

The cookie holds only a random session id (``secrets.token_urlsafe(32)``); the server maps it, in
memory, to the user's id (password sign-in) or the key's id (key sign-in), an expiry and the
session's CSRF token. Neither the password nor the API key is kept. A user session reads its user
through ``people.user_by_id`` (the registry's 2-second cache) on every request, so disabling the
user ends it within that time on any server sharing the database and at once on this one (the
registry drops its cache on the change); its project roles come from ``people.project_roles``
(cached the same way), so a changed role shows on the next page. A key session re-reads its key
by id at most every ``DEFAULT_TTL_S``: a revoked or expired key ends its sessions within that
time. A ``run`` key (a job's or a replica's) may not sign in: it belongs to no person.
Sessions live in the server process and end when it stops.

Cookie: ``HttpOnly`` (page scripts cannot read it), ``SameSite=Strict`` (no other site's page can
make the browser send it), ``Path=/``, ``Secure`` when the dashboard is served over HTTPS.

Cross-site request forgery: a synchronizer token. Each session has its own random token; every
state-changing form carries it in a hidden ``csrf`` field and every ``fetch()`` that changes state
sends it in the ``X-CSRF-Token`` header; a request whose token does not match (compared in
constant time) is refused with 403, whatever SameSite already did.

Guessing passwords: failed sign-ins are counted per user name and client address; after
``FAILURE_LIMIT`` within a minute that pair is refused (429, naming when to retry) without a
password check, which also spares the server argon2's deliberate cost.
"""

from __future__ import annotations

import secrets
import threading
from collections import deque
from dataclasses import dataclass

from modelyard.clock import now_ms
from modelyard.errors import Forbidden, NotFound, Overloaded, Unauthorized
from modelyard.registry import DEFAULT_TTL_S, ApiKey, Registry, Role
from modelyard.ttlcache import TTLCache
from modelyard.web.access import Caller, caller_of_key, project_name

__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "FAILURE_LIMIT",
    "FAILURE_WINDOW_MS",
    "SESSION_TTL_MS",
    "FailedSignIns",
    "Session",
    "SessionStore",
]

COOKIE = "modelyard_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL_MS = 8 * 3_600_000  # a working day; then sign in again
FAILURE_LIMIT = 10  # failed sign-ins per user name and address ...
FAILURE_WINDOW_MS = 60_000  # ... within this window
_MAX_SESSIONS = 10_000  # a bound on memory if something signs in in a loop


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in browser: a user (``user_id``) or an API key (``key_id``), the name shown in
    the header, when it ends and its CSRF token."""

    id: str
    user_id: str | None
    key_id: str | None
    actor: str  # the user's name (what the audit log names)
    label: str
    csrf: str
    expires_ms: int


class FailedSignIns:
    """Failed sign-in times per (user name, address), for a mild rate limit."""

    def __init__(self, limit: int = FAILURE_LIMIT, window_ms: int = FAILURE_WINDOW_MS) -> None:
        self._limit = limit
        self._window_ms = window_ms
        self._seen: dict[tuple[str, str], deque[int]] = {}
        self._lock = threading.Lock()

    def check(self, name: str, address: str) -> None:
        """Overloaded (429) while ``name`` from ``address`` has failed ``limit`` times in the
        window, naming the wait."""
        now = now_ms()
        with self._lock:
            times = self._recent(name, address, now)
            if len(times) < self._limit:
                return
            wait_s = max(1, (times[0] + self._window_ms - now + 999) // 1000)
        raise Overloaded(
            f"too many failed sign-ins for {name!r} from {address}: {len(times)} in the last "
            f"{self._window_ms // 1000} s (accepted: fewer than {self._limit}); wait {wait_s} s "
            "and try again",
            retry_after_s=wait_s,
        )

    def failed(self, name: str, address: str) -> None:
        now = now_ms()
        with self._lock:
            self._recent(name, address, now).append(now)
            if len(self._seen) > _MAX_SESSIONS:  # a bound on memory: the stalest pairs go
                by_last = sorted(self._seen, key=lambda pair: max(self._seen[pair], default=0))
                for pair in by_last[: len(by_last) // 2]:
                    del self._seen[pair]

    def succeeded(self, name: str, address: str) -> None:
        with self._lock:
            self._seen.pop((name, address), None)

    def _recent(self, name: str, address: str, now: int) -> deque[int]:
        times = self._seen.setdefault((name, address), deque())
        while times and times[0] <= now - self._window_ms:
            times.popleft()
        return times


class SessionStore:
    """Session id -> ``Session``, in memory, thread-safe, with expiry; plus each session's chosen
    project (the header's switcher; None: all the caller's projects)."""

    def __init__(self, registry: Registry, ttl_ms: int = SESSION_TTL_MS) -> None:
        self._registry = registry
        self._ttl_ms = ttl_ms
        self._sessions: dict[str, Session] = {}
        self._projects: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self.failures = FailedSignIns()
        # key id -> key: a cookie-authenticated call costs no database read while the entry is
        # younger than the registry's own TTL for API keys.
        self._keys: TTLCache[ApiKey] = TTLCache(DEFAULT_TTL_S, max_entries=_MAX_SESSIONS)

    def sign_in_password(self, name: str, password: str) -> Session:
        """A new session for user ``name``; Unauthorized (one message for every reason) if the
        name and password do not sign in."""
        name = name.strip()
        if not name or not password:
            raise Unauthorized("give a user name and a password, or sign in with an API key")
        user = self._registry.people.sign_in(name, password)
        return self._add(user_id=user.id, key_id=None, actor=user.name, label=user.name)

    def sign_in_key(self, token: str) -> Session:
        """A new session for the API key ``token``; Unauthorized if the key is not valid,
        Forbidden for a ``run`` key."""
        token = token.strip()
        if not token:
            raise Unauthorized("no API key given; paste a key created with 'modelyard keys create'")
        key = self._registry.authenticate(token)
        if key.role is Role.RUN:
            raise Forbidden(
                f"API key {key.name!r} has role 'run', which cannot use the dashboard (it belongs "
                "to a replica or a job run, not a person); sign in with a user name and password, "
                "or a key of role: admin, user",
                key_id=key.id,
                role=str(key.role),
            )
        caller = caller_of_key(self._registry, key)  # Unauthorized if its user is disabled
        label = f"{caller.actor} (key {key.name})"
        return self._add(user_id=None, key_id=key.id, actor=caller.actor, label=label)

    def _add(self, *, user_id: str | None, key_id: str | None, actor: str, label: str) -> Session:
        session = Session(
            id=secrets.token_urlsafe(32),
            user_id=user_id,
            key_id=key_id,
            actor=actor,
            label=label,
            csrf=secrets.token_urlsafe(32),
            expires_ms=now_ms() + self._ttl_ms,
        )
        with self._lock:
            self._drop_expired()
            if len(self._sessions) >= _MAX_SESSIONS:  # oldest first out
                oldest = min(self._sessions.values(), key=lambda s: s.expires_ms)
                self._forget(oldest.id)
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session for a cookie value (None when unknown or expired)."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires_ms <= now_ms():
                self._forget(session_id)
                session = None
        return session

    def sign_out(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._forget(session_id)

    def caller_of(self, session: Session) -> Caller:
        """Who the session acts as now; Unauthorized (and the session ends) once its user is
        disabled or gone, or its key revoked or expired. Blocking on a cache miss."""
        if session.user_id is None:
            try:
                return caller_of_key(self._registry, self.key_of(session))
            except Unauthorized:
                self.sign_out(session.id)
                raise
        people = self._registry.people
        try:
            user = people.user_by_id(session.user_id)
        except NotFound:
            user = None
        if user is None or user.disabled_ms is not None:
            self.sign_out(session.id)
            raise Unauthorized(
                f"user {session.label!r} was disabled or removed, which ends their sessions; "
                "ask a server admin to enable the user, then sign in again"
            )
        return Caller(
            key=None,
            user=user,
            server_admin=user.is_admin,
            roles=people.project_roles(user.id),
            model_scope=None,
            project_crn=None,
            actor=user.name,
            names=lambda crn: project_name(self._registry, crn),
        )

    def key_of(self, session: Session) -> ApiKey:
        """The session's API key as the registry has it now; Unauthorized once it is revoked or
        expired (the session ends with it)."""
        key_id = session.key_id or ""
        now = now_ms()
        cached = self._keys.get(key_id)
        if cached is not None:
            if cached.active_at(now):
                return cached
        else:
            generation = self._keys.generation()  # a forget_key() during the read wins
            for key in self._registry.list_api_keys():
                if key.id == key_id:
                    self._keys.put(key.id, key, generation)
                    if key.active_at(now):
                        return key
                    break
        self.sign_out(session.id)
        raise Unauthorized(
            f"the API key {key_id!r} behind this session was revoked or has expired; "
            "sign in again with a valid key"
        )

    def forget_key(self, key_id: str) -> None:
        """Drop the cached copy of a key (the dashboard revoked it: its sessions end now, not
        within the cache's lifetime)."""
        self._keys.discard(key_id)

    def project_of(self, session: Session) -> str | None:
        """The project CRN the session's pages show (None: every project the caller sees)."""
        with self._lock:
            return self._projects.get(session.id)

    def choose_project(self, session: Session, project_crn: str | None) -> None:
        with self._lock:
            if session.id in self._sessions:
                self._projects[session.id] = project_crn

    @staticmethod
    def check_csrf(session: Session, given: str | None) -> None:
        """Forbidden unless ``given`` is this session's CSRF token."""
        if not given or not secrets.compare_digest(given.encode(), session.csrf.encode()):
            raise Forbidden(
                "the form's CSRF token is missing or does not match this session; reload the "
                "page and submit again (scripts send it in the X-CSRF-Token header)"
            )

    def _forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
        self._projects.pop(session_id, None)

    def _drop_expired(self) -> None:
        now = now_ms()
        for sid in [sid for sid, s in self._sessions.items() if s.expires_ms <= now]:
            self._forget(sid)
