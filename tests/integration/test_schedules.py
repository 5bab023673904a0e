"""Schedules: a plan at each due time of a cron expression, exactly one across worlds,
driven by the world's clock; overlap, catch-up, time zones, pause/resume/delete."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dynflow import Action, DynflowError, NotFound, PlanResult, PlanState, World
from dynflow.clock import ManualClock
from dynflow.services.schedules import next_times
from dynflow.testing import InThreadWorld

MakeWorld = Callable[..., World]
#: 30 s before a whole minute: "* * * * *" is first due 30 s after the start
START = datetime(2026, 11, 29, 10, 0, 30, tzinfo=UTC)

RAN: Counter[str] = Counter()
_LOCK = threading.Lock()


class Report(Action):
    def plan(self, tag: str, *, size: int = 1) -> None:
        self.plan_self(tag=tag, size=size)

    def run(self, event: Any = None) -> None:
        with _LOCK:
            RAN[self.input["tag"]] += 1


class Endless(Action):
    """Stays suspended: its plan never stops."""

    def plan(self, tag: str) -> None:
        self.plan_self(tag=tag)

    def run(self, event: Any = None) -> None:
        self.suspend()


@pytest.fixture
def name() -> str:
    return f"report-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def inline(db_url: str) -> Iterator[InThreadWorld]:
    world = InThreadWorld(db_url, clock=ManualClock(utc_start=START), delayed_interval=10)
    yield world
    world.terminate()


def plans_of(world: World, name: str) -> dict[str, Any]:
    """The schedule's plans by key (``name@due_time``)."""
    found = world.persistence.find_execution_plans(per_page=10_000)
    return {p.key: p for p in found if p.key is not None and p.key.startswith(f"{name}@")}


def key(name: str, minute: int, hour: int = 10) -> str:
    return f"{name}@{datetime(2026, 11, 29, hour, minute, tzinfo=UTC).isoformat()}"


def test_a_schedule_triggers_one_plan_per_due_time(inline: InThreadWorld, name: str) -> None:
    schedule = inline.schedule(name, "* * * * *", Report, name, size=3)
    assert schedule.next_run_at == datetime(2026, 11, 29, 10, 1, tzinfo=UTC)
    inline.clock.advance(29)
    assert plans_of(inline, name) == {}
    inline.clock.advance(1)
    assert list(plans_of(inline, name)) == [key(name, 1)]
    inline.clock.advance(120)
    plans = plans_of(inline, name)
    assert sorted(plans) == [key(name, 1), key(name, 2), key(name, 3)]
    assert all(p.result is PlanResult.SUCCESS for p in plans.values())
    assert plans[key(name, 2)].entry_action.input == {"tag": name, "size": 3}
    [listed] = [s for s in inline.schedules() if s.name == name]
    assert listed.next_run_at == datetime(2026, 11, 29, 10, 4, tzinfo=UTC)
    assert listed.last_plan_id == plans[key(name, 3)].id
    assert RAN[name] == 3


def test_two_worlds_trigger_exactly_one_plan_per_due_time(db_url: str, name: str) -> None:
    worlds = [
        InThreadWorld(db_url, clock=ManualClock(utc_start=START), delayed_interval=5)
        for _ in range(2)
    ]
    try:
        worlds[0].schedule(name, "* * * * *", Report, name)
        for _ in range(5 * 60 // 2):  # five minutes, the worlds taking turns
            for world in worlds:
                world.clock.advance(2)
        plans = plans_of(worlds[0], name)
        assert sorted(plans) == [key(name, m) for m in range(1, 6)]
        assert RAN[name] == 5
    finally:
        for world in worlds:
            world.terminate()


def test_a_world_handling_a_due_time_another_world_handled_makes_no_second_plan(
    db_url: str, name: str
) -> None:
    """Two worlds read the same due schedule at once: the plan's key (name@due_time)
    makes the slower one's trigger return the plan the faster one made."""
    first, second = (
        InThreadWorld(db_url, clock=ManualClock(utc_start=START), delayed_interval=600)
        for _ in range(2)
    )
    try:
        first.schedule(name, "* * * * *", Report, name)
        for world in (first, second):
            world.clock.advance(30)  # 10:01:00, no look yet (every 600 s)
        now = second.clock.utcnow()
        [stale] = second.persistence.schedules.due(now, 10)  # read before the first acts
        assert first.scheduler.check() == 1
        second.scheduler._run(stale, now)
        plans = plans_of(first, name)
        assert list(plans) == [key(name, 1)]
        assert RAN[name] == 1
        [schedule] = first.schedules()
        assert schedule.next_run_at == datetime(2026, 11, 29, 10, 2, tzinfo=UTC)
        assert schedule.last_plan_id == plans[key(name, 1)].id
    finally:
        first.terminate()
        second.terminate()


def test_missed_due_times_run_once_without_catch_up(
    db_url: str, make_world: MakeWorld, name: str
) -> None:
    client = make_world(db_url, executor=False, clock=ManualClock(utc_start=START))
    client.schedule(name, "* * * * *", Report, name)  # no executor for five minutes
    later = InThreadWorld(db_url, clock=ManualClock(utc_start=START + timedelta(minutes=5)))
    try:
        later.clock.advance(0)
        assert list(plans_of(later, name)) == [key(name, 5)]  # only the latest missed
        later.clock.advance(60)
        assert sorted(plans_of(later, name)) == [key(name, 5), key(name, 6)]
    finally:
        later.terminate()


def test_catch_up_runs_every_missed_due_time(db_url: str, make_world: MakeWorld, name: str) -> None:
    client = make_world(db_url, executor=False, clock=ManualClock(utc_start=START))
    client.schedule(name, "* * * * *", Report, name, catch_up=True)
    later = InThreadWorld(db_url, clock=ManualClock(utc_start=START + timedelta(minutes=5)))
    try:
        later.clock.advance(0)
        assert sorted(plans_of(later, name)) == [key(name, m) for m in range(1, 6)]
    finally:
        later.terminate()


def test_overlap_skip_waits_for_the_previous_plan_allow_does_not(
    inline: InThreadWorld, name: str
) -> None:
    inline.schedule(name, "* * * * *", Endless, name)  # overlap="skip"
    inline.clock.advance(30 + 180)
    plans = plans_of(inline, name)
    assert list(plans) == [key(name, 1)]  # 10:02, 10:03, 10:04 passed over
    assert plans[key(name, 1)].state is PlanState.RUNNING
    inline.halt(plans[key(name, 1)].id).result(10)
    inline.clock.advance(60)
    assert sorted(plans_of(inline, name)) == [key(name, 1), key(name, 5)]

    allowed = f"{name}-allow"
    inline.schedule(allowed, "* * * * *", Endless, allowed, overlap="allow")
    inline.clock.advance(120)
    assert len(plans_of(inline, allowed)) == 2


def test_pause_resume_and_delete(inline: InThreadWorld, name: str) -> None:
    inline.schedule(name, "*/2 * * * *", Report, name)
    inline.scheduler.pause(name)
    inline.clock.advance(300)  # paused over 10:02 and 10:04
    assert plans_of(inline, name) == {}
    resumed = inline.scheduler.resume(name)
    assert not resumed.paused
    assert resumed.next_run_at == datetime(2026, 11, 29, 10, 6, tzinfo=UTC)  # not made up
    inline.clock.advance(30)
    assert list(plans_of(inline, name)) == [key(name, 6)]
    assert inline.unschedule(name) is True
    assert inline.unschedule(name) is False
    inline.clock.advance(600)
    assert list(plans_of(inline, name)) == [key(name, 6)]  # its plans stay, no new ones
    with pytest.raises(NotFound, match="no schedule"):
        inline.scheduler.pause(name)


def test_schedule_replaces_one_of_the_same_name(inline: InThreadWorld, name: str) -> None:
    inline.schedule(name, "0 * * * *", Report, name)
    inline.schedule(name, "*/5 * * * *", Report, name, timezone="Europe/Prague")
    [schedule] = [s for s in inline.schedules() if s.name == name]
    assert (schedule.cron, schedule.timezone) == ("*/5 * * * *", "Europe/Prague")
    assert schedule.next_run_at == datetime(2026, 11, 29, 10, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"cron": "61 * * * *"}, "bad cron expression '61 \\* \\* \\* \\*'"),
        ({"cron": "* * * *"}, "use the 5 fields"),
        ({"cron": "@hourly"}, "use the 5 fields"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"overlap": "queue"}, "overlap must be 'skip' or 'allow'"),
        ({"name": "x" * 201}, "1 to 200 characters"),
        ({"name": ""}, "1 to 200 characters"),
        ({"kwargs": {"size": object()}}, "schedule .* argument 'size'"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(
    inline: InThreadWorld, name: str, arguments: dict[str, Any], message: str
) -> None:
    call: dict[str, Any] = {"name": name, "cron": "* * * * *", "timezone": "UTC"}
    call.update(arguments)
    extra = call.pop("kwargs", {})
    with pytest.raises(DynflowError, match=message):
        inline.schedule(call.pop("name"), call.pop("cron"), Report, name, **call, **extra)
    assert inline.schedules() == []


def test_due_times_follow_the_time_zone_across_daylight_saving() -> None:
    prague = "Europe/Prague"
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist that day:
    # it runs when the clock jumps past it (03:00 CEST), as cron does
    spring = next_times("30 2 * * *", prague, datetime(2026, 3, 28, 12, 0, tzinfo=UTC), 3)
    assert spring == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 03:00 CEST
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),  # 02:30 CEST
        datetime(2026, 3, 31, 0, 30, tzinfo=UTC),
    ]
    nine = next_times("0 9 * * *", prague, datetime(2026, 3, 28, 12, 0, tzinfo=UTC), count=2)
    assert nine == [
        datetime(2026, 3, 29, 7, 0, tzinfo=UTC),  # 09:00 CEST
        datetime(2026, 3, 30, 7, 0, tzinfo=UTC),
    ]
    # 2026-10-25: 02:30 happens twice (CEST, then CET): it runs once, the first time
    autumn = next_times("30 2 * * *", prague, datetime(2026, 10, 24, 12, 0, tzinfo=UTC), 2)
    assert autumn == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),  # 02:30 CET
    ]
