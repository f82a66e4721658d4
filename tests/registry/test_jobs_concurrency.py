"""Two "servers" (Registry objects on separate store objects over one SQLite file or one
PostgreSQL database) racing from threads: every (job, slot) claim and every take-over of an
expired claim has exactly one winner, a slot starts once, and racing pipeline changes cannot
close a cycle that neither saw."""

from __future__ import annotations

from typing import Any

from _backends import open_stores
from _threads import run_together
from modelyard.errors import Conflict, InvalidInput
from modelyard.registry import Registry, RunState
from modelyard.specs import JobSpec

from .conftest import T0, MsClock, StoreOpener

PROJECT = "/srv/projects/churn"
LEASE = 60_000
SLOTS = 12


def test_racing_claims_of_one_slot_have_exactly_one_winner(opener: StoreOpener) -> None:
    with open_stores(opener, 2) as stores:
        servers = [Registry(store) for store in stores]
        job = servers[0].create_job(
            JobSpec(name="race", project=PROJECT, script="monitor.py", every_ms=60_000)
        )
        for k in range(SLOTS):
            slot = T0 + k * 60_000
            # Two threads per server, as a scheduler and a retrying runner might.
            results = run_together(
                [
                    lambda server=server, owner=owner, slot=slot: server.claim_slot(
                        job.id, slot, 1, owner, LEASE
                    )
                    for server, owner in (
                        (servers[0], "a1"),
                        (servers[1], "b1"),
                        (servers[0], "a2"),
                        (servers[1], "b2"),
                    )
                ]
            )
            assert sorted(results, key=str) == [False, False, False, True], results
            claim = servers[1].slot_claim(job.id, slot, 1)
            winner = ("a1", "b1", "a2", "b2")[results.index(True)]
            assert claim is not None and claim.owner == winner
        assert servers[0].last_slot(job.id) == T0 + (SLOTS - 1) * 60_000


def test_racing_take_overs_of_an_expired_claim_have_one_winner(opener: StoreOpener) -> None:
    clock = MsClock(T0)
    with open_stores(opener, 3) as stores:
        servers = [Registry(store, clock=clock) for store in stores]
        job = servers[0].create_job(
            JobSpec(name="take", project=PROJECT, script="monitor.py", every_ms=60_000)
        )
        for k in range(SLOTS):
            assert servers[0].claim_slot(job.id, T0 + k, 1, "dead", LEASE)
        clock.advance(LEASE)  # the dead server's leases lapse; its runs never started
        for k in range(SLOTS):
            results = run_together(
                [
                    lambda server=server, owner=owner, slot=T0 + k: server.claim_slot(
                        job.id, slot, 1, owner, LEASE
                    )
                    for server, owner in ((servers[1], "b"), (servers[2], "c"))
                ]
            )
            assert sorted(results) == [False, True], results
            claim = servers[0].slot_claim(job.id, T0 + k, 1)
            assert claim is not None and claim.owner == ("b", "c")[results.index(True)]


def test_two_servers_starting_runs_of_one_slot_start_one(opener: StoreOpener) -> None:
    clock = MsClock(T0)
    with open_stores(opener, 2) as stores:
        servers = [Registry(store, clock=clock) for store in stores]
        job = servers[0].create_job(
            JobSpec(name="start", project=PROJECT, script="monitor.py", every_ms=60_000)
        )
        for k in range(SLOTS):
            assert servers[0].claim_slot(job.id, T0 + k, 1, "a", LEASE)
            runs = [server.create_run(job.id, T0 + k, 1, "schedule") for server in servers]

            def start(server: Registry, run_id: str) -> Any:
                return server.update_run(run_id, state="running").state

            results = run_together(
                [lambda s=s, r=r: start(s, r.id) for s, r in zip(servers, runs, strict=True)]
            )
            started = [r for r in results if r is RunState.RUNNING]
            refused = [r for r in results if isinstance(r, Conflict)]
            assert (len(started), len(refused)) == (1, 1), results


def test_racing_after_links_cannot_close_a_cycle(opener: StoreOpener) -> None:
    with open_stores(opener, 2) as stores:
        servers = [Registry(store) for store in stores]
        for name in ("root", "left", "right"):
            servers[0].create_job(
                JobSpec(name=name, project=PROJECT, script="monitor.py", manual=True)
            )
        for _ in range(4):
            results = run_together(
                [
                    lambda: servers[0].update_job("left", after="right"),
                    lambda: servers[1].update_job("right", after="left"),
                ]
            )
            refused = [r for r in results if isinstance(r, InvalidInput)]
            assert len(refused) == 1, results
            assert "cycle" in str(refused[0])
            # Reset for the next round.
            for name in ("left", "right"):
                servers[0].update_job(name, manual=True)
