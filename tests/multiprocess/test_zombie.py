"""Zombies (PostgreSQL): an executor process frozen (SIGSTOP) while it runs a step is
declared dead and its plan taken over by another world; let go (SIGCONT), its step
returns, and nothing it writes about the plan lands. It registers again under the
same id.

Woken up, the zombie learns two things, in an order nobody controls: its step
returned (it writes the result) and its heartbeat found it declared dead (it drops
its plans). Each test runs both orders, each made certain: ``fenced``, the result
first (its heartbeat holds the death notice until the test lets it through): the
execution lock fences the write off; ``disowned``, the death notice first (the step
is held at its gate until then): the result comes for a plan no longer held there,
and is ignored."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dynflow import PlanResult, PlanState, World
from tests.conftest import make_url
from tests.multiprocess.conftest import TIMEOUT, ExecutorProcess, Executors
from tests.multiprocess.remote_actions import DEATH_NOTICE_GATE, Hold, IdempotentHold
from tests.support import eventually

MakeWorld = Callable[..., World]
Starter = Callable[[str], Executors]

FENCED = "no longer holds the execution lock of plan {}"
DISOWNED = "was declared dead: it dropped its 1 plan(s) without writing"
IGNORED = "ignores the result of step"


@pytest.fixture(params=["fenced", "disowned"])
def order(request: pytest.FixtureRequest) -> str:
    """What the zombie learns first when let go: its step's result, or its death."""
    value: str = request.param
    return value


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

    # stopped inside its heartbeat's transaction, it still holds its own row until the
    # database ends that session (idle in transaction, half its lease): until then the
    # taker cannot invalidate it (None) and tries again, as its liveness check would
    def invalidated() -> tuple[int] | None:  # a tuple: an answer of 0 ends the wait too
        count = taker.invalidate(zombie.world_id)
        return None if count is None else (count,)

    (count,) = eventually(invalidated, timeout=TIMEOUT)
    assert count == 1  # its one plan
    assert zombie.world_id not in {w.id for w in taker.coordinator.find_worlds()}


def start_zombie(starter: Executors, tmp_path: Path) -> tuple[ExecutorProcess, Path]:
    """An executor whose heartbeat holds its death notice until the file returned exists."""
    notice = tmp_path / "death-notice"
    zombie = starter.start("--heartbeat-interval", "0.2", env={DEATH_NOTICE_GATE: str(notice)})
    return zombie, notice


def logged(zombie: ExecutorProcess, *parts: str) -> bool:
    """A line of the zombie's log says all of ``parts``."""
    return any(all(part in line for part in parts) for line in zombie.log().splitlines())


def let_go(
    zombie: ExecutorProcess, gate: Path, notice: Path, taker: World, plan_id: str, order: str
) -> None:
    """SIGCONT; the step's result and the death notice reach the zombie in ``order``;
    either way its late result writes nothing, and it registers again."""

    def registered_again() -> bool:
        return zombie.world_id in {w.id for w in taker.coordinator.find_worlds()}

    if order == "fenced":
        zombie.signal(signal.SIGCONT)
        gate.touch()
        eventually(lambda: logged(zombie, FENCED.format(plan_id)), timeout=TIMEOUT)
        assert not registered_again()  # it had not heard of its death yet
        notice.touch()
        eventually(registered_again, timeout=TIMEOUT)
    else:
        notice.touch()
        zombie.signal(signal.SIGCONT)
        eventually(lambda: logged(zombie, DISOWNED), timeout=TIMEOUT)
        eventually(registered_again, timeout=TIMEOUT)
        gate.touch()
        eventually(lambda: logged(zombie, IGNORED, plan_id), timeout=TIMEOUT)
        assert not logged(zombie, FENCED.format(plan_id))  # nothing left to write
    assert zombie.process.poll() is None


def test_a_frozen_executor_taken_over_writes_nothing_when_it_wakes_up(
    executors: Starter, make_world: MakeWorld, tmp_path: Path, order: str
) -> None:
    url = make_url("postgresql", tmp_path)
    starter = executors(url)
    zombie, notice = start_zombie(starter, tmp_path)
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

    let_go(zombie, gate, notice, taker, plan_id, order)

    assert rows(url, plan_id) == before  # not one row of the plan changed
    assert runs.read_text().split() == [zombie.world_id]  # and it did not run again
    assert taker.coordinator.find_locks(owner_id=zombie.world_id) == []


def test_a_zombie_does_not_overwrite_the_plan_its_successor_runs(
    executors: Starter, make_world: MakeWorld, tmp_path: Path, order: str
) -> None:
    url = make_url("postgresql", tmp_path)
    starter = executors(url)
    zombie, notice = start_zombie(starter, tmp_path)
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

    let_go(zombie, gate, notice, taker, plan_id, order)

    plan = triggered.finished.result(TIMEOUT)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    plan = client.persistence.load_execution_plan(plan_id)
    (action,) = [a for a in plan.actions if a.action_class.endswith("IdempotentHold")]
    assert action.output["world_id"] == taker.id
    late = [entry for entry in rows(url, plan_id)["history"] if entry.id > last_before]
    assert late
    assert {entry.world_id for entry in late} == {taker.id}
