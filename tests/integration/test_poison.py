"""One bad plan never stops an executor: writes that fail for one plan, an error while
handling one plan, and an executor that dies anyway (its world stops heartbeating and
another world takes its plans over). Faults are injected into the persistence."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from dynflow import Action, PlanResult, PlanState, StepState, World
from dynflow.coordinator import EXECUTION_LOCK
from dynflow.executor.threaded import ThreadedExecutor
from dynflow.executor.work import StepDone
from dynflow.persistence import open_persistence
from dynflow.persistence.changes import Changes
from tests.support import eventually

MakeWorld = Callable[..., World]
TIMEOUT = 10
pytestmark = pytest.mark.usefixtures("commit_mode")


class Faulty:
    """A persistence whose ``apply_fenced`` first asks ``fault(call number, changes)``,
    which raises to make that write fail; everything else goes to the real one."""

    def __init__(self, url: str, fault: Callable[[int, Changes], None]) -> None:
        self._inner = open_persistence(url)
        self._fault = fault
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def apply_fenced(self, changes: Changes, owner: str, registration: str) -> set[str]:
        self.calls += 1
        self._fault(self.calls, changes)
        result: set[str] = self._inner.apply_fenced(changes, owner, registration)
        return result


class Injected(Exception):
    """The failure the faults raise."""


class Work(Action):
    """Outputs what it is told to."""

    def plan(self, **output: Any) -> None:
        self.plan_self(output)

    def run(self, event: Any = None) -> None:
        self.output.update(self.input)


def refuse_poison(call: int, changes: Changes) -> None:
    """Every write of an output holding ``poison`` fails (as a value the database
    refuses would)."""
    if any("poison" in output for output in changes.outputs.values()):
        raise Injected("cannot write the poison")


def assert_executor_alive(world: World) -> None:
    assert isinstance(world.executor, ThreadedExecutor)
    assert world.executor.alive()


def test_a_plan_whose_changes_cannot_be_written_pauses_and_the_others_go_on(
    db_url: str, make_world: MakeWorld
) -> None:
    world = make_world(db_url, persistence=Faulty(db_url, refuse_poison))
    good = world.trigger(Work, ok=1)
    bad = world.trigger(Work, poison=True)
    also_good = world.trigger(Work, ok=2)

    paused = bad.finished.result(TIMEOUT)

    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    [error] = paused.errors
    assert "cannot write the poison" in error.message
    assert error.exception_class.endswith("Injected")
    stored = world.persistence.load_execution_plan(bad.execution_plan_id)
    assert (stored.state, stored.result) == (PlanState.PAUSED, PlanResult.ERROR)
    assert [s.state for s in stored.steps.values() if s.phase == "run"] == [StepState.ERROR]
    assert stored.entry_action.output == {}  # what could not be written is not there
    assert [h.name for h in stored.execution_history][-1] == "pause execution"
    assert not world.coordinator.find_locks(lock_class=EXECUTION_LOCK, id=paused.id)
    assert good.finished.result(TIMEOUT).result is PlanResult.SUCCESS
    assert also_good.finished.result(TIMEOUT).result is PlanResult.SUCCESS
    later = world.trigger(Work, ok=3).finished.result(TIMEOUT)
    assert later.result is PlanResult.SUCCESS
    assert later.entry_action.output == {"ok": 3}
    assert_executor_alive(world)


def test_a_batch_that_fails_once_is_written_plan_by_plan_and_loses_nothing(
    db_url: str, make_world: MakeWorld
) -> None:
    all_triggered = threading.Event()
    failed: list[int] = []

    def fail_a_batch(call: int, changes: Changes) -> None:
        if call == 1:  # held until every plan is triggered: the next batch has several
            all_triggered.wait(TIMEOUT)
        if not failed and len(changes.plan_ids()) > 1:
            failed.append(call)
            raise Injected("a batch of several plans fails")

    persistence = Faulty(db_url, fail_a_batch)
    world = make_world(db_url, persistence=persistence)
    triggered = [world.trigger(Work, n=n) for n in range(6)]
    all_triggered.set()

    plans = [t.finished.result(TIMEOUT) for t in triggered]

    assert failed  # a batch failed, and its plans were then written one by one
    assert persistence.calls > failed[0] + 1
    assert [p.result for p in plans] == [PlanResult.SUCCESS] * 6
    for n, plan in enumerate(plans):
        stored = world.persistence.load_execution_plan(plan.id)
        assert (stored.state, stored.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
        assert stored.entry_action.output == {"n": n}
    assert_executor_alive(world)


def test_an_error_while_handling_one_plan_pauses_that_plan_only(
    db_url: str, make_world: MakeWorld
) -> None:
    world = make_world(db_url)
    assert isinstance(world.executor, ThreadedExecutor)
    core = world.executor.core
    step_done = core._step_done

    def broken(done: StepDone) -> None:
        if "break" in done.output:
            raise Injected("the core cannot handle this result")
        step_done(done)

    core._step_done = broken  # type: ignore[method-assign]
    bad = world.trigger(Work, **{"break": True})
    good = world.trigger(Work, ok=1)

    paused = bad.finished.result(TIMEOUT)

    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    [error] = paused.errors
    assert "the core cannot handle this result" in error.message
    stored = world.persistence.load_execution_plan(paused.id)
    assert (stored.state, stored.result) == (PlanState.PAUSED, PlanResult.ERROR)
    assert good.finished.result(TIMEOUT).result is PlanResult.SUCCESS
    assert world.trigger(Work, ok=2).finished.result(TIMEOUT).result is PlanResult.SUCCESS
    assert_executor_alive(world)


class Fatal(BaseException):
    """Escapes every ``except Exception``: kills the thread it is raised in."""


def test_a_dead_executor_stops_heartbeating_and_another_world_takes_its_plans(
    db_url: str, make_world: MakeWorld
) -> None:
    # a world is judged by its own lease (kept in its registry record)
    doomed = make_world(db_url, heartbeat_interval=0.1, lease=1.0, validity_check_interval=0)
    survivor = make_world(db_url, validity_check_interval=0, auto_execute=False)
    assert isinstance(doomed.executor, ThreadedExecutor)
    core = doomed.executor.core

    def fatal(*args: Any) -> None:
        raise Fatal("the core thread dies")

    core._start = fatal  # type: ignore[method-assign,assignment]
    plan_id = doomed.trigger(Work, ok=1).execution_plan_id

    eventually(lambda: not doomed.executor.alive(), timeout=TIMEOUT)  # type: ignore[union-attr]
    assert isinstance(doomed.executor.failure, Fatal)
    assert eventually(lambda: survivor.perform_validity_checks(), timeout=TIMEOUT) == 1
    finished = eventually(
        lambda: (
            (p := survivor.persistence.load_execution_plan(plan_id)).state is PlanState.STOPPED
            and p
        ),
        timeout=TIMEOUT,
    )
    assert finished.result is PlanResult.SUCCESS
    assert finished.entry_action.output == {"ok": 1}
    assert doomed.id not in {w.id for w in survivor.coordinator.find_worlds()}
