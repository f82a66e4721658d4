"""The prediction journal: an answered prediction's record is on disk before its answer leaves.

The server's ``BufferedWriter`` batches records into the store a moment after the gateway answers.
Without a journal, a crash of the server process in that moment loses records whose answers were
already sent. With one, ``BufferedWriter.submit`` first appends the record to the journal, an
append-only file, before it returns; the gateway answers only after that. The append is a copy
into the file's shared memory mapping (no system call, about a microsecond, and the event loop
keeps the GIL), which puts the record in the operating system's page cache.

What survives what:

- a crash of any Modelyard process (SIGKILL, ``os._exit``, an out-of-memory kill): nothing is
  lost. A written record sits in the operating system's page cache, which the kernel writes out
  whether or not the process lives on;
- a crash of the machine (power cut, kernel panic): at most the last ``fsync_interval_ms`` of
  answered records (setting ``MODELYARD_JOURNAL_FSYNC_INTERVAL``, 20 ms by default). A thread
  fsyncs the journal on that interval, grouping every record written since the last one into
  one fsync. ``fsync_interval_ms=0`` fsyncs inside every append instead (nothing lost, slower).

Layout: ``<folder>/<sequence>.journal`` segment files (``segment_bytes`` each, written whole with
zeros before use, so a full disk is a refused segment, never a lost page; the fsync thread makes
the next one ahead, ``<folder>/spare``) of one JSON line per record, zero after the last;
``<folder>/committed`` names how far the store has committed (a hint that saves replay work);
``<folder>/lock`` keeps a second process out. The writer reports after each batch how many
records are committed (``committed``); segments whose records all are get deleted.

At start, ``replay_into(store)`` writes what an earlier life left uncommitted into the store,
then deletes those segments. A record the store already has (committed just before the crash) is
skipped by its uuid: a replay never duplicates a record and is never an error.

Full: a record that needs a new segment past ``max_bytes`` of segment files (setting
``MODELYARD_JOURNAL_MAX_BYTES``), or a disk that refuses one (ENOSPC, a quota), is refused with
``JournalFull`` (HTTP 507) naming the folder, the size and the setting; the gateway answers that
instead of the prediction. The journal fills only while the store does not take records.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson

from modelyard import settings
from modelyard.errors import Conflict, InvalidInput, ModelyardError, StoreUnavailable, Unavailable
from modelyard.store.base import Identity, Prediction

__all__ = ["Journal", "JournalFull", "PredictionStore"]

log = logging.getLogger("modelyard.journal")

_SUFFIX = ".journal"
_MARK = "committed"
_SPARE = "spare"  # the next segment's file, made ahead by the fsync thread
_MARK_LEN = 34  # "<seq:016d> <offset:016d>\n"
_REPLAY_BATCH = 10_000
_JSON = orjson.OPT_SERIALIZE_NUMPY


class JournalFull(StoreUnavailable):
    """The journal may not grow (its size limit, or the disk refused the write): the prediction
    is refused rather than answered without its record. HTTP 507 Insufficient Storage."""

    status = 507


class PredictionStore(Protocol):
    """What ``replay_into`` writes to: a ``MetricsStore`` (raises ``Conflict`` naming ``uuids``)."""

    def write_predictions(self, predictions: Sequence[Prediction]) -> None: ...


@dataclass(slots=True)
class _Segment:
    """One segment file, allocated at its full ``capacity`` up front and mapped into memory."""

    seq: int
    path: Path
    fd: int
    mm: mmap.mmap
    capacity: int
    start: int  # this life's byte count (over all segments) at the segment's first byte
    size: int = 0  # bytes of records written


def _positive_int(name: str, value: object, zero: bool = False) -> int:
    ok = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (value >= 0 if zero else value > 0)
    )
    if not ok:
        accepted = "0 or a positive" if zero else "a positive"
        raise InvalidInput(f"{name}={value!r} must be {accepted} integer")
    assert isinstance(value, int)
    return value


def encode(prediction: Prediction) -> bytes:
    """One record as its journal line."""
    i = prediction.identity
    try:
        line = orjson.dumps(
            (
                prediction.uuid,
                i.model_crn,
                i.build_crn,
                i.deployment_crn,
                prediction.start_ms,
                prediction.end_ms,
                prediction.metrics,
            ),
            option=_JSON,
        )
    except TypeError as exc:
        raise InvalidInput(
            f"prediction {prediction.uuid!r} has metrics that are not JSON ({exc}); "
            "metrics take numbers, strings, booleans, null, lists and objects"
        ) from exc
    return line + b"\n"


def decode(line: bytes) -> Prediction:
    """A journal line back as the record it was."""
    uuid, model, build, deployment, start, end, metrics = orjson.loads(line)
    return Prediction(uuid, Identity(model, build, deployment), start, end, metrics)


class Journal:
    """An append-only journal of prediction records in ``folder`` (created 0700).

    ``fsync_interval_ms`` (default: setting ``journal_fsync_interval``) and ``max_bytes``
    (default: setting ``journal_max_bytes``) as the module docstring says; ``segment_bytes``
    (default: an eighth of ``max_bytes``, at most 4 MiB) is the size of each segment file.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        fsync_interval_ms: int | None = None,
        max_bytes: int | None = None,
        segment_bytes: int | None = None,
    ) -> None:
        if fsync_interval_ms is None:
            fsync_interval_ms = settings.get("journal_fsync_interval")
        if max_bytes is None:
            max_bytes = settings.get("journal_max_bytes")
        self.fsync_interval_ms = _positive_int("fsync_interval_ms", fsync_interval_ms, zero=True)
        self.max_bytes = _positive_int("max_bytes", max_bytes)
        if segment_bytes is None:
            segment_bytes = max(1, min(4 * 1024 * 1024, self.max_bytes // 8))
        self.segment_bytes = _positive_int("segment_bytes", segment_bytes)
        if self.segment_bytes > self.max_bytes:
            raise InvalidInput(
                f"segment_bytes={segment_bytes} is larger than max_bytes={max_bytes}; "
                "a segment must fit in the journal"
            )
        self.folder = Path(folder)
        self._lock = threading.Lock()  # appends, rotation, commit marks
        self._sync_lock = threading.Lock()  # one fsync pass at a time
        self._lock_fd = self._take_folder()
        try:
            self._old = sorted(self.folder.glob("*" + _SUFFIX), key=_seq_of)
            self._old_bytes = sum(p.stat().st_size for p in self._old)
            self._mark_fd = os.open(
                self.folder / _MARK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
            self._mark = _read_mark(self._mark_fd)
            first = max([_seq_of(p) for p in self._old] + [self._mark[0] if self._mark else 0])
            self._segments: deque[_Segment] = deque()
            self._total = 0  # bytes appended in this life
            self._allocated = 0  # bytes of this life's segment files
            self._ends: deque[int] = deque()  # _total after each record not yet committed
            self._committed_bytes = 0
            self._committed = 0  # records of this life the store has (or refused for good)
            self._retired: list[_Segment] = []  # rotated segments, to fsync and close
            self._spare: tuple[int, int] | None = None  # (descriptor, capacity) of _SPARE
            (self.folder / _SPARE).unlink(missing_ok=True)
            self._synced = 0
            self._dir_dirty = False
            self._closed = False
            self._open_segment(first + 1, self.segment_bytes)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.fsync_interval_ms > 0:
            self._thread = threading.Thread(
                target=self._sync_loop, name="modelyard-journal-fsync", daemon=True
            )
            self._thread.start()

    # -- sizes ----------------------------------------------------------------------------------
    @property
    def pending_bytes(self) -> int:
        """Bytes of records the store has not committed yet (an earlier life's included)."""
        with self._lock:
            return self._old_bytes + self._total - self._committed_bytes

    @property
    def size_bytes(self) -> int:
        """Bytes of the journal's segment files on disk: what ``max_bytes`` limits."""
        with self._lock:
            return self._disk_bytes()

    def _disk_bytes(self) -> int:
        return self._old_bytes + self._allocated + (self._spare[1] if self._spare else 0)

    # -- the predict path -----------------------------------------------------------------------
    def append(self, prediction: Prediction) -> None:
        """Write one record to the journal (durable against a process crash on return)."""
        line = encode(prediction)
        self._append(line, (len(line),))

    def append_many(self, predictions: Iterable[Prediction]) -> None:
        """Write several records with one write: all of them, or (raising) none."""
        lines = [encode(p) for p in predictions]
        if lines:
            self._append(b"".join(lines), [len(line) for line in lines])

    def _append(self, data: bytes, sizes: Iterable[int]) -> None:
        with self._lock:
            if self._closed:
                raise StoreUnavailable(
                    f"the journal in {self.folder} is closed; open a new Journal to append"
                )
            segment = self._segments[-1]
            end = segment.size + len(data)
            if end > segment.capacity:
                segment = self._rotate(len(data))
                end = len(data)
            # A copy into the shared mapping: in the page cache at once (a SIGKILL cannot undo
            # it), and no system call, so the event loop keeps the GIL (os.write would hand it
            # to the writer thread for milliseconds).
            segment.mm[segment.size : end] = data
            total = self._total
            for n in sizes:
                total += n
                self._ends.append(total)
            self._total = total
            segment.size += len(data)
            if self.fsync_interval_ms == 0:
                os.fsync(segment.fd)
                self._synced = total

    def _full(self, why: str) -> JournalFull:
        return JournalFull(
            f"the prediction journal in {self.folder} is full: {why}, so the prediction was "
            "refused rather than answered without its record. It fills while the store does not "
            "take records (is the database down?); records are written and the journal shrinks "
            "once it does. Raise MODELYARD_JOURNAL_MAX_BYTES (now "
            f"{self.max_bytes}) or free disk space",
            folder=str(self.folder),
            size_bytes=self._disk_bytes(),
            max_bytes=self.max_bytes,
            setting="MODELYARD_JOURNAL_MAX_BYTES",
        )

    # -- segments -------------------------------------------------------------------------------
    def _open_segment(self, seq: int, capacity: int) -> _Segment:
        """Segment ``seq``: the spare the fsync thread prepared when it is large enough (a
        rename), else a new file made here."""
        path = self.folder / f"{seq:016d}{_SUFFIX}"
        spare, self._spare = self._spare, None
        if spare is not None and spare[1] >= capacity:
            fd, capacity = spare
            os.rename(self.folder / _SPARE, path)
        else:
            if spare is not None:
                os.close(spare[0])
            fd = self._make_file(path, capacity)
        try:
            mm = mmap.mmap(fd, capacity)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise self._failed(path, exc) from exc
        segment = _Segment(seq, path, fd, mm, capacity, self._total)
        self._segments.append(segment)
        self._allocated += capacity
        self._dir_dirty = True
        return segment

    def _make_file(self, path: Path, capacity: int) -> int:
        """A file of ``capacity`` zero bytes, written (not a sparse or fallocated one: its pages
        are then cheap to fault in through the mapping); a full disk refuses it here, as
        ``JournalFull``, never later as a page the kernel cannot write."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            zeros = bytes(min(capacity, 1 << 20))
            for offset in range(0, capacity, len(zeros)):
                chunk = zeros[: capacity - offset]
                if os.pwrite(fd, chunk, offset) != len(chunk):
                    raise OSError(errno.ENOSPC, "short write")
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise self._full(
                    f"the disk refused {capacity} more bytes ({exc.strerror})"
                ) from exc
            raise self._failed(path, exc) from exc
        return fd

    def _failed(self, path: Path, exc: OSError) -> StoreUnavailable:
        return StoreUnavailable(
            f"cannot make the journal segment {path} ({exc}); the prediction was not answered. "
            "Check the disk holding the server's home",
            path=str(path),
        )

    def _prepare_spare(self) -> None:
        """On the fsync thread: make the next segment's file ahead of need (written and fsynced
        off the request path), when the size limit leaves room for it."""
        with self._lock:
            if self._spare is not None or self._closed:
                return
            if self._disk_bytes() + self.segment_bytes > self.max_bytes:
                return
        try:
            fd = self._make_file(self.folder / _SPARE, self.segment_bytes)
            os.fsync(fd)
        except StoreUnavailable:  # no room: the request path will say so when it needs one
            return
        if not self._adopt_spare(fd):
            os.close(fd)

    def _adopt_spare(self, fd: int) -> bool:
        with self._lock:
            if self._spare is not None or self._closed:
                return False
            self._spare = (fd, self.segment_bytes)
            return True

    def _rotate(self, need: int) -> _Segment:
        capacity = max(self.segment_bytes, need)
        size = self._disk_bytes() - (self._spare[1] if self._spare else 0)  # a spare is reused
        if size + capacity > self.max_bytes:
            raise self._full(f"it holds {size} bytes of {self.max_bytes} allowed")
        old = self._segments[-1]
        segment = self._open_segment(old.seq + 1, capacity)
        if self.fsync_interval_ms == 0:
            _close_segment(old)  # fsynced with its last append
            _fsync_dir(self.folder)
            self._dir_dirty = False
        else:
            self._retired.append(old)
        return segment

    # -- the store's side -----------------------------------------------------------------------
    def committed(self, count: int) -> None:
        """The first ``count`` records appended in this life are in the store (or were refused by
        it for good): they need no replay. Fully committed segments are deleted."""
        doomed: list[Path] = []
        with self._lock:
            if count <= self._committed or self._closed:
                return
            ends = self._ends
            end = self._committed_bytes
            for _ in range(min(count - self._committed, len(ends))):
                end = ends.popleft()
            self._committed = count
            self._committed_bytes = end
            segments = self._segments
            while len(segments) > 1 and segments[0].start + segments[0].size <= end:
                gone = segments.popleft()  # its file stays open until sync() closes it
                self._allocated -= gone.capacity
                doomed.append(gone.path)
            if not self._old:  # an earlier life's records still to replay come before the mark
                segment = segments[0]
                self._write_mark(segment.seq, end - segment.start)
        for path in doomed:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _write_mark(self, seq: int, offset: int) -> None:
        with contextlib.suppress(OSError):  # a hint only: replay checks uuids anyway
            os.pwrite(self._mark_fd, f"{seq:016d} {offset:016d}\n".encode(), 0)

    # -- fsync ----------------------------------------------------------------------------------
    def sync(self) -> None:
        """fsync what was written so far (the background thread does this every interval)."""
        with self._sync_lock:
            with self._lock:
                if self._closed:
                    return
                target = self._total
                fds = [self._segments[-1].fd] if target != self._synced else []
                retired, self._retired = self._retired, []
                dir_dirty, self._dir_dirty = self._dir_dirty, False
            for segment in retired:
                os.fsync(segment.fd)  # fsync writes the mapping's dirty pages too
                _close_segment(segment)
            for fd in fds:
                os.fsync(fd)
            if dir_dirty:
                _fsync_dir(self.folder)
            self._synced = max(self._synced, target)

    def _sync_loop(self) -> None:
        interval = self.fsync_interval_ms / 1000
        while not self._stop.wait(interval):
            try:
                self.sync()
                self._prepare_spare()
            except OSError:  # the next pass tries again; appends report their own errors
                log.exception("fsync of the journal in %s failed", self.folder)

    def close(self) -> None:
        """fsync, stop the fsync thread, close the files. Segments with uncommitted records stay
        for the next ``replay_into``; when everything is committed they are deleted."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        with contextlib.suppress(OSError):
            self.sync()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            everything = self._committed_bytes == self._total
            still_open = [self._segments[-1], *self._retired]  # sync() closed the other ones
            paths = [s.path for s in self._segments] if everything else []
            spare, self._spare = self._spare, None
        if spare is not None:
            os.close(spare[0])
        (self.folder / _SPARE).unlink(missing_ok=True)
        for segment in still_open:
            _close_segment(segment)
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        os.close(self._mark_fd)
        os.close(self._lock_fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- start ----------------------------------------------------------------------------------
    def replay_into(self, store: PredictionStore, batch_size: int = _REPLAY_BATCH) -> int:
        """Write what an earlier life left uncommitted into ``store``; returns how many records
        were written (records the store already had are skipped, not counted).

        Each replayed segment is deleted once its records are committed; on ``StoreUnavailable``
        the rest stays for the next call.
        """
        written = 0
        while self._old:
            path = self._old[0]
            seq = _seq_of(path)
            start = _replay_from(seq, self._mark)
            if start >= 0:
                for offset, records in _read_records(path, start, batch_size):
                    written += _replay_batch(store, records)
                    self._mark = (seq, offset)
                    self._write_mark(seq, offset)
            size = path.stat().st_size
            path.unlink()
            with self._lock:
                self._old.pop(0)
                self._old_bytes -= size
        if written:
            log.info("replayed %d prediction records from the journal in %s", written, self.folder)
        return written

    def _take_folder(self) -> int:
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot open the journal folder {self.folder} ({exc}); give the server a home "
                "it can write to",
                folder=str(self.folder),
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise StoreUnavailable(
                f"the journal in {self.folder} is in use by another process (another server on "
                "the same home?); one process at a time may use a journal folder",
                folder=str(self.folder),
            ) from exc
        return fd


def _seq_of(path: Path) -> int:
    return int(path.name[: -len(_SUFFIX)])


def _replay_from(seq: int, mark: tuple[int, int] | None) -> int:
    """Where replay of segment ``seq`` starts: 0, the mark's offset, or -1 (all committed)."""
    if mark is None or seq > mark[0]:
        return 0
    return mark[1] if seq == mark[0] else -1


def _read_mark(fd: int) -> tuple[int, int] | None:
    raw = os.pread(fd, _MARK_LEN, 0)
    try:
        seq, offset = raw.split()
        return int(seq), int(offset)
    except ValueError:  # empty (a fresh folder) or torn by a machine crash: replay checks all
        return None


def _close_segment(segment: _Segment) -> None:
    with contextlib.suppress(OSError, ValueError):
        segment.mm.close()
    with contextlib.suppress(OSError):
        os.close(segment.fd)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_records(
    path: Path, start: int, batch_size: int
) -> Iterator[tuple[int, list[Prediction]]]:
    """Batches of the records of one segment from byte ``start``, each with the offset after it.

    A last line without its newline (a machine crash in mid-write: its prediction was never
    answered) and lines that do not decode are skipped with a warning.
    """
    data = path.read_bytes()
    written = data.find(b"\0")  # segments are allocated whole: zeros after the last record
    if written >= 0:
        data = data[:written]
    offset = start
    batch: list[Prediction] = []
    while offset < len(data):
        end = data.find(b"\n", offset)
        if end < 0:
            log.warning("journal %s ends in a torn record at byte %d: skipped", path, offset)
            break
        try:
            batch.append(decode(data[offset:end]))
        except (orjson.JSONDecodeError, ValueError, TypeError):
            log.warning("journal %s has an unreadable record at byte %d: skipped", path, offset)
        offset = end + 1
        if len(batch) >= batch_size:
            yield offset, batch
            batch = []
    if batch:
        yield offset, batch


def _replay_batch(store: PredictionStore, records: list[Prediction]) -> int:
    """Write ``records``, skipping those already stored; returns how many were written."""
    if len({r.uuid for r in records}) != len(records):  # keep the first of each uuid
        first: dict[str, Prediction] = {}
        for r in records:
            first.setdefault(r.uuid, r)
        records = list(first.values())
    try:
        store.write_predictions(records)
        return len(records)
    except Conflict as exc:
        taken = set(exc.details.get("uuids") or ())
        rest = [r for r in records if r.uuid not in taken]
        if len(records) == 1:
            return 0  # already stored: committed just before the crash
        if taken and len(rest) < len(records):
            return _replay_batch(store, rest) if rest else 0
    except (StoreUnavailable, Unavailable):
        raise
    except ModelyardError as exc:
        if len(records) == 1:
            log.error(
                "the store refused journal record %s: %s; it is dropped", records[0].uuid, exc
            )
            return 0
    middle = len(records) // 2
    return _replay_batch(store, records[:middle]) + _replay_batch(store, records[middle:])
