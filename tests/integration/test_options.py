"""Trigger options: ``world.options(key=..., after=..., priority=..., deadline=...,
labels=...)`` and its ``trigger``, ``plan`` and ``delay``, on every database."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import timedelta
from typing import Any

import pytest

from dynflow import (
    Action,
    Cancellable,
    ConfigurationError,
    ExecutionPlan,
    NotFound,
    PlanResult,
    PlanState,
    StepState,
    Triggered,
    World,
)
from dynflow.clock import ManualClock
from dynflow.executor.deadlines import GRACE
from dynflow.executor.messages import DEADLINE_EXCEEDED
from dynflow.executor.threaded import ThreadedExecutor
from tests.support import Gate, eventually, suspended_step

MakeWorld = Callable[..., World]
TIMEOUT = 20

_LOCK = threading.Lock()
#: run() calls in order, by the ``tag`` each test gives its plans
RAN: dict[str, list[str]] = {}
GATES: dict[str, Gate] = {}
BARRIERS: dict[str, threading.Barrier] = {}


def gate(tag: str) -> Gate:
    with _LOCK:
        return GATES.setdefault(tag, Gate())


class Note(Action):
    def plan(self, name: str, *, tag: str) -> None:
        self.plan_self(name=name, tag=tag)

    def run(self, event: Any = None) -> None:
        with _LOCK:
            RAN.setdefault(self.input["tag"], []).append(self.input["name"])


class Gated(Note):
    def run(self, event: Any = None) -> None:
        gate(self.input["tag"]).pass_through()
        super().run(event)


class Racing(Note):
    """Both worlds plan at once: each passed the key check before the other saved."""

    def plan(self, name: str, *, tag: str) -> None:
        BARRIERS[tag].wait(TIMEOUT)
        super().plan(name, tag=tag)


class Failing(Note):
    def run(self, event: Any = None) -> None:
        raise RuntimeError("the disk is full")


class Stubborn(Cancellable, Gated):
    """Cancellable, but its run never suspends to take the cancel: halted at the end."""


class Patient(Cancellable, Note):
    """Waits for an event; its cancel() stops it (the step ends cancelled)."""

    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()

    def cancel(self) -> None:
        self.output["cancelled"] = True


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex


def load(world: World, plan_id: str) -> ExecutionPlan:
    return world.persistence.load_execution_plan(plan_id)


def keyed(world: World, key: str) -> list[str]:
    return [p.id for p in world.persistence.find_execution_plans(filters={"key": key})]


# -- key ---------------------------------------------------------------------------------


def test_a_second_trigger_with_the_key_returns_the_first_plan(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    world = make_world(db_url)
    key = f"order-{tag}"

    first = world.options(key=key, labels={"team": "web"}).trigger(Note, "a", tag=tag)
    done = first.finished.result(TIMEOUT)
    second = world.options(key=key).trigger(Note, "b", tag=tag)

    assert second.execution_plan_id == first.execution_plan_id
    again = second.finished.result(TIMEOUT)
    assert (again.id, again.state, again.result) == (done.id, PlanState.STOPPED, PlanResult.SUCCESS)
    assert RAN[tag] == ["a"]  # b was never planned
    assert keyed(world, key) == [first.execution_plan_id]
    stored = load(world, first.execution_plan_id)
    assert (stored.key, stored.labels, stored.priority) == (key, {"team": "web"}, 0)
    assert world.options(key=key).plan(Note, "c", tag=tag).id == first.execution_plan_id
    assert world.options(key=key).delay(Note, 60, "d", tag=tag).id == first.execution_plan_id
    assert world.persistence.find_execution_plan_counts() == 1


def test_one_key_triggered_by_two_worlds_at_once_makes_one_plan(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    worlds = [make_world(db_url), make_world(db_url)]
    key = f"race-{tag}"
    BARRIERS[tag] = threading.Barrier(2)

    def race(world: World, name: str) -> Triggered:
        return world.options(key=key).trigger(Racing, name, tag=tag)

    with ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(race, w, n) for n, w in zip("ab", worlds, strict=True)]
        triggered = [c.result(TIMEOUT) for c in calls]

    assert triggered[0].execution_plan_id == triggered[1].execution_plan_id
    finished = [t.finished.result(TIMEOUT) for t in triggered]
    assert {(p.id, p.state, p.result) for p in finished} == {
        (triggered[0].execution_plan_id, PlanState.STOPPED, PlanResult.SUCCESS)
    }
    assert keyed(worlds[0], key) == [triggered[0].execution_plan_id]
    assert worlds[0].persistence.find_execution_plan_counts() == 1
    assert len(RAN[tag]) == 1


def test_the_key_is_unique_in_the_database(db_url: str, make_world: MakeWorld, tag: str) -> None:
    world = make_world(db_url)
    plan = world.options(key=tag).plan(Note, "a", tag=tag)
    copy = world.plan(Note, "b", tag=tag)
    copy.id, copy.key = str(uuid.uuid4()), tag

    from dynflow.errors import KeyTaken

    with pytest.raises(KeyTaken) as taken:
        world.persistence.save_new_plan(copy)
    assert taken.value.execution_plan_id == plan.id
    assert keyed(world, tag) == [plan.id]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"key": "k" * 256}, "at most 255"),
        ({"key": ""}, "non-empty"),
        ({"deadline": -1}, "deadline must be a number of seconds > 0"),
        ({"deadline": 0}, "deadline must be a number of seconds > 0"),
        ({"priority": "high"}, "priority must be an integer"),
        ({"priority": 2**40}, "32 bits"),
        ({"labels": {"a": 1}}, "labels must be a dict of str -> str"),
        ({"after": "not-a-list"}, "after must be a list"),
    ],
)
def test_bad_options_are_refused_at_the_call(
    sqlite_url: str, make_world: MakeWorld, options: dict[str, Any], message: str
) -> None:
    world = make_world(sqlite_url)
    with pytest.raises(ConfigurationError, match=message):
        world.options(**options)
    assert world.persistence.find_execution_plan_counts() == 0


# -- after -------------------------------------------------------------------------------


def test_a_plan_after_another_runs_once_it_succeeded(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    world = make_world(db_url)
    first = world.trigger(Gated, "a", tag=tag)
    second = world.options(after=[first.execution_plan_id]).trigger(Note, "b", tag=tag)

    waiting = load(world, second.execution_plan_id)
    assert (waiting.state, waiting.result) == (PlanState.SCHEDULED, PlanResult.PENDING)
    assert not second.finished.done()
    gate(tag).open()

    done = second.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert RAN[tag] == ["a", "b"]
    assert load(world, first.execution_plan_id).ended_at <= done.started_at  # type: ignore[operator]


def test_a_plan_after_a_failed_one_fails_without_running(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    world = make_world(db_url)
    first = world.trigger(Failing, "a", tag=tag)
    assert first.finished.result(TIMEOUT).state is PlanState.PAUSED
    second = world.options(after=[first.execution_plan_id]).trigger(Note, "b", tag=tag)
    assert load(world, second.execution_plan_id).state is PlanState.SCHEDULED  # paused: waits

    world.halt(first.execution_plan_id).result(TIMEOUT)

    done = second.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.ERROR)
    [error] = done.errors
    assert first.execution_plan_id in error.message
    assert "ended stopped/error" in error.message
    assert tag not in RAN


def test_after_a_plan_that_does_not_exist_is_refused(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    world = make_world(db_url)
    missing = str(uuid.uuid4())
    with pytest.raises(NotFound, match=missing):
        world.options(after=[missing]).trigger(Note, "b", tag=tag)
    with pytest.raises(ConfigurationError, match="cannot wait"):
        world.options(after=[world.plan(Note, "a", tag=tag).id]).plan(Note, "b", tag=tag)
    assert world.persistence.find_execution_plan_counts() == 1


def test_a_key_naming_a_plan_that_would_wait_for_itself_is_refused(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    world = make_world(db_url, executor=False)
    first = world.options(key=tag).plan(Note, "a", tag=tag)
    second = world.options(after=[first.id]).delay(Note, 3600, "b", tag=tag)

    with pytest.raises(ConfigurationError, match="cannot wait for itself"):
        world.options(key=tag, after=[first.id]).trigger(Note, "c", tag=tag)
    with pytest.raises(ConfigurationError, match="cycle"):
        world.options(key=tag, after=[second.id]).delay(Note, 1, "c", tag=tag)
    assert world.persistence.find_execution_plan_counts() == 2


def test_a_plan_waits_for_its_prerequisite_across_a_restart(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    client = make_world(db_url, executor=False)
    first = client.plan(Note, "a", tag=tag)  # nobody executes it yet
    second = client.options(after=[first.id]).trigger(Note, "b", tag=tag)
    client.terminate()
    assert load(make_world(db_url, executor=False), second.execution_plan_id).state is (
        PlanState.SCHEDULED
    )

    executor = make_world(db_url)  # recovers the planned plan; the other follows

    def stopped() -> bool:
        return load(executor, second.execution_plan_id).state is PlanState.STOPPED

    eventually(stopped, timeout=TIMEOUT)
    assert load(executor, second.execution_plan_id).result is PlanResult.SUCCESS
    assert RAN[tag] == ["a", "b"]


# -- priority ----------------------------------------------------------------------------


def test_higher_priority_steps_start_first_in_a_queue(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    world = make_world(db_url, pool_size=1)
    blocker = world.trigger(Gated, "blocker", tag=tag)  # holds the only worker
    eventually(lambda: load(world, blocker.execution_plan_id).state is PlanState.RUNNING)
    triggered = [
        world.options(priority=priority).trigger(Note, name, tag=tag)
        for name, priority in [("low", 0), ("high-1", 5), ("mid", 1), ("high-2", 5)]
    ]
    executor = world.executor
    assert isinstance(executor, ThreadedExecutor)
    eventually(lambda: executor.pools["default"].waiting() == 4, timeout=TIMEOUT)

    gate(tag).open()

    for t in triggered:
        assert t.finished.result(TIMEOUT).result is PlanResult.SUCCESS
    assert RAN[tag] == ["blocker", "high-1", "high-2", "mid", "low"]
    assert load(world, triggered[1].execution_plan_id).priority == 5


# -- deadline ----------------------------------------------------------------------------


def test_a_plan_past_its_deadline_is_cancelled_then_halted(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    clock = ManualClock()
    world = make_world(db_url, clock=clock)
    start = clock.utcnow()
    triggered = world.options(deadline=30).trigger(Stubborn, "a", tag=tag)
    plan_id = triggered.execution_plan_id
    assert load(world, plan_id).deadline_at == start + timedelta(seconds=30)
    eventually(lambda: load(world, plan_id).state is PlanState.RUNNING)

    clock.advance(29)
    assert not triggered.finished.done()
    clock.advance(1)  # cancel: the running step cannot take it (it never suspends)
    waited = 0.0
    while not triggered.finished.done():  # halted once the grace is over, not before
        clock.advance(0.5)
        waited += 0.5
        wait([triggered.finished], timeout=0.5)
        assert waited < 10 * GRACE, "never halted"
    assert waited >= GRACE

    halted = triggered.finished.result(TIMEOUT)
    gate(tag).open()
    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert halted.execution_history[-1].name == "deadline exceeded"
    [error] = halted.errors
    assert error.message == "deadline exceeded"


def test_a_halt_for_a_deadline_sent_to_the_executing_world_keeps_its_reason(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    executor = make_world(db_url)
    client = make_world(db_url, executor=False)
    triggered = client.trigger(Patient, "a", tag=tag)
    plan_id = triggered.execution_plan_id
    suspended_step(executor, plan_id, timeout=TIMEOUT)
    halted = client.control.halt(plan_id, DEADLINE_EXCEEDED).result(TIMEOUT)
    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert halted.execution_history[-1].name == "deadline exceeded"
    assert [e.world_id for e in halted.execution_history[-1:]] == [executor.id]


def test_a_plan_its_deadline_cancels_ends_error_with_the_deadline_in_its_history(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    clock = ManualClock()
    world = make_world(db_url, clock=clock)
    triggered = world.options(deadline=30).trigger(Patient, "a", tag=tag)
    plan_id = triggered.execution_plan_id
    eventually(lambda: load(world, plan_id).steps[2].state is StepState.SUSPENDED)
    clock.advance(30)  # cancel: the suspended step takes it and ends cancelled
    plan = triggered.finished.result(TIMEOUT)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert plan.steps[2].state is StepState.CANCELLED
    assert plan.entry_action.output == {"cancelled": True}
    names = [entry.name for entry in plan.execution_history]
    assert "deadline exceeded" in names
    assert names[-1] == "finish execution"
    plain = world.trigger(Patient, "b", tag=tag)  # a cancel without a deadline
    eventually(lambda: load(world, plain.execution_plan_id).steps[2].state is StepState.SUSPENDED)
    [delivered] = world.cancel(plain.execution_plan_id)
    assert delivered.result(TIMEOUT) is True
    assert plain.finished.result(TIMEOUT).result is PlanResult.CANCELLED


def test_idle_plans_past_their_deadline_are_halted(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    clock = ManualClock()
    world = make_world(db_url, clock=clock)
    paused = world.options(deadline=10).trigger(Failing, "a", tag=tag)
    assert paused.finished.result(TIMEOUT).state is PlanState.PAUSED
    scheduled = world.options(deadline=10).delay(Note, 3600, "b", tag=tag)

    clock.advance(11)  # the next look for delayed plans checks deadlines too

    def stopped(plan_id: str) -> ExecutionPlan | None:
        plan = load(world, plan_id)
        return plan if plan.state is PlanState.STOPPED else None

    halted = eventually(lambda: stopped(paused.execution_plan_id), timeout=TIMEOUT)
    assert halted.result is PlanResult.ERROR
    assert halted.execution_history[-1].name == "deadline exceeded"
    expired = eventually(lambda: stopped(scheduled.id), timeout=TIMEOUT)
    assert expired.result is PlanResult.ERROR
    assert "deadline exceeded" in expired.errors[0].message
    assert tag not in RAN


# -- code version and labels -------------------------------------------------------------


def test_plans_carry_the_code_version_of_the_world_that_planned_them(
    db_url: str, make_world: MakeWorld, tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    versioned = make_world(db_url, code_version="2026.11-a")
    plan = versioned.plan(Note, "a", tag=tag)
    delayed = versioned.options(labels={"k": "v"}).delay(Note, 60, "b", tag=tag)
    monkeypatch.setenv("DYNFLOW_CODE_VERSION", "from-env")
    other = make_world(db_url, executor=False)

    assert load(versioned, plan.id).code_version == "2026.11-a"
    assert load(versioned, delayed.id).code_version == "2026.11-a"
    assert load(versioned, delayed.id).labels == {"k": "v"}
    assert other.plan(Note, "c", tag=tag).code_version == "from-env"
    found = versioned.persistence.find_execution_plans(filters={"code_version": "from-env"})
    assert len(found) == 1
    with pytest.raises(ConfigurationError, match="code_version"):
        World(db_url, code_version="x" * 65)
