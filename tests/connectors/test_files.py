"""File connectors: a folder on this machine and an S3-compatible bucket served by moto's server
mode (a real HTTP server on loopback, started here). Parquet and CSV, glob patterns, incremental
reads by time column, reads in batches; nothing outside the folder or prefix is read; each
failure (refused, unknown host, missing bucket or folder, missing column) names what failed."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pandas as pd
import pytest
from moto.server import ThreadedMotoServer

from modelyard.connectors import Connection, ConnectorError, Credentials, Source
from modelyard.connectors.read import probe, read_batches, read_frame
from modelyard.errors import InvalidInput

from ._sources import connection

T0 = datetime(2026, 11, 1, tzinfo=UTC)
NONE = Credentials()
KEYS = Credentials({"access_key_id": "testing-key", "secret_access_key": "testing-secret"})
BOTO_KEYS = {"aws_access_key_id": "testing-key", "aws_secret_access_key": "testing-secret"}
S3_SECRETS = {"access_key_id": "S3_KEY", "secret_access_key": "S3_SECRET"}


def _frame(start: int, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prediction_uuid": [f"u{i}" for i in range(start, start + n)],
            "churned": [i % 2 == 0 for i in range(start, start + n)],
            "updated_at": [T0 + timedelta(seconds=i) for i in range(start, start + n)],
        }
    )


def _fill(folder: Path) -> None:
    (folder / "labels" / "2026").mkdir(parents=True)
    _frame(0, 1_000).to_parquet(folder / "labels" / "2026" / "a.parquet")
    _frame(1_000, 1_000).to_parquet(folder / "labels" / "2026" / "b.parquet")
    _frame(2_000, 500).to_parquet(folder / "labels" / "c.parquet")
    _frame(0, 300).to_csv(folder / "labels" / "old.csv", index=False)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "drop"
    root.mkdir()
    _fill(root)
    return root


def test_folder_probe_globs_and_incremental(folder: Path) -> None:
    drop = connection("files", path=str(folder))
    assert probe(drop, NONE).detail == f"folder {folder}: 3 Parquet, 1 CSV and 0 other files"
    flat = read_frame(drop, NONE, Source(path="labels/*.parquet"), max_rows=10_000)
    assert len(flat) == 500  # '*' stays in its folder
    deep = Source(path="labels/**/*.parquet", time_column="updated_at")
    assert len(read_frame(drop, NONE, deep, max_rows=10_000)) == 2_500  # '**' crosses them
    after = (T0 + timedelta(seconds=1_500)).isoformat()
    batches = list(read_batches(drop, NONE, deep, after=after, batch_rows=400))
    assert [len(b) for b in batches] == [400, 400, 200]
    frame = pd.concat(batches, ignore_index=True)
    assert frame["updated_at"].is_monotonic_increasing
    assert frame["prediction_uuid"].iloc[0] == "u1500" and frame["churned"].dtype == bool
    csv = read_frame(
        drop, NONE, Source(path="labels/*.csv", columns=("prediction_uuid",)), max_rows=300
    )
    assert list(csv.columns) == ["prediction_uuid"] and len(csv) == 300
    assert list(read_batches(drop, NONE, Source(path="labels/none-yet/*.parquet"))) == []


def test_nothing_outside_the_folder_is_read(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    _frame(0, 10).to_parquet(outside / "secret.parquet")
    os.symlink(outside / "secret.parquet", folder / "labels" / "link.parquet")
    os.symlink(outside, folder / "linked-dir")
    drop = connection("files", path=str(folder))
    got = read_frame(drop, NONE, Source(path="**/*.parquet"), max_rows=10_000)
    assert len(got) == 2_500  # neither the linked file nor the linked folder's
    for bad in ("../outside/*.parquet", "/etc/*", "labels/../../outside/*"):
        with pytest.raises(InvalidInput, match=r"relative, no '\.\.'"):
            list(read_batches(drop, NONE, Source(path=bad)))


def test_folder_failures(folder: Path, tmp_path: Path) -> None:
    drop = connection("files", path=str(folder))
    with pytest.raises(
        ConnectorError,
        match=r"connection 'src' \(files at .*\): missing column: "
        r"'label' is not a column of 'labels/\*.parquet' \(its columns: "
        r"prediction_uuid, churned, updated_at\)",
    ):
        list(read_batches(drop, NONE, Source(path="labels/*.parquet", columns=("label",))))
    with pytest.raises(ConnectorError, match="mixed file formats"):
        list(read_batches(drop, NONE, Source(path="labels/*.*")))
    (folder / "labels" / "notes.txt").write_text("x")
    with pytest.raises(ConnectorError, match=r"unknown file format: 'labels/notes\.txt'"):
        list(read_batches(drop, NONE, Source(path="labels/*")))
    gone = connection("files", path=str(tmp_path / "nowhere"))
    assert "folder not found" in probe(gone, NONE).detail
    with pytest.raises(InvalidInput, match=r"holds more than 100 rows; accepted: at most 100"):
        read_frame(drop, NONE, Source(path="labels/*.parquet"), max_rows=100)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """moto's S3 server on a loopback port: its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3: str, folder: Path) -> str:
    name = f"labels-{os.urandom(4).hex()}"
    client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1", **BOTO_KEYS)
    client.create_bucket(Bucket=name)
    for path in folder.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), name, f"crm/{path.relative_to(folder)}")
    client.put_object(Bucket=name, Key="elsewhere/x.parquet", Body=b"not under the prefix")
    client.close()
    return name


def _bucket(s3: str, bucket: str, **options: object) -> Connection:
    return connection(
        "s3",
        **{
            "bucket": bucket,
            "prefix": "crm/",
            "endpoint_url": s3,
            "secrets": S3_SECRETS,
            **options,
        },
    )


def test_s3_probe_globs_and_incremental(s3: str, bucket: str) -> None:
    conn = _bucket(s3, bucket)
    found = probe(conn, KEYS)
    assert found.detail == f"bucket prefix s3://{bucket}/crm/: 3 Parquet, 1 CSV and 0 other files"
    deep = Source(path="labels/**/*.parquet", time_column="updated_at")
    after = T0 + timedelta(seconds=2_400)
    got = pd.concat(read_batches(conn, KEYS, deep, after=after, batch_rows=30))
    assert list(got["prediction_uuid"]) == [f"u{i}" for i in range(2_400, 2_500)]
    everything = read_frame(conn, KEYS, Source(path="**/*.parquet"), max_rows=10_000)
    assert len(everything) == 2_500  # elsewhere/x.parquet is outside the prefix
    csv = read_frame(conn, KEYS, Source(path="labels/old.csv"), max_rows=1_000)
    assert len(csv) == 300 and list(csv.columns) == ["prediction_uuid", "churned", "updated_at"]


def test_s3_failures(s3: str, bucket: str) -> None:
    refused = _bucket(f"http://127.0.0.1:{_free_port()}", bucket)
    assert "): connection refused" in probe(refused, KEYS).detail
    unknown = _bucket("http://no-such-host.invalid:9000", bucket)
    assert "): unknown host" in probe(unknown, KEYS).detail
    missing = _bucket(s3, "no-such-bucket-h2")
    assert "): missing bucket" in probe(missing, KEYS).detail
    with pytest.raises(ConnectorError, match=r"missing column: 'label'"):
        list(
            read_batches(
                _bucket(s3, bucket), KEYS, Source(path="labels/*.parquet", columns=("label",))
            )
        )


def _csvs(folder: Path, **files: str) -> Connection:
    """A folder connection over ``labels/<name>.csv`` files with these contents."""
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / "labels" / f"{name}.csv").write_text(text)
    return connection("files", path=str(folder))


CSV_HEAD = "prediction_uuid,label,updated_at\n"


def test_csv_files_read_with_promoted_types(tmp_path: Path, s3: str) -> None:
    """Integers in one file, floats in the next: one float column (the first file's int64 used to
    fail the second: 'CSV conversion error to int64: invalid value 1.5'), batch by batch."""
    drop = _csvs(
        tmp_path,
        a=CSV_HEAD + "u1,1,2026-11-01 00:00:03+00:00\nu2,0,2026-11-01 00:00:01+00:00\n",
        b=CSV_HEAD + "u3,0.5,2026-11-01 00:00:02+00:00\nu4,1,2026-11-01 00:00:04+00:00\n",
    )
    batches = list(read_batches(drop, NONE, Source(path="labels/*.csv"), batch_rows=2))
    assert [len(b) for b in batches] == [2, 2]
    assert [str(b["label"].dtype) for b in batches] == ["float64", "float64"]
    assert list(pd.concat(batches)["label"]) == [1.0, 0.0, 0.5, 1.0]
    timed = Source(path="labels/*.csv", time_column="updated_at")
    after = T0 + timedelta(seconds=2)
    got = pd.concat(read_batches(drop, NONE, timed, after=after))
    assert list(got["prediction_uuid"]) == ["u3", "u1", "u4"]
    assert list(got["label"]) == [0.5, 1.0, 1.0]
    name = f"labels-{os.urandom(4).hex()}"
    client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1", **BOTO_KEYS)
    client.create_bucket(Bucket=name)
    for path in (tmp_path / "labels").iterdir():
        client.upload_file(str(path), name, f"crm/labels/{path.name}")
    client.close()
    remote = read_frame(_bucket(s3, name), KEYS, Source(path="labels/*.csv"), max_rows=10)
    assert list(remote["label"]) == [1.0, 0.0, 0.5, 1.0]


@pytest.mark.parametrize(
    ("a", "b", "labels"),
    [
        ("u1,1\nu2,2\n", "u3,\nu4,3\n", [1, 2, None, 3]),  # a gap in the second file
        ("u1,\nu2,\n", "u3,4\nu4,3\n", [None, None, 4, 3]),  # the first file's column empty
        ("u1,1\nu2,2\n", "u3,\nu4,\n", [1, 2, None, None]),  # the second file's column empty
    ],
)
def test_csv_integers_with_missing_values(
    tmp_path: Path, a: str, b: str, labels: list[int | None]
) -> None:
    """An empty column is null in pyarrow's inference: the other files' integers win, the gaps
    are nulls (NaN in pandas). An all-empty first file used to fail: 'conversion error to null'."""
    drop = _csvs(tmp_path, a="prediction_uuid,label\n" + a, b="prediction_uuid,label\n" + b)
    got = read_frame(drop, NONE, Source(path="labels/*.csv"), max_rows=10)
    expected = pd.Series([float("nan") if v is None else float(v) for v in labels], name="label")
    pd.testing.assert_series_equal(got["label"], expected)
    assert list(got["prediction_uuid"]) == ["u1", "u2", "u3", "u4"]


def test_csv_columns_no_type_holds_are_an_error_naming_them(tmp_path: Path) -> None:
    """Integers and words: no type holds both. The error names the column, both types and the
    file each came from (after a promotion, the file that brought the promoted type)."""
    one = _csvs(
        tmp_path / "one", a="prediction_uuid,label\nu1,1\n", b="prediction_uuid,label\nu2,yes\n"
    )
    with pytest.raises(
        ConnectorError,
        match=r"^connection 'src' \(files at .*/one\): mixed column types: column 'label' is "
        r"int64 in 'labels/a\.csv' but string in 'labels/b\.csv'; make the files agree or read "
        r"them with separate patterns$",
    ) as caught:
        list(read_batches(one, NONE, Source(path="labels/*.csv")))
    assert caught.value.details == {"connection": "src", "failed": "mixed column types"}
    two = _csvs(
        tmp_path / "two",
        a="prediction_uuid,label\nu1,1\n",
        b="prediction_uuid,label\nu2,2.5\n",
        c="prediction_uuid,label\nu3,yes\n",
    )
    with pytest.raises(
        ConnectorError, match=r"'label' is double in 'labels/b\.csv' but string in 'labels/c\.csv'"
    ):
        read_frame(two, NONE, Source(path="labels/*.csv"), max_rows=10)


def test_parquet_files_keep_their_types(tmp_path: Path) -> None:
    """Parquet files are read as before, not promoted like CSV: with the first file's schema, to
    which pyarrow casts the others (here a float 3.0 to the integer 3)."""
    (tmp_path / "labels").mkdir()
    pd.DataFrame({"label": [1, 2]}).to_parquet(tmp_path / "labels" / "a.parquet")
    pd.DataFrame({"label": [3.0]}).to_parquet(tmp_path / "labels" / "b.parquet")
    drop = connection("files", path=str(tmp_path))
    got = read_frame(drop, NONE, Source(path="labels/*.parquet"), max_rows=10)
    assert str(got["label"].dtype) == "int64" and list(got["label"]) == [1, 2, 3]
