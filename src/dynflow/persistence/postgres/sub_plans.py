"""A parent's round of sub-plans in one statement (PostgreSQL): the counts of its
children, those being started and the ids of those that may start now, all read in
one snapshot (see ``sql.sub_plans`` for the queries on other databases)."""

from __future__ import annotations

import functools

import sqlalchemy as sa

from dynflow.execution_plan.states import PlanResult, PlanState
from dynflow.persistence.records import EXECUTION_LOCK
from dynflow.persistence.sql.database import Database
from dynflow.persistence.sub_plans import SubPlanRound
from dynflow.persistence.tables import coordinator_records, execution_plans


def read_round(
    db: Database, execution_plan_id: str, action_id: int, limit: int | None
) -> SubPlanRound:
    parameters = {"parent": execution_plan_id, "action": action_id, "limit": limit}
    counts: dict[tuple[PlanState, PlanResult], int] = {}
    starting, to_start = 0, []
    for kind, first, second, n in db.run(_statement(), parameters):
        if kind == "c":
            counts[(PlanState(first), PlanResult(second))] = int(n)
        elif kind == "s":
            starting = int(n)
        else:
            to_start.append(first)
    return SubPlanRound(counts, starting, to_start)


@functools.cache
def _statement() -> sa.TextClause:
    plans, locks = execution_plans.name, coordinator_records.name
    children = "p.caller_execution_plan_id = :parent AND p.caller_action_id = :action"
    planned = f"{children} AND p.state = '{PlanState.PLANNED}'"
    # being started: counted from the execution locks, each one's plan looked up by its
    # id alone (a few locks, not a probe per planned child)
    starting = (
        f"SELECT count(*) AS n FROM {locks} AS l WHERE l.class = '{EXECUTION_LOCK}' AND "
        f"(SELECT p.caller_execution_plan_id FROM {plans} AS p WHERE p.id = l.id "
        f"AND p.caller_action_id = :action AND p.state = '{PlanState.PLANNED}') = :parent"
    )
    counts = (
        f"SELECT p.state, p.result, count(*) AS n FROM {plans} AS p WHERE {children} "
        "GROUP BY p.state, p.result"
    )
    running = f"(SELECT coalesce(sum(n), 0) FROM c WHERE state = '{PlanState.RUNNING}')"
    # no limit: every one (LIMIT NULL); else the places that those running or being
    # started leave free
    room = (
        "CASE WHEN CAST(:limit AS integer) IS NULL THEN NULL ELSE "
        f"greatest(0, CAST(:limit AS integer) - {running} - (SELECT n FROM s)) END"
    )
    waiting = (
        f"SELECT p.id FROM {plans} AS p WHERE {planned} AND NOT EXISTS "
        f"(SELECT 1 FROM {locks} AS l WHERE l.class = '{EXECUTION_LOCK}' AND l.id = p.id) "
        f"LIMIT {room}"
    )
    return sa.text(
        f"WITH c AS ({counts}), s AS ({starting}) "
        "SELECT 'c', state, result, n FROM c "
        "UNION ALL SELECT 's', NULL, NULL, n FROM s "
        f"UNION ALL (SELECT 'w', w.id, NULL, NULL FROM ({waiting}) AS w)"
    )
