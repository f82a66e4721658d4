"""Reading Parquet and CSV files from a folder (``files``) or an S3-compatible bucket (``s3``),
through pyarrow: ``pyarrow.fs`` lists and opens (``LocalFileSystem``; ``S3FileSystem``, the AWS
SDK's own client, for AWS, MinIO, Ceph and the like), ``pyarrow.dataset`` reads (column
projection, and for Parquet the row-group statistics skip what a watermark filter excludes).

A source's ``path`` is a glob *relative to* the connection's folder or bucket prefix (``*``
within one folder, ``**`` across folders, ``?`` one character): an absolute pattern, one with
``..``, or a file whose real path (after symlinks) lies outside the folder is refused, so a
connection never reads beyond where it points. Matching files are read in name order; their
format is ``Source.format`` or each file's extension (``.parquet``/``.pq``, ``.csv``/``.csv.gz``),
one format per read. Several CSV files are read with one schema: each file's types (pyarrow infers
them from its first block) promoted to one, so an integer column that another file gives floats
or leaves empty reads as float or with nulls instead of failing on the second file; Parquet files
carry their own schema and are read with the first file's.

With ``Source.time_column`` the matching rows are sorted by it, and with ``after`` only rows at
or after the watermark are kept (so a per-run row limit cuts at a consistent point). Without
``time_column`` the files stream batch by batch.

Credentials: ``access_key_id`` / ``secret_access_key`` / ``session_token`` from the connection's
secrets. Without them the bucket is read anonymously: the server's own AWS credentials
(environment, ``~/.aws``, instance role) are never used for a project's connection. One attempt
per request (no SDK retry loop), so a refused endpoint fails in seconds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from modelyard.connectors._failures import classify, failure
from modelyard.connectors.base import Connection, ConnectorError, Credentials, Probe, Source
from modelyard.errors import InvalidInput

__all__ = ["FORMATS", "check_pattern", "glob_regex", "probe", "read_batches"]

FORMATS = ("parquet", "csv")
_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".csv.gz": "csv"}
# pyarrow names the AWS SDK's error codes (ACCESS_DENIED...); read before the shared table, whose
# "access denied" (a database refusing a user) would call S3's "Access Denied" bad credentials.
_S3_KNOWN: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "bad credentials",
        (
            "invalid_access_key_id",
            "signature_does_not_match",
            "invalid_client_token_id",
            "unrecognized_client",
            "expired_token",
        ),
    ),
    ("permission denied", ("access_denied",)),
)
_FILES_KNOWN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("missing bucket", ("nosuchbucket", "bucket does not exist", "the specified bucket")),
    ("folder not found", ("path does not exist", "no such file or directory", "no folder at")),
)
_TIMEOUT_S = 10.0


def _what(text: str) -> str | None:
    return classify(text, _S3_KNOWN) or classify(text) or classify(text, _FILES_KNOWN)


def check_pattern(pattern: object) -> str:
    """``pattern`` if it is a glob inside the connection's root: relative, no ``..``.

    >>> check_pattern("labels/**/*.parquet")
    'labels/**/*.parquet'
    >>> check_pattern("../etc/passwd")
    Traceback (most recent call last):
    ...
    modelyard.errors.InvalidInput: path='../etc/passwd' is not accepted; expected a pattern \
inside the connection's folder or bucket prefix, such as 'labels/*.parquet' (relative, no '..')
    """
    if (
        not isinstance(pattern, str)
        or not pattern
        or "\x00" in pattern
        or pattern.startswith(("/", "\\"))
        or ".." in re.split(r"[/\\]", pattern)
        or len(pattern) > 1000
    ):
        raise InvalidInput(
            f"path={pattern!r:.200} is not accepted; expected a pattern inside the connection's "
            "folder or bucket prefix, such as 'labels/*.parquet' (relative, no '..')",
            argument="path",
        )
    return pattern


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regex over '/'-separated relative paths.

    >>> bool(glob_regex("a/*.csv").match("a/x.csv")), bool(glob_regex("a/*.csv").match("a/b/x.csv"))
    (True, False)
    >>> bool(glob_regex("**/*.pq").match("x.pq")), bool(glob_regex("**/*.pq").match("a/b/x.pq"))
    (True, True)
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        char = pattern[i]
        out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _root(connection: Connection, credentials: Credentials) -> tuple[pafs.FileSystem, str]:
    """The file system and the root folder (``bucket/prefix`` for S3) of the connection."""
    o = connection.options
    if connection.kind == "files":
        return pafs.LocalFileSystem(), str(o["path"]).rstrip("/") or "/"
    kwargs: dict[str, Any] = {
        "region": o.get("region", "us-east-1"),
        "connect_timeout": _TIMEOUT_S,
        "request_timeout": _TIMEOUT_S * 3,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=1),
    }
    if "endpoint_url" in o:
        url = urlsplit(str(o["endpoint_url"]))
        kwargs["endpoint_override"] = url.netloc + url.path.rstrip("/")
        kwargs["scheme"] = url.scheme
    key, secret = credentials.get("access_key_id"), credentials.get("secret_access_key")
    if key and secret:
        kwargs.update(access_key=key, secret_key=secret)
        if credentials.get("session_token"):
            kwargs["session_token"] = credentials.get("session_token")
    else:
        kwargs["anonymous"] = True
    prefix = str(o.get("prefix", "")).strip("/")
    base = f"{o['bucket']}/{prefix}" if prefix else str(o["bucket"])
    return pafs.S3FileSystem(**kwargs), base


def _inside(connection: Connection, base: str, full: str) -> bool:
    """For a folder: the file's real path (symlinks resolved) is under the folder's."""
    if connection.kind != "files":
        return True
    root = os.path.realpath(base)
    return os.path.realpath(full).startswith(root.rstrip("/") + "/")


def _bucket_missing(fs: pafs.FileSystem, bucket: str) -> bool:
    """The bucket is not there. A refused HEAD is answered 403 without a body, which cannot tell a
    wrong key or secret from a key without access to the bucket: then False, and the listing that
    follows fails with the server's own code (InvalidAccessKeyId, SignatureDoesNotMatch or
    AccessDenied)."""
    try:
        return bool(fs.get_file_info(bucket).type == pafs.FileType.NotFound)
    except OSError as exc:
        if "access_denied" in str(exc).lower():
            return False
        raise


def _matching(
    connection: Connection, credentials: Credentials, fs: pafs.FileSystem, base: str, pattern: str
) -> list[tuple[str, str]]:
    """(relative, full) paths of the files under ``base`` matching ``pattern``, by name."""
    literal = pattern.split("*", 1)[0].split("?", 1)[0]
    folder = literal.rsplit("/", 1)[0] if "/" in literal else ""
    start = f"{base}/{folder}".rstrip("/") if folder else base
    regex = glob_regex(pattern)
    try:
        if connection.kind == "files" and not os.path.isdir(base):
            raise FileNotFoundError(f"no folder at {base}")
        if connection.kind == "s3":
            bucket = base.split("/", 1)[0]
            if _bucket_missing(fs, bucket):
                raise FileNotFoundError(f"bucket {bucket!r} does not exist (NoSuchBucket)")
        infos = fs.get_file_info(pafs.FileSelector(start, recursive=True, allow_not_found=True))
    except (OSError, pa.ArrowException) as exc:
        raise failure(connection, credentials, _what(str(exc)), exc) from None
    found = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        relative = info.path[len(base) :].lstrip("/")
        if regex.match(relative) and _inside(connection, base, info.path):
            found.append((relative, info.path))
    return sorted(found)


def _format(connection: Connection, source: Source, files: list[tuple[str, str]]) -> str:
    if source.format is not None:
        if source.format not in FORMATS:
            raise InvalidInput(
                f"format={source.format!r} is not accepted; expected one of {', '.join(FORMATS)}",
                argument="format",
            )
        return source.format
    formats = set()
    for relative, _ in files:
        ext = next((e for e in _EXTENSIONS if relative.lower().endswith(e)), None)
        if ext is None:
            raise failure(
                connection,
                None,
                "unknown file format",
                f"{relative!r} ends in none of {', '.join(_EXTENSIONS)}; name the format "
                "(format: parquet or csv) or narrow the pattern",
            )
        formats.add(_EXTENSIONS[ext])
    if len(formats) > 1:
        raise failure(
            connection,
            None,
            "mixed file formats",
            f"{source.path!r} matches both "
            "Parquet and CSV files; narrow the pattern or name the format",
        )
    return formats.pop()


def _scalar(after: Any, typ: pa.DataType) -> pa.Scalar:
    """The watermark as a scalar of the time column's type."""
    if pa.types.is_timestamp(typ):
        stamp = pd.Timestamp(after)
        if typ.tz is not None and stamp.tzinfo is None:
            stamp = stamp.tz_localize("UTC")
        elif typ.tz is None and stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        return pa.scalar(stamp.to_pydatetime(), type=typ)
    if pa.types.is_date(typ):
        return pa.scalar(pd.Timestamp(after).date(), type=typ)
    if isinstance(after, datetime | date | pd.Timestamp):
        after = after.isoformat()
    return pa.scalar(after).cast(typ)


def _csv_schema(
    connection: Connection,
    credentials: Credentials,
    fs: pafs.FileSystem,
    files: list[tuple[str, str]],
) -> pa.Schema | None:
    """One schema for several CSV files: each file's types promoted to one (int and float ->
    float, a column one file leaves empty -> the others' type; a column some files lack reads as
    nulls there). pyarrow alone imposes the first file's types on the rest. Only each file's first
    block is read. A column no type holds in every file is an error naming it, both types and
    both files."""
    if len(files) < 2:
        return None  # one file: its own inferred types, as pyarrow reads it
    csv = ds.CsvFileFormat()
    types: dict[str, pa.DataType] = {}
    origin: dict[str, str] = {}  # column -> the file its current type comes from
    for relative, full in files:
        try:
            schema = csv.inspect(full, filesystem=fs)
        except (OSError, pa.ArrowException) as exc:
            raise _read_failure(connection, credentials, exc) from None
        for field in schema:
            known = types.get(field.name)
            if known is None:
                types[field.name], origin[field.name] = field.type, relative
                continue
            if known == field.type:
                continue
            try:
                merged = pa.unify_schemas(
                    [pa.schema([(field.name, known)]), pa.schema([field])],
                    promote_options="permissive",
                ).field(0)
            except (pa.ArrowTypeError, pa.ArrowInvalid):
                raise failure(
                    connection,
                    None,
                    "mixed column types",
                    f"column {field.name!r} is {known} in {origin[field.name]!r} but "
                    f"{field.type} in {relative!r}; make the files agree or read them with "
                    "separate patterns",
                ) from None
            if merged.type != known:
                types[field.name], origin[field.name] = merged.type, relative
    return pa.schema(list(types.items()))


def _dataset(connection: Connection, credentials: Credentials, source: Source) -> ds.Dataset | None:
    fs, base = _root(connection, credentials)
    files = _matching(connection, credentials, fs, base, check_pattern(source.path))
    if not files:
        return None
    fmt = _format(connection, source, files)
    schema = _csv_schema(connection, credentials, fs, files) if fmt == "csv" else None
    try:
        dataset = ds.dataset([full for _, full in files], filesystem=fs, format=fmt, schema=schema)
    except (OSError, pa.ArrowException) as exc:
        raise failure(connection, credentials, _what(str(exc)) or "unreadable file", exc) from None
    wanted = (*source.columns, *([source.time_column] if source.time_column else []))
    missing = [c for c in dict.fromkeys(wanted) if c not in dataset.schema.names]
    if missing:
        raise failure(
            connection,
            None,
            "missing column",
            f"{missing[0]!r} is not a column of {source.path!r} (its columns: "
            f"{', '.join(dataset.schema.names[:30])})",
        )
    return dataset


def read_batches(
    connection: Connection,
    credentials: Credentials,
    source: Source,
    *,
    after: Any = None,
    batch_rows: int = 100_000,
    limit: int | None = None,
) -> Iterator[pd.DataFrame]:
    """DataFrames of at most ``batch_rows`` rows of the files ``source.path`` matches."""
    dataset = _dataset(connection, credentials, source)
    if dataset is None:
        return
    columns = None  # all of them
    if source.columns:
        columns = list(dict.fromkeys((*source.columns, *filter(None, [source.time_column]))))
    left = limit
    try:
        if source.time_column:
            tc = source.time_column
            where = None
            if after is not None:
                where = ds.field(tc) >= _scalar(after, dataset.schema.field(tc).type)
            table = dataset.to_table(columns=columns, filter=where)
            indices = pc.sort_indices(table, sort_keys=[(tc, "ascending")])
            table = table.take(indices)
            if left is not None:
                table = table.slice(0, left)
            for batch in table.to_batches(max_chunksize=batch_rows):
                yield batch.to_pandas()
            return
        for batch in dataset.to_batches(columns=columns, batch_size=batch_rows):
            if left is not None:
                if left <= 0:
                    return
                batch = batch.slice(0, left)
                left -= batch.num_rows
            if batch.num_rows:
                yield batch.to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise _read_failure(connection, credentials, exc) from None


def _read_failure(
    connection: Connection, credentials: Credentials, exc: BaseException
) -> ConnectorError:
    said = str(exc)
    return failure(connection, credentials, _what(said) or "unreadable file", exc)


def probe(connection: Connection, credentials: Credentials) -> Probe:
    """List the folder or bucket prefix: how many Parquet and CSV files (and others) it holds."""
    fs, base = _root(connection, credentials)
    files = _matching(connection, credentials, fs, base, "**")
    counts = {"parquet": 0, "csv": 0, "other": 0}
    for relative, _ in files:
        ext = next((e for e in _EXTENSIONS if relative.lower().endswith(e)), None)
        counts[_EXTENSIONS[ext] if ext else "other"] += 1
    where = f"folder {base}" if connection.kind == "files" else f"bucket prefix s3://{base}/"
    return Probe(
        True,
        f"{where}: {counts['parquet']} Parquet, {counts['csv']} CSV and {counts['other']} "
        "other files",
    )
