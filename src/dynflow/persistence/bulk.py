"""Bulk writes: many rows in few statements.

The default goes through SQLAlchemy ``executemany``. On PostgreSQL the rows
travel as one JSON document unpacked by ``jsonb_to_recordset``: one short,
cacheable statement and one parameter, whatever the number of rows, which
spares the per-row parameter handling on the client.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from dynflow.persistence.types import JSONText, UTCDateTime
from dynflow.serialization import dumps

Row = Mapping[str, Any]


def insert_rows(connection: sa.Connection, table: sa.Table, rows: Sequence[Row]) -> None:
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        columns = tuple(rows[0])
        connection.execute(_pg_insert(table, columns), {"rows": _pg_document(table, columns, rows)})
    else:
        connection.execute(sa.insert(table), [dict(r) for r in rows])


def update_rows(
    connection: sa.Connection, table: sa.Table, keys: tuple[str, ...], rows: Sequence[Row]
) -> None:
    """Update each row, identified by its ``keys`` columns, with its other values."""
    if not rows:
        return
    columns = tuple(rows[0])
    if connection.dialect.name == "postgresql":
        connection.execute(
            _pg_update(table, keys, columns), {"rows": _pg_document(table, columns, rows)}
        )
    else:
        connection.execute(
            _generic_update(table, keys, columns),
            [{f"b_{name}": value for name, value in row.items()} for row in rows],
        )


@functools.cache
def _generic_update(table: sa.Table, keys: tuple[str, ...], columns: tuple[str, ...]) -> sa.Update:
    return (
        sa.update(table)
        .where(*(table.c[k] == sa.bindparam(f"b_{k}") for k in keys))
        .values({c: sa.bindparam(f"b_{c}") for c in columns if c not in keys})
    )


def _pg_type(column: sa.Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return "timestamp"
    if isinstance(kind, JSONText | sa.String | sa.Text):
        return "text"
    if isinstance(kind, sa.Integer):
        return "integer"
    if isinstance(kind, sa.Float):
        return "double precision"
    raise TypeError(f"no bulk mapping for {column}")  # pragma: no cover


def _recordset(table: sa.Table, columns: tuple[str, ...]) -> str:
    fields = ", ".join(f'"{c}" {_pg_type(table.c[c])}' for c in columns)
    return f"jsonb_to_recordset(CAST(:rows AS jsonb)) AS x({fields})"


@functools.cache
def _pg_insert(table: sa.Table, columns: tuple[str, ...]) -> sa.TextClause:
    names = ", ".join(f'"{c}"' for c in columns)
    selected = ", ".join(f'x."{c}"' for c in columns)
    return sa.text(
        f"INSERT INTO {table.name} ({names}) SELECT {selected} FROM {_recordset(table, columns)}"
    )


@functools.cache
def _pg_update(table: sa.Table, keys: tuple[str, ...], columns: tuple[str, ...]) -> sa.TextClause:
    assignments = ", ".join(f'"{c}" = x."{c}"' for c in columns if c not in keys)
    matches = " AND ".join(f't."{k}" = x."{k}"' for k in keys)
    return sa.text(
        f"UPDATE {table.name} AS t SET {assignments} FROM {_recordset(table, columns)} "
        f"WHERE {matches}"
    )


def _pg_document(table: sa.Table, columns: tuple[str, ...], rows: Sequence[Row]) -> str:
    encoders = [(c, _encoder(table.c[c])) for c in columns]
    return dumps([{c: encode(row[c]) for c, encode in encoders} for row in rows])


def _encoder(column: sa.Column[Any]) -> Any:
    if isinstance(column.type, JSONText):
        return lambda v: None if v is None else dumps(v)
    if isinstance(column.type, UTCDateTime):
        return _timestamp
    return _same


def _same(value: Any) -> Any:
    return value


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat()
