"""Many plans read at once with their steps, for the console's live updates."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from dynflow.execution_plan.model import ExecutionPlan, PlanDetails
from dynflow.persistence.sql.database import Database
from dynflow.persistence.sql.mapping import plan_from_row, step_from_row
from dynflow.persistence.tables import execution_plans, steps

#: plans read per query
BATCH = 500


def load_plan_steps(db: Database, execution_plan_ids: Sequence[str]) -> dict[str, ExecutionPlan]:
    """The plans of these ids that exist, with their steps, in two queries per
    :data:`BATCH` plans, as of one moment: their actions and history are left out
    (empty)."""
    found: dict[str, ExecutionPlan] = {}
    unique = list(dict.fromkeys(execution_plan_ids))
    with db.snapshot() as connection:
        for start in range(0, len(unique), BATCH):
            batch = unique[start : start + BATCH]
            rows = connection.execute(
                sa.select(execution_plans).where(execution_plans.c.id.in_(batch))
            )
            details: dict[str, PlanDetails] = {}
            for row in rows:
                plan = plan_from_row(row._mapping)
                plan._details = details[plan.id] = PlanDetails({}, [], [])
                found[plan.id] = plan
            step_rows = connection.execute(
                sa.select(steps)
                .where(steps.c.execution_plan_id.in_(list(details)))
                .order_by(steps.c.execution_plan_id, steps.c.id)
            )
            for step_row in step_rows:
                step = step_from_row(step_row._mapping)
                details[str(step_row.execution_plan_id)].steps[step.id] = step
    return found
