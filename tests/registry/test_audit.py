"""The audit log (``registry.audit``) on SQLite file, SQLite :memory: and PostgreSQL: recording,
filters and paging, retention, scrubbing of credentials, and the backlog kept while the database
cannot be written (made real by renaming the table away and back)."""

from __future__ import annotations

import logging

import pytest

from modelyard.errors import InvalidInput
from modelyard.registry import Registry
from modelyard.registry._audit import AuditLog
from modelyard.registry._db import Db
from modelyard.store import MetricsStore
from modelyard.store.sqlaccess import reading, sql, transaction

from .conftest import T0, MsClock

TOKEN = "myk_" + "Q" * 20 + "abc-_9" * 3
ACCESS = "mya_" + "z" * 43


def raw(store: MetricsStore) -> list[tuple[object, ...]]:
    with reading(store) as cur:
        cur.execute(sql(store, "SELECT * FROM audit_log ORDER BY seq"))
        return [tuple(row) for row in cur.fetchall()]


def rename(store: MetricsStore, old: str, new: str) -> None:
    transaction(store, lambda cur: cur.execute(f"ALTER TABLE {old} RENAME TO {new}"))


def test_record_and_list_newest_first(registry: Registry, clock: MsClock) -> None:
    first = registry.audit.record(
        "alice",
        "models.deploy",
        key_id="k1",
        object="churn",
        project_crn="crn:modelyard:project/p1",
        address="10.0.0.7",
        status=201,
        details={"replicas": 2},
    )
    assert first is not None
    assert (first.actor, first.action, first.object, first.outcome, first.status) == (
        "alice",
        "models.deploy",
        "churn",
        "ok",
        201,
    )
    assert first.at_ms == T0 and first.details == {"replicas": 2}
    clock.advance(1000)
    second = registry.audit.record("bob", "keys.create_key", outcome="denied", status=403)
    assert second is not None and second.seq > first.seq
    listed = registry.audit.list()
    assert listed == [second, first]
    assert listed[1].project_crn == "crn:modelyard:project/p1"
    assert listed[1].address == "10.0.0.7" and listed[1].key_id == "k1"
    assert listed[0].details == {} and listed[0].project_crn is None


def test_filters_and_paging(registry: Registry, clock: MsClock) -> None:
    p1, p2 = "crn:modelyard:project/a", "crn:modelyard:project/b"
    for i in range(10):
        registry.audit.record(
            "alice" if i % 2 else "bob",
            ["models.deploy", "models.scale", "keys.create_key", "models_x.y"][i % 4],
            project_crn=p1 if i < 6 else p2,
        )
        clock.advance(1000)
    audit = registry.audit
    assert len(audit.list()) == 10
    assert [e.project_crn for e in audit.list(project_crn=p2)] == [p2] * 4
    assert {e.actor for e in audit.list(actor="alice")} == {"alice"}
    assert len(audit.list(actor="alice")) == 5
    assert [e.at_ms for e in audit.list(since_ms=T0 + 7000)] == [T0 + 9000, T0 + 8000, T0 + 7000]
    assert [e.at_ms for e in audit.list(until_ms=T0 + 2000)] == [T0 + 1000, T0]
    # an action matches exactly, or as the group it starts ("models" is models.*, not models_x)
    assert {e.action for e in audit.list(action="models")} == {"models.deploy", "models.scale"}
    assert {e.action for e in audit.list(action="models.scale")} == {"models.scale"}
    assert audit.list(action="models_") == []
    both = audit.list(project_crn=p1, actor="bob", action="models.deploy")
    assert [(e.project_crn, e.actor, e.action) for e in both] == [(p1, "bob", "models.deploy")] * 2
    page = audit.list(limit=4)
    rest = audit.list(limit=100, before_seq=page[-1].seq)
    assert [e.seq for e in page + rest] == [e.seq for e in audit.list()]
    assert len(rest) == 6


def test_bad_arguments_name_the_value(registry: Registry) -> None:
    with pytest.raises(InvalidInput, match=r"outcome='maybe'.*ok, denied, failed"):
        registry.audit.record("alice", "x.y", outcome="maybe")
    with pytest.raises(InvalidInput, match="actor=''"):
        registry.audit.record("", "x.y")
    with pytest.raises(InvalidInput, match=r"limit=0 .*1 to 10000"):
        registry.audit.list(limit=0)
    with pytest.raises(InvalidInput, match="since_ms=-1"):
        registry.audit.list(since_ms=-1)
    with pytest.raises(InvalidInput, match="before_ms=None"):
        registry.audit.prune(None)  # type: ignore[arg-type]
    assert registry.audit.list() == []


def test_long_values_are_cut_not_refused(registry: Registry) -> None:
    entry = registry.audit.record("a" * 5000, "x.y", object="o" * 5000)
    assert entry is not None and len(entry.actor) == 200 and len(entry.object or "") == 1000


def test_prune_removes_only_older_entries(registry: Registry, clock: MsClock) -> None:
    for _ in range(5):
        registry.audit.record("alice", "models.deploy")
        clock.advance(1000)
    assert registry.audit.prune(T0 + 2000) == 2
    assert [e.at_ms for e in registry.audit.list()] == [T0 + 4000, T0 + 3000, T0 + 2000]
    assert registry.audit.prune(T0) == 0


def test_no_credential_is_ever_stored(registry: Registry, store: MetricsStore) -> None:
    registry.audit.record(
        "alice",
        "keys.create_key",
        object=f"key {TOKEN}",
        details={
            "token": TOKEN,
            "api_key": "plain-value",
            "Password": "hunter2hunter2",
            "nested": {"client_secret": "s3cr3t", "note": f"called with {ACCESS}", "n": 1},
            "headers": [f"Bearer {TOKEN}", "bearer abc"],
            "hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
            "model": "churn",
        },
    )
    entry = registry.audit.list()[0]
    assert entry.details == {
        "nested": {"note": "called with ***", "n": 1},
        "headers": ["***", "***"],
        "hash": "***",
        "model": "churn",
    }
    assert entry.object == "key ***"
    text = repr(raw(store))
    for secret in (TOKEN, ACCESS, "plain-value", "hunter2", "s3cr3t", "argon2id", "abc"):
        assert secret not in text, secret


def test_outage_keeps_a_backlog_written_on_the_next_record(
    registry: Registry, store: MetricsStore, clock: MsClock, caplog: pytest.LogCaptureFixture
) -> None:
    registry.audit.record("alice", "before")
    rename(store, "audit_log", "audit_log_away")
    caplog.set_level(logging.WARNING, "modelyard.audit")
    try:
        clock.advance(1000)
        assert registry.audit.record("alice", "during.one") is None
        clock.advance(1000)
        assert registry.audit.record("bob", "during.two", status=201) is None
        assert registry.audit.pending == 2
        warnings = [r for r in caplog.records if "cannot write" in r.getMessage()]
        assert len(warnings) == 1  # once per outage, not once per entry
    finally:
        rename(store, "audit_log_away", "audit_log")
    clock.advance(1000)
    after = registry.audit.record("carol", "after")
    assert after is not None and registry.audit.pending == 0
    listed = registry.audit.list()
    assert [(e.action, e.at_ms) for e in listed] == [
        ("after", T0 + 3000),
        ("during.two", T0 + 2000),
        ("during.one", T0 + 1000),
        ("before", T0),
    ]
    assert listed[1].status == 201 and listed[1].actor == "bob"
    assert any("is back" in r.getMessage() for r in caplog.records)


def test_backlog_is_bounded_oldest_dropped(store: MetricsStore, clock: MsClock) -> None:
    audit = AuditLog(Db(store), clock, backlog=3)
    rename(store, "audit_log", "audit_log_away")
    try:
        for i in range(5):
            assert audit.record("alice", f"a.{i}") is None
        assert audit.pending == 3
    finally:
        rename(store, "audit_log_away", "audit_log")
    audit.record("alice", "a.5")
    assert [e.action for e in audit.list()] == ["a.5", "a.4", "a.3", "a.2"]


def test_any_text_is_stored_and_huge_numbers_refused(registry: Registry) -> None:
    odd = "nul\x00 and a lone surrogate \udc80 and ünïcødé"
    entry = registry.audit.record(odd, "x.y", object=odd, details={odd: odd})
    assert entry is not None
    stored = registry.audit.list()[0]
    assert stored.actor.startswith("nul\ufffd and a lone surrogate ?") and "ünïcødé" in stored.actor
    assert stored.object == stored.actor and stored.details == {stored.actor: stored.actor}
    with pytest.raises(InvalidInput, match="before_seq=9223372036854775808 "):
        registry.audit.list(before_seq=2**63)
    with pytest.raises(InvalidInput, match="status="):
        registry.audit.record("alice", "x.y", status=10**30)


def test_a_waiting_entry_the_database_refuses_is_dropped_not_kept_forever(
    registry: Registry, store: MetricsStore
) -> None:
    rename(store, "audit_log", "audit_log_away")
    try:
        assert registry.audit.record("alice", "first") is None
    finally:
        rename(store, "audit_log_away", "audit_log")
    # (white box: an entry no database takes, as a future bug might make one)
    registry.audit._backlog.appendleft(
        (2**64, "x", None, "bad", None, None, None, "ok", None, "{}")
    )
    assert registry.audit.record("alice", "second") is not None
    assert registry.audit.pending == 0
    assert sorted(e.action for e in registry.audit.list()) == ["first", "second"]
    assert registry.audit.record("alice", "third") is not None
    assert len(registry.audit.list()) == 3
