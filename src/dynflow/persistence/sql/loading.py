"""Many whole plans read together: four queries for them all, not four for each
(the sub-plans a parent starts at once); and many new plans written together."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from dynflow.execution_plan.model import ExecutionPlan, PlanDetails
from dynflow.persistence.records import EXECUTION_LOCK
from dynflow.persistence.sql.bulk import Insert, Operation
from dynflow.persistence.sql.database import Database
from dynflow.persistence.sql.locks import lock_taken
from dynflow.persistence.sql.mapping import (
    action_from_row,
    history_from_row,
    plan_from_row,
    plan_rows,
    step_from_row,
)
from dynflow.persistence.tables import (
    actions,
    coordinator_records,
    execution_history,
    execution_plans,
    steps,
)

#: ids per query (well under every database's limit of bound parameters)
CHUNK = 500


def lock_and_load(db: Database, owner_id: str, plan_ids: Sequence[str]) -> list[ExecutionPlan]:
    """Take the execution locks of ``plan_ids`` for ``owner_id`` and read the plans
    found, in one transaction; :class:`LockTaken` (none taken) if one is held."""
    rows = execution_locks(owner_id, plan_ids)
    if not rows:
        return []
    try:
        with db.write() as connection:
            connection.execute(sa.insert(coordinator_records), rows)
            return load_plans(connection, plan_ids)
    except sa.exc.IntegrityError:
        raise lock_taken(db, rows) from None


def execution_locks(owner_id: str, plan_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of the plans' execution locks held by world ``owner_id``."""
    return [
        {"class": EXECUTION_LOCK, "id": plan_id, "owner_id": owner_id, "data": {}}
        for plan_id in plan_ids
    ]


def load_plans(connection: sa.Connection, plan_ids: Sequence[str]) -> list[ExecutionPlan]:
    """The plans found among ``plan_ids``, in that order, with their steps, actions and
    history, read on ``connection`` (one snapshot, if it is one)."""
    found: dict[str, ExecutionPlan] = {}
    for start in range(0, len(plan_ids), CHUNK):
        found |= _load(connection, list(plan_ids[start : start + CHUNK]))
    return [found[plan_id] for plan_id in plan_ids if plan_id in found]


def _load(connection: sa.Connection, ids: list[str]) -> dict[str, ExecutionPlan]:
    rows = connection.execute(sa.select(execution_plans).where(execution_plans.c.id.in_(ids)))
    plans = {row.id: plan_from_row(row._mapping) for row in rows}
    if not plans:
        return {}
    step_rows: dict[str, dict[int, Any]] = defaultdict(dict)
    for row in _rows(connection, steps, ids):
        step_rows[row.execution_plan_id][row.id] = step_from_row(row._mapping)
    action_rows: dict[str, list[Any]] = defaultdict(list)
    for row in _rows(connection, actions, ids):
        action_rows[row.execution_plan_id].append(action_from_row(row._mapping))
    history_rows: dict[str, list[Any]] = defaultdict(list)
    for row in _rows(connection, execution_history, ids):
        history_rows[row.execution_plan_id].append(history_from_row(row._mapping))
    for plan_id, plan in plans.items():
        plan._details = PlanDetails(
            steps=step_rows[plan_id], actions=action_rows[plan_id], history=history_rows[plan_id]
        )
    return plans


def _rows(connection: sa.Connection, table: sa.Table, ids: list[str]) -> sa.CursorResult[Any]:
    query = sa.select(table).where(table.c.execution_plan_id.in_(ids)).order_by(table.c.id)
    return connection.execute(query)


def new_plans_operations(
    plans: Sequence[ExecutionPlan], locks: Sequence[Mapping[str, Any]]
) -> list[Operation]:
    """The inserts of new plans and the locks they take: one per table for them all."""
    plan_list, action_list, step_list = [], [], []
    for plan in plans:
        row, action_rows, step_rows = plan_rows(plan)
        plan_list.append(row)
        action_list += action_rows
        step_list += step_rows
    return [
        Insert(execution_plans, plan_list),
        Insert(actions, action_list),
        Insert(steps, step_list),
        Insert(coordinator_records, locks),
    ]
