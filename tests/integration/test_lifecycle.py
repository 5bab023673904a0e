"""World lifecycle: registration, clean termination, crash recovery, unknown classes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import sqlalchemy as sa

from dynflow import (
    Action,
    ConfigurationError,
    ExecutionError,
    NotFound,
    PlanResult,
    PlanState,
    StepState,
    World,
)
from dynflow.executor.threaded import ThreadedExecutor
from dynflow.persistence.tables import actions, coordinator_records, execution_plans, steps
from tests.support import Gate, eventually

MakeWorld = Callable[..., World]

#: gates by key: actions find theirs through their input
GATES: dict[str, Gate] = {}
#: run calls of the recovery actions, by plan id
RUNS: dict[str, int] = {}


class Held(Action):
    def run(self, event: Any = None) -> None:
        GATES[self.input["gate"]].pass_through()
        self.output["finished"] = True


class AfterHeld(Action):
    def run(self, event: Any = None) -> None:
        self.output["ran"] = True


class HeldThenMore(Action):
    def plan(self, gate: str) -> None:
        with self.sequence():
            self.plan_action(Held, gate=gate)
            self.plan_action(AfterHeld)


class Interrupted(Action):
    """Counts its runs: a recovered plan must not run it again."""

    def run(self, event: Any = None) -> None:
        RUNS[self.execution_plan_id] = RUNS.get(self.execution_plan_id, 0) + 1
        self.output["ran"] = True


class IdempotentInterrupted(Interrupted):
    idempotent = True


class Simple(Action):
    def run(self, event: Any = None) -> None:
        self.output["done"] = True


class WillBeRenamed(Action):
    def run(self, event: Any = None) -> None:
        self.output["done"] = True


@pytest.fixture
def gate(make_world: MakeWorld) -> Iterator[tuple[str, Gate]]:
    """A gate registered under a fresh key; opened after the test, before worlds terminate."""
    key = str(uuid.uuid4())
    GATES[key] = Gate()
    yield key, GATES[key]
    GATES.pop(key).open()


def _edit(url: str, *statements: Any) -> None:
    """Change the database behind the worlds' backs, as a crashed process would leave it."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(statement)
    finally:
        engine.dispose()


def _history(plan: Any) -> list[str]:
    return [entry.name for entry in plan.execution_history]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# -- registration and termination -------------------------------------------------


def test_world_registers_on_start_and_unregisters_on_terminate(
    db_url: str, make_world: MakeWorld
) -> None:
    observer = make_world(db_url, executor=False)
    world = make_world(db_url, meta={"role": "worker"})

    records = {w.id: w for w in observer.coordinator.find_worlds()}
    assert set(records) == {observer.id, world.id}
    assert records[world.id].executor is True
    assert records[observer.id].executor is False
    assert records[world.id].meta["role"] == "worker"
    assert records[world.id].meta["pid"] == os.getpid()
    assert [w.id for w in observer.coordinator.find_worlds(active_executors_only=True)] == [
        world.id
    ]

    world.coordinator.acquire("some_lock", "resource-1")
    assert [lock.owner_id for lock in observer.coordinator.find_locks(id="resource-1")] == [
        world.id
    ]

    world.terminate()

    assert [w.id for w in observer.coordinator.find_worlds()] == [observer.id]
    assert observer.coordinator.find_locks(owner_id=world.id) == []
    with pytest.raises(ExecutionError, match="terminated"):
        world.plan(Simple)


def test_world_is_a_context_manager(sqlite_url: str, make_world: MakeWorld) -> None:
    observer = make_world(sqlite_url, executor=False)
    with World(sqlite_url) as world:
        plan = world.trigger(Simple).finished.result(10)
        assert plan.result is PlanResult.SUCCESS
        assert world.id in {w.id for w in observer.coordinator.find_worlds()}
    assert world.id not in {w.id for w in observer.coordinator.find_worlds()}


def test_terminate_lets_the_running_step_finish_and_pauses_the_plan(
    db_url: str, make_world: MakeWorld, gate: tuple[str, Gate]
) -> None:
    key, held = gate
    observer = make_world(db_url, executor=False)
    world = make_world(db_url)
    triggered = world.trigger(HeldThenMore, key)
    assert held.entered.wait(10)
    assert [lock.id for lock in observer.coordinator.find_locks(owner_id=world.id)] == [
        triggered.execution_plan_id
    ]

    terminating = threading.Thread(target=world.terminate)
    terminating.start()
    assert world.executor is not None
    core = world.executor.core  # type: ignore[attr-defined]
    eventually(lambda: core.terminating is not None)
    assert terminating.is_alive(), "terminate() must wait for the running step"
    assert not triggered.finished.done()

    held.open()
    plan = triggered.finished.result(10)
    terminating.join(10)
    assert not terminating.is_alive()

    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.PENDING)
    held_action, after_action = plan.actions[1], plan.actions[2]
    assert plan.steps[held_action.run_step_id].state is StepState.SUCCESS  # type: ignore[index]
    assert plan.steps[after_action.run_step_id].state is StepState.PENDING  # type: ignore[index]
    assert "pause execution" in _history(plan)
    assert "finish execution" not in _history(plan)

    stored = observer.persistence.load_execution_plan(plan.id)
    assert (stored.state, stored.result) == (PlanState.PAUSED, PlanResult.PENDING)
    assert stored.action(held_action.id).output == {"finished": True}
    assert _history(stored)[-1] == "pause execution"
    assert world.id not in {w.id for w in observer.coordinator.find_worlds()}
    assert observer.coordinator.find_locks() == []

    # the paused plan is resumable by another world; the finished step does not run again
    successor = make_world(db_url, auto_execute=False)  # resumed explicitly below
    resumed = successor.resume(plan.id).result(10)
    assert (resumed.state, resumed.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert resumed.action(after_action.id).output == {"ran": True}


# -- recovery of plans left running by a dead process -------------------------------


def _crashed_plan(
    url: str, make_world: MakeWorld, action_class: type[Action], how: str
) -> tuple[str, int, str]:
    """A plan as a process that died mid-step leaves it: (plan id, run step id, dead world)."""
    planner = make_world(url, auto_execute=False)
    plan = planner.plan(action_class)
    planner.terminate()
    step_id = plan.entry_action.run_step_id
    assert step_id is not None
    dead_world = str(uuid.uuid4())
    now = datetime.now(UTC)
    edits: list[Any] = [
        sa.update(execution_plans)
        .where(execution_plans.c.id == plan.id)
        .values(state="running", started_at=now),
        sa.update(steps)
        .where(steps.c.execution_plan_id == plan.id, steps.c.id == step_id)
        .values(state="running", started_at=now),
    ]
    if how != "no lock":
        if how == "stale heartbeat":
            meta = {"hostname": "elsewhere.example", "pid": 1}
            beat = now - timedelta(hours=1)
        elif how == "live owner":  # not crashed: another host, heartbeating
            meta = {"hostname": "elsewhere.example", "pid": 1}
            beat = now
        else:  # "dead pid": heartbeat is fresh, but the process on this host is gone
            meta = {"hostname": socket.gethostname(), "pid": _dead_pid()}
            beat = now
        world_data = {
            "executor": True,
            "queues": ["default"],
            "meta": meta,
            "heartbeat_at": beat.isoformat(),
        }
        edits += [
            sa.insert(coordinator_records).values(
                {"class": "world", "id": dead_world, "owner_id": dead_world, "data": world_data}
            ),
            sa.insert(coordinator_records).values(
                {"class": "execution_lock", "id": plan.id, "owner_id": dead_world, "data": {}}
            ),
        ]
    _edit(url, *edits)
    return plan.id, step_id, dead_world


@pytest.mark.parametrize("how", ["stale heartbeat", "dead pid", "no lock"])
def test_new_world_recovers_a_plan_left_running(
    db_url: str, make_world: MakeWorld, how: str
) -> None:
    plan_id, step_id, dead_world = _crashed_plan(db_url, make_world, Interrupted, how)

    world = make_world(db_url)

    plan = eventually(
        lambda: (
            (p := world.persistence.load_execution_plan(plan_id)).state is PlanState.PAUSED and p
        )
    )
    assert plan.result is PlanResult.ERROR
    step = plan.steps[step_id]
    assert step.state is StepState.ERROR
    assert step.error is not None
    assert step.error.message == "Abnormal termination (previous state: running)"
    assert RUNS.get(plan_id, 0) == 0, "a non-idempotent interrupted step must not run again"
    history = plan.execution_history
    names = [entry.name for entry in history]
    assert "terminate execution" in names
    assert names.index("terminate execution") < names.index("start execution")
    assert names[-1] == "pause execution"
    terminated_by = next(e.world_id for e in history if e.name == "terminate execution")
    assert terminated_by == (None if how == "no lock" else dead_world)
    assert world.coordinator.find_locks() == []
    assert dead_world not in {w.id for w in world.coordinator.find_worlds()}


def test_idempotent_action_is_run_again_on_recovery(db_url: str, make_world: MakeWorld) -> None:
    plan_id, step_id, _ = _crashed_plan(
        db_url, make_world, IdempotentInterrupted, "stale heartbeat"
    )

    world = make_world(db_url)

    plan = eventually(
        lambda: (
            (p := world.persistence.load_execution_plan(plan_id)).state is PlanState.STOPPED and p
        )
    )
    assert plan.result is PlanResult.SUCCESS
    assert plan.steps[step_id].state is StepState.SUCCESS
    assert plan.entry_action.output == {"ran": True}
    assert RUNS[plan_id] == 1
    assert "terminate execution" in _history(plan)


def test_without_auto_execute_nothing_is_picked_up_until_recover(
    db_url: str, make_world: MakeWorld
) -> None:
    plan_id, step_id, _ = _crashed_plan(db_url, make_world, Interrupted, "stale heartbeat")

    world = make_world(db_url, auto_execute=False)

    untouched = world.persistence.load_execution_plan(plan_id)
    assert untouched.state is PlanState.RUNNING
    assert untouched.steps[step_id].state is StepState.RUNNING
    assert "terminate execution" not in _history(untouched)

    assert world.recover() == 1
    plan = eventually(
        lambda: (
            (p := world.persistence.load_execution_plan(plan_id)).state is PlanState.PAUSED and p
        )
    )
    assert plan.steps[step_id].state is StepState.ERROR
    assert world.recover() == 0


def test_plan_of_a_live_world_is_left_alone(db_url: str, make_world: MakeWorld) -> None:
    plan_id, step_id, owner = _crashed_plan(db_url, make_world, Interrupted, "live owner")

    world = make_world(db_url, auto_execute=False)

    assert world.recover() == 0
    plan = world.persistence.load_execution_plan(plan_id)
    assert plan.state is PlanState.RUNNING
    assert plan.steps[step_id].state is StepState.RUNNING
    assert [lock.owner_id for lock in world.coordinator.find_locks(id=plan_id)] == [owner]
    assert owner in {w.id for w in world.coordinator.find_worlds()}


def test_plan_planned_by_a_world_that_is_gone_is_executed_by_the_next_one(
    db_url: str, make_world: MakeWorld
) -> None:
    planner = make_world(db_url, auto_execute=False)
    planned = planner.plan(Simple)
    assert planned.state is PlanState.PLANNED
    planner.terminate()

    world = make_world(db_url)

    plan = eventually(
        lambda: (
            (p := world.persistence.load_execution_plan(planned.id)).state is PlanState.STOPPED
            and p
        )
    )
    assert plan.result is PlanResult.SUCCESS
    assert plan.entry_action.output == {"done": True}


# -- stored plans naming classes this process does not know --------------------------


def test_unknown_action_class_loads_and_fails_only_its_step(
    db_url: str, make_world: MakeWorld
) -> None:
    world = make_world(db_url)
    renamed = world.plan(WillBeRenamed)
    other = world.plan(Simple)
    bogus = f"{__name__}.RenamedAway"
    _edit(
        db_url,
        sa.update(actions)
        .where(actions.c.execution_plan_id == renamed.id)
        .values(action_class=bogus),
        sa.update(steps).where(steps.c.execution_plan_id == renamed.id).values(action_class=bogus),
    )
    expected = f"unknown action class {bogus}: is the module imported in this executor?"

    loaded = world.persistence.load_execution_plan(renamed.id)
    assert loaded.entry_action.action_class == bogus
    assert loaded.entry_action.missing == expected
    assert world.persistence.load_execution_plan(other.id).entry_action.missing is None

    failing = world.execute(renamed.id)
    succeeding = world.execute(other.id)
    plan = failing.result(10)

    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    step = plan.steps[plan.entry_action.run_step_id]  # type: ignore[index]
    assert step.state is StepState.ERROR
    assert step.error is not None
    assert step.error.message == expected
    assert step.error.exception_class == "dynflow.errors.UnknownActionClass"
    assert succeeding.result(10).result is PlanResult.SUCCESS
    assert world.trigger(Simple).finished.result(10).result is PlanResult.SUCCESS


# -- refused requests -------------------------------------------------------------------


def test_event_for_unknown_plan_or_step_fails_clearly(world: World) -> None:
    unknown_plan = str(uuid.uuid4())
    with pytest.raises(NotFound, match=f"execution plan {unknown_plan} not found"):
        world.event(unknown_plan, 1, {"x": 1}).result(5)

    plan = world.plan(Simple)
    with pytest.raises(NotFound, match=f"execution plan {plan.id} has no step 99"):
        world.event(plan.id, 99, {"x": 1}).result(5)

    run_step = plan.entry_action.run_step_id
    with pytest.raises(ExecutionError, match=rf"step {run_step} .* is pending, not suspended"):
        world.event(plan.id, run_step, {"x": 1}).result(5)  # type: ignore[arg-type]


def test_client_world_without_executors_says_how_to_start_one(
    db_url: str, make_world: MakeWorld
) -> None:
    client = make_world(db_url, executor=False)
    triggered = client.trigger(Simple)  # planned here, handed to an executor world
    with pytest.raises(ConfigurationError, match="no executor world is running"):
        triggered.finished.result(5)
    planned = client.persistence.load_execution_plan(triggered.execution_plan_id)
    assert planned.state is PlanState.PLANNED  # kept for the next executor to start
    with pytest.raises(ConfigurationError, match="no executor world is running"):
        client.execute(planned.id).result(5)
    with pytest.raises(ConfigurationError, match="has no executor"):
        client.recover()


def test_a_starting_executor_runs_orphaned_triggers_but_not_plans_made_to_wait(
    db_url: str, make_world: MakeWorld
) -> None:
    """world.plan() makes a plan that runs only when asked (e.g. after a review) while
    the world that made it lives; a trigger that found no executor is run by the next
    executor that starts."""
    client = make_world(db_url, executor=False)
    waiting = client.plan(Simple)
    triggered = client.trigger(Simple)
    with pytest.raises(ConfigurationError, match="no executor world is running"):
        triggered.finished.result(5)
    history = client.persistence.load_execution_plan(waiting.id).execution_history
    assert [entry.name for entry in history] == ["planned: waits for execute"]

    executor = make_world(db_url)  # auto_execute: recovers what was left
    done = eventually(
        lambda: (
            (p := executor.persistence.load_execution_plan(triggered.execution_plan_id)).state
            is PlanState.STOPPED
            and p
        )
    )
    assert done.result is PlanResult.SUCCESS
    assert executor.recover() == 0
    assert executor.persistence.load_execution_plan(waiting.id).state is PlanState.PLANNED
    ran = executor.execute(waiting.id).result(10)
    assert ran.result is PlanResult.SUCCESS
    assert ran.execution_history[0].name == "planned: waits for execute"


@pytest.mark.parametrize("connector", ["database", None])  # None: direct on SQLite
def test_client_world_hands_plans_to_an_executor_world(
    db_url: str, make_world: MakeWorld, connector: str | None
) -> None:
    executor = make_world(db_url, connector=connector)
    client = make_world(db_url, executor=False, connector=connector)
    plan = client.trigger(Simple).finished.result(10)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert {entry.world_id for entry in plan.execution_history} == {executor.id}
    assert client.ping(executor.id, timeout=5).result(10) is True


def test_unknown_world_option_lists_known_ones(sqlite_url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        World(sqlite_url, pool_sise=3)
    message = str(raised.value)
    assert "unknown World option(s) pool_sise" in message
    for known in ("pool_size", "auto_execute", "transaction_adapter", "heartbeat_interval"):
        assert known in message


def test_a_plan_paused_by_termination_continues_in_the_next_executor(
    db_url: str, make_world: MakeWorld, gate: tuple[str, Gate]
) -> None:
    key, held = gate
    first = make_world(db_url)
    triggered = first.trigger(HeldThenMore, key)
    assert held.entered.wait(10)
    stopper = threading.Thread(target=first.terminate)
    stopper.start()
    # the step may end only once the core knows it terminates, or the plan just goes on
    core = cast(ThreadedExecutor, first.executor).core
    eventually(lambda: core.terminating is not None)
    held.open()
    stopper.join(20)
    paused = triggered.finished.result(10)
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.PENDING)

    successor = make_world(db_url)  # auto_execute: picks up what the first one paused
    done = eventually(
        lambda: (
            (p := successor.persistence.load_execution_plan(paused.id)).state is PlanState.STOPPED
            and p
        )
    )
    assert done.result is PlanResult.SUCCESS
    assert [e.world_id for e in done.execution_history][-1] == successor.id


class OnSlowQueue(Action):
    queue = "slow"

    def run(self, event: Any = None) -> None:
        self.output["done"] = True


def test_a_client_world_picks_an_executor_serving_the_plans_queues(
    db_url: str, make_world: MakeWorld
) -> None:
    plain = make_world(db_url, connector="database")
    slow = make_world(db_url, connector="database", queues={"slow": 1})
    client = make_world(db_url, executor=False, connector="database")
    for _ in range(3):  # round robin would use `plain` for some of them
        plan = client.trigger(OnSlowQueue).finished.result(10)
        assert plan.result is PlanResult.SUCCESS
        assert {e.world_id for e in plan.execution_history} == {slow.id}
    assert plain.id != slow.id
