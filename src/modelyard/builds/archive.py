"""A snapshot as one content-addressed archive: packed where it was built, unpacked where a server
lacks it.

A snapshot folder (``snapshot.py``) is named by the digest of its content. ``pack_snapshot``
turns it into a stream of bytes in chunks, ready to be stored as rows (the
registry's ``snapshots`` table, in the database every server shares); ``unpack_snapshot`` turns
such a stream back into ``<dest_root>/<digest>/`` on another server, byte for byte, and accepts
it only if the content it wrote has the digest it was asked for.

The stream is the magic line, then one record per entry in path order (a
4-byte big-endian length, a JSON header, and for a file its bytes), then an end record::

    {"p": "predict.py", "k": "f", "x": false, "n": 120}   followed by 120 bytes
    {"p": "link.py", "k": "l", "t": "predict.py"}
    {"k": "end", "d": "<digest>"}

Unpacking trusts nothing in the stream: paths must be normalised relative POSIX paths in strictly
increasing order, links must stay inside and point at an entry of the snapshot, sizes are held
to the same limits as a build's (a header claiming more is refused before its bytes are read),
files are written into a fresh temporary folder (links last, so nothing is written through one)
and the folder is renamed into place only once the digest matches. A mismatch raises
``InvalidInput`` naming both digests and leaves nothing behind.

Not compressed, on purpose: what makes snapshots large is model files, which do not compress,
and zlib (level 1) ran at about 11 MB/s on such bytes on the shared development machine, for
nothing; source code is small either way. PostgreSQL's TOAST compresses the rows that compress.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from modelyard.builds.snapshot import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_TOTAL_BYTES,
    digest_of,
    remove_snapshot,
)
from modelyard.errors import InvalidInput, PayloadTooLarge

__all__ = ["ARCHIVE_FORMAT", "DEFAULT_CHUNK_BYTES", "pack_snapshot", "unpack_snapshot"]

ARCHIVE_FORMAT = "modelyard-snapshot-archive-1"
DEFAULT_CHUNK_BYTES = 1024 * 1024
_MAGIC = ARCHIVE_FORMAT.encode() + b"\n"
_HEADER = struct.Struct(">I")
_MAX_HEADER = 64 * 1024
_READ = 1024 * 1024
_TEMP_PREFIX = ".tmp-"


def pack_snapshot(
    folder: str | os.PathLike[str], digest: str, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[bytes]:
    """Yield the archive of the snapshot ``folder`` (named ``digest``) in ``chunk_bytes`` pieces.

    The digest of what was read is checked at the end: a folder whose content no longer matches
    its name raises InvalidInput after the last chunk, so a caller that stores the chunks and
    commits only after the iterator ends never stores a wrong archive.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInput(
            f"snapshot folder {str(root)!r} does not exist; build the project again",
            snapshot=str(root),
        )
    out = bytearray(_MAGIC)
    items: list[list[str]] = []
    for rel in _paths(root):
        full = root / rel
        st = full.lstat()
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(full)
            items.append(["link", rel, target])
            out += _record({"p": rel, "k": "l", "t": target})
            continue
        executable = bool(st.st_mode & stat.S_IXUSR)
        out += _record({"p": rel, "k": "f", "x": executable, "n": st.st_size})
        h = hashlib.sha256()
        size = 0
        with open(full, "rb") as src:
            while piece := src.read(_READ):
                size += len(piece)
                h.update(piece)
                out += piece
                while len(out) >= chunk_bytes:
                    yield bytes(out[:chunk_bytes])
                    del out[:chunk_bytes]
        if size != st.st_size:
            raise InvalidInput(
                f"snapshot file {rel!r} of {digest} changed while it was packed; snapshots are "
                "read-only: remove the folder and build again",
                file=rel,
            )
        items.append(["file", rel, "x" if executable else "-", h.hexdigest()])
    actual = digest_of(items)
    if actual != digest:
        raise InvalidInput(
            f"snapshot folder {str(root)!r} holds content with digest {actual}, not {digest}; "
            "it was changed on disk: remove it and build the project again",
            snapshot=str(root),
        )
    out += _record({"k": "end", "d": digest})
    while out:
        yield bytes(out[:chunk_bytes])
        del out[:chunk_bytes]


def unpack_snapshot(
    chunks: Iterable[bytes],
    digest: str,
    dest_root: str | os.PathLike[str],
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> Path:
    """Unpack the archive ``chunks`` into ``dest_root/<digest>/`` (read-only) and return it.

    An existing folder of that name is kept as it is (content-addressed: it holds the same
    bytes). InvalidInput for a damaged or foreign archive or a digest mismatch, PayloadTooLarge
    for content over the limits; nothing is left behind either way.
    """
    dest = Path(dest_root)
    final = dest / digest
    if final.is_dir():
        return final
    dest.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=dest))
    try:
        stream = _Stream(iter(chunks), max_total_bytes + 64 * 1024**2, digest)
        if stream.read(len(_MAGIC)) != _MAGIC:
            raise stream.damaged(f"it does not start with {ARCHIVE_FORMAT!r}")
        items = _write_entries(stream, temp, max_file_bytes, max_total_bytes)
        stream.finish()
        actual = digest_of(items)
        if actual != digest:
            raise InvalidInput(
                f"the archive of snapshot {digest} holds content with digest {actual}; it was "
                "altered in the database: redeploy the model to store it again",
                digest=digest,
            )
        for current, _dirs, _files in os.walk(temp, topdown=False):
            os.chmod(current, 0o555)
        try:
            os.rename(temp, final)
        except OSError:
            if not final.is_dir():
                raise
            remove_snapshot(temp)  # another unpack of the same digest came first: same bytes
    except BaseException:
        if temp.exists():
            remove_snapshot(temp)
        raise
    return final


def _write_entries(
    stream: _Stream, temp: Path, max_file_bytes: int, max_total_bytes: int
) -> list[list[str]]:
    """Write every entry of ``stream`` under ``temp`` (links last); return the digest items."""
    items: list[list[str]] = []
    links: list[tuple[str, str]] = []
    present: set[str] = {""}
    previous = ""
    total = 0
    while True:
        header = stream.header()
        kind = header.get("k")
        if kind == "end":
            if header.get("d") != stream.digest:
                raise stream.damaged(f"its end names digest {header.get('d')!r}")
            break
        rel = _checked_path(header.get("p"), previous, stream)
        previous = rel
        parts = PurePosixPath(rel).parts
        present.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        if kind == "l":
            target = header.get("t")
            if not isinstance(target, str) or not target or "\x00" in target:
                raise stream.damaged(f"link {rel!r} has no valid target")
            links.append((rel, target))
            items.append(["link", rel, target])
            continue
        size, executable = header.get("n"), header.get("x")
        if kind != "f" or not isinstance(size, int) or size < 0 or not isinstance(executable, bool):
            raise stream.damaged(f"entry {rel!r} is neither a file nor a link")
        if size > max_file_bytes:
            raise PayloadTooLarge(
                f"snapshot file {rel!r} is {size} bytes, over the limit of {max_file_bytes} "
                "bytes per file",
                file=rel,
                size=size,
                limit=max_file_bytes,
            )
        total += size
        if total > max_total_bytes:
            raise PayloadTooLarge(
                f"snapshot {stream.digest} holds more than {max_total_bytes} bytes",
                limit=max_total_bytes,
            )
        items.append(
            ["file", rel, "x" if executable else "-", _write_file(stream, temp, rel, size)]
        )
        os.chmod(temp / rel, 0o555 if executable else 0o444)
    for rel, target in links:
        resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
        if (
            os.path.isabs(target)
            or resolved.split(os.sep)[0] == ".."
            or ((resolved if resolved != "." else "") not in present)
        ):
            raise stream.damaged(f"link {rel!r} points to {target!r}, outside the snapshot")
        os.symlink(target, temp / rel)
    return items


def _write_file(stream: _Stream, temp: Path, rel: str, size: int) -> str:
    target = temp / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with open(target, "xb") as out:
        left = size
        while left:
            piece = stream.read(min(left, _READ))
            h.update(piece)
            out.write(piece)
            left -= len(piece)
    return h.hexdigest()


def _checked_path(value: object, previous: str, stream: _Stream) -> str:
    """A normalised relative POSIX path, after ``previous`` in path order."""
    if not isinstance(value, str) or not value or "\x00" in value or "\\" in value:
        raise stream.damaged(f"an entry has the path {value!r}")
    path = PurePosixPath(value)
    if path.is_absolute() or any(p in ("..", ".") for p in path.parts) or str(path) != value:
        raise stream.damaged(f"entry {value!r} is not a relative path inside the snapshot")
    if value <= previous:
        raise stream.damaged(f"entry {value!r} comes out of order (after {previous!r})")
    return value


def _record(header: dict[str, Any]) -> bytes:
    body = orjson.dumps(header)
    return _HEADER.pack(len(body)) + body


class _Stream:
    """The bytes of the chunks, read exactly, bounded to ``limit`` in all."""

    def __init__(self, chunks: Iterator[bytes], limit: int, digest: str) -> None:
        self.digest = digest
        self._chunks = chunks
        self._buf = bytearray()
        self._taken = 0
        self._limit = limit

    def damaged(self, why: str) -> InvalidInput:
        return InvalidInput(
            f"the archive of snapshot {self.digest} is damaged: {why}; redeploy the model "
            "through any server to store it again",
            digest=self.digest,
        )

    def _fill(self, need: int) -> None:
        while len(self._buf) < need:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise self.damaged("it ends early")
            self._taken += len(chunk)
            if self._taken > self._limit:
                raise self.damaged(f"it holds more than {self._limit} bytes")
            self._buf += chunk

    def read(self, n: int) -> bytes:
        self._fill(n)
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def header(self) -> dict[str, Any]:
        (length,) = _HEADER.unpack(self.read(_HEADER.size))
        if length > _MAX_HEADER:
            raise self.damaged(f"an entry header claims {length} bytes")
        try:
            header = orjson.loads(self.read(length))
        except orjson.JSONDecodeError as exc:
            raise self.damaged("an entry header is not JSON") from exc
        if not isinstance(header, dict):
            raise self.damaged("an entry header is not a JSON object")
        return header

    def finish(self) -> None:
        """Nothing may follow the end record: no bytes, no further chunk."""
        if self._buf or next(self._chunks, None) is not None:
            raise self.damaged("it has bytes after its end")


def _paths(root: Path) -> list[str]:
    """Relative POSIX paths of every file and link under ``root``, in the snapshot's order."""
    found: list[str] = []
    for current, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(current, root)
        names = list(files)
        for name in list(dirs):
            if os.path.islink(os.path.join(current, name)):
                names.append(name)
                dirs.remove(name)
        for name in names:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            found.append(rel.replace(os.sep, "/"))
    found.sort()
    return found
