"""API keys: who calls. Minted once, stored as hashes, expiring, revocable.

``authenticate`` is on the predict path when a model requires authentication, so answers are kept
in a ``TTLCache`` (see there for what other processes see and when). Expiry is checked on every
call, cached or not; a revocation in this process drops the cached entry at once. When the
database cannot be read (``StoreUnavailable``), the last known answer is used instead
(``TTLCache.stale``; expiry and revocation still checked), so calls go on through a store outage.
"""

from __future__ import annotations

import secrets
from typing import Any

from modelyard.errors import InvalidInput, NotFound, StoreUnavailable, Unauthorized
from modelyard.ids import is_uuid
from modelyard.registry._db import Clock, Cursor, Db, format_ms
from modelyard.registry._grants import Grant, check_grant
from modelyard.registry._keys import (
    ACCESS_KEY_PREFIX,
    API_KEY_PREFIX,
    display_prefix,
    hash_token,
    new_token,
    same_hash,
)
from modelyard.registry._models import find_model
from modelyard.registry._records import ApiKey, ProjectRole, Role
from modelyard.specs.checks import check_text
from modelyard.ttlcache import TTLCache

__all__ = ["DAY_MS", "MAX_EXPIRY_MS", "RUN_SCOPE_PREFIX", "YEAR_MS", "ApiKeys"]

DAY_MS = 86_400_000
YEAR_MS = 365 * DAY_MS
MAX_EXPIRY_MS = 10 * YEAR_MS
_COLUMNS = (
    "id, name, role, prefix, scope, created_ms, expires_ms, revoked_ms, user_id, project_crn, "
    "project_role"
)
RUN_SCOPE_PREFIX = "crn:modelyard:run/"


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row[0],
        name=row[1],
        role=Role(row[2]),
        prefix=row[3],
        scope=row[4],
        created_ms=int(row[5]),
        expires_ms=None if row[6] is None else int(row[6]),
        revoked_ms=None if row[7] is None else int(row[7]),
        user_id=row[8],
        project_crn=row[9],
        project_role=None if row[10] is None else ProjectRole(row[10]),
    )


def check_role(role: object) -> Role:
    if isinstance(role, str) and role in {r.value for r in Role}:
        return Role(role)
    raise InvalidInput(
        f"role={role!r} is not a role; accepted: {', '.join(r.value for r in Role)}",
        argument="role",
    )


def check_expiry(expires_in_ms: object, role: Role) -> int | None:
    if expires_in_ms is None:
        if role is Role.ADMIN:
            return None
        raise InvalidInput(
            f"expires_in_ms=None (never expires) is only accepted for admin keys, not for a "
            f"{role.value!r} key; accepted: a number of milliseconds from 1 to {MAX_EXPIRY_MS} "
            f"(10 years), default {YEAR_MS} (one year)",
            argument="expires_in_ms",
        )
    if (
        isinstance(expires_in_ms, bool)
        or not isinstance(expires_in_ms, int)
        or not 0 < expires_in_ms <= MAX_EXPIRY_MS
    ):
        raise InvalidInput(
            f"expires_in_ms={expires_in_ms!r} is not accepted; expected an integer number of "
            f"milliseconds from 1 to {MAX_EXPIRY_MS} (10 years), default {YEAR_MS} (one year)",
            argument="expires_in_ms",
        )
    return expires_in_ms


def _check_scope(db: Db, cur: Cursor, scope: object, role: Role) -> str | None:
    """The scope to store: None, a job run's CRN (``run`` keys only: the runner mints them), or
    the CRN of an existing model (given as its name or CRN). Anything else would fail open or
    name nothing, so it is bad input; admin keys are never scoped (a scope cannot hold what an
    admin does: deploy and run jobs, which run code on the server's machine, and mint keys)."""
    text: str | None = check_text("scope", scope, max_len=1000, optional=True)
    if text is None:
        return None
    if text.startswith(RUN_SCOPE_PREFIX):
        if role is not Role.RUN or not is_uuid(text[len(RUN_SCOPE_PREFIX) :]):
            raise InvalidInput(
                f"scope={text!r} is a job run's scope, which only the key of that run (role "
                "'run', minted when the run starts) carries; accepted for this key: a model's "
                "name or CRN, or no scope",
                argument="scope",
            )
        return text
    if role is Role.ADMIN:
        raise InvalidInput(
            f"scope={text!r} is refused for an admin key: an admin deploys models and defines "
            "jobs, which run code on the server's machine, and mints keys, so no scope could "
            "hold it; accepted: an unscoped admin key, or a 'user' (or 'run') key scoped to "
            "one model",
            argument="scope",
        )
    try:
        return find_model(db, cur, text).crn
    except (NotFound, InvalidInput) as exc:
        raise InvalidInput(
            f"scope={text!r} is not an existing model ({exc.message}); accepted: the name or "
            "CRN of a registered model (the CRN is what is stored), or no scope",
            argument="scope",
        ) from None


def check_given_token(token: str) -> str:
    """A token minted elsewhere (``MODELYARD_ADMIN_KEY_FILE``): as long and as random-looking as
    ours, so nobody registers ``myk_admin``."""
    body = token[len(API_KEY_PREFIX) :]
    if (
        not token.startswith(API_KEY_PREFIX)
        or len(body) < _GIVEN_TOKEN_MIN
        or not all(c.isascii() and (c.isalnum() or c in "-_") for c in body)
    ):
        raise InvalidInput(
            f"the given API key ({display_prefix(token)!r}..., {len(token)} characters) is not a "
            f"key token; accepted: {API_KEY_PREFIX!r} followed by at least {_GIVEN_TOKEN_MIN} "
            'URL-safe characters, e.g. from python -c "import secrets; '
            f"print('{API_KEY_PREFIX}' + secrets.token_urlsafe(32))\"",
            argument="token",
        )
    return token


_GIVEN_TOKEN_MIN = 43  # secrets.token_urlsafe(32): 256 bits


class ApiKeys:
    def __init__(self, db: Db, clock: Clock, cache: TTLCache[ApiKey]) -> None:
        self._db = db
        self._now = clock
        self._cache = cache

    def create(
        self,
        name: str,
        role: str = "user",
        expires_in_ms: int | None = YEAR_MS,
        scope: str | None = None,
        *,
        user: str | None = None,
        project: str | None = None,
        project_role: str | None = None,
        token: str | None = None,
    ) -> tuple[ApiKey, str]:
        name = check_text("name", name, max_len=200)
        chosen = check_role(role)
        lifetime = check_expiry(expires_in_ms, chosen)
        token = new_token(API_KEY_PREFIX) if token is None else check_given_token(token)
        now = self._now()

        def insert(cur: Cursor) -> ApiKey:
            checked = _check_scope(self._db, cur, scope, chosen)
            grant: Grant = check_grant(self._db, cur, chosen, checked, user, project, project_role)
            key = ApiKey(
                id=secrets.token_hex(8),
                name=name,
                role=chosen,
                prefix=display_prefix(token),
                scope=checked,
                created_ms=now,
                expires_ms=None if lifetime is None else now + lifetime,
                revoked_ms=None,
                user_id=grant.user_id,
                project_crn=grant.project_crn,
                project_role=grant.project_role,
            )
            self._db.exec(
                cur,
                "INSERT INTO api_keys (id, name, key_hash, prefix, role, scope, created_ms, "
                "expires_ms, revoked_ms, user_id, project_crn, project_role) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                (
                    key.id,
                    key.name,
                    hash_token(token),
                    key.prefix,
                    key.role.value,
                    key.scope,
                    key.created_ms,
                    key.expires_ms,
                    key.user_id,
                    key.project_crn,
                    None if key.project_role is None else key.project_role.value,
                ),
            )
            return key

        return self._db.write(insert), token

    def authenticate(self, token: object) -> ApiKey:
        if not isinstance(token, str) or not token:
            raise Unauthorized(
                "no API key was given; send one as 'Authorization: Bearer <key>' (API keys "
                f"start with {API_KEY_PREFIX!r} and are shown once when created)",
                reason="missing",
            )
        digest = hash_token(token)
        generation = self._cache.generation()
        key = self._cache.get(digest)
        if key is None:
            try:
                with self._db.read() as cur:
                    row = self._db.exec(
                        cur,
                        f"SELECT {_COLUMNS}, key_hash FROM api_keys WHERE key_hash = ?",
                        (digest,),
                    ).fetchone()
            except StoreUnavailable:
                key = self._cache.stale(digest)  # stale if error: the last known answer
                if key is None:
                    raise
                return self._checked(key)
            if row is None or not same_hash(row[11], digest):
                self._cache.forget_stale(digest)
                hint = (
                    f" (it looks like a model access key, which starts with {ACCESS_KEY_PREFIX!r};"
                    " the Authorization header takes an API key)"
                    if token.startswith(ACCESS_KEY_PREFIX)
                    else ""
                )
                raise Unauthorized(
                    f"the API key given is unknown: it matches no key issued by this server"
                    f"{hint}; use a key from create_api_key (they start with "
                    f"{API_KEY_PREFIX!r}) or ask an admin for one",
                    reason="unknown",
                )
            key = _key(row)
            self._cache.put(digest, key, generation)
        return self._checked(key)

    def cached(self, token: object) -> ApiKey | None:
        """What ``authenticate`` answers from the cache alone (revocation and expiry checked
        as always), or None when answering needs the database: the server's predict route then
        calls ``authenticate`` on a worker thread instead of its event loop."""
        if not isinstance(token, str) or not token:
            return None
        key = self._cache.get(hash_token(token))
        return None if key is None else self._checked(key)

    def _checked(self, key: ApiKey) -> ApiKey:
        now = self._now()
        if key.revoked_ms is not None:
            raise Unauthorized(
                f"API key {key.id} ({key.name!r}) was revoked at {format_ms(key.revoked_ms)}; "
                "use another key or ask an admin for a new one",
                reason="revoked",
                key_id=key.id,
                revoked_ms=key.revoked_ms,
            )
        if key.expires_ms is not None and now >= key.expires_ms:
            raise Unauthorized(
                f"API key {key.id} ({key.name!r}) expired at {format_ms(key.expires_ms)}; "
                "ask an admin for a new key (keys last one year unless created with another "
                "expires_in_ms)",
                reason="expired",
                key_id=key.id,
                expires_ms=key.expires_ms,
            )
        return key

    def list(self, user_id: str | None = None) -> list[ApiKey]:
        where = "" if user_id is None else " WHERE user_id = ?"
        with self._db.read() as cur:
            rows = self._db.exec(
                cur,
                f"SELECT {_COLUMNS} FROM api_keys{where} ORDER BY created_ms, id",
                () if user_id is None else (user_id,),
            ).fetchall()
        return [_key(row) for row in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (idempotent: revoking it again keeps the first revocation time)."""
        check_text("key_id", key_id, max_len=200)

        def revoke(cur: Cursor) -> ApiKey:
            self._db.exec(
                cur,
                "UPDATE api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
                (self._now(), key_id),
            )
            row = self._db.exec(
                cur, f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)
            ).fetchone()
            if row is None:
                raise NotFound(
                    f"API key id {key_id!r} is not known; list_api_keys() shows the ids",
                    key_id=key_id,
                )
            return _key(row)

        key = self._db.write(revoke)
        self._cache.discard_where(lambda cached: cached.id == key.id)
        return key
