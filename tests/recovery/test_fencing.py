"""Fencing by registration: a world declared dead while only cut off (a network
partition) writes nothing more for the plans it held, even after it registers again
under the same id, and drops what it held in memory before it does."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dynflow import Action, ExecutionError, PlanResult, PlanState, StepState, World
from dynflow.clock import ManualClock
from dynflow.coordinator import EXECUTION_LOCK, Coordinator
from tests.support import Gate, eventually

MakeWorld = Callable[..., World]

#: per test: a gate holding every run of the step, and how many runs started
GATES: dict[str, Gate] = {}
RUNS: dict[str, int] = {}
_runs_lock = threading.Lock()


class NotIdempotent(Action):
    """Numbers its runs; every run waits at the test's gate."""

    def run(self, event: Any = None) -> None:
        key = self.input["key"]
        with _runs_lock:
            RUNS[key] = RUNS.get(key, 0) + 1
            number = RUNS[key]
        GATES[key].pass_through()
        self.output["run"] = number


@pytest.fixture
def key(make_world: MakeWorld) -> Iterator[str]:
    """A gate under a fresh key, opened after the test (before the worlds terminate)."""
    name = str(uuid.uuid4())
    GATES[name] = Gate()
    yield name
    GATES.pop(name).open()
    RUNS.pop(name, None)


def _history(world: World, plan_id: str) -> list[tuple[str, str | None]]:
    plan = world.persistence.load_execution_plan(plan_id)
    return [(e.name, e.world_id) for e in plan.execution_history]


def _stopped_running(world: World, plan_id: str) -> Any:
    return eventually(
        lambda: (
            (p := world.persistence.load_execution_plan(plan_id)).state is not PlanState.RUNNING
            and p
        )
    )


def test_a_world_declared_dead_registers_again_without_its_stale_run(
    db_url: str, make_world: MakeWorld, key: str
) -> None:
    """The partition sequence: A runs a step; B declares A dead and pauses the plan;
    A registers again; the plan is resumed on A; then A's old step ends. Its result
    must not be written: the plan ends with the resumed run's result, and no
    ``finish execution`` of A follows without a ``start execution`` of A before it."""
    clock = ManualClock()
    a = make_world(db_url, clock=clock, validity_check_interval=0, auto_execute=False)
    b = make_world(db_url, validity_check_interval=0, auto_execute=False)
    triggered = a.trigger(NotIdempotent, key=key)
    plan_id = triggered.execution_plan_id
    assert GATES[key].entered.wait(10)

    assert b.invalidate(a.id) == 1  # the partition: B declares A dead
    paused = _stopped_running(b, plan_id)
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)

    clock.advance(a.config.heartbeat_interval)  # healed: A learns it was declared dead
    assert a.id in {w.id for w in b.coordinator.find_worlds()}  # and registered again
    with pytest.raises(ExecutionError, match="lost the execution lock"):
        triggered.finished.result(10)  # its old run's caller learns it is gone
    b.terminate()

    resumed = a.resume(plan_id)
    eventually(lambda: RUNS[key] == 2)  # the step runs again, in the resumed run
    GATES[key].open()  # both runs of the step end now: the old one and the new one
    done = resumed.result(10)

    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert done.entry_action.output == {"run": 2}  # the resumed run's result, not the old
    assert _history(a, plan_id) == [
        ("start execution", a.id),
        ("terminate execution", a.id),
        ("start execution", b.id),
        ("pause execution", b.id),
        ("start execution", a.id),
        ("finish execution", a.id),
    ]
    assert a.coordinator.find_locks(lock_class=EXECUTION_LOCK) == []
