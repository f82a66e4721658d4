"""Content-addressed snapshots of a project folder: the code half of a build.

A snapshot is a read-only copy of the files a deployment runs, stored under a folder named by the
sha256 of its content. Equal content gives an equal digest whatever the files' timestamps, so a
redeploy of an unchanged project reuses the folder already on disk, and a build record that names
a digest names exactly one set of bytes.

What goes in follows git's rules: ``.gitignore`` and ``.modelyardignore`` files (in any folder,
deeper ones taking precedence, ``.modelyardignore`` after ``.gitignore`` in the same folder) with
gitignore semantics from the maintained ``pathspec`` library; ``.git/``, ``.venv/`` and
``__pycache__/`` are always left out; empty folders are not kept. What is refused: symlinks that
resolve outside the project (they would smuggle arbitrary files into a deployment), symlinks whose
target is not in the snapshot, special files, and files or totals over the size limits.

Symlinks that stay inside are kept as relative links, so the snapshot holds no duplicate bytes and
a link to a parent folder cannot make the walk loop.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import orjson
import pathspec

from modelyard.errors import Conflict, InvalidInput, PayloadTooLarge

__all__ = [
    "ALWAYS_EXCLUDED",
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_TOTAL_BYTES",
    "IGNORE_FILES",
    "ProjectEntry",
    "Snapshot",
    "digest_of",
    "hash_entry",
    "ignore_reason",
    "open_entry",
    "remove_snapshot",
    "scan_project",
    "snapshot_project",
]

DEFAULT_MAX_FILE_BYTES = 64 * 1024**2
DEFAULT_MAX_TOTAL_BYTES = 512 * 1024**2
ALWAYS_EXCLUDED = frozenset({".git", ".venv", "__pycache__"})
IGNORE_FILES = (".gitignore", ".modelyardignore")

_CHUNK = 1024 * 1024
_TEMP_PREFIX = ".tmp-"
# A temporary folder this old belongs to a snapshot that was killed mid-copy, not a slow one.
_STALE_TEMP_S = 24 * 3600
# The digest covers this version tag, so a future change of the entry encoding cannot make two
# different contents collide with an old folder.
_DIGEST_VERSION = "modelyard-snapshot-1"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A stored snapshot. ``files`` lists the relative POSIX paths of its files and links."""

    digest: str
    path: Path
    files: tuple[str, ...]
    total_bytes: int
    reused: bool


@dataclass(frozen=True, slots=True)
class ProjectEntry:
    """One file or link a snapshot (or an upload, ``builds.upload``) of a project takes:
    ``rel`` its relative POSIX path, ``source`` where it is read from; a link has
    ``link_target`` (relative to the link's folder), a file its ``size`` and ``executable``."""

    rel: str
    source: Path
    size: int = 0
    executable: bool = False
    link_target: str | None = None


@dataclass(frozen=True, slots=True)
class _Rules:
    """The ignore rules of one folder: ``base`` is that folder's path relative to the project."""

    base: str
    spec: pathspec.GitIgnoreSpec


def snapshot_project(
    project_dir: str | os.PathLike[str],
    dest_root: str | os.PathLike[str],
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> Snapshot:
    """Snapshot ``project_dir`` into ``dest_root/<digest>/`` and return it.

    Raises InvalidInput for a missing folder, an escaping or dangling symlink or a special file,
    PayloadTooLarge for a file or a total over the limits, and Conflict when the project changed
    while it was being copied (retrying is then safe).
    """
    dest = Path(dest_root)
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    root, entries = scan_project(
        project_dir, skip=dest, max_file_bytes=max_file_bytes, max_total_bytes=max_total_bytes
    )
    total = sum(e.size for e in entries)

    # Hash first, copy only when the digest is new: a redeploy of unchanged code writes nothing.
    digest = _digest(entries, {e.rel: hash_entry(e, max_file_bytes) for e in _files(entries)})
    final = dest / digest
    files = tuple(e.rel for e in entries)
    if final.is_dir():
        return Snapshot(digest, final, files, total, reused=True)

    _sweep_stale_temps(dest)
    temp = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=dest))
    try:
        copied = _copy(entries, temp, max_file_bytes)
        if _digest(entries, copied) != digest:
            raise Conflict(
                f"project {str(root)!r} changed while it was being snapshotted; "
                "retry once the files stop changing",
                project=str(root),
            )
        _make_read_only(temp)
        try:
            os.rename(temp, final)
        except OSError:
            # Another build stored the same content first; content-addressed means theirs is ours.
            if not final.is_dir():
                raise
            remove_snapshot(temp)
            return Snapshot(digest, final, files, total, reused=True)
    except BaseException:
        if temp.exists():
            remove_snapshot(temp)
        raise
    return Snapshot(digest, final, files, total, reused=False)


def scan_project(
    project_dir: str | os.PathLike[str],
    *,
    skip: Path | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> tuple[Path, list[ProjectEntry]]:
    """The resolved ``project_dir`` and the entries a snapshot of it takes, in path order.

    The one walk both a snapshot and an upload (``builds.upload``) use, so a folder packed on a
    laptop holds exactly what a build of the same folder on the server would: the same ignore
    rules, refusals and size limits (per file from the walk's sizes; hashing checks again).
    ``skip``: a folder left out (the snapshot store when it lies inside the project).
    """
    root = Path(project_dir)
    if not root.is_dir():
        raise InvalidInput(
            f"project folder {str(root)!r} does not exist or is not a folder; "
            "pass the folder that holds the model's code",
            project=str(root),
        )
    root = root.resolve()
    entries = _collect(root, skip=skip, max_file_bytes=max_file_bytes)
    _check_links(entries)
    total = sum(e.size for e in entries)
    if total > max_total_bytes:
        raise PayloadTooLarge(
            f"project {str(root)!r} holds {total} bytes to snapshot, over the limit of "
            f"{max_total_bytes} bytes; leave data and artefacts out with .modelyardignore",
            project=str(root),
            size=total,
            limit=max_total_bytes,
        )
    return root, entries


def remove_snapshot(path: str | os.PathLike[str]) -> None:
    """Delete a snapshot folder, restoring the write bits that keep it immutable meanwhile."""
    for folder, dirs, _files in os.walk(path):
        os.chmod(folder, 0o755)
        for name in dirs:
            full = os.path.join(folder, name)
            if not os.path.islink(full):
                os.chmod(full, 0o755)
    shutil.rmtree(path)


def _sweep_stale_temps(dest: Path) -> None:
    cutoff = time.time() - _STALE_TEMP_S
    for child in dest.glob(_TEMP_PREFIX + "*"):
        try:
            if child.is_dir() and child.stat().st_mtime < cutoff:
                remove_snapshot(child)
        except OSError:
            continue  # another build swept it first


def _collect(root: Path, *, skip: Path | None, max_file_bytes: int) -> list[ProjectEntry]:
    entries: list[ProjectEntry] = []
    for rel, full, is_dir, st in _walk(root, "", [], skip):
        if is_dir:
            continue
        if stat.S_ISLNK(st.st_mode):
            entries.append(ProjectEntry(rel, full, link_target=_link_target(root, rel, full)))
        elif stat.S_ISREG(st.st_mode):
            if st.st_size > max_file_bytes:
                raise _too_large(rel, st.st_size, max_file_bytes)
            entries.append(ProjectEntry(rel, full, st.st_size, bool(st.st_mode & stat.S_IXUSR)))
        else:
            raise InvalidInput(
                f"project file {rel!r} is not a regular file, folder or symlink "
                f"(mode {stat.filemode(st.st_mode)}); only regular files, folders and links "
                "are snapshotted: remove it or list it in .modelyardignore",
                file=rel,
            )
    entries.sort(key=lambda e: e.rel)
    return entries


def _walk(
    root: Path, rel_dir: str, rules: list[_Rules], skip: Path | None
) -> Iterator[tuple[str, Path, bool, os.stat_result]]:
    """Yield (relative path, full path, is a real folder, lstat) of every entry not ignored."""
    folder = root / rel_dir if rel_dir else root
    rules = rules + _rules_of(folder, rel_dir)
    with os.scandir(folder) as scan:
        children = sorted(scan, key=lambda d: d.name)
    for child in children:
        rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
        st = child.stat(follow_symlinks=False)
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir and (child.name in ALWAYS_EXCLUDED or Path(child.path) == skip):
            continue
        if _ignored(rel, is_dir, rules):
            continue
        yield rel, Path(child.path), is_dir, st
        if is_dir:
            yield from _walk(root, rel, rules, skip)


def ignore_reason(project_dir: str | os.PathLike[str], rel: str) -> str | None:
    """Why a snapshot of ``project_dir`` would leave out the file ``rel`` (a relative POSIX
    path), or None when it would keep it. Asks the walk's own rules folder by folder, so a file
    under an ignored folder is reported with that folder's pattern; the answer names the ignore
    file and its pattern (or the always-excluded folder), for messages that say what to change.
    """
    root = Path(project_dir)
    parts = PurePosixPath(rel).parts
    rules: list[_Rules] = []
    for depth, name in enumerate(parts):
        rel_dir = "/".join(parts[:depth])
        rules = rules + _rules_of(root / rel_dir if rel_dir else root, rel_dir)
        sub = "/".join(parts[: depth + 1])
        is_dir = depth < len(parts) - 1
        if is_dir and name in ALWAYS_EXCLUDED:
            return f"folder {sub + '/'!r} is always left out of snapshots"
        if _ignored(sub, is_dir, rules):
            return _deciding_pattern(root, sub, is_dir, rules)
    return None


def _deciding_pattern(root: Path, rel: str, is_dir: bool, rules: list[_Rules]) -> str:
    """The pattern (and its ignore file) that made ``_ignored`` say yes for ``rel``."""
    for rule in reversed(rules):
        sub = rel[len(rule.base) + 1 :] if rule.base else rel
        result = rule.spec.check_file(sub + "/" if is_dir else sub)
        if result.include is None or result.index is None:
            continue
        pattern = rule.spec.patterns[result.index]
        # _rules_of reads IGNORE_FILES in order into one spec: count patterns to find the file.
        folder = root / rule.base if rule.base else root
        seen = 0
        source = IGNORE_FILES[-1]
        for name in IGNORE_FILES:
            candidate = folder / name
            if candidate.is_file() and not candidate.is_symlink():
                text = candidate.read_text(encoding="utf-8", errors="replace").splitlines()
                seen += len(pathspec.GitIgnoreSpec.from_lines(text).patterns)
                if result.index < seen:
                    source = name
                    break
        where = f"{rule.base}/{source}" if rule.base else source
        return f"pattern {getattr(pattern, 'pattern', pattern)!r} in {where}"
    return "the ignore rules"  # not reached: _ignored said yes, so some rule matched


def _rules_of(folder: Path, rel_dir: str) -> list[_Rules]:
    lines: list[str] = []
    for name in IGNORE_FILES:
        candidate = folder / name
        # An ignore file that is a symlink is not followed: it could point anywhere.
        if candidate.is_file() and not candidate.is_symlink():
            lines.extend(candidate.read_text(encoding="utf-8", errors="replace").splitlines())
    if not lines:
        return []
    return [_Rules(rel_dir, pathspec.GitIgnoreSpec.from_lines(lines))]


def _ignored(rel: str, is_dir: bool, rules: list[_Rules]) -> bool:
    """Git's verdict: the deepest folder whose rules match decides, the last matching line wins."""
    verdict = False
    for rule in rules:
        sub = rel[len(rule.base) + 1 :] if rule.base else rel
        result = rule.spec.check_file(sub + "/" if is_dir else sub)
        if result.include is not None:
            verdict = result.include
    return verdict


def _link_target(root: Path, rel: str, full: Path) -> str:
    """The link's target relative to the link's folder, refused when it leaves the project."""
    raw = os.readlink(full)
    resolved = Path(os.path.realpath(full))
    if resolved != root and root not in resolved.parents:
        raise InvalidInput(
            f"symlink {rel!r} points to {raw!r}, which resolves to {str(resolved)!r} outside the "
            f"project folder {str(root)!r}; only links that stay inside the project are "
            "accepted: copy the file into the project instead",
            file=rel,
            target=raw,
        )
    parent = (root / rel).parent
    return os.path.relpath(resolved, parent)


def _check_links(entries: list[ProjectEntry]) -> None:
    """Refuse links to paths the snapshot will not hold (missing, or excluded by ignore rules)."""
    present: set[str] = {""}
    for e in entries:
        parts = PurePosixPath(e.rel).parts
        present.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    for e in entries:
        if e.link_target is None:
            continue
        target = os.path.normpath(os.path.join(os.path.dirname(e.rel), e.link_target))
        target = "" if target == "." else target.replace(os.sep, "/")
        if target not in present:
            raise InvalidInput(
                f"symlink {e.rel!r} points to {target!r}, which is not in the snapshot: it is "
                "missing or excluded by .gitignore/.modelyardignore; include the target or "
                "remove the link",
                file=e.rel,
                target=target,
            )


def _files(entries: list[ProjectEntry]) -> Iterator[ProjectEntry]:
    return (e for e in entries if e.link_target is None)


def hash_entry(entry: ProjectEntry, max_file_bytes: int) -> str:
    """The sha256 of a file entry's bytes, read without following links (PayloadTooLarge past
    ``max_file_bytes``: the file grew since the walk)."""
    h = hashlib.sha256()
    size = 0
    with open_entry(entry) as src:
        while chunk := src.read(_CHUNK):
            size += len(chunk)
            if size > max_file_bytes:
                raise _too_large(entry.rel, size, max_file_bytes)
            h.update(chunk)
    return h.hexdigest()


def _copy(entries: list[ProjectEntry], dest: Path, max_file_bytes: int) -> dict[str, str]:
    """Copy every entry under ``dest``; return the sha256 of the bytes actually written."""
    written: dict[str, str] = {}
    for e in entries:
        target = dest / e.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if e.link_target is not None:
            os.symlink(e.link_target, target)
            continue
        h = hashlib.sha256()
        size = 0
        with open_entry(e) as src, open(target, "xb") as out:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                if size > max_file_bytes:
                    raise _too_large(e.rel, size, max_file_bytes)
                h.update(chunk)
                out.write(chunk)
        os.chmod(target, 0o555 if e.executable else 0o444)
        written[e.rel] = h.hexdigest()
    return written


def open_entry(entry: ProjectEntry) -> io.FileIO:
    """The entry's file opened for reading; Conflict when it vanished or became a link."""
    # O_NOFOLLOW: a file swapped for a symlink after the walk cannot pull in outside bytes.
    try:
        fd = os.open(entry.source, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise Conflict(
            f"project file {entry.rel!r} could not be read ({exc.strerror}); it may have changed "
            "while being snapshotted: retry once the files stop changing",
            file=entry.rel,
        ) from exc
    return io.FileIO(fd, "rb", closefd=True)


def _digest(entries: list[ProjectEntry], hashes: dict[str, str]) -> str:
    items: list[list[str]] = []
    for e in entries:
        if e.link_target is not None:
            items.append(["link", e.rel, e.link_target])
        else:
            items.append(["file", e.rel, "x" if e.executable else "-", hashes[e.rel]])
    return digest_of(items)


def digest_of(items: list[list[str]]) -> str:
    """The snapshot digest of ``items`` in path order: ``["file", rel, "x" or "-", sha256]``
    or ``["link", rel, target]`` (the archive's unpacking checks content with it too)."""
    return hashlib.sha256(orjson.dumps([_DIGEST_VERSION, items])).hexdigest()


def _make_read_only(folder: Path) -> None:
    for current, _dirs, _files in os.walk(folder, topdown=False):
        os.chmod(current, 0o555)


def _too_large(rel: str, size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"project file {rel!r} is {size} bytes, over the limit of {limit} bytes per file; "
        "leave it out with .modelyardignore or load it from storage at start-up",
        file=rel,
        size=size,
        limit=limit,
    )
