"""Bulk writes: a transaction's inserts, updates and deletes in as few statements as possible.

Callers describe the writes as :class:`Insert`, :class:`Update` and :class:`Delete`
operations over many rows. The default runs one SQLAlchemy ``executemany`` per
operation. On PostgreSQL the whole list becomes ONE statement (each operation a
data-modifying CTE) whose rows travel as JSON documents unpacked by
``json_to_recordset``: one round trip and a short, cacheable statement whatever
the number of rows, sparing the per-row parameter handling on the client. JSON
columns are nested as they are and stored with their text unchanged (``json``,
unlike ``jsonb``, keeps the text as given).

Within one list a row may be written by one operation only (PostgreSQL runs the
CTEs on one snapshot).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from dynflow.persistence.database import Database
from dynflow.persistence.types import JSONText, UTCDateTime
from dynflow.serialization import dumps

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Insert:
    table: sa.Table
    rows: Sequence[Row]
    #: the column naming the plan of each row, when writes are fenced (see ``Fence``)
    fence: str | None = None


@dataclass(frozen=True)
class Update:
    """Set each row's other columns where its ``keys`` columns match."""

    table: sa.Table
    keys: tuple[str, ...]
    rows: Sequence[Row]
    fence: str | None = None


@dataclass(frozen=True)
class Delete:
    """Delete where all of each row's columns match."""

    table: sa.Table
    rows: Sequence[Row]
    fence: str | None = None


@dataclass(frozen=True)
class Fence:
    """Write the rows of a plan only while ``owner`` holds its execution lock."""

    owner: str
    plan_ids: frozenset[str]


Operation = Insert | Update | Delete


def write_fenced(db: Database, operations: Sequence[Operation], fence: Fence) -> set[str]:
    """PostgreSQL: run the operations in one statement that first share-locks the
    execution locks ``fence.owner`` holds among ``fence.plan_ids`` (so that nobody can
    take them until the commit), writes only rows of those plans (by each operation's
    ``fence`` column) and returns their ids."""
    operations = [op for op in operations if op.rows]
    shape = tuple(_shape(op) for op in operations)
    parameters = {f"rows_{i}": _pg_document(op) for i, op in enumerate(operations)}
    parameters |= {"fence_owner": fence.owner, "fence_ids": dumps(sorted(fence.plan_ids))}
    return {row[0] for row in db.run(_pg_fenced_statement(shape), parameters)}


def channel_sql(world_id: str) -> str:
    """The SQL of the LISTEN/NOTIFY channel of the world whose id is ``world_id`` (an
    expression): ``dynflow_`` and the id without dashes, cut to 40 characters."""
    return f"'dynflow_' || left(replace({world_id}, '-', ''), 40)"


def write_and_send(
    connection: sa.Connection, operations: Sequence[Operation], receiver_id: str, data: str
) -> bool:
    """PostgreSQL: run the operations and write one envelope (only for a registered
    receiver, then with its wake-up) in one statement; True when it was written."""
    operations = [op for op in operations if op.rows]
    shape = tuple(_shape(op) for op in operations)
    parameters: dict[str, Any] = {f"rows_{i}": _pg_document(op) for i, op in enumerate(operations)}
    parameters |= {"e_receiver": receiver_id, "e_data": data}
    return bool(connection.execute(_pg_send_statement(shape), parameters).all())


def write(connection: sa.Connection, operations: Sequence[Operation]) -> None:
    """Run the operations (in order) inside the connection's transaction."""
    operations = [op for op in operations if op.rows]
    if not operations:
        return
    if connection.dialect.name == "postgresql":
        shape = tuple(_shape(op) for op in operations)
        connection.execute(
            _pg_statement(shape),
            {f"rows_{i}": _pg_document(op) for i, op in enumerate(operations)},
        )
        return
    for op in operations:
        match op:
            case Insert(table, rows):
                connection.execute(sa.insert(table), [dict(r) for r in rows])
            case Update(table, keys, rows):
                connection.execute(
                    _generic_update(table, keys, tuple(rows[0])),
                    [{f"b_{name}": value for name, value in row.items()} for row in rows],
                )
            case Delete(table, rows):
                connection.execute(
                    _generic_delete(table, tuple(rows[0])),
                    [{f"b_{name}": value for name, value in row.items()} for row in rows],
                )


# -- generic ---------------------------------------------------------------------------


@functools.cache
def _generic_update(table: sa.Table, keys: tuple[str, ...], columns: tuple[str, ...]) -> sa.Update:
    return (
        sa.update(table)
        .where(*(table.c[k] == sa.bindparam(f"b_{k}") for k in keys))
        .values({c: sa.bindparam(f"b_{c}") for c in columns if c not in keys})
    )


@functools.cache
def _generic_delete(table: sa.Table, columns: tuple[str, ...]) -> sa.Delete:
    return sa.delete(table).where(*(table.c[c] == sa.bindparam(f"b_{c}") for c in columns))


# -- PostgreSQL --------------------------------------------------------------------------

_Shape = tuple[str, sa.Table, tuple[str, ...], tuple[str, ...], str | None]

_OWNED = (
    "owned AS (SELECT id FROM dynflow_coordinator_records WHERE class = 'execution_lock' "
    "AND owner_id = :fence_owner AND id IN "
    "(SELECT value FROM json_array_elements_text(CAST(:fence_ids AS json))) FOR SHARE)"
)


def _shape(op: Operation) -> _Shape:
    columns = tuple(op.rows[0])
    keys = op.keys if isinstance(op, Update) else ()
    return (type(op).__name__, op.table, keys, columns, op.fence)


@functools.cache
def _pg_statement(shape: tuple[_Shape, ...]) -> sa.TextClause:
    *first, last = [_pg_part(i, *op[:4], None) for i, op in enumerate(shape)]
    if not first:
        return sa.text(last)
    ctes = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(first))
    return sa.text(f"WITH {ctes} {last}")  # the last operation returns no rows


@functools.cache
def _pg_send_statement(shape: tuple[_Shape, ...]) -> sa.TextClause:
    parts = [f"w{i} AS ({_pg_part(i, *op[:4], None)})" for i, op in enumerate(shape)]
    envelope = (
        "e AS (INSERT INTO dynflow_envelopes (receiver_id, data) SELECT id, :e_data "
        "FROM dynflow_coordinator_records WHERE class = 'world' AND id = :e_receiver "
        "RETURNING receiver_id)"
    )
    return sa.text(
        f"WITH {', '.join([*parts, envelope])} "
        f"SELECT pg_notify({channel_sql('receiver_id')}, '') FROM e"
    )


@functools.cache
def _pg_fenced_statement(shape: tuple[_Shape, ...]) -> sa.TextClause:
    parts = [f"w{i} AS ({_pg_part(i, *op)})" for i, op in enumerate(shape)]
    return sa.text(f"WITH {', '.join([_OWNED, *parts])} SELECT id FROM owned")


def _pg_part(
    index: int,
    kind: str,
    table: sa.Table,
    keys: tuple[str, ...],
    columns: tuple[str, ...],
    fence: str | None,
) -> str:
    source = _recordset(index, table, columns)
    owned = f' x."{fence}" IN (SELECT id FROM owned)' if fence else ""
    if kind == "Insert":
        names = ", ".join(f'"{c}"' for c in columns)
        selected = ", ".join(_pg_value(table, c) for c in columns)
        where = f" WHERE{owned}" if owned else ""
        return f"INSERT INTO {table.name} ({names}) SELECT {selected} FROM {source}{where}"
    if kind == "Update":
        sets = ", ".join(f'"{c}" = {_pg_value(table, c)}' for c in columns if c not in keys)
        matches = " AND ".join([*(f't."{k}" = x."{k}"' for k in keys), *([owned] if owned else [])])
        return f"UPDATE {table.name} AS t SET {sets} FROM {source} WHERE {matches}"
    matches = " AND ".join(f't."{c}" = x."{c}"' for c in columns)
    return f"DELETE FROM {table.name} AS t USING {source} WHERE {matches}"


def _recordset(index: int, table: sa.Table, columns: tuple[str, ...]) -> str:
    fields = ", ".join(f'"{c}" {_pg_type(table.c[c])}' for c in columns)
    return f"json_to_recordset(CAST(:rows_{index} AS json)) AS x({fields})"


def _pg_type(column: sa.Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return "timestamp"
    if isinstance(kind, JSONText):
        return "json"
    if isinstance(kind, sa.String | sa.Text):
        return "text"
    if isinstance(kind, sa.Integer):
        return "integer"
    if isinstance(kind, sa.Float):
        return "double precision"
    raise TypeError(f"no bulk mapping for {column}")  # pragma: no cover


def _pg_value(table: sa.Table, column: str) -> str:
    if isinstance(table.c[column].type, JSONText):
        return f'CAST(x."{column}" AS text)'
    return f'x."{column}"'


def _pg_document(op: Operation) -> str:
    stamps = _timestamp_columns(op.table, tuple(op.rows[0]))
    rows = [dict(row) for row in op.rows]  # copies: the callers' rows stay as they are
    for row in rows:
        for name in stamps:
            row[name] = _timestamp(row[name])
    return dumps(rows)


@functools.cache
def _timestamp_columns(table: sa.Table, columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c for c in columns if isinstance(table.c[c].type, UTCDateTime))


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat()
