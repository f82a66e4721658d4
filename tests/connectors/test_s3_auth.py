"""An S3 bucket that checks credentials: moto's server mode with its authentication on, which
verifies each request's signature against the access keys made through moto's own IAM API.

moto keeps that switch (``INITIAL_NO_AUTH_ACTION_COUNT``) process-wide, so this server is a
``python -m moto.server`` subprocess: the in-process server of test_files.py keeps accepting any
key. It starts with authentication off, its IAM users, keys and bucket are made, then its
``/moto-api/reset-auth`` turns authentication on for every request after.

The right key reads; a wrong secret and an unknown key id are ``bad credentials``; a real key
without access to the bucket is ``permission denied``. Each names the connection, both in
``read_batches`` and in ``probe`` (what ``modelyard connections test`` runs on the server), and
no message, repr or log line holds the secret.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pandas as pd
import pytest

from _wait import wait_until
from modelyard.connectors import Connection, ConnectorError, Credentials, Source
from modelyard.connectors.read import probe, read_batches, read_frame

from ._sources import connection

pytestmark = pytest.mark.slow  # starts a moto_server process

BUCKET = "guarded-labels"
READ_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}
LABELS = pd.DataFrame({"prediction_uuid": ["u1", "u2", "u3"], "label": [1.0, 0.0, 1.0]})


@dataclass(frozen=True)
class GuardedS3:
    """The endpoint, a key that may read everything, and a key of a user with no policy."""

    endpoint: str
    reader: Credentials
    outsider: Credentials


def _start(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto's server on a loopback port it picks (read back from its log), authentication off."""
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "inf"}
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)

    def port() -> str | None:
        assert process.poll() is None, f"moto_server exited:\n{log.read_text()}"
        found = re.search(r"Running on http://127\.0\.0\.1:(\d+)", log.read_text())
        return found.group(1) if found else None

    try:
        return process, f"http://127.0.0.1:{wait_until(port, 30, 'moto_server to listen')}"
    except BaseException:
        process.kill()
        process.wait()
        raise


def _key(iam: Any, user: str, policy: dict[str, Any] | None) -> Credentials:
    """A new IAM user of moto's, with ``policy`` if given, and an access key of it."""
    iam.create_user(UserName=user)
    if policy is not None:
        iam.put_user_policy(UserName=user, PolicyName="labels", PolicyDocument=json.dumps(policy))
    made = iam.create_access_key(UserName=user)["AccessKey"]
    return Credentials(
        {"access_key_id": made["AccessKeyId"], "secret_access_key": made["SecretAccessKey"]}
    )


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardedS3]:
    process, endpoint = _start(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        setup = {
            "endpoint_url": endpoint,
            "aws_access_key_id": "setup",
            "aws_secret_access_key": "setup",
            "region_name": "us-east-1",
        }
        iam = boto3.client("iam", **setup)
        reader, outsider = _key(iam, "reader", READ_ALL), _key(iam, "outsider", None)
        s3 = boto3.client("s3", **setup)
        s3.create_bucket(Bucket=BUCKET)
        body = io.BytesIO()
        LABELS.to_parquet(body)
        s3.put_object(Bucket=BUCKET, Key="crm/labels.parquet", Body=body.getvalue())
        iam.close()
        s3.close()
        answer = httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0", timeout=10)
        assert answer.json()["status"] == "ok", answer.text
        yield GuardedS3(endpoint, reader, outsider)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _bucket(guarded: GuardedS3) -> Connection:
    return connection(
        "s3",
        name="guarded",
        bucket=BUCKET,
        prefix="crm/",
        endpoint_url=guarded.endpoint,
        secrets={"access_key_id": "S3_KEY", "secret_access_key": "S3_SECRET"},
    )


def test_the_right_key_reads(guarded: GuardedS3) -> None:
    conn = _bucket(guarded)
    found = probe(conn, guarded.reader)
    assert found.ok, found.detail
    assert found.detail == f"bucket prefix s3://{BUCKET}/crm/: 1 Parquet, 0 CSV and 0 other files"
    got = read_frame(conn, guarded.reader, Source(path="*.parquet"), max_rows=10)
    pd.testing.assert_frame_equal(got, LABELS)


def _refusal(
    guarded: GuardedS3, credentials: Credentials, caplog: pytest.LogCaptureFixture
) -> tuple[str, ConnectorError]:
    """What ``probe`` says and what ``read_batches`` raises with ``credentials``."""
    conn = _bucket(guarded)
    with caplog.at_level(logging.DEBUG):
        found = probe(conn, credentials)
        with pytest.raises(ConnectorError) as caught:
            list(read_batches(conn, credentials, Source(path="*.parquet")))
    assert not found.ok
    return found.detail, caught.value


@pytest.mark.parametrize("wrong", ["secret", "key id"])
def test_a_wrong_secret_or_key_id_is_bad_credentials(
    guarded: GuardedS3, wrong: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = f"wrong-secret-{os.urandom(8).hex()}"
    key_id = guarded.reader.get("access_key_id") if wrong == "secret" else "AKIANOSUCHKEY0000000"
    credentials = Credentials({"access_key_id": str(key_id), "secret_access_key": secret})
    detail, error = _refusal(guarded, credentials, caplog)
    said = "SIGNATURE_DOES_NOT_MATCH" if wrong == "secret" else "INVALID_ACCESS_KEY_ID"
    start = f"connection 'guarded' (s3 at {guarded.endpoint} s3://{BUCKET}/crm/): bad credentials: "
    for text in (detail, error.message):
        assert text.startswith(start) and said in text, text
    assert error.details == {"connection": "guarded", "failed": "bad credentials"}
    shown = [detail, str(error), repr(error), str(error.details), str(error.to_dict())]
    shown += [record.getMessage() for record in caplog.records]
    assert not [text for text in shown if secret in text]


def test_a_key_without_access_is_permission_denied(
    guarded: GuardedS3, caplog: pytest.LogCaptureFixture
) -> None:
    """A real key of a user no policy lets read: not called bad credentials."""
    detail, error = _refusal(guarded, guarded.outsider, caplog)
    for text in (detail, error.message):
        assert "(s3 at " in text and "): permission denied: " in text and "ACCESS_DENIED" in text
    assert error.details == {"connection": "guarded", "failed": "permission denied"}
    secret = str(guarded.outsider.get("secret_access_key"))
    assert secret not in detail and secret not in repr(error)
