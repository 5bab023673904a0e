"""Plans as JSON documents: one plan's rows (plan, steps, actions, history) in one value.

The PostgreSQL adapter reads a plan as such a document in one statement; the
cluster hands a finished plan to another world as one. :func:`plan_to_json` and
:func:`plan_from_json` are inverse: the document of a plan in memory is what the
database would return for it once its changes are committed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from dynflow import flows
from dynflow.execution_plan.model import ExecutionPlan, PlanDetails
from dynflow.persistence.sql.mapping import (
    action_from_row,
    history_from_row,
    plan_from_row,
    step_from_row,
)
from dynflow.persistence.tables import actions, execution_history, execution_plans, steps
from dynflow.persistence.types import UTCDateTime

Row = dict[str, Any]


@dataclass(frozen=True)
class PlanDocument:
    """The rows of one plan, with the values the SQLAlchemy column types would give."""

    plan: Row
    steps: list[Row]
    actions: list[Row]
    history: list[Row]

    def to_plan(self) -> ExecutionPlan:
        """The read model of the plan, its details loaded."""
        plan = plan_from_row(self.plan)
        plan._details = PlanDetails(
            steps={r["id"]: step_from_row(r) for r in self.steps},
            actions=[action_from_row(r) for r in self.actions],
            history=[history_from_row(r) for r in self.history],
        )
        return plan


def plan_to_json(plan: ExecutionPlan) -> dict[str, Any]:
    """The document of a plan in memory, as JSON values."""
    stamp = _iso
    return {
        "plan": {
            "id": plan.id,
            "label": plan.label,
            "state": str(plan.state),
            "result": str(plan.result),
            "started_at": stamp(plan.started_at),
            "ended_at": stamp(plan.ended_at),
            "execution_time": plan.execution_time,
            "real_time": plan.real_time,
            "caller_execution_plan_id": plan.caller_execution_plan_id,
            "caller_action_id": plan.caller_action_id,
            "data": {
                "run_flow": None if plan.run_flow is None else flows.to_json(plan.run_flow),
                "finalize_flow": list(plan.finalize_flow),
            },
        },
        "steps": [
            {
                "execution_plan_id": plan.id,
                "id": s.id,
                "action_id": s.action_id,
                "action_class": s.action_class,
                "phase": str(s.phase),
                "state": str(s.state),
                "queue": s.queue,
                "error": None if s.error is None else s.error.to_json(),
                "started_at": stamp(s.started_at),
                "ended_at": stamp(s.ended_at),
                "execution_time": s.execution_time,
                "real_time": s.real_time,
                "progress_done": s.progress_done,
                "progress_weight": s.progress_weight,
                "attempts": s.attempts,
                "next_attempt_at": stamp(s.next_attempt_at),
                "errors": [e.to_json() for e in s.errors] or None,
            }
            for s in plan.steps.values()
        ],
        "actions": [
            {
                "execution_plan_id": plan.id,
                "id": a.id,
                "action_class": a.action_class,
                "label": a.label,
                "input": a.input,
                "output": a.output,
                "plan_step_id": a.plan_step_id,
                "run_step_id": a.run_step_id,
                "finalize_step_id": a.finalize_step_id,
                "parent_action_id": a.parent_action_id,
            }
            for a in plan.actions
        ],
        "history": [
            {
                "execution_plan_id": plan.id,
                "time": stamp(h.time),
                "name": h.name,
                "world_id": h.world_id,
            }
            for h in plan.execution_history
        ],
    }


def document_from_json(document: dict[str, Any]) -> PlanDocument:
    """The rows of a freshly parsed document (its rows are converted in place)."""
    return PlanDocument(
        plan=_convert(execution_plans, document["plan"]),
        steps=[_convert(steps, row) for row in document["steps"] or ()],
        actions=[_convert(actions, row) for row in document["actions"] or ()],
        history=[_convert(execution_history, row) for row in document["history"] or ()],
    )


def plan_from_json(document: dict[str, Any]) -> ExecutionPlan:
    """The plan of a document made by :func:`plan_to_json` (freshly parsed: it is
    converted in place)."""
    return document_from_json(document).to_plan()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None).isoformat()


def _convert(table: sa.Table, row: Row) -> Row:
    for name, convert in _converters(table):
        value = row[name]
        if value is not None:
            row[name] = convert(value)
    return row


@functools.cache
def _converters(table: sa.Table) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    found: list[tuple[str, Callable[[Any], Any]]] = []
    for column in table.columns:
        if isinstance(column.type, UTCDateTime):
            found.append((column.name, _timestamp))
        elif isinstance(column.type, sa.Float):
            found.append((column.name, float))  # a whole double comes back as an int
    return tuple(found)


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
