"""The threaded executor handles the next messages while a batch is being written: one
batch at a time, in order, the work of each released only once it is written, and
nothing lost when the database goes away during a write."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from dynflow import Action, PlanResult, PlanState, World
from dynflow.errors import PersistenceError
from dynflow.executor.threaded import ThreadedExecutor
from dynflow.persistence import open_persistence
from dynflow.persistence.changes import Changes
from tests.support import eventually

MakeWorld = Callable[..., World]
TIMEOUT = 10


class Gated:
    """A persistence whose ``apply_fenced`` can be held (``hold``) until ``release``
    is set, or made to fail (``outages`` calls in a row raise PersistenceError); it
    records which thread wrote which plans."""

    def __init__(self, url: str) -> None:
        self._inner = open_persistence(url)
        self.hold = False
        self.held = threading.Event()
        self.release = threading.Event()
        self.outages = 0
        self.writes: list[tuple[str, set[str]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def apply_fenced(self, changes: Changes, owner: str, registration: str) -> set[str]:
        if self.hold:
            self.hold = False
            self.held.set()
            assert self.release.wait(TIMEOUT)
        if self.outages:
            self.outages -= 1
            raise PersistenceError("the database went away")
        self.writes.append((threading.current_thread().name, changes.plan_ids()))
        result: set[str] = self._inner.apply_fenced(changes, owner, registration)
        return result


class Work(Action):
    def plan(self, n: int) -> None:
        self.plan_self({"n": n})

    def run(self, event: Any = None) -> None:
        self.output["n"] = self.input["n"]


@pytest.fixture
def gated(db_url: str, make_world: MakeWorld) -> tuple[World, Gated]:
    persistence = Gated(db_url)
    world = make_world(db_url, persistence=persistence)
    assert isinstance(world.executor, ThreadedExecutor)
    world.executor.write_when_idle = False  # every batch through the writer thread
    return world, persistence


def test_the_core_handles_the_next_plan_while_a_batch_is_written(
    gated: tuple[World, Gated],
) -> None:
    world, persistence = gated
    assert isinstance(world.executor, ThreadedExecutor)
    core = world.executor.core
    persistence.hold = True
    first = world.trigger(Work, 1)
    assert persistence.held.wait(TIMEOUT)  # its first batch is being written
    writes = len(persistence.writes)

    second = world.trigger(Work, 2)
    # handled meanwhile: the core holds the plan; its changes wait for the next batch
    eventually(lambda: second.execution_plan_id in core.plans)
    stored = world.persistence.load_execution_plan(second.execution_plan_id)
    assert stored.state is PlanState.PLANNED  # not written yet
    assert len(persistence.writes) == writes  # one batch at a time
    assert not first.finished.done()  # nothing released before its batch is written

    persistence.release.set()
    for triggered, n in ((first, 1), (second, 2)):
        plan = triggered.finished.result(TIMEOUT)
        assert plan.result is PlanResult.SUCCESS
        assert world.persistence.load_execution_plan(plan.id).entry_action.output == {"n": n}
    threads = {thread for thread, _ in persistence.writes}
    assert threads == {"dynflow-executor-writer"}
    [held] = [plans for _, plans in persistence.writes if first.execution_plan_id in plans][:1]
    assert second.execution_plan_id not in held  # it came after: in a later batch


def test_an_outage_during_a_write_loses_nothing_of_either_batch(
    gated: tuple[World, Gated],
) -> None:
    world, persistence = gated
    persistence.hold = True
    persistence.outages = 3
    first = world.trigger(Work, 1)
    assert persistence.held.wait(TIMEOUT)
    second = world.trigger(Work, 2)  # handled while the write fails and is retried
    persistence.release.set()

    for triggered, n in ((first, 1), (second, 2)):
        plan = triggered.finished.result(TIMEOUT)
        assert plan.result is PlanResult.SUCCESS
        stored = world.persistence.load_execution_plan(plan.id)
        assert stored.result is PlanResult.SUCCESS
        assert stored.entry_action.output == {"n": n}
    assert persistence.outages == 0
