"""The limit store itself on all three databases: a grant pass reads a key's first
waiters only (its line read in part when the key has room for more), and keeps
first come first served across a step's keys; plans and worlds are released as sets."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dynflow import World
from dynflow.persistence.limits import LimitKey, LimitOutcome, LimitRequest, LimitStore
from dynflow.persistence.sql import limit_lines

MakeWorld = Callable[..., World]
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class Caller:
    """One registered world speaking to the store directly."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.store: LimitStore = world.persistence.limits

    def exchange(self, now: datetime = NOW, **changes: Any) -> LimitOutcome:
        return self.store.exchange(
            self.world.id, self.world.coordinator.registration(), now, **changes
        )


def request(*keys: LimitKey) -> LimitRequest:
    return LimitRequest(str(uuid.uuid4()), 1, keys)


def worlds(db_url: str, make_world: MakeWorld, count: int) -> list[Caller]:
    return [Caller(make_world(db_url, executor=False)) for _ in range(count)]


def test_a_long_line_is_read_by_its_head_and_granted_over_passes_in_order(
    db_url: str, make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limit_lines, "HEAD_CAP", 3)
    monkeypatch.setattr(limit_lines, "LONG_LINE", 4)
    monkeypatch.setattr(limit_lines, "_LONG", set())
    (a,) = worlds(db_url, make_world, 1)
    key = LimitKey("wide", concurrency=8)
    line = [request(key) for _ in range(20)]
    slot = [(r.execution_plan_id, 1) for r in line]
    first = a.exchange(acquire=line)  # a short line so far: read whole, 8 start
    assert first.granted == slot[:8]
    assert "wide" in limit_lines._LONG  # from now on: its first rows only
    released = a.exchange(release=slot[:8])
    assert released.granted == slot[8:11]  # three read, three started: maybe more
    assert released.more
    granted = list(released.granted)
    while True:
        outcome = a.exchange(retry=["wide"])
        granted += outcome.granted
        if not outcome.more:
            break
    assert granted == slot[8:16]  # 8 at once, in order
    waiting = [e.execution_plan_id for e in a.world.persistence.find_limits(key="wide")]
    assert waiting[8:] == [r.execution_plan_id for r in line[16:]]


def test_a_step_waiting_on_two_keys_is_not_passed_on_either(
    db_url: str, make_world: MakeWorld
) -> None:
    (a,) = worlds(db_url, make_world, 1)
    ka, kb = LimitKey("a", concurrency=1), LimitKey("b", concurrency=1)
    holder, both, only_b = request(ka), request(ka, kb), request(kb)
    assert a.exchange(acquire=[holder]).granted == [(holder.execution_plan_id, 1)]
    # b has room, but the step first in b's line waits for a: nobody passes it
    assert a.exchange(acquire=[both, only_b]).granted == []
    assert a.exchange(retry=["a", "b"]).granted == []
    released = a.exchange(release=[(holder.execution_plan_id, 1)])
    assert released.granted == [(both.execution_plan_id, 1)]
    released = a.exchange(release=[(both.execution_plan_id, 1)])
    assert released.granted == [(only_b.execution_plan_id, 1)]


def test_releasing_plans_keeps_a_rate_holders_start_in_its_window(
    db_url: str, make_world: MakeWorld
) -> None:
    (a,) = worlds(db_url, make_world, 1)
    key = LimitKey("api", rate=1, per=60.0)
    first, second = request(key), request(key)
    assert a.exchange(acquire=[first]).granted == [(first.execution_plan_id, 1)]
    outcome = a.exchange(acquire=[second], drop_plans=[first.execution_plan_id])
    assert outcome.granted == []
    assert outcome.due == {"api": NOW + timedelta(seconds=60)}
    assert a.exchange(NOW + timedelta(seconds=30), retry=["api"]).granted == []
    later = a.exchange(NOW + timedelta(seconds=61), retry=["api"])
    assert later.granted == [(second.execution_plan_id, 1)]


def test_dropping_many_plans_and_a_dead_world_wakes_the_next_in_line(
    db_url: str, make_world: MakeWorld
) -> None:
    a, b = worlds(db_url, make_world, 2)
    key = LimitKey("one", concurrency=1)
    held = request(key)
    mine = [request(key) for _ in range(1200)]  # more plans than one statement names
    theirs = request(key)
    assert a.exchange(acquire=[held, *mine]).granted == [(held.execution_plan_id, 1)]
    assert b.exchange(acquire=[theirs]).granted == []
    a.exchange(drop_plans=[r.execution_plan_id for r in mine])
    assert [e.world_id for e in a.world.persistence.find_limits(key="one")] == [
        a.world.id,
        b.world.id,
    ]
    assert a.store.drop_world(a.world.id) == {b.world.id}
    assert a.world.persistence.find_limits(key="one")[0].state == "waiting"
    assert b.exchange(retry=["one"]).granted == [(theirs.execution_plan_id, 1)]


def test_a_world_no_longer_registered_is_fenced(db_url: str, make_world: MakeWorld) -> None:
    (a,) = worlds(db_url, make_world, 1)
    outcome = a.store.exchange(a.world.id, "stale", NOW, acquire=[request(LimitKey("k", 1))])
    assert outcome.fenced
    assert a.world.persistence.find_limits(key="k") == []
