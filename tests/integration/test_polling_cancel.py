"""Polling actions driven by a manual clock, and cancellation of cancellable steps."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from dynflow import (
    Action,
    Cancellable,
    ExecutionError,
    ExecutionPlan,
    NotFound,
    PlanResult,
    PlanState,
    Polling,
    StepState,
    World,
)
from dynflow.testing import InThreadWorld
from tests.integration.test_events import (
    PROBES,
    TIMEOUT,
    Probe,
    Quick,
    Waiter,
    load,
    manual_world,
    registered,
    settle,
    step_id_of,
    wait_suspended,
)
from tests.support import eventually

MakeWorld = Callable[..., World]


@dataclass
class JobProbe(Probe):
    """A probe that also records the external task's life and the cancel calls."""

    invoked: int = 0
    #: the clock's time at each poll
    polls: list[float] = field(default_factory=list)
    #: poll numbers (1-based) that raise
    failing_polls: set[int] = field(default_factory=set)
    #: step ids whose cancel() was called
    cancelled: list[int] = field(default_factory=list)


@pytest.fixture
def probe(make_world: MakeWorld) -> Iterator[JobProbe]:
    # depends on make_world so that its gates open before the worlds terminate
    with registered(JobProbe(uuid.uuid4().hex)) as found:
        yield found


def job_probe(action: Action) -> JobProbe:
    found = PROBES[action.input["key"]]
    assert isinstance(found, JobProbe)
    return found


class ExternalDown(Exception):
    """The external system did not answer a poll."""


class CancelRefused(Exception):
    """The external system refused to cancel."""


# -- actions ---------------------------------------------------------------------------


class Job(Polling, Action):
    """An external task that needs ``polls`` successful polls to be done."""

    poll_intervals: ClassVar[Sequence[float]] = (10, 20, 50)
    poll_max_retries = 2

    def invoke_external_task(self) -> Any:
        job_probe(self).invoked += 1
        return {"polls": 0}

    def poll_external_task(self) -> Any:
        probe = job_probe(self)
        probe.polls.append(self.world.clock.now())
        if len(probe.polls) in probe.failing_polls:
            raise ExternalDown(f"poll {len(probe.polls)} failed")
        return {"polls": self.external_task["polls"] + 1}

    def done(self) -> bool:
        return bool(self.external_task["polls"] >= self.input["polls"])

    def external_task_progress(self) -> float | None:
        return float(self.external_task["polls"] / self.input["polls"])


class SteadyJob(Job):
    poll_intervals = (10,)


class CancellableJob(Cancellable, SteadyJob):
    def cancel(self) -> None:
        job_probe(self).cancelled.append(self.step_id or 0)


class CancellableWaiter(Cancellable, Waiter):
    """Waits for events; ``cancel()`` records itself, and raises when asked to."""

    def cancel(self) -> None:
        job_probe(self).cancelled.append(self.step_id or 0)
        self.output["cancelled"] = True
        if self.input.get("refuse"):
            raise CancelRefused("the external system refused to cancel")


class Group(Action):
    """Waiters planned side by side: ``members`` names their kinds."""

    def plan(self, key: str, members: list[str]) -> None:
        for member in members:
            if member == "waiter":
                self.plan_action(Waiter, key=key)
            else:
                self.plan_action(CancellableWaiter, key=key)


# -- helpers ---------------------------------------------------------------------------


def wait_polled(
    world: World, plan_id: str, polls: int, attempts: int | None = None
) -> ExecutionPlan:
    """Wait until the job's step is suspended again after ``attempts`` polls (default:
    ``polls``), ``polls`` of which succeeded."""
    attempts = polls if attempts is None else attempts

    def check() -> ExecutionPlan | None:
        plan = load(world, plan_id)
        (step,) = (s for s in plan.steps.values() if s.phase == "run")
        output = plan.entry_action.output
        if (
            step.state is StepState.SUSPENDED
            and output.get("external_task") == {"polls": polls}
            and output.get("poll_attempts", {}).get("total", 0) == attempts
        ):
            return plan
        return None

    found: ExecutionPlan = eventually(check)
    return found


def job_step(plan: ExecutionPlan) -> int:
    (step_id,) = (s.id for s in plan.steps.values() if s.phase == "run")
    return step_id


def step_ids(plan: ExecutionPlan, action_class: type[Action]) -> list[int]:
    name = action_class.class_name()
    return sorted(s.id for s in plan.steps.values() if s.action_class == name and s.phase == "run")


# -- polling ---------------------------------------------------------------------------


def test_polling_invokes_then_polls_at_its_intervals_until_done(
    make_world: MakeWorld, db_url: str, probe: JobProbe
) -> None:
    world, clock = manual_world(make_world, db_url)
    triggered = world.trigger(Job, key=probe.key, polls=4)
    plan_id = triggered.execution_plan_id
    plan = wait_polled(world, plan_id, 0)
    step_id = job_step(plan)
    assert plan.state is PlanState.RUNNING
    assert probe.invoked == 1
    assert probe.polls == []

    # intervals 10, 20, 50, then 50 again: never a poll before it is due
    for polls, interval in enumerate((10, 20, 50, 50)):
        clock.advance(interval - 1)
        settle(world, plan_id)
        assert len(probe.polls) == polls, f"polled early, before {interval} s"
        assert load(world, plan_id).steps[step_id].state is StepState.SUSPENDED
        clock.advance(1)
        if polls + 1 < 4:
            plan = wait_polled(world, plan_id, polls + 1)
            assert plan.steps[step_id].progress_done == pytest.approx((polls + 1) / 4)

    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert probe.polls == [10, 30, 80, 130]
    assert probe.invoked == 1
    output = load(world, plan_id).entry_action.output
    assert output["external_task"] == {"polls": 4}
    assert output["poll_attempts"] == {"total": 4, "failed": 0}
    assert load(world, plan_id).steps[step_id].progress_done == 1.0


def test_poll_errors_within_the_limit_are_retried(
    make_world: MakeWorld, db_url: str, probe: JobProbe
) -> None:
    world, clock = manual_world(make_world, db_url)
    probe.failing_polls = {1, 2, 4, 5}  # never more than poll_max_retries=2 in a row
    triggered = world.trigger(SteadyJob, key=probe.key, polls=2)
    plan_id = triggered.execution_plan_id
    wait_polled(world, plan_id, 0)

    clock.advance(10)  # poll 1 fails: the step waits for the next poll
    plan = wait_polled(world, plan_id, 0, attempts=1)
    assert plan.state is PlanState.RUNNING
    assert plan.entry_action.output["poll_attempts"] == {"total": 1, "failed": 1}
    # poll 2 fails, 3 succeeds (the count of failures in a row starts again), 4, 5 fail
    for attempt, polls in ((2, 0), (3, 1), (4, 1), (5, 1)):
        clock.advance(10)
        wait_polled(world, plan_id, polls, attempts=attempt)
    clock.advance(10)  # poll 6 succeeds: done

    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert len(probe.polls) == 6
    assert done.entry_action.output["poll_attempts"] == {"total": 6, "failed": 0}


def test_poll_errors_beyond_the_limit_fail_the_step(
    make_world: MakeWorld, db_url: str, probe: JobProbe
) -> None:
    world, clock = manual_world(make_world, db_url)
    probe.failing_polls = {1, 2, 3}
    triggered = world.trigger(SteadyJob, key=probe.key, polls=1)
    plan_id = triggered.execution_plan_id
    wait_polled(world, plan_id, 0)
    for attempt in (1, 2):
        clock.advance(10)
        wait_polled(world, plan_id, 0, attempts=attempt)
    clock.advance(10)

    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.PAUSED, PlanResult.ERROR)
    step = load(world, plan_id).steps[job_step(done)]
    assert step.state is StepState.ERROR
    assert step.error is not None
    assert step.error.exception_class.endswith("ExternalDown")
    assert step.error.message == "poll 3 failed"
    output = load(world, plan_id).entry_action.output
    assert output["poll_attempts"] == {"total": 3, "failed": 3}
    assert output["external_task"] == {"polls": 0}  # kept for a resume
    assert len(probe.polls) == 3


def test_a_resumed_polling_step_polls_again_at_once(
    make_world: MakeWorld, db_url: str, probe: JobProbe
) -> None:
    first, _ = manual_world(make_world, db_url)
    triggered = first.trigger(Job, key=probe.key, polls=2)
    plan_id = triggered.execution_plan_id
    wait_polled(first, plan_id, 0)
    first.terminate()  # its clock, with the pending poll, is gone
    assert triggered.finished.result(TIMEOUT).state is PlanState.PAUSED
    assert probe.polls == []

    second, clock = manual_world(make_world, db_url, auto_execute=False)  # resumed below
    assert load(second, plan_id).steps[job_step(load(second, plan_id))].state is (
        StepState.SUSPENDED
    )
    resumed = second.resume(plan_id)
    wait_polled(second, plan_id, 1)  # no clock advance: the resume event polled
    assert probe.polls == [0]
    assert probe.invoked == 1  # the external task was not started again

    clock.advance(19)
    settle(second, plan_id)
    assert len(probe.polls) == 1
    clock.advance(1)
    done = resumed.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert probe.polls == [0, 20]


def test_polling_in_an_in_thread_world(db_url: str, probe: JobProbe) -> None:
    world = InThreadWorld(db_url, heartbeat_interval=3600, lease=3 * 3600)
    try:
        triggered = world.trigger(Job, key=probe.key, polls=2)
        plan_id = triggered.execution_plan_id
        plan = load(world, plan_id)  # trigger returned with the step suspended
        step_id = job_step(plan)
        assert plan.state is PlanState.RUNNING
        assert plan.steps[step_id].state is StepState.SUSPENDED
        assert probe.invoked == 1

        world.clock.advance(9)
        assert probe.polls == []
        world.clock.advance(1)
        assert probe.polls == [10]
        plan = load(world, plan_id)
        assert plan.steps[step_id].state is StepState.SUSPENDED
        assert plan.steps[step_id].progress_done == 0.5
        world.clock.advance(19)
        assert not triggered.finished.done()
        world.clock.advance(1)
        assert triggered.finished.done()
        assert triggered.finished.result().result is PlanResult.SUCCESS
        assert probe.polls == [10, 30]
    finally:
        world.terminate()


def test_a_halted_polling_plan_polls_no_more(
    make_world: MakeWorld, db_url: str, probe: JobProbe
) -> None:
    world, clock = manual_world(make_world, db_url)
    triggered = world.trigger(Job, key=probe.key, polls=2)
    plan_id = triggered.execution_plan_id
    wait_polled(world, plan_id, 0)

    halted = world.halt(plan_id).result(TIMEOUT)
    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    clock.advance(100)  # the pending poll finds nothing to poll
    assert probe.polls == []
    assert load(world, plan_id).state is PlanState.STOPPED


# -- cancelling ------------------------------------------------------------------------


def test_cancel_calls_cancel_instead_of_run_and_the_plan_ends_cancelled(
    world: World, probe: JobProbe
) -> None:
    triggered = world.trigger(Group, key=probe.key, members=["cancellable", "cancellable"])
    plan_id = triggered.execution_plan_id
    plan = wait_suspended(world, probe, plan_id, times=2)
    cancellable = step_ids(plan, CancellableWaiter)

    futures = world.cancel(plan_id)
    assert len(futures) == 2
    assert [f.result(TIMEOUT) for f in futures] == [True, True]

    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.CANCELLED)
    stored = load(world, plan_id)
    assert (stored.state, stored.result) == (PlanState.STOPPED, PlanResult.CANCELLED)
    assert [stored.steps[s].state for s in cancellable] == [StepState.CANCELLED] * 2
    assert sorted(probe.cancelled) == cancellable
    assert probe.runs == [None, None]  # run was not called with the cancel event
    outputs = [a.output for a in stored.actions if a.action_class.endswith("CancellableWaiter")]
    assert outputs == [{"cancelled": True}] * 2


def test_cancel_gives_no_future_to_steps_that_are_not_cancellable(
    world: World, probe: JobProbe
) -> None:
    triggered = world.trigger(Group, key=probe.key, members=["cancellable", "waiter"])
    plan_id = triggered.execution_plan_id
    plan = wait_suspended(world, probe, plan_id, times=2)
    (cancellable,) = step_ids(plan, CancellableWaiter)
    (waiter,) = step_ids(plan, Waiter)

    (future,) = world.cancel(plan_id)
    assert future.result(TIMEOUT) is True
    eventually(lambda: load(world, plan_id).steps[cancellable].state is StepState.CANCELLED)
    stored = load(world, plan_id)
    assert stored.state is PlanState.RUNNING  # the other step still waits
    assert stored.steps[waiter].state is StepState.SUSPENDED
    assert world.cancel(plan_id) == []  # nothing cancellable runs any more

    assert world.event(plan_id, waiter, "finish").result(TIMEOUT) is True
    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.CANCELLED)
    assert done.steps[waiter].state is StepState.SUCCESS
    assert done.steps[cancellable].state is StepState.CANCELLED
    assert probe.cancelled == [cancellable]


def test_cancel_of_a_running_step_is_delivered_after_it_suspends(
    world: World, probe: JobProbe
) -> None:
    first_run = probe.hold(1)
    triggered = world.trigger(CancellableWaiter, key=probe.key)
    plan_id = triggered.execution_plan_id
    assert first_run.entered.wait(TIMEOUT)

    (future,) = world.cancel(plan_id)
    settle(world, plan_id)
    assert not future.done()
    assert probe.cancelled == []

    first_run.open()
    assert future.result(TIMEOUT) is True
    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.CANCELLED)
    step_id = step_id_of(done, CancellableWaiter)
    assert done.steps[step_id].state is StepState.CANCELLED
    assert probe.cancelled == [step_id]
    assert probe.runs == [None]
    assert len(probe.suspended) == 1


def test_cancel_of_a_running_step_that_then_finishes_fails_its_future(
    world: World, probe: JobProbe
) -> None:
    first_run = probe.hold(1)
    triggered = world.trigger(CancellableWaiter, key=probe.key, expect=0)  # never suspends
    plan_id = triggered.execution_plan_id
    assert first_run.entered.wait(TIMEOUT)

    (future,) = world.cancel(plan_id)
    first_run.open()
    with pytest.raises(ExecutionError, match="ended success"):
        future.result(TIMEOUT)
    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert probe.cancelled == []


def test_a_cancel_that_raises_fails_the_step(world: World, probe: JobProbe) -> None:
    triggered = world.trigger(CancellableWaiter, key=probe.key, refuse=True)
    plan_id = triggered.execution_plan_id
    step_id = step_id_of(wait_suspended(world, probe, plan_id), CancellableWaiter)

    (future,) = world.cancel(plan_id)
    assert future.result(TIMEOUT) is True
    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.PAUSED, PlanResult.ERROR)
    step = load(world, plan_id).steps[step_id]
    assert step.state is StepState.ERROR
    assert step.error is not None
    assert step.error.exception_class.endswith("CancelRefused")
    assert step.error.message == "the external system refused to cancel"
    assert probe.cancelled == [step_id]


def test_cancel_of_a_polling_step_stops_its_polls(
    make_world: MakeWorld, db_url: str, probe: JobProbe
) -> None:
    world, clock = manual_world(make_world, db_url)
    triggered = world.trigger(CancellableJob, key=probe.key, polls=3)
    plan_id = triggered.execution_plan_id
    wait_polled(world, plan_id, 0)
    clock.advance(10)
    wait_polled(world, plan_id, 1)

    (future,) = world.cancel(plan_id)
    assert future.result(TIMEOUT) is True
    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.CANCELLED)
    assert probe.cancelled == [job_step(done)]
    clock.advance(100)  # the poll planned before the cancel finds nothing to poll
    assert probe.polls == [10]


def test_cancel_of_a_plan_that_is_not_running_raises(world: World, probe: JobProbe) -> None:
    planned = world.plan(CancellableWaiter, key=probe.key)
    with pytest.raises(ExecutionError, match="only a running plan can be cancelled"):
        world.cancel(planned.id)

    finished = world.trigger(Quick).finished.result(TIMEOUT)
    with pytest.raises(ExecutionError, match=f"{finished.id} is stopped"):
        world.cancel(finished.id)

    with pytest.raises(NotFound):
        world.cancel(str(uuid.uuid4()))
    assert probe.cancelled == []
