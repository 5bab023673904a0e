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

from dynflow.persistence.tables import actions, execution_history, execution_plans, steps
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


def load(connection: sa.Connection, plan_ids: Iterable[str]) -> dict[str, PlanDocument]:
    """The documents of the plans among ``plan_ids`` that exist, by id."""
    ids = sorted(set(plan_ids))
    if not ids:
        return {}
    texts = connection.execute(_statement(), {"ids": dumps(ids)}).scalars()
    documents = {}
    for text in texts:
        document = loads(text)
        plan = _convert(execution_plans, document["plan"])
        documents[plan["id"]] = PlanDocument(
            plan=plan,
            steps=[_convert(steps, row) for row in document["steps"] or ()],
            actions=[_convert(actions, row) for row in document["actions"] or ()],
            history=[_convert(execution_history, row) for row in document["history"] or ()],
        )
    return documents


@functools.cache
def _statement() -> sa.TextClause:
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
    return sa.text(
        f"SELECT CAST({document} AS text) FROM {execution_plans.name} AS p "
        "WHERE p.id IN (SELECT value FROM json_array_elements_text(CAST(:ids AS json)))"
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
