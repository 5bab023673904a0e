"""Retries of a failed run with backoff: waiting steps, their persisted due time,
attempts used up, and a wait that outlives its world (all three databases)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from dynflow import (
    Action,
    ExecutionPlan,
    PlanResult,
    PlanState,
    Rescue,
    Retry,
    Step,
    StepState,
    World,
)
from dynflow.testing import InThreadWorld, ManualClock

#: per test key: the exceptions the next runs raise, in order (then they succeed)
FAILURES: dict[str, list[BaseException]] = {}
RUNS: Counter[str] = Counter()


@pytest.fixture
def key() -> Iterator[str]:
    name = str(uuid.uuid4())
    yield name
    FAILURES.pop(name, None)


class Flaky(Action):
    retry = Retry(attempts=3, backoff=2.0, factor=3.0, jitter=0.0, on=(ConnectionError,))

    def plan(self, key: str) -> None:
        self.plan_self(key=key)

    def run(self, event: object = None) -> None:
        RUNS[self.input["key"]] += 1
        failures = FAILURES.get(self.input["key"])
        if failures:
            raise failures.pop(0)
        self.output["done"] = True


class FlakyOrFail(Flaky):
    rescue_strategy = Rescue.FAIL


class Steady(Action):
    def plan(self, key: str) -> None:
        self.plan_self(key=key)

    def run(self, event: object = None) -> None:
        RUNS[self.input["key"] + "/steady"] += 1


class FlakyAndSteady(Action):
    def plan(self, key: str) -> None:
        with self.concurrence():
            self.plan_action(Flaky, key)
            self.plan_action(Steady, key)


def run_step(plan: ExecutionPlan, cls: type[Action] = Flaky) -> Step:
    name = f"{cls.__module__}.{cls.__qualname__}"
    return next(s for s in plan.steps.values() if s.phase == "run" and s.action_class == name)


def load(world: World, plan_id: str) -> ExecutionPlan:
    return world.persistence.load_execution_plan(plan_id)


def test_a_failed_run_waits_its_backoff_then_runs_again(db_url: str, key: str) -> None:
    FAILURES[key] = [ConnectionError("refused 1"), ConnectionError("refused 2")]
    with InThreadWorld(db_url) as world:
        assert isinstance(world.clock, ManualClock)
        started = world.clock.utcnow()
        triggered = world.trigger(Flaky, key)
        plan = load(world, triggered.execution_plan_id)
        step = run_step(plan)
        assert (plan.state, step.state, step.attempts) == ("running", "waiting", 1)
        assert step.next_attempt_at == started + timedelta(seconds=2)
        assert step.error is not None
        assert step.error.message == "refused 1"
        assert not triggered.finished.done()

        world.clock.advance(1.9)  # not due yet
        assert run_step(load(world, triggered.execution_plan_id)).attempts == 1
        assert RUNS[key] == 1

        world.clock.advance(0.1)  # second attempt fails: 2 * 3 s more
        step = run_step(load(world, triggered.execution_plan_id))
        assert (step.state, step.attempts, RUNS[key]) == ("waiting", 2, 2)
        assert step.next_attempt_at == started + timedelta(seconds=8)
        assert [e.message for e in step.errors] == ["refused 1", "refused 2"]

        world.clock.advance(6)
        plan = triggered.finished.result(0)
        step = run_step(plan)
        assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
        assert (step.state, step.attempts, step.error, step.next_attempt_at) == (
            StepState.SUCCESS,
            3,
            None,
            None,
        )
        # the earlier errors stay visible once the step succeeded, also as stored
        stored = run_step(load(world, triggered.execution_plan_id))
        assert [e.exception_class for e in stored.errors] == ["ConnectionError"] * 2
        assert stored.attempts == 3


def test_when_the_attempts_are_used_up_the_step_fails_and_rescue_applies(
    db_url: str, key: str
) -> None:
    FAILURES[key] = [ConnectionError(f"refused {n}") for n in range(1, 5)]
    with InThreadWorld(db_url) as world:
        assert isinstance(world.clock, ManualClock)
        triggered = world.trigger(FlakyOrFail, key)
        world.clock.advance(2)
        world.clock.advance(6)
        plan = triggered.finished.result(0)
        step = run_step(plan, FlakyOrFail)
        assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)  # Rescue.FAIL
        assert (step.state, step.attempts, RUNS[key]) == (StepState.ERROR, 3, 3)
        assert step.error is not None
        assert step.error.message == "refused 3"
        assert [e.message for e in step.errors] == ["refused 1", "refused 2"]
        world.clock.advance(100)  # no attempt left behind
        assert RUNS[key] == 3


def test_an_error_not_in_on_fails_at_once(db_url: str, key: str) -> None:
    FAILURES[key] = [ValueError("bad data")]
    with InThreadWorld(db_url) as world:
        assert isinstance(world.clock, ManualClock)
        plan = world.trigger(Flaky, key).finished.result(0)
        step = run_step(plan)
        assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
        assert (step.state, step.attempts, step.errors) == (StepState.ERROR, 1, [])

        FAILURES[key] = [ConnectionError("again")]  # resume: a fresh round of attempts
        world.resume(plan.id)
        step = run_step(load(world, plan.id))
        assert (step.state, step.attempts) == (StepState.WAITING, 1)
        world.clock.advance(2)
        assert load(world, plan.id).result == PlanResult.SUCCESS


def test_other_steps_run_while_one_waits(db_url: str, key: str) -> None:
    FAILURES[key] = [ConnectionError("refused")]
    with InThreadWorld(db_url) as world:
        assert isinstance(world.clock, ManualClock)
        triggered = world.trigger(FlakyAndSteady, key)
        plan = load(world, triggered.execution_plan_id)
        assert run_step(plan, Steady).state == StepState.SUCCESS
        assert run_step(plan).state == StepState.WAITING
        assert plan.state == PlanState.RUNNING
        world.clock.advance(2)
        assert triggered.finished.result(0).result == PlanResult.SUCCESS


def test_halting_a_waiting_plan_fails_the_step_and_no_attempt_follows(
    db_url: str, key: str
) -> None:
    FAILURES[key] = [ConnectionError("refused")]
    with InThreadWorld(db_url) as world:
        assert isinstance(world.clock, ManualClock)
        triggered = world.trigger(Flaky, key)
        halted = world.halt(triggered.execution_plan_id).result(0)
        assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
        assert run_step(halted).state == StepState.ERROR
        world.clock.advance(10)
        assert RUNS[key] == 1


def test_a_wait_outlives_its_world(db_url: str, key: str) -> None:
    """The first world terminates during the backoff; the next one runs the attempt
    at the persisted due time, not before."""
    FAILURES[key] = [ConnectionError("refused")]
    start = datetime.now(UTC)
    clock = ManualClock(utc_start=start)
    with InThreadWorld(db_url, clock=clock) as first:
        plan_id = first.trigger(Flaky, key).execution_plan_id
        clock.advance(0.5)

    # the second world's clock reads 1.5 s after the first one started
    later = ManualClock(utc_start=start + timedelta(seconds=1.5))
    with InThreadWorld(db_url, clock=later) as second:
        paused = load(second, plan_id)
        step = run_step(paused)
        assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.PENDING)
        assert (step.state, step.next_attempt_at) == ("waiting", start + timedelta(seconds=2))
        future = second.resume(plan_id)
        assert load(second, plan_id).state == PlanState.RUNNING
        later.advance(0.4)
        assert RUNS[key] == 1
        assert not future.done()
        later.advance(0.1)
        plan = future.result(0)
        assert (plan.result, run_step(plan).attempts, RUNS[key]) == (PlanResult.SUCCESS, 2, 2)
