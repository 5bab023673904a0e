"""Delayed plans: ``world.delay`` stores a ``scheduled`` plan that an executor world plans
and runs when its time comes, or fails once ``start_before`` has passed.

Time is a ManualClock's: ``InThreadWorld`` runs everything in the test's thread when
the clock is advanced; threaded worlds get a ManualClock of their own."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from dynflow import (
    Action,
    ConfigurationError,
    ExecutionError,
    ExecutionPlan,
    NotFound,
    NotSerializable,
    PlanningFailed,
    PlanResult,
    PlanState,
    StepState,
    World,
)
from dynflow.clock import ManualClock
from dynflow.coordinator import EXECUTION_LOCK
from dynflow.testing import InThreadWorld
from tests.support import eventually

MakeWorld = Callable[..., World]
TIMEOUT = 10

#: plan() and run() calls, by the ``tag`` each test gives its plans
PLANNED: Counter[str] = Counter()
RAN: Counter[str] = Counter()
SEEN: dict[str, Any] = {}
_LOCK = threading.Lock()


class Greet(Action):
    def plan(self, name: str, *, tag: str, **extra: Any) -> None:
        with _LOCK:
            PLANNED[tag] += 1
        SEEN[tag] = {"name": name, **extra}
        self.plan_self(name=name, tag=tag)

    def run(self, event: Any = None) -> None:
        with _LOCK:
            RAN[self.input["tag"]] += 1
        self.output["greeting"] = f"hello {self.input['name']}"


class Labelled(Greet):
    label = "Say hello later"


class Unplannable(Action):
    def plan(self, *, tag: str) -> None:
        with _LOCK:
            PLANNED[tag] += 1
        raise RuntimeError("no capacity left in the cluster")


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def inline(db_url: str) -> Iterator[InThreadWorld]:
    """An executor world running in the test's thread, its clock moved by the test."""
    world = InThreadWorld(db_url)
    yield world
    world.terminate()


def load(world: World, plan_id: str) -> ExecutionPlan:
    return world.persistence.load_execution_plan(plan_id)


def waiting(world: World) -> list[str]:
    return [d.execution_plan_id for d in world.delayed.find_delayed_plans()]


def locks(world: World) -> list[str]:
    return [lock.id for lock in world.coordinator.find_locks(lock_class=EXECUTION_LOCK)]


def assert_ran_once(world: World, plan_id: str, tag: str) -> ExecutionPlan:
    plan = load(world, plan_id)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert (PLANNED[tag], RAN[tag]) == (1, 1)
    assert plan.entry_action.output == {"greeting": "hello web-1"}
    assert [name for _, name, _ in plan.execution_history] == [
        "start execution",
        "finish execution",
    ]
    assert plan_id not in waiting(world)
    assert plan_id not in locks(world)
    return plan


# -- delaying ---------------------------------------------------------------------------


def test_delay_stores_a_scheduled_plan_with_its_arguments(inline: InThreadWorld, tag: str) -> None:
    before = inline.clock.utcnow()

    plan = inline.delay(Labelled, 60, "web-1", tag=tag, size=[1, 2], meta={"ünï": None})

    assert (plan.state, plan.result) == (PlanState.SCHEDULED, PlanResult.PENDING)
    stored = load(inline, plan.id)
    for seen in (plan, stored):
        assert (seen.state, seen.result, seen.label) == (
            PlanState.SCHEDULED,
            PlanResult.PENDING,
            "Say hello later",
        )
        assert seen.started_at is None
        assert seen.ended_at is None
        assert seen.entry_action.action_class == Labelled.class_name()
        assert [(s.id, s.phase, s.state) for s in seen.steps.values()] == [
            (1, "plan", StepState.PENDING)
        ]
    [delayed] = inline.delayed.find_delayed_plans()
    assert delayed.execution_plan_id == plan.id
    assert delayed.label == "Say hello later"
    assert delayed.start_at == before + timedelta(seconds=60)
    assert delayed.start_before is None
    assert delayed.action_class == Labelled.class_name()
    assert delayed.args == ["web-1"]
    assert delayed.kwargs == {"tag": tag, "size": [1, 2], "meta": {"ünï": None}}
    assert PLANNED[tag] == 0  # nothing is planned before its time


def test_a_delayed_plan_runs_when_its_time_comes_not_before(
    inline: InThreadWorld, tag: str
) -> None:
    plan = inline.delay(Greet, 60, "web-1", tag=tag, size=(1, 2))

    inline.clock.advance(59.5)
    assert load(inline, plan.id).state is PlanState.SCHEDULED
    assert PLANNED[tag] == 0
    assert waiting(inline) == [plan.id]

    inline.clock.advance(0.5)

    done = assert_ran_once(inline, plan.id, tag)
    assert done.id == plan.id  # planned under the id it was delayed with
    assert done.label == "Greet"
    assert SEEN[tag] == {"name": "web-1", "size": [1, 2]}  # stored as JSON: a tuple is a list
    assert done.steps[1].state is StepState.SUCCESS
    assert done.started_at is not None

    inline.clock.advance(30)
    assert (PLANNED[tag], RAN[tag]) == (1, 1)


def test_start_at_may_be_an_aware_datetime(inline: InThreadWorld, tag: str) -> None:
    start = (inline.clock.utcnow() + timedelta(seconds=30)).astimezone(timezone(timedelta(hours=2)))

    plan = inline.delay(Greet, start, "web-1", tag=tag)

    assert inline.delayed.find_delayed_plans()[0].start_at == start
    inline.clock.advance(29)
    assert load(inline, plan.id).state is PlanState.SCHEDULED
    inline.clock.advance(1)
    assert_ran_once(inline, plan.id, tag)


def test_a_delay_in_the_past_runs_at_once(inline: InThreadWorld, tag: str) -> None:
    inline.clock.advance(0)  # the world's first look; the next one is 1s away
    plan = inline.delay(Greet, inline.clock.utcnow() - timedelta(hours=1), "web-1", tag=tag)

    inline.clock.advance(0)  # the clock's next turn: no waiting for the next look

    assert_ran_once(inline, plan.id, tag)


def test_a_delay_in_the_past_does_not_wait_for_the_next_look(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    world = make_world(db_url, delayed_interval=3600)  # real time: only the exact timer

    plan = world.delay(Greet, -5, "web-1", tag=tag)

    eventually(lambda: load(world, plan.id).state is PlanState.STOPPED, timeout=TIMEOUT)
    assert_ran_once(world, plan.id, tag)


def test_plans_delayed_by_a_client_world_are_run_by_an_executor_world(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    start = datetime.now(UTC)
    client = make_world(db_url, executor=False, clock=ManualClock(utc_start=start))
    assert isinstance(client.clock, ManualClock)
    executor = InThreadWorld(db_url, delayed_interval=5, clock=ManualClock(utc_start=start))
    try:
        executor.clock.advance(0)  # its first look, at start: nothing is due
        plan = client.delay(Greet, 1, "web-1", tag=tag)
        client.clock.advance(60)  # a client world never starts plans
        assert load(client, plan.id).state is PlanState.SCHEDULED

        executor.clock.advance(4.9)  # due since 1s, but this world has no timer for it
        assert load(client, plan.id).state is PlanState.SCHEDULED
        executor.clock.advance(0.1)  # its periodic look

        assert_ran_once(client, plan.id, tag)
    finally:
        executor.terminate()


def test_an_executor_world_started_late_runs_what_came_due_meanwhile(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    client = make_world(db_url, executor=False)
    plan = client.delay(Greet, -60, "web-1", tag=tag)

    executor = InThreadWorld(db_url, delayed_interval=3600)
    try:
        executor.clock.advance(0)  # its first look, at start
        assert_ran_once(client, plan.id, tag)
    finally:
        executor.terminate()


# -- start_before --------------------------------------------------------------------


def test_past_start_before_the_plan_fails_instead_of_starting(
    inline: InThreadWorld, tag: str
) -> None:
    now = inline.clock.utcnow()
    deadline = now - timedelta(minutes=1)
    plan = inline.delay(Greet, now - timedelta(minutes=5), "web-1", tag=tag, start_before=deadline)

    inline.clock.advance(0)

    failed = load(inline, plan.id)
    assert (failed.state, failed.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert failed.ended_at is not None
    assert PLANNED[tag] == 0
    assert RAN[tag] == 0
    [error] = failed.errors
    assert failed.steps[1].state is StepState.ERROR
    assert failed.steps[1].error == error
    assert "could not be started before" in error.message
    assert deadline.isoformat() in error.message
    assert waiting(inline) == []
    assert locks(inline) == []


def test_start_before_after_start_at_lets_it_run(inline: InThreadWorld, tag: str) -> None:
    plan = inline.delay(Greet, 10, "web-1", tag=tag, start_before=20)
    assert inline.delayed.find_delayed_plans()[0].start_before == (
        inline.clock.utcnow() + timedelta(seconds=20)
    )

    inline.clock.advance(10)

    assert_ran_once(inline, plan.id, tag)


def test_an_executor_starting_after_start_before_fails_the_plan(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    """Nobody ran it in time: the executor that finds it late fails it."""
    start = datetime.now(UTC)
    client = make_world(db_url, executor=False, clock=ManualClock(utc_start=start))
    plan = client.delay(Greet, 10, "web-1", tag=tag, start_before=60)

    late = InThreadWorld(db_url, clock=ManualClock(utc_start=start + timedelta(seconds=61)))
    try:
        late.clock.advance(0)
    finally:
        late.terminate()

    failed = load(client, plan.id)
    assert (failed.state, failed.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert "could not be started before" in failed.errors[0].message
    assert PLANNED[tag] == 0


# -- planning at the due time -----------------------------------------------------------


def test_a_plan_that_fails_planning_when_due_stops_with_the_error(
    inline: InThreadWorld, tag: str
) -> None:
    plan = inline.delay(Unplannable, 5, tag=tag)

    inline.clock.advance(5)  # the failure is the plan's, not the clock's

    failed = load(inline, plan.id)
    assert (failed.state, failed.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert PLANNED[tag] == 1
    [error] = failed.errors
    assert error.exception_class == "RuntimeError"
    assert error.message == "no capacity left in the cluster"
    assert failed.steps[1].error == error
    assert waiting(inline) == []
    assert locks(inline) == []
    inline.clock.advance(60)
    assert PLANNED[tag] == 1  # never tried again


# -- cancel ---------------------------------------------------------------------------


def test_cancel_stops_a_scheduled_plan_for_good(inline: InThreadWorld, tag: str) -> None:
    plan = inline.delay(Greet, 60, "web-1", tag=tag)

    cancelled = inline.delayed.cancel(plan.id)

    assert (cancelled.state, cancelled.result) == (PlanState.STOPPED, PlanResult.CANCELLED)
    assert cancelled.ended_at is not None
    assert cancelled.steps[1].state is StepState.CANCELLED
    assert load(inline, plan.id).result is PlanResult.CANCELLED
    assert waiting(inline) == []
    assert locks(inline) == []
    inline.clock.advance(90)
    assert PLANNED[tag] == 0
    assert RAN[tag] == 0
    assert load(inline, plan.id).result is PlanResult.CANCELLED


def test_cancel_works_from_a_client_world(
    db_url: str, make_world: MakeWorld, inline: InThreadWorld, tag: str
) -> None:
    client = make_world(db_url, executor=False)
    plan = inline.delay(Greet, 60, "web-1", tag=tag)

    assert client.delayed.cancel(plan.id).result is PlanResult.CANCELLED

    inline.clock.advance(60)
    assert PLANNED[tag] == 0


def test_only_a_scheduled_plan_can_be_cancelled(inline: InThreadWorld, tag: str) -> None:
    ran = inline.delay(Greet, 1, "web-1", tag=tag)
    inline.clock.advance(1)
    planned = inline.plan(Greet, "web-2", tag=tag)

    for plan_id, state in [(ran.id, "stopped/success"), (planned.id, "planned/pending")]:
        with pytest.raises(ExecutionError, match=f"is {state}: only a scheduled plan"):
            inline.delayed.cancel(plan_id)
    with pytest.raises(NotFound):
        inline.delayed.cancel(str(uuid.uuid4()))
    assert load(inline, planned.id).state is PlanState.PLANNED


def test_a_plan_held_by_another_world_is_not_cancelled(inline: InThreadWorld, tag: str) -> None:
    plan = inline.delay(Greet, 60, "web-1", tag=tag)
    inline.coordinator.acquire(EXECUTION_LOCK, plan.id)  # as if being started right now

    with pytest.raises(ExecutionError, match=f"being started by world {inline.id}"):
        inline.delayed.cancel(plan.id)

    assert load(inline, plan.id).state is PlanState.SCHEDULED


# -- run now ----------------------------------------------------------------------------


def test_run_now_starts_a_scheduled_plan_before_its_time(inline: InThreadWorld, tag: str) -> None:
    plan = inline.delay(Greet, 60, "web-1", tag=tag)

    finished = inline.delayed.run_now(plan.id).result(TIMEOUT)

    assert (finished.id, finished.state, finished.result) == (
        plan.id,
        PlanState.STOPPED,
        PlanResult.SUCCESS,
    )
    assert_ran_once(inline, plan.id, tag)
    inline.clock.advance(90)
    assert RAN[tag] == 1


def test_run_now_on_a_threaded_world(db_url: str, make_world: MakeWorld, tag: str) -> None:
    world = make_world(db_url, clock=ManualClock())
    plan = world.delay(Greet, 3600, "web-1", tag=tag)

    finished = world.delayed.run_now(plan.id).result(TIMEOUT)

    assert finished.result is PlanResult.SUCCESS
    assert_ran_once(world, plan.id, tag)


def test_run_now_ignores_start_before(inline: InThreadWorld, tag: str) -> None:
    """An operator asking for it now wants it now."""
    plan = inline.delay(Greet, -60, "web-1", tag=tag, start_before=-30)

    assert inline.delayed.run_now(plan.id).result(TIMEOUT).result is PlanResult.SUCCESS


def test_run_now_reports_a_planning_failure(inline: InThreadWorld, tag: str) -> None:
    plan = inline.delay(Unplannable, 60, tag=tag)

    with pytest.raises(PlanningFailed, match="no capacity left") as failure:
        inline.delayed.run_now(plan.id).result(TIMEOUT)

    assert failure.value.execution_plan_id == plan.id
    assert load(inline, plan.id).result is PlanResult.ERROR
    assert waiting(inline) == []
    assert locks(inline) == []


def test_run_now_refuses_what_is_not_scheduled(
    db_url: str, make_world: MakeWorld, inline: InThreadWorld, tag: str
) -> None:
    cancelled = inline.delay(Greet, 60, "web-1", tag=tag)
    inline.delayed.cancel(cancelled.id)
    with pytest.raises(NotFound, match="not a delayed plan"):
        inline.delayed.run_now(cancelled.id).result(TIMEOUT)

    client = make_world(db_url, executor=False)
    waiting_plan = inline.delay(Greet, 60, "web-1", tag=tag)
    with pytest.raises(ConfigurationError, match="no executor"):
        client.delayed.run_now(waiting_plan.id).result(TIMEOUT)
    assert load(inline, waiting_plan.id).state is PlanState.SCHEDULED


# -- refused requests ----------------------------------------------------------------------


class Unserialisable:
    pass


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        ((Unserialisable(),), {}, "delayed Greet argument 0"),
        (("web-1",), {"when": datetime.now(UTC)}, "delayed Greet argument 'when'"),
        (("web-1",), {"opts": {"x": [1, {2}]}}, "delayed Greet argument 'opts'['x'][1]"),
        (("web-1",), {"ratio": float("nan")}, "delayed Greet argument 'ratio'"),
    ],
)
def test_arguments_that_are_not_json_are_refused(
    inline: InThreadWorld, args: tuple[Any, ...], kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(NotSerializable) as refused:
        inline.delay(Greet, 60, *args, **kwargs)

    assert str(refused.value).startswith(named + ":")
    assert inline.persistence.find_execution_plan_counts() == 0
    assert waiting(inline) == []


@pytest.mark.parametrize(
    ("start_at", "start_before", "message"),
    [
        ("soon", None, "start_at must be an aware datetime or a number of seconds"),
        (True, None, "start_at must be"),
        (float("inf"), None, "start_at must be"),
        (datetime(2030, 1, 1), None, "naive datetime"),
        (60, datetime(2030, 1, 1), "start_before .* is a naive datetime"),
        (60, 30, "start_before .* is earlier than start_at"),
    ],
)
def test_bad_times_are_refused(
    inline: InThreadWorld, start_at: Any, start_before: Any, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        inline.delay(Greet, start_at, "web-1", tag="x", start_before=start_before)
    assert inline.persistence.find_execution_plan_counts() == 0


def test_only_action_classes_can_be_delayed(inline: InThreadWorld) -> None:
    with pytest.raises(ConfigurationError, match="expected an Action subclass"):
        inline.delay(dict, 60)  # type: ignore[arg-type]


def test_a_terminated_world_delays_nothing(db_url: str, tag: str) -> None:
    world = InThreadWorld(db_url)
    world.terminate()
    with pytest.raises(ExecutionError, match="terminated"):
        world.delay(Greet, 60, "web-1", tag=tag)


# -- several worlds -----------------------------------------------------------------------


def test_two_executor_worlds_run_each_due_plan_once(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    start = datetime.now(UTC)
    worlds = [make_world(db_url, clock=ManualClock(utc_start=start), pool_size=2) for _ in range(2)]
    tags = [f"{tag}-{i}" for i in range(12)]
    plans = [worlds[i % 2].delay(Greet, 5, "web-1", tag=t) for i, t in enumerate(tags)]
    together = threading.Barrier(len(worlds))

    def advance(world: World) -> None:
        together.wait()
        assert isinstance(world.clock, ManualClock)
        world.clock.advance(5)  # both look at the same due plans at once

    with ThreadPoolExecutor(len(worlds)) as pool:
        list(pool.map(advance, worlds))

    for plan, plan_tag in zip(plans, tags, strict=True):

        def stopped(p: ExecutionPlan = plan) -> bool:
            return load(worlds[0], p.id).state is PlanState.STOPPED

        eventually(stopped)
        assert_ran_once(worlds[0], plan.id, plan_tag)
        starts = [w for _, name, w in load(worlds[0], plan.id).execution_history if "start" in name]
        assert len(starts) == 1
        assert starts[0] in {w.id for w in worlds}


def test_world_execute_cancel_and_halt_route_scheduled_plans(
    db_url: str, make_world: Callable[..., World]
) -> None:
    clock = ManualClock()
    world = make_world(db_url, clock=clock)
    now = world.delay(Greet, 3600, "now", tag="route-now")
    plan = world.execute(now.id).result(timeout=10)
    assert (plan.state, plan.result) == ("stopped", "success")

    cancelled = world.delay(Greet, 3600, "cancel", tag="route-cancel")
    (future,) = world.cancel(cancelled.id)
    assert (future.result(timeout=5).state, future.result().result) == ("stopped", "cancelled")

    halted = world.delay(Greet, 3600, "halt", tag="route-halt")
    stopped = world.halt(halted.id).result(timeout=5)
    assert (stopped.state, stopped.result) == ("stopped", "cancelled")
    assert world.delayed.find_delayed_plans() == []
