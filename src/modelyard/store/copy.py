"""Copy a whole Modelyard database to another: SQLite to PostgreSQL, and back.

So that a team that started on the embedded SQLite store is not stuck there: every table the
migrations create (prediction records, delayed values, aggregates, rollup buckets, the uuid
index, and the registry: models, builds, deployments, keys, jobs, runs, monitor references,
results, state and alerts) goes across as it is. Keys stay hashed: hashes are copied, never
tokens, so every key and access key keeps working on the target.

How, and why so:

- **Same schema on both sides.** The target is opened as a store first, which creates or
  migrates its tables; a source at another schema version is refused, naming both versions (the
  source is never migrated by copying it: it is opened read-only).
- **Tables from the catalogue.** What to copy is read from the source database itself, so the
  tables of a future migration are copied without changing this module. ``schema_migrations``
  is not copied: each database keeps its own history.
- **Primary-key order, in batches, resumable.** Each table is read in key order from one
  snapshot of the source and written in batches (``COPY`` into PostgreSQL, ``executemany`` into
  SQLite); each batch is committed in one transaction with the progress marker
  (``modelyard_copy_progress`` in the target: the source's identity, the last key copied, the
  rows so far). A copy interrupted anywhere, even by SIGKILL, run again continues after the last
  committed key: nothing duplicated, nothing lost. Parent tables go first (foreign keys); a
  table whose rows reference the same table (``jobs.after_id``) goes in one transaction,
  parents first.
- **An empty target, or the same unfinished copy.** A target holding rows is refused, naming the
  tables, unless its marker says it is an unfinished copy of this very source (told apart by the
  moment the source's schema was created, so a moved file still resumes).
- **Checked.** At the end each table is counted on both sides (the source's count from the
  snapshot it was read from); PostgreSQL's identity sequences are set past the copied ids; the
  marker is dropped only when every count matches, otherwise ``CountMismatch`` says which.
- **Not while a server writes the source.** A copy is of a store nobody is writing: it refuses a
  home whose ``server.json`` names a live server (the CLI's and SDK's other writers cannot be
  detected; docs/postgresql.md says to stop them).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

from modelyard import settings
from modelyard.clock import now_ms
from modelyard.errors import Conflict, InvalidInput, StoreUnavailable
from modelyard.store.copysql import MARKER, MIGRATIONS, PostgresSide, Side, SQLiteSide
from modelyard.store.schema import SCHEMA_VERSION, check_version

__all__ = [
    "CopyReport",
    "CountMismatch",
    "Location",
    "TableCount",
    "copy_store",
    "locate",
    "running_server",
]

Progress = Callable[[str, int, int], None]  # (table, rows copied so far, rows in the source)

_SERVER_FILE = "server.json"  # written by ``modelyard server`` in its home (server.app)
_DB_FILE = "modelyard.db"
_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_BATCH_BYTES = 64 * 1024 * 1024  # a batch is committed early once its text and blobs reach this
_ACCEPTED = (
    "a URL (sqlite:////absolute/path.db, postgresql://user@host:5432/db) or a home folder "
    f"(its {_DB_FILE})"
)


@dataclass(frozen=True)
class Location:
    """One side of a copy: ``kind`` ``sqlite`` (``path``) or ``postgres`` (``url``); ``shown``
    has no password; ``homes`` are the home folders whose server would use this database."""

    kind: str
    path: Path | None
    url: str | None
    shown: str
    homes: tuple[Path, ...]


@dataclass(frozen=True)
class TableCount:
    table: str
    source: int
    target: int
    copied: int  # rows this run copied (a resumed copy copied the rest earlier)

    @property
    def ok(self) -> bool:
        return self.source == self.target


@dataclass(frozen=True)
class CopyReport:
    source: str
    target: str
    schema_version: int
    resumed: bool
    tables: tuple[TableCount, ...]
    rows_copied: int
    seconds: float
    sequences: tuple[str, ...]  # PostgreSQL identity columns advanced past the copied ids

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["rows_per_s"] = round(self.rows_copied / self.seconds) if self.seconds > 0 else None
        for row, table in zip(data["tables"], self.tables, strict=True):
            row["ok"] = table.ok
        return data


class CountMismatch(Conflict):
    """The copy finished but some table's counts differ; ``report`` has every count."""

    def __init__(self, message: str, report: CopyReport) -> None:
        super().__init__(message, tables=[t.table for t in report.tables if not t.ok])
        self.report = report


# -- where ------------------------------------------------------------------------------------
def _default_store() -> str:
    configured = settings.get("database_url")
    return str(configured) if configured else str(settings.home() / _DB_FILE)


def locate(text: str | None, *, role: str = "source") -> Location:
    """The database ``text`` names for ``role`` (``source`` or ``target``); None is the store
    this process would use (MODELYARD_DATABASE_URL, else the SQLite in MODELYARD_HOME)."""
    given = _default_store() if text is None else text.strip()
    if not given:
        raise InvalidInput(f"--{_flag(role)} {text!r} is empty; give {_ACCEPTED}")
    default = _default_store()
    if given.startswith(("postgresql://", "postgres://")):
        from modelyard.store.postgres import _redact

        homes = (settings.home(),) if given == default else ()
        return Location("postgres", None, given, _redact(given), homes)
    if given.startswith("sqlite://"):
        rest = given[len("sqlite://") :]
        if rest in (":memory:", "/:memory:"):
            raise InvalidInput(
                f"--{_flag(role)} {given!r} is an in-memory database, which no other process "
                f"can read or keep; give {_ACCEPTED}"
            )
        if not rest.startswith("/") or len(rest) < 2:
            raise InvalidInput(f"--{_flag(role)} {given!r} is not a SQLite URL; give {_ACCEPTED}")
        return _sqlite(Path(rest[1:]), role)
    if "://" in given:
        raise InvalidInput(f"--{_flag(role)} {given!r} is not supported; give {_ACCEPTED}")
    path = Path(given).expanduser().resolve()
    if path.is_dir() or (not path.exists() and path.suffix not in _DB_SUFFIXES):
        return _sqlite(path / _DB_FILE, role, home=path)
    return _sqlite(path, role)


def _sqlite(path: Path, role: str, home: Path | None = None) -> Location:
    path = path.expanduser().resolve()
    homes = {home or path.parent} if path.name == _DB_FILE or home else set()
    if str(path) == str(Path(_default_store()).expanduser().resolve()):
        homes.add(settings.home().expanduser().resolve())
    if role == "source" and not path.is_file():
        where = f"home folder {home} holds no {_DB_FILE}" if home else f"{path} does not exist"
        raise InvalidInput(f"--from {str(home or path)!r}: {where}; give {_ACCEPTED}")
    return Location("sqlite", path, None, str(path), tuple(sorted(homes)))


def _flag(role: str) -> str:
    return "from" if role == "source" else "to"


def running_server(home: Path) -> tuple[int, str] | None:
    """(pid, url) of a live server using ``home``, from its ``server.json``; None if none."""
    try:
        found = json.loads((home / _SERVER_FILE).read_text())
        pid, url = int(found["pid"]), str(found.get("url", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # left behind by a server that did not shut down cleanly
    except PermissionError:
        pass  # alive, another user's
    return pid, url


def _refuse_running_servers(where: Location, role: str) -> None:
    for home in where.homes:
        found = running_server(home)
        if found is not None:
            pid, url = found
            if role == "source":
                what = "the copy would miss what the server writes meanwhile"
            else:
                what = "the server would write into the copy"
            raise Conflict(
                f"a Modelyard server (pid {pid}, {url or 'no url'}) is running on home {home}, "
                f"whose store is the copy's {role} {where.shown}: {what}; stop it (Ctrl-C in "
                f"its terminal, or kill {pid}) and copy again",
                home=str(home),
                pid=pid,
            )


# -- the copy ----------------------------------------------------------------------------------
def copy_store(
    source: str | None,
    target: str,
    *,
    batch_size: int = 10_000,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy every table of store ``source`` into ``target`` (each a URL or a home folder, see
    ``locate``); see the module doc. Run it again after an interruption to continue."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput(f"batch_size={batch_size!r} must be a positive number of rows")
    started = time.perf_counter()
    src_at, dst_at = locate(source, role="source"), locate(target, role="target")
    if (src_at.path or src_at.url) == (dst_at.path or dst_at.url):
        raise InvalidInput(f"--from and --to both name {src_at.shown}; copy into another database")
    _refuse_running_servers(src_at, "source")
    _refuse_running_servers(dst_at, "target")
    src = _open(src_at, source=True)
    try:
        version, release, born = src.version()
        if born is None:
            raise InvalidInput(
                f"{src_at.shown} holds no Modelyard store (no {MIGRATIONS} table); give the "
                "database a Modelyard server or SDK wrote"
            )
        check_version(version, release, src_at.shown)  # newer than this code: upgrade first
        if version != SCHEMA_VERSION:
            raise Conflict(
                f"the source {src_at.shown} has schema version {version} and a copy is written "
                f"at version {SCHEMA_VERSION} (this Modelyard's); bring the source to "
                f"{SCHEMA_VERSION} first by opening it once with this Modelyard, e.g. "
                f"'modelyard store info --database-url {_as_url(src_at)}', then copy again",
                source_version=version,
                target_version=SCHEMA_VERSION,
            )
        _refuse_foreign_target(dst_at)
        _migrate(dst_at)
        dst = _open(dst_at, source=False)
        finished = False
        try:
            dst.lock()
            report = _copy(src, dst, version, born, batch_size, progress, started)
            finished = True
            return report
        finally:
            dst.close(finished=finished)
    finally:
        src.close()


def _as_url(where: Location) -> str:
    return where.shown if where.kind == "postgres" else f"sqlite:///{where.path}"


def _open(where: Location, *, source: bool) -> Side:
    if where.kind == "postgres":
        assert where.url is not None
        return PostgresSide(where.url, where.shown, source=source)
    assert where.path is not None
    return SQLiteSide(where.path, source=source)


def _refuse_foreign_target(where: Location) -> None:
    """Refuse a target holding tables but no Modelyard schema, before migrating adds ours."""
    if where.kind == "sqlite" and not (where.path and where.path.exists()):
        return
    side = _open(where, source=False)
    try:
        tables = sorted(set(side.tables()) - {MARKER})
    finally:
        side.close()
    if tables and MIGRATIONS not in tables:
        raise Conflict(
            f"the target {where.shown} holds tables that are not a Modelyard store's "
            f"({', '.join(tables[:5])}{', ...' if len(tables) > 5 else ''}); copy into an empty "
            "database, schema or file",
            tables=tables,
        )


def _migrate(where: Location) -> None:
    """Create or upgrade the target's tables by opening it as a store."""
    if where.kind == "postgres":
        from modelyard.store.postgres import PostgresStore

        assert where.url is not None
        PostgresStore(where.url).close()
        return
    from modelyard.store.sqlite import SQLiteStore

    assert where.path is not None
    SQLiteStore(where.path).close()  # a new folder 0700, the file 0600, as every home's


def _copy(
    src: Side,
    dst: Side,
    version: int,
    born: int,
    batch_size: int,
    progress: Progress | None,
    started: float,
) -> CopyReport:
    dst_version = dst.version()[0]
    if dst_version != version:
        raise Conflict(
            f"the target {dst.location} has schema version {dst_version} and the source "
            f"{src.location} version {version}; copy between stores of one version",
            source_version=version,
            target_version=dst_version,
        )
    src_tables = set(src.tables()) - {MIGRATIONS}
    if MARKER in src_tables:
        raise Conflict(
            f"the source {src.location} is itself an unfinished copy ({MARKER} is there); run "
            "that copy again to finish it, then copy the finished store"
        )
    dst_tables = set(dst.tables()) - {MIGRATIONS, MARKER}
    _same_schema(src, dst, src_tables, dst_tables)
    tables = _parents_first_tables(src, sorted(src_tables))
    source_id = f"{src.dialect} store created at {born} ms"
    marker = dst.marker()
    resumed = bool(marker)
    if resumed:
        _check_resume(src, dst, marker, source_id, tables)
    else:
        busy = [t for t in tables if dst.has_rows(t)]
        if busy:
            counts = ", ".join(f"{t} ({_rows(dst.count(t))})" for t in busy)
            raise Conflict(
                f"the target {dst.location} is not empty: {counts}; copy into an empty "
                "database (a new PostgreSQL database or schema, or a new SQLite file) before any "
                "server has started on it. A copy that finished leaves nothing to resume: if "
                "this target is one, it is complete",
                tables=busy,
            )
        dst.start_marker(source_id, src.location, tables, now_ms())
        marker = dst.marker()
    totals = {t: src.count(t) for t in tables}  # from the snapshot the rows are read from
    copied = {}
    for table in tables:
        copied[table] = _copy_table(
            src, dst, table, marker[table], totals[table], batch_size, progress
        )
    sequences = tuple(dst.advance_sequences(tables))
    table_counts = tuple(TableCount(t, totals[t], dst.count(t), copied[t]) for t in sorted(tables))
    report = CopyReport(
        source=src.location,
        target=dst.location,
        schema_version=version,
        resumed=resumed,
        tables=table_counts,
        rows_copied=sum(copied.values()),
        seconds=time.perf_counter() - started,
        sequences=sequences,
    )
    if not report.ok:
        wrong = ", ".join(f"{t.table} {t.source} -> {t.target}" for t in table_counts if not t.ok)
        raise CountMismatch(
            f"copied {src.location} to {dst.location} but the counts differ: {wrong}; was "
            "something writing to either database? Stop every writer, empty the target and "
            "copy again",
            report,
        )
    dst.drop_marker()
    return report


def _same_schema(src: Side, dst: Side, src_tables: set[str], dst_tables: set[str]) -> None:
    if src_tables != dst_tables:
        raise Conflict(
            f"the source {src.location} and the target {dst.location} have different tables at "
            f"the same schema version (only in the source: {sorted(src_tables - dst_tables)}, "
            f"only in the target: {sorted(dst_tables - src_tables)}); was either changed by "
            "hand? Copy into a database created by Modelyard",
        )
    for table in sorted(src_tables):
        a, b = set(src.columns(table)), set(dst.columns(table))
        if a != b:
            raise Conflict(
                f"table {table!r} has columns {sorted(a - b)} only in the source and "
                f"{sorted(b - a)} only in the target; copy into a database created by Modelyard",
                table=table,
            )


def _check_resume(
    src: Side, dst: Side, marker: dict[str, dict[str, Any]], source_id: str, tables: list[str]
) -> None:
    first = next(iter(marker.values()))
    if first["source_id"] != source_id:
        raise Conflict(
            f"the target {dst.location} holds an unfinished copy of another store "
            f"({first['source']}, {first['source_id']}), not of {src.location} "
            f"({source_id}); finish that copy with the same --from, or copy into an empty "
            "database",
            target=dst.location,
        )
    if sorted(marker) != sorted(tables):
        raise Conflict(
            f"the unfinished copy in {dst.location} lists tables {sorted(marker)}, the source "
            f"has {sorted(tables)}; empty the target and copy again"
        )


def _parents_first_tables(src: Side, tables: list[str]) -> list[str]:
    """``tables`` ordered so a table comes after the tables its foreign keys name."""
    needs = {
        t: {parent for _, parent, _ in src.references(t) if parent != t and parent in tables}
        for t in tables
    }
    ordered: list[str] = []
    while needs:
        ready = sorted(t for t, parents in needs.items() if not parents - set(ordered))
        if not ready:  # a cycle between tables: none in Modelyard's schema
            ready = sorted(needs)
        ordered += ready
        for t in ready:
            del needs[t]
    return ordered


def _copy_table(
    src: Side,
    dst: Side,
    table: str,
    state: dict[str, Any],
    total: int,
    batch_size: int,
    progress: Progress | None,
) -> int:
    """Copy what of ``table`` is not in the target yet; the number of rows this call copied."""
    if state["done"]:
        if progress is not None:
            progress(table, state["copied"], total)
        return 0
    columns = src.columns(table)
    key = src.primary_key(table)
    own = [c for c, t, _ in src.references(table) if t == table]
    try:
        if not key or own:
            return _copy_whole(src, dst, table, columns, key, total, progress)

        def report(copied: int) -> None:
            if progress is not None:
                progress(table, copied, total)

        return _copy_batches(src, dst, table, columns, key, state, batch_size, report)
    except (sqlite3.Error, _psycopg_error()) as exc:
        if isinstance(exc, sqlite3.IntegrityError | _psycopg_error("IntegrityError")):
            then = (
                "the target holds rows this copy did not write, or breaks a constraint the "
                "source kept: was something writing to it? Empty the target and copy again"
            )
        else:
            then = "what was committed stays: run the same copy again to continue after it"
        raise StoreUnavailable(
            f"copying table {table!r} from {src.location} to {dst.location} failed "
            f"({exc.__class__.__name__}: {str(exc).strip()}); {then}",
            table=table,
        ) from exc


def _copy_batches(
    src: Side,
    dst: Side,
    table: str,
    columns: list[str],
    key: list[str],
    state: dict[str, Any],
    batch_size: int,
    report: Callable[[int], None],
) -> int:
    """Copy ``table`` in batches after ``state``'s last key, each committed with its mark;
    ``report`` hears the rows copied so far after each. The number of rows this call copied."""
    at_key = itemgetter(*(columns.index(k) for k in key))
    single = len(key) == 1
    copied = int(state["copied"])
    pending: list[tuple[Any, ...]] = []
    size, sized, this_run = 0, None, 0

    def commit(done: bool) -> None:
        nonlocal copied, pending, size, this_run
        if not pending and done:  # nothing left: a run again re-reads nothing after last_key
            report(copied)
            return
        last_key = state["last_key"]
        if pending:
            last = at_key(pending[-1])
            last_key = [last] if single else list(last)
            state["last_key"] = last_key
        copied += len(pending)
        this_run += len(pending)
        mark = {"last_key": last_key, "copied": copied, "done": done, "updated_ms": now_ms()}
        dst.write(table, columns, pending, mark)
        pending, size = [], 0
        report(copied)

    for chunk in src.rows(table, columns, key, state["last_key"], min(batch_size, 2000)):
        if sized is None:  # the columns holding text or bytes, whose size bounds a batch
            sized = [i for i, v in enumerate(chunk[0]) if isinstance(v, str | bytes | memoryview)]
        pending += chunk
        size += sum(sum(map(len, filter(None, map(itemgetter(i), chunk)))) for i in sized)
        if len(pending) >= batch_size or size >= _BATCH_BYTES:
            commit(done=False)
    commit(done=True)
    return this_run


def _copy_whole(
    src: Side,
    dst: Side,
    table: str,
    columns: list[str],
    key: list[str],
    total: int,
    progress: Progress | None,
) -> int:
    """A table without a key, or whose rows reference each other (``jobs.after_id``), in one
    transaction. In batches, a row could arrive before the row it references; in one ``COPY``
    statement PostgreSQL checks foreign keys at the statement's end, so any order is fine (SQLite
    does not enforce them)."""
    rows = [row for chunk in src.rows(table, columns, key, None, 5000) for row in chunk]
    mark = {"last_key": None, "copied": len(rows), "done": True, "updated_ms": now_ms()}
    dst.write(table, columns, rows, mark)
    if progress is not None:
        progress(table, len(rows), total)
    return len(rows)


def _psycopg_error(name: str = "Error") -> type[Exception]:
    """psycopg's ``Error`` (or another of its classes), imported only when used."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return sqlite3.Error
    found: type[Exception] = getattr(psycopg, name)
    return found


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"
