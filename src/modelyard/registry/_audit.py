"""The audit log: who changed what, when, from where, and how it ended (table ``audit_log``).

Every state change the server makes for someone (deploy, scale, key created, sign-in...) is one
row, written by ``record`` with a single INSERT. The log is append-only as far as anybody outside
the server is concerned: the API has no route to write or delete entries; only ``prune`` (the
retention policy, run by the built-in maintenance job) removes the oldest.

Two promises hold whatever a caller passes in:

- **No secret or key is ever stored.** ``details`` is scrubbed before it is written: any key
  named like a credential (token, key, password, secret, authorization, cookie, credential) is
  dropped with its value, at any depth, and any string that looks like a Modelyard token
  (``myk_``/``mya_`` followed by its random part), a bearer header or a password hash is masked.
  ``object`` is masked the same way. Secret values never reach this module at all (callers name
  a secret in ``object``, never its value), but the scrubbing does not rely on that.
- **Auditing never fails a request.** While the database cannot be written (``StoreUnavailable``:
  an outage, a lock held too long), ``record`` logs a warning once, keeps the entry in a small
  bounded in-memory backlog (``BACKLOG``, oldest dropped first, with a count in the log) and
  returns None; the next ``record`` writes the backlog first, in the same transaction, each entry
  with the time it happened. The backlog is lost if the process ends during the outage: it is a
  cushion for short outages, not a journal. Text is stored as both databases take it (NUL and
  unpaired surrogates replaced), and a waiting entry the database still refuses once it is back
  is dropped with a warning rather than hold every later entry up.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson

from modelyard.errors import InvalidInput
from modelyard.registry._db import Clock, Cursor, Db
from modelyard.registry._keys import ACCESS_KEY_PREFIX, API_KEY_PREFIX
from modelyard.registry._records import AuditEntry
from modelyard.store.sqlaccess import sql

__all__ = ["BACKLOG", "MAX_LIMIT", "OUTCOMES", "AuditLog", "scrub", "scrub_text"]

log = logging.getLogger("modelyard.audit")

OUTCOMES = ("ok", "denied", "failed")
BACKLOG = 1000  # entries kept in memory while the database cannot be written
MAX_LIMIT = 10_000
MAX_DETAILS_BYTES = 16 * 1024
MASKED = "***"
_LIMITS = {"actor": 200, "action": 200, "object": 1000, "address": 200, "key_id": 100}
_COLUMNS = (
    "seq, at_ms, actor, key_id, action, object, project_crn, address, outcome, status, details"
)
_INSERT = (
    "INSERT INTO audit_log (at_ms, actor, key_id, action, object, project_crn, address, outcome, "
    "status, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# A details key naming a credential: dropped with its value, whatever the value looks like.
_CREDENTIAL_KEY = re.compile(
    r"token|key|passw|secret|authori[sz]ation|cookie|credential|csrf", re.IGNORECASE
)
# A value that carries a credential: Modelyard tokens, bearer headers, password hashes.
_CREDENTIAL_TEXT = re.compile(
    "|".join(
        [
            rf"(?:{re.escape(API_KEY_PREFIX)}|{re.escape(ACCESS_KEY_PREFIX)})[A-Za-z0-9_\-]+",
            r"(?i:bearer)\s+\S+",
            r"\$argon2[a-z]*\$\S+",
        ]
    )
)

_MAX_INT = 2**63 - 1  # the largest integer either database stores (BIGINT, SQLite INTEGER)

Row = tuple[int, str, str | None, str, str | None, str | None, str | None, str, int | None, str]


def scrub_text(text: str) -> str:
    """``text`` with every token-like part masked (``myk_...`` becomes ``***``).

    >>> scrub_text("created with myk_abcDEF0123456789-_xyz by bob")
    'created with *** by bob'
    """
    return _CREDENTIAL_TEXT.sub(MASKED, text)


def scrub(value: Any) -> Any:
    """``value`` (JSON-like) without credentials: keys named like one dropped, token-like strings
    masked, at any depth.

    >>> scrub({"model": "churn", "token": "x", "note": "mya_0123456789", "n": [1, "Bearer q"]})
    {'model': 'churn', 'note': '***', 'n': [1, '***']}
    """
    if isinstance(value, dict):
        return {
            clean(str(k)): scrub(v) for k, v in value.items() if not _CREDENTIAL_KEY.search(str(k))
        }
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return scrub_text(clean(value))
    return value


def clean(text: str) -> str:
    """``text`` as both databases store it: NUL (which PostgreSQL refuses in text) and unpaired
    surrogates (which no UTF-8 encoder takes) replaced, so no entry can fail on its content.

    >>> clean("a\\x00b") == "a\\ufffdb"
    True
    """
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _text(argument: str, value: object, *, optional: bool) -> str | None:
    """A string column: None when optional and absent; cut to its limit (an audit entry is never
    refused for being long: the request it records already happened)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        extra = " or None" if optional else ""
        raise InvalidInput(
            f"{argument}={value!r:.200} is not accepted; expected a non-empty string{extra}",
            argument=argument,
        )
    return clean(value[: _LIMITS.get(argument, 500)])


def _details(details: object) -> str:
    if details is None:
        details = {}
    if not isinstance(details, dict):
        raise InvalidInput(
            f"details={details!r:.200} is not accepted; expected a dict (JSON object) or None",
            argument="details",
        )
    try:
        text = orjson.dumps(scrub(details), default=str).decode()
    except TypeError as exc:  # (keys that are not strings are made strings by scrub)
        raise InvalidInput(
            f"details={details!r:.200} cannot be stored as JSON ({exc}); accepted: dicts, lists, "
            "strings, numbers, booleans and None",
            argument="details",
        ) from exc
    if len(text) > MAX_DETAILS_BYTES:
        return orjson.dumps({"truncated": True, "bytes": len(text)}).decode()
    return text


def _entry(row: Sequence[Any]) -> AuditEntry:
    return AuditEntry(
        seq=int(row[0]),
        at_ms=int(row[1]),
        actor=row[2],
        key_id=row[3],
        action=row[4],
        object=row[5],
        project_crn=row[6],
        address=row[7],
        outcome=row[8],
        status=None if row[9] is None else int(row[9]),
        details=orjson.loads(row[10]),
    )


def _positive(argument: str, value: object, accepted: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
        raise InvalidInput(
            f"{argument}={value!r:.40} is not accepted; expected {accepted} (at most {_MAX_INT}) "
            "or None",
            argument=argument,
        )
    return value


class AuditLog:
    """The ``audit_log`` table (``registry.audit``); see the module docstring."""

    MAX_LIMIT = MAX_LIMIT

    def __init__(self, db: Db, clock: Clock, backlog: int = BACKLOG) -> None:
        self._db = db
        self._now = clock
        self._backlog: deque[Row] = deque()
        self._backlog_max = backlog
        self._lock = threading.Lock()
        self._failing = False
        self._dropped = 0

    @property
    def pending(self) -> int:
        """Entries waiting in memory for the database to come back."""
        with self._lock:
            return len(self._backlog)

    def record(  # noqa: PLR0913 - keyword-only, one per column of an entry
        self,
        actor: str,
        action: str,
        *,
        key_id: str | None = None,
        object: str | None = None,  # the column's name, as in AuditEntry
        project_crn: str | None = None,
        address: str | None = None,
        outcome: str = "ok",
        status: int | None = None,
        details: dict[str, Any] | None = None,
        at_ms: int | None = None,
    ) -> AuditEntry | None:
        """Append one entry (``at_ms``: when it happened, default now) and return it, or None
        when the database cannot be written right now (the entry waits in the backlog; see the
        module docstring). InvalidInput only for arguments of the wrong kind."""
        if outcome not in OUTCOMES:
            raise InvalidInput(
                f"outcome={outcome!r} is not accepted; expected one of {', '.join(OUTCOMES)}",
                argument="outcome",
            )
        status = _positive("status", status, "an HTTP status such as 200")
        when = _positive("at_ms", at_ms, "epoch milliseconds (an integer >= 0)")
        shown_object = _text("object", object, optional=True)
        row: Row = (
            self._now() if when is None else when,
            str(_text("actor", actor, optional=False)),
            _text("key_id", key_id, optional=True),
            str(_text("action", action, optional=False)),
            None if shown_object is None else scrub_text(shown_object),
            _text("project_crn", project_crn, optional=True),
            _text("address", address, optional=True),
            outcome,
            status,
            _details(details),
        )
        with self._lock:
            waiting = list(self._backlog)
            self._backlog.clear()
        seq = self._write(waiting, row)
        if seq is None:
            return None
        if self._failing:
            self._failing = False
            log.warning(
                "audit log: the database is back; %d waiting entries written (%d dropped while "
                "it was away)",
                len(waiting),
                self._dropped,
            )
            self._dropped = 0
        return _entry((seq, *row))

    def _write(self, waiting: list[Row], row: Row) -> int | None:
        """Write the backlog and ``row`` in one transaction: ``row``'s seq, or None (kept for
        later). Should ``row`` go in alone where the batch did not, the database is up and a
        waiting entry is at fault: the others are written one by one and that one dropped, so
        one bad entry can never hold the log up."""
        try:
            return int(self._db.write(lambda cur: self._insert(cur, waiting, row)))
        except Exception as exc:  # StoreUnavailable, or a driver's refusal of one value
            if waiting:
                try:
                    seq = int(self._db.write(lambda cur: self._insert(cur, [], row)))
                except Exception:
                    pass
                else:
                    self._salvage(waiting)
                    return seq
            self._keep([*waiting, row], exc)
            return None

    def _salvage(self, waiting: list[Row]) -> None:
        for one in waiting:

            def insert(cur: Cursor, entry: Row = one) -> int:
                return self._insert(cur, [], entry)

            try:
                self._db.write(insert)
            except Exception as exc:
                log.warning("audit log: an entry of %r dropped, it cannot be stored: %s", one, exc)

    def _insert(self, cur: Cursor, waiting: list[Row], row: Row) -> int:
        if waiting:
            cur.executemany(sql(self._db.store, _INSERT), waiting)
        if self._db.dialect == "postgres":
            return int(self._db.exec(cur, _INSERT + " RETURNING seq", row).fetchone()[0])
        return int(self._db.exec(cur, _INSERT, row).lastrowid)

    def _keep(self, rows: list[Row], exc: Exception) -> None:
        """Put ``rows`` (oldest first) back in the backlog ahead of anything recorded since."""
        with self._lock:
            merged = [*rows, *self._backlog]
            over = max(0, len(merged) - self._backlog_max)
            self._dropped += over
            self._backlog = deque(merged[over:])
            first = not self._failing
            self._failing = True
        if first:
            log.warning(
                "audit log: cannot write to the database (%s); keeping up to %d entries in "
                "memory until it is back (lost if the server stops before then)",
                exc,
                self._backlog_max,
            )
        elif over:
            log.warning("audit log: backlog full; %d oldest entries dropped", over)

    def list(
        self,
        project_crn: str | None = None,
        actor: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        action: str | None = None,
        limit: int = 1000,
        before_seq: int | None = None,
    ) -> list[AuditEntry]:
        """Entries newest first, filtered: in ``project_crn``, by ``actor``, at or after
        ``since_ms`` and before ``until_ms``, with ``action`` (exactly, or every action under
        it: ``models`` matches ``models.deploy``), older than ``before_seq`` (the next page:
        the last ``seq`` of the previous one); at most ``limit`` (1 to 10,000)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(
                f"limit={limit!r} is not accepted; expected an integer from 1 to {MAX_LIMIT}",
                argument="limit",
            )
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("project_crn", project_crn), ("actor", actor)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(clean(value))
        if action is not None:
            action = clean(action)
            escaped = action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("(action = ? OR action LIKE ? ESCAPE '\\')")
            params += [action, escaped + ".%"]
        bounds = (
            ("at_ms >= ?", "since_ms", since_ms),
            ("at_ms < ?", "until_ms", until_ms),
            ("seq < ?", "before_seq", before_seq),
        )
        for clause, argument, bound in bounds:
            if _positive(argument, bound, "an integer >= 0") is not None:
                where.append(clause)
                params.append(bound)
        text = f"SELECT {_COLUMNS} FROM audit_log"
        if where:
            text += " WHERE " + " AND ".join(where)
        text += " ORDER BY seq DESC LIMIT ?"
        with self._db.read() as cur:
            rows = self._db.exec(cur, text, [*params, limit]).fetchall()
        return [_entry(row) for row in rows]

    def prune(self, before_ms: int) -> int:
        """Delete the entries recorded before ``before_ms``; returns how many went."""
        if before_ms is None:
            raise InvalidInput(
                "before_ms=None is not accepted; expected epoch milliseconds (an integer >= 0)",
                argument="before_ms",
            )
        cutoff = _positive("before_ms", before_ms, "epoch milliseconds (an integer >= 0)")
        return int(
            self._db.write(
                lambda cur: (
                    self._db.exec(cur, "DELETE FROM audit_log WHERE at_ms < ?", (cutoff,)).rowcount
                )
            )
        )
