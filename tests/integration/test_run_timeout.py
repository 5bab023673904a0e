"""``run_timeout``: an attempt that runs too long fails with ``StepTimeout`` (retried
if ``Retry.on`` lists it), its late result is discarded, a stuck thread's slot is
given back, and an ``async def run`` is cancelled."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dynflow import (
    Action,
    ExecutionPlan,
    PlanResult,
    PlanState,
    Retry,
    Step,
    StepState,
    StepTimeout,
    World,
)
from dynflow.clock import ManualClock
from dynflow.executor.threaded import ThreadedExecutor
from dynflow.testing import InThreadWorld
from tests.support import Gate, eventually

TIMEOUT_CLASS = "dynflow.errors.StepTimeout"
RUNS: Counter[str] = Counter()
#: per test key: a gate the first run waits at (threaded tests)
GATES: dict[str, Gate] = {}
CANCELLED: set[str] = set()


@pytest.fixture
def key() -> Iterator[str]:
    name = str(uuid.uuid4())
    yield name
    gate = GATES.pop(name, None)
    if gate is not None:
        gate.open()


class Overrunning(Action):
    """Its first run takes 31 s of the world's (manual) clock."""

    run_timeout = 30.0

    def plan(self, key: str) -> None:
        self.plan_self(key=key)

    def run(self, event: object = None) -> None:
        RUNS[self.input["key"]] += 1
        self.output["run"] = RUNS[self.input["key"]]
        if RUNS[self.input["key"]] == 1:
            clock = self.world.clock
            assert isinstance(clock, ManualClock)
            clock.advance(31)


class OverrunningRetried(Overrunning):
    retry = Retry(attempts=2, backoff=5.0, jitter=0.0, on=(StepTimeout,))


class Stuck(Action):
    """Its first run waits at the test's gate, far past run_timeout."""

    run_timeout = 0.2
    retry = Retry(attempts=2, backoff=0.0, jitter=0.0, on=(StepTimeout,))

    def plan(self, key: str) -> None:
        self.plan_self(key=key)

    def run(self, event: object = None) -> None:
        RUNS[self.input["key"]] += 1
        self.output["run"] = RUNS[self.input["key"]]
        if RUNS[self.input["key"]] == 1:
            GATES[self.input["key"]].pass_through()


class Sleepy(Action):
    run_timeout = 0.2

    def plan(self, key: str) -> None:
        self.plan_self(key=key)

    async def run(self, event: object = None) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            CANCELLED.add(self.input["key"])
            raise


def run_step(plan: ExecutionPlan) -> Step:
    return next(s for s in plan.steps.values() if s.phase == "run")


def output(plan: ExecutionPlan) -> dict[str, Any]:
    return plan.entry_action.output


def test_an_attempt_past_run_timeout_fails_and_its_late_result_is_discarded(
    db_url: str, key: str
) -> None:
    with InThreadWorld(db_url) as world:
        plan = world.trigger(Overrunning, key).finished.result(0)
        step = run_step(plan)
        assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
        assert step.state == StepState.ERROR
        assert step.error is not None
        assert step.error.exception_class == TIMEOUT_CLASS
        assert "run_timeout of 30 s" in step.error.message
        assert "run" not in output(plan)  # the late result never reached the plan
        stored = world.persistence.load_execution_plan(plan.id)
        assert run_step(stored).state == StepState.ERROR
        assert "run" not in output(stored)


def test_a_timed_out_attempt_is_retried_when_retry_lists_step_timeout(
    db_url: str, key: str
) -> None:
    with InThreadWorld(db_url) as world:
        clock = world.clock
        assert isinstance(clock, ManualClock)
        triggered = world.trigger(OverrunningRetried, key)
        step = run_step(world.persistence.load_execution_plan(triggered.execution_plan_id))
        assert (step.state, step.attempts) == (StepState.WAITING, 1)
        assert step.error is not None
        assert step.error.exception_class == TIMEOUT_CLASS
        clock.advance(5)
        plan = triggered.finished.result(0)
        step = run_step(plan)
        assert (plan.result, step.attempts, output(plan)["run"]) == (PlanResult.SUCCESS, 2, 2)
        assert [e.exception_class for e in step.errors] == [TIMEOUT_CLASS]


def test_a_stuck_thread_gives_its_slot_back_and_its_late_result_is_ignored(
    db_url: str, key: str, make_world: Callable[..., World]
) -> None:
    gate = GATES[key] = Gate()
    world = make_world(db_url, pool_size=1)
    assert isinstance(world.executor, ThreadedExecutor)
    pool = world.executor.pools["default"]
    triggered = world.trigger(Stuck, key)
    # the one worker is stuck at the gate; the retry runs on the thread that replaced it
    plan = triggered.finished.result(10)
    step = run_step(plan)
    assert gate.entered.is_set()
    assert not gate.opened.is_set()
    assert (plan.result, step.attempts, output(plan)["run"]) == (PlanResult.SUCCESS, 2, 2)
    assert [e.exception_class for e in step.errors] == [TIMEOUT_CLASS]
    assert pool.threads() == 2  # the stuck one and its replacement

    gate.open()  # the stuck run returns: its result is discarded, its thread ends
    eventually(lambda: pool.threads() == 1)
    stored = world.persistence.load_execution_plan(plan.id)
    assert (stored.result, output(stored)["run"]) == (PlanResult.SUCCESS, 2)


def test_the_extra_threads_are_bounded_by_the_pool_size(
    db_url: str, key: str, make_world: Callable[..., World]
) -> None:
    other = str(uuid.uuid4())
    first, second = GATES[key], GATES[other] = Gate(), Gate()
    try:
        world = make_world(db_url, pool_size=1)
        assert isinstance(world.executor, ThreadedExecutor)
        pool = world.executor.pools["default"]
        assert world.trigger(Stuck, key).finished.result(10).result == PlanResult.SUCCESS
        # the second plan's first run gets stuck on the replacement thread; the bound
        # (one extra thread for a pool of one) is reached: no third thread
        triggered = world.trigger(Stuck, other)
        second.entered.wait(10)
        plan_id = triggered.execution_plan_id
        eventually(lambda: run_step(world.persistence.load_execution_plan(plan_id)).attempts == 2)
        assert pool.threads() == 2
        assert not triggered.finished.done()  # its retry waits for a thread

        first.open()  # the first stuck thread ends: the pool is back to one thread
        eventually(lambda: pool.threads() == 1)
        assert not triggered.finished.done()
        second.open()  # its late result is dropped; the thread runs the retry
        plan = triggered.finished.result(10)
        assert (plan.result, output(plan)["run"]) == (PlanResult.SUCCESS, 2)
        assert pool.threads() == 1
    finally:
        GATES.pop(other).open()


def test_an_async_run_past_run_timeout_is_cancelled(
    db_url: str, key: str, make_world: Callable[..., World]
) -> None:
    world = make_world(db_url)
    plan = world.trigger(Sleepy, key).finished.result(10)
    step = run_step(plan)
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    assert step.error is not None
    assert step.error.exception_class == TIMEOUT_CLASS
    eventually(lambda: key in CANCELLED)
