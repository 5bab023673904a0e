"""PostgreSQL bulk writes: a whole list of operations as ONE statement.

Each operation becomes a data-modifying CTE whose rows travel as a JSON document
unpacked by ``json_to_recordset``: one round trip and a short, cacheable
statement whatever the number of rows. JSON columns are nested as they are and
stored with their text unchanged (``json``, unlike ``jsonb``, keeps the text).
``json_to_recordset`` refuses the escapes ``\u0000`` and lone surrogates (they
cannot become text), even nested: a document holding one carries its JSON columns
as strings instead (their JSON text, stored as it is).
PostgreSQL runs the CTEs on one snapshot, so a row may be written by one
operation only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from dynflow.persistence.records import EXECUTION_LOCK, WORLD
from dynflow.persistence.sql.bulk import BulkWriter, Operation, Update
from dynflow.persistence.sql.database import Database
from dynflow.persistence.tables import coordinator_records, envelopes
from dynflow.persistence.types import JSONText, UTCDateTime
from dynflow.serialization import dumps


@dataclass(frozen=True)
class Answer:
    """An envelope written with a plan's rows (see ``Changes.answers``)."""

    plan_id: str
    receiver_id: str
    data: str
    #: the receiver's LISTEN/NOTIFY channel
    channel: str


@dataclass(frozen=True)
class Fence:
    """Write the rows of a plan only while ``owner`` holds its execution lock and its
    world record is registration ``registration``."""

    owner: str
    registration: str
    plan_ids: frozenset[str]


class PostgresBulkWriter(BulkWriter):
    def write(self, connection: sa.Connection, operations: Sequence[Operation]) -> None:
        operations = [op for op in operations if op.rows]
        if operations:
            parameters, wrapped = _documents(operations)
            connection.execute(_statement(_shapes(operations, wrapped)), parameters)

    def run(self, db: Database, operations: Sequence[Operation]) -> None:
        """``write``, autocommitted straight on the driver (see ``Database.run``)."""
        operations = [op for op in operations if op.rows]
        if operations:
            parameters, wrapped = _documents(operations)
            db.run(_statement(_shapes(operations, wrapped)), parameters)

    def write_fenced(
        self,
        db: Database,
        operations: Sequence[Operation],
        fence: Fence,
        answers: Sequence[Answer] = (),
    ) -> set[str]:
        """Run the operations in one statement that first share-locks the execution
        locks ``fence.owner`` holds among ``fence.plan_ids`` (so that nobody can take
        them until the commit) if its world record is still ``fence.registration``,
        writes only rows of those plans (by each operation's ``fence`` column) and
        returns their ids. The ``answers`` of those plans are written too, each only
        for a registered receiver, with a NOTIFY on the receiver's channel."""
        operations = [op for op in operations if op.rows]
        parameters, wrapped = _documents(operations)
        parameters |= {
            "fence_owner": fence.owner,
            "fence_token": fence.registration,
            "fence_ids": dumps(sorted(fence.plan_ids)),
        }
        if answers:
            rows = [
                {"n": n, "plan_id": a.plan_id, "receiver_id": a.receiver_id, "data": a.data}
                for n, a in enumerate(answers)
            ]
            channels = {a.receiver_id: a.channel for a in answers}
            parameters["answers"] = dumps(rows)
            parameters["channels"] = dumps(
                [{"receiver_id": r, "channel": c} for r, c in sorted(channels.items())]
            )
        statement = _fenced_statement(_shapes(operations, wrapped), bool(answers))
        return {row[0] for row in db.run(statement, parameters) if row[0] is not None}

    def write_and_send(
        self,
        db: Database,
        operations: Sequence[Operation],
        envelope: tuple[str, str],
        channel: str,
    ) -> bool:
        """Run the operations and write one envelope (receiver id, text) only for a
        registered receiver, with a NOTIFY on ``channel``, in one statement straight on
        the driver; True when it was written."""
        operations = [op for op in operations if op.rows]
        parameters, wrapped = _documents(operations)
        parameters |= {"e_receiver": envelope[0], "e_data": envelope[1], "e_channel": channel}
        statement = _send_statement(_shapes(operations, wrapped))
        return bool(db.run(statement, parameters))


#: kind, table, keys, columns, fence column, JSON columns carried as strings
_Shape = tuple[str, sa.Table, tuple[str, ...], tuple[str, ...], str | None, bool]
#: what ``json_to_recordset`` cannot turn into text, as JSON escapes it
_UNTEXTABLE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_UNTEXTABLE_BYTES = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")

#: the owner's locks among the plans, while its record is the writing registration
#: (the record is read, not locked: heartbeats would wait for every commit); the ids as
#: an array: one primary-key lookup each, never a walk over every execution lock
_OWNED = (
    f"owned AS (SELECT id FROM {coordinator_records.name} WHERE class = '{EXECUTION_LOCK}' "
    "AND owner_id = :fence_owner AND id = "
    "ANY(ARRAY(SELECT json_array_elements_text(CAST(:fence_ids AS json)))) "
    f"AND EXISTS (SELECT 1 FROM {coordinator_records.name} AS w WHERE w.class = '{WORLD}' "
    "AND w.id = :fence_owner AND CAST(w.data AS json) ->> 'token' = :fence_token) FOR SHARE)"
)


#: the answers of the plans written (those among ``owned``), to registered receivers only
_ANSWERS = (
    f"e AS (INSERT INTO {envelopes.name} (receiver_id, data) SELECT w.id, x.data "
    "FROM json_to_recordset(CAST(:answers AS json)) "
    "AS x(n integer, plan_id text, receiver_id text, data text) "
    f"JOIN {coordinator_records.name} AS w ON w.class = '{WORLD}' AND w.id = x.receiver_id "
    "WHERE x.plan_id IN (SELECT id FROM owned) ORDER BY x.n RETURNING receiver_id)"
)


def _shapes(operations: Sequence[Operation], wrapped: Sequence[bool]) -> tuple[_Shape, ...]:
    return tuple(
        (
            type(op).__name__,
            op.table,
            op.keys if isinstance(op, Update) else (),
            tuple(op.rows[0]),
            op.fence,
            strings,
        )
        for op, strings in zip(operations, wrapped, strict=True)
    )


def _documents(operations: Sequence[Operation]) -> tuple[dict[str, Any], list[bool]]:
    """The parameters, and for each operation whether its JSON columns are strings."""
    documents = [_document(op) for op in operations]
    return {f"rows_{i}": d for i, (d, _) in enumerate(documents)}, [w for _, w in documents]


@functools.cache
def _statement(shape: tuple[_Shape, ...]) -> sa.TextClause:
    *first, last = [_part(i, *op[:4], None, op[5]) for i, op in enumerate(shape)]
    if not first:
        return sa.text(last)
    ctes = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(first))
    return sa.text(f"WITH {ctes} {last}")  # the last operation returns no rows


@functools.cache
def _send_statement(shape: tuple[_Shape, ...]) -> sa.TextClause:
    parts = [f"w{i} AS ({_part(i, *op[:4], None, op[5])})" for i, op in enumerate(shape)]
    envelope = (
        f"e AS (INSERT INTO {envelopes.name} (receiver_id, data) SELECT id, :e_data "
        f"FROM {coordinator_records.name} WHERE class = '{WORLD}' AND id = :e_receiver "
        "RETURNING receiver_id)"
    )
    return sa.text(f"WITH {', '.join([*parts, envelope])} SELECT pg_notify(:e_channel, '') FROM e")


@functools.cache
def _fenced_statement(shape: tuple[_Shape, ...], answers: bool) -> sa.TextClause:
    parts = [f"w{i} AS ({_part(i, *op)})" for i, op in enumerate(shape)]
    if not answers:
        return sa.text(f"WITH {', '.join([_OWNED, *parts])} SELECT id FROM owned")
    return sa.text(
        f"WITH {', '.join([_OWNED, *parts, _ANSWERS])} SELECT id, NULL FROM owned "
        "UNION ALL SELECT NULL, CAST(pg_notify(c.channel, '') AS text) "
        "FROM json_to_recordset(CAST(:channels AS json)) AS c(receiver_id text, channel text) "
        "WHERE c.receiver_id IN (SELECT receiver_id FROM e)"
    )


def _part(
    index: int,
    kind: str,
    table: sa.Table,
    keys: tuple[str, ...],
    columns: tuple[str, ...],
    fence: str | None,
    strings: bool,
) -> str:
    source = _recordset(index, table, columns, strings)
    owned = f' x."{fence}" IN (SELECT id FROM owned)' if fence else ""
    if kind == "Insert":
        names = ", ".join(f'"{c}"' for c in columns)
        selected = ", ".join(_value(table, c, strings) for c in columns)
        where = f" WHERE{owned}" if owned else ""
        return f"INSERT INTO {table.name} ({names}) SELECT {selected} FROM {source}{where}"
    if kind == "Update":
        sets = ", ".join(f'"{c}" = {_value(table, c, strings)}' for c in columns if c not in keys)
        matches = " AND ".join([*(f't."{k}" = x."{k}"' for k in keys), *([owned] if owned else [])])
        return f"UPDATE {table.name} AS t SET {sets} FROM {source} WHERE {matches}"
    matches = " AND ".join(f't."{c}" = x."{c}"' for c in columns)
    return f"DELETE FROM {table.name} AS t USING {source} WHERE {matches}"


def _recordset(index: int, table: sa.Table, columns: tuple[str, ...], strings: bool) -> str:
    fields = ", ".join(f'"{c}" {_type(table.c[c], strings)}' for c in columns)
    return f"json_to_recordset(CAST(:rows_{index} AS json)) AS x({fields})"


def _type(column: sa.Column[Any], strings: bool) -> str:
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return "timestamp"
    if isinstance(kind, JSONText):
        return "text" if strings else "json"
    if isinstance(kind, sa.String | sa.Text):
        return "text"
    if isinstance(kind, sa.Integer):
        return "integer"
    if isinstance(kind, sa.Float):
        return "double precision"
    raise TypeError(f"no bulk mapping for {column}")  # pragma: no cover


def _value(table: sa.Table, column: str, strings: bool) -> str:
    if isinstance(table.c[column].type, JSONText) and not strings:
        return f'CAST(x."{column}" AS text)'
    return f'x."{column}"'


def _document(op: Operation) -> tuple[str, bool]:
    """The rows as one JSON text; True when its JSON columns are strings."""
    try:  # the rows as they are: orjson asks ``_stamp`` for each datetime
        document = orjson.dumps(op.rows, default=_stamp, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except TypeError:  # e.g. a lone surrogate, which orjson refuses: as below
        document = None
    if document is not None and _UNTEXTABLE_BYTES.search(document) is None:
        return document.decode(), False
    columns = tuple(op.rows[0])
    stamps = _timestamp_columns(op.table, columns)
    rows = [dict(row) for row in op.rows]  # copies: the callers' rows stay as they are
    for row in rows:
        for name in stamps:
            row[name] = _timestamp(row[name])
    text = dumps(rows)
    if _UNTEXTABLE.search(text) is None:  # a false alarm ("\\u0000") costs nothing
        return text, False
    for row in rows:
        for name in _json_columns(op.table, columns):
            row[name] = None if row[name] is None else dumps(row[name])
    return dumps(rows), True


def _stamp(value: Any) -> str | None:
    if isinstance(value, datetime):
        return _timestamp(value)
    raise TypeError


@functools.cache
def _json_columns(table: sa.Table, columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c for c in columns if isinstance(table.c[c].type, JSONText))


@functools.cache
def _timestamp_columns(table: sa.Table, columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c for c in columns if isinstance(table.c[c].type, UTCDateTime))


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat()
