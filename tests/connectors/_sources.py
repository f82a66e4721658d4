"""Real sources for the connector tests: a fresh PostgreSQL schema and MariaDB database per test
(created and dropped here), and helpers to make connections to them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from typing import Any

import psycopg
import pymysql
import pytest

from _services import mariadb_database, postgres_schema
from modelyard.connectors import Connection

PROJECT = "crn:modelyard:project/00000000-0000-0000-0000-000000000017"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def connection(kind: str, name: str = "src", **options: Any) -> Connection:
    secrets = options.pop("secrets", {})
    return Connection(PROJECT, name, kind, options, secrets)


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    with postgres_schema(postgres_url, "h2") as schema:
        yield schema


def pg(sql: str, params: Any = None) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql, params)


@pytest.fixture
def mysql_db() -> Iterator[str]:
    with mariadb_database("h2") as database:
        yield database


def mysql(database: str, *statements: str, many: tuple[str, list[Any]] | None = None) -> None:
    with (
        closing(pymysql.connect(**MYSQL, database=database, autocommit=True)) as conn,
        conn.cursor() as cur,
    ):
        for statement in statements:
            cur.execute(statement)
        if many:
            cur.executemany(*many)
