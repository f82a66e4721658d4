"""The store's SQL seam (modelyard.store.sqlaccess) that the registry is built on."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.errors import Conflict, InvalidInput
from modelyard.store import MetricsStore
from modelyard.store.sqlaccess import dialect, reading, sql, transaction

INSERT = (
    "INSERT INTO api_keys (id, name, key_hash, prefix, role, created_ms) VALUES (?, ?, ?, ?, ?, ?)"
)


def count(store: MetricsStore) -> int:
    with reading(store) as cur:
        cur.execute("SELECT COUNT(*) FROM api_keys")
        return int(cur.fetchone()[0])


def test_a_transaction_commits_and_returns_what_fn_returns(store: MetricsStore) -> None:
    def insert(cur: Any) -> str:
        cur.execute(sql(store, INSERT), ("k1", "n", "h1", "p", "user", 1))
        return "done"

    assert transaction(store, insert) == "done"
    assert count(store) == 1


def test_an_error_in_fn_rolls_back_and_reaches_the_caller_unchanged(store: MetricsStore) -> None:
    def insert_then_fail(cur: Any) -> None:
        cur.execute(sql(store, INSERT), ("k1", "n", "h1", "p", "user", 1))
        raise Conflict("changed my mind")

    with pytest.raises(Conflict, match="changed my mind"):
        transaction(store, insert_then_fail)
    assert count(store) == 0


def test_placeholders_and_dialect_follow_the_backend(store: MetricsStore) -> None:
    text = "SELECT id FROM api_keys WHERE id = ? AND name = ?"
    if store.backend == "postgres":
        assert dialect(store) == "postgres"
        assert sql(store, text) == "SELECT id FROM api_keys WHERE id = %s AND name = %s"
    else:
        assert dialect(store) == "sqlite"
        assert sql(store, text) == text
    with reading(store) as cur:
        cur.execute(sql(store, text), ("nobody", "none"))
        assert cur.fetchall() == []


def test_only_sql_stores_are_accepted() -> None:
    for call in (
        lambda s: transaction(s, lambda cur: None),
        lambda s: reading(s),
        lambda s: sql(s, "SELECT 1"),
        dialect,
    ):
        with pytest.raises(InvalidInput, match=r"SQLiteStore .* or PostgresStore"):
            call("not a store")
