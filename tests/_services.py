"""The connector tests' services on loopback: MariaDB (3306), NATS with JetStream (4222) and
RabbitMQ (5672). ``.ci/run`` starts those installed; a test that needs one skips without it,
saying why, except under CI, where it fails (as the PostgreSQL tests do, tests/conftest.py)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import psycopg
import pymysql
import pytest

__all__ = ["MARIADB", "mariadb", "mariadb_database", "postgres_schema", "require_service"]

#: MariaDB's root on loopback, with autocommit (what the machine and CI run).
MARIADB: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 3306,
    "user": "root",
    "password": "",
    "autocommit": True,
}


def require_service(port: int, name: str) -> None:
    """Skip the test (fail it under CI) when nothing answers on 127.0.0.1:``port``: the
    connector tests' MariaDB (3306), NATS (4222) and RabbitMQ (5672), which ``.ci/run`` starts."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
    except OSError as exc:
        message = f"{name} at 127.0.0.1:{port} is not reachable ({exc})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI requires it (.ci/run starts it when installed)")
        pytest.skip(message)


def mariadb(**options: Any) -> pymysql.connections.Connection[Any]:
    """A root connection to MariaDB (skipped, or failed under CI, when it is not running)."""
    require_service(3306, "MariaDB")
    return pymysql.connect(**{**MARIADB, "connect_timeout": 3, **options})


@contextmanager
def mariadb_database(prefix: str) -> Iterator[str]:
    """A MariaDB database of a unique name for one test, dropped after, whatever it did."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with closing(mariadb()) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    try:
        yield name
    finally:
        with closing(mariadb()) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE `{name}`")


@contextmanager
def postgres_schema(postgres_url: str, prefix: str) -> Iterator[str]:
    """A PostgreSQL schema of a unique name for one test (at ``postgres_url``, the
    ``postgres_url`` fixture's), dropped with all it holds after, whatever it did."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
