"""ConnectionSpec: every kind's options and credentials, converted from the CLI's text, and each
refusal naming the value and what is accepted; a credential given as an option is refused
without quoting it."""

from __future__ import annotations

import pytest

from modelyard.connectors import KINDS as CONNECTOR_KINDS
from modelyard.errors import InvalidInput
from modelyard.specs.connection import KINDS, OPTIONS, REQUIRED, SECRETS, ConnectionSpec

SECRET_VALUE = "s3cr3t-Value-9"


def _spec(
    kind: str, options: dict[str, object], secrets: dict[str, str] | None = None
) -> ConnectionSpec:
    return ConnectionSpec(name="crm", kind=kind, options=options, secrets=secrets or {})


def test_kinds_agree_with_the_connectors() -> None:
    assert KINDS == CONNECTOR_KINDS
    assert set(OPTIONS) == set(REQUIRED) == set(SECRETS) == set(KINDS)


@pytest.mark.parametrize(
    ("kind", "options", "secrets", "expected"),
    [
        (
            "postgresql",
            {"host": "db", "port": "5432", "database": "crm", "sslmode": "require"},
            {"password": "CRM_PASSWORD"},
            {"host": "db", "port": 5432, "database": "crm", "sslmode": "require"},
        ),
        (
            "mysql",
            {"host": "db", "database": "crm", "ssl": "yes", "connect_timeout": "5"},
            {"password": "CRM_PASSWORD"},
            {"host": "db", "database": "crm", "ssl": True, "connect_timeout": 5},
        ),
        ("sqlite", {"path": "/data/labels.db"}, {}, {"path": "/data/labels.db"}),
        ("files", {"path": "/data/drop"}, {}, {"path": "/data/drop"}),
        (
            "s3",
            {"bucket": "labels", "prefix": "crm/", "endpoint_url": "http://127.0.0.1:9000"},
            {"access_key_id": "S3_KEY", "secret_access_key": "S3_SECRET"},
            {"bucket": "labels", "prefix": "crm/", "endpoint_url": "http://127.0.0.1:9000"},
        ),
        (
            "nats",
            {"servers": "nats://a:4222, nats://b:4222", "stream": "LABELS"},
            {"token": "NATS_TOKEN"},
            {"servers": ["nats://a:4222", "nats://b:4222"], "stream": "LABELS"},
        ),
        (
            "rabbitmq",
            {"host": "mq", "port": 5672, "queue": "labels", "user": "guest"},
            {"password": "MQ_PASSWORD"},
            {"host": "mq", "port": 5672, "queue": "labels", "user": "guest"},
        ),
    ],
)
def test_each_kind_accepts_its_options(
    kind: str, options: dict[str, object], secrets: dict[str, str], expected: dict[str, object]
) -> None:
    spec = _spec(kind, options, secrets)
    assert spec.options == expected
    assert spec.secrets == secrets


@pytest.mark.parametrize("option", ["password", "PASSWORD", "token", "secret_access_key"])
def test_a_credential_as_an_option_is_refused_without_its_value(option: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _spec("postgresql", {"host": "db", "database": "crm", option: SECRET_VALUE})
    message = str(caught.value)
    assert SECRET_VALUE not in message
    assert f"option {option!r}" in message and "modelyard secrets set" in message


def test_a_password_inside_a_url_is_refused_without_its_value() -> None:
    with pytest.raises(InvalidInput) as caught:
        _spec("nats", {"servers": f"nats://me:{SECRET_VALUE}@host:4222", "stream": "L"})
    assert SECRET_VALUE not in str(caught.value)
    assert "password in its URL" in str(caught.value)
    with pytest.raises(InvalidInput) as caught:
        _spec("s3", {"bucket": "abc", "endpoint_url": f"http://k:{SECRET_VALUE}@h:9000"})
    assert SECRET_VALUE not in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "options", "secrets", "expected"),
    [
        ("postgresql", {"host": "db"}, {}, "needs option 'database'"),
        (
            "postgresql",
            {"host": "db", "database": "d", "colour": "red"},
            {},
            "'colour' is not accepted",
        ),
        ("postgresql", {"host": "db", "database": "d", "port": "99999"}, {}, "option port=99999"),
        ("postgresql", {"host": "db", "database": "d", "sslmode": "maybe"}, {}, "verify-full"),
        ("postgresql", {"host": "db", "database": "d"}, {"token": "T"}, "credential 'token'"),
        (
            "postgresql",
            {"host": "db", "database": "d"},
            {"password": "lower"},
            "secret name 'lower'",
        ),
        ("sqlite", {"path": "relative/x.db"}, {}, "an absolute path"),
        ("files", {"path": "/data/../etc"}, {}, "without '..'"),
        ("files", {"path": "/data"}, {"password": "P"}, "none (this kind takes no credentials)"),
        ("s3", {"bucket": "A_B"}, {}, "a bucket name"),
        ("s3", {"bucket": "abc", "prefix": "../x"}, {}, "without '..'"),
        ("s3", {"bucket": "abc", "endpoint_url": "ftp://h"}, {}, "a URL such as"),
        ("nats", {"servers": "http://h", "stream": "S"}, {}, "nats://host:port"),
        (
            "nats",
            {"servers": "nats://h", "stream": "S"},
            {"token": "T", "user": "U"},
            "one of them",
        ),
        ("rabbitmq", {"host": "mq"}, {}, "needs option 'queue'"),
    ],
)
def test_refusals_name_the_value_and_what_is_accepted(
    kind: str, options: dict[str, object], secrets: dict[str, str], expected: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        _spec(kind, options, secrets)
    assert expected in str(caught.value)


@pytest.mark.parametrize("name", ["", "CRM", "crm_db", "-crm", "x" * 64, 3])
def test_names_follow_the_url_rule(name: object) -> None:
    with pytest.raises(InvalidInput, match="connection name"):
        ConnectionSpec(name=name, kind="files", options={"path": "/d"})


def test_unknown_kind_names_the_kinds() -> None:
    with pytest.raises(
        InvalidInput, match="kind='oracle' is not accepted; expected one of postgresql"
    ):
        ConnectionSpec(name="crm", kind="oracle", options={})


def test_changed_checks_the_whole_again() -> None:
    spec = _spec("postgresql", {"host": "db", "database": "crm"})
    assert spec.changed({"host": "db2", "database": "crm"}, None).options["host"] == "db2"
    assert spec.changed(None, {"password": "PW"}).secrets == {"password": "PW"}
    with pytest.raises(InvalidInput, match="needs option 'host'"):
        spec.changed({"database": "crm"}, None)


def test_stray_fields_and_shapes_are_named_not_quoted() -> None:
    with pytest.raises(InvalidInput) as caught:
        ConnectionSpec.parse({"name": "crm", "kind": "files", "password": SECRET_VALUE})
    assert "field 'password' is not accepted" in str(caught.value)
    assert SECRET_VALUE not in str(caught.value)
    with pytest.raises(InvalidInput) as caught:
        ConnectionSpec.parse({"name": "crm", "kind": "files", "options": f"pw={SECRET_VALUE}"})
    assert "options is a str" in str(caught.value) and SECRET_VALUE not in str(caught.value)
