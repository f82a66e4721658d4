"""A monitor's label imports: its ``labels:`` source's watermark and the record of each read.

``label_sources`` keeps one row per monitor: the watermark (JSON, opaque here: what the import
needs to read only what is new), advanced only after the delayed metrics it read are stored.
``label_imports`` keeps one row per read: rows read, matched, unmatched (with a sample of the
unmatched ids), duplicates, the watermarks before and after, or the error that stopped it.
``record`` writes both in one transaction, so a recorded import and its watermark agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from modelyard.errors import InvalidInput
from modelyard.registry._db import Clock, Cursor, Db

__all__ = ["KEEP_WATERMARK", "ImportRecord", "LabelImports"]

MAX_SAMPLE = 20  # unmatched ids kept per import
MAX_ERROR = 2000  # characters of an error kept
MAX_IMPORTS = 1000  # kept per monitor (the oldest go)
KEEP_WATERMARK: Any = (
    object()
)  # ``record(advance_to=KEEP_WATERMARK)``: the watermark stays where it is


@dataclass(frozen=True)
class ImportRecord:
    """One read of a monitor's ``labels:`` source (see the module docstring)."""

    monitor: str
    connection: str
    started_ms: int
    finished_ms: int
    rows_read: int = 0
    matched: int = 0
    unmatched: int = 0
    duplicates: int = 0
    unmatched_sample: tuple[str, ...] = ()
    watermark_before: Any = None
    watermark_after: Any = None
    error: str | None = None
    id: int | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def line(self) -> str:
        """What a monitor run prints: one line per import."""
        if self.error is not None:
            return f"labels from {self.connection!r} failed: {self.error}"
        sample = f" (e.g. {', '.join(self.unmatched_sample[:3])})" if self.unmatched_sample else ""
        return (
            f"labels from {self.connection!r}: {self.rows_read} rows read, {self.matched} "
            f"matched, {self.unmatched} unmatched{sample}, {self.duplicates} duplicates"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "monitor": self.monitor,
            "connection": self.connection,
            "started_ms": self.started_ms,
            "finished_ms": self.finished_ms,
            "rows_read": self.rows_read,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "duplicates": self.duplicates,
            "unmatched_sample": list(self.unmatched_sample),
            "watermark_before": self.watermark_before,
            "watermark_after": self.watermark_after,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportRecord:
        return cls(
            monitor=str(data["monitor"]),
            connection=str(data["connection"]),
            started_ms=int(data["started_ms"]),
            finished_ms=int(data["finished_ms"]),
            rows_read=int(data.get("rows_read", 0)),
            matched=int(data.get("matched", 0)),
            unmatched=int(data.get("unmatched", 0)),
            duplicates=int(data.get("duplicates", 0)),
            unmatched_sample=tuple(str(u) for u in data.get("unmatched_sample", ())),
            watermark_before=data.get("watermark_before"),
            watermark_after=data.get("watermark_after"),
            error=data.get("error"),
            id=data.get("id"),
        )


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


_SELECT = (
    "SELECT id, monitor, connection, started_ms, finished_ms, rows_read, matched, unmatched, "
    "duplicates, unmatched_sample, watermark_before, watermark_after, error FROM label_imports"
)


class LabelImports:
    """``registry.labels``: watermarks and import records of monitors' ``labels:`` sources."""

    def __init__(self, db: Db, clock: Clock) -> None:
        self._db = db
        self._now = clock

    def watermark(self, monitor: str) -> Any | None:
        """The monitor's watermark (None: nothing read yet)."""
        with self._db.read() as cur:
            row = self._db.exec(
                cur, "SELECT watermark FROM label_sources WHERE monitor = ?", (monitor,)
            ).fetchone()
        return None if row is None else _loads(row[0])

    def record(
        self, monitor: str, project_crn: str, record: ImportRecord, advance_to: Any = KEEP_WATERMARK
    ) -> ImportRecord:
        """Keep ``record`` and, unless ``advance_to`` is ``KEEP_WATERMARK``, set the watermark to
        it, in one transaction. Returns the record with its id."""
        for name, value in (("monitor", monitor), ("project_crn", project_crn)):
            if not isinstance(value, str) or not value or len(value) > 300:
                raise InvalidInput(f"{name}={value!r:.100} is not accepted; give a non-empty name")
        error = None if record.error is None else record.error[:MAX_ERROR]
        sample = orjson.dumps([str(u)[:200] for u in record.unmatched_sample[:MAX_SAMPLE]])
        now = self._now()

        def write(cur: Cursor) -> int:
            new_id = self._db.insert_id(
                cur,
                "INSERT INTO label_imports (monitor, connection, started_ms, finished_ms, "
                "rows_read, matched, unmatched, duplicates, unmatched_sample, watermark_before, "
                "watermark_after, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    monitor,
                    record.connection,
                    record.started_ms,
                    record.finished_ms,
                    record.rows_read,
                    record.matched,
                    record.unmatched,
                    record.duplicates,
                    sample.decode(),
                    _json(record.watermark_before),
                    _json(record.watermark_after),
                    error,
                ),
            )
            self._db.exec(
                cur,
                "DELETE FROM label_imports WHERE monitor = ? AND id <= ?",
                (monitor, new_id - MAX_IMPORTS),
            )
            if advance_to is not KEEP_WATERMARK:
                self._db.exec(cur, "DELETE FROM label_sources WHERE monitor = ?", (monitor,))
                self._db.exec(
                    cur,
                    "INSERT INTO label_sources (monitor, project_crn, connection, watermark, "
                    "updated_ms) VALUES (?, ?, ?, ?, ?)",
                    (monitor, project_crn, record.connection, _json(advance_to), now),
                )
            return new_id

        new_id = self._db.write(write)
        return ImportRecord(**{**record.__dict__, "id": new_id, "error": error})

    def imports(self, monitor: str, limit: int = 20) -> list[ImportRecord]:
        """The monitor's latest imports, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_IMPORTS:
            raise InvalidInput(f"limit={limit!r} is not accepted; give 1 to {MAX_IMPORTS}")
        with self._db.read() as cur:
            rows = self._db.exec(
                cur, f"{_SELECT} WHERE monitor = ? ORDER BY id DESC LIMIT ?", (monitor, limit)
            ).fetchall()
        return [
            ImportRecord(
                monitor=r[1],
                connection=r[2],
                started_ms=int(r[3]),
                finished_ms=int(r[4]),
                rows_read=int(r[5]),
                matched=int(r[6]),
                unmatched=int(r[7]),
                duplicates=int(r[8]),
                unmatched_sample=tuple(orjson.loads(r[9])),
                watermark_before=_loads(r[10]),
                watermark_after=_loads(r[11]),
                error=r[12],
                id=int(r[0]),
            )
            for r in rows
        ]

    def forget(self, monitor: str) -> None:
        """Drop the monitor's watermark (the next run reads its source from the start)."""
        self._db.write(
            lambda cur: self._db.exec(
                cur, "DELETE FROM label_sources WHERE monitor = ?", (monitor,)
            )
        )
