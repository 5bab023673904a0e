"""Whole plans in one round trip (PostgreSQL).

Loading a plan reads four tables. On PostgreSQL one statement builds, for each
requested plan, one JSON document holding its row and the rows of its steps,
actions and history (the JSON columns nested as they are stored); the client
parses that text once and converts timestamps and doubles back. Elsewhere the
facade reads the four tables in one transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from dynflow import flows
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.persistence.database import Database
from dynflow.persistence.tables import (
    actions,
    coordinator_records,
    envelopes,
    execution_history,
    execution_plans,
    steps,
)
from dynflow.persistence.types import JSONText, UTCDateTime
from dynflow.serialization import dumps, loads

Row = dict[str, Any]


@dataclass(frozen=True)
class PlanDocument:
    """The rows of one plan, with the values the SQLAlchemy column types would give."""

    plan: Row
    steps: list[Row]
    actions: list[Row]
    history: list[Row]


def load(db: Database, plan_ids: Iterable[str]) -> dict[str, PlanDocument]:
    """The documents of the plans among ``plan_ids`` that exist, by id."""
    ids = sorted(set(plan_ids))
    if not ids:
        return {}
    rows = db.run(_statement(), {"ids": dumps(ids)})
    return {document.plan["id"]: document for document in (_parse(r[0]) for r in rows)}


def take_over_and_load(
    db: Database,
    plan_id: str,
    from_owner: str,
    owner: str,
    data: Row,
    reply: tuple[str, str] | None = None,
) -> tuple[bool, PlanDocument | None]:
    """Move the plan's execution lock from ``from_owner`` to ``owner`` (with ``data``)
    and read the plan, in one statement: (moved?, the plan's document if it exists).

    ``reply`` (receiver id, envelope text) is written with the move, if it happens,
    without a wake-up: the receiver reads it with its next envelopes.
    """
    parameters = {"id": plan_id, "from_owner": from_owner, "owner": owner, "data": dumps(data)}
    statement = _take_over_statement(reply is not None)
    if reply is not None:
        parameters |= {"reply_to": reply[0], "reply": reply[1]}
    rows = db.run(statement, parameters)
    if not rows:
        return False, None
    return True, None if rows[0][0] is None else _parse(rows[0][0])


def to_json(plan: ExecutionPlan) -> dict[str, Any]:
    """The document of a plan in memory, as JSON values: what :func:`load` would read
    for it once its changes are committed (e.g. to hand a finished plan to another
    world without it reading the database)."""
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


def from_json(document: dict[str, Any]) -> PlanDocument:
    """The rows of a document made by :func:`to_json`, freshly parsed (its rows are
    converted in place)."""
    return PlanDocument(
        plan=_convert(execution_plans, document["plan"]),
        steps=[_convert(steps, row) for row in document["steps"] or ()],
        actions=[_convert(actions, row) for row in document["actions"] or ()],
        history=[_convert(execution_history, row) for row in document["history"] or ()],
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None).isoformat()


def _parse(text: str) -> PlanDocument:
    return from_json(loads(text))


@functools.cache
def _document() -> str:
    """The document of plan ``p`` (an alias of the plans table), as text."""

    def rows(table: sa.Table) -> str:
        return (
            f"(SELECT json_agg({_object(table, 'r')} ORDER BY r.id) FROM {table.name} AS r "
            "WHERE r.execution_plan_id = p.id)"
        )

    document = (
        f"json_build_object('plan', {_object(execution_plans, 'p')}, "
        f"'steps', {rows(steps)}, 'actions', {rows(actions)}, "
        f"'history', {rows(execution_history)})"
    )
    return f"CAST({document} AS text)"


@functools.cache
def _statement() -> sa.TextClause:
    return sa.text(
        f"SELECT {_document()} FROM {execution_plans.name} AS p "
        "WHERE p.id IN (SELECT value FROM json_array_elements_text(CAST(:ids AS json)))"
    )


@functools.cache
def _take_over_statement(reply: bool) -> sa.TextClause:
    # the plan's rows are not changed by the update: one snapshot sees them as they are
    replied = (
        f", r AS (INSERT INTO {envelopes.name} (receiver_id, data) SELECT :reply_to, :reply FROM t)"
        if reply
        else ""
    )
    return sa.text(
        f"WITH t AS (UPDATE {coordinator_records.name} SET owner_id = :owner, data = :data "
        "WHERE class = 'execution_lock' AND id = :id AND owner_id = :from_owner RETURNING id)"
        f"{replied} "
        f"SELECT (SELECT {_document()} FROM {execution_plans.name} AS p WHERE p.id = t.id) "
        "FROM t"
    )


def _object(table: sa.Table, alias: str) -> str:
    fields = []
    for column in table.columns:
        value = f'{alias}."{column.name}"'
        if isinstance(column.type, JSONText):
            value = f"CAST({value} AS json)"  # nested as stored: json keeps the text
        fields.append(f"'{column.name}', {value}")
    return f"json_build_object({', '.join(fields)})"


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
