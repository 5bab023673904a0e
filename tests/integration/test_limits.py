"""Limits (``dynflow.Limit``) on all three databases: concurrency over two worlds,
first come first served, a sliding rate window, waiting without a worker, halt and
cancel of a waiting plan, and the errors of bad limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import pytest

from dynflow import (
    Action,
    Cancellable,
    ConfigurationError,
    ExecutionPlan,
    Limit,
    PlanningFailed,
    PlanResult,
    PlanState,
    Step,
    StepState,
    World,
)
from dynflow.testing import InThreadWorld, ManualClock
from tests.support import Box, eventually, registered_box

MakeWorld = Callable[..., World]


class LimitBox(Box):
    """Also: who holds each key now, the most at once, and the order of starts."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.now: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.order: list[str] = []

    def enter(self, limit_key: str, name: str) -> None:
        with self.lock:
            self.now[limit_key] = self.now.get(limit_key, 0) + 1
            self.most[limit_key] = max(self.most.get(limit_key, 0), self.now[limit_key])
            self.order.append(name)

    def leave(self, limit_key: str) -> None:
        with self.lock:
            self.now[limit_key] -= 1


BOXES: dict[str, LimitBox] = {}


@pytest.fixture
def box() -> Iterator[LimitBox]:
    yield from registered_box(LimitBox, BOXES)


class OnHost(Action):
    limits = [Limit("host:{host}", concurrency=1)]

    def plan(self, box: str, host: str, name: str) -> None:
        self.plan_self(box=box, host=host, name=name)

    def run(self, event: object = None) -> None:
        box = BOXES[self.input["box"]]
        key = f"host:{self.input['host']}"
        box.enter(key, self.input["name"])
        try:
            hook = box.hooks.get(self.input["name"])
            if hook is not None:
                hook(self)
        finally:
            box.leave(key)


class CancellableOnHost(OnHost, Cancellable):
    def cancel(self) -> None:
        pass


class Unlimited(Action):
    def plan(self, box: str, name: str) -> None:
        self.plan_self(box=box, name=name)

    def run(self, event: object = None) -> None:
        BOXES[self.input["box"]].runs[self.input["name"]] += 1


class Rated(Action):
    limits = [Limit("api", rate=2, per=10.0)]

    def plan(self, box: str, name: str) -> None:
        self.plan_self(box=box, name=name)

    def run(self, event: object = None) -> None:
        BOXES[self.input["box"]].order.append(self.input["name"])


class HoldsWhileSuspended(Action):
    limits = [Limit("{box}", concurrency=1)]

    def plan(self, box: str) -> None:
        self.plan_self(box=box)

    def run(self, event: object = None) -> None:
        if event is None:
            self.suspend()


def run_step(plan: ExecutionPlan) -> Step:
    return next(s for s in plan.steps.values() if s.phase == "run")


def load(world: World, plan_id: str) -> ExecutionPlan:
    return world.persistence.load_execution_plan(plan_id)


def waiting_for_limit(world: World, plan_id: str) -> bool:
    return run_step(load(world, plan_id)).state is StepState.WAITING and any(
        e.state == "waiting" for e in world.persistence.find_limits(execution_plan_id=plan_id)
    )


def test_concurrency_one_over_two_worlds(db_url: str, make_world: MakeWorld, box: LimitBox) -> None:
    first = make_world(db_url, pool_size=3)
    second = make_world(db_url, pool_size=3)
    gate = box.gate("a0")
    plans = [first.trigger(OnHost, box.key, "h1", "a0")]
    eventually(lambda: gate.entered.is_set())
    for n in range(1, 6):  # each in line before the next: the order is known
        triggered = (first, second)[n % 2].trigger(OnHost, box.key, "h1", f"a{n}")
        plans.append(triggered)
        eventually(partial(waiting_for_limit, first, triggered.execution_plan_id))
    entries = first.persistence.find_limits(key="host:h1")
    assert [(e.state, e.position) for e in entries] == [("holding", None)] + [
        ("waiting", n) for n in range(1, 6)
    ]
    assert [e.execution_plan_id for e in entries] == [p.execution_plan_id for p in plans]
    assert [e.world_id for e in entries] == [first.id] + [second.id, first.id] * 2 + [second.id]
    gate.open()
    for triggered in plans:
        assert triggered.finished.result(30).result is PlanResult.SUCCESS
    assert box.most == {"host:h1": 1}
    assert box.order == [f"a{n}" for n in range(6)]  # first come, first served
    eventually(lambda: first.persistence.find_limits() == [])  # released after the commit


def test_other_keys_do_not_wait(db_url: str, make_world: MakeWorld, box: LimitBox) -> None:
    world = make_world(db_url, pool_size=3)
    gate = box.gate("a")
    held = world.trigger(OnHost, box.key, "h1", "a")
    eventually(lambda: gate.entered.is_set())
    other = world.trigger(OnHost, box.key, "h2", "b")
    assert other.finished.result(30).result is PlanResult.SUCCESS
    gate.open()
    assert held.finished.result(30).result is PlanResult.SUCCESS


def test_a_waiting_step_holds_no_worker(db_url: str, make_world: MakeWorld, box: LimitBox) -> None:
    """pool_size=1: the holder is suspended (it holds the limit, not the worker); the
    step waiting for the limit does not block an unrelated plan either."""
    world = make_world(db_url, pool_size=1)
    holder = world.trigger(HoldsWhileSuspended, box.key)
    eventually(lambda: run_step(load(world, holder.execution_plan_id)).state is StepState.SUSPENDED)
    waiter = world.trigger(HoldsWhileSuspended, box.key)
    eventually(lambda: waiting_for_limit(world, waiter.execution_plan_id))
    unrelated = world.trigger(Unlimited, box.key, "u")
    assert unrelated.finished.result(30).result is PlanResult.SUCCESS
    assert [e.state for e in world.persistence.find_limits(key=box.key)] == ["holding", "waiting"]
    world.event(holder.execution_plan_id, run_step(load(world, holder.execution_plan_id)).id, "go")
    assert holder.finished.result(30).result is PlanResult.SUCCESS
    step_id = eventually(
        lambda: (
            (s := run_step(load(world, waiter.execution_plan_id))).state is StepState.SUSPENDED
            and s.id
        )
    )
    world.event(waiter.execution_plan_id, step_id, "go")
    assert waiter.finished.result(30).result is PlanResult.SUCCESS
    eventually(lambda: world.persistence.find_limits() == [])


def test_a_sliding_rate_window_on_the_worlds_clock(db_url: str, box: LimitBox) -> None:
    with InThreadWorld(db_url) as world:
        assert isinstance(world.clock, ManualClock)
        first = world.trigger(Rated, box.key, "r1")
        world.clock.advance(4)
        second = world.trigger(Rated, box.key, "r2")
        third = world.trigger(Rated, box.key, "r3")
        fourth = world.trigger(Rated, box.key, "r4")
        assert box.order == ["r1", "r2"]
        assert first.finished.done()
        assert second.finished.done()
        assert run_step(load(world, third.execution_plan_id)).state is StepState.WAITING
        assert [e.position for e in world.persistence.find_limits(key="api")] == [1, 2]
        world.clock.advance(5.9)  # r1 started 9.9 s ago: still in the window
        assert box.order == ["r1", "r2"]
        world.clock.advance(0.1)  # r1 leaves the window: one start is free
        assert box.order == ["r1", "r2", "r3"]
        assert not fourth.finished.done()
        world.clock.advance(4)  # r2 leaves it
        assert box.order == ["r1", "r2", "r3", "r4"]
        assert third.finished.result(0).result is PlanResult.SUCCESS
        assert fourth.finished.result(0).result is PlanResult.SUCCESS


def test_halting_a_plan_with_a_waiting_step_gives_up_its_place(
    db_url: str, make_world: MakeWorld, box: LimitBox
) -> None:
    world = make_world(db_url, pool_size=2)
    gate = box.gate("a")
    held = world.trigger(OnHost, box.key, "h1", "a")
    eventually(lambda: gate.entered.is_set())
    waiting = world.trigger(OnHost, box.key, "h1", "b")
    eventually(lambda: waiting_for_limit(world, waiting.execution_plan_id))
    after = world.trigger(OnHost, box.key, "h1", "c")
    eventually(lambda: waiting_for_limit(world, after.execution_plan_id))
    halted = world.halt(waiting.execution_plan_id).result(30)
    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert run_step(halted).state is StepState.ERROR
    eventually(  # released by the gate, after the halt's commit
        lambda: (
            [e.execution_plan_id for e in world.persistence.find_limits(key="host:h1")]
            == [held.execution_plan_id, after.execution_plan_id]
        )
    )
    gate.open()
    assert held.finished.result(30).result is PlanResult.SUCCESS
    assert after.finished.result(30).result is PlanResult.SUCCESS
    assert box.order == ["a", "c"]


def test_cancelling_a_plan_cancels_its_waiting_cancellable_step(
    db_url: str, make_world: MakeWorld, box: LimitBox
) -> None:
    world = make_world(db_url, pool_size=2)
    gate = box.gate("a")
    held = world.trigger(OnHost, box.key, "h1", "a")
    eventually(lambda: gate.entered.is_set())
    waiting = world.trigger(CancellableOnHost, box.key, "h1", "b")
    eventually(lambda: waiting_for_limit(world, waiting.execution_plan_id))
    for future in world.cancel(waiting.execution_plan_id):
        assert future.result(30) is True
    plan = waiting.finished.result(30)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.CANCELLED)
    assert run_step(plan).state is StepState.CANCELLED
    gate.open()
    assert held.finished.result(30).result is PlanResult.SUCCESS
    assert box.order == ["a"]
    eventually(lambda: world.persistence.find_limits() == [])


def test_bad_limits_are_refused_naming_the_action() -> None:
    with pytest.raises(ConfigurationError, match="concurrency=N, or rate=N"):
        Limit("k")
    with pytest.raises(ConfigurationError, match="concurrency=0"):
        Limit("k", concurrency=0)
    with pytest.raises(ConfigurationError, match="rate=0"):
        Limit("k", rate=0, per=1.0)
    with pytest.raises(ConfigurationError, match="a rate needs per"):
        Limit("k", rate=5)
    with pytest.raises(ConfigurationError, match="a rate needs per"):
        Limit("k", rate=5, per=0)
    with pytest.raises(ConfigurationError, match=r"BadList\.limits"):

        class BadList(Action):
            limits = Limit("k", concurrency=1)  # type: ignore[assignment]

    from pydantic import BaseModel

    class HostInput(BaseModel):
        host: str

    with pytest.raises(ConfigurationError, match=r"WrongField: the limit key 'x:\{name\}'"):

        class WrongField(Action):
            Input = HostInput
            limits = [Limit("x:{name}", concurrency=1)]


class NoSuchInput(Action):
    limits = [Limit("x:{missing}", concurrency=1)]

    def plan(self, host: str) -> None:
        self.plan_self(host=host)

    def run(self, event: object = None) -> None:
        pass


def test_a_key_naming_an_input_the_action_lacks_fails_planning(db_url: str) -> None:
    with InThreadWorld(db_url) as world:
        with pytest.raises(PlanningFailed) as failed:
            world.trigger(NoSuchInput, "h")
        assert str(failed.value).endswith(
            "NoSuchInput: the limit key 'x:{missing}' names input key(s) missing that the "
            "action's input does not have"
        )
        plan = load(world, failed.value.execution_plan_id)
        assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
