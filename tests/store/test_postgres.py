"""PostgreSQL specifics: a server that is not there, and passwords kept out of messages."""

from __future__ import annotations

import pytest

from modelyard.errors import StoreUnavailable
from modelyard.store.postgres import PostgresStore


def test_an_unreachable_server_is_store_unavailable_without_the_password() -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    url = "postgresql://someone:s3cret@127.0.0.1:1/db"
    with pytest.raises(StoreUnavailable) as info:
        PostgresStore(url, connect_timeout=2)
    message = str(info.value)
    assert "127.0.0.1:1" in message and "MODELYARD_DATABASE_URL" in message
    assert "s3cret" not in message
