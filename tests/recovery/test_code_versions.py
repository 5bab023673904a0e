"""Recovery by code version: the plans of a dead world go only to executors of their
version (or of none); an executor of another version leaves them waiting."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dynflow import PlanResult, PlanState, World
from dynflow.persistence.tables import coordinator_records, execution_plans, steps
from tests.integration.test_lifecycle import IdempotentInterrupted, _edit
from tests.support import eventually

MakeWorld = Callable[..., World]
TIMEOUT = 30


def _crashed(
    url: str, make_world: MakeWorld, version: str | None, dead: str | None = None
) -> tuple[str, str]:
    """A plan of ``version`` left running by a dead executor world (stale heartbeat;
    ``dead``: one made by an earlier call): (plan id, dead world id)."""
    planner = make_world(url, executor=False, code_version=version)
    plan = planner.plan(IdempotentInterrupted)
    planner.terminate()
    step_id = plan.entry_action.run_step_id
    now = datetime.now(UTC)
    world = {
        "executor": True,
        "queues": ["default"],
        "meta": {"hostname": "elsewhere.example", "pid": 1, "code_version": version},
        "heartbeat_at": (now - timedelta(hours=1)).isoformat(),
    }
    edits: list[Any] = []
    if dead is None:
        dead = str(uuid.uuid4())
        edits.append(
            sa.insert(coordinator_records).values(
                {"class": "world", "id": dead, "owner_id": dead, "data": world}
            )
        )
    _edit(
        url,
        *edits,
        sa.update(execution_plans)
        .where(execution_plans.c.id == plan.id)
        .values(state="running", started_at=now),
        sa.update(steps)
        .where(steps.c.execution_plan_id == plan.id, steps.c.id == step_id)
        .values(state="running", started_at=now),
        sa.insert(coordinator_records).values(
            {"class": "execution_lock", "id": plan.id, "owner_id": dead, "data": {}}
        ),
    )
    return plan.id, dead


def _settled(world: World, plan_id: str) -> Any:
    return eventually(
        lambda: (
            (p := world.persistence.load_execution_plan(plan_id)).state is not PlanState.RUNNING
            and p
        ),
        timeout=TIMEOUT,
    )


def _stopped(world: World, plan_id: str) -> Any:
    return eventually(
        lambda: (
            (p := world.persistence.load_execution_plan(plan_id)).state is PlanState.STOPPED and p
        ),
        timeout=TIMEOUT,
    )


def _runners(world: World, plan_id: str) -> list[str | None]:
    plan = world.persistence.load_execution_plan(plan_id)
    return [e.world_id for e in plan.execution_history if e.name == "start execution"]


def test_an_executor_of_another_version_leaves_a_dead_worlds_plan_waiting(
    db_url: str, make_world: MakeWorld
) -> None:
    plan_id, dead = _crashed(db_url, make_world, "v1")
    new = make_world(db_url, code_version="v2", auto_execute=False, validity_check_interval=0)
    assert new.invalidate(dead) == 0
    plan = _settled(new, plan_id)
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.PENDING)
    assert new.recover() == 0
    assert _runners(new, plan_id) == []
    assert new.coordinator.find_locks(id=plan_id) == []

    old = make_world(db_url, code_version="v1", validity_check_interval=0)  # recovers it
    plan = eventually(
        lambda: (
            (p := old.persistence.load_execution_plan(plan_id)).state is PlanState.STOPPED and p
        ),
        timeout=TIMEOUT,
    )
    assert plan.result is PlanResult.SUCCESS
    assert _runners(old, plan_id) == [old.id]


def test_a_dead_worlds_plan_goes_to_a_live_executor_of_its_version(
    db_url: str, make_world: MakeWorld
) -> None:
    plan_id, dead = _crashed(db_url, make_world, "v1")
    old = make_world(db_url, code_version="v1", auto_execute=False, validity_check_interval=0)
    new = make_world(db_url, code_version="v2", auto_execute=False, validity_check_interval=0)
    assert new.invalidate(dead) == 1  # handed to the executor of version v1
    plan = eventually(
        lambda: (
            (p := new.persistence.load_execution_plan(plan_id)).state is PlanState.STOPPED and p
        ),
        timeout=TIMEOUT,
    )
    assert plan.result is PlanResult.SUCCESS
    assert _runners(new, plan_id) == [old.id]


def test_recover_takes_only_the_plans_of_its_version_and_of_none(
    db_url: str, make_world: MakeWorld
) -> None:
    # one dead world of no version ran them all (it was started before versions were)
    first, dead = _crashed(db_url, make_world, None)
    crashed: dict[str | None, tuple[str, str]] = {None: (first, dead)}
    crashed |= {version: _crashed(db_url, make_world, version, dead) for version in ("v1", "v2")}
    new = make_world(db_url, code_version="v2", auto_execute=False, validity_check_interval=0)
    new.recover()
    for version, (plan_id, _) in crashed.items():
        plan = _settled(new, plan_id)
        if version == "v1":
            assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.PENDING)
            assert _runners(new, plan_id) == []
        else:
            plan = _stopped(new, plan_id)
            assert plan.result is PlanResult.SUCCESS
            assert _runners(new, plan_id) == [new.id]
