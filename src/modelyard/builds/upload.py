"""Deploying from a laptop: a project folder packed on the client, checked and rebuilt on the
server.

The client (``pack_project``) walks the folder with the very walk a snapshot uses
(``snapshot.scan_project``: ``.gitignore`` and ``.modelyardignore``, always-excluded folders,
refused escaping links and special files, the size limits), so what a server builds from an
upload is what it would have built from the folder itself. The result is a manifest, one entry
per file (``path``, ``sha256``, ``size``, ``mode``: 0o755 or 0o644, the executable bit is the
only one kept) or per link that stays inside (``path``, ``link``: its target relative to the
link's folder).

Content travels once: the client asks which digests the server lacks (``/uploads/missing``),
sends only those (``PUT /uploads/blobs/<sha256>``, the server checks the hash), then posts the
manifest (``POST /uploads``), which the server accepts only once every blob is there. A second
deploy after changing one file therefore sends one file.

The server trusts nothing in a manifest (``check_manifest``): absolute paths, ``..``, duplicate
paths, a path that is both a file and a folder, links leaving the folder or pointing at nothing,
too many files or bytes are refused naming the entry and the limit. ``materialize`` writes a
checked upload into a fresh folder (files first, links last, so nothing is written through a
link), from which the server builds exactly as from a folder of its own.

This module imports no server part: the CLI packs and sends with it (``send_pack`` over a
``Transport``; ``HttpTransport`` is the one the CLI uses).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from modelyard.builds.snapshot import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_TOTAL_BYTES,
    ProjectEntry,
    hash_entry,
    open_entry,
    scan_project,
)
from modelyard.errors import InvalidInput, PayloadTooLarge

__all__ = [
    "DEFAULT_MAX_FILES",
    "MODES",
    "PARALLEL_PUTS",
    "HttpTransport",
    "ManifestEntry",
    "Pack",
    "Transport",
    "UploadLimits",
    "UploadResult",
    "check_digest",
    "check_manifest",
    "materialize",
    "pack_project",
    "send_pack",
]

DEFAULT_MAX_FILES = 20_000
MODES = (0o644, 0o755)  # the executable bit is the only mode bit an upload carries
PARALLEL_PUTS = 4
_CHUNK = 1024 * 1024
_MAX_PATH = 4096
_HEX = frozenset("0123456789abcdef")
API = "/api/v1/uploads"


@dataclass(frozen=True, slots=True)
class UploadLimits:
    """What one upload may hold: files (links count), bytes per file and in all."""

    max_files: int = DEFAULT_MAX_FILES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """A file (``sha256``, ``size``, ``mode``) or a link (``link``) at ``path``."""

    path: str
    sha256: str = ""
    size: int = 0
    mode: int = 0o644
    link: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.link is not None:
            return {"path": self.path, "link": self.link}
        return {"path": self.path, "sha256": self.sha256, "size": self.size, "mode": self.mode}


@dataclass(frozen=True, slots=True)
class Pack:
    """A packed folder: its manifest and where each digest's bytes are read from."""

    root: Path
    entries: tuple[ManifestEntry, ...]
    sources: Mapping[str, ProjectEntry]
    total_bytes: int

    def manifest(self) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.entries]

    def digests(self) -> list[str]:
        """Each distinct content once, in path order."""
        return list(self.sources)


@dataclass(frozen=True, slots=True)
class UploadResult:
    """The stored upload (``id``, ``files``, ``bytes``) and what this send carried."""

    id: str
    files: int
    bytes: int
    sent_blobs: int
    sent_bytes: int
    digests: tuple[str, ...] = field(default=(), repr=False)


def pack_project(project_dir: str | os.PathLike[str], limits: UploadLimits | None = None) -> Pack:
    """The manifest of ``project_dir`` with a snapshot's rules; the same errors as a snapshot
    (InvalidInput for escaping links or special files, PayloadTooLarge over a limit)."""
    limits = limits or UploadLimits()
    root, found = scan_project(
        project_dir, max_file_bytes=limits.max_file_bytes, max_total_bytes=limits.max_total_bytes
    )
    if len(found) > limits.max_files:
        raise PayloadTooLarge(
            f"project {str(root)!r} holds {len(found)} files to upload, over the limit of "
            f"{limits.max_files} files; leave data and artefacts out with .modelyardignore",
            project=str(root),
            limit=limits.max_files,
        )
    entries: list[ManifestEntry] = []
    sources: dict[str, ProjectEntry] = {}
    for e in found:
        if e.link_target is not None:
            entries.append(ManifestEntry(e.rel, link=e.link_target.replace(os.sep, "/")))
            continue
        digest = hash_entry(e, limits.max_file_bytes)
        sources.setdefault(digest, e)
        entries.append(ManifestEntry(e.rel, digest, e.size, 0o755 if e.executable else 0o644))
    total = sum(e.size for e in entries)
    return Pack(root, tuple(entries), sources, total)


# -- the server's checks ------------------------------------------------------------------------


def check_digest(value: object) -> str:
    """``value`` as a sha256 hex digest; InvalidInput naming it otherwise."""
    if not isinstance(value, str) or len(value) != 64 or not set(value) <= _HEX:
        raise InvalidInput(
            f"digest {str(value)[:100]!r} is not accepted; expected the 64 lowercase hex "
            "characters of a sha256",
            digest=str(value)[:100],
        )
    return value


def _check_path(value: object, index: int) -> str:
    accepted = "a relative POSIX path inside the folder such as 'src/predict.py'"
    if not isinstance(value, str) or not value:
        raise InvalidInput(
            f"manifest entry {index}: path {value!r} is not accepted; expected {accepted}"
        )
    if len(value) > _MAX_PATH or "\x00" in value:
        raise InvalidInput(
            f"manifest entry {index}: path {value[:100]!r} is longer than {_MAX_PATH} "
            f"characters or holds a NUL byte; expected {accepted}"
        )
    if value.startswith("/") or (len(value) > 1 and value[1] == ":"):
        raise InvalidInput(
            f"manifest entry {index}: path {value!r} is absolute; expected {accepted}", path=value
        )
    parts = value.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidInput(
            f"manifest entry {index}: path {value!r} has an empty, '.' or '..' part; "
            f"expected {accepted}",
            path=value,
        )
    return value


def _entry(raw: object, index: int, limits: UploadLimits) -> ManifestEntry:
    if not isinstance(raw, dict):
        raise InvalidInput(
            f"manifest entry {index} is {type(raw).__name__}; expected an object with path, "
            "sha256, size and mode (or path and link)"
        )
    path = _check_path(raw.get("path"), index)
    extra = set(raw) - {"path", "sha256", "size", "mode", "link"}
    if extra:
        raise InvalidInput(
            f"manifest entry {path!r} has unknown fields {sorted(extra)}; expected path, "
            "sha256, size, mode or link",
            path=path,
        )
    if "link" in raw:
        link = raw["link"]
        if not isinstance(link, str) or not link or "\x00" in link or link.startswith("/"):
            raise InvalidInput(
                f"manifest entry {path!r}: link {str(link)[:100]!r} is not accepted; expected "
                "a relative target inside the folder",
                path=path,
            )
        return ManifestEntry(path, link=link)
    digest = check_digest(raw.get("sha256"))
    size, mode = raw.get("size"), raw.get("mode", 0o644)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput(f"manifest entry {path!r}: size {size!r} is not a byte count")
    if size > limits.max_file_bytes:
        raise PayloadTooLarge(
            f"manifest entry {path!r} is {size} bytes, over the limit of "
            f"{limits.max_file_bytes} bytes per file",
            path=path,
            limit=limits.max_file_bytes,
        )
    if mode not in MODES:
        raise InvalidInput(
            f"manifest entry {path!r}: mode {mode!r} is not accepted; expected 420 (0o644) or "
            "493 (0o755)",
            path=path,
        )
    return ManifestEntry(path, digest, size, int(mode))


def check_manifest(raw: object, limits: UploadLimits | None = None) -> list[ManifestEntry]:
    """The manifest's entries in path order, every one checked (see the module docstring)."""
    limits = limits or UploadLimits()
    if not isinstance(raw, list):
        raise InvalidInput(
            f"manifest is {type(raw).__name__}; expected a list of entries "
            "({path, sha256, size, mode} or {path, link})"
        )
    if len(raw) > limits.max_files:
        raise PayloadTooLarge(
            f"the manifest lists {len(raw)} files, over the limit of {limits.max_files} files",
            limit=limits.max_files,
        )
    entries = sorted((_entry(item, i, limits) for i, item in enumerate(raw)), key=lambda e: e.path)
    total = 0
    folders: set[str] = set()
    seen: set[str] = set()
    for e in entries:
        if e.path in seen:
            raise InvalidInput(f"manifest entry {e.path!r} appears twice; each path once")
        seen.add(e.path)
        parts = e.path.split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        total += e.size
        if total > limits.max_total_bytes:
            raise PayloadTooLarge(
                f"the manifest holds more than {limits.max_total_bytes} bytes (at entry "
                f"{e.path!r}), over the limit of {limits.max_total_bytes} bytes per upload",
                path=e.path,
                limit=limits.max_total_bytes,
            )
    clash = seen & folders
    if clash:
        path = min(clash)
        raise InvalidInput(f"manifest entry {path!r} is both a file and a folder of other entries")
    _check_links(entries, seen | folders)
    return entries


def _check_links(entries: Sequence[ManifestEntry], present: set[str]) -> None:
    for e in entries:
        if e.link is None:
            continue
        target = posixpath.normpath(posixpath.join(posixpath.dirname(e.path), e.link))
        if target == ".." or target.startswith("../"):
            raise InvalidInput(
                f"manifest entry {e.path!r} is a link to {e.link!r}, which leaves the folder; "
                "only links that stay inside are accepted",
                path=e.path,
            )
        if target != "." and target not in present:
            raise InvalidInput(
                f"manifest entry {e.path!r} is a link to {e.link!r}, which is not in the "
                "upload; include the target or remove the link",
                path=e.path,
            )


def materialize(
    entries: Sequence[ManifestEntry], read_blob: Callable[[str], bytes], dest: Path
) -> None:
    """Write checked ``entries`` under the empty folder ``dest``: files with their bytes from
    ``read_blob(sha256)`` (hash and size checked again) and mode, then the links."""
    for e in entries:
        if e.link is not None:
            continue
        data = read_blob(e.sha256)
        if len(data) != e.size or hashlib.sha256(data).hexdigest() != e.sha256:
            raise InvalidInput(
                f"manifest entry {e.path!r} says {e.size} bytes with sha256 {e.sha256}; the "
                f"stored blob has {len(data)} bytes: upload the folder again",
                path=e.path,
            )
        target = dest / e.path
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, e.mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(target, e.mode)
    for e in entries:
        if e.link is not None:
            target = dest / e.path
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(e.link, target)


# -- the client's side of the protocol ----------------------------------------------------------


class Transport(Protocol):
    """How ``send_pack`` reaches the server: JSON posts and one raw-bytes put per blob."""

    def post(self, path: str, body: Any) -> Any: ...

    def put(self, path: str, chunks: Iterator[bytes], size: int) -> Any: ...


@dataclass(frozen=True, slots=True)
class HttpTransport:
    """A ``modelyard.client.Client`` (URL and key) plus the Modelyard ``project`` to act in."""

    client: Any  # modelyard.client.Client (builds sits above client/ but needs only its fields)
    project: str | None = None

    def _params(self) -> dict[str, str]:
        return {} if self.project is None else {"project": self.project}

    def post(self, path: str, body: Any) -> Any:
        return self.client.call("POST", path, body, params=self._params(), timeout=None)

    def put(self, path: str, chunks: Iterator[bytes], size: int) -> Any:
        import httpx
        import orjson

        from modelyard.client import error_from_response
        from modelyard.client._client import pool

        headers = self.client.headers()
        headers["Content-Type"] = "application/octet-stream"
        headers["Content-Length"] = str(size)
        try:
            response = pool().request(
                "PUT",
                self.client.url + path,
                content=chunks,
                params=self._params(),
                headers=headers,
                timeout=None,
            )
        except httpx.HTTPError as exc:
            raise self.client.unreachable(exc, path) from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        return orjson.loads(response.content) if response.content else None


def _chunks(source: ProjectEntry, progress: Callable[[int], None] | None) -> Iterator[bytes]:
    with open_entry(source) as src:
        while chunk := src.read(_CHUNK):
            if progress is not None:
                progress(len(chunk))
            yield chunk


def send_pack(
    pack: Pack,
    transport: Transport,
    progress: Callable[[int], None] | None = None,
    on_missing: Callable[[int], None] | None = None,
) -> UploadResult:
    """Send what the server lacks, then the manifest; the stored upload.

    ``on_missing(total bytes to send)`` is called once the server answered which blobs it
    lacks (the CLI starts its progress bar then); ``progress(n)`` after each piece sent."""
    answer = transport.post(f"{API}/missing", {"digests": pack.digests()})
    missing = [d for d in answer.get("missing", []) if d in pack.sources]
    to_send = sum(pack.sources[d].size for d in missing)
    if on_missing is not None:
        on_missing(to_send)

    def put(digest: str) -> None:
        source = pack.sources[digest]
        transport.put(
            f"{API}/blobs/{quote(digest, safe='')}", _chunks(source, progress), source.size
        )

    # A few at once: one file's round trip (and the server's commit) overlaps the next's send.
    with ThreadPoolExecutor(max_workers=PARALLEL_PUTS) as pool:
        for done in pool.map(put, missing):
            del done  # map re-raises the first error here, and the pool waits for the rest
    stored = transport.post(API, {"manifest": pack.manifest()})
    return UploadResult(
        id=str(stored["id"]),
        files=int(stored["files"]),
        bytes=int(stored["bytes"]),
        sent_blobs=len(missing),
        sent_bytes=to_send,
        digests=tuple(missing),
    )
