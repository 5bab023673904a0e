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

from dynflow.execution_plan.model import ExecutionPlan, PlanDetails
from dynflow.persistence.sql.mapping import (
    action_from_row,
    history_from_row,
    plan_from_row,
    plan_row,
    plan_rows,
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
    """The document of a plan in memory, as JSON values: its rows as they are stored
    (:func:`~dynflow.persistence.sql.mapping.plan_rows`), timestamps as ISO text."""
    row, action_rows, step_rows = plan_rows(plan)
    return {
        "plan": _stamped(execution_plans, row),
        "steps": [_stamped(steps, r) for r in step_rows],
        "actions": action_rows,
        "history": [
            {
                "execution_plan_id": plan.id,
                "time": _iso(h.time),
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


def plan_row_to_json(plan: ExecutionPlan) -> dict[str, Any]:
    """The plan's own row as JSON values (the ``"plan"`` of its document)."""
    return _stamped(execution_plans, plan_row(plan))


def plan_row_from_json(row: dict[str, Any]) -> ExecutionPlan:
    """The plan of a row made by :func:`plan_row_to_json` (freshly parsed: it is
    converted in place), without its details: the caller attaches them."""
    return plan_from_row(_convert(execution_plans, row))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None).isoformat()


def _stamped(table: sa.Table, row: Row) -> Row:
    """The row with its timestamps as the ISO text the database's JSON would hold."""
    for name in _timestamps(table):
        row[name] = _iso(row[name])
    return row


@functools.cache
def _timestamps(table: sa.Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns if isinstance(c.type, UTCDateTime))


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
