"""Whole plans in one round trip (PostgreSQL).

Loading a plan reads four tables. Here one statement builds, for each requested
plan, one JSON document (see ``codec``) holding its row and the rows of its
steps, actions and history (the JSON columns nested as they are stored); the
client parses that text once and converts timestamps and doubles back.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from dynflow.persistence.codec import PlanDocument, document_from_json
from dynflow.persistence.records import EXECUTION_LOCK, TakeOver
from dynflow.persistence.sql.database import Database
from dynflow.persistence.tables import (
    actions,
    coordinator_records,
    envelopes,
    execution_history,
    execution_plans,
    steps,
)
from dynflow.persistence.types import JSONText
from dynflow.serialization import dumps, loads


def load(db: Database, plan_ids: Iterable[str]) -> dict[str, PlanDocument]:
    """The documents of the plans among ``plan_ids`` that exist, by id."""
    ids = sorted(set(plan_ids))
    if not ids:
        return {}
    rows = db.run(_statement(), {"ids": dumps(ids)})
    return {document.plan["id"]: document for document in (_parse(r[0]) for r in rows)}


def lock_and_load(db: Database, owner_id: str, plan_ids: Iterable[str]) -> dict[str, PlanDocument]:
    """Take the execution locks of ``plan_ids`` for ``owner_id`` and read the documents
    of the plans found, by id, in one statement (a lock held by someone breaks the
    primary key: nothing is written)."""
    ids = sorted(set(plan_ids))
    if not ids:
        return {}
    rows = db.run(_lock_statement(), {"ids": dumps(ids), "owner": owner_id})
    return {document.plan["id"]: document for document in (_parse(r[0]) for r in rows)}


def take_over_and_load(
    db: Database,
    plan_id: str,
    from_owner: str,
    owner: str,
    data: dict[str, object],
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


def take_over_and_load_many(
    db: Database, owner: str, requests: Sequence[TakeOver]
) -> dict[int, PlanDocument | None]:
    """:func:`take_over_and_load` for many requests in one statement: by the index of
    each request whose lock moved, the plan's document (None if it does not exist).
    The replies of the moves are written in the order of the requests."""
    if not requests:
        return {}
    rows = [
        {
            "n": n,
            "id": r.plan_id,
            "from_owner": r.from_owner,
            "data": dumps(dict(r.lock_data)),
            "reply_to": None if r.reply is None else r.reply[0],
            "reply": None if r.reply is None else r.reply[1],
        }
        for n, r in enumerate(requests)
    ]
    found = db.run(_take_over_many_statement(), {"owner": owner, "rows": dumps(rows)})
    return {int(n): None if text is None else _parse(text) for n, text in found}


def _parse(text: str) -> PlanDocument:
    return document_from_json(loads(text))


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
        # = ANY of an array, not IN a set-returning function: a lookup of the primary key
        # per id whatever the planner thinks of the table's size
        "WHERE p.id = ANY(ARRAY(SELECT json_array_elements_text(CAST(:ids AS json))))"
    )


@functools.cache
def _lock_statement() -> sa.TextClause:
    # the plans' rows are not changed by the insert: the snapshot sees them as they are
    return sa.text(
        f"WITH l AS (INSERT INTO {coordinator_records.name} (class, id, owner_id, data) "
        f"SELECT '{EXECUTION_LOCK}', i, :owner, '{{}}' "
        "FROM json_array_elements_text(CAST(:ids AS json)) AS i RETURNING id) "
        f"SELECT {_document()} FROM {execution_plans.name} AS p "
        "WHERE p.id = ANY(ARRAY(SELECT id FROM l))"
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
        f"WHERE class = '{EXECUTION_LOCK}' AND id = :id AND owner_id = :from_owner RETURNING id)"
        f"{replied} "
        f"SELECT (SELECT {_document()} FROM {execution_plans.name} AS p WHERE p.id = t.id) "
        "FROM t"
    )


@functools.cache
def _take_over_many_statement() -> sa.TextClause:
    # one request per plan moves its lock (a second request for the same plan, in the
    # same statement, finds nothing to move, as it would after the first one)
    return sa.text(
        "WITH x AS (SELECT DISTINCT ON (id) * FROM json_to_recordset(CAST(:rows AS json)) "
        "AS x(n integer, id text, from_owner text, data text, reply_to text, reply text) "
        "ORDER BY id, n), "
        f"t AS (UPDATE {coordinator_records.name} AS c SET owner_id = :owner, data = x.data "
        f"FROM x WHERE c.class = '{EXECUTION_LOCK}' AND c.id = x.id "
        "AND c.owner_id = x.from_owner RETURNING c.id, x.n, x.reply_to, x.reply), "
        f"r AS (INSERT INTO {envelopes.name} (receiver_id, data) "
        "SELECT reply_to, reply FROM t WHERE reply IS NOT NULL ORDER BY n) "
        f"SELECT t.n, (SELECT {_document()} FROM {execution_plans.name} AS p "
        "WHERE p.id = t.id) FROM t"
    )


def _object(table: sa.Table, alias: str) -> str:
    fields = []
    for column in table.columns:
        value = f'{alias}."{column.name}"'
        if isinstance(column.type, JSONText):
            value = f"CAST({value} AS json)"  # nested as stored: json keeps the text
        fields.append(f"'{column.name}', {value}")
    return f"json_build_object({', '.join(fields)})"
