"""A schema per installation: a missing one is named, with the SQL that creates it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from modelyard.errors import StoreUnavailable
from modelyard.store import open_store


@pytest.fixture
def missing_schema(postgres_url: str) -> Iterator[str]:
    """A schema name that does not exist yet (dropped after the test if it was created)."""
    import psycopg

    name = f"t_missing_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.mark.postgres
def test_a_missing_schema_is_named_with_the_sql_that_creates_it(
    postgres_url: str, missing_schema: str
) -> None:
    import psycopg

    sep = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{sep}options=-csearch_path%3D{missing_schema}"
    with pytest.raises(StoreUnavailable) as info:
        open_store(url)
    message = str(info.value)
    assert f"schema '{missing_schema}' does not exist" in message, message
    assert "check the server and retry" not in message
    assert info.value.details["schema"] == missing_schema
    found = re.search(r"CREATE SCHEMA \S+ AUTHORIZATION \S+", message)
    assert found is not None, message
    # The SQL the message gives is what fixes it.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(found.group(0))
    with open_store(url) as store:
        assert store.backend == "postgres"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s",
            (missing_schema,),
        ).fetchone()
    assert tables is not None and tables[0] > 0  # the tables went into that schema
