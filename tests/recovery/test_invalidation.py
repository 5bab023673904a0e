"""Dead worlds: found by their lease (database clock), invalidated by exactly one world,
their plans recovered, their envelopes dropped, and callers' futures still answered."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from dynflow import Action, ExecutionError, PlanResult, PlanState, StepState, World
from dynflow.cluster.connector.messages import Envelope, Execution, encode
from dynflow.coordinator import EXECUTION_LOCK, INVALIDATION_LOCK
from dynflow.persistence.tables import coordinator_records, envelopes, steps
from tests.integration.test_lifecycle import (
    RUNS,
    HeldThenMore,
    IdempotentInterrupted,
    Interrupted,
    _crashed_plan,
    _edit,
    gate,
)
from tests.support import Gate, eventually

__all__ = ["gate"]  # the fixture, shared with the lifecycle tests


class WaitsForEvent(Action):
    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()
        self.output["event"] = event


MakeWorld = Callable[..., World]


def _paused(world: World, plan_id: str) -> Any:
    return eventually(
        lambda: (
            (p := world.persistence.load_execution_plan(plan_id)).state is not PlanState.RUNNING
            and p
        )
    )


def test_validity_checks_invalidate_a_world_whose_lease_expired(
    db_url: str, make_world: MakeWorld
) -> None:
    plan_id, step_id, dead = _crashed_plan(db_url, make_world, Interrupted, "stale heartbeat")
    world = make_world(db_url, auto_execute=False, validity_check_interval=0)
    assert dead in {w.id for w in world.coordinator.find_worlds()}

    assert world.perform_validity_checks() == 1
    assert world.perform_validity_checks() == 0  # nothing left to invalidate

    plan = _paused(world, plan_id)
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    step = plan.steps[step_id]
    assert step.state is StepState.ERROR
    assert step.error is not None
    assert step.error.message == "Abnormal termination (previous state: running)"
    history = [(e.name, e.world_id) for e in plan.execution_history]
    assert ("terminate execution", dead) in history
    assert history[-1] == ("pause execution", world.id)
    assert dead not in {w.id for w in world.coordinator.find_worlds()}
    assert world.coordinator.find_locks(owner_id=dead) == []
    assert world.coordinator.find_locks(lock_class=INVALIDATION_LOCK) == []


def test_a_world_with_a_fresh_lease_elsewhere_is_left_alone(
    db_url: str, make_world: MakeWorld
) -> None:
    plan_id, _, alive = _crashed_plan(db_url, make_world, Interrupted, "live owner")
    world = make_world(db_url, auto_execute=False, validity_check_interval=0)
    assert world.perform_validity_checks() == 0
    assert [lock.owner_id for lock in world.coordinator.find_locks(id=plan_id)] == [alive]


def test_an_idempotent_action_is_run_again_at_once(db_url: str, make_world: MakeWorld) -> None:
    plan_id, step_id, dead = _crashed_plan(
        db_url, make_world, IdempotentInterrupted, "stale heartbeat"
    )
    world = make_world(db_url, auto_execute=False, validity_check_interval=0)
    assert world.invalidate(dead) == 1
    plan = _paused(world, plan_id)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert plan.steps[step_id].state is StepState.SUCCESS


def test_exactly_one_world_invalidates_a_dead_one(db_url: str, make_world: MakeWorld) -> None:
    plan_id, _, _ = _crashed_plan(db_url, make_world, IdempotentInterrupted, "stale heartbeat")
    worlds = [make_world(db_url, auto_execute=False, validity_check_interval=0) for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda w: w.perform_validity_checks(), worlds))
    assert sorted(results) == [0, 0, 1]
    plan = _paused(worlds[0], plan_id)
    assert plan.result is PlanResult.SUCCESS
    runners = {e.world_id for e in plan.execution_history if e.name == "start execution"}
    assert len(runners) == 1


def test_envelopes_for_a_dead_world_are_dropped(db_url: str, make_world: MakeWorld) -> None:
    _, _, dead = _crashed_plan(db_url, make_world, Interrupted, "stale heartbeat")
    world = make_world(db_url, auto_execute=False, validity_check_interval=0, connector="database")
    envelope = Envelope(world.id, dead, "request-1", Execution("x"))
    _edit(db_url, sa.insert(envelopes).values(receiver_id=dead, data=encode(envelope)))
    world.invalidate(dead)
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            left = connection.execute(
                sa.select(sa.func.count()).where(envelopes.c.receiver_id == dead)
            ).scalar_one()
    finally:
        engine.dispose()
    assert left == 0


def test_a_callers_future_resolves_after_its_executor_died(
    db_url: str, make_world: MakeWorld
) -> None:
    """A client's execution request was accepted by a world that died; the world that
    takes the plan over answers that same request."""
    plan_id, _, dead = _crashed_plan(db_url, make_world, IdempotentInterrupted, "stale heartbeat")
    client = make_world(db_url, executor=False, connector="database")
    # the client had asked the dead world to execute the plan: its request is pending
    future = client.cluster.client.request(dead, Execution(plan_id))
    request_id = next(iter(client.cluster.client._pending))
    _edit(
        db_url,
        sa.update(coordinator_records)
        .where(
            coordinator_records.c.id == plan_id, coordinator_records.c["class"] == EXECUTION_LOCK
        )
        .values(data={"client_world_id": client.id, "request_id": request_id}),
    )
    rescuer = make_world(
        db_url, auto_execute=False, validity_check_interval=0, connector="database"
    )
    assert rescuer.invalidate(dead) == 1
    answer = future.result(timeout=10)  # the plan's row, finished in the rescuer
    assert answer["id"] == plan_id
    assert answer["plan"]["result"] == "success"
    finished = client.persistence.load_execution_plan(plan_id)
    assert finished.execution_history[-1].world_id == rescuer.id


def test_a_zombie_executor_writes_nothing_once_its_lock_is_gone(
    db_url: str, make_world: MakeWorld, gate: tuple[str, Gate]
) -> None:
    """Declared dead while only slow: when its step finishes, nothing of it lands."""
    key, held = gate
    zombie = make_world(db_url, validity_check_interval=0)
    triggered = zombie.trigger(HeldThenMore, key)
    assert held.entered.wait(10)
    plan_id = triggered.execution_plan_id
    before = zombie.persistence.load_execution_plan(plan_id)
    # another world took the plan over meanwhile: the lock now names it
    _edit(
        db_url,
        sa.update(coordinator_records)
        .where(
            coordinator_records.c.id == plan_id, coordinator_records.c["class"] == EXECUTION_LOCK
        )
        .values(owner_id="the-new-owner"),
    )
    held.open()
    with pytest.raises(ExecutionError, match="lost the execution lock"):
        triggered.finished.result(10)
    after = zombie.persistence.load_execution_plan(plan_id)
    assert after.state is PlanState.RUNNING
    assert {s.id: s.state for s in after.steps.values()} == {
        s.id: s.state for s in before.steps.values()
    }
    assert after.execution_history == before.execution_history
    assert [a.output for a in after.actions] == [a.output for a in before.actions]
    assert not zombie.executor.running(plan_id)  # type: ignore[union-attr]


def _age_heartbeat(url: str, world_id: str, seconds: float, connector: str = "database") -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            data = connection.execute(
                sa.select(coordinator_records.c.data).where(
                    coordinator_records.c["class"] == "world", coordinator_records.c.id == world_id
                )
            ).scalar_one()
    finally:
        engine.dispose()
    beat = datetime.now(UTC) - timedelta(seconds=seconds)
    data = {**data, "heartbeat_at": beat.isoformat()}
    data["meta"] = {**data["meta"], "connector": connector}
    _edit(
        url,
        sa.update(coordinator_records)
        .where(coordinator_records.c["class"] == "world", coordinator_records.c.id == world_id)
        .values(data=data),
    )


def test_a_world_late_with_its_heartbeat_that_does_not_answer_a_ping_is_invalid(
    db_url: str, make_world: MakeWorld
) -> None:
    """Its lease has not run out yet (11 s of 15), but it misses pings: it is dead."""
    plan_id, _, dead = _crashed_plan(db_url, make_world, IdempotentInterrupted, "live owner")
    _age_heartbeat(db_url, dead, 11)
    checker = make_world(
        db_url, auto_execute=False, validity_check_interval=0, connector="database"
    )
    assert checker.perform_validity_checks() == 1
    assert dead not in {w.id for w in checker.coordinator.find_worlds()}
    assert _paused(checker, plan_id).result is PlanResult.SUCCESS


def test_a_late_world_that_answers_its_ping_stays(db_url: str, make_world: MakeWorld) -> None:
    late = make_world(db_url, validity_check_interval=0, connector="database")
    checker = make_world(
        db_url, auto_execute=False, validity_check_interval=0, connector="database"
    )
    _age_heartbeat(db_url, late.id, 11)
    assert checker.perform_validity_checks() == 0
    assert late.id in {w.id for w in checker.coordinator.find_worlds()}


def test_worlds_that_cannot_hear_pings_are_judged_by_their_lease_only(
    db_url: str, make_world: MakeWorld
) -> None:
    _, _, quiet = _crashed_plan(db_url, make_world, IdempotentInterrupted, "live owner")
    _age_heartbeat(db_url, quiet, 11, connector="direct")
    checker = make_world(
        db_url, auto_execute=False, validity_check_interval=0, connector="database"
    )
    assert checker.perform_validity_checks() == 0


def test_a_suspended_step_of_a_dead_world_stays_suspended_and_takes_events(
    db_url: str, make_world: MakeWorld
) -> None:
    plan_id, step_id, dead = _crashed_plan(db_url, make_world, WaitsForEvent, "stale heartbeat")
    _edit(  # the dead world had left the step suspended, waiting for an event
        db_url,
        sa.update(steps)
        .where(steps.c.execution_plan_id == plan_id, steps.c.id == step_id)
        .values(state="suspended"),
    )
    rescuer = make_world(db_url, auto_execute=False, validity_check_interval=0)
    assert rescuer.invalidate(dead) == 1
    plan = eventually(
        lambda: (
            (p := rescuer.persistence.load_execution_plan(plan_id)).state is PlanState.RUNNING
            and any(
                e.name == "start execution" and e.world_id == rescuer.id
                for e in p.execution_history
            )
            and p
        )
    )
    assert plan.steps[step_id].state is StepState.SUSPENDED  # not failed, not re-run
    assert rescuer.event(plan_id, step_id, "go").result(timeout=10) is True
    done = _paused(rescuer, plan_id)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert done.entry_action.output == {"event": "go"}


@pytest.mark.parametrize("action", [Interrupted, IdempotentInterrupted])
def test_a_plan_of_a_world_invalidated_while_no_executor_runs_waits_paused(
    db_url: str, make_world: MakeWorld, action: type[Action]
) -> None:
    plan_id, step_id, dead = _crashed_plan(db_url, make_world, action, "stale heartbeat")
    client = make_world(db_url, executor=False, validity_check_interval=0)

    assert client.invalidate(dead) == 0  # no executor to take it

    waiting = client.persistence.load_execution_plan(plan_id)
    assert (waiting.state, waiting.result) == (PlanState.PAUSED, PlanResult.PENDING)
    assert [(e.name, e.world_id) for e in waiting.execution_history][-1] == (
        "pause execution",
        client.id,
    )
    assert client.coordinator.find_locks() == []

    executor = make_world(db_url)  # takes it at start, as the dead world left it
    plan = eventually(
        lambda: (
            (p := executor.persistence.load_execution_plan(plan_id)).state is not PlanState.RUNNING
            and p.execution_history[-1].world_id == executor.id
            and p
        )
    )
    history = [(e.name, e.world_id) for e in plan.execution_history]
    assert history[-3:-1] == [("terminate execution", None), ("start execution", executor.id)]
    step = plan.steps[step_id]
    if action is IdempotentInterrupted:  # run again at once
        assert (plan.state, plan.result, step.state) == (
            PlanState.STOPPED,
            PlanResult.SUCCESS,
            StepState.SUCCESS,
        )
        assert RUNS[plan_id] == 1
    else:  # failed, and the rescue strategy applies: pause
        assert (plan.state, plan.result, step.state) == (
            PlanState.PAUSED,
            PlanResult.ERROR,
            StepState.ERROR,
        )
        assert step.error is not None
        assert step.error.message == "Abnormal termination (previous state: running)"
        assert plan_id not in RUNS
