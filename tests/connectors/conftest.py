"""Fixtures of the connector tests (tests/connectors/_sources.py): a fresh PostgreSQL schema
and MariaDB database per test."""

from __future__ import annotations

from ._sources import mysql_db, pg_schema

__all__ = ["mysql_db", "pg_schema"]
