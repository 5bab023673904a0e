"""Sub-plans in batches: children saved ``batch_size`` at a time, started together
within the concurrency limit, and a parent's waiting wake-ups merged into one."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any, cast

import pytest

from dynflow import (
    Action,
    ExecutionPlan,
    PlanningFailed,
    PlanResult,
    PlanState,
    SubPlan,
    WithSubPlans,
    World,
)
from dynflow.action import registry
from dynflow.action.sub_plans import SUB_PLAN_FINISHED
from dynflow.coordinator import EXECUTION_LOCK
from dynflow.errors import PersistenceError
from dynflow.executor import policy
from dynflow.executor.messages import DeliverEvent
from dynflow.executor.runtime import PlanRuntime
from tests.integration.test_sub_plans import PROBES, Child, Probe, children

MakeWorld = Callable[..., World]
TIMEOUT = 20


@pytest.fixture
def probe() -> Iterator[Probe]:
    key = uuid.uuid4().hex
    found = PROBES[key] = Probe(key)
    yield found
    del PROBES[key]


class Batched(WithSubPlans, Action):
    batch_size = 3

    def plan(self, key: str, count: int, limit: int | None = None) -> None:
        self.plan_self(key=key, count=count, concurrency_limit=limit)

    def create_sub_plans(self) -> list[SubPlan]:
        key = self.input["key"]
        return [self.trigger(Child, key, index) for index in range(self.input["count"])]


class Unplannable(Action):
    def plan(self) -> None:
        raise ValueError("no such host")


class BreaksAtFive(WithSubPlans, Action):
    """Children 0-3 plan, child 4 fails to plan: the parent's run fails."""

    batch_size = 3

    def plan(self, key: str) -> None:
        self.plan_self(key=key)

    def create_sub_plans(self) -> Iterator[SubPlan]:
        for index in range(4):
            yield self.trigger(Child, self.input["key"], index)
        yield self.trigger(Unplannable)


def spy(world: World, name: str) -> list[int]:
    """Record the size of each call of ``world.persistence.<name>`` / ``world.<name>``."""
    owner: Any = world.persistence if name == "save_new_plans" else world
    original = getattr(owner, name)
    sizes: list[int] = []

    def recording(items: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(items))
        return original(items, *args, **kwargs)

    setattr(owner, name, recording)
    return sizes


def test_children_are_saved_a_batch_at_a_time(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    world = make_world(db_url)
    saved = spy(world, "save_new_plans")

    done = world.trigger(Batched, probe.key, 7).finished.result(TIMEOUT)

    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert saved == [3, 3, 1]
    found = children(world, done.id)
    assert len(found) == 7
    assert {c.result for c in found} == {PlanResult.SUCCESS}
    assert sorted(probe.runs) == list(range(7))
    assert set(probe.runs.values()) == {1}
    output = done.entry_action.output
    assert (output["total_count"], output["success_count"], output["pending_count"]) == (7, 7, 0)


def test_children_are_started_together_within_the_limit(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    world = make_world(db_url, pool_size=8)
    started = spy(world, "start_sub_plans")

    done = world.trigger(Batched, probe.key, 10, 4).finished.result(TIMEOUT)

    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert started[0] == 4  # the first wake-up starts as many as the limit allows
    assert sum(started) == 10
    assert max(started) <= 4
    assert probe.max_active <= 4
    assert set(probe.runs.values()) == {1}


def test_a_database_failure_starting_children_fails_the_parent_and_a_resume_goes_on(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    world = make_world(db_url)
    original = world.persistence.lock_and_load_execution_plans
    calls: list[int] = []

    def failing_once(owner_id: str, execution_plan_ids: Sequence[str]) -> list[ExecutionPlan]:
        calls.append(len(execution_plan_ids))
        if len(calls) == 1:
            raise PersistenceError("the database went away")
        return original(owner_id, execution_plan_ids)

    world.persistence.lock_and_load_execution_plans = failing_once  # type: ignore[method-assign]

    paused = world.trigger(Batched, probe.key, 5, 2).finished.result(TIMEOUT)

    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    assert "the database went away" in paused.errors[0].message
    assert probe.runs == {}
    assert world.coordinator.find_locks(lock_class=EXECUTION_LOCK, owner_id=world.id) == []
    done = world.resume(paused.id).result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert set(probe.runs.values()) == {1}
    assert len(probe.runs) == 5


def test_a_child_failing_to_plan_keeps_the_children_planned_before_it(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    world = make_world(db_url)

    done = world.trigger(BreaksAtFive, probe.key).finished.result(TIMEOUT)

    assert (done.state, done.result) == (PlanState.PAUSED, PlanResult.ERROR)
    (error,) = done.errors
    assert error.exception_class == registry.class_name(PlanningFailed)
    found = children(world, done.id)
    states = sorted((str(c.state), str(c.result)) for c in found)
    assert states == [("planned", "pending")] * 4 + [("stopped", "error")]
    assert probe.runs == {}  # the parent failed before it started any


# -- wake-ups merged -------------------------------------------------------------------


def runtime_with(action_class: type[Action]) -> PlanRuntime:
    """Just what ``policy.enqueue`` reads of a plan: its step 2 of action 1."""
    action = SimpleNamespace(action_class=registry.class_name(action_class))
    step = SimpleNamespace(action_id=1)
    return cast(PlanRuntime, SimpleNamespace(events={}, steps={2: step}, actions={1: action}))


def event(payload: Any, optional: bool = True) -> DeliverEvent:
    return DeliverEvent("plan", 2, payload, Future(), optional=optional)


def test_a_wake_up_merges_into_one_already_waiting() -> None:
    runtime = runtime_with(Batched)
    first, second = event(SUB_PLAN_FINISHED), event(SUB_PLAN_FINISHED)

    assert policy.enqueue(runtime, 2, first) is False
    assert policy.enqueue(runtime, 2, second) is True

    assert runtime.events[2] == deque([first])


@pytest.mark.parametrize(
    ("waiting", "arriving"),
    [
        (event("data"), event(SUB_PLAN_FINISHED)),  # nothing the same waits
        (event(SUB_PLAN_FINISHED), event(SUB_PLAN_FINISHED, optional=False)),  # must be told
        (event({"other": 1}), event({"other": 1})),  # not the action's wake-up
    ],
)
def test_other_events_are_queued_each(waiting: DeliverEvent, arriving: DeliverEvent) -> None:
    runtime = runtime_with(Batched)
    policy.enqueue(runtime, 2, waiting)

    assert policy.enqueue(runtime, 2, arriving) is False

    assert runtime.events[2] == deque([waiting, arriving])


def test_an_action_without_a_wake_up_gets_every_event() -> None:
    runtime = runtime_with(Child)
    first, second = event(SUB_PLAN_FINISHED), event(SUB_PLAN_FINISHED)

    policy.enqueue(runtime, 2, first)

    assert policy.enqueue(runtime, 2, second) is False
    assert runtime.events[2] == deque([first, second])
