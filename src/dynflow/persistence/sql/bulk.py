"""Bulk writes: a transaction's inserts, updates and deletes over many rows.

Callers describe the writes as :class:`Insert`, :class:`Update` and :class:`Delete`
operations. :class:`BulkWriter` runs one SQLAlchemy ``executemany`` per
operation; the PostgreSQL adapter's writer sends the whole list as one statement.
Within one list a row may be written by one operation only.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Insert:
    table: sa.Table
    rows: Sequence[Row]
    #: the column naming the plan of each row, when writes are fenced
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


Operation = Insert | Update | Delete


class BulkWriter:
    """Runs operations inside a transaction, one ``executemany`` each."""

    def write(self, connection: sa.Connection, operations: Sequence[Operation]) -> None:
        """Run the operations (in order) inside the connection's transaction."""
        for op in operations:
            if not op.rows:
                continue
            match op:
                case Insert(table, rows):
                    connection.execute(sa.insert(table), [dict(r) for r in rows])
                case Update(table, keys, rows):
                    connection.execute(
                        _update(table, keys, tuple(rows[0])),
                        [{f"b_{name}": value for name, value in row.items()} for row in rows],
                    )
                case Delete(table, rows):
                    connection.execute(
                        _delete(table, tuple(rows[0])),
                        [{f"b_{name}": value for name, value in row.items()} for row in rows],
                    )


@functools.cache
def _update(table: sa.Table, keys: tuple[str, ...], columns: tuple[str, ...]) -> sa.Update:
    return (
        sa.update(table)
        .where(*(table.c[k] == sa.bindparam(f"b_{k}") for k in keys))
        .values({c: sa.bindparam(f"b_{c}") for c in columns if c not in keys})
    )


@functools.cache
def _delete(table: sa.Table, columns: tuple[str, ...]) -> sa.Delete:
    return sa.delete(table).where(*(table.c[c] == sa.bindparam(f"b_{c}") for c in columns))
