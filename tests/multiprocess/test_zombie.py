"""Zombies (PostgreSQL): an executor process frozen (SIGSTOP) while it runs a step is
declared dead and its plan taken over by another world; let go (SIGCONT), its step
returns, and nothing it writes about the plan lands: the execution lock fences it off.
It registers again under the same id."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dynflow import PlanResult, PlanState, World
from tests.conftest import make_url
from tests.multiprocess.conftest import TIMEOUT, ExecutorProcess, Executors
from tests.multiprocess.remote_actions import Hold, IdempotentHold
from tests.support import eventually

MakeWorld = Callable[..., World]
Starter = Callable[[str], Executors]

FENCED = "no longer holds the execution lock of plan {}"


def rows(url: str, plan_id: str) -> dict[str, Any]:
    """The plan's rows as the database has them, and the last history entry's id."""
    from dynflow.persistence.tables import actions, execution_history, execution_plans, steps

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                "plan": connection.execute(
                    sa.select(execution_plans).where(execution_plans.c.id == plan_id)
                ).all(),
                "steps": connection.execute(
                    sa.select(steps).where(steps.c.execution_plan_id == plan_id)
                ).all(),
                "actions": connection.execute(
                    sa.select(actions).where(actions.c.execution_plan_id == plan_id)
                ).all(),
                "history": connection.execute(
                    sa.select(execution_history.c.id, execution_history.c.world_id)
                    .where(execution_history.c.execution_plan_id == plan_id)
                    .order_by(execution_history.c.id)
                ).all(),
            }
    finally:
        engine.dispose()


def freeze_and_take_over(
    starter: Executors, zombie: ExecutorProcess, taker: World, plan_id: str
) -> None:
    zombie.signal(signal.SIGSTOP)
    assert taker.invalidate(zombie.world_id) == 1
    assert zombie.world_id not in {w.id for w in taker.coordinator.find_worlds()}


def let_go(zombie: ExecutorProcess, gate: Path, taker: World, plan_id: str) -> None:
    """SIGCONT, open the gate: the zombie's step returns and its write is fenced off."""
    zombie.signal(signal.SIGCONT)
    gate.touch()
    eventually(lambda: FENCED.format(plan_id) in zombie.log(), timeout=TIMEOUT)
    eventually(
        lambda: zombie.world_id in {w.id for w in taker.coordinator.find_worlds()},
        timeout=TIMEOUT,
    )
    assert zombie.process.poll() is None


def test_a_frozen_executor_taken_over_writes_nothing_when_it_wakes_up(
    executors: Starter, make_world: MakeWorld, tmp_path: Path
) -> None:
    url = make_url("postgresql", tmp_path)
    starter = executors(url)
    zombie = starter.start("--heartbeat-interval", "0.2")
    client = make_world(url, executor=False)
    entered, gate, runs = tmp_path / "entered", tmp_path / "gate", tmp_path / "runs"
    triggered = client.trigger(Hold, entered=str(entered), gate=str(gate), runs=str(runs))
    plan_id = triggered.execution_plan_id
    eventually(entered.exists, timeout=TIMEOUT)
    taker = make_world(url, auto_execute=False, validity_check_interval=0)

    freeze_and_take_over(starter, zombie, taker, plan_id)

    # not idempotent: the running step is an abnormal termination, the plan pauses,
    # and the caller's future is answered by the world that took the plan over
    paused = triggered.finished.result(TIMEOUT)
    assert (paused.id, paused.state, paused.result) == (
        plan_id,
        PlanState.PAUSED,
        PlanResult.ERROR,
    )
    before = rows(url, plan_id)
    assert before["history"][-1].world_id == taker.id

    let_go(zombie, gate, taker, plan_id)

    assert rows(url, plan_id) == before  # not one row of the plan changed
    assert runs.read_text().split() == [zombie.world_id]  # and it did not run again
    assert taker.coordinator.find_locks(owner_id=zombie.world_id) == []


def test_a_zombie_does_not_overwrite_the_plan_its_successor_runs(
    executors: Starter, make_world: MakeWorld, tmp_path: Path
) -> None:
    url = make_url("postgresql", tmp_path)
    starter = executors(url)
    zombie = starter.start("--heartbeat-interval", "0.2")
    client = make_world(url, executor=False)
    entered, gate, runs = tmp_path / "entered", tmp_path / "gate", tmp_path / "runs"
    triggered = client.trigger(IdempotentHold, entered=str(entered), gate=str(gate), runs=str(runs))
    plan_id = triggered.execution_plan_id
    eventually(entered.exists, timeout=TIMEOUT)
    taker = make_world(url, auto_execute=False, validity_check_interval=0)

    freeze_and_take_over(starter, zombie, taker, plan_id)
    # idempotent: run again at once by the taker (held at the same gate)
    eventually(lambda: runs.read_text().split() == [zombie.world_id, taker.id], timeout=TIMEOUT)
    last_before = rows(url, plan_id)["history"][-1].id

    let_go(zombie, gate, taker, plan_id)

    plan = triggered.finished.result(TIMEOUT)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    plan = client.persistence.load_execution_plan(plan_id)
    (action,) = [a for a in plan.actions if a.action_class.endswith("IdempotentHold")]
    assert action.output["world_id"] == taker.id
    late = [entry for entry in rows(url, plan_id)["history"] if entry.id > last_before]
    assert late
    assert {entry.world_id for entry in late} == {taker.id}
