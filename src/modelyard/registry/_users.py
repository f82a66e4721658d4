"""Users: people who sign in with a name and a password, or call with their API keys.

A user's id is a uuid; their name follows ``PERSON_NAME_RULE`` (as team names do) and never
changes. ``is_admin`` makes a server administrator. Disabling a user sets ``disabled_ms``: their
sessions and keys stop working at once in this process (the caches are dropped) and within the
cache lifetime (2 s) on another server sharing the database. The password hash never leaves this
module; ``sign_in`` answers the same Unauthorized for an unknown name, a wrong password, a
disabled user and a user without a password, in about the same time (``dummy_verify``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from modelyard.errors import Conflict, InvalidInput, NotFound, Unauthorized
from modelyard.ids import is_uuid
from modelyard.registry._db import Clock, Cursor, Db
from modelyard.registry._passwords import dummy_verify, hash_password, verify_password
from modelyard.registry._records import User
from modelyard.ttlcache import TTLCache

__all__ = [
    "PERSON_NAME_RULE",
    "USER_COLUMNS",
    "Users",
    "check_person_name",
    "find_user",
    "user_of",
]

# User and team names appear in URLs, in ``owner/project`` names and in the audit log: plain.
PERSON_NAME_RULE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
USER_COLUMNS = (
    "id, name, email, password_hash IS NOT NULL, is_admin, disabled_ms, created_ms, updated_ms"
)
_SIGN_IN_REFUSED = (
    "sign-in refused: the user name or the password is wrong, or the user is disabled or has "
    "no password yet; check both, or ask a server admin (modelyard users ...)"
)
_MAX_EMAIL = 254


def check_person_name(kind: str, name: object) -> str:
    """A user or team name (``kind``: "user" or "team") by ``PERSON_NAME_RULE``."""
    if not isinstance(name, str) or PERSON_NAME_RULE.match(name) is None:
        raise InvalidInput(
            f"{kind} name {name!r} is not accepted; a {kind} name is 1 to 63 characters of "
            "lowercase letters, digits, '.', '_' and '-', starting with a letter or digit "
            f"(rule {PERSON_NAME_RULE.pattern}), e.g. 'alice' or 'data-science'",
            argument="name",
        )
    return name


def _check_email(email: object) -> str | None:
    if email is None:
        return None
    if (
        not isinstance(email, str)
        or len(email) > _MAX_EMAIL
        or email.count("@") != 1
        or not all(email.split("@"))
        or any(c.isspace() for c in email)
    ):
        raise InvalidInput(
            f"email={email!r} is not accepted; expected an address like 'alice@example.com' "
            f"(one '@', no spaces, at most {_MAX_EMAIL} characters) or None",
            argument="email",
        )
    return email


def user_of(row: Any) -> User:
    """A ``User`` from a row of ``USER_COLUMNS``."""
    return User(
        id=row[0],
        name=row[1],
        email=row[2],
        is_admin=bool(row[4]),
        disabled_ms=None if row[5] is None else int(row[5]),
        has_password=bool(row[3]),
        created_ms=int(row[6]),
        updated_ms=int(row[7]),
    )


def find_user(db: Db, cur: Cursor, ref: object, *, lock: bool = False) -> User:
    """The user ``ref`` names (an id or a name); NotFound naming it and some known names."""
    if not isinstance(ref, str) or not ref:
        raise InvalidInput(
            f"user {ref!r} is not accepted; expected a user name such as 'alice' or a user id",
            argument="user",
        )
    tail = db.for_update if lock else ""
    row = None
    if is_uuid(ref):
        row = db.exec(
            cur, f"SELECT {USER_COLUMNS} FROM users WHERE id = ?{tail}", (ref,)
        ).fetchone()
    if row is None:
        row = db.exec(
            cur, f"SELECT {USER_COLUMNS} FROM users WHERE name = ?{tail}", (ref,)
        ).fetchone()
    if row is None:
        names = [r[0] for r in db.exec(cur, "SELECT name FROM users ORDER BY name LIMIT 11")]
        known = (
            f"known users: {', '.join(names[:10])}{', ...' if len(names) > 10 else ''}"
            if names
            else "no users exist yet"
        )
        raise NotFound(f"user {ref!r} does not exist; {known}", user=ref)
    return user_of(row)


class Users:
    """The users table. ``changed`` is called after every change (it drops the people caches:
    ``user_by_id`` and the project roles); ``cache`` answers ``by_id``."""

    def __init__(
        self, db: Db, clock: Clock, cache: TTLCache[User], changed: Callable[[], None]
    ) -> None:
        self._db = db
        self._now = clock
        self._cache = cache
        self._changed = changed

    def create(
        self,
        name: str,
        *,
        email: str | None = None,
        admin: bool = False,
        password: str | None = None,
    ) -> User:
        name = check_person_name("user", name)
        email = _check_email(email)
        if not isinstance(admin, bool):
            raise InvalidInput(f"admin={admin!r} is not accepted; expected True or False")
        hashed = None if password is None else hash_password(password)
        now = self._now()
        user = User(str(uuid.uuid4()), name, email, admin, None, hashed is not None, now, now)

        def insert(cur: Cursor) -> User:
            inserted = self._db.exec(
                cur,
                "INSERT INTO users (id, name, email, password_hash, is_admin, disabled_ms, "
                "created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, NULL, ?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (user.id, name, email, hashed, int(admin), now, now),
            ).rowcount
            if inserted != 1:
                raise Conflict(
                    f"a user named {name!r} already exists; choose another name", user=name
                )
            return user

        created = self._db.write(insert)
        self._changed()
        return created

    def get(self, ref: str) -> User:
        with self._db.read() as cur:
            return find_user(self._db, cur, ref)

    def by_id(self, user_id: str) -> User:
        """``get`` by id through the cache (the access layer asks on every request)."""
        generation = self._cache.generation()
        cached = self._cache.get(user_id)
        if cached is not None:
            return cached
        with self._db.read() as cur:
            row = self._db.exec(
                cur, f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,)
            ).fetchone()
        if row is None:
            raise NotFound(
                f"user id {user_id!r} does not exist (deleted, or from another server's "
                "database); list_users() shows the users",
                user=user_id,
            )
        user = user_of(row)
        self._cache.put(user_id, user, generation)
        return user

    def list(self) -> list[User]:
        with self._db.read() as cur:
            rows = self._db.exec(cur, f"SELECT {USER_COLUMNS} FROM users ORDER BY name").fetchall()
        return [user_of(row) for row in rows]

    def any(self) -> bool:
        """Whether any user exists (keys need an owner once one does)."""
        with self._db.read() as cur:
            return self._db.exec(cur, "SELECT 1 FROM users LIMIT 1").fetchone() is not None

    def set_disabled(self, ref: str, disabled: bool) -> User:
        if not isinstance(disabled, bool):
            raise InvalidInput(f"disabled={disabled!r} is not accepted; expected True or False")

        def update(cur: Cursor) -> User:
            user = find_user(self._db, cur, ref, lock=True)
            if (user.disabled_ms is not None) == disabled:
                return user  # idempotent: a second disable keeps the first time
            now = self._now()
            self._db.exec(
                cur,
                "UPDATE users SET disabled_ms = ?, updated_ms = ? WHERE id = ?",
                (now if disabled else None, now, user.id),
            )
            return find_user(self._db, cur, user.id)

        changed = self._db.write(update)
        self._changed()
        return changed

    def set_password(self, ref: str, password: str) -> None:
        hashed = hash_password(password)  # checks it, before any read

        def update(cur: Cursor) -> None:
            user = find_user(self._db, cur, ref, lock=True)
            self._db.exec(
                cur,
                "UPDATE users SET password_hash = ?, updated_ms = ? WHERE id = ?",
                (hashed, self._now(), user.id),
            )

        self._db.write(update)
        self._changed()

    def sign_in(self, name: object, password: object) -> User:
        """The user if ``password`` is theirs and they are enabled; else one Unauthorized for
        every reason, after about the same work (an unknown name still costs one argon2 check).
        A hash made with older parameters is replaced by a fresh one on success."""
        if not isinstance(password, str) or not password or len(password) > 1000:
            raise Unauthorized(_SIGN_IN_REFUSED, reason="sign_in")
        row = None
        if isinstance(name, str) and PERSON_NAME_RULE.match(name):
            with self._db.read() as cur:
                row = self._db.exec(
                    cur,
                    f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE name = ?",
                    (name,),
                ).fetchone()
        if row is None or row[8] is None:
            dummy_verify(password)
            raise Unauthorized(_SIGN_IN_REFUSED, reason="sign_in")
        ok, rehashed = verify_password(row[8], password)
        user = user_of(row)
        if not ok or user.disabled_ms is not None:
            raise Unauthorized(_SIGN_IN_REFUSED, reason="sign_in")
        if rehashed is not None:
            self._db.write(
                lambda cur: self._db.exec(
                    cur,
                    "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
                    (rehashed, user.id, row[8]),
                )
            )
        return user

    def insert_first_admin(self, cur: Cursor, name: str, hashed: str) -> bool:
        """Inside the bootstrap's transaction: add server admin ``name`` with the password hash
        ``hashed`` (made before the transaction: it takes 0.1 s) unless the name is taken
        (another server starting at the same time won): True if this call added it."""
        now = self._now()
        return bool(
            self._db.exec(
                cur,
                "INSERT INTO users (id, name, email, password_hash, is_admin, disabled_ms, "
                "created_ms, updated_ms) VALUES (?, ?, NULL, ?, 1, NULL, ?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (str(uuid.uuid4()), name, hashed, now, now),
            ).rowcount
            == 1
        )
