"""``dynflow.executor.offline``: halt and skip run a throwaway executor core on one plan
whose execution lock the caller holds, and commit through the core's fenced flush."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dynflow import (
    Action,
    ExecutionError,
    ExecutionPlan,
    NotFound,
    PlanResult,
    PlanState,
    StepState,
    WithSubPlans,
)
from dynflow.action.singleton import SINGLETON_LOCK, Singleton
from dynflow.action.sub_plans import SUB_PLAN_FINISHED
from dynflow.coordinator import EXECUTION_LOCK
from dynflow.executor import offline
from dynflow.executor.commit import LockLost
from dynflow.testing import InThreadWorld

MakeWorld = Callable[..., InThreadWorld]


class Waits(Singleton, Action):
    """Suspends until an event (none comes); a singleton, so stopping releases a lock."""

    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()


class WaitingChild(Action):
    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()


class Parent(WithSubPlans, Action):
    concurrency_limit = 1

    def plan(self, count: int) -> None:
        self.plan_self(count=count)

    def create_sub_plans(self) -> Any:
        return [self.trigger(WaitingChild) for _ in range(self.input["count"])]


class Broken(Exception):
    """Raised by a step that fails."""


class Fails(Action):
    def run(self, event: Any = None) -> None:
        raise Broken("broken")


class Produces(Action):
    def run(self, event: Any = None) -> None:
        self.output["value"] = 1


class Consumes(Action):
    def plan(self, value: Any) -> None:
        self.plan_self(value=value)

    def run(self, event: Any = None) -> None:
        self.output["consumed"] = self.input["value"]


class Skippable(Action):
    """``broken`` fails; ``consumer`` needs its output; ``bystander`` does not."""

    def plan(self) -> None:
        with self.concurrence():
            broken = self.plan_action(Fails)
            self.plan_action(Consumes, broken.output["value"])
            self.plan_action(Produces)


@pytest.fixture
def make_world() -> Iterator[MakeWorld]:
    worlds: list[InThreadWorld] = []

    def factory(url: str) -> InThreadWorld:
        worlds.append(InThreadWorld(url))
        return worlds[-1]

    yield factory
    for world in worlds:
        world.terminate()


def run_step(plan: ExecutionPlan, action_class: type[Action]) -> int:
    (step_id,) = (
        s.id
        for s in plan.steps.values()
        if s.action_class == action_class.class_name() and s.phase == "run"
    )
    return step_id


def locks(world: InThreadWorld, lock_class: str, lock_id: str) -> list[str | None]:
    return [
        lock.owner_id for lock in world.coordinator.find_locks(lock_class=lock_class, id=lock_id)
    ]


def paused_with_a_suspended_step(make_world: MakeWorld, db_url: str) -> tuple[str, InThreadWorld]:
    """A plan left paused by a terminated world, its ``Waits`` step suspended; the id
    and a second world on the same database."""
    first = make_world(db_url)
    plan_id = first.trigger(Waits).execution_plan_id
    first.terminate()
    second = make_world(db_url)
    plan = second.persistence.load_execution_plan(plan_id)
    assert (plan.state, plan.steps[run_step(plan, Waits)].state) == (
        PlanState.PAUSED,
        StepState.SUSPENDED,
    )
    return plan_id, second


# -- halt ----------------------------------------------------------------------------------


def test_halt_fails_suspended_steps_and_releases_the_locks_in_one_commit(
    make_world: MakeWorld, db_url: str
) -> None:
    plan_id, world = paused_with_a_suspended_step(make_world, db_url)
    assert locks(world, SINGLETON_LOCK, Waits.class_name()) == [plan_id]
    world.coordinator.acquire(EXECUTION_LOCK, plan_id)
    finished: list[ExecutionPlan] = []

    halted = offline.halt(
        world.persistence,
        world.id,
        world.persistence.load_execution_plan(plan_id),
        finished.append,
        registration=world.coordinator.registration(),
    )

    stored = world.persistence.load_execution_plan(plan_id)
    for plan in (halted, stored):
        assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
        step = plan.steps[run_step(plan, Waits)]
        assert step.state is StepState.ERROR
        assert step.error is not None
        assert (step.error.exception_class, step.error.message) == (
            "dynflow.errors.ExecutionError",
            "halted while suspended",
        )
        last = plan.execution_history[-1]
        assert (last.name, last.world_id) == ("halt execution", world.id)
    assert [p.id for p in finished] == [plan_id]
    assert finished[0].state is PlanState.STOPPED
    assert locks(world, EXECUTION_LOCK, plan_id) == []
    assert locks(world, SINGLETON_LOCK, Waits.class_name()) == []


def test_halt_of_a_planned_plan_stops_it(make_world: MakeWorld, db_url: str) -> None:
    world = make_world(db_url)
    planned = world.plan(Produces)
    world.coordinator.acquire(EXECUTION_LOCK, planned.id)

    halted = offline.halt(
        world.persistence, world.id, planned, registration=world.coordinator.registration()
    )

    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert halted.real_time == planned.real_time  # it never executed
    assert world.persistence.load_execution_plan(planned.id).state is PlanState.STOPPED
    assert locks(world, EXECUTION_LOCK, planned.id) == []


def test_a_halted_child_wakes_its_waiting_parent(make_world: MakeWorld, db_url: str) -> None:
    world = make_world(db_url)
    parent_id = world.trigger(Parent, 2).execution_plan_id
    parent = world.persistence.load_execution_plan(parent_id)
    assert parent.state is PlanState.RUNNING  # waits, suspended, for its children
    filters = {"caller_execution_plan_id": parent_id, "state": PlanState.PLANNED}
    (child,) = world.persistence.find_execution_plans(filters=filters)  # over the limit
    world.coordinator.acquire(EXECUTION_LOCK, child.id)
    finished: list[ExecutionPlan] = []

    def wake(plan: ExecutionPlan) -> None:
        finished.append(plan)
        step_id = run_step(parent, Parent)
        assert world.event(parent_id, step_id, SUB_PLAN_FINISHED, optional=True).result() is True

    offline.halt(
        world.persistence,
        world.id,
        world.persistence.load_execution_plan(child.id),
        wake,
        registration=world.coordinator.registration(),
    )

    assert [(p.id, p.state, p.caller_execution_plan_id) for p in finished] == [
        (child.id, PlanState.STOPPED, parent_id)
    ]
    woken = world.persistence.load_execution_plan(parent_id)
    assert woken.state is PlanState.RUNNING
    assert woken.entry_action.output["failed_count"] == 1
    assert woken.entry_action.output["pending_count"] == 1


def test_halt_of_a_suspended_child_reports_it_stopped_to_on_finished(
    make_world: MakeWorld, db_url: str
) -> None:
    first = make_world(db_url)
    parent_id = first.trigger(Parent, 1).execution_plan_id
    first.terminate()  # both paused, both suspended
    world = make_world(db_url)
    (child,) = world.persistence.find_execution_plans(
        filters={"caller_execution_plan_id": parent_id}
    )
    child = world.persistence.load_execution_plan(child.id)
    assert child.steps[run_step(child, WaitingChild)].state is StepState.SUSPENDED
    world.coordinator.acquire(EXECUTION_LOCK, child.id)
    finished: list[ExecutionPlan] = []

    offline.halt(
        world.persistence,
        world.id,
        child,
        finished.append,
        registration=world.coordinator.registration(),
    )

    (stopped,) = finished
    assert (stopped.id, stopped.caller_execution_plan_id) == (child.id, parent_id)
    assert (stopped.state, stopped.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert stopped.steps[run_step(stopped, WaitingChild)].state is StepState.ERROR


def test_halt_without_the_lock_writes_nothing(make_world: MakeWorld, db_url: str) -> None:
    plan_id, world = paused_with_a_suspended_step(make_world, db_url)
    before = world.persistence.load_execution_plan(plan_id)
    finished: list[ExecutionPlan] = []

    with pytest.raises(LockLost):
        offline.halt(
            world.persistence,
            world.id,
            before,
            finished.append,
            registration=world.coordinator.registration(),
        )

    after = world.persistence.load_execution_plan(plan_id)
    assert (after.state, after.result) == (before.state, before.result)
    assert after.steps[run_step(after, Waits)].state is StepState.SUSPENDED
    assert len(after.execution_history) == len(before.execution_history)
    assert finished == []


# -- skip ----------------------------------------------------------------------------------


def failed_plan(world: InThreadWorld) -> ExecutionPlan:
    paused = world.trigger(Skippable).finished.result()
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    world.coordinator.acquire(EXECUTION_LOCK, paused.id)
    return world.persistence.load_execution_plan(paused.id)


def test_skip_marks_the_step_and_its_consumers_and_keeps_the_plan_paused_and_locked(
    make_world: MakeWorld, db_url: str
) -> None:
    world = make_world(db_url)
    paused = failed_plan(world)

    skipped = offline.skip(
        world.persistence,
        world.id,
        paused,
        run_step(paused, Fails),
        registration=world.coordinator.registration(),
    )

    stored = world.persistence.load_execution_plan(paused.id)
    for plan in (skipped, stored):
        assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
        assert plan.steps[run_step(plan, Fails)].state is StepState.SKIPPED
        assert plan.steps[run_step(plan, Consumes)].state is StepState.SKIPPED
        assert plan.steps[run_step(plan, Produces)].state is StepState.SUCCESS
        assert len(plan.execution_history) == len(paused.execution_history)
    assert locks(world, EXECUTION_LOCK, paused.id) == [world.id]

    world.coordinator.release(EXECUTION_LOCK, paused.id)
    resumed = world.resume(paused.id).result()
    assert (resumed.state, resumed.result) == (PlanState.STOPPED, PlanResult.WARNING)


def test_skip_refuses_a_step_that_did_not_fail(make_world: MakeWorld, db_url: str) -> None:
    world = make_world(db_url)
    paused = failed_plan(world)

    with pytest.raises(ExecutionError, match="only a failed step can be skipped"):
        offline.skip(
            world.persistence,
            world.id,
            paused,
            run_step(paused, Produces),
            registration=world.coordinator.registration(),
        )
    with pytest.raises(NotFound, match="has no step 999"):
        offline.skip(
            world.persistence, world.id, paused, 999, registration=world.coordinator.registration()
        )

    stored = world.persistence.load_execution_plan(paused.id)
    assert stored.steps[run_step(stored, Fails)].state is StepState.ERROR


def test_skip_without_the_lock_writes_nothing(make_world: MakeWorld, db_url: str) -> None:
    world = make_world(db_url)
    paused = failed_plan(world)
    world.coordinator.release(EXECUTION_LOCK, paused.id)

    with pytest.raises(LockLost):
        offline.skip(
            world.persistence,
            world.id,
            paused,
            run_step(paused, Fails),
            registration=world.coordinator.registration(),
        )

    stored = world.persistence.load_execution_plan(paused.id)
    assert stored.steps[run_step(stored, Fails)].state is StepState.ERROR
    assert stored.steps[run_step(stored, Consumes)].state is StepState.PENDING
