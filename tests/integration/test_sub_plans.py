"""Sub-plans (``WithSubPlans``) on a threaded world: children planned with their caller,
counts in the parent's output, the parent waiting suspended, ``concurrency_limit``,
failures and resume, batched children, and recovery leaving planned children alone."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from dynflow import (
    Action,
    ActionWorld,
    Cancellable,
    ExecutionPlan,
    PlanningFailed,
    PlanResult,
    PlanState,
    Rescue,
    StepState,
    SubPlan,
    WithSubPlans,
    World,
)
from dynflow.persistence.sub_plans import SubPlanRound
from dynflow.testing import InThreadWorld
from tests.support import eventually

MakeWorld = Callable[..., World]
TIMEOUT = 10


# -- shared state between a test and its child actions ---------------------------------


@dataclass
class Probe:
    """What the children of one test report; ``held`` children wait for ``release``."""

    key: str
    held: bool = False
    #: child index -> how many of its first runs raise
    fail_first: dict[int, int] = field(default_factory=dict)
    #: child index -> how many times it ran
    runs: Counter[int] = field(default_factory=Counter)
    #: the world id of each child run
    worlds: list[str] = field(default_factory=list)
    #: indexes of the children whose cancel() ran
    cancelled: list[int] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    left: int = 0
    #: the parent's output each time it suspends
    suspended_outputs: list[dict[str, Any]] = field(default_factory=list)
    #: the parent counts only once no child is paused or running (set before a resume)
    count_when_settled: bool = False
    release: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, index: int, world_id: str) -> int:
        with self.lock:
            self.runs[index] += 1
            self.worlds.append(world_id)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            return self.runs[index]

    def leave(self) -> None:
        with self.lock:
            self.active -= 1
            self.left += 1


PROBES: dict[str, Probe] = {}


@pytest.fixture
def probe(make_world: MakeWorld) -> Iterator[Probe]:
    # depends on make_world so that held children are released before the worlds terminate
    key = uuid.uuid4().hex
    found = PROBES[key] = Probe(key)
    try:
        yield found
    finally:
        found.held = False
        found.release.release(1000)
        del PROBES[key]


class ChildBroke(Exception):
    """Raised by a child told to fail."""


# -- actions ---------------------------------------------------------------------------


class Child(Action):
    def plan(self, key: str, index: int) -> None:
        self.plan_self(key=key, index=index)

    def run(self, event: Any = None) -> None:
        probe = PROBES[self.input["key"]]
        index = self.input["index"]
        run = probe.enter(index, self.world.id)
        try:
            if probe.held and not probe.release.acquire(timeout=20):
                raise TimeoutError("the test never released the child")
            if run <= probe.fail_first.get(index, 0):
                raise ChildBroke(f"child {index} broke on run {run}")
            self.output["index"] = index
        finally:
            probe.leave()


class SkippedChild(Action):
    """Fails and is skipped by its rescue strategy: its plan ends ``warning``."""

    rescue_strategy = Rescue.SKIP

    def run(self, event: Any = None) -> None:
        raise ChildBroke("host unreachable: skipped")


class MixedParent(WithSubPlans, Action):
    """``count`` children, the ones listed in ``skipped`` end ``warning``."""

    def plan(self, key: str, count: int, skipped: list[int]) -> None:
        self.plan_self(key=key, count=count, skipped=skipped)

    def create_sub_plans(self) -> list[SubPlan]:
        key, skipped = self.input["key"], self.input["skipped"]
        return [
            self.trigger(SkippedChild) if index in skipped else self.trigger(Child, key, index)
            for index in range(self.input["count"])
        ]


class WaitingChild(Cancellable, Action):
    """Suspends until an event (or a cancel) comes; ``cancel()`` records its index."""

    def plan(self, key: str, index: int) -> None:
        self.plan_self(key=key, index=index)

    def run(self, event: Any = None) -> None:
        if event is None:
            PROBES[self.input["key"]].enter(self.input["index"], self.world.id)
            self.suspend()

    def cancel(self) -> None:
        PROBES[self.input["key"]].cancelled.append(self.input["index"])


class MixedWaitingParent(WithSubPlans, Action):
    """Child 0 runs (held when the probe says so), the others suspend; at most
    ``limit`` at once, so the last ones do not start."""

    def plan(self, key: str, count: int, limit: int) -> None:
        self.plan_self(key=key, count=count, concurrency_limit=limit)

    def create_sub_plans(self) -> list[SubPlan]:
        key = self.input["key"]
        return [
            self.trigger(Child, key, 0),
            *(self.trigger(WaitingChild, key, index) for index in range(1, self.input["count"])),
        ]


class Parent(WithSubPlans, Action):
    """``count`` children; the ``concurrency_limit`` input is optional."""

    def plan(self, key: str, count: int, **options: Any) -> None:
        self.plan_self(key=key, count=count, **options)

    def create_sub_plans(self) -> list[SubPlan]:
        key = self.input["key"]
        return [self.trigger(Child, key, index) for index in range(self.input["count"])]


class CheckedParent(Parent):
    """Records its output at each suspension; can count only once the children settled."""

    def _read_children(self) -> SubPlanRound:
        if PROBES[self.input["key"]].count_when_settled:
            eventually(lambda: not unsettled(self.world, self.execution_plan_id))
        return super()._read_children()

    def suspend(self, callback: Any = None) -> Any:
        PROBES[self.input["key"]].suspended_outputs.append(dict(self.output))
        return super().suspend(callback)


def unsettled(world: ActionWorld, parent_id: str) -> list[ExecutionPlan]:
    filters = {
        "caller_execution_plan_id": parent_id,
        "state": [PlanState.PAUSED, PlanState.RUNNING, PlanState.PLANNED],
    }
    return list(world.persistence.find_execution_plans(filters=filters))


class LimitedParent(Parent):
    concurrency_limit = 2


class BatchedParent(WithSubPlans, Action):
    """Children planned ``batch_size`` at a time, at most two running."""

    batch_size = 2
    concurrency_limit = 2

    def plan(self, key: str, count: int) -> None:
        self.plan_self(key=key, count=count)

    def total_count(self) -> int:
        return int(self.input["count"])

    def batch(self, start: int, size: int) -> list[SubPlan]:
        key = self.input["key"]
        return [self.trigger(Child, key, index) for index in range(start, start + size)]


class Prepare(Action):
    def run(self, event: Any = None) -> None:
        self.output["prepared"] = True


class Outer(Action):
    """The sub-plan action is not the entry action: its id is 3."""

    def plan(self, key: str, count: int) -> None:
        with self.sequence():
            self.plan_action(Prepare)
            self.plan_action(Parent, key, count)


class NotSubPlans(WithSubPlans, Action):
    def plan(self, returned: str) -> None:
        self.plan_self(returned=returned)

    def create_sub_plans(self) -> Any:
        if self.input["returned"] == "none":
            return None
        return ["not-a-sub-plan"]


# -- helpers ---------------------------------------------------------------------------


def load(world: World, plan_id: str) -> ExecutionPlan:
    return world.persistence.load_execution_plan(plan_id)


def children(world: World, parent_id: str, state: PlanState | None = None) -> list[ExecutionPlan]:
    filters: dict[str, Any] = {"caller_execution_plan_id": parent_id}
    if state is not None:
        filters["state"] = state
    return list(world.persistence.find_execution_plans(filters=filters))


def run_step(plan: ExecutionPlan, action_class: type[Action]) -> int:
    (step_id,) = (
        s.id
        for s in plan.steps.values()
        if s.action_class == action_class.class_name() and s.phase == "run"
    )
    return step_id


def wait_parent_suspended(world: World, plan_id: str, action_class: type[Action]) -> ExecutionPlan:
    def check() -> ExecutionPlan | None:
        plan = load(world, plan_id)
        step = plan.steps[run_step(plan, action_class)]
        return plan if step.state is StepState.SUSPENDED else None

    found: ExecutionPlan = eventually(check)
    return found


def counts(plan: ExecutionPlan, action_class: type[Action] | None = None) -> dict[str, int]:
    action = plan.entry_action
    if action_class is not None:
        (action,) = (a for a in plan.actions if a.action_class == action_class.class_name())
    return {name: action.output[name] for name in COUNT_NAMES}


COUNT_NAMES = ("total_count", "success_count", "failed_count", "pending_count")


def release_one_at_a_time(probe: Probe, total: int, limit: int) -> None:
    """Release held children one by one; each time, ``limit`` (or what is left) run."""
    for released in range(total):
        expected = min(limit, total - released)

        def running(expected: int = expected) -> bool:
            return probe.active == expected

        def left(released: int = released) -> bool:
            return probe.left == released + 1

        eventually(running)
        probe.release.release()
        eventually(left)


# -- children, callers, counts ---------------------------------------------------------


def test_children_run_and_record_their_caller(world: World, probe: Probe) -> None:
    triggered = world.trigger(Outer, probe.key, 3)
    done = triggered.finished.result(TIMEOUT)

    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    (parent_action,) = (a for a in done.actions if a.action_class == Parent.class_name())
    assert parent_action.id != done.entry_action.id
    assert counts(done, Parent) == {
        "total_count": 3,
        "success_count": 3,
        "failed_count": 0,
        "pending_count": 0,
    }
    assert probe.runs == {0: 1, 1: 1, 2: 1}
    found = children(world, triggered.execution_plan_id)
    assert len(found) == 3
    for child in found:
        assert child.caller_execution_plan_id == triggered.execution_plan_id
        assert child.caller_action_id == parent_action.id
        assert (child.state, child.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
        loaded = load(world, child.id)
        assert loaded.caller_execution_plan_id == triggered.execution_plan_id
        assert loaded.caller_action_id == parent_action.id
    assert sorted(load(world, c.id).entry_action.output["index"] for c in found) == [0, 1, 2]
    # the parent itself is no sub-plan
    parent = load(world, triggered.execution_plan_id)
    assert parent.caller_execution_plan_id is None
    assert parent.caller_action_id is None


def test_parent_waits_suspended_until_every_child_stops(world: World, probe: Probe) -> None:
    probe.held = True
    triggered = world.trigger(Parent, probe.key, 3)
    plan_id = triggered.execution_plan_id
    eventually(lambda: probe.active == 3)
    plan = wait_parent_suspended(world, plan_id, Parent)
    assert plan.state is PlanState.RUNNING
    assert counts(plan)["total_count"] == 3

    probe.release.release(2)
    eventually(lambda: probe.left == 2)
    eventually(lambda: counts(load(world, plan_id))["success_count"] == 2)
    plan = wait_parent_suspended(world, plan_id, Parent)
    assert plan.state is PlanState.RUNNING
    assert counts(plan) == {
        "total_count": 3,
        "success_count": 2,
        "failed_count": 0,
        "pending_count": 1,
    }
    assert not triggered.finished.done()

    probe.release.release()
    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert counts(done) == {
        "total_count": 3,
        "success_count": 3,
        "failed_count": 0,
        "pending_count": 0,
    }


def test_children_that_ended_warning_are_counted_apart_and_the_parent_ends_warning(
    world: World, probe: Probe
) -> None:
    done = world.trigger(MixedParent, probe.key, 4, [1, 3]).finished.result(TIMEOUT)

    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.WARNING)
    output = done.entry_action.output
    assert {name: output[name] for name in (*COUNT_NAMES, "warning_count")} == {
        "total_count": 4,
        "success_count": 2,
        "warning_count": 2,
        "failed_count": 0,
        "pending_count": 0,
    }
    results = sorted(str(child.result) for child in children(world, done.id))
    assert results == ["success", "success", "warning", "warning"]
    # a parent whose children all succeeded still says so
    clean = world.trigger(Parent, probe.key, 2).finished.result(TIMEOUT)
    assert clean.result is PlanResult.SUCCESS
    assert clean.entry_action.output["warning_count"] == 0


def test_zero_children_parent_succeeds_at_once(world: World, probe: Probe) -> None:
    done = world.trigger(Parent, probe.key, 0).finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert counts(done) == {
        "total_count": 0,
        "success_count": 0,
        "failed_count": 0,
        "pending_count": 0,
    }
    assert children(world, done.id) == []
    assert probe.runs == {}


# -- concurrency limit -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("parent_class", "options"),
    [(LimitedParent, {}), (Parent, {"concurrency_limit": 2})],
    ids=["class-attribute", "input"],
)
def test_concurrency_limit_caps_running_children(
    db_url: str,
    make_world: MakeWorld,
    probe: Probe,
    parent_class: type[Parent],
    options: dict[str, Any],
) -> None:
    world = make_world(db_url, pool_size=8)  # the pool is not what limits the children
    probe.held = True
    triggered = world.trigger(parent_class, probe.key, 5, **options)
    plan_id = triggered.execution_plan_id

    eventually(lambda: probe.active == 2)
    wait_parent_suspended(world, plan_id, parent_class)
    # the parent ran to its suspension: it started two, the other three wait
    assert len(children(world, plan_id)) == 5
    assert len(children(world, plan_id, PlanState.PLANNED)) == 3

    release_one_at_a_time(probe, 5, 2)
    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert counts(done)["success_count"] == 5
    assert probe.max_active == 2
    assert probe.runs == {index: 1 for index in range(5)}


def test_without_a_limit_all_children_run_at_once(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    world = make_world(db_url, pool_size=8)
    probe.held = True
    triggered = world.trigger(Parent, probe.key, 4)
    eventually(lambda: probe.active == 4)
    probe.release.release(4)
    assert triggered.finished.result(TIMEOUT).result is PlanResult.SUCCESS
    assert probe.max_active == 4


@pytest.mark.parametrize("limit", [0, -1, 1.5, "2", True])
def test_bad_concurrency_limit_fails_planning(world: World, probe: Probe, limit: Any) -> None:
    with pytest.raises(PlanningFailed, match="concurrency_limit") as caught:
        world.trigger(Parent, probe.key, 2, concurrency_limit=limit)
    plan = load(world, caught.value.execution_plan_id)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert children(world, plan.id) == []


# -- failures and resume ---------------------------------------------------------------


def test_failed_child_fails_the_parent_and_resume_reruns_only_it(
    world: World, probe: Probe
) -> None:
    probe.fail_first = {1: 1}
    triggered = world.trigger(Parent, probe.key, 3)
    plan_id = triggered.execution_plan_id

    paused = triggered.finished.result(TIMEOUT)
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    step = paused.steps[run_step(paused, Parent)]
    assert step.state is StepState.ERROR
    assert step.error is not None
    assert step.error.exception_class == "dynflow.action.sub_plans.SubPlansFailed"
    assert "1 of 3 sub-plans failed" in step.error.message
    assert counts(load(world, plan_id)) == {
        "total_count": 3,
        "success_count": 2,
        "failed_count": 1,
        "pending_count": 0,
    }
    (failed,) = children(world, plan_id, PlanState.PAUSED)
    assert failed.result is PlanResult.ERROR
    assert load(world, failed.id).entry_action.input["index"] == 1
    assert probe.runs == {0: 1, 1: 1, 2: 1}

    done = world.resume(plan_id).result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert probe.runs == {0: 1, 1: 2, 2: 1}
    assert counts(done) == {
        "total_count": 3,
        "success_count": 3,
        "failed_count": 0,
        "pending_count": 0,
    }
    assert len(children(world, plan_id)) == 3  # no new children: the failed one re-ran
    stored = load(world, failed.id)
    assert (stored.state, stored.result) == (PlanState.STOPPED, PlanResult.SUCCESS)


def test_counts_add_up_when_resumed_children_finish_before_the_parent_counts(
    world: World, probe: Probe
) -> None:
    probe.fail_first = {0: 1}
    triggered = world.trigger(CheckedParent, probe.key, 2)
    paused = triggered.finished.result(TIMEOUT)
    assert paused.state is PlanState.PAUSED

    probe.count_when_settled = True  # the resumed child stops before the parent counts
    done = world.resume(paused.id).result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert probe.runs == {0: 2, 1: 1}
    assert counts(done) == {
        "total_count": 2,
        "success_count": 2,
        "failed_count": 0,
        "pending_count": 0,
    }
    for output in probe.suspended_outputs:
        assert min(output[name] for name in counts(done)) >= 0, output
        assert (
            output["success_count"] + output["failed_count"] + output["pending_count"]
            == (output["total_count"])
        ), output


def test_parent_fails_only_after_the_other_children_stop(world: World, probe: Probe) -> None:
    probe.held = True
    probe.fail_first = {0: 1}
    triggered = world.trigger(Parent, probe.key, 2)
    plan_id = triggered.execution_plan_id
    eventually(lambda: probe.active == 2)

    probe.release.release()  # one of them stops (child 0 fails, child 1 succeeds)
    eventually(lambda: probe.left == 1)
    eventually(lambda: counts(load(world, plan_id))["pending_count"] == 1)
    plan = wait_parent_suspended(world, plan_id, Parent)
    assert plan.state is PlanState.RUNNING
    assert not triggered.finished.done()

    probe.release.release()
    paused = triggered.finished.result(TIMEOUT)
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    assert counts(load(world, plan_id)) == {
        "total_count": 2,
        "success_count": 1,
        "failed_count": 1,
        "pending_count": 0,
    }


def test_halted_child_counts_as_failed(world: World, probe: Probe) -> None:
    probe.held = True
    triggered = world.trigger(Parent, probe.key, 2)
    plan_id = triggered.execution_plan_id
    eventually(lambda: probe.active == 2)
    wait_parent_suspended(world, plan_id, Parent)

    first, _ = children(world, plan_id)
    halted = world.halt(first.id).result(TIMEOUT)
    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    eventually(lambda: counts(load(world, plan_id))["failed_count"] == 1)
    assert not triggered.finished.done()

    probe.release.release(2)
    paused = triggered.finished.result(TIMEOUT)
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    assert counts(load(world, plan_id)) == {
        "total_count": 2,
        "success_count": 1,
        "failed_count": 1,
        "pending_count": 0,
    }


@pytest.mark.parametrize("returned", ["list", "none"])
def test_create_sub_plans_returning_something_else_fails_clearly(
    world: World, returned: str
) -> None:
    paused = world.trigger(NotSubPlans, returned).finished.result(TIMEOUT)
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    (error,) = paused.errors
    assert "NotSubPlans.create_sub_plans() must return sub-plans" in error.message
    assert "self.trigger" in error.message


def test_sub_plans_on_an_in_thread_world(db_url: str) -> None:
    with registered_probe() as probe, InThreadWorld(db_url) as world:
        probe.fail_first = {0: 1}
        paused = world.trigger(LimitedParent, probe.key, 3).finished.result(0)
        assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
        assert probe.max_active == 1
        done = world.resume(paused.id).result(0)
        assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
        assert probe.runs == {0: 2, 1: 1, 2: 1}
        assert counts(done)["success_count"] == 3


class registered_probe:
    """A probe outside the fixture (for worlds the test opens itself)."""

    def __enter__(self) -> Probe:
        key = uuid.uuid4().hex
        self.probe = PROBES[key] = Probe(key)
        return self.probe

    def __exit__(self, *exc: object) -> None:
        del PROBES[self.probe.key]


# -- batches ---------------------------------------------------------------------------


def test_batched_children_are_planned_a_batch_at_a_time(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    world = make_world(db_url, pool_size=8)
    probe.held = True
    triggered = world.trigger(BatchedParent, probe.key, 5)
    plan_id = triggered.execution_plan_id

    eventually(lambda: probe.active == 2)
    plan = wait_parent_suspended(world, plan_id, BatchedParent)
    assert counts(plan)["total_count"] == 5
    # only the first batch exists: the limit holds the rest back
    assert len(children(world, plan_id)) == 2
    assert len(children(world, plan_id, PlanState.PLANNED)) == 0

    release_one_at_a_time(probe, 5, 2)
    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert counts(done) == {
        "total_count": 5,
        "success_count": 5,
        "failed_count": 0,
        "pending_count": 0,
    }
    assert probe.runs == {index: 1 for index in range(5)}
    assert probe.max_active == 2
    assert len(children(world, plan_id)) == 5


# -- recovery --------------------------------------------------------------------------


def test_a_starting_world_leaves_planned_children_to_their_parent(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    first = make_world(db_url, auto_execute=False)
    probe.held = True
    triggered = first.trigger(LimitedParent, probe.key, 4)
    plan_id = triggered.execution_plan_id
    eventually(lambda: probe.active == 2)
    wait_parent_suspended(first, plan_id, LimitedParent)
    waiting = {c.id for c in children(first, plan_id, PlanState.PLANNED)}
    assert len(waiting) == 2
    # a planned plan that is no sub-plan, of a world that is gone: a starting world
    # does pick it up (while its planning world lives, it waits for execute)
    planner = make_world(db_url, executor=False)
    lone = planner.plan(Prepare)
    planner.terminate()

    second = make_world(db_url, auto_execute=True)
    eventually(lambda: load(second, lone.id).result is PlanResult.SUCCESS)
    assert {c.id for c in children(second, plan_id, PlanState.PLANNED)} == waiting
    assert second.recover() == 0
    for child_id in waiting:
        assert not second.coordinator.find_locks(id=child_id)

    release_one_at_a_time(probe, 4, 2)
    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert probe.max_active == 2


def test_halting_the_parent_stops_the_children_it_never_started(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    world = make_world(db_url, pool_size=4)
    probe.held = True
    triggered = world.trigger(Parent, probe.key, 3, concurrency_limit=1)
    plan_id = triggered.execution_plan_id
    eventually(lambda: probe.active == 1)
    wait_parent_suspended(world, plan_id, Parent)
    assert len(children(world, plan_id, PlanState.PLANNED)) == 2

    halted = world.halt(plan_id).result(TIMEOUT)
    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    eventually(lambda: not children(world, plan_id, PlanState.PLANNED))
    probe.held = False
    probe.release.release(10)
    eventually(lambda: all(child.state is PlanState.STOPPED for child in children(world, plan_id)))
    assert sum(probe.runs.values()) == 1  # the two waiting children never ran


# -- cancelling and halting the parent -------------------------------------------------


def settle_children(world: World, plan_id: str) -> dict[int, ExecutionPlan]:
    """The children once all stopped, by index; none keeps an execution lock."""
    found = eventually(
        lambda: (
            (kids := children(world, plan_id))
            and all(c.state is PlanState.STOPPED for c in kids)
            and kids
        )
    )
    for child in found:
        assert not world.coordinator.find_locks(id=child.id), child
    return {load(world, c.id).entry_action.input["index"]: c for c in found}


def start_mixed(world: World, probe: Probe) -> tuple[str, int]:
    """Child 0 runs (held), the others suspend, but one of the four never starts (the
    limit is three): (parent id, index of the child not started)."""
    probe.held = True
    triggered = world.trigger(MixedWaitingParent, probe.key, 4, 3)
    plan_id = triggered.execution_plan_id
    eventually(lambda: len(probe.runs) == 3)
    eventually(lambda: len(children(world, plan_id, PlanState.RUNNING)) == 3)
    wait_parent_suspended(world, plan_id, MixedWaitingParent)
    (unstarted,) = set(range(4)) - set(probe.runs)
    return plan_id, unstarted


def test_cancelling_the_parent_cancels_its_children(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    world = make_world(db_url, pool_size=6)
    plan_id, unstarted = start_mixed(world, probe)

    for future in world.cancel(plan_id):
        future.result(TIMEOUT)

    parent = eventually(lambda: (p := load(world, plan_id)).state is PlanState.STOPPED and p)
    assert parent.result is PlanResult.CANCELLED
    probe.release.release()  # the running child, not cancellable, finishes its run
    found = settle_children(world, plan_id)
    waiting = sorted({1, 2, 3} - {unstarted})
    assert sorted(probe.cancelled) == waiting
    expected = {index: "cancelled" for index in waiting} | {0: "success", unstarted: "error"}
    assert {index: str(c.result) for index, c in found.items()} == expected
    assert unstarted not in probe.runs  # stopped without running


def test_halting_the_parent_halts_its_children(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    world = make_world(db_url, pool_size=6)
    plan_id, unstarted = start_mixed(world, probe)

    halted = world.halt(plan_id).result(TIMEOUT)

    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    found = settle_children(world, plan_id)
    assert {index: str(c.result) for index, c in found.items()} == dict.fromkeys(range(4), "error")
    assert probe.cancelled == []  # halted, not cancelled
    assert unstarted not in probe.runs
    for index in set(range(4)) - {unstarted}:
        (error,) = load(world, found[index].id).errors
        assert "halted" in error.message


# -- children spread over the executors ------------------------------------------------


def started_by(world: World, plan_id: str) -> list[str | None]:
    return [
        entry.world_id
        for entry in load(world, plan_id).execution_history
        if entry.name == "start execution"
    ]


def test_children_are_spread_over_the_live_executors(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    first = make_world(db_url, connector="database", connector_poll_interval=0.05)
    second = make_world(db_url, connector="database", connector_poll_interval=0.05)

    done = first.trigger(Parent, probe.key, 6).finished.result(TIMEOUT)

    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert counts(done)["success_count"] == 6
    executors = [started_by(first, child.id) for child in children(first, done.id)]
    assert all(len(started) == 1 for started in executors), executors
    assert {started[0] for started in executors} == {first.id, second.id}
    assert set(probe.worlds) == {first.id, second.id}
    assert started_by(first, done.id) == [first.id]


def test_cancelling_the_parent_reaches_children_in_other_worlds(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    options = {"connector": "database", "connector_poll_interval": 0.05, "pool_size": 6}
    first = make_world(db_url, **options)
    second = make_world(db_url, **options)
    plan_id, unstarted = start_mixed(first, probe)
    assert set(probe.worlds) == {first.id, second.id}

    for future in second.cancel(plan_id):  # asked in the world that does not run it
        future.result(TIMEOUT)

    probe.release.release()
    found = settle_children(first, plan_id)
    waiting = sorted({1, 2, 3} - {unstarted})
    assert sorted(probe.cancelled) == waiting
    expected = {index: "cancelled" for index in waiting} | {0: "success", unstarted: "error"}
    assert {index: str(c.result) for index, c in found.items()} == expected
    assert load(first, plan_id).result is PlanResult.CANCELLED


# -- a world terminating while a parent plans its children ------------------------------

#: per probe key: (the parent planned its first child, the test let it go on)
PLANNING: dict[str, tuple[threading.Event, threading.Event]] = {}


class SlowPlanningParent(Parent):
    """Plans its first child, waits until the test lets it go on, plans the others."""

    def create_sub_plans(self) -> list[SubPlan]:
        key = self.input["key"]
        planned, go_on = PLANNING[key]
        made = [self.trigger(Child, key, 0)]
        planned.set()
        if not go_on.wait(20):
            raise TimeoutError("the test never let the parent go on")
        made += [self.trigger(Child, key, index) for index in range(1, self.input["count"])]
        return made


def test_a_parent_planning_children_while_its_world_terminates_is_handed_over_whole(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    """The world's termination lets the running step finish planning (it does not fail
    it with "world is terminated"); the plan goes to the next executor, which starts
    the children: each runs once, the parent ends success."""
    planned, go_on = PLANNING[probe.key] = (threading.Event(), threading.Event())
    try:
        first = make_world(db_url)
        plan_id = first.trigger(SlowPlanningParent, probe.key, 3).execution_plan_id
        assert planned.wait(TIMEOUT)
        terminating = threading.Thread(target=first.terminate)
        terminating.start()
        eventually(lambda: first.control._stopped)
        go_on.set()
        terminating.join(30)
        assert not terminating.is_alive()

        second = make_world(db_url)
        done = eventually(
            lambda: (p := load(second, plan_id)).state is PlanState.STOPPED and p, timeout=30
        )
        assert done.result is PlanResult.SUCCESS, done.errors
        assert len(children(second, plan_id)) == 3
        assert probe.runs == {0: 1, 1: 1, 2: 1}
    finally:
        go_on.set()
        del PLANNING[probe.key]
