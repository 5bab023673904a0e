"""Revert (``world.revert``, ``Rescue.REVERT``) on a threaded world: the order of the
reverts, a failing revert pausing the plan and resume going on, skip of a failed
revert, automatic revert on failure, plans that cannot or need not be reverted,
middleware, plan hooks, singleton locks, client worlds and sub-plans."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import dynflow
from dynflow import (
    Action,
    Cancellable,
    ExecutionError,
    ExecutionPlan,
    Middleware,
    PlanningFailed,
    PlanResult,
    PlanState,
    Rescue,
    Retry,
    Singleton,
    StepState,
    SubPlan,
    WithSubPlans,
    World,
)
from dynflow.coordinator import EXECUTION_LOCK
from dynflow.testing import InThreadWorld
from tests import support
from tests.support import eventually

MakeWorld = Callable[..., World]
TIMEOUT = 20


@dataclass
class Box(support.Box):
    """Also records the reverts, in order, and makes them fail on demand."""

    reverted: list[str] = field(default_factory=list)
    #: name -> how many of its first reverts raise (-1: every one)
    revert_fails: dict[str, int] = field(default_factory=dict)
    phases: list[tuple[str, str]] = field(default_factory=list)
    hooks_seen: list[tuple[str, str]] = field(default_factory=list)
    hooked: threading.Event = field(default_factory=threading.Event)


BOXES: dict[str, Box] = {}


@pytest.fixture
def box() -> Iterator[Box]:
    yield from support.registered_box(Box, BOXES)


class Boom(Exception):
    """What failing steps and reverts raise."""


class Undo(Action):
    """A run step named by its input that knows how to undo itself."""

    def run(self, event: Any = None) -> None:
        box = BOXES[self.input["key"]]
        name = self.input["name"]
        with box.lock:
            box.runs[name] += 1
        self.output["done"] = name
        hook = box.hooks.get(name)
        if hook is not None:
            hook(self)
        if self.input.get("fail"):
            raise Boom(f"{name} failed")

    def revert(self) -> None:
        box = BOXES[self.input["key"]]
        name = self.input["name"]
        with box.lock:
            box.runs[f"revert:{name}"] += 1
            count = box.runs[f"revert:{name}"]
        hook = box.hooks.get(f"revert:{name}")
        if hook is not None:
            hook(self)
        left = box.revert_fails.get(name, 0)
        if left == -1 or count <= left:
            raise Boom(f"revert of {name} failed")
        with box.lock:
            box.reverted.append(name)
        self.output["undone"] = True


class NoUndo(Undo):
    """Nothing to undo: it does not override ``revert``."""

    revert = Action.revert


class UndoOnFailure(Undo):
    rescue_strategy = Rescue.REVERT


class Tree(Action):
    """Plans from a spec: ``"[kind:]name"`` (kind ``plain``, ``fail``, ``auto``,
    ``autofail``), ``["seq", ...]`` or ``["conc", ...]``."""

    def plan(self, key: str, spec: Any) -> None:
        self._build(key, spec)

    def _build(self, key: str, spec: Any) -> None:
        if isinstance(spec, str):
            kind, _, name = spec.rpartition(":")
            cls: type[Undo] = {
                "plain": NoUndo,
                "auto": UndoOnFailure,
                "autofail": UndoOnFailure,
            }.get(kind, Undo)
            self.plan_action(cls, key=key, name=name, fail=kind in ("fail", "autofail"))
            return
        kind, *items = spec
        with self.sequence() if kind == "seq" else self.concurrence():
            for item in items:
                self._build(key, item)


def _steps(plan: ExecutionPlan) -> dict[str, StepState]:
    """Run step state by action name."""
    found = {}
    for action in plan.actions:
        if action.run_step_id is not None and "name" in action.input:
            found[action.input["name"]] = plan.steps[action.run_step_id].state
    return found


def _run_step(plan: ExecutionPlan, name: str) -> int:
    for action in plan.actions:
        if action.input.get("name") == name and action.run_step_id is not None:
            return action.run_step_id
    raise AssertionError(f"no action {name}")


def _finished(world: World, box: Box, spec: Any) -> ExecutionPlan:
    return world.trigger(Tree, box.key, spec).finished.result(TIMEOUT)


# -- order and end states ------------------------------------------------------------


def test_a_stopped_plan_is_reverted_newest_completion_first(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url)
    done = _finished(world, box, ["seq", "a", "b", "plain:p", "c"])
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)

    reverted = world.revert(done.id).result(TIMEOUT)

    assert (reverted.state, reverted.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert box.reverted == ["c", "b", "a"]
    assert _steps(reverted) == {
        "a": StepState.REVERTED,
        "b": StepState.REVERTED,
        "c": StepState.REVERTED,
        "p": StepState.SUCCESS,  # nothing to undo: it stays as it was
    }
    stored = world.persistence.load_execution_plan(done.id)
    assert (stored.state, stored.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert [a.output.get("undone") for a in stored.actions if a.input.get("name") == "c"] == [True]
    assert [e.name for e in stored.execution_history][-3:] == [
        "revert execution",
        "start execution",
        "finish execution",
    ]
    assert world.coordinator.find_locks(lock_class=EXECUTION_LOCK) == []
    assert box.runs["a"] == 1  # run never runs again
    # reverting it again finds nothing left to undo
    again = world.revert(done.id).result(TIMEOUT)
    assert (again.state, again.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert box.reverted == ["c", "b", "a"]


def test_concurrent_steps_are_reverted_in_the_order_they_completed(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url)
    first, second = box.gate("x"), box.gate("y")
    triggered = world.trigger(Tree, box.key, ["conc", "x", "y"])
    assert first.entered.wait(TIMEOUT)
    assert second.entered.wait(TIMEOUT)
    second.open()  # y completes first
    eventually(
        lambda: (
            _steps(world.persistence.load_execution_plan(triggered.execution_plan_id))["y"]
            is StepState.SUCCESS
        )
    )
    first.open()
    triggered.finished.result(TIMEOUT)

    world.revert(triggered.execution_plan_id).result(TIMEOUT)
    assert box.reverted == ["x", "y"]


def test_a_paused_plan_reverts_what_succeeded_and_leaves_the_rest(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url)
    paused = _finished(world, box, ["seq", "a", "b", "fail:c", "d"])
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)

    reverted = world.revert(paused.id).result(TIMEOUT)

    assert (reverted.state, reverted.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert box.reverted == ["b", "a"]
    assert _steps(reverted) == {
        "a": StepState.REVERTED,
        "b": StepState.REVERTED,
        "c": StepState.ERROR,  # its run failed: nothing to undo, its error kept
        "d": StepState.PENDING,  # never ran
    }
    assert box.runs["c"] == 1  # reverting never re-runs the failed step


def test_a_plan_with_nothing_to_revert_is_reverted_at_once(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url)
    done = _finished(world, box, ["seq", "plain:p", "plain:q"])
    reverted = world.revert(done.id).result(TIMEOUT)
    assert (reverted.state, reverted.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert _steps(reverted) == {"p": StepState.SUCCESS, "q": StepState.SUCCESS}
    assert "start execution" not in [e.name for e in reverted.execution_history][1:]
    assert world.coordinator.find_locks(lock_class=EXECUTION_LOCK) == []


def test_reverting_a_running_plan_is_refused(db_url: str, make_world: MakeWorld, box: Box) -> None:
    world = make_world(db_url)
    gate = box.gate("a")
    triggered = world.trigger(Tree, box.key, ["seq", "a", "b"])
    assert gate.entered.wait(TIMEOUT)
    plan_id = triggered.execution_plan_id
    with pytest.raises(ExecutionError, match=f"execution plan {plan_id} is running"):
        world.revert(plan_id).result(TIMEOUT)
    gate.open()
    assert triggered.finished.result(TIMEOUT).result is PlanResult.SUCCESS
    assert box.reverted == []


def test_reverting_an_unknown_plan_fails(db_url: str, make_world: MakeWorld) -> None:
    world = make_world(db_url)
    with pytest.raises(dynflow.NotFound):
        world.revert("00000000-0000-0000-0000-000000000000").result(TIMEOUT)


# -- failing reverts -----------------------------------------------------------------


def test_a_failing_revert_pauses_the_plan_and_resume_goes_on_reverting(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url)
    done = _finished(world, box, ["seq", "a", "b", "c"])
    box.revert_fails["b"] = 1

    paused = world.revert(done.id).result(TIMEOUT)

    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    assert _steps(paused) == {
        "a": StepState.SUCCESS,
        "b": StepState.REVERTING,
        "c": StepState.REVERTED,
    }
    failed = paused.steps[_run_step(paused, "b")]
    assert failed.error is not None
    assert failed.error.message == "revert of b failed"
    assert world.recover() == 0  # a failed revert waits for resume, like a failed step

    resumed = world.resume(done.id).result(TIMEOUT)

    assert (resumed.state, resumed.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert box.reverted == ["c", "b", "a"]
    assert box.runs["revert:b"] == 2
    assert box.runs["revert:c"] == 1
    assert box.runs["b"] == 1  # resume never re-runs run
    assert resumed.steps[_run_step(resumed, "b")].error is None


def test_skipping_a_failed_revert_gives_it_up(db_url: str, make_world: MakeWorld, box: Box) -> None:
    world = make_world(db_url)
    done = _finished(world, box, ["seq", "a", "b", "c"])
    box.revert_fails["c"] = -1
    paused = world.revert(done.id).result(TIMEOUT)
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)

    skipped = world.skip(done.id, _run_step(paused, "c"))
    assert _steps(skipped)["c"] is StepState.SKIPPED
    resumed = world.resume(done.id).result(TIMEOUT)

    assert (resumed.state, resumed.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert box.reverted == ["b", "a"]
    assert _steps(resumed) == {
        "a": StepState.REVERTED,
        "b": StepState.REVERTED,
        "c": StepState.SKIPPED,
    }


def test_world_revert_on_a_plan_whose_revert_failed_retries_it(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url)
    done = _finished(world, box, ["seq", "a", "b"])
    box.revert_fails["b"] = 1
    assert world.revert(done.id).result(TIMEOUT).state is PlanState.PAUSED
    again = world.revert(done.id).result(TIMEOUT)
    assert (again.state, again.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert box.reverted == ["b", "a"]


def test_halting_a_reverting_plan_and_reverting_again_runs_that_revert_again(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url)
    done = _finished(world, box, ["seq", "a", "b"])
    gate = box.gate("revert:b")
    reverting = world.revert(done.id)
    assert gate.entered.wait(TIMEOUT)
    halted = world.halt(done.id).result(TIMEOUT)
    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert reverting.result(TIMEOUT).state is PlanState.STOPPED
    assert _steps(halted)["b"] is StepState.REVERTING
    gate.open()  # its late result is not heard

    box.hooks.pop("revert:b")
    again = world.revert(done.id).result(TIMEOUT)
    assert (again.state, again.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert box.runs["revert:b"] == 2
    assert box.reverted[-2:] == ["b", "a"]


# -- Rescue.REVERT -----------------------------------------------------------------


def test_rescue_revert_reverts_a_failed_plan_automatically(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url)
    done = _finished(world, box, ["seq", "a", "plain:p", "b", "autofail:c", "d"])
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert box.reverted == ["b", "a"]
    assert _steps(done) == {
        "a": StepState.REVERTED,
        "p": StepState.SUCCESS,
        "b": StepState.REVERTED,
        "c": StepState.ERROR,
        "d": StepState.PENDING,
    }
    assert world.coordinator.find_locks(lock_class=EXECUTION_LOCK) == []


def test_rescue_revert_mixed_with_pause_pauses(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url)
    done = _finished(world, box, ["seq", "a", ["conc", "autofail:c", "fail:e"]])
    assert (done.state, done.result) == (PlanState.PAUSED, PlanResult.ERROR)
    assert box.reverted == []


def test_rescue_revert_without_auto_rescue_pauses(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url, auto_rescue=False)
    done = _finished(world, box, ["seq", "a", "autofail:c"])
    assert (done.state, done.result) == (PlanState.PAUSED, PlanResult.ERROR)
    reverted = world.revert(done.id).result(TIMEOUT)
    assert (reverted.state, reverted.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert box.reverted == ["a"]


# -- middleware, hooks, singleton locks, client worlds ---------------------------------


class Recording(Middleware):
    def _note(self, hook: str) -> None:
        box = BOXES[self.action.input["key"]]
        with box.lock:
            box.phases.append((self.action.input["name"], hook))

    def run_phase(self, *args: Any, **kwargs: Any) -> Any:
        self._note("run_phase")
        return self.pass_(*args, **kwargs)

    def revert_phase(self, *args: Any, **kwargs: Any) -> Any:
        self._note("revert_phase")
        return self.pass_(*args, **kwargs)

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        self._note("revert")
        return self.pass_(*args, **kwargs)


class Watched(Undo):
    middleware = [Recording]


class DenyRevert(Middleware):
    def revert(self, *args: Any, **kwargs: Any) -> Any:
        raise Boom("revert denied by middleware")


class WatchedTree(Action):
    def plan(self, key: str) -> None:
        self.plan_action(Watched, key=key, name="w")


def test_middleware_sees_the_revert_phase(db_url: str, make_world: MakeWorld, box: Box) -> None:
    world = make_world(db_url)
    done = world.trigger(WatchedTree, box.key).finished.result(TIMEOUT)
    world.revert(done.id).result(TIMEOUT)
    assert box.phases == [("w", "run_phase"), ("w", "revert_phase"), ("w", "revert")]

    world.middleware.use(DenyRevert)  # world middleware wraps the class's
    again = world.trigger(WatchedTree, box.key).finished.result(TIMEOUT)
    paused = world.revert(again.id).result(TIMEOUT)
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    assert [s.error.message for s in paused.steps.values() if s.error] == [
        "revert denied by middleware"
    ]


class Hooked(Tree):
    def plan(self, key: str, spec: Any) -> None:
        self.plan_self(key=key)
        super().plan(key, spec)

    @dynflow.plan_hook("stopped", "success", "failure")
    def seen(self, plan: ExecutionPlan) -> None:
        box = BOXES[self.input["key"]]
        box.hooks_seen.append((str(plan.state), str(plan.result)))
        if plan.result is PlanResult.REVERTED:
            box.hooked.set()


def test_plan_hooks_see_a_reverted_plan(db_url: str, make_world: MakeWorld, box: Box) -> None:
    world = make_world(db_url)
    done = world.trigger(Hooked, box.key, ["seq", "a"]).finished.result(TIMEOUT)
    eventually(lambda: box.hooks_seen)
    world.revert(done.id).result(TIMEOUT)
    assert box.hooked.wait(TIMEOUT)
    assert box.hooks_seen == [("stopped", "success"), ("stopped", "reverted")]


class OnlyOne(Singleton, Undo):
    pass


def test_a_reverted_singleton_plan_releases_its_lock(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url)
    paused = world.trigger(OnlyOne, key=box.key, name="s", fail=True).finished.result(TIMEOUT)
    assert paused.state is PlanState.PAUSED
    with pytest.raises(PlanningFailed):
        world.plan(OnlyOne, key=box.key, name="t")
    reverted = world.revert(paused.id).result(TIMEOUT)
    assert reverted.result is PlanResult.REVERTED
    assert world.plan(OnlyOne, key=box.key, name="t").state is PlanState.PLANNED


def test_a_client_world_reverts_through_an_executor_world(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    executor = make_world(db_url)
    client = make_world(db_url, executor=False)
    done = _finished(executor, box, ["seq", "a", "b"])
    reverted = client.revert(done.id).result(TIMEOUT)
    assert (reverted.state, reverted.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert box.reverted == ["b", "a"]


# -- recovery ----------------------------------------------------------------------------


def test_a_reverting_plan_of_a_dead_world_is_reverted_by_the_next_one(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    """A dies while the revert of c runs: the world that recovers the plan runs that
    revert again (revert must be idempotent), then the others; run never runs again."""
    dead = make_world(
        db_url, clock=dynflow.clock.ManualClock(), validity_check_interval=0, auto_execute=False
    )
    done = _finished(dead, box, ["seq", "a", "b", "c"])
    gate = support.Gate()
    box.hooks["revert:c"] = lambda action: (
        gate.pass_through() if box.runs["revert:c"] == 1 else None
    )
    dead.revert(done.id)
    assert gate.entered.wait(TIMEOUT)
    stored = dead.persistence.load_execution_plan(done.id)
    assert _steps(stored)["c"] is StepState.REVERTING

    rescuer = make_world(db_url, validity_check_interval=0, auto_execute=False)
    assert rescuer.invalidate(dead.id) == 1

    def reverted() -> ExecutionPlan | None:
        plan = rescuer.persistence.load_execution_plan(done.id)
        return plan if plan.result is PlanResult.REVERTED else None

    plan = eventually(reverted, timeout=TIMEOUT)
    gate.open()  # the dead world's revert of c ends now: it is not heard
    assert plan.state is PlanState.STOPPED
    assert _steps(plan) == {
        "a": StepState.REVERTED,
        "b": StepState.REVERTED,
        "c": StepState.REVERTED,
    }
    assert box.runs["revert:c"] == 2
    assert box.reverted[:3] == ["c", "b", "a"]
    assert (box.runs["a"], box.runs["b"], box.runs["c"]) == (1, 1, 1)
    assert "start execution" in [e.name for e in plan.execution_history][-2:]


# -- sub-plans -------------------------------------------------------------------------


class UndoChildren(WithSubPlans, Action):
    """``count`` children, one at a time (in no set order); each an ``Undo`` named
    ``child<i>``."""

    concurrency_limit = 1

    def plan(self, key: str, count: int) -> None:
        self.plan_self(key=key, count=count)

    def create_sub_plans(self) -> list[SubPlan]:
        key = self.input["key"]
        return [self.trigger(Undo, key=key, name=f"child{i}") for i in range(self.input["count"])]


class ParentTree(Action):
    def plan(self, key: str) -> None:
        with self.sequence():
            self.plan_action(Undo, key=key, name="before")
            self.plan_action(UndoChildren, key, 3)


def _children_latest_first(world: World, parent_id: str) -> list[str]:
    """The names of the parent's children, the one that ended last first."""
    children = world.persistence.find_execution_plans(
        filters={"caller_execution_plan_id": parent_id}
    )
    ordered = sorted(children, key=lambda c: c.ended_at or 0, reverse=True)
    return [c.entry_action.input["name"] for c in ordered]


def test_reverting_a_parent_reverts_its_children_latest_first(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url)
    done = world.trigger(ParentTree, box.key).finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    latest_first = _children_latest_first(world, done.id)

    reverted = world.revert(done.id).result(TIMEOUT)

    assert (reverted.state, reverted.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert box.reverted == [*latest_first, "before"]
    children = world.persistence.find_execution_plans(filters={"caller_execution_plan_id": done.id})
    assert {(c.state, c.result) for c in children} == {(PlanState.STOPPED, PlanResult.REVERTED)}


def test_a_failing_child_revert_fails_the_parents_revert(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url)
    done = world.trigger(ParentTree, box.key).finished.result(TIMEOUT)
    latest, middle, first = _children_latest_first(world, done.id)
    box.revert_fails[middle] = 1

    paused = world.revert(done.id).result(TIMEOUT)

    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    assert box.reverted == [latest]
    errors = [s.error.message for s in paused.steps.values() if s.error is not None]
    assert len(errors) == 1
    assert "the revert of sub-plan" in errors[0]

    resumed = world.resume(done.id).result(TIMEOUT)
    assert (resumed.state, resumed.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert box.reverted == [latest, middle, first, "before"]
    assert box.runs[f"revert:{latest}"] == 1
    assert box.runs[f"revert:{middle}"] == 2


class ParentOfTwo(Action):
    def plan(self, key: str) -> None:
        self.plan_action(UndoChildren, key, 2)


def test_a_parent_reverts_its_children_without_holding_a_worker(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    # one worker: a parent's revert that waited for its children in it would never end
    world = make_world(db_url, pool_size=1)
    done = world.trigger(ParentOfTwo, box.key).finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    latest_first = _children_latest_first(world, done.id)

    reverted = world.revert(done.id).result(TIMEOUT)

    assert (reverted.state, reverted.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert box.reverted == latest_first
    assert {s.state for s in reverted.steps.values() if s.phase == "run"} == {StepState.REVERTED}


def test_a_failing_child_revert_on_one_worker_pauses_the_parent_and_resume_ends_it(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url, pool_size=1)
    done = world.trigger(ParentOfTwo, box.key).finished.result(TIMEOUT)
    latest, first = _children_latest_first(world, done.id)
    box.revert_fails[first] = 1

    paused = world.revert(done.id).result(TIMEOUT)

    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    (step,) = [s for s in paused.steps.values() if s.phase == "run"]
    assert step.state is StepState.REVERTING
    assert step.error is not None
    assert "the revert of sub-plan" in step.error.message
    assert box.reverted == [latest]

    resumed = world.resume(done.id).result(TIMEOUT)
    assert (resumed.state, resumed.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert box.reverted == [latest, first]
    assert (box.runs[f"revert:{latest}"], box.runs[f"revert:{first}"]) == (1, 2)


def test_an_in_thread_world_reverts_a_parent_with_children(box: Box) -> None:
    with InThreadWorld() as world:
        done = world.trigger(ParentTree, box.key).finished.result(5)
        assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
        latest_first = _children_latest_first(world, done.id)
        box.revert_fails[latest_first[1]] = 1
        paused = world.revert(done.id).result(5)
        assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
        reverted = world.resume(done.id).result(5)
        assert (reverted.state, reverted.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert box.reverted == [latest_first[0], *latest_first[1:], "before"]
    assert box.runs[f"revert:{latest_first[1]}"] == 2


# -- cancel reaches a step waiting for its retry ---------------------------------------


class Flaky(Undo):
    retry = Retry(attempts=3, backoff=300.0, jitter=0.0)

    def run(self, event: Any = None) -> None:
        super().run(event)
        raise Boom("try again later")


class CancellableFlaky(Cancellable, Flaky):
    def cancel(self) -> None:
        BOXES[self.input["key"]].runs["cancel"] += 1


def _waiting(world: World, plan_id: str) -> ExecutionPlan:
    def check() -> ExecutionPlan | None:
        plan = world.persistence.load_execution_plan(plan_id)
        waiting = [s for s in plan.steps.values() if s.state is StepState.WAITING]
        return plan if waiting else None

    found: ExecutionPlan = eventually(check, timeout=TIMEOUT)
    return found


def test_cancel_reaches_a_step_waiting_for_its_retry(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url)
    triggered = world.trigger(CancellableFlaky, key=box.key, name="f")
    _waiting(world, triggered.execution_plan_id)

    cancelling = world.cancel(triggered.execution_plan_id)

    assert len(cancelling) == 1
    assert cancelling[0].result(TIMEOUT) is True
    plan = triggered.finished.result(TIMEOUT)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.CANCELLED)
    assert _steps(plan) == {"f": StepState.CANCELLED}
    assert box.runs["cancel"] == 1
    assert box.runs["f"] == 1  # no other attempt of run


def test_cancel_leaves_a_waiting_step_of_another_action_waiting(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url)
    triggered = world.trigger(Flaky, key=box.key, name="f")
    _waiting(world, triggered.execution_plan_id)
    assert world.cancel(triggered.execution_plan_id) == []
    plan = world.persistence.load_execution_plan(triggered.execution_plan_id)
    assert plan.state is PlanState.RUNNING
    assert _steps(plan) == {"f": StepState.WAITING}
    world.halt(triggered.execution_plan_id).result(TIMEOUT)


def test_an_in_thread_world_reverts_in_the_calling_thread(box: Box) -> None:
    with InThreadWorld() as world:
        automatic = world.trigger(Tree, box.key, ["seq", "a", "autofail:c"]).finished.result(5)
        assert (automatic.state, automatic.result) == (PlanState.STOPPED, PlanResult.REVERTED)
        done = world.trigger(Tree, box.key, ["seq", "x", "y"]).finished.result(5)
        assert world.revert(done.id).result(5).result is PlanResult.REVERTED
    assert box.reverted == ["a", "y", "x"]
