"""A parent's children, read for its round of starts (``WithSubPlans``): their counts,
those being started and those that may start now; on any database, on one connection."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from dynflow.execution_plan.states import PlanResult, PlanState
from dynflow.persistence.records import EXECUTION_LOCK
from dynflow.persistence.sub_plans import SubPlanRound
from dynflow.persistence.tables import coordinator_records, execution_plans


def counts_query(execution_plan_id: str, action_id: int) -> sa.Select[Any]:
    """(state, result, how many) of the action's children."""
    return (
        sa.select(execution_plans.c.state, execution_plans.c.result, sa.func.count())
        .where(
            execution_plans.c.caller_execution_plan_id == execution_plan_id,
            execution_plans.c.caller_action_id == action_id,
        )
        .group_by(execution_plans.c.state, execution_plans.c.result)
    )


def starting_query(execution_plan_id: str, action_id: int) -> sa.Select[Any]:
    """How many planned children of the action hold their execution lock: counted from
    the execution locks (a few: the plans executing now), each one's plan looked up by
    its id alone (so that no planner walks every planned child instead)."""
    caller = (
        sa.select(execution_plans.c.caller_execution_plan_id)
        .where(
            execution_plans.c.id == coordinator_records.c.id,
            execution_plans.c.caller_action_id == action_id,
            execution_plans.c.state == str(PlanState.PLANNED),
        )
        .scalar_subquery()
    )
    return (
        sa.select(sa.func.count())
        .select_from(coordinator_records)
        .where(coordinator_records.c["class"] == EXECUTION_LOCK, caller == execution_plan_id)
    )


def waiting_query(execution_plan_id: str, action_id: int, limit: int | None) -> sa.Select[Any]:
    """Ids of up to ``limit`` planned children without an execution lock, in no order
    (read from the index a few at a time, not sorted whole)."""
    lock = sa.exists().where(
        coordinator_records.c["class"] == EXECUTION_LOCK,
        coordinator_records.c.id == execution_plans.c.id,
    )
    waiting = sa.select(execution_plans.c.id).where(
        execution_plans.c.caller_execution_plan_id == execution_plan_id,
        execution_plans.c.caller_action_id == action_id,
        execution_plans.c.state == str(PlanState.PLANNED),
        ~lock,
    )
    return waiting if limit is None else waiting.limit(limit)


def free(
    counts: dict[tuple[PlanState, PlanResult], int], starting: int, limit: int | None
) -> int | None:
    """How many more children may start under ``limit`` (None: any number): those
    running or being started take their places."""
    if limit is None:
        return None
    running = sum(n for (state, _), n in counts.items() if state is PlanState.RUNNING)
    return max(0, limit - running - starting)


def read_round(
    connection: sa.Connection, execution_plan_id: str, action_id: int, limit: int | None
) -> SubPlanRound:
    """Read with one query each. Those being started are counted first: a child that
    starts running meanwhile is then counted twice (one start fewer this round), never
    not at all (one too many)."""
    starting = int(connection.execute(starting_query(execution_plan_id, action_id)).scalar_one())
    rows = connection.execute(counts_query(execution_plan_id, action_id)).all()
    counts = {(PlanState(state), PlanResult(result)): int(n) for state, result, n in rows}
    planned = sum(n for (state, _), n in counts.items() if state is PlanState.PLANNED)
    room = free(counts, starting, limit)
    if planned <= starting or room == 0:
        return SubPlanRound(counts, starting, [])
    waiting = waiting_query(execution_plan_id, action_id, room)
    return SubPlanRound(counts, starting, list(connection.execute(waiting).scalars()))
